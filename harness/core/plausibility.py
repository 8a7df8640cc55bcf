"""Can this machine do what a run's step time claims? A calibrated peak against each run's achieved rate.

A step time is a claim: XLA's flop count for one step, divided by it, is the
rate the machine must have worked at. Once per process the machine is measured
(the best of a few large f32 matmuls and large on-device copies); a run whose
claimed rate beats that peak by more than `LIMIT` timed a program that no
longer does the work its flop count says, almost always because XLA hoisted
loop-invariant work (frozen layers on a fixed batch) out of the training loop.
Such a run stays ok, with a warning in its record, its W&B summary and the report.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import jax
import jax.numpy as jnp

LIMIT = 1.5  # x the calibrated peak: beyond it, a step time is not physically possible here
MATMUL_SIZE = 1536  # f32 [n, n] @ [n, n]: 7 GFLOP, ~25 ms on 2 cores; smaller ones reach 10-30% less of the peak
COPY_BYTES = 64 * 2**20  # larger than any CPU cache: a copy of it runs at memory bandwidth
TRIES = 5
WARNING = ("faster than this machine's measured peak ({fraction:.1f}x its f32 matmul FLOP/s): XLA likely hoisted "
           "or removed work; use a per-step batch (train.batch_size)")
HOISTING_NOTE = ("full batch with frozen parameters: the step time excludes work XLA can hoist out of the loop "
                 "(what the frozen parameters compute from the fixed batch); set train.batch_size for a new batch "
                 "every step")


def _best_seconds(fn, *args) -> float:
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(TRIES):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
    return best


@functools.cache
def machine_peak(device: jax.Device) -> dict[str, float]:
    """The best f32 matmul throughput (FLOP/s) and copy bandwidth (bytes/s) measured on `device`."""
    start = time.perf_counter()
    with jax.default_device(device):
        a = jnp.ones((MATMUL_SIZE, MATMUL_SIZE), jnp.float32)
        matmul_s = _best_seconds(jax.jit(lambda a, b: a @ b), a, a)
        x = jnp.ones((COPY_BYTES // 4,), jnp.float32)
        copy_s = _best_seconds(jax.jit(lambda x: x + 1.0), x)  # reads and writes every byte once
    return {
        "matmul_flops_per_s": 2 * MATMUL_SIZE**3 / matmul_s,
        "copy_bytes_per_s": 2 * COPY_BYTES / copy_s,
        "matmul_size": MATMUL_SIZE,
        "copy_bytes": COPY_BYTES,
        "seconds": time.perf_counter() - start,
    }


def check(timing: dict[str, Any], peak: dict[str, float], *, full_batch: bool, frozen: bool) -> dict[str, Any]:
    """Achieved FLOP/s and bytes/s of one step against `peak`, a warning past `LIMIT`, and the hoisting note.

    `timing` is `Timing.summary()`. The step time is the in-loop one when measured and
    above zero (per-call cost excluded), else call time / steps.

    >>> peak = {"matmul_flops_per_s": 1e11, "copy_bytes_per_s": 1e10}
    >>> timing = {"in_loop_s_per_step": 1e-4, "dispatch": {"flops_per_step": 3.2e9}}
    >>> check(timing, peak, full_batch=True, frozen=True)["peak_fraction"]
    320.0
    >>> check({**timing, "in_loop_s_per_step": 0.1}, peak, full_batch=False, frozen=True)["warning"] is None
    True
    """
    dispatch = timing.get("dispatch") or {}
    flops = dispatch.get("flops_per_step") or timing.get("flops")
    bytes_accessed = dispatch.get("bytes_accessed_per_step") or timing.get("bytes_accessed")
    # The in-loop time excludes the per-call cost; where noise clamps it to 0, call time / steps (which
    # includes that cost) still bounds the step from above, so the achieved rate is a lower bound.
    in_loop = timing.get("in_loop_s_per_step")
    basis = "in_loop" if in_loop else "call_per_step"
    step_s = in_loop or (timing.get("run_s_per_step") or {}).get("median")
    out: dict[str, Any] = {"achieved_flops_per_s": None, "peak_fraction": None, "achieved_bytes_per_s": None,
                           "bandwidth_fraction": None, "step_time": basis, "limit": LIMIT, "warning": None,
                           "note": HOISTING_NOTE if full_batch and frozen else None}
    if not step_s or step_s <= 0:
        return out
    if flops:
        out["achieved_flops_per_s"] = flops / step_s
        out["peak_fraction"] = out["achieved_flops_per_s"] / peak["matmul_flops_per_s"]
        if out["peak_fraction"] > LIMIT:
            out["warning"] = WARNING.format(fraction=out["peak_fraction"])
    if bytes_accessed:
        # XLA counts cache-resident reuse too, so small models can pass DRAM bandwidth: shown, never flagged.
        out["achieved_bytes_per_s"] = bytes_accessed / step_s
        out["bandwidth_fraction"] = out["achieved_bytes_per_s"] / peak["copy_bytes_per_s"]
    return out
