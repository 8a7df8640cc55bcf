"""The first seed's synthetic regression, drawn bit for bit as the seed script draws it."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from harness.config import TaskConfig


class Data(NamedTuple):
    x_train: jax.Array
    y_train: jax.Array
    x_test: jax.Array
    y_test: jax.Array


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


def make_data(task: TaskConfig) -> Data:
    """x ~ U(x_min, x_max), first n_train rows train, the rest test.

    >>> d = make_data(TaskConfig())
    >>> d.x_train.shape, d.x_test.shape
    ((55, 1), (55, 1))
    """
    n = task.n_train + task.n_test
    x = jax.random.uniform(data_key(task.seed), (n, 1), minval=task.x_min, maxval=task.x_max)
    y = task.slope * x + task.intercept
    return Data(x[: task.n_train], y[: task.n_train], x[task.n_train :], y[task.n_train :])


def loss_and_metrics(predictions: jax.Array, targets: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The seed's loss (mean squared error, the one differentiated) and the step's metrics by name.

    A metric the training program does not emit is dead code to XLA: it costs nothing.
    """
    diffs = targets - predictions
    mse = jnp.mean(diffs**2)
    return mse, {"mse": mse, "mae": jnp.mean(jnp.abs(diffs))}
