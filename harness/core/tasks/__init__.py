"""Tasks: what a run learns, and the contract a task (built-in or your own) keeps.

A task is a callable named by `task._target_` (harness/core/components.py), called
with its settings and `seed=<task.seed>`. It returns a mapping:

    x_train, y_train, x_test, y_test   arrays (numpy, or anything numpy.asarray takes)
    x_val, y_val   optional: validation rows, what time to a target and every selection (a tuned
               learning rate) read; the test rows are only reported. Without them, the last
               `task.val_fraction` of the training rows (DEFAULT_VAL_FRACTION unless set) are held out
               as validation: the rows of a seeded order, so the split is deterministic.
    loss       "mse": regression, y of shape (rows, outputs) (or (rows,) for one output);
               "cross_entropy": classification, y integer class labels of shape (rows,)
    classes    optional, classification: the number of classes (default: the largest label + 1)
    vocab      optional, for integer inputs (tokens): the number of distinct tokens (default: the
               largest + 1); a model that takes `vocab` gets it
    source     optional: a mapping of the same form, the task a model's `backbone` is pretrained
               on before the run (`task.pretrain_steps`), and forgetting is measured on

`make_task` turns it into a `Task`, checked: a mapping that breaks the contract is one
line naming what is wrong, before anything is compiled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from harness.core.checks import ConfigError, check
from harness.core.components import TaskSpec
from harness.core.metrics import METRICS

LOSSES = tuple(name for name, metric in METRICS.items() if metric.loss)


class Data(NamedTuple):
    """A task's arrays: what the training program reads (harness.core.run places them on devices)."""

    x_train: Any
    y_train: Any
    x_test: Any
    y_test: Any
    x_val: Any = None  # None: no validation rows (a source task's data)
    y_val: Any = None


@dataclass(frozen=True)
class Task:
    """A task made: its data, the loss it trains on, how many outputs a model gives, and its source task."""

    name: str
    data: Data
    loss: str  # a loss metric of harness.core.metrics
    outputs: int  # the model's out_dim: regression outputs, or classes
    vocab: int | None = None  # integer inputs: the number of distinct tokens
    source: Task | None = None

    @property
    def kind(self) -> str:
        """'regression' or 'classification' (the loss metric's kind)."""
        return METRICS[self.loss].kind

    @property
    def in_shape(self) -> tuple[int, ...]:
        """The shape of one input: what a model's `in_shape` is."""
        return tuple(self.data.x_train.shape[1:])


# The share of training rows held out for validation when a task returns no x_val / y_val of its own.
DEFAULT_VAL_FRACTION = 0.2
SPLITS = ("train", "val", "test")


def make_task(spec: TaskSpec) -> Task:
    """The task `spec` names, made and checked."""
    try:
        made = spec.load()(seed=spec.seed, **spec.settings)
    except ConfigError as err:
        raise ConfigError(f"task.{err.field}", err.message) from None
    return checked(spec.name, made, val_fraction=spec.val_fraction)


def _rows(a: Any, start: int, stop: int | None = None) -> Any:
    """Rows start:stop of an array or of a shape (jax.ShapeDtypeStruct)."""
    if isinstance(a, jax.ShapeDtypeStruct):
        stop = a.shape[0] if stop is None else stop
        return jax.ShapeDtypeStruct((stop - start, *a.shape[1:]), a.dtype)
    return a[start:stop]


def with_validation(name: str, made: Any, val_fraction: float | None) -> Any:
    """`made` with x_val / y_val: its own, or the last `val_fraction` (default DEFAULT_VAL_FRACTION) of its
    training rows held out. A task's own validation rows and a `val_fraction` are not both allowed: which
    rows validate would be ambiguous."""
    if not isinstance(made, Mapping) or not all(k in made for k in ("x_train", "y_train")):
        return made  # `checked` names what is missing
    own = [k for k in ("x_val", "y_val") if k in made]
    if own:
        other = "y_val" if own[0] == "x_val" else "x_val"
        check(len(own) == 2, "task", f"task {name!r} returned {own[0]} without {other}")
        check(val_fraction is None, "task.val_fraction",
              f"task {name!r} returns its own validation rows (x_val, y_val); leave task.val_fraction unset")
        return made
    fraction = DEFAULT_VAL_FRACTION if val_fraction is None else val_fraction
    rows = made["x_train"].shape[0] if hasattr(made["x_train"], "shape") else len(made["x_train"])
    held = max(1, round(fraction * rows))
    check(rows - held >= 1, "task.val_fraction",
          f"holds out {held} of the {rows} training rows of task {name!r} for validation and leaves none to train on")
    x, y = (made[k] if hasattr(made[k], "shape") else np.asarray(made[k]) for k in ("x_train", "y_train"))
    cut = rows - held
    return {**made, "x_train": _rows(x, 0, cut), "y_train": _rows(y, 0, cut), "x_val": _rows(x, cut),
            "y_val": _rows(y, cut)}


class NeedsValues(Exception):
    """A task whose shapes alone do not say what a model outputs (class labels without `classes`)."""


def _shape(a: Any, shape: tuple[int, ...] | None = None, dtype: Any = None) -> Any:
    """`a` (an array, or a jax.ShapeDtypeStruct: shapes only) reshaped and cast as asked."""
    shape = a.shape if shape is None else shape
    dtype = a.dtype if dtype is None else np.dtype(dtype)
    if isinstance(a, jax.ShapeDtypeStruct):
        return jax.ShapeDtypeStruct(shape, dtype)
    a = a.reshape(shape) if a.shape != shape else a
    return a.astype(dtype) if a.dtype != dtype else a


def checked(name: str, made: Any, what: str = "task", abstract: bool = False, val_fraction: float | None = None,
            validation: bool = True) -> Task:
    """A task's mapping as a `Task`; a ConfigError naming the task and the key when it breaks the contract.

    With `abstract`, arrays may be shapes (jax.ShapeDtypeStruct, from jax.eval_shape of the task):
    the same checks, less those that need the values (class labels in range); a classification task
    that does not say its `classes` raises NeedsValues. With `validation` (not for a source task) the
    task gets its validation rows (`with_validation`).
    """

    def fail(message: str):
        raise ConfigError(what, f"task {name!r} returned {message}")

    if not isinstance(made, Mapping):
        fail(f"a {type(made).__name__}, not a mapping with x_train, y_train, x_test, y_test and loss")
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test", "loss") if k not in made]
    if missing:
        fail(f"no {', '.join(missing)} (a task returns x_train, y_train, x_test, y_test and loss)")
    if validation:
        made = with_validation(name, made, val_fraction)
    splits = SPLITS if validation else ("train", "test")
    loss = made["loss"]
    if loss not in LOSSES:
        fail(f"loss={loss!r}; a task trains on one of: {', '.join(LOSSES)}")
    # A jax array stays one (no host copy: it is placed on its device as it is); shapes stay shapes.
    arrays = {k: made[k] if isinstance(made[k], (jax.Array, jax.ShapeDtypeStruct)) else np.asarray(made[k])
              for s in splits for k in (f"x_{s}", f"y_{s}")}
    for split in splits:
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim < 2 or not x.shape[0]:
            fail(f"x_{split} of shape {x.shape}: need (rows, ...) with at least one row")
        if not y.ndim or y.shape[0] != x.shape[0]:
            fail(f"{x.shape[0]} rows of x_{split} and {y.shape[0] if y.ndim else 0} of y_{split}")
    xs, ys = tuple(f"x_{s}" for s in splits), tuple(f"y_{s}" for s in splits)
    for key in xs[1:]:
        if arrays["x_train"].shape[1:] != arrays[key].shape[1:]:
            fail(f"x_train rows of shape {arrays['x_train'].shape[1:]} and {key} rows of {arrays[key].shape[1:]}")
    for key in xs:
        if not np.issubdtype(arrays[key].dtype, np.floating) and not np.issubdtype(arrays[key].dtype, np.integer):
            fail(f"{key} of dtype {arrays[key].dtype}: numbers expected")
    for key, values in arrays.items():  # NaN in the data would read as a divergence "from step 0"
        if np.issubdtype(values.dtype, np.inexact) and not isinstance(values, jax.ShapeDtypeStruct):
            bad = int(jnp.sum(~jnp.isfinite(values))) if isinstance(values, jax.Array) else \
                int(values.size - np.count_nonzero(np.isfinite(values)))
            if bad:
                fail(f"{key} with {bad} non-finite values (NaN or infinity) of {values.size}: the data must be finite")
    for count in ("classes", "vocab"):
        value = made.get(count)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
            fail(f"{count}={value!r}: {count} is a whole number >= 1")
    if METRICS[loss].kind == "regression":
        for key in ys:
            y = arrays[key]
            arrays[key] = _shape(y, (y.shape[0], 1)) if y.ndim == 1 else y
            if arrays[key].ndim != 2:
                fail(f"{key} of shape {y.shape}: regression targets are (rows, outputs)")
        outputs = arrays["y_train"].shape[1]
        for key in ys[1:]:
            if arrays[key].shape[1] != outputs:
                fail(f"{outputs} outputs in y_train and {arrays[key].shape[1]} in {key}")
    else:
        for key in ys:
            y = arrays[key]
            if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
                fail(f"{key} of shape {y.shape} and dtype {y.dtype}: class labels are integers of shape (rows,)")
        if abstract and not made.get("classes"):
            raise NeedsValues(name)
        if not any(isinstance(arrays[k], jax.ShapeDtypeStruct) for k in ys):
            top = int(max(arrays[k].max() for k in ys))
            outputs = int(made.get("classes") or top + 1)
            low = int(min(arrays[k].min() for k in ys))
            if low < 0 or top >= outputs:
                fail(f"labels from {low} to {top} with classes={outputs}: labels are 0 .. classes - 1")
        else:
            outputs = int(made["classes"])
        arrays = {**arrays, **{k: _shape(arrays[k], dtype=np.int32) for k in ys}}
    vocab = None
    if np.issubdtype(arrays["x_train"].dtype, np.integer):
        if abstract and not made.get("vocab"):
            raise NeedsValues(name)
        if not any(isinstance(arrays[k], jax.ShapeDtypeStruct) for k in xs):
            low = int(min(arrays[k].min() for k in xs))
            top = int(max(arrays[k].max() for k in xs))
            vocab = int(made.get("vocab") or top + 1)
            if low < 0 or top >= vocab:
                fail(f"input tokens from {low} to {top} with vocab={vocab}: tokens are 0 .. vocab - 1")
        else:
            vocab = int(made["vocab"])
        arrays.update({k: _shape(arrays[k], dtype=np.int32) for k in xs})
    source = made.get("source")
    return Task(name, Data(**arrays), loss, outputs, vocab,
                None if source is None else checked(name, source, "task.pretrain_steps", abstract, validation=False))
