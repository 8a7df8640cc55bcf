"""A benchmark harness for parameter freezing in flax.nnx.

Three wings, each importing only the ones before it: `harness.core` (one run: config
schema, components, the JAX program, timing), `harness.jobs` (Hydra jobs and sweeps,
records on disk, W&B, Slurm) and `harness.analysis` (records as pandas DataFrames,
findings, reports, comparisons; no JAX). The names below are the package's API,
imported lazily: `harness --help` and config errors answer without importing JAX.
"""

_API = {
    "spec_from_overrides": "harness.jobs.compose",  # a validated Config, composed as the command line would
    "Config": "harness.core.config",
    "ConfigError": "harness.core.config",
    "execute": "harness.core.run",  # one run: Config in, plain measurements out
    "execute_vectorized": "harness.core.run",
    "load_records": "harness.analysis.frames",  # a sweep's records as one DataFrame
    # The second seed's example of a frozen array kept as a plain attribute.
    "FrozenAttr": "harness.core.frozen_attribute",
    "frozen_kernel_unchanged": "harness.core.frozen_attribute",
}
__all__ = list(_API)


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
