"""Time to a target (MLCommons AlgoPerf's rule): how many steps, and how much training time, until the test
metric first reaches a value.

With `train.eval_every=K` a run trains in chunks of K steps (one compiled program for every chunk),
and after each chunk of its untimed warm-up call the test metric is evaluated on the host: no
evaluation is inside a timed call. The time to the target is the first step that reached it times
the in-loop step time of the timed calls, and the same plus the compile time; a target not reached
in the run's steps is an outcome ("not reached"), not an error.

>>> reached({"step": [0, 10, 20], "value": [0.2, 0.8, 0.95]}, 0.9, "higher")
20
>>> reached({"step": [0, 10], "value": [3.0, 2.0]}, 1.0, "lower") is None
True
"""

from __future__ import annotations

from typing import Any

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
    return name


class Evaluations:
    """The test metric after each chunk of the first training call: {"step": [...], "value": [...]}."""

    def __init__(self, program: Any, task: Task, metric: str):
        self.metric, self.task = METRICS[metric], task
        self.predict = jax.jit(program.predict)
        self.steps: list[int] = []
        self.values: list[float] = []

    def __call__(self, step: int, state) -> None:
        # On host arrays: the same signature at every call (the training's outputs may be placed or typed
        # unlike its inputs), so the one compile happens at the first call, before anything is timed.
        state, x = jax.device_get((state, self.task.data.x_test))
        predictions = np.asarray(self.predict(state, x), np.float64)
        targets = np.asarray(self.task.data.y_test)
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


def outcome(spec, evaluations: Evaluations, timing: dict[str, Any]) -> dict[str, Any]:
    """The record's `target`: the evaluations and, with `train.target`, the step and the time to reach it."""
    curve = evaluations.curve()
    out: dict[str, Any] = {"metric": evaluations.metric.name, "every": spec.train.eval_every, "evaluations": curve}
    if spec.train.target is None:
        return out
    step = reached(curve, spec.train.target, evaluations.metric.better)
    in_loop = timing.get("in_loop_s_per_step")
    out.update(value=spec.train.target, reached=step is not None, step=step,
               note=None if step is not None else f"not reached in {spec.train.steps} steps")
    if step is not None and in_loop is not None:
        out["time_s"] = step * in_loop
        out["time_with_compile_s"] = step * in_loop + timing["compile_s"]
    return out
