"""Handwritten digits (scikit-learn's bundled 8x8 images, no download): pretrain on digits 0-4, fine-tune on 5-9.

Each digit's 1,797 images are split once, by `seed`, into a third for testing and the rest for
training. The source task is digits 0-4 (its training images pretrain a backbone; its test images
measure forgetting); the target is digits 5-9, labelled 0-4, learnt from `per_class` training
images per digit (few-shot, so that what pretraining brings is visible) or from all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Optional

import numpy as np

from harness.core.checks import check

SOURCE, TARGET = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)


@dataclass
class DigitsSettings:
    """conf/task/digits.yaml holds the values."""

    per_class: Optional[int]  # training images per target digit; null: all of them (about 120)

    def __post_init__(self) -> None:
        check(self.per_class is None or 1 <= self.per_class <= 100, "per_class",
              f"must be in [1, 100] (each digit has at least 116 training images) or null, got {self.per_class}")


@cache
def _images() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images / 16.0).astype(np.float32)[..., None], digits.target.astype(np.int32)


def _split(digits: tuple[int, ...], seed: int, per_class: int | None) -> dict:
    """Train and test images of `digits`, labelled 0..len(digits)-1, in a seeded order."""
    images, labels = _images()
    rng = np.random.default_rng(seed)
    train, test, val = [], [], []
    for digit in digits:
        rows = rng.permutation(np.flatnonzero(labels == digit))
        cut = len(rows) // 3
        test.append(rows[:cut])
        train.append(rows[cut:][:per_class])
        val.append(rows[cut:][per_class:] if per_class is not None else rows[:0])
    train, test, val = rng.permutation(np.concatenate(train)), np.concatenate(test), np.concatenate(val)
    relabel = np.zeros(10, np.int32)
    relabel[list(digits)] = np.arange(len(digits))
    own_val = {"x_val": images[val], "y_val": relabel[labels[val]]} if len(val) else {}
    return {"x_train": images[train], "y_train": relabel[labels[train]], "x_test": images[test],
            "y_test": relabel[labels[test]], **own_val, "loss": "cross_entropy", "classes": len(digits)}


def digits_task(seed: int, per_class: int | None) -> dict:
    """Digits 5-9 (few-shot with `per_class`), with digits 0-4 as the source task.

    >>> d = digits_task(0, per_class=10)
    >>> d["x_train"].shape, d["x_val"].shape, d["x_test"].shape, d["source"]["x_train"].shape, d["classes"]
    ((50, 8, 8, 1), (549, 8, 8, 1), (297, 8, 8, 1), (602, 8, 8, 1), 5)
    """
    return {**_split(TARGET, seed, per_class), "source": _split(SOURCE, seed + 1, None)}


digits_task.settings = DigitsSettings
