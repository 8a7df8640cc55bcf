"""The program a run trains: a static, hashable half and a flat tuple of arrays.

nnx objects are split once into a static part (graphdef, treedef, method) and a
flat tuple of arrays. The jitted loop (harness/core/train.py) takes only arrays, so a
call costs what XLA costs, not a graph traversal (flax's performance guide), and
two runs with the same static part share one compiled program. Learning rate,
weight decay and the Adam betas are optax `inject_hyperparams` leaves inside that
array state: sweeping them does not recompile.

A program is any hashable object with `step(state, x, y) -> (state, {metric: value})`,
`finish(state, steps)`, `predict(state, x)` and `grad_paths(state, x, y)`; a builder
returns it in a `Built` with its initial state. `NnxProgram` (here) serves every
freeze method of harness/core/freezing.py; harness/core/reference.py's plain-JAX program is another.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from harness.core.checks import ConfigError, check
from harness.core.config import Config, OptimizerConfig
from harness.core.freezing import FreezeMethod, cast_frozen, frozen_mask, path_str
from harness.core.pretraining import Pretrained, initial_model
from harness.core.tasks import Task

_OPTIMIZERS = {"adam": optax.adam, "adamw": optax.adamw}


@functools.cache
def base_transform(name: str) -> optax.GradientTransformation:
    """One transform object per optimizer for the whole process (values set per run)."""
    return optax.inject_hyperparams(_OPTIMIZERS[name])(learning_rate=0.0)


def hyperparams(cfg: OptimizerConfig) -> dict[str, float]:
    """The optimizer's settings as the values of its `inject_hyperparams` leaves: those its optax function takes."""
    takes = inspect.signature(_OPTIMIZERS[cfg.name]).parameters
    check("weight_decay" in takes or cfg.weight_decay == 0, "optimizer.weight_decay",
          f"optimizer={cfg.name} does not decay weights (optax.{_OPTIMIZERS[cfg.name].__name__} takes no "
          f"weight_decay); got {cfg.weight_decay}: use optimizer=adamw, or weight_decay=0")
    values = {"learning_rate": cfg.lr, "b1": cfg.b1, "b2": cfg.b2, "eps": cfg.eps, "weight_decay": cfg.weight_decay}
    return {name: value for name, value in values.items() if name in takes}


def _key_name(key: Any) -> Any:
    return getattr(key, "key", getattr(key, "name", getattr(key, "idx", key)))


def leaf_paths(tree: Any) -> list[tuple[Any, ...]]:
    """Plain paths of a pytree's leaves, without nnx's trailing `.value`."""
    paths = []
    for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]:
        names = tuple(_key_name(k) for k in path)
        paths.append(names[:-1] if names and names[-1] == "value" else names)
    return paths


def set_hyperparams(leaves: list[jax.Array], paths: list[tuple[Any, ...]], values: dict[str, float]) -> list:
    """Writes values into every `.../hyperparams/<name>` leaf (also inside optax.partition)."""
    out = list(leaves)
    for i, path in enumerate(paths):
        if len(path) >= 2 and path[-2] == "hyperparams" and path[-1] in values:
            out[i] = jnp.asarray(values[path[-1]], dtype=leaves[i].dtype)
    return out


@dataclass(frozen=True)
class NnxProgram:
    """Static half of a run: rebuilds (model, optimizer) from flat arrays inside the trace."""

    graphdef: Any
    treedef: Any
    method: FreezeMethod
    counter: int  # index of nnx.Optimizer's step counter in the flat state

    def merge(self, leaves):
        return nnx.merge(self.graphdef, jax.tree.unflatten(self.treedef, leaves))

    def step(self, leaves, x, y):
        model, optimizer = self.merge(leaves)
        metrics = self.method.step(model, optimizer, x, y)
        # In the dtype they came in: optax keeps an optimizer moment of a bfloat16 parameter in float32
        # (freeze.frozen_dtype with a method that updates frozen parameters), which a scan carry cannot change.
        out = [new.astype(old.dtype) for new, old in zip(jax.tree.leaves(nnx.state((model, optimizer))), leaves)]
        # `optimizer.step += 1` is one more kernel per scan step (~5% of the seed's step on CPU):
        # left unchanged here, so XLA drops it, and advanced once by `finish`.
        out[self.counter] = leaves[self.counter]
        return tuple(out), metrics

    def finish(self, leaves, steps: int):
        """After the scan: the optimizer's step counter advanced by `steps`, as stepping one by one does."""
        i = self.counter
        return (*leaves[:i], leaves[i] + jnp.asarray(steps, leaves[i].dtype), *leaves[i + 1 :])

    def grad_paths(self, leaves, x, y) -> list[str]:
        """Parameter paths the gradient tree covers, found by tracing (no compute)."""
        grads = jax.eval_shape(lambda s: self.method.value_and_grad(self.merge(s)[0], x, y)[1], leaves)
        return [path_str(p) for p, _ in nnx.to_flat_state(grads)]

    def predict(self, leaves, x):
        model, _ = self.merge(leaves)
        return model(x)


class Built(NamedTuple):
    program: Any  # a program as the module docstring says: NnxProgram, reference.ReferenceProgram
    state: tuple[jax.Array, ...]
    paths: list[tuple[Any, ...]]  # one per state leaf: (0, *param path) or (1, *optimizer path)
    frozen_paths: list[str]
    trainable_paths: list[str]
    grad_paths: list[str]
    pretraining: Pretrained | None = None  # the backbone's pretraining (harness.core.pretraining), if it was


def build_nnx(spec: Config, task: Task, method_class: type[FreezeMethod]) -> Built:
    """Model, mask, method and optimizer for one run, split into a static program and arrays."""
    model, pretraining = initial_model(spec, task)
    mask = frozen_mask(model, spec.freeze)
    cast_frozen(model, mask, spec.freeze.frozen_dtype)
    method = method_class(mask, task.loss)
    method.prepare(model)
    optimizer = nnx.Optimizer(model, method.transform(base_transform(spec.optimizer.name)), wrt=method.wrt)
    graphdef, state = nnx.split((model, optimizer))
    leaves, treedef = jax.tree.flatten(state)
    paths = leaf_paths(state)
    leaves = set_hyperparams(leaves, paths, hyperparams(spec.optimizer))
    params = [path_str(p[1:]) for p in paths if p[0] == 0]
    frozen = [p for p in params if mask(tuple(p.split("/")))]
    trainable = [p for p in params if p not in frozen]
    program = NnxProgram(graphdef, treedef, method, paths.index((1, "step")))
    leaves = tuple(leaves)
    try:
        grad_paths = _grad_paths(program, leaves, task.data.x_train, task.data.y_train)
    except (TypeError, ValueError) as err:  # e.g. a layer that tests a frozen plain array's truth (attribute)
        integers = [path_str(path[1:]) for path, leaf in zip(paths, leaves) if path[0] == 0
                    and path_str(path[1:]) in trainable and jnp.issubdtype(leaf.dtype, jnp.integer)]
        if integers:  # no method can: jax.grad takes floating inputs only
            raise ConfigError("freeze", f"parameter {integers[0]!r} is an integer nnx.Param, which has no gradient "
                                        "under any method: freeze it (add it to freeze.patterns), or hold it in an "
                                        "nnx.Variable, which is not trained") from None
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ConfigError("method", f"{spec.method.name} cannot train model {spec.model.name!r} with freeze="
                                    f"{spec.freeze.name}: its step does not trace with the state this method "
                                    f"makes ({type(err).__name__}: {first}); choose another method") from None
    return Built(program, leaves, paths, frozen, trainable, grad_paths, pretraining)


_GRAD_PATHS: dict[Any, list[str]] = {}


def _grad_paths(program: NnxProgram, leaves: tuple, x, y) -> list[str]:
    """`program.grad_paths`, traced once per program and shapes: half of a small run's build, and the same for
    every point of a vectorized sweep."""
    key = (program, *((a.shape, a.dtype) for a in (*leaves, x, y)))
    if key not in _GRAD_PATHS:
        _GRAD_PATHS[key] = program.grad_paths(leaves, x, y)
    return list(_GRAD_PATHS[key])


def model_arrays(built: Built, state) -> dict[str, np.ndarray]:
    """Every model array (trainable, frozen, wherever a method keeps it) by parameter path."""
    return {path_str(p[1:]): np.asarray(v) for p, v in zip(built.paths, state) if p[0] == 0}


def optimizer_arrays(built: Built, state) -> dict[str, np.ndarray]:
    return {path_str(p[1:]): np.asarray(v) for p, v in zip(built.paths, state) if p[0] == 1}
