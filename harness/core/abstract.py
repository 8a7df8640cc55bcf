"""A run as shapes, before anything large exists: the task's arrays and the built state from `jax.eval_shape`.

`harness.core.run` compiles the training program from these shapes (jax.ShapeDtypeStruct
arguments), asks XLA's memory analysis what it needs, and checks the whole run against
the memory this process can get (harness/core/memory.py) before it makes the data or the
state. Tracing the task and the build costs about what building them does for a small
model (tens of ms), and nothing for a big one compared with the allocation it avoids.

A task or model that cannot be traced (numpy on its arrays, a value that decides a shape)
has no abstract form here: `shapes` returns None and the run is checked the old way,
after it is built, before its first call.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax

from harness.core.checks import ConfigError
from harness.core.config import Config, with_traced
from harness.core.program import Built
from harness.core.tasks import NeedsValues, Task, checked
from harness.core.train import build

ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def nbytes(tree: Any) -> int:
    """Bytes of every array (or jax.ShapeDtypeStruct) in a pytree."""
    return sum(math.prod(a.shape) * a.dtype.itemsize for a in jax.tree.leaves(tree))


def _task_shapes(spec: Config) -> Task:
    """The task with its arrays as shapes: its function traced by jax.eval_shape, its mapping checked as a task's."""
    fn, kept = spec.task.load(), {}

    def arrays():
        made = fn(seed=spec.task.seed, **spec.task.settings)
        kept["made"] = made
        out = {}
        for prefix, mapping in (("", made), ("source.", made.get("source") if isinstance(made, dict) else None)):
            if isinstance(mapping, dict):  # traced arrays leave as shapes; numpy arrays are read as they are
                out.update({prefix + k: mapping[k] for k in ARRAYS if isinstance(mapping.get(k), jax.Array)})
        return out

    try:
        shapes = jax.eval_shape(arrays)
    except ConfigError as err:
        raise ConfigError(f"task.{err.field}", err.message) from None
    made = kept["made"]
    if isinstance(made, dict):
        made = {**made, **{k: shapes[k] for k in ARRAYS if k in shapes}}
        if isinstance(made.get("source"), dict):
            made["source"] = {**made["source"], **{k: shapes[f"source.{k}"] for k in ARRAYS if f"source.{k}" in shapes}}
    return _as_shapes(checked(spec.task.name, made, abstract=True))


def _as_shapes(task: Task) -> Task:
    """`task` with every array as its shape: a numpy task's arrays, made while traced, are not kept."""
    data = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), task.data)
    return dataclasses.replace(task, data=data, source=None if task.source is None else _as_shapes(task.source))


def _built_shapes(spec: Config, task: Task) -> Built:
    """`build(spec, task)` traced: its program (the real one) and its state as shapes."""
    kept = {}

    def state(data):
        kept["built"] = build(spec, dataclasses.replace(task, data=data))
        return kept["built"].state

    shapes = jax.eval_shape(state, task.data)
    return kept["built"]._replace(state=shapes)


class Shapes(NamedTuple):
    """A run before it is made: its task (arrays as shapes) and its built program with the state as shapes."""

    task: Task
    built: Built
    data_bytes: int  # every array the task returns, its source task's included
    state_bytes: int  # model and optimizer state
    largest: int  # the largest value the final evaluation's forward pass makes over the training rows
    predictions: int  # the final evaluation's predictions on the training rows


_SHAPES_BY_PROGRAM: dict[str, Shapes | None] = {}


def shapes(spec: Config) -> Shapes | None:
    """The run's shapes, or None when its task or model cannot be traced (it is then checked once built).

    A ConfigError found on the way (a mask that matches nothing, a batch larger than the data)
    is raised: it is the run's error, found before anything is allocated. Runs that differ only in
    the optimizer's hyperparameters or the seed (a sweep's usual axes) have one program and one set of
    shapes: traced once per process (`harness.core.run` still compares them with what it builds).
    """
    key = program_key(spec)
    if key in _SHAPES_BY_PROGRAM:
        return _SHAPES_BY_PROGRAM[key]
    try:
        task = _task_shapes(spec)
        built = _built_shapes(spec, task)
        largest, predictions = _evaluation_bytes(built, task.data.x_train)
    except (ConfigError, KeyboardInterrupt):
        raise
    except (NeedsValues, Exception):  # noqa: BLE001 - not traceable: the run is built first, then checked
        _SHAPES_BY_PROGRAM[key] = None
        return None
    data = nbytes(task.data) + (nbytes(task.source.data) if task.source is not None else 0)
    _SHAPES_BY_PROGRAM[key] = Shapes(task, built, data, nbytes(built.state), largest, predictions)
    return _SHAPES_BY_PROGRAM[key]


# Any valid value of each TRACED key: a run's program key holds these in place of its own.
_ANY_TRACED = {"optimizer.lr": 1.0, "optimizer.weight_decay": 0.0, "optimizer.b1": 0.0, "optimizer.b2": 0.0,
               "optimizer.eps": 1.0, "task.seed": 0}


def program_key(spec: Config) -> str:
    """`spec` less its TRACED values (harness.core.config): runs with one key have one program and one set of
    shapes, unless their task's shapes follow its seed (what `harness.core.run` checks once they are built)."""
    return repr(with_traced(spec, _ANY_TRACED))


def same_shapes(tree: Any, other: Any) -> bool:
    """Whether two pytrees of arrays or shapes have one structure and the same shapes and dtypes."""
    leaves, other_leaves = jax.tree.leaves(tree), jax.tree.leaves(other)
    return len(leaves) == len(other_leaves) and all(
        (a.shape, a.dtype) == (b.shape, b.dtype) for a, b in zip(leaves, other_leaves))


def stacked(tree: Any, points: int) -> Any:
    """Shapes of `points` copies of `tree` stacked on a leading axis (a vectorized run's state or data)."""
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct((points, *a.shape), a.dtype, weak_type=_weak(a)), tree)


def placed(tree: Any, sharding: Any) -> Any:
    """Shapes as arguments of a program lowered for `sharding` (what jax.device_put(tree, sharding) gives)."""
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding, weak_type=_weak(a)), tree)


def _weak(a: Any) -> bool:
    """Whether a traced value is weakly typed (a Python scalar's type), as the array it stands for will be."""
    return bool(getattr(a, "weak_type", False))


def _evaluation_bytes(built: Built, x: Any) -> tuple[int, int]:
    """(largest value the model's forward pass makes on `x`, its predictions): what the final evaluation holds.

    The evaluation runs op by op after training; each op's output exists with its input.
    """
    jaxpr = jax.make_jaxpr(built.program.predict)(built.state, x)
    return _largest(jaxpr.jaxpr), nbytes(jax.eval_shape(built.program.predict, built.state, x))


def _largest(jaxpr) -> int:
    """The largest output of any equation in `jaxpr` and the jaxprs inside it (pjit, custom_jvp, ...)."""
    best = 0
    for eqn in jaxpr.eqns:
        for var in eqn.outvars:
            aval = getattr(var, "aval", None)
            if hasattr(aval, "shape") and hasattr(aval, "dtype"):
                best = max(best, math.prod(aval.shape) * getattr(aval.dtype, "itemsize", 4))
        for param in eqn.params.values():
            inner = getattr(param, "jaxpr", param)
            if hasattr(inner, "eqns"):
                best = max(best, _largest(inner))
    return best
