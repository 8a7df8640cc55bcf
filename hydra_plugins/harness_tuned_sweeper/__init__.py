"""Hydra finds `hydra/sweeper=tuned`'s sweeper class here (plugins must live under `hydra_plugins`)."""
