"""Time to a target (MLCommons AlgoPerf's rule): how many steps, and how much training time, until the
validation metric first reaches a value. The test metric is never read here: it is reported, not selected on.

With `train.eval_every=K` the run trains in chunks of K steps (one compiled program for every chunk) and
the validation metric is evaluated after each chunk of the untimed warm-up call: on the host, no
evaluation inside a timed call. K need not divide train.steps: the last chunk is the remainder, a
second program compiled before anything is timed. The step resolution is K: a target first reached
at an evaluated step s was reached somewhere in (s - K, s]. The time to the target is s times the
in-loop step time of the timed calls; with compile, plus the program's COLD compile time, measured once
per program in this process and charged to every run of it, whether its own compile hit a cache or not
(a cache hit is no property of the method). A target not reached is an outcome ("not reached").

>>> reached({"step": [0, 10, 20], "value": [0.2, 0.8, 0.95]}, 0.9, "higher")
20
>>> reached({"step": [0, 10], "value": [3.0, 2.0]}, 1.0, "lower") is None
True
"""

from __future__ import annotations

import time
from typing import Any, Callable

import jax
import numpy as np

from harness.core.checks import check
from harness.core.metrics import METRICS
from harness.core.tasks import Task


def target_metric(spec, task: Task) -> str:
    """`train.target_metric`, or the task's main metric; one of the task's kind."""
    name = spec.train.target_metric or next(m for m, metric in METRICS.items()
                                            if metric.kind == task.kind and metric.main)
    check(METRICS[name].kind == task.kind, "train.target_metric",
          f"{name!r} is no metric of task {task.name!r} ({task.kind}); its metrics: "
          + ", ".join(m for m, metric in METRICS.items() if metric.kind == task.kind))
    low, high = METRICS[name].bounds
    target = spec.train.target
    check(target is None or low <= target <= high, "train.target",
          f"{name} lies in [{low:g}, {high:g}]; the validation metric cannot reach {target:g}" if target is not None
          else "")
    return name


class Evaluations:
    """The validation metric at step 0 and after each chunk of the first training call.

    {"step": [...], "value": [...]}: what `outcome` reads. The test rows are never evaluated here.
    """

    def __init__(self, program: Any, task: Task, metric: str):
        self.metric, self.task = METRICS[metric], task
        self.predict = jax.jit(program.predict)
        self.steps: list[int] = []
        self.values: list[float] = []

    def __call__(self, step: int, state) -> None:
        # On host arrays: the same signature at every call (the training's outputs may be placed or typed
        # unlike its inputs), so the one compile happens at the first call, before anything is timed.
        state, x = jax.device_get((state, self.task.data.x_val))
        predictions = np.asarray(self.predict(state, x), np.float64)
        targets = np.asarray(self.task.data.y_val)
        self.steps.append(int(step))
        self.values.append(float(self.metric.fn(predictions, targets.astype(np.float64)
                                                if np.issubdtype(targets.dtype, np.floating) else targets)))

    def curve(self) -> dict[str, list]:
        return {"step": self.steps, "value": self.values}


def reached(curve: dict[str, list], target: float, better: str) -> int | None:
    """The first evaluated step whose value is at `target` or better, or None."""
    for step, value in zip(curve["step"], curve["value"]):
        if (value >= target) if better == "higher" else (value <= target):
            return step
    return None


_COLD: dict[str, float] = {}  # program fingerprint -> its cold compile time, in this process


def cold_compile_s(fingerprint: str | None, compile_s: float, source: str, compile_cold: Callable[[], float]) -> float:
    """The cold compile time of the program `fingerprint` names: its own `compile_s` when it compiled
    ("compiled"), else the time of the first cold compile of it in this process, else `compile_cold()`
    (a compile with every cache off), timed once and kept."""
    if fingerprint in _COLD:
        return _COLD[fingerprint]
    cold = compile_s if source == "compiled" else compile_cold()
    if fingerprint is not None:
        _COLD[fingerprint] = cold
    return cold


def compile_cold(jitted, args: tuple, static: dict) -> float:
    """Seconds to lower and compile `jitted(*args, **static)` with the in-process and persistent caches off."""
    jax.clear_caches()
    enabled = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    try:
        t = time.perf_counter()
        jitted.lower(*args, **static).compile()
        return time.perf_counter() - t
    finally:
        jax.config.update("jax_enable_compilation_cache", enabled)


def outcome(spec, evaluations: Evaluations, timing: dict[str, Any], cold=None) -> dict[str, Any]:
    """The record's `target`: the evaluations and, with `train.target`, the step and the time to reach it.

    `cold()`: the program's cold compile time (`cold_compile_s`), asked for only when the target is reached.
    """
    curve = evaluations.curve()
    every = spec.train.eval_every
    out: dict[str, Any] = {"metric": evaluations.metric.name, "split": "val", "every": every,
                           "resolution_steps": every, "evaluations": curve}
    if spec.train.target is None:
        return out
    step = reached(curve, spec.train.target, evaluations.metric.better)
    in_loop = timing.get("in_loop_s_per_step")
    out.update(value=spec.train.target, reached=step is not None, step=step,
               note=None if step is not None else f"not reached in {spec.train.steps} steps")
    if step is not None and in_loop is not None:
        out["time_s"] = step * in_loop
        compile_s = timing["compile_s"] if cold is None else cold()
        out["cold_compile_s"] = compile_s
        out["time_with_compile_s"] = step * in_loop + compile_s
    return out
