"""The tasks a run learns, by name: the first seed's line (drawn bit for bit as the seed script draws
it) and a transfer task whose backbone is pretrained on a related source task (harness/core/pretraining.py)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from harness.core.config import TaskConfig
from harness.core.metrics import METRICS


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


def seed_data(task: TaskConfig) -> Data:
    """x ~ U(x_min, x_max), first n_train rows train, the rest test.

    >>> d = seed_data(TaskConfig())
    >>> d.x_train.shape, d.x_test.shape
    ((55, 1), (55, 1))
    """
    n = task.n_train + task.n_test
    x = jax.random.uniform(data_key(task.seed), (n, 1), minval=task.x_min, maxval=task.x_max)
    y = task.slope * x + task.intercept
    return Data(x[: task.n_train], y[: task.n_train], x[task.n_train :], y[task.n_train :])


def teacher_features(task: TaskConfig, x: jax.Array) -> jax.Array:
    """The transfer task's shared features: a random tanh layer of width `teacher_width` (the source targets)."""
    weights = jax.random.normal(jax.random.fold_in(jax.random.key(task.seed), 1), (task.dim, task.teacher_width))
    return jnp.tanh(x @ weights / jnp.sqrt(task.dim) * 2.0)


def transfer_data(task: TaskConfig) -> Data:
    """The target task: one fixed random mix of the teacher's features, learnt from `n_train` examples.

    >>> d = transfer_data(TaskConfig(name="transfer", dim=4, n_train=8, n_test=2))
    >>> d.x_train.shape, d.y_train.shape
    ((8, 4), (8, 1))
    """
    key = jax.random.fold_in(jax.random.key(task.seed), 2)
    x = jax.random.normal(key, (task.n_train + task.n_test, task.dim))
    mix = jax.random.normal(jax.random.fold_in(key, 1), (task.teacher_width, 1)) / jnp.sqrt(task.teacher_width)
    y = teacher_features(task, x) @ mix
    return Data(x[: task.n_train], y[: task.n_train], x[task.n_train :], y[task.n_train :])


def source_data(task: TaskConfig) -> tuple[jax.Array, jax.Array]:
    """(x, y) of the transfer task's source: the teacher's features themselves, on inputs apart from the target's."""
    x = jax.random.normal(jax.random.fold_in(jax.random.key(task.seed), 3), (max(task.n_train, 1024), task.dim))
    return x, teacher_features(task, x)


TASKS = {"seed": seed_data, "transfer": transfer_data}  # task.name -> its data; models take (task.dim, 1)


def make_data(task: TaskConfig) -> Data:
    """The data of `task.name` (see TASKS)."""
    return TASKS[task.name](task)


def loss_and_metrics(predictions: jax.Array, targets: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The seed's loss (mean squared error, the one differentiated) and the step's metrics (METRICS) by name.

    A metric the training program does not emit is dead code to XLA: it costs nothing.
    """
    values = {name: metric.fn(predictions, targets) for name, metric in METRICS.items()}
    return values["mse"], values
