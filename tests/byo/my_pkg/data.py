"""A task of mine: 8x8 noisy images with a bright square in one of four quadrants; the label is the quadrant."""

import numpy as np


def quadrants(seed: int, rows: int = 512, noise: float = 0.5) -> dict:
    """`rows` training and `rows` test images of shape (8, 8, 1), labels 0..3."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, size=2 * rows)
    images = rng.normal(0.0, noise, size=(2 * rows, 8, 8, 1)).astype(np.float32)
    for i, label in enumerate(labels):
        top, left = 4 * (label // 2), 4 * (label % 2)
        images[i, top + 1:top + 3, left + 1:left + 3, 0] += 1.0
    return {"x_train": images[:rows], "y_train": labels[:rows], "x_test": images[rows:], "y_test": labels[rows:],
            "loss": "cross_entropy", "classes": 4}


def fussy(seed: int, rows: int = 32, fail_on: int | None = None, exit_on: int | None = None,
          padding: int = 0, nans: int = 0, classes=None, interrupt_on: int | None = None) -> dict:
    """A line with noise that fails for one seed: raises for `fail_on` (its message `padding` characters longer),
    calls sys.exit(3) for `exit_on`, raises KeyboardInterrupt for `interrupt_on`; with `nans`, that many NaN inputs; `classes` is returned as given."""
    import sys

    if seed == fail_on:
        raise ValueError(f"no data for seed {seed}" + "!" * padding)
    if seed == exit_on:
        sys.exit(3)
    if seed == interrupt_on:
        raise KeyboardInterrupt("raised by my task")
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(2 * rows, 1)).astype(np.float32)
    y = (2 * x + rng.normal(0, 0.1, size=x.shape)).astype(np.float32)
    x[:nans] = np.nan
    return {"x_train": x[:rows], "y_train": y[:rows], "x_test": x[rows:], "y_test": y[rows:], "loss": "mse",
            **({"classes": classes} if classes is not None else {})}


def line(seed: int, rows: int = 32) -> dict:
    """The same noisy line, never failing: a second task of mine."""
    return fussy(seed, rows)
