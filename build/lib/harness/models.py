"""Models the harness trains: the seed's nnx.Linear(1, 1) and a backbone + head MLP."""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from harness.config import ModelConfig


class MLP(nnx.Module):
    """1 -> width (tanh) x depth -> 1, split into `backbone` and `head` for freeze masks."""

    def __init__(self, depth: int, width: int, *, rngs: nnx.Rngs):
        layers = []
        for i in range(depth):
            layers += [nnx.Linear(1 if i == 0 else width, width, rngs=rngs), nnx.tanh]
        self.backbone = nnx.Sequential(*layers)
        self.head = nnx.Linear(width, 1, rngs=rngs)

    def __call__(self, x):
        return self.head(self.backbone(x))


def build_model(cfg: ModelConfig, seed: int) -> nnx.Module:
    """A fresh model from `nnx.Rngs(seed)`; the linear one exactly as the seed builds it."""
    rngs = nnx.Rngs(seed)
    if cfg.name == "mlp":
        return MLP(cfg.depth, cfg.width, rngs=rngs)
    layer = nnx.Linear(1, 1, rngs=rngs)
    if cfg.pretrained_kernel is not None:
        layer.kernel[...] = jnp.full((1, 1), cfg.pretrained_kernel)
    return layer
