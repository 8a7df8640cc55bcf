"""A small decoder-only transformer over token sequences: token embedding (nnx.Embed), learnt positions,
causal pre-norm blocks (nnx.MultiHeadAttention, nnx.LayerNorm, an MLP), a dense head on the last token.

`backbone`: `embed`, `position`, `layers` (the blocks), `norm`; `head`. With `lora_rank`, the
attention projections, the MLPs and the head take LoRA adapters. `vocab`, the number of input
tokens, comes from the task.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import jax
from flax import nnx

from harness.core.checks import ConfigError, at_least, check
from harness.core.models.blocks import Block, adapter_rngs, dense


@dataclass
class TransformerSettings:
    """conf/model/transformer.yaml holds the values."""

    dim: int
    depth: int
    heads: int
    hidden: int
    lora_rank: Optional[int]

    def __post_init__(self) -> None:
        for name in ("dim", "depth", "heads", "hidden"):
            at_least(getattr(self, name), 1, name)
        check(self.dim % self.heads == 0, "heads", f"must divide model.dim={self.dim}, got {self.heads}")
        if self.lora_rank is not None:
            check(1 <= self.lora_rank <= self.dim, "lora_rank", f"must be in [1, model.dim={self.dim}], "
                                                                f"got {self.lora_rank}")


class Backbone(nnx.Module):
    def __init__(self, vocab, length, dim, depth, heads, hidden, lora_rank, *, rngs, lora_rngs):
        self.embed = nnx.Embed(vocab, dim, rngs=rngs)
        self.position = nnx.Param(jax.random.normal(rngs.params(), (length, dim)) * 0.02)
        self.layers = nnx.List([Block(dim, heads, hidden, lora_rank, rngs=rngs, lora_rngs=lora_rngs)
                                for _ in range(depth)])
        self.norm = nnx.LayerNorm(dim, rngs=rngs)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        x = self.embed(tokens) + self.position[...]
        for block in self.layers:
            x = block(x, causal=True)
        return self.norm(x[:, -1])


class Transformer(nnx.Module):
    settings = TransformerSettings

    def __init__(self, dim: int, depth: int, heads: int, hidden: int, lora_rank: int | None = None, *,
                 in_shape: tuple[int, ...], out_dim: int, vocab: int | None, rngs: nnx.Rngs):
        if len(in_shape) != 1 or vocab is None:
            raise ConfigError("_target_", f"takes integer token sequences of shape (length,) from a task with a "
                                          f"vocab, got inputs of shape {tuple(in_shape)} and vocab {vocab}")
        lora_rngs = adapter_rngs(rngs, lora_rank)
        self.backbone = Backbone(vocab, in_shape[0], dim, depth, heads, hidden, lora_rank, rngs=rngs,
                                 lora_rngs=lora_rngs)
        self.head = dense(dim, out_dim, lora_rank, rngs, lora_rngs)

    def __call__(self, tokens):
        return self.head(self.backbone(tokens))
