"""A benchmark harness for parameter freezing in flax.nnx."""

from harness.frozen_attribute import FrozenAttr, frozen_kernel_unchanged

__all__ = ["FrozenAttr", "frozen_kernel_unchanged"]
