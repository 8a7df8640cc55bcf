"""The trials of a tuning study: quasi-random draws from a search space, as overrides (`optimizer.lr=0.0031`).

MLCommons AlgoPerf's external tuning ruleset: every submission gets the same budget of quasi-random
trials from one search space. Here the draws depend on the space, the number of trials, the sampler
and the study's seed only, never on the method: every method of a sweep gets the same trials, so
that their trials pair.

    >>> from harness.core.config import Dimension
    >>> space = {"lr": Dimension(1e-4, 1e-1), "one_minus_b1": Dimension(0.01, 0.5)}
    >>> for trial in draws(space, 3, "halton", seed=0):
    ...     print(trial)
    ['optimizer.lr=0.000198319', 'optimizer.b1=0.987652']
    ['optimizer.lr=0.00627141', 'optimizer.b1=0.832411']
    ['optimizer.lr=0.00111523', 'optimizer.b1=0.954509']
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from harness.core.config import TUNABLE, Dimension


def unit_draws(dimensions: int, trials: int, sampler: str, seed: int) -> np.ndarray:
    """(trials, dimensions) points in [0, 1), quasi-random (scrambled Halton or Sobol, seeded)."""
    from scipy.stats import qmc

    engine = (qmc.Halton if sampler == "halton" else qmc.Sobol)(d=dimensions, scramble=True, seed=seed)
    with warnings.catch_warnings():  # Sobol's balance wants 2^k points; any count is still quasi-random
        warnings.simplefilter("ignore", UserWarning)
        return engine.random(trials)


def value(dimension: Dimension, u: float) -> float:
    """The value at `u` in [0, 1) of `dimension`'s range, on its scale."""
    if dimension.scale == "log":
        return math.exp(math.log(dimension.low) + u * (math.log(dimension.high) - math.log(dimension.low)))
    return dimension.low + u * (dimension.high - dimension.low)


def position(dimension: Dimension, v: float) -> float:
    """Where `v` lies in `dimension`'s range, on its scale: 0 at low, 1 at high."""
    if dimension.scale == "log":
        return (math.log(v) - math.log(dimension.low)) / (math.log(dimension.high) - math.log(dimension.low))
    return (v - dimension.low) / (dimension.high - dimension.low)


def override(name: str, v: float) -> str:
    """The override that sets a searched value: `one_minus_b1` sets optimizer.b1 to 1 - v. Six significant
    digits: the record's value is the one the override says."""
    return f"{TUNABLE[name]}={(1.0 - v if name.startswith('one_minus_') else v):.6g}"


def draws(space: dict[str, Dimension], trials: int, sampler: str, seed: int) -> list[list[str]]:
    """`trials` draws from `space` ({name: Dimension}), each as its overrides."""
    names = list(space)
    points = unit_draws(len(names), trials, sampler, seed)
    return [[override(name, value(space[name], float(u))) for name, u in zip(names, point)] for point in points]
