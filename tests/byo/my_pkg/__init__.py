"""A user's own package, outside the harness: the README's "Bring your own model and task" example."""
