"""`method=reference`: the same training in plain JAX, the yardstick for the nnx methods.

The model is a nested dict of arrays (the nnx model's own initial values, under
the same paths), the forward pass is the model's `reference_forward`, written in
`jnp` (harness/core/models/__init__.py), and one step is
`jax.value_and_grad` over the trainable params plus one optax update. No nnx
object is touched inside the traced code. Frozen params ride along in the state,
unchanged, so the harness can still measure their drift; they are never
differentiated and optax never sees them.

The program is a frozen dataclass of static data only (treedef, frozen paths,
the forward function, the loss and the process-wide optax transform), so runs that differ only in
hyperparameters share one compiled program: the learning rate and weight decay
are `inject_hyperparams` leaves in the state, written by `set_hyperparams`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import jax
import optax
from flax import nnx

from harness.core.checks import ConfigError
from harness.core.config import Config
from harness.core.freezing import cast_frozen, frozen_mask, path_str
from harness.core.metrics import loss_and_metrics
from harness.core.pretraining import initial_model
from harness.core.program import (
    Built,
    base_transform,
    hyperparams,
    leaf_paths,
    set_hyperparams,
)
from harness.core.tasks import Task

Path = tuple[Any, ...]
Params = dict[str, Any]


def flatten(tree: Params, prefix: Path = ()) -> dict[Path, jax.Array]:
    """{('head', 'bias'): array, ...}: a nested dict's leaves by path tuple."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, prefix + (key,)))
        else:
            flat[prefix + (key,)] = value
    return flat


def unflatten(flat: dict[Path, jax.Array]) -> Params:
    """The inverse of `flatten`."""
    tree: Params = {}
    for path, value in flat.items():
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return tree


def loss(trainable: Params, frozen: Params, x: jax.Array, y: jax.Array, *, forward, loss: str):
    """(loss, metrics) of the full model; differentiated in its first argument only."""
    params = unflatten({**flatten(frozen), **flatten(trainable)})
    return loss_and_metrics(forward(params, x), y, loss)


@dataclass(frozen=True)
class ReferenceProgram:
    """Static half of a reference run; hashable, so it is a static jit argument."""

    treedef: Any  # of (params, opt_state)
    frozen: tuple[Path, ...]  # frozen parameter paths
    forward: Any  # the model's `reference_forward(params, x)` (harness/core/models/__init__.py)
    tx: optax.GradientTransformation  # harness.core.program.base_transform(name): one object per process
    loss: str = "mse"  # the task's loss metric

    def split(self, state) -> tuple[Params, Params, Any]:
        """(trainable, frozen, opt_state) from the flat state."""
        params, opt_state = jax.tree.unflatten(self.treedef, state)
        flat = flatten(params)
        trainable = unflatten({p: v for p, v in flat.items() if p not in self.frozen})
        frozen = unflatten({p: v for p, v in flat.items() if p in self.frozen})
        return trainable, frozen, opt_state

    def value_and_grad(self, trainable: Params, frozen: Params, x, y):
        """((mse, metrics), grads): grads for the trainable params only, the metrics carried as aux."""
        return jax.value_and_grad(functools.partial(loss, forward=self.forward, loss=self.loss),
                                  has_aux=True)(trainable, frozen, x, y)

    def step(self, state, x, y):
        """One optimizer step; returns the step's metrics before the update, as the nnx methods do."""
        trainable, frozen, opt_state = self.split(state)
        (_, metrics), grads = self.value_and_grad(trainable, frozen, x, y)
        updates, opt_state = self.tx.update(grads, opt_state, trainable)
        trainable = optax.apply_updates(trainable, updates)
        params = unflatten({**flatten(frozen), **flatten(trainable)})
        return tuple(jax.tree.leaves((params, opt_state))), metrics

    def finish(self, state, steps: int):
        """After the scan: nothing to do, optax keeps the only step count here."""
        return state

    def grad_paths(self, state, x, y) -> list[str]:
        """Parameter paths the gradient tree covers, found by tracing (no compute)."""
        grads = jax.eval_shape(lambda s: self.value_and_grad(*self.split(s)[:2], x, y)[1], state)
        return [path_str(p) for p in flatten(grads)]

    def predict(self, state, x):
        """The model's output for `x` at `state`."""
        params, _ = jax.tree.unflatten(self.treedef, state)
        return self.forward(params, x)


def initial_params(spec: Config, task: Task) -> tuple[Params, tuple[Path, ...], dict | None]:
    """The nnx model's initial Params as a nested dict, the frozen paths (mask checked as nnx does), pretraining."""
    model, pretraining = initial_model(spec, task)
    mask = frozen_mask(model, spec.freeze)
    cast_frozen(model, mask, spec.freeze.frozen_dtype)
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    return params, tuple(p for p in flatten(params) if mask(p)), pretraining


def build_reference(spec: Config, task: Task) -> Built:
    """Program and initial flat state for a reference run of `spec`: the model needs a plain-JAX forward."""
    forward = getattr(spec.model.load(), "reference_forward", None)
    if forward is None:
        raise ConfigError("method", f"reference trains a plain-JAX forward and model {spec.model.name!r} has none "
                                    "(a `reference_forward(params, x)` attribute of its target); use another method")
    params, frozen, pretraining = initial_params(spec, task)
    tx = base_transform(spec.optimizer.name)
    trainable = unflatten({p: v for p, v in flatten(params).items() if p not in frozen})
    state_tree = (params, tx.init(trainable))
    leaves, treedef = jax.tree.flatten(state_tree)
    paths = leaf_paths(state_tree)
    leaves = tuple(set_hyperparams(leaves, paths, hyperparams(spec.optimizer)))
    program = ReferenceProgram(treedef, frozen, forward, tx, task.loss)
    names = [path_str(p[1:]) for p in paths if p[0] == 0]
    frozen_names = [path_str(p) for p in frozen]
    return Built(
        program=program,
        state=leaves,
        paths=paths,
        frozen_paths=[n for n in names if n in frozen_names],
        trainable_paths=[n for n in names if n not in frozen_names],
        grad_paths=program.grad_paths(leaves, task.data.x_train, task.data.y_train),
        pretraining=pretraining,
    )
