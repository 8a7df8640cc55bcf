"""The second seed's problem: a frozen array kept as a plain attribute, invisible to the Param filter.

>>> import jax.numpy as jnp
>>> frozen_kernel_unchanged(0, jnp.ones(3), 4, 2.0)[0]
Array(1., dtype=float32)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class FrozenAttr(nnx.Module):
    """x @ kernel + frozen_bias, where only `kernel` is an nnx.Param."""

    def __init__(self, in_features: int, out_features: int, frozen_bias_value: float, rngs: nnx.Rngs):
        key = rngs.params()
        self.kernel = nnx.Param(jax.random.normal(key, (in_features, out_features)) * (1.0 / jnp.sqrt(in_features)))
        self.frozen_bias = jnp.ones((out_features,)) * frozen_bias_value  # plain array: not a Param

    def __call__(self, x):
        return x @ self.kernel + self.frozen_bias


def frozen_kernel_unchanged(seed, x, features, frozen_bias_value) -> jax.Array:
    """[number of Param leaves (1.0), ||kernel||, ||frozen_bias||] for a fresh FrozenAttr."""
    model = FrozenAttr(
        in_features=x.shape[-1],
        out_features=int(features),
        frozen_bias_value=float(frozen_bias_value),
        rngs=nnx.Rngs(int(seed)),
    )
    n_param_leaves = len(jax.tree_util.tree_leaves(nnx.state(model, nnx.Param)))
    kernel_norm = jnp.linalg.norm(model.kernel[...])
    frozen_norm = jnp.linalg.norm(model.frozen_bias)
    return jnp.array([float(n_param_leaves), float(kernel_norm), float(frozen_norm)])
