"""A model of mine: one convolution (the backbone), max pooling, a dense head."""

from flax import nnx


class TinyCNN(nnx.Module):
    def __init__(self, channels: int = 8, *, in_shape, out_dim, rngs: nnx.Rngs):
        height, width, colours = in_shape
        self.backbone = nnx.Conv(colours, channels, kernel_size=(3, 3), rngs=rngs)
        self.head = nnx.Linear(channels * (height // 2) * (width // 2), out_dim, rngs=rngs)

    def __call__(self, x):
        features = nnx.max_pool(nnx.relu(self.backbone(x)), window_shape=(2, 2), strides=(2, 2))
        return self.head(features.reshape(features.shape[0], -1))
