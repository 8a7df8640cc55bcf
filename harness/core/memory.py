"""Will a compiled program fit? Its XLA memory analysis against the memory this process can still get.

A run too big for the machine used to be OOM-killed mid-sweep with no record and
no message. The compiled program's outputs and temporaries are known before its
first call, so such a run is refused as a `failed` record naming the numbers.
"""

from __future__ import annotations

from pathlib import Path

from harness.core.checks import ConfigError

_UNLIMITED = 2**60  # cgroup v1 writes "no limit" as a huge number, v2 as "max"


class InsufficientMemory(ConfigError):
    """The run's compiled program needs more memory than this process can get: refused, not started."""


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _meminfo_available(proc: Path) -> int | None:
    try:
        for line in (proc / "meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_dirs(proc: Path, cgroup_root: Path) -> list[tuple[Path, str, str]]:
    """(directory, limit file, usage file) of this process's memory cgroup and its ancestors, v2 and v1."""
    try:
        lines = (proc / "self" / "cgroup").read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            base, files = cgroup_root, ("memory.max", "memory.current")
        elif "memory" in controllers.split(","):
            base, files = cgroup_root / "memory", ("memory.limit_in_bytes", "memory.usage_in_bytes")
        else:
            continue
        rel = Path(path.lstrip("/"))
        # Inside a container the mount shows the container's own cgroup at its root: try both.
        for anchor in [rel, *rel.parents]:
            found.append((base / anchor, *files))
    return found


def available_bytes(proc: Path = Path("/proc"), cgroup_root: Path = Path("/sys/fs/cgroup")) -> tuple[int, str] | None:
    """(bytes this process can still allocate, where the number comes from), or None when nothing says.

    The least of the system's MemAvailable and, for every memory cgroup limit over
    this process, the limit less the cgroup's usage.
    """
    candidates = []
    if (meminfo := _meminfo_available(proc)) is not None:
        candidates.append((meminfo, "MemAvailable in /proc/meminfo"))
    for directory, limit_file, usage_file in _cgroup_dirs(proc, cgroup_root):
        limit, usage = _read_int(directory / limit_file), _read_int(directory / usage_file)
        if limit is not None and usage is not None and limit < _UNLIMITED:
            candidates.append((max(limit - usage, 0), f"cgroup limit {directory / limit_file} less its usage"))
    return min(candidates) if candidates else None


def needed_bytes(memory: dict[str, int | None]) -> int | None:
    """New memory a call of the program allocates: its outputs and temporaries (the arguments already exist)."""
    out, temp, alias = (memory.get(k) for k in ("output_size_in_bytes", "temp_size_in_bytes", "alias_size_in_bytes"))
    if out is None and temp is None:
        return None
    needed = (out or 0) + (temp or 0) - (alias or 0)
    peak, args = memory.get("peak_memory_in_bytes"), memory.get("argument_size_in_bytes")
    if peak is not None:  # backends that report a peak (it includes the arguments)
        needed = max(needed, peak - (args or 0))
    return needed


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e7 else f"{n:,} bytes"


def check_fits(memory: dict[str, int | None]) -> None:
    """Raises InsufficientMemory when the compiled program (its `Timing.memory`) cannot fit."""
    needed, available = needed_bytes(memory), available_bytes()
    if needed is None or available is None or needed <= available[0]:
        return
    raise InsufficientMemory(
        "memory", f"the compiled program needs {_gb(needed)} (XLA memory analysis: outputs and temporaries) "
                  f"but this process can get {_gb(available[0])} ({available[1]}); refused before running. "
                  "Use a smaller model.width / model.depth / task.n_train / train.steps, or a bigger machine")
