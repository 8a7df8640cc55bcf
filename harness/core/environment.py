"""Where a number was measured: library versions, device, CPU, git commit, the machine's measured peak."""

from __future__ import annotations

import os
import platform
import subprocess
from functools import cache
from importlib import metadata
from pathlib import Path

import jax

from harness.core.fields import PACKAGES
from harness.core.plausibility import machine_peak


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


@cache
def git_commit() -> str | None:
    """The commit of the harness checkout, with '-dirty' when its code or configs have uncommitted changes."""
    root = Path(__file__).resolve().parents[2]  # the checkout: harness/core/ is two levels down
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!results"],
                               cwd=root, capture_output=True, text=True, timeout=5).stdout.strip()
        return sha.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


@cache
def static_environment() -> dict:
    return {
        "versions": {name: metadata.version(name) for name in PACKAGES},
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "git_commit": git_commit(),
    }


def environment(device: jax.Device | None = None) -> dict:
    device = device or jax.devices()[0]
    return {
        **static_environment(),
        "platform": device.platform,
        "device_kind": device.device_kind,
        "device": str(device),
        "device_count": jax.device_count(device.platform),
        "calibration": machine_peak(device),  # what step times are checked against (harness.core.plausibility)
    }
