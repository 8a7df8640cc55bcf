"""Where a step's flops go, from XLA's own count of small programs on one batch: why freezing (or LoRA) is,
or is not, faster.

    forward         the loss on one batch: the model's forward pass
    gradient        the loss and its gradient with respect to the trainable parameters: what the freeze
                    needs (input gradients down to the lowest trainable layer, weight gradients of the
                    trainable ones), less the forward
    full_gradient   the same with respect to every parameter, less the forward: the backward pass a full
                    fine-tune pays; full_gradient - gradient is what freezing removed
    step            the method's training step as compiled (gradient, optimizer update, the batch)
    rest            step - forward - gradient: the optimizer update, and any gradient the method computes
                    that the freeze does not need (stop_gradient's frozen gradients)

XLA counts a program's flops once, not per loop trip, so each is its own one-batch program, compiled once
per training program and batch shape (`split_once`): a sweep's runs that differ in traced values only
(learning rates, seeds) share one count. Input- and
weight-gradient work share one backward pass and XLA reports its total only, so they are not split.
The gradients are taken over the program's own state leaves, whatever the method does, so two methods of
one freeze mask give the same forward and gradient: only their step differs.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from harness.core.freezing import path_str
from harness.core.metrics import loss_and_metrics
from harness.core.program import Built


def _flops(fn, *args) -> float | None:
    try:
        cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    except Exception:  # noqa: BLE001 - a backend without cost analysis: no split, said as None
        return None
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = (cost or {}).get("flops")
    return float(flops) if flops is not None and flops >= 0 else None


def split(built: Built, loss: str, x: jax.Array, y: jax.Array) -> dict[str, Any]:
    """The flops of one step on the batch (x, y), by part (see the module's docstring); None where XLA gives none."""
    program, state = built.program, tuple(built.state)
    trainable = set(built.trainable_paths)
    model = [i for i, (path, leaf) in enumerate(zip(built.paths, state))
             if path[0] == 0 and jnp.issubdtype(leaf.dtype, jnp.floating)]
    train = [i for i in model if path_str(built.paths[i][1:]) in trainable]

    def loss_of(leaves):
        return loss_and_metrics(program.predict(leaves, x), y, loss)[0]

    def gradient(indices: list[int]):
        """The loss and its gradient with respect to the leaves at `indices`, the others held constant."""

        def fn(leaves):
            return jax.value_and_grad(lambda chosen: loss_of(_with(leaves, indices, chosen)))(
                [leaves[i] for i in indices])

        return fn

    forward = _flops(loss_of, state)
    needed = _flops(gradient(train), state)
    full = _flops(gradient(model), state)
    step = _flops(lambda leaves: program.step(leaves, x, y), state)
    parts = {"forward": forward, "step": step,
             "gradient": None if None in (needed, forward) else needed - forward,
             "full_gradient": None if None in (full, forward) else full - forward}
    parts["rest"] = None if None in (step, needed) else step - needed
    return parts


_SPLIT_BY_PROGRAM: dict[Any, dict[str, Any]] = {}


def split_once(program_key: str, built: Built, loss: str, x: jax.Array, y: jax.Array) -> dict[str, Any]:
    """`split`, computed once per process for each training program (`program_key`: harness.core.abstract) and
    batch shape: its four small compiles cost more than a cache-hit run's own training."""
    key = (program_key, loss, x.shape, str(x.dtype), y.shape, str(y.dtype))
    if key not in _SPLIT_BY_PROGRAM:
        _SPLIT_BY_PROGRAM[key] = split(built, loss, x, y)
    return dict(_SPLIT_BY_PROGRAM[key])


def _with(leaves: list, indices: list[int], values) -> tuple:
    out = list(leaves)
    for i, value in zip(indices, values):
        out[i] = value
    return tuple(out)
