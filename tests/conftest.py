import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from harness.jobs.compose import spec_from_overrides

REPO = Path(__file__).resolve().parent.parent


# Pretraining caches of in-process runs land here, never in the repository's results/.
_RESULTS = tempfile.mkdtemp(prefix="harness-tests-")
atexit.register(shutil.rmtree, _RESULTS, True)


def spec_for(*overrides: str):
    """`spec_from_overrides`, with results under a temporary directory unless `results_dir=` is given."""
    if not any(override.startswith("results_dir=") for override in overrides):
        overrides = (*overrides, f"results_dir={_RESULTS}")
    return spec_from_overrides(*overrides)


def run_cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    """`python -m harness ARGS` in a subprocess, as a user runs it."""
    full_env = {**os.environ, "HYDRA_FULL_ERROR": "0", **(env or {})}
    full_env.pop("PYTEST_CURRENT_TEST", None)
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def run_injected(injection: str, *args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    """`harness ARGS` as a user runs it, with `injection` (Python code: the fault) run first in the same process."""
    code = f"import sys\n{injection}\nfrom harness.cli import main\nsys.argv[0] = 'harness'\nmain()\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env={**env, "HYDRA_FULL_ERROR": "0"},
                          capture_output=True, text=True, timeout=timeout)


def wandb_file(record: dict) -> Path:
    """The offline run file (run-*.wandb) of a record's W&B run."""
    (path,) = Path(record["wandb"]["dir"]).parent.glob("run-*.wandb")
    return path


def records(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.rglob("result.json"))]


@pytest.fixture
def cli(tmp_path):
    """Runs the harness CLI with results under tmp_path; returns (process, records)."""

    def run(*args: str, env: dict | None = None):
        proc = run_cli(*args, f"results_dir={tmp_path / 'results'}", cwd=tmp_path, env=env)
        return proc, records(tmp_path / "results")

    return run
