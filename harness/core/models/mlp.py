"""A tanh MLP split into `backbone` and `head`, optionally with LoRA adapters on every Linear."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import jax
import jax.numpy as jnp
from flax import nnx

from harness.core.checks import INT32_MAX, at_least, at_most, check
from harness.core.models import dense, flat


@dataclass
class MLPSettings:
    """conf/model/mlp.yaml holds the values."""

    depth: int  # hidden layers in the backbone
    width: int  # hidden units per layer
    lora_rank: Optional[int]  # LoRA adapters of this rank on every Linear (nnx.LoRALinear); null: none

    def __post_init__(self) -> None:
        at_least(self.depth, 1, "depth")
        at_least(self.width, 1, "width")
        if self.lora_rank is not None:
            check(1 <= self.lora_rank <= self.width, "lora_rank",
                  f"must be in [1, model.width={self.width}], got {self.lora_rank}")
        at_most(self.depth, INT32_MAX, "depth", "an array dimension")
        at_most(self.width, INT32_MAX, "width", "an array dimension")


class MLP(nnx.Module):
    """in -> width (tanh) x depth -> out_dim, split into `backbone` and `head` for freeze masks.

    With `lora_rank`, every Linear is an nnx.LoRALinear over the same base kernel and bias as
    without it (the adapters draw from the `lora` stream), so a LoRA run starts from the same
    base model; `lora_b` starts at zero, so does the adapters' contribution.
    """

    settings = MLPSettings

    def __init__(self, depth: int, width: int, lora_rank: int | None = None, *, in_shape: tuple[int, ...],
                 out_dim: int, rngs: nnx.Rngs):
        lora_rngs = nnx.Rngs(rngs.lora.key[...]) if lora_rank is not None else None

        def linear(n_in: int, n_out: int):
            base = nnx.Linear(n_in, n_out, rngs=rngs)
            if lora_rank is None:
                return base
            layer = nnx.LoRALinear(n_in, n_out, lora_rank=lora_rank, rngs=lora_rngs)
            layer.kernel[...], layer.bias[...] = base.kernel[...], base.bias[...]
            return layer

        layers = []
        for i in range(depth):
            layers += [linear(math.prod(in_shape) if i == 0 else width, width), nnx.tanh]
        self.backbone = nnx.Sequential(*layers)
        self.head = linear(width, out_dim)

    def __call__(self, x):
        return self.head(self.backbone(flat(x)))

    @staticmethod
    def reference_forward(params: dict, x: jax.Array) -> jax.Array:
        """The same forward in plain JAX: tanh(dense) for each backbone layer, then the dense head."""
        x = flat(x)
        layers = params["backbone"]["layers"]
        for index in sorted(layers):
            x = jnp.tanh(dense(layers[index], x))
        return dense(params["head"], x)
