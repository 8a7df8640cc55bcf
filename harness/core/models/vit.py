"""A small ViT-style model: patch embedding, learnt positions, pre-norm transformer blocks
(nnx.MultiHeadAttention, nnx.LayerNorm, an MLP), mean pooling, a dense head.

`backbone`: `embed` (patches to vectors), `position`, `layers` (the blocks), `norm`; `head`.
With `lora_rank`, the attention projections, the MLPs and the head take LoRA adapters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import jax
import jax.numpy as jnp
from flax import nnx

from harness.core.checks import ConfigError, at_least, check
from harness.core.models.blocks import Block, adapter_rngs, dense


@dataclass
class ViTSettings:
    """conf/model/vit.yaml holds the values."""

    patch: int  # patches of patch x patch pixels
    dim: int  # width of the token vectors
    depth: int  # transformer blocks
    heads: int  # attention heads (dim must divide by it)
    hidden: int  # units of each block's MLP
    lora_rank: Optional[int]

    def __post_init__(self) -> None:
        for name in ("patch", "dim", "depth", "heads", "hidden"):
            at_least(getattr(self, name), 1, name)
        check(self.dim % self.heads == 0, "heads", f"must divide model.dim={self.dim}, got {self.heads}")
        if self.lora_rank is not None:
            check(1 <= self.lora_rank <= self.dim, "lora_rank", f"must be in [1, model.dim={self.dim}], "
                                                                f"got {self.lora_rank}")


class Backbone(nnx.Module):
    """Image (height, width, colours) -> patches -> tokens plus positions -> blocks -> the tokens' mean."""

    def __init__(self, in_shape, patch, dim, depth, heads, hidden, lora_rank, *, rngs, lora_rngs):
        height, width, colours = in_shape
        if height % patch or width % patch:
            raise ConfigError("patch", f"must divide the image's height and width {height, width}, got {patch}")
        self.patch, self.grid = patch, (height // patch, width // patch)
        self.embed = nnx.Linear(patch * patch * colours, dim, rngs=rngs)
        self.position = nnx.Param(jax.random.normal(rngs.params(), (math.prod(self.grid), dim)) * 0.02)
        self.layers = nnx.List([Block(dim, heads, hidden, lora_rank, rngs=rngs, lora_rngs=lora_rngs)
                                for _ in range(depth)])
        self.norm = nnx.LayerNorm(dim, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        rows, (gh, gw), p = x.shape[0], self.grid, self.patch
        patches = x.reshape(rows, gh, p, gw, p, -1).transpose(0, 1, 3, 2, 4, 5).reshape(rows, gh * gw, -1)
        x = self.embed(patches) + self.position[...]
        for block in self.layers:
            x = block(x)
        return jnp.mean(self.norm(x), axis=1)


class ViT(nnx.Module):
    settings = ViTSettings

    def __init__(self, patch: int, dim: int, depth: int, heads: int, hidden: int, lora_rank: int | None = None, *,
                 in_shape: tuple[int, ...], out_dim: int, rngs: nnx.Rngs):
        if len(in_shape) != 3:
            raise ConfigError("_target_", f"takes images of shape (height, width, colours), got {tuple(in_shape)}")
        lora_rngs = adapter_rngs(rngs, lora_rank)
        self.backbone = Backbone(in_shape, patch, dim, depth, heads, hidden, lora_rank, rngs=rngs,
                                 lora_rngs=lora_rngs)
        self.head = dense(dim, out_dim, lora_rank, rngs, lora_rngs)

    def __call__(self, x):
        return self.head(self.backbone(x))
