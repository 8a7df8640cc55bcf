"""Your own model and task through `_target_`, from a package outside the harness (tests/byo/my_pkg on
PYTHONPATH), alone and in a multirun of three freeze methods, as the README's example runs them."""

import os
from pathlib import Path

import pytest

from conftest import records, run_cli

BYO = Path(__file__).resolve().parent / "byo"
OWN = ("model._target_=my_pkg.models.TinyCNN", "task._target_=my_pkg.data.quadrants", "+task.rows=256",
       "freeze=paths", "freeze.patterns=['^backbone/']", "optimizer=adam", "optimizer.lr=1e-2", "train.steps=150",
       "train.repeats=2", "tracker=disabled")


def own(tmp_path, *args):
    env = {"PYTHONPATH": os.pathsep.join([str(BYO), os.environ.get("PYTHONPATH", "")])}
    proc = run_cli(*args, *OWN, f"results_dir={tmp_path / 'results'}", cwd=tmp_path, env=env)
    return proc, records(tmp_path / "results")


def test_your_own_cnn_and_task_train_with_the_backbone_frozen(tmp_path):
    proc, (record,) = own(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert record["status"] == "ok"
    assert record["config"]["model"]["name"] == "TinyCNN" and record["config"]["task"]["name"] == "quadrants"
    assert record["config"]["task"]["rows"] == 256
    assert record["parameters"]["frozen_paths"] == ["backbone/bias", "backbone/kernel"]
    assert record["drift"]["unchanged"] is True and record["trained_drift"]["l2"] > 0
    assert record["metrics"]["test"]["accuracy"] > 0.8  # four classes: chance is 0.25
    assert record["metrics"]["test"]["cross_entropy"] < record["history"]["train_cross_entropy"][0]
    assert "accuracy" in proc.stdout and "MSE" not in proc.stdout


@pytest.mark.slow
def test_your_own_components_in_a_multirun_of_three_freeze_methods(tmp_path):
    proc, recs = own(tmp_path, "-m", "method=diffstate,jax_split,stop_gradient")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(r["config"]["method"]["name"] for r in recs) == ["diffstate", "jax_split", "stop_gradient"]
    assert all(r["status"] == "ok" and r["drift"]["unchanged"] is True for r in recs)  # Adam: no decay
    (report,) = (tmp_path / "results").rglob("report.md")
    text = report.read_text()
    assert "test accuracy" in text and "stop_gradient" in text


def test_a_setting_your_task_or_model_does_not_take_is_named(tmp_path):
    proc, (record,) = own(tmp_path, "+task.colour=red")
    assert proc.returncode == 1
    assert "task.colour: not a setting of task 'quadrants'; task 'quadrants' has: rows, noise" in proc.stderr
    assert record["status"] == "failed" and "Traceback" not in proc.stderr
    proc, _ = own(tmp_path, "+model.width=4")
    assert "model.width: not a setting of model 'TinyCNN'; model 'TinyCNN' has: channels" in proc.stderr
