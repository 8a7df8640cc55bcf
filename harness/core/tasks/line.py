"""The first seed's task: the line y = slope * x + intercept, x ~ U(x_min, x_max), drawn bit for bit as the
seed script draws it.

The seed script has no validation split. Its `n_val` validation rows are drawn apart (numpy, from the
seed), after the seed's own draws: the training and test rows stay those of the seed script, bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import numpy as np
from flax import nnx

from harness.core.checks import INT32_MAX, at_least, at_most, check


@dataclass
class LineSettings:
    """conf/task/seed.yaml holds the values."""

    slope: float
    intercept: float
    n_train: int
    n_test: int
    x_min: float
    x_max: float
    n_val: int = 55  # validation rows, drawn apart from the seed's training and test rows

    def __post_init__(self) -> None:
        at_least(self.n_train, 1, "n_train")
        at_least(self.n_test, 1, "n_test")
        at_least(self.n_val, 1, "n_val")
        at_most(self.n_train + self.n_test, INT32_MAX, "n_train", "with n_test: rows are indexed with int32")
        check(math.isfinite(self.slope), "slope", "must be finite")
        check(math.isfinite(self.intercept), "intercept", "must be finite")
        check(self.x_min < self.x_max, "x_min", f"must be < x_max, got {self.x_min} >= {self.x_max}")


def data_key(seed: int) -> jax.Array:
    """The key the seed script draws its inputs with.

    The seed creates `nnx.Linear(1, 1)` from `nnx.Rngs(seed)` first and only then
    draws the data key from the same Rngs, so the key depends on what the
    Linear consumed. Replaying that order keeps the data identical for every
    model, not only the seed's.
    """
    rngs = nnx.Rngs(seed)
    nnx.Linear(1, 1, rngs=rngs)
    return rngs.params()


def line_task(seed: int, slope: float, intercept: float, n_train: int, n_test: int, x_min: float,
              x_max: float, n_val: int = 55) -> dict:
    """x of shape (rows, 1), the first n_train rows train and the rest test; a regression task.

    >>> d = line_task(123, slope=2.0, intercept=0.0, n_train=55, n_test=55, x_min=-10.0, x_max=10.0)
    >>> d["x_train"].shape, d["x_val"].shape, d["x_test"].shape, d["loss"]
    ((55, 1), (55, 1), (55, 1), 'mse')
    """
    n = n_train + n_test
    x = jax.random.uniform(data_key(seed), (n, 1), minval=x_min, maxval=x_max)
    y = slope * x + intercept
    # numpy, not jax: no draw of the seed's key is consumed, and the rows stay values when the task is traced
    # for its shapes (harness.core.abstract keeps only the four arrays of the seed's contract as shapes).
    x_val = np.random.default_rng([seed, 1]).uniform(x_min, x_max, (n_val, 1)).astype(np.float32)
    y_val = (np.float32(slope) * x_val + np.float32(intercept)).astype(np.float32)
    return {"x_train": x[:n_train], "y_train": y[:n_train], "x_test": x[n_train:], "y_test": y[n_train:],
            "x_val": x_val, "y_val": y_val, "loss": "mse"}


line_task.settings = LineSettings
