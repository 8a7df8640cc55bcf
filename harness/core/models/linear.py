"""The seed's model: one `nnx.Linear`, its kernel optionally set to a "loaded pretrained" value."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import jax.numpy as jnp
from flax import nnx

from harness.core.models import dense


@dataclass
class LinearSettings:
    """conf/model/linear.yaml holds the values."""

    pretrained_kernel: Optional[float]  # every kernel entry set to this value; null keeps nnx's init


def linear(pretrained_kernel: float | None, *, in_shape: tuple[int, ...], out_dim: int, rngs: nnx.Rngs) -> nnx.Linear:
    """`nnx.Linear(inputs, out_dim)` over the flattened input."""
    layer = nnx.Linear(math.prod(in_shape), out_dim, rngs=rngs)
    if pretrained_kernel is not None:
        layer.kernel[...] = jnp.full(layer.kernel[...].shape, pretrained_kernel)
    return layer


linear.settings = LinearSettings
linear.reference_forward = dense
