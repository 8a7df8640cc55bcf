"""Nothing lost, nothing leaked: atomic records under SIGKILL, divergence, W&B failures, offline files."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from conftest import wandb_file
from wandb_reader import read_run

WRITER = """
import sys, itertools
from pathlib import Path
from harness.jobs.store import write_json_atomic
path = Path(sys.argv[1])
print("writing", flush=True)  # imports done: the kill lands while records are being written, however slow the start
for i in itertools.count():
    write_json_atomic(path, {"i": i, "history": list(range(i % 5000))})
"""


def test_records_survive_sigkill_at_random_moments_whole_or_not_at_all(tmp_path):
    rng = random.Random(0)
    for trial in range(12):
        path = tmp_path / f"{trial}" / "result.json"
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline() == "writing\n"
        time.sleep(rng.random() * 0.4)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        record = json.loads(path.read_text())  # the last whole version, never half of one
        assert record["history"] == list(range(record["i"] % 5000))


@pytest.mark.slow  # over 8 s on 2 cores: the everyday suite stays near 5 minutes
def test_a_diverging_learning_rate_is_recorded_as_diverged(cli):
    proc, (rec,) = cli("tracker=offline", "optimizer=adam", "optimizer.lr=1e20", "train.repeats=1")
    assert proc.returncode == 0, proc.stderr
    assert rec["status"] == "diverged"
    assert rec["divergence"]["first_nonfinite_step"] == 1
    assert rec["divergence"]["last_finite_step"] == 0
    assert rec["divergence"]["last_finite_train_mse"] == rec["history"]["train_mse"][0]
    wb = read_run(wandb_file(rec))
    assert wb["summary"]["status"] == "diverged"


@pytest.mark.slow  # over 8 s on 2 cores: the everyday suite stays near 5 minutes
def test_a_broken_wandb_costs_nothing_but_a_warning(cli, tmp_path):
    # Online mode with no API key: wandb.init raises. The run and its record must not care, and
    # the run is logged offline instead, ready for `wandb sync`.
    env = {"WANDB_API_KEY": "", "HOME": str(tmp_path), "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config")}
    proc, (rec,) = cli("tracker=online", "train.repeats=1", env=env)
    assert proc.returncode == 0, proc.stderr
    assert rec["status"] == "ok" and rec["metrics"]["test"]["mse"] > 0
    assert rec["wandb"]["requested_mode"] == "online" and rec["wandb"]["mode"] == "offline"
    assert rec["wandb"]["fallback"] and rec["wandb"]["file_complete"] is True
    assert read_run(wandb_file(rec))["summary"]["test/mse"] == rec["metrics"]["test"]["mse"]
    assert "W&B online not reached" in proc.stdout + proc.stderr
