"""What a run measured, as plain numbers: quality metrics, fitted line, frozen drift, optimizer memory.

METRICS is the one table of quality metrics. An entry is a new metric everywhere: the
per-step metric (`train.step_metrics`), the final train and test values, their record
fields and W&B keys (harness/core/fields.py), the report's quality table, `harness
compare`, the findings (main metrics) and the W&B dashboard's panels. No JAX here:
a metric is written against the array API (`x.__array_namespace__()`), so the same
function runs on jax arrays inside the compiled training step and on float64 numpy
arrays for the final numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np


def mse(predictions, targets):
    """Mean squared error: the regression loss every method differentiates."""
    diffs = targets - predictions
    return (diffs**2).mean()


def mae(predictions, targets):
    """Mean absolute error."""
    return abs(targets - predictions).mean()


def cross_entropy(logits, labels):
    """Mean softmax cross-entropy of integer class labels: the classification loss every method differentiates."""
    xp = logits.__array_namespace__()
    shifted = logits - xp.max(logits, axis=-1, keepdims=True)
    log_norm = xp.log(xp.sum(xp.exp(shifted), axis=-1))
    picked = xp.take_along_axis(shifted, xp.astype(labels, xp.int32)[:, None], axis=-1)[:, 0]
    return xp.mean(log_norm - picked)


def accuracy(logits, labels):
    """The fraction of rows whose largest logit is the label's."""
    xp = logits.__array_namespace__()
    return xp.mean(xp.astype(xp.argmax(logits, axis=-1) == labels, logits.dtype))


@dataclass(frozen=True)
class Metric:
    """A measure of a model's predictions against a task's targets.

    fn: (predictions, targets) -> a scalar, on jax or numpy arrays; kind: the tasks it applies
    to ("regression" or "classification"); better: "lower" or "higher"; loss: a task can train
    on it (differentiable);
    main: the headline quality of its kind of task (findings compare it, the console shows it);
    bounds: the values it can take at all (a target outside them cannot be reached by definition).
    """

    name: str
    title: str
    fn: Callable[[Any, Any], Any]
    kind: str
    better: str = "lower"
    loss: bool = False
    main: bool = False
    bounds: tuple[float, float] = (0.0, float("inf"))


METRICS = {m.name: m for m in (
    Metric("mse", "MSE", mse, "regression", loss=True, main=True),
    Metric("mae", "MAE", mae, "regression"),
    Metric("cross_entropy", "cross-entropy", cross_entropy, "classification", loss=True),
    Metric("accuracy", "accuracy", accuracy, "classification", better="higher", main=True,
           bounds=(0.0, 1.0)),
)}


def evaluate(predictions, targets, kind: str = "regression") -> dict[str, float]:
    """Every metric of `kind` on a model's predictions, in float64 (class labels stay integers).

    >>> evaluate([1.0, 2.0], [1.0, 4.0])
    {'mse': 2.0, 'mae': 1.0}
    >>> {k: round(v, 4) for k, v in evaluate([[2.0, 0.0], [0.0, 2.0]], [0, 0], "classification").items()}
    {'cross_entropy': 1.1269, 'accuracy': 0.5}
    """
    predictions, targets = np.asarray(predictions, np.float64), np.asarray(targets)
    if np.issubdtype(targets.dtype, np.floating):
        targets = targets.astype(np.float64)
    return {name: float(metric.fn(predictions, targets)) for name, metric in METRICS.items() if metric.kind == kind}


def fit_line(x, predictions) -> dict[str, float]:
    """Least-squares line through the model's predictions; for a linear model, its kernel and bias.

    >>> {k: round(v, 12) for k, v in fit_line([0.0, 1.0, 2.0], [1.0, 3.0, 5.0]).items()}
    {'slope': 2.0, 'intercept': 1.0}
    """
    slope, intercept = np.polyfit(np.ravel(x).astype(np.float64), np.ravel(predictions).astype(np.float64), 1)
    return {"slope": float(slope), "intercept": float(intercept)}


def drift(initial: dict[str, np.ndarray], final: dict[str, np.ndarray], paths: list[str]) -> dict[str, Any]:
    """How far each listed leaf moved: L2 norm, max |change|, and whether it is bitwise unchanged."""
    leaves = {}
    for path in paths:
        delta = final[path].astype(np.float64) - initial[path].astype(np.float64)
        leaves[path] = {
            "l2": float(np.linalg.norm(delta)),
            "max_abs": float(np.max(np.abs(delta))) if delta.size else 0.0,
            "unchanged": initial[path].tobytes() == final[path].tobytes(),
        }
    return {
        "l2": float(np.sqrt(sum(leaf["l2"] ** 2 for leaf in leaves.values()))),
        "max_abs": max((leaf["max_abs"] for leaf in leaves.values()), default=0.0),
        "unchanged": all(leaf["unchanged"] for leaf in leaves.values()),
        "leaves": leaves,
    }


def count(arrays: dict[str, np.ndarray], paths: list[str]) -> int:
    return int(sum(arrays[p].size for p in paths))


def optimizer_state(arrays: dict[str, np.ndarray], frozen: list[str]) -> dict[str, Any]:
    """Size of the optimizer state, and how many of its leaves shadow a frozen parameter."""
    shadows = [p for p in arrays if any(p == f or p.endswith("/" + f) for f in frozen)]
    return {
        "bytes": int(sum(a.nbytes for a in arrays.values())),
        "leaves": len(arrays),
        "frozen_leaves": len(shadows),
        "frozen_bytes": int(sum(arrays[p].nbytes for p in shadows)),
    }


def subsample(n: int, points: int) -> np.ndarray:
    """At most `points` step indices spread evenly over n steps, always keeping the first and last."""
    if n <= points:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, points).round().astype(int))


def loss_and_metrics(predictions, targets, loss: str = "mse"):
    """(the loss, the one differentiated; {metric: value}) of every metric of the loss's kind, on jax arrays
    inside the training step (a metric the program does not emit is dead code to XLA: it costs nothing)."""
    kind = METRICS[loss].kind
    values = {name: metric.fn(predictions, targets) for name, metric in METRICS.items() if metric.kind == kind}
    return values[loss], values
