"""Will a run fit? What it needs, estimated from shapes, against the memory this process can still get.

A run too big for the machine used to be OOM-killed mid-sweep with no record and
no message, or refused only once its data and state were made. harness.core.run
now traces the task and the build (harness/core/abstract.py) and compiles the
training program from shapes, so the data, the model and optimizer state, the
program's outputs and temporaries (XLA's memory analysis) and the final evaluation
are known before any of them is allocated: a run that cannot fit is refused as a
`failed` record (InsufficientMemory) naming what it needs, what is available and
which setting to lower.

The estimate is the run's peak as this harness makes it, measured on CPU (docs/guarantees.md):
the task's arrays while it makes them (the task's own draw and the copy placed on the device), the
training call (arguments, outputs and temporaries, XLA), the initial state kept to measure drift (and the outputs of the
1-step program timed after training), and the final evaluation, which runs the model
on every training row op by op and computes the metrics in float64.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.checks import ConfigError

_UNLIMITED = 2**60  # cgroup v1 writes "no limit" as a huge number, v2 as "max"


class InsufficientMemory(ConfigError):
    """The run needs more memory than this process can get: refused before its data or state is made."""


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


def device_bytes(device: Any) -> tuple[int, str] | None:
    """(bytes still free on an accelerator, where the number comes from) from its allocator, or None when it does
    not say (`device.memory_stats()`: bytes_limit less bytes_in_use)."""
    try:
        stats = device.memory_stats() or {}
    except Exception:  # noqa: BLE001 - a backend without memory stats: nothing to check against
        return None
    limit, used = stats.get("bytes_limit"), stats.get("bytes_in_use")
    if not isinstance(limit, int) or not isinstance(used, int):
        return None
    return max(limit - used, 0), f"{device}'s memory: bytes_limit less bytes_in_use"


def _available_to(device: Any) -> tuple[int, str] | None:
    """What `device` can still hold: this process's memory on a CPU (or no device given), its own elsewhere."""
    return available_bytes() if device is None or device.platform == "cpu" else device_bytes(device)


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


# Calibrated against measured peaks (benchmarks/memory_estimate.py): a task holds about twice its arrays while it
# makes them (the line task draws every row, then splits train from test); the final metrics hold the float32
# predictions, predictions and targets as float64 and two float64 temporaries: 7x the predictions' bytes.
MAKING_DATA = 2
METRIC_COPIES = 7
# Which setting makes each part smaller, for the refusal's last words.
LOWER = {"data": "the task's size (task.n_train)",
         "state": "the model's size (model.width, model.depth)",
         "program": "train.batch_size, task.n_train or the model's size (the program's temporaries hold a batch's "
                    "activations), or train.steps (its per-step history)",
         "evaluation": "task.n_train or model.width (the final evaluation runs the model on every training row)"}
TITLES = {"data": "data", "state": "model and optimizer state", "program": "training program",
          "evaluation": "final evaluation"}


@dataclass(frozen=True)
class Needs:
    """A run's memory, from shapes: its task's arrays, its state, its compiled program and its final evaluation."""

    data: int  # every array the task returns (all points of a vectorized run)
    state: int  # model and optimizer state (all points)
    program: dict[str, int | None]  # the training program's XLA memory analysis (harness.core.timing.Timing.memory)
    largest: int = 0  # the largest value the evaluation's forward pass makes over the training rows
    predictions: int = 0  # the predictions on the training rows
    dispatch: bool = False  # a 1-step program runs after training (train.measure_dispatch): one more state

    def parts(self) -> dict[str, int]:
        """Bytes per part while the run trains and is evaluated (the arguments counted as data and state)."""
        program = self.program
        made = (program.get("output_size_in_bytes") or 0) + (program.get("temp_size_in_bytes") or 0) - (
            program.get("alias_size_in_bytes") or 0)
        # The state: the program's argument and the trained state it outputs, plus the 1-step program's outputs
        # when it runs; the program: its other outputs (the per-step history) and temporaries. The evaluation:
        # the forward pass op by op (an op's input and output), then the metrics on its predictions.
        return {"data": self.data, "state": (2 + self.dispatch) * self.state, "program": max(made - self.state, 0),
                "evaluation": max(2 * self.largest, METRIC_COPIES * self.predictions)}

    def total(self) -> int:
        """The estimated peak: the larger of making the data and training then evaluating."""
        return max(MAKING_DATA * self.data, sum(self.parts().values()))

    def on_device(self) -> int:
        """What an accelerator holds: data, state, program and the evaluation's forward pass (its metrics, and
        the task's own arrays as it makes them, are the host's)."""
        parts = self.parts()
        return parts["data"] + parts["state"] + parts["program"] + 2 * self.largest


def check_needs(needs: Needs, device: Any = None) -> None:
    """Raises InsufficientMemory, naming the parts and the setting to lower, when the run cannot fit on `device`
    (this process's memory on a CPU, the device's own on an accelerator)."""
    on_host = device is None or device.platform == "cpu"
    available, total = _available_to(device), needs.total() if on_host else needs.on_device()
    if available is None or total <= available[0]:
        return
    parts = needs.parts()
    biggest = max(parts, key=parts.get)
    if MAKING_DATA * needs.data >= sum(parts.values()):
        biggest = "data"
    shown = ", ".join(f"{TITLES[name]} {_gb(value)}" for name, value in parts.items())
    raise InsufficientMemory(
        "memory", f"the run needs about {_gb(total)} ({shown}; estimated from shapes before allocating) but this "
                  f"process can get {_gb(available[0])} ({available[1]}); refused before making its data. "
                  f"Lower {LOWER[biggest]}, or run on a machine with more memory")


def check_fits(memory: dict[str, int | None], device: Any = None) -> None:
    """Raises InsufficientMemory when the compiled program (its `Timing.memory`) cannot fit on `device`."""
    needed, available = needed_bytes(memory), _available_to(device)
    if needed is None or available is None or needed <= available[0]:
        return
    raise InsufficientMemory(
        "memory", f"the compiled program needs {_gb(needed)} (XLA memory analysis: outputs and temporaries) "
                  f"but this process can get {_gb(available[0])} ({available[1]}); refused before running. "
                  "Use a smaller model.width / model.depth / task.n_train / train.steps, or a bigger machine")
