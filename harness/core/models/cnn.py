"""A small convolutional network for inputs of any spatial rank: images (height, width, channels) or
sequences (length, channels).

`backbone`: convolution blocks (convolution, ReLU, 2x max pooling), then, with `hidden`, a dense
ReLU layer; `head`: a dense layer. With `lora_rank`, the dense layers take LoRA adapters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import jax
import jax.numpy as jnp
from flax import nnx

from harness.core.checks import ConfigError, at_least, check
from harness.core.models import dense as dense_forward
from harness.core.models.blocks import ConvBlock, adapter_rngs, dense


@dataclass
class CNNSettings:
    """conf/model/cnn.yaml and cnn1d.yaml hold the values."""

    channels: list[int]  # output channels of each convolution block
    kernel: int  # the convolutions' width along each spatial axis
    hidden: Optional[int]  # units of a dense layer after the convolutions; null: none, the head reads them
    lora_rank: Optional[int]  # LoRA adapters of this rank on the dense layers

    def __post_init__(self) -> None:
        check(len(self.channels) >= 1 and all(c >= 1 for c in self.channels), "channels",
              f"must list one or more channel counts >= 1, got {list(self.channels)}")
        at_least(self.kernel, 1, "kernel")
        if self.hidden is not None:
            at_least(self.hidden, 1, "hidden")
        if self.lora_rank is not None:
            check(self.lora_rank >= 1, "lora_rank", f"must be >= 1, got {self.lora_rank}")


def flatten(x: jax.Array) -> jax.Array:
    return x.reshape(x.shape[0], -1)


class CNN(nnx.Module):
    settings = CNNSettings

    def __init__(self, channels: list[int], kernel: int, hidden: int | None = None, lora_rank: int | None = None, *,
                 in_shape: tuple[int, ...], out_dim: int, rngs: nnx.Rngs):
        *space, colours = in_shape
        if any(size < 2 ** len(channels) for size in space):
            raise ConfigError("channels", f"{len(channels)} blocks halve each spatial axis {len(channels)} times; "
                                          f"inputs of shape {tuple(in_shape)} are too small")
        lora_rngs = adapter_rngs(rngs, lora_rank)
        blocks = [ConvBlock(c_in, c_out, kernel, len(space), rngs=rngs)
                  for c_in, c_out in zip([colours, *channels], channels)]
        features = channels[-1] * math.prod(size // 2 ** len(channels) for size in space)
        layers = [*blocks, flatten]
        if hidden is not None:
            layers += [dense(features, hidden, lora_rank, rngs, lora_rngs), nnx.relu]
        self.backbone = nnx.Sequential(*layers)
        self.head = dense(hidden or features, out_dim, lora_rank, rngs, lora_rngs)

    def __call__(self, x):
        return self.head(self.backbone(x))

    @staticmethod
    def reference_forward(params: dict, x: jax.Array) -> jax.Array:
        """The same forward in plain JAX (lax.conv_general_dilated, lax.reduce_window)."""
        layers = params["backbone"]["layers"]
        spatial = x.ndim - 2
        axes = "HW"[:spatial] if spatial <= 2 else "DHW"
        numbers = (f"N{axes}C", f"{axes}IO", f"N{axes}C")
        for index in sorted(i for i in layers if "conv" in layers[i]):
            conv = layers[index]["conv"]
            kernel = conv["kernel"].astype(jnp.promote_types(x.dtype, conv["kernel"].dtype))  # as nnx.Conv promotes
            x = jax.lax.conv_general_dilated(x.astype(kernel.dtype), kernel, (1,) * spatial, "SAME",
                                             dimension_numbers=numbers)
            x = jax.nn.relu(x + conv["bias"])
            window = (1, *(2,) * spatial, 1)
            x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, window, "VALID")
        x = flatten(x)
        for index in sorted(i for i in layers if "conv" not in layers[i]):  # the hidden layer, if any
            x = jax.nn.relu(dense_forward(layers[index], x))
        return dense_forward(params["head"], x)
