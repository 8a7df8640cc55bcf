"""Picking the device a run is placed on, or saying why it cannot be."""

from __future__ import annotations

import jax

from harness.config import DeviceConfig


class DeviceUnavailable(RuntimeError):
    """The requested device does not exist on this machine: the run is skipped, not failed."""


def available() -> dict[str, int]:
    """Device count per platform that exists here, e.g. {'cpu': 1}."""
    found = {}
    for platform in ("cpu", "gpu", "tpu"):
        try:
            found[platform] = len(jax.devices(platform))
        except RuntimeError:
            pass
    return found


def select(cfg: DeviceConfig) -> jax.Device:
    """The jax.Device for `cfg`; `auto` is JAX's default backend."""
    try:
        devices = jax.devices(None if cfg.platform == "auto" else cfg.platform)
    except RuntimeError:
        raise DeviceUnavailable(
            f"device.platform: no {cfg.platform!r} devices on this machine; available: {available()}"
        ) from None
    if cfg.index >= len(devices):
        raise DeviceUnavailable(
            f"device.index: {cfg.index} is out of range for {devices[0].platform!r} "
            f"({len(devices)} device(s): indices 0..{len(devices) - 1}); available: {available()}"
        )
    return devices[cfg.index]
