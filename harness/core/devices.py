"""Picking the device a run is placed on, or saying why it cannot be."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from harness.core.checks import DeviceUnavailable
from harness.core.config import DeviceConfig


def available() -> dict[str, int]:
    """Device count per platform that exists here, e.g. {'cpu': 1}."""
    found = {}
    for platform in ("cpu", "gpu", "tpu"):
        try:
            found[platform] = len(jax.devices(platform))
        except RuntimeError:
            pass
    return found


def select(cfg: DeviceConfig) -> list[jax.Device]:
    """The `cfg.count` devices from `cfg.index` on; `auto` is JAX's default backend."""
    try:
        devices = jax.devices(None if cfg.platform == "auto" else cfg.platform)
    except RuntimeError:
        raise DeviceUnavailable(
            f"device.platform: no {cfg.platform!r} devices on this machine; available: {available()}"
        ) from None
    if cfg.index + cfg.count > len(devices):
        wanted = f"index {cfg.index}" if cfg.count == 1 else f"indices {cfg.index}..{cfg.index + cfg.count - 1}"
        raise DeviceUnavailable(
            f"device.index/device.count: {wanted} out of range for {devices[0].platform!r}, which has "
            f"{len(devices)} device(s) (indices 0..{len(devices) - 1}); available: {available()}"
        )
    return devices[cfg.index : cfg.index + cfg.count]


def data_parallel(devices: list[jax.Device]) -> tuple[NamedSharding, NamedSharding]:
    """(batch sharding, replicated sharding) over a 1-D mesh; one device is the 1-device case."""
    mesh = Mesh(np.array(devices), ("data",))
    return NamedSharding(mesh, PartitionSpec("data")), NamedSharding(mesh, PartitionSpec())
