"""A benchmark harness for parameter freezing in flax.nnx."""
