"""Models: what a run trains, and the contract a model (built-in or your own) keeps.

A model is a callable named by `model._target_` (harness/core/components.py), usually an
`nnx.Module` class, called with its settings and

    in_shape   the shape of one input (the task's x_train.shape[1:])
    out_dim    outputs: regression targets, or classes
    vocab      only to a model whose signature takes it: the task's number of input tokens
    rngs       an nnx.Rngs: its default stream draws the parameters, its `lora` stream any LoRA
               adapters (so a model with adapters starts from the same base weights as without)

and returns an `nnx.Module` mapping a batch of inputs to a batch of outputs. What the harness
does with it follows from what it has: a `backbone` submodule can be pretrained on a task's
source task (and `freeze=backbone` freezes it), `nnx.LoRAParam` adapters can train alone
(`freeze=lora`), and `method=reference` needs a plain-JAX forward: a `reference_forward(params,
x)` attribute of the target, `params` being the model's `nnx.Param` values as a nested dict.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from harness.core.checks import ConfigError
from harness.core.components import ModelSpec, signature

LORA_STREAM = 0x10A  # folded into the run's seed: the adapters' own key


def rngs_for(seed: int) -> nnx.Rngs:
    """The Rngs a model is built from: `nnx.Rngs(seed)` plus a `lora` stream apart from it."""
    return nnx.Rngs(seed, lora=jax.random.fold_in(jax.random.key(seed), LORA_STREAM))


def build_model(spec: ModelSpec, seed: int, in_shape: tuple[int, ...] = (1,), out_dim: int = 1,
                vocab: int | None = None) -> nnx.Module:
    """A fresh model `spec` for inputs of `in_shape`; a ConfigError naming the model when it is not an nnx.Module."""
    target = spec.load()
    extra = {"vocab": vocab} if "vocab" in (signature(target) or {}) else {}
    try:
        model = target(**spec.settings, in_shape=tuple(in_shape), out_dim=out_dim, rngs=rngs_for(seed), **extra)
    except ConfigError as err:
        raise ConfigError(f"model.{err.field}", err.message) from None
    if not isinstance(model, nnx.Module):
        raise ConfigError("model._target_", f"{spec.target} returned a {type(model).__name__}, not an nnx.Module")
    return model


def check_outputs(model: nnx.Module, name: str, task_name: str, x: np.ndarray, outputs: int) -> None:
    """The model takes the task's inputs and gives `outputs` per row; else one line naming both (no compute)."""
    try:
        shape = jax.eval_shape(lambda m, v: m(v), model, jax.ShapeDtypeStruct((2, *x.shape[1:]), x.dtype)).shape
    except Exception as err:  # noqa: BLE001 - any failure of the user's forward on these inputs
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ConfigError("model", f"model {name!r} cannot take task {task_name!r}'s inputs (one row: shape "
                                   f"{tuple(x.shape[1:])}): {type(err).__name__}: {first}") from None
    if tuple(shape) != (2, outputs):
        raise ConfigError("model", f"model {name!r} gives outputs of shape {tuple(shape[1:])} per row; task "
                                   f"{task_name!r} needs ({outputs},): build it with out_dim")


def dense(params: dict, x: jax.Array) -> jax.Array:
    """nnx.Linear's forward in plain JAX, x @ kernel + bias, plus nnx.LoRALinear's adapters when it has them."""
    out = x @ params["kernel"] + params["bias"]
    if "lora" in params:
        out = out + x @ params["lora"]["lora_a"] @ params["lora"]["lora_b"]
    return out


def flat(x: jax.Array) -> jax.Array:
    """(rows, ...) -> (rows, features): a dense model takes any input shape."""
    return x if x.ndim == 2 else jnp.reshape(x, (x.shape[0], -1))
