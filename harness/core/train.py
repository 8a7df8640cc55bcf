"""The training loop: one jitted `lax.scan` of a program's steps (harness/core/program.py) over a flat state.

Which program a run trains follows from its method's `_target_`: a freeze method class
(harness/core/freezing.py) trains the nnx program, any other target is a builder of its
own program from (spec, task), as `method=reference` is (harness/core/reference.py).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from harness.core.batching import FullBatch
from harness.core.checks import ConfigError
from harness.core.components import load
from harness.core.config import Config
from harness.core.freezing import FreezeMethod
from harness.core.program import Built, build_nnx
from harness.core.tasks import Task


def build(spec: Config, task: Task) -> Built:
    """The program and initial state for `spec` on `task` (see the module's docstring)."""
    try:
        target = load(spec.method._target_)
    except (ImportError, AttributeError, ValueError) as err:
        raise ConfigError("method._target_", f"cannot import {spec.method._target_!r}: {err}") from None
    if isinstance(target, type) and issubclass(target, FreezeMethod):
        return build_nnx(spec, task, target)
    return target(spec, task)


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
