"""A built wheel is clean to build, carries every config, and, installed into a fresh virtualenv, runs the seed
study from any directory."""

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow

# A warning raised from setuptools' own code, as Python prints it: ".../setuptools/command/build_py.py:215: _Warning:".
SETUPTOOLS_WARNING = re.compile(r"[/\\]setuptools[/\\]\S*:\d+: \w*Warning\b")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(wheel, pip's verbose build output): built once for the module, as `pip install .` builds it."""
    root = tmp_path_factory.mktemp("wheel")
    wheels, source = root / "wheels", root / "source"
    # Built from a copy of the checkout (pip builds in-tree: no build/ left in the repo, none stale reused),
    # in isolation from the repo's pyproject, as `pip install .` builds it. symlinks=True keeps conf/experiment a
    # symlink, as in a clone.
    shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "results", ".ci-venv", ".venv", "*.egg-info", "__pycache__", ".pytest_cache"))
    # --verbose: pip shows the backend's output (setuptools' warnings among it) only when asked to.
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--verbose", "--no-deps", "-w", str(wheels),
                           str(source)], check=False, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (wheel,) = wheels.glob("harness-*.whl")
    return wheel, proc.stdout + proc.stderr


def test_wheel_builds_without_setuptools_warnings_and_carries_every_yaml_of_conf(built):
    wheel, output = built
    # pip's own PYTHONWARNINGS=error fails on pip's import of pkg_resources, so the output is read instead.
    warnings = [line.strip() for line in output.splitlines()
                if SETUPTOOLS_WARNING.search(line) or "absent from the `packages` configuration" in line]
    assert not warnings, "\n".join(warnings)
    # Every YAML of conf/, following conf/experiment -> experiments/ as the build does (Path.rglob would not).
    conf = REPO / "conf"
    expected = {f"harness/conf/{Path(d, name).relative_to(conf).as_posix()}"
                for d, _, names in os.walk(conf, followlinks=True) for name in names if name.endswith(".yaml")}
    assert any(name.startswith("harness/conf/experiment/") for name in expected)  # the symlink was followed
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name for name in archive.namelist() if name.endswith(".yaml")}
    assert shipped == expected, (sorted(expected - shipped), sorted(shipped - expected))


def test_wheel_installed_in_a_fresh_venv_runs_the_seed_study_from_another_directory(built, tmp_path):
    wheel, _ = built
    venv, work = tmp_path / "venv", tmp_path / "elsewhere"
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

    proc = subprocess.run([str(venv / "bin" / "harness"), "tracker=offline"], check=False, cwd=work,
                          capture_output=True, text=True, timeout=300, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = (work / "results" / "default").glob("*/result.json")
    record = json.loads(path.read_text())
    assert record["status"] == "ok" and record["wandb"]["mode"] == "offline"
    assert abs(record["metrics"]["test"]["mse"] - 3.2692759) < 1e-4  # the seed's number
    experiments = subprocess.run([str(venv / "bin" / "harness"), "experiment=seed_repro", "tracker=disabled",
                                  "--cfg", "job"], check=False, cwd=work, capture_output=True, text=True, timeout=120,
                                 env=clean)
    assert experiments.returncode == 0 and "name: seed_repro" in experiments.stdout, experiments.stderr[-2000:]
