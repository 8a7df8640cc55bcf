"""The jobs wing: one Hydra job and a sweep (records on disk, W&B, Slurm, the console).

Imports harness.core only; never harness.analysis (the config wires the sweep's report in).
"""
