"""Modular arithmetic as token sequences: pretrain on (a + b) mod p, fine-tune on another operation.

Each example is the sequence `a op b =` (tokens 0..p-1 are the numbers, then one token per
operation and one for '='); the label is the result, one of p classes read at the last position.
All p^2 pairs of an operation are split once, by `seed`, into `train_fraction` for training and
the rest for testing; the source task (addition) trains on SOURCE_FRACTION of its pairs, enough for
a small transformer to generalize (grok) within a few hundred full-batch AdamW steps with weight
decay, so that what it learnt can transfer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.core.checks import check, one_of

OPERATIONS = {"add": lambda a, b, p: (a + b) % p, "sub": lambda a, b, p: (a - b) % p,
              "mul": lambda a, b, p: (a * b) % p}
SOURCE = "add"
SOURCE_FRACTION = 0.8


@dataclass
class ModularSettings:
    """conf/task/modular.yaml holds the values."""

    modulus: int  # p: a prime, so that every operation is a group operation on 0..p-1
    operation: str  # the target task's operation: sub or mul (the source task is add)
    train_fraction: float  # of the p^2 pairs

    def __post_init__(self) -> None:
        check(self.modulus >= 3 and all(self.modulus % k for k in range(2, int(self.modulus**0.5) + 1)),
              "modulus", f"must be a prime >= 3, got {self.modulus}")
        check(self.modulus <= 251, "modulus", f"must be <= 251 (p^2 examples), got {self.modulus}")
        one_of(self.operation, tuple(op for op in OPERATIONS if op != SOURCE), "operation")
        check(0 < self.train_fraction < 1, "train_fraction", f"must be in (0, 1), got {self.train_fraction}")


def _pairs(operation: str, p: int, seed: int, train_fraction: float) -> dict:
    a, b = (grid.ravel() for grid in np.meshgrid(np.arange(p), np.arange(p), indexing="ij"))
    op_token, equals = p + list(OPERATIONS).index(operation), p + len(OPERATIONS)
    x = np.stack([a, np.full_like(a, op_token), b, np.full_like(a, equals)], axis=1).astype(np.int32)
    y = OPERATIONS[operation](a, b, p).astype(np.int32)
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(round(train_fraction * len(x)))
    return {"x_train": x[order[:cut]], "y_train": y[order[:cut]], "x_test": x[order[cut:]],
            "y_test": y[order[cut:]], "loss": "cross_entropy", "classes": p, "vocab": vocabulary(p)}


def vocabulary(modulus: int) -> int:
    """Tokens a model must embed: the numbers, one per operation, and '='."""
    return modulus + len(OPERATIONS) + 1


def modular_task(seed: int, modulus: int, operation: str, train_fraction: float) -> dict:
    """`a op b =` -> (a op b) mod p, with (a + b) mod p as the source task.

    >>> d = modular_task(0, modulus=7, operation="sub", train_fraction=0.5)
    >>> d["x_train"].shape, d["classes"], d["source"]["x_test"].shape
    ((24, 4), 7, (10, 4))
    """
    return {**_pairs(operation, modulus, seed, train_fraction),
            "source": _pairs(SOURCE, modulus, seed, SOURCE_FRACTION)}


modular_task.settings = ModularSettings
