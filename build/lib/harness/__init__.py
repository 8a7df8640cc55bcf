"""A benchmark harness for parameter freezing in flax.nnx."""

__all__ = ["FrozenAttr", "frozen_kernel_unchanged"]


def __getattr__(name: str):
    # Lazy: `harness --help` and config errors answer without importing JAX.
    if name in __all__:
        from harness import frozen_attribute

        return getattr(frozen_attribute, name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
