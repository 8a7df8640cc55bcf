"""One run across processes: joining them, a barrier, and bringing per-process values to every process.

Each process calls `join` before JAX makes its devices; after it, `jax.devices()` lists every
process's devices and one mesh over them (harness.core.devices.data_parallel) is the run's global
mesh: the batch is sharded over every device, the state replicated on all, and XLA's SPMD
partitioner inserts the gradient's all-reduce, carried between processes by gloo (CPU).
With one process every function here is what a one-process run did before: no barrier, no gather.
"""

from __future__ import annotations

import socket
from typing import Any

import jax
import numpy as np

HOST_BYTES = 64  # a host name, padded, as one row of a gathered array


def join(coordinator: str, processes: int, process_id: int, devices_per_process: int, timeout_s: int) -> None:
    """Makes this process number `process_id` of `processes`, each with `devices_per_process` CPU devices.

    `timeout_s` bounds the wait for the others at start-up and how long a dead peer goes
    unnoticed (the coordination service's heartbeat), so a process whose peer died ends, not hangs.
    """
    jax.config.update("jax_num_cpu_devices", devices_per_process)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator, processes, process_id, initialization_timeout=timeout_s,
                               heartbeat_timeout_seconds=timeout_s, shutdown_timeout_seconds=timeout_s)


def many() -> bool:
    """Whether this run spans processes."""
    return jax.process_count() > 1


def local(devices: list[jax.Device]) -> jax.Device:
    """This process's first device among `devices` (the run's global list): where host-side work runs."""
    return next(d for d in devices if d.process_index == jax.process_index())


def barrier(name: str) -> None:
    """Every process waits here for all the others (nothing with one process): timed calls start together."""
    if many():
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def gathered(values: Any) -> np.ndarray:
    """Each process's `values` (one shape and dtype on every process), stacked: row p is process p's."""
    values = np.asarray(values)
    if not many():
        return values[None]
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(values, tiled=False))


def _host(leaf: jax.Array) -> np.ndarray:
    """One array's values on this host: read locally when this process holds them all, else gathered."""
    if leaf.is_fully_addressable or leaf.is_fully_replicated:
        return np.asarray(leaf)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))


def localized(tree: Any, device: jax.Device) -> Any:
    """`tree`'s arrays (global, replicated or sharded over the processes) as copies on this process's `device`,
    where work on them involves no other process; a PRNG key goes as its key data."""
    def one(leaf):
        if not isinstance(leaf, jax.Array):
            return leaf
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            data = jax.device_put(_host(jax.random.key_data(leaf)), device)
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
        return jax.device_put(_host(leaf), device)

    return jax.tree.map(one, tree)


def put(tree: Any, sharding: Any) -> Any:
    """`jax.device_put(tree, sharding)`; across processes from host copies, which JAX requires for a sharding that
    spans them (and checks are the same on every process): a PRNG key goes as its key data."""
    if not many():
        return jax.device_put(tree, sharding)

    def one(leaf):
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            data = jax.device_put(np.asarray(jax.random.key_data(leaf)), sharding)
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
        return jax.device_put(np.asarray(leaf) if isinstance(leaf, jax.Array) else leaf, sharding)

    return jax.tree.map(one, tree)


def hosts() -> list[str]:
    """The host name of each process, in process order."""
    name = socket.gethostname().encode()[:HOST_BYTES].ljust(HOST_BYTES, b"\0")
    rows = gathered(np.frombuffer(name, np.uint8))
    return [bytes(row).rstrip(b"\0").decode(errors="replace") for row in rows]


def describe() -> dict[str, Any]:
    """Part of the record's `distributed`: processes, devices per process, and each process's host."""
    return {"processes": jax.process_count(), "devices_per_process": jax.local_device_count(), "hosts": hosts()}
