"""Models the harness trains: the seed's nnx.Linear(1, 1) and a backbone + head MLP."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from harness.core.config import ModelConfig


class MLP(nnx.Module):
    """in_dim -> width (tanh) x depth -> out_dim, split into `backbone` and `head` for freeze masks.

    With `lora_rank`, every Linear is an nnx.LoRALinear over the same base kernel and bias as
    without it (the adapters draw from their own stream), so a LoRA run starts from the same
    base model; `lora_b` starts at zero, so does the adapters' contribution.
    """

    def __init__(self, depth: int, width: int, *, rngs: nnx.Rngs, lora_rank: int | None = None,
                 lora_rngs: nnx.Rngs | None = None, in_dim: int = 1, out_dim: int = 1):
        def linear(n_in: int, n_out: int):
            base = nnx.Linear(n_in, n_out, rngs=rngs)
            if lora_rank is None:
                return base
            layer = nnx.LoRALinear(n_in, n_out, lora_rank=lora_rank, rngs=lora_rngs)
            layer.kernel[...], layer.bias[...] = base.kernel[...], base.bias[...]
            return layer

        layers = []
        for i in range(depth):
            layers += [linear(in_dim if i == 0 else width, width), nnx.tanh]
        self.backbone = nnx.Sequential(*layers)
        self.head = linear(width, out_dim)

    def __call__(self, x):
        return self.head(self.backbone(x))


def linear(cfg: ModelConfig, rngs: nnx.Rngs, seed: int, in_dim: int, out_dim: int) -> nnx.Module:
    """The seed's model, `nnx.Linear(in_dim, out_dim)`, its kernel optionally set to `pretrained_kernel`."""
    layer = nnx.Linear(in_dim, out_dim, rngs=rngs)
    if cfg.pretrained_kernel is not None:
        layer.kernel[...] = jnp.full((in_dim, out_dim), cfg.pretrained_kernel)
    return layer


def mlp(cfg: ModelConfig, rngs: nnx.Rngs, seed: int, in_dim: int, out_dim: int) -> nnx.Module:
    """`MLP` of `cfg.depth` x `cfg.width`, with LoRA adapters of `cfg.lora_rank` when set (their own key)."""
    return MLP(cfg.depth, cfg.width, rngs=rngs, lora_rank=cfg.lora_rank, in_dim=in_dim, out_dim=out_dim,
               lora_rngs=nnx.Rngs(jax.random.fold_in(jax.random.key(seed), 0x10A)))


MODELS = {"linear": linear, "mlp": mlp}  # model.name -> builder (harness.core.config.MODELS lists the names)


def build_model(cfg: ModelConfig, seed: int, in_dim: int = 1, out_dim: int = 1) -> nnx.Module:
    """A fresh model `cfg.name` from `nnx.Rngs(seed)` for `in_dim` inputs (the task's)."""
    return MODELS[cfg.name](cfg, nnx.Rngs(seed), seed, in_dim, out_dim)
