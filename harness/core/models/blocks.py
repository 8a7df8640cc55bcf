"""Layers the built-in models share: dense and attention projections that take LoRA adapters, a pre-norm
transformer block, and a convolution block.

A layer with adapters keeps the parameter paths and the base weights of the same layer without
them (the base is drawn from the model's own stream, the adapters from its `lora` stream), so a
LoRA model starts from the same base model, pretrained or not, and `lora_b` starts at zero.
"""

from __future__ import annotations

import math

import jax
from flax import nnx

from harness.core.checks import check


def adapter_rngs(rngs: nnx.Rngs, lora_rank: int | None) -> nnx.Rngs | None:
    """The Rngs adapters draw from: the model's `lora` stream (harness/core/models/__init__.py)."""
    return nnx.Rngs(rngs.lora.key[...]) if lora_rank is not None else None


def check_rank(lora_rank: int, n_in: int, n_out: int) -> None:
    """A rank above both sides of the layer it adapts adds parameters and no expressiveness: refused (a run is
    checked as its shapes are traced, before anything is allocated)."""
    check(1 <= lora_rank <= max(n_in, n_out), "lora_rank",  # build_model names it model.lora_rank
          f"must be in [1, {max(n_in, n_out)}] (the larger side of the {n_in}x{n_out} layer it adapts), "
          f"got {lora_rank}")


def dense(n_in: int, n_out: int, lora_rank: int | None, rngs: nnx.Rngs, lora_rngs: nnx.Rngs | None):
    """nnx.Linear, or an nnx.LoRALinear over the same base kernel and bias when `lora_rank` is set."""
    base = nnx.Linear(n_in, n_out, rngs=rngs)
    if lora_rank is None:
        return base
    check_rank(lora_rank, n_in, n_out)
    layer = nnx.LoRALinear(n_in, n_out, lora_rank=lora_rank, rngs=lora_rngs)
    layer.kernel[...], layer.bias[...] = base.kernel[...], base.bias[...]
    return layer


class LoRALinearGeneral(nnx.LinearGeneral):
    """nnx.LinearGeneral (an attention projection) plus a low-rank adapter over its flattened axes."""

    def __init__(self, base: nnx.LinearGeneral, lora_rank: int, lora_rngs: nnx.Rngs):
        in_features, out_features = tuple(base.in_features), tuple(base.out_features)
        check_rank(lora_rank, math.prod(in_features), math.prod(out_features))
        super().__init__(in_features, out_features, axis=base.axis, rngs=lora_rngs)
        self.kernel[...], self.bias[...] = base.kernel[...], base.bias[...]
        self.lora = nnx.LoRA(math.prod(in_features), lora_rank, math.prod(out_features), rngs=lora_rngs)

    def __call__(self, x: jax.Array, **kwargs) -> jax.Array:
        lead = x.shape[: x.ndim - len(self.in_features)]
        low_rank = self.lora(x.reshape(*lead, math.prod(self.in_features)))
        return super().__call__(x, **kwargs) + low_rank.reshape(*lead, *self.out_features)


def attention(dim: int, heads: int, lora_rank: int | None, rngs: nnx.Rngs,
              lora_rngs: nnx.Rngs | None) -> nnx.MultiHeadAttention:
    """nnx.MultiHeadAttention, with adapters on its query, key, value and output projections when `lora_rank`."""
    layer = nnx.MultiHeadAttention(num_heads=heads, in_features=dim, decode=False, rngs=rngs)
    if lora_rank is not None:
        for name in ("query", "key", "value", "out"):
            setattr(layer, name, LoRALinearGeneral(getattr(layer, name), lora_rank, lora_rngs))
    return layer


class Block(nnx.Module):
    """Pre-norm transformer block: x + attention(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, heads: int, hidden: int, lora_rank: int | None, *, rngs: nnx.Rngs,
                 lora_rngs: nnx.Rngs | None):
        self.norm1 = nnx.LayerNorm(dim, rngs=rngs)
        self.attention = attention(dim, heads, lora_rank, rngs, lora_rngs)
        self.norm2 = nnx.LayerNorm(dim, rngs=rngs)
        self.mlp = nnx.Sequential(dense(dim, hidden, lora_rank, rngs, lora_rngs), nnx.gelu,
                                  dense(hidden, dim, lora_rank, rngs, lora_rngs))

    def __call__(self, x: jax.Array, causal: bool = False) -> jax.Array:
        x = x + self.attention(self.norm1(x), is_causal=causal, deterministic=True)
        return x + self.mlp(self.norm2(x))


class ConvBlock(nnx.Module):
    """Convolution ('SAME'), ReLU, then 2x max pooling along every spatial axis."""

    def __init__(self, c_in: int, c_out: int, kernel: int, spatial: int, *, rngs: nnx.Rngs):
        self.conv = nnx.Conv(c_in, c_out, kernel_size=(kernel,) * spatial, padding="SAME", rngs=rngs)
        self.window = (2,) * spatial

    def __call__(self, x: jax.Array) -> jax.Array:
        return nnx.max_pool(nnx.relu(self.conv(x)), window_shape=self.window, strides=self.window)
