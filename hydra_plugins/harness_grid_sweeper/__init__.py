"""Hydra finds the default sweeper's class here (plugins must live under `hydra_plugins`)."""
