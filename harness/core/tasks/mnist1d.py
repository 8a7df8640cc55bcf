"""MNIST-1D (the `mnist1d` package's procedural generator, run locally; never its `get_dataset`, which
downloads): 4,000 training and 1,000 test sequences of length 40, ten classes."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from harness.core.checks import check


@dataclass
class Mnist1dSettings:
    """conf/task/mnist1d.yaml holds the values."""

    samples: int  # generated sequences, 80% for training (the published set: 5000)

    def __post_init__(self) -> None:
        check(self.samples >= 10, "samples", f"must be >= 10, got {self.samples}")


@cache
def _generated(seed: int, samples: int) -> dict:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed, args.num_samples = seed, samples
    return make_dataset(args)


def mnist1d_task(seed: int, samples: int) -> dict:
    """Sequences as (rows, 40, 1) float32, labels 0-9; the generator is seeded by `seed`.

    >>> d = mnist1d_task(42, samples=100)
    >>> d["x_train"].shape, d["x_test"].shape, d["loss"]
    ((80, 40, 1), (20, 40, 1), 'cross_entropy')
    """
    data = _generated(seed, samples)
    return {"x_train": data["x"].astype(np.float32)[..., None], "y_train": data["y"].astype(np.int32),
            "x_test": data["x_test"].astype(np.float32)[..., None], "y_test": data["y_test"].astype(np.int32),
            "loss": "cross_entropy", "classes": 10}


mnist1d_task.settings = Mnist1dSettings
