"""A synthetic transfer task: x ~ N(0, I) in `dim` dimensions; a teacher's `teacher_width` tanh features of x
are the source task a backbone is pretrained on, and one random mix of them is the target a run fine-tunes on."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from harness.core.checks import INT32_MAX, at_least, at_most


@dataclass
class TransferSettings:
    """conf/task/transfer.yaml holds the values."""

    dim: int  # inputs per example
    teacher_width: int  # features of the teacher network: the source task's outputs
    n_train: int
    n_test: int

    def __post_init__(self) -> None:
        at_least(self.dim, 1, "dim")
        at_least(self.teacher_width, 1, "teacher_width")
        at_least(self.n_train, 1, "n_train")
        at_least(self.n_test, 1, "n_test")
        at_most(self.n_train + self.n_test, INT32_MAX, "n_train", "with n_test: rows are indexed with int32")


def teacher_features(seed: int, dim: int, teacher_width: int, x: jax.Array) -> jax.Array:
    """The shared features: a random tanh layer of width `teacher_width` (the source task's targets)."""
    weights = jax.random.normal(jax.random.fold_in(jax.random.key(seed), 1), (dim, teacher_width))
    return jnp.tanh(x @ weights / jnp.sqrt(dim) * 2.0)


def transfer_task(seed: int, dim: int, teacher_width: int, n_train: int, n_test: int) -> dict:
    """The target, one fixed random mix of the teacher's features learnt from `n_train` examples, and the source:
    the teacher's features themselves, on other inputs.

    >>> d = transfer_task(123, dim=4, teacher_width=8, n_train=8, n_test=2)
    >>> d["x_train"].shape, d["y_train"].shape, d["source"]["y_train"].shape
    ((8, 4), (8, 1), (1024, 8))
    """
    key = jax.random.fold_in(jax.random.key(seed), 2)
    x = jax.random.normal(key, (n_train + n_test, dim))
    mix = jax.random.normal(jax.random.fold_in(key, 1), (teacher_width, 1)) / jnp.sqrt(teacher_width)
    y = teacher_features(seed, dim, teacher_width, x) @ mix
    source_train = jax.random.normal(jax.random.fold_in(jax.random.key(seed), 3), (max(n_train, 1024), dim))
    source_test = jax.random.normal(jax.random.fold_in(jax.random.key(seed), 4), (n_test, dim))
    source = {"x_train": source_train, "y_train": teacher_features(seed, dim, teacher_width, source_train),
              "x_test": source_test, "y_test": teacher_features(seed, dim, teacher_width, source_test), "loss": "mse"}
    return {"x_train": x[:n_train], "y_train": y[:n_train], "x_test": x[n_train:], "y_test": y[n_train:],
            "loss": "mse", "source": source}


transfer_task.settings = TransferSettings
