"""Where each training step's batch comes from: the whole training set, or a new minibatch per step.

The seed trains on its whole training set at every step. That batch never
changes, so inside the scan everything computed from it and from frozen
parameters alone is loop-invariant, and XLA hoists it out of the loop: a frozen
backbone's forward pass then runs once per call, not once per step, and the
step time leaves it out. A fine-tune that a user runs sees a new batch every
step; `Minibatches` gives the scan exactly that, so a step does all its work.

Both are frozen dataclasses (static arguments of the jitted program) with the
same two methods: `start` makes the batch order the scan carries, `take` returns
step `i`'s batch and the order for the next step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp


def order_key(seed: int) -> jax.Array:
    """The key a run's batch order is drawn from: the run's seed, apart from the model's init key."""
    return jax.random.fold_in(jax.random.key(seed), 0xBA7C)


@dataclass(frozen=True)
class FullBatch:
    """Every step trains on the whole training set (the seed's behaviour)."""

    def start(self, key: jax.Array, rows: int):
        return ()

    def take(self, order, i, key, x, y):
        return order, x, y

    def describe(self, rows: int) -> dict[str, Any]:
        return {"regime": "full_batch", "size": rows, "per_step": False}


@dataclass(frozen=True)
class Minibatches:
    """`size` rows per step, a new permutation of the training rows every epoch.

    Step i is batch i mod (rows // size) of epoch i // (rows // size); the epoch's
    permutation is drawn from the run's key folded with the epoch, at the epoch's
    first step, and carried through the scan. Rows past the last whole batch of
    an epoch's permutation are skipped in that epoch (a different set each epoch).
    With data-parallel devices, `sharding` splits each batch (not the training
    set, which every device holds whole) over them.

    >>> import jax.numpy as jnp
    >>> b = Minibatches(size=2, rows=4)
    >>> x = jnp.arange(4.0)[:, None]
    >>> order = b.start(order_key(0), 4)
    >>> batches = []
    >>> for i in range(4):
    ...     order, xb, _ = b.take(order, i, order_key(0), x, x)
    ...     batches.append(sorted(xb[:, 0].tolist()))
    >>> sorted(batches[0] + batches[1]) == sorted(batches[2] + batches[3]) == [0.0, 1.0, 2.0, 3.0]
    True
    """

    size: int
    rows: int
    sharding: Any = None  # a NamedSharding over data-parallel devices, or None on one device

    @property
    def per_epoch(self) -> int:
        return self.rows // self.size

    def start(self, key: jax.Array, rows: int):
        return jnp.zeros((rows,), jnp.int32)  # replaced at step 0, the first epoch's start

    def take(self, order, i, key, x, y):
        epoch, position = jnp.divmod(i, self.per_epoch)
        order = jax.lax.cond(position == 0,
                             lambda: jax.random.permutation(jax.random.fold_in(key, epoch), self.rows).astype(jnp.int32),
                             lambda: order)
        rows = jax.lax.dynamic_slice_in_dim(order, position * self.size, self.size)
        xb, yb = x[rows], y[rows]
        if self.sharding is not None:
            xb, yb = jax.lax.with_sharding_constraint((xb, yb), self.sharding)
        return order, xb, yb

    def describe(self, rows: int) -> dict[str, Any]:
        return {"regime": "minibatch", "size": self.size, "per_step": True, "batches_per_epoch": self.per_epoch,
                "rows_skipped_per_epoch": rows - self.per_epoch * self.size,
                "order": "a new permutation of the training rows every epoch, drawn from task.seed"}


def batching(batch_size: int | None, rows: int, sharding: Any = None) -> FullBatch | Minibatches:
    """The batch source for `train.batch_size` (None: the full training set every step)."""
    return FullBatch() if batch_size is None else Minibatches(batch_size, rows, sharding)
