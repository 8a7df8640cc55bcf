"""The training loop: one jitted `lax.scan` of a program's steps (harness/core/program.py) over a flat state.

Which program a run trains is chosen by its method's name in PROGRAMS: the nnx
program for every freeze method, plain JAX for `reference`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from harness.core.batching import FullBatch
from harness.core.config import Config
from harness.core.program import Built, build_nnx
from harness.core.reference import build_reference
from harness.core.task import Data

PROGRAMS = {"reference": build_reference}  # method name -> builder; any other method: build_nnx


def build(spec: Config, data: Data) -> Built:
    """The program and initial state for `spec` (see PROGRAMS)."""
    return PROGRAMS.get(spec.method.name, build_nnx)(spec, data)


def _scan(program, batches, state, order, x, y, key, start, steps: int, metrics: tuple[str, ...]):
    def body(carry, i):
        state, order = carry
        order, xb, yb = batches.take(order, i, key, x, y)
        state, step_metrics = program.step(state, xb, yb)
        return (state, order), {name: step_metrics[name] for name in metrics}

    (state, order), history = jax.lax.scan(body, (state, order), start + jnp.arange(steps))
    return program.finish(state, steps), order, history


@functools.partial(jax.jit, static_argnames=("program", "batches", "steps", "metrics"))
def train(state, x, y, key=None, *, program, steps: int, batches=FullBatch(), metrics=("mse",)):
    """(final state, {metric: value per step}): `steps` optimizer steps in one compiled scan.

    `batches` (harness/core/batching.py) picks each step's rows of (x, y), the full set by default;
    `key` seeds a minibatch order. Only the named per-step `metrics` leave the loop (by default
    the loss alone, as a user's loop emits it); XLA drops the others' computation.
    """
    state, _, history = _scan(program, batches, state, batches.start(key, x.shape[0]), x, y, key, 0, steps, metrics)
    return state, history


@functools.partial(jax.jit, static_argnames=("program", "batches", "steps", "metrics"))
def train_chunk(state, order, x, y, key, start, *, program, steps: int, batches=FullBatch(), metrics=("mse",)):
    """(state, batch order, history) after `steps` steps from step `start`: one chunk of a longer run.

    `start` is traced, so every chunk shares one program; the batch order (`batches.start`
    before the first chunk) is carried from chunk to chunk, so chunks train as one call does.
    """
    return _scan(program, batches, state, order, x, y, key, start, steps, metrics)


@functools.partial(jax.jit, static_argnames=("program", "batches", "steps", "metrics"))
def train_many(states, xs, ys, keys, *, program, steps: int, batches=FullBatch(), metrics=("mse",)):
    """`train` vmapped over a leading axis of states, data and keys: many runs, one compile, one call."""
    return jax.vmap(lambda s, x, y, k: train.__wrapped__(s, x, y, k, program=program, steps=steps, batches=batches,
                                                         metrics=metrics))(states, xs, ys, keys)
