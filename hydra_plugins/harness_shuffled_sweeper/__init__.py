"""Hydra finds `hydra/sweeper=shuffled`'s sweeper class here (plugins must live under `hydra_plugins`)."""
