"""A model of mine: one convolution (the backbone), max pooling, a dense head."""

import jax.numpy as jnp
from flax import nnx


class TinyCNN(nnx.Module):
    def __init__(self, channels: int = 8, *, in_shape, out_dim, rngs: nnx.Rngs):
        height, width, colours = in_shape
        self.backbone = nnx.Conv(colours, channels, kernel_size=(3, 3), rngs=rngs)
        self.head = nnx.Linear(channels * (height // 2) * (width // 2), out_dim, rngs=rngs)

    def __call__(self, x):
        features = nnx.max_pool(nnx.relu(self.backbone(x)), window_shape=(2, 2), strides=(2, 2))
        return self.head(features.reshape(features.shape[0], -1))


class CountingLinear(nnx.Module):
    """A linear model that also holds an integer nnx.Param (a counter someone made a Param)."""

    def __init__(self, *, in_shape, out_dim, rngs: nnx.Rngs):
        self.linear = nnx.Linear(in_shape[-1], out_dim, rngs=rngs)
        self.count = nnx.Param(jnp.zeros((), jnp.int32))

    def __call__(self, x):
        return self.linear(x)
