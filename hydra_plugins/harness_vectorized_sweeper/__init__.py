"""Hydra finds `hydra/sweeper=vectorized`'s sweeper class here (plugins must live under `hydra_plugins`)."""
