"""Hydra finds `hydra/launcher=slurm`'s launcher class here (plugins must live under `hydra_plugins`)."""
