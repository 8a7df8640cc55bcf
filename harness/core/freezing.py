"""Freeze masks (what is frozen) and freeze methods (how it is kept from training).

A method is a small frozen dataclass: hashable, so it can be a static argument
of the jitted training program, and equal across runs with the same settings,
so a sweep compiles once per shape. Each answers four questions:

- `prepare`: where do frozen arrays live (Params, plain attributes, a Variable)?
- `wrt`: which Variables does the optimizer keep state for?
- `argnums`: which Variables does `nnx.value_and_grad` differentiate?
- `transform` / `filter_grads`: what happens to gradients on their way to optax?

Adding a method is one class here and one YAML file in conf/method/ that names
it with `_target_`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from harness.core.checks import ConfigError
from harness.core.config import FreezeConfig
from harness.core.metrics import loss_and_metrics


def path_str(path: tuple[Any, ...]) -> str:
    """('backbone', 'layers', 0, 'kernel') -> 'backbone/layers/0/kernel'."""
    return "/".join(str(p) for p in path)


@dataclass(frozen=True)
class PathMatch:
    """An nnx filter: true for paths in which any regex pattern is found."""

    patterns: tuple[str, ...]

    def __call__(self, path: tuple[Any, ...], value: Any = None) -> bool:
        text = path_str(path)
        return any(re.search(p, text) for p in self.patterns)


def param_paths(model: nnx.Module) -> list[str]:
    return [path_str(p) for p, _ in nnx.to_flat_state(nnx.state(model, nnx.Param))]


def frozen_mask(model: nnx.Module, freeze: FreezeConfig) -> PathMatch:
    """The mask for `model`; a mask that freezes nothing or everything it names is an error."""
    for pattern in freeze.patterns:
        try:
            re.compile(pattern)
        except re.error as err:
            raise ConfigError("freeze.patterns", f"{pattern!r} is not a valid regex: {err}") from None
    if freeze.adapters and not nnx.to_flat_state(nnx.state(model, nnx.LoRAParam)):
        raise ConfigError("freeze", f"{freeze.name} freezes the base weights and trains LoRA adapters, and the model "
                                    "has none (nnx.LoRAParam): give it adapters, e.g. model=mlp model.lora_rank=4")
    mask = PathMatch(tuple(freeze.patterns))
    paths = param_paths(model)
    frozen = [p for p in paths if mask(tuple(p.split("/")))]
    if freeze.patterns and not frozen:
        raise ConfigError(
            "freeze", f"mask {freeze.name!r} {list(freeze.patterns)} matches no parameter; parameters: {paths}"
        )
    if len(frozen) == len(paths):
        raise ConfigError(
            "freeze",
            f"mask {freeze.name!r} {list(freeze.patterns)} freezes every parameter, leaving nothing to train; "
            f"parameters: {paths}",
        )
    return mask


def cast_frozen(model: nnx.Module, frozen: PathMatch, dtype: str | None) -> None:
    """Casts the frozen Params to `dtype` in place (freeze.frozen_dtype); None leaves them as they are."""
    if dtype is None:
        return
    for _, variable in nnx.to_flat_state(nnx.state(model, nnx.All(nnx.Param, frozen))):
        variable.set_value(variable.get_value().astype(dtype))


class FrozenVariable(nnx.Variable):
    """Non-trainable state: a Variable that the nnx.Param filter does not match."""


def _loss(model: nnx.Module, x: jax.Array, y: jax.Array, loss: str):
    return loss_and_metrics(model(x), y, loss)


def _replace_frozen(model: nnx.Module, frozen: PathMatch, wrap: Callable[[jax.Array], Any]) -> None:
    for path, _ in nnx.to_flat_state(nnx.state(model, nnx.All(nnx.Param, frozen))):
        parent = functools.reduce(lambda node, key: node[key] if isinstance(key, int) else getattr(node, key),
                                  path[:-1], model)
        setattr(parent, path[-1], wrap(getattr(parent, path[-1])[...]))


@dataclass(frozen=True)
class FreezeMethod:
    """Base: gradients for every Param, optimizer over every Param, nothing done to them."""

    frozen: PathMatch
    loss: str = "mse"  # the task's loss metric (harness.core.metrics), the one differentiated

    @property
    def trainable(self):
        return nnx.All(nnx.Param, nnx.Not(self.frozen))

    def prepare(self, model: nnx.Module) -> None:
        """Moves frozen arrays to where this method keeps them (in place)."""

    @property
    def wrt(self):
        return nnx.Param

    @property
    def argnums(self):
        return 0

    def transform(self, tx: optax.GradientTransformation) -> optax.GradientTransformation:
        return tx

    def filter_grads(self, grads: nnx.State) -> nnx.State:
        return grads

    def value_and_grad(self, model: nnx.Module, x: jax.Array, y: jax.Array):
        """((loss, metrics), grads): the loss is differentiated, the metrics carried as aux."""
        return nnx.value_and_grad(_loss, argnums=self.argnums, has_aux=True)(model, x, y, self.loss)

    def step(self, model: nnx.Module, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array):
        """One training step in place; returns the step's metrics before the update, as the seed does."""
        (_, metrics), grads = self.value_and_grad(model, x, y)
        optimizer.update(model, self.filter_grads(grads))
        return metrics


@dataclass(frozen=True)
class DiffState(FreezeMethod):
    """The first seed's fix: one trainable filter for both the gradient and the optimizer."""

    @property
    def wrt(self):
        return self.trainable

    @property
    def argnums(self):
        return nnx.DiffState(0, self.trainable)


@dataclass(frozen=True)
class WrtOnly(FreezeMethod):
    """The first seed's original code: gradients for every Param, optimizer restricted by `wrt`."""

    @property
    def wrt(self):
        return self.trainable


@dataclass(frozen=True)
class Attribute(FreezeMethod):
    """The second seed's convention: frozen arrays become plain jax.Array attributes."""

    def prepare(self, model: nnx.Module) -> None:
        _replace_frozen(model, self.frozen, lambda value: value)


@dataclass(frozen=True)
class Variable(FreezeMethod):
    """Frozen arrays live in `FrozenVariable`, an nnx.Variable that is not a Param."""

    def prepare(self, model: nnx.Module) -> None:
        _replace_frozen(model, self.frozen, FrozenVariable)


@dataclass(frozen=True)
class JaxSplit(DiffState):
    """What the Flax maintainers advise (flax issue #5116): split the model, `jax.value_and_grad` over the
    trainable state only, `nnx.merge` inside the loss; no nnx transform in the step.

    The optimizer keeps state for the trainable filter alone, as with `diffstate`.
    """

    def value_and_grad(self, model: nnx.Module, x: jax.Array, y: jax.Array):
        graphdef, trainable, rest = nnx.split(model, self.trainable, ...)

        def loss(trainable):
            return _loss(nnx.merge(graphdef, trainable, rest), x, y, self.loss)

        return jax.value_and_grad(loss, has_aux=True)(trainable)


@dataclass(frozen=True)
class PartitionLabels:
    """optax.partition labels: 'frozen' or 'train' per parameter path."""

    frozen: PathMatch

    def __call__(self, params):
        return nnx.map_state(lambda path, _: "frozen" if self.frozen(path) else "train", params)


@dataclass(frozen=True)
class OptaxPartition(FreezeMethod):
    """Optimizer over every Param; frozen ones routed to `optax.set_to_zero()`."""

    def transform(self, tx: optax.GradientTransformation) -> optax.GradientTransformation:
        return _partition(tx, PartitionLabels(self.frozen))


@functools.cache
def _partition(tx: optax.GradientTransformation, labels: PartitionLabels) -> optax.GradientTransformation:
    # Cached: a new transform object is new static data and would force a recompile.
    return optax.partition({"train": tx, "frozen": optax.set_to_zero()}, labels)


@dataclass(frozen=True)
class StopGradient(FreezeMethod):
    """The naive way: zero the frozen gradients, keep the optimizer over every Param.

    AdamW's weight decay still moves the "frozen" parameters; the harness shows it as drift.
    """

    def filter_grads(self, grads: nnx.State) -> nnx.State:
        return nnx.map_state(
            lambda path, value: jax.tree.map(jnp.zeros_like, value) if self.frozen(path) else value, grads
        )
