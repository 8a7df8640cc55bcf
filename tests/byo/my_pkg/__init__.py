"""A user's own package, outside the harness: docs/own-model.md's example."""
