"""Checks of settings that fail with one line naming the setting and what is allowed.

Used by the config schema (harness/core/config.py) and by each component's settings
dataclass; nothing here imports JAX.

>>> check(1 <= 0, "model.width", "must be >= 1, got 0")
Traceback (most recent call last):
...
harness.core.checks.ConfigError: model.width: must be >= 1, got 0
"""

from __future__ import annotations

import math


class ConfigError(ValueError):
    """A bad setting: names the field and what is allowed."""

    def __init__(self, field_name: str, message: str):
        self.field = field_name
        self.message = message
        super().__init__(f"{field_name}: {message}")


class DeviceUnavailable(RuntimeError):
    """A valid device setting this machine cannot honor: the run is skipped, not failed."""


def check(ok: bool, field_name: str, message: str) -> None:
    if not ok:
        raise ConfigError(field_name, message)


def positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


# Integers that end up in fixed-width types: step counters and sizes are int32 inside the jitted
# program, seeds are int64 for jax.random.key / nnx.Rngs. A value past these fails deep in JAX
# with an OverflowError naming no setting, so they are bounded here.
INT32_MAX = 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def at_least(value: int, bound: int, field_name: str) -> None:
    check(value >= bound, field_name, f"must be >= {bound}, got {value}")


def at_most(value: int, bound: int, field_name: str, why: str) -> None:
    check(value <= bound, field_name, f"must be <= {bound:,} ({why}), got {value:,}")


def seed_in_range(value: int, field_name: str) -> None:
    check(INT64_MIN <= value <= INT64_MAX, field_name,
          f"must be a 64-bit integer ({INT64_MIN:,} .. {INT64_MAX:,}, what jax.random.key takes), got {value:,}")


def one_of(value: str, allowed: tuple[str, ...], field_name: str) -> None:
    check(value in allowed, field_name, f"got {value!r}, allowed: {', '.join(allowed)}")
