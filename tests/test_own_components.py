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


def with_my_pkg(tmp_path, *args):
    """The CLI with my_pkg importable (tests/byo on PYTHONPATH) and results under tmp_path: (process, records)."""
    env = {"PYTHONPATH": os.pathsep.join([str(BYO), os.environ.get("PYTHONPATH", "")])}
    proc = run_cli(*args, f"results_dir={tmp_path / 'results'}", cwd=tmp_path, env=env)
    return proc, records(tmp_path / "results")


def own(tmp_path, *args):
    return with_my_pkg(tmp_path, *args, *OWN)


@pytest.mark.slow  # over 8 s on 2 cores: the everyday suite stays near 5 minutes
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


FUSSY = ("task._target_=my_pkg.data.fussy", "train.steps=20", "train.repeats=1", "report=false", "tracker=disabled")


def fussy(tmp_path, *args):
    """The seed study's model on my own task that fails for one seed (my_pkg.data.fussy)."""
    return with_my_pkg(tmp_path, *args, *FUSSY)


@pytest.mark.slow  # over 8 s on 2 cores: the everyday suite stays near 5 minutes
def test_a_point_whose_own_task_raises_fails_alone_in_a_vectorized_group(tmp_path):
    """One seed's task raises inside a group of six points: that seed's points fail, the others' records are
    what they would be job by job (the group trains each point alone once it fails)."""
    proc, recs = fussy(tmp_path, "-m", "hydra/sweeper=vectorized", "+task.fail_on=2", "task.seed=1,2,3",
                       "optimizer.lr=1e-3,2e-3")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "6 points in 1 jobs" in proc.stdout
    by_seed = {}
    for record in recs:
        by_seed.setdefault(record["config"]["task"]["seed"], []).append(record)
    assert [r["status"] for r in by_seed[1] + by_seed[3]] == ["ok"] * 4
    assert [r["status"] for r in by_seed[2]] == ["failed"] * 2
    assert all("no data for seed 2" in r["error"]["message"] for r in by_seed[2])
    assert "6 runs recorded: 4 ok, 0 diverged, 2 failed" in proc.stdout


@pytest.mark.slow  # over 8 s on 2 cores: the everyday suite stays near 5 minutes
def test_sys_exit_in_your_own_task_is_its_jobs_failed_record_and_the_sweep_goes_on(tmp_path):
    proc, recs = fussy(tmp_path, "-m", "+task.exit_on=2", "task.seed=1,2,3")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert sorted(r["status"] for r in recs) == ["failed", "ok", "ok"]
    (exited,) = [r for r in recs if r["status"] == "failed"]
    assert exited["error"]["type"] == "SystemExit" and exited["error"]["exit_code"] == 3
    assert "sys.exit(3)" in exited["error"]["message"] and "failed #" in proc.stdout
    assert "sweep finished: 3 jobs, 3 runs recorded: 2 ok" in proc.stdout
    (tmp_path / "single").mkdir()
    proc, _ = fussy(tmp_path / "single", "+task.exit_on=123")  # a single run: its record, one line, exit 1
    assert proc.returncode == 1 and "error: SystemExit: the run's code called sys.exit(3)" in proc.stderr


def test_a_huge_error_message_is_cut_on_the_terminal_and_kept_whole_in_the_record(tmp_path):
    proc, (record,) = fussy(tmp_path, "+task.fail_on=123", "+task.padding=10000000")
    assert proc.returncode == 1 and len(proc.stderr) < 5000, len(proc.stderr)
    assert "characters; result.json holds them all" in proc.stderr
    assert len(record["error"]["message"]) > 10_000_000


def test_a_sweep_over_task_targets_runs_each(tmp_path):
    """The sweep's own config holds no target yet (task._target_ is required): each job's does."""
    proc, recs = with_my_pkg(tmp_path, "-m", "task._target_=my_pkg.data.fussy,my_pkg.data.line", *FUSSY[1:])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(r["config"]["task"]["name"] for r in recs) == ["fussy", "line"]
    assert all(r["status"] == "ok" for r in recs)


@pytest.mark.slow  # over 8 s on 2 cores: the everyday suite stays near 5 minutes
def test_an_integer_param_of_your_model_is_named_with_what_to_do(tmp_path):
    args = ("model._target_=my_pkg.models.CountingLinear", *FUSSY)
    proc, _ = with_my_pkg(tmp_path, *args)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "freeze: parameter 'count' is an integer nnx.Param" in proc.stderr and "freeze.patterns" in proc.stderr
    proc, _ = with_my_pkg(tmp_path, *args, "freeze=paths", 'freeze.patterns=["^count$"]')  # frozen: it trains
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow  # over 8 s on 2 cores: the everyday suite stays near 5 minutes
def test_non_finite_data_or_a_class_count_that_is_no_number_is_named_at_load(tmp_path):
    proc, (record,) = fussy(tmp_path, "+task.nans=3")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "task 'fussy' returned x_train with 3 non-finite values (NaN or infinity) of " in proc.stderr
    assert record["status"] == "failed"  # not `diverged` "from step 0", which read as a learning-rate problem
    (tmp_path / "r2").mkdir()
    proc, _ = fussy(tmp_path / "r2", "+task.classes=four")
    assert proc.returncode == 1 and "classes='four': classes is a whole number >= 1" in proc.stderr, proc.stderr


@pytest.mark.slow  # over 8 s on 2 cores: the everyday suite stays near 5 minutes
def test_a_keyboard_interrupt_raised_by_your_task_is_its_jobs_failed_record_not_a_stop(tmp_path):
    proc, recs = fussy(tmp_path, "-m", "+task.interrupt_on=2", "task.seed=1,2,3")
    assert proc.returncode == 1 and "interrupted by" not in proc.stderr, proc.stderr[-3000:]
    assert sorted(r["status"] for r in recs) == ["failed", "ok", "ok"]
    (raised,) = [r for r in recs if r["status"] == "failed"]
    assert raised["error"]["type"] == "KeyboardInterrupt" and "no signal stopped it" in raised["error"]["message"]
