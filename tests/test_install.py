"""A built wheel, installed into a fresh virtualenv, runs the seed study from any directory."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


def test_wheel_installed_in_a_fresh_venv_runs_the_seed_study_from_another_directory(tmp_path):
    wheels, venv, work, source = tmp_path / "wheels", tmp_path / "venv", tmp_path / "elsewhere", tmp_path / "source"
    # Built from a copy of the checkout (pip builds in-tree: no build/ left in the repo, none stale reused),
    # in isolation from the repo's pyproject, as `pip install .` builds it.
    shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "results", ".ci-venv", "*.egg-info", "__pycache__", ".pytest_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels), str(source)],
                   check=True, capture_output=True, timeout=600)
    (wheel,) = wheels.glob("harness-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)], check=True,
                   capture_output=True, timeout=300)
    # The dependencies come from this environment's site-packages, added as a plain path: its .pth files
    # (this checkout's editable install among them) are not read, so `harness` can only be the wheel's.
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work.mkdir()
    # As a user runs it: no PYTHONPATH pointing at a checkout (the developers' own runs set one).
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run([str(python), "-c", "import harness.jobs.compose as a; print(a.__file__); print(a.CONF_DIR)"],
                           cwd=work, check=True, capture_output=True, text=True, env=clean).stdout.split()
    assert all(path.startswith(site) for path in where), where

    proc = subprocess.run([str(venv / "bin" / "harness"), "tracker=offline"], cwd=work, capture_output=True,
                          text=True, timeout=300, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = (work / "results" / "default").glob("*/result.json")
    record = json.loads(path.read_text())
    assert record["status"] == "ok" and record["wandb"]["mode"] == "offline"
    assert abs(record["metrics"]["test"]["mse"] - 3.2692759) < 1e-4  # the seed's number
    experiments = subprocess.run([str(venv / "bin" / "harness"), "experiment=seed_repro", "tracker=disabled",
                                  "--cfg", "job"], cwd=work, capture_output=True, text=True, timeout=120, env=clean)
    assert experiments.returncode == 0 and "name: seed_repro" in experiments.stdout, experiments.stderr[-2000:]
