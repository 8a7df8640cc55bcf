"""hydra/sweeper=vectorized: points that share a compiled program run as one job, each still its own run."""

import json

import pytest

from harness.jobs.tracking import POOL_FROM, run_name, run_tags

from conftest import records, run_cli, run_injected, wandb_file
from wandb_reader import read_run

GRID = ("optimizer.lr=0.001,0.01,0.1", "task.seed=1,2")
# What differs between a point run alone and in a group: how it was launched and timed, not what it computed.
LAUNCH = {"job", "timing", "plausibility", "started", "finished", "wandb", "environment", "config_hash"}


def _by_point(recs: list[dict]) -> dict:
    return {(r["config"]["method"]["name"], r["config"]["optimizer"]["lr"], r["config"]["task"]["seed"]): r
            for r in recs}


@pytest.mark.slow
def test_a_grouped_sweep_records_what_the_same_sweep_records_job_by_job(tmp_path):
    sweep = ("-m", "tracker=disabled", "report=false", "train.repeats=2", "method=diffstate,stop_gradient", *GRID)
    alone = run_cli(*sweep, f"results_dir={tmp_path / 'alone'}", cwd=tmp_path)
    grouped = run_cli(*sweep, "hydra/sweeper=vectorized", f"results_dir={tmp_path / 'grouped'}", cwd=tmp_path)
    assert alone.returncode == 0 and grouped.returncode == 0, alone.stderr[-2000:] + grouped.stderr[-2000:]
    assert "sweep: 12 jobs" in alone.stdout and "sweep: 2 jobs" in grouped.stdout
    assert "12 points in 2 jobs: 12 points in 2 vectorized jobs" in grouped.stdout
    a, b = _by_point(records(tmp_path / "alone")), _by_point(records(tmp_path / "grouped"))
    assert len(a) == 12 and sorted(a) == sorted(b)
    for point in a:
        left, right = ({k: v for k, v in r.items() if k not in LAUNCH} for r in (a[point], b[point]))
        left["config"].pop("results_dir"), right["config"].pop("results_dir")
        assert left == right, point  # metrics, history, drift, parameters, config: bit for bit
        assert run_name(a[point]) == run_name(b[point]) and run_tags(a[point]) == run_tags(b[point])
        assert sorted(a[point]["job"]["overrides"]) == sorted(
            [o for o in b[point]["job"]["overrides"] if not o.startswith("results_dir=")] + ["results_dir=" + str(
                tmp_path / "alone")])
        # The grouped point says it shared its training call, and with how many.
        assert a[point]["timing"]["points"] == 1 and b[point]["timing"]["points"] == 6
        assert b[point]["job"]["vectorized"]["points"] == 6
        assert b[point]["timing"]["in_loop_s_per_step_per_point"] == pytest.approx(
            b[point]["timing"]["in_loop_s_per_step"] / 6)
    # The report knows the group's times are not single runs' times.
    (sweep_dir,) = (tmp_path / "grouped" / "default").iterdir()
    assert json.loads((sweep_dir / "sweep.json").read_text())["planned_jobs"] == 2
    shown = run_cli("report", str(sweep_dir), cwd=tmp_path)
    assert shown.returncode == 0 and "missing" not in shown.stdout, shown.stdout + shown.stderr


@pytest.mark.slow  # over 8 s on 2 cores: the everyday suite stays near 5 minutes
def test_wandb_runs_of_a_grouped_job_read_back_complete(cli):
    lrs = ",".join(str(0.001 * (i + 1)) for i in range(POOL_FROM // 2))
    proc, recs = cli("-m", "hydra/sweeper=vectorized", "tracker=offline", "report=false", "train.steps=20",
                     "train.repeats=1", f"optimizer.lr={lrs}", "task.seed=1,2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(recs) == POOL_FROM and "sweep: 1 jobs" in proc.stdout  # logged by the writer processes
    assert len({r["wandb"]["id"] for r in recs}) == POOL_FROM
    for record in recs:
        assert record["wandb"]["file_complete"] is True and record["wandb"]["finished"]
        run = read_run(wandb_file(record))
        assert run["exit_code"] == 0 and run["run"].display_name == run_name(record)
        assert set(run["run"].tags) == set(run_tags(record))
        assert [h["train/step"] for h in run["history"]] == record["history"]["step"]
        assert [h["train/mse"] for h in run["history"]] == record["history"]["train_mse"]
        assert run["summary"]["final/train_mse"] == record["metrics"]["train"]["mse"]
        assert run["config"]["optimizer"]["lr"] == record["config"]["optimizer"]["lr"]


# Kills the command (SIGKILL, as the OOM killer or a scheduler does) right after the third point's record.
KILL_AFTER_THIRD = """
import os, signal
import harness.jobs.store as store
write, written = store.write_json_atomic, []
def write_then_die(path, record):
    write(path, record)
    if record.get("status") == "ok":
        written.append(path)
        if len(written) == 3:
            os.kill(os.getpid(), signal.SIGKILL)
store.write_json_atomic = write_then_die
"""


@pytest.mark.slow
def test_resume_after_a_sigkill_mid_group_reruns_exactly_the_points_without_records(tmp_path):
    sweep = ("-m", "hydra/sweeper=vectorized", "tracker=disabled", "report=false", "train.repeats=1", *GRID,
             f"results_dir={tmp_path / 'results'}", "name=killed")
    killed = run_injected(KILL_AFTER_THIRD, *sweep, cwd=tmp_path)
    assert killed.returncode == -9, killed.stderr[-2000:]
    (sweep_dir,) = (tmp_path / "results" / "killed").iterdir()
    before = {p: p.read_bytes() for p in sweep_dir.rglob("result.json")}
    statuses = sorted(json.loads(content)["status"] for content in before.values())
    assert statuses == ["ok", "ok", "ok", "running"]  # three points, and the job's marker
    resumed = run_cli(*sweep, f"resume={sweep_dir}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resume runs 3 of this job's 6 points again: [3, 4, 5]" in resumed.stdout
    after = {p: p.read_bytes() for p in sweep_dir.rglob("result.json")}
    assert len(after) == 6 and not (sweep_dir / "0" / "result.json").exists()  # the marker is gone
    for path, content in before.items():
        if json.loads(content)["status"] == "ok":
            assert after[path] == content  # completed points are not run again
    rerun = [json.loads(content) for path, content in after.items() if path not in before]
    assert len(rerun) == 3 and all(r["status"] == "ok" and r["timing"]["points"] == 3 for r in rerun)
    assert sorted(r["job"]["vectorized"]["point"] for r in rerun) == [3, 4, 5]


@pytest.mark.slow
def test_points_that_share_no_program_run_alone_and_bad_points_fail_alone(cli):
    # Each method's single learning rate shares its program with no other point: both run alone.
    proc, recs = cli("-m", "hydra/sweeper=vectorized", "tracker=disabled", "report=false", "train.repeats=1",
                     "train.steps=20", "optimizer.lr=0.01", "method=diffstate,stop_gradient")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2 points in 2 jobs: 0 points in 0 vectorized jobs" in proc.stdout and "2 alone" in proc.stdout
    assert [r["timing"]["points"] for r in recs] == [1, 1]
    # A point whose value the schema refuses is that point's failed record; the others of its job train.
    proc, recs = cli("-m", "hydra/sweeper=vectorized", "tracker=disabled", "report=false", "train.repeats=1",
                     "train.steps=20", "optimizer.lr=0.01,-1,0.02", "name=bad")
    assert proc.returncode == 1
    recs = [r for r in recs if r["config"]["name"] == "bad"]
    failed = [r for r in recs if r["status"] == "failed"]
    assert [r["config"]["optimizer"]["lr"] for r in failed] == [-1]
    assert failed[0]["error"]["message"] == "optimizer.lr: must be a finite number > 0, got -1.0"
    assert failed[0]["error"]["type"] == "ConfigError" and "Traceback" not in proc.stderr
    assert sorted(r["timing"]["points"] for r in recs if r["status"] == "ok") == [2, 2]


@pytest.mark.slow
def test_a_grouped_point_that_trains_in_chunks_trains_alone_in_its_job(cli):
    proc, recs = cli("-m", "hydra/sweeper=vectorized", "tracker=disabled", "report=false", "train.repeats=1",
                     "train.steps=20", "train.log_every=10", "optimizer.lr=0.01,0.02")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "sweep: 1 jobs" in proc.stdout  # grouped by the sweeper, which reads overrides only
    assert [(r["status"], r["timing"]["points"], r["timing"]["chunks"]) for r in recs] == [("ok", 1, 2)] * 2


@pytest.mark.slow  # over 8 s on 2 cores: the everyday suite stays near 5 minutes
def test_grouping_bad_input_is_one_line(cli, tmp_path):
    proc, recs = cli("-m", "hydra/sweeper=vectorized", "vectorize.max_points=0", "optimizer.lr=0.01,0.02")
    assert proc.returncode == 1 and not recs
    assert proc.stderr.strip() == ("error: vectorize.max_points: must be >= 1 (the most sweep points one "
                                   "vectorized job trains), got 0")
    sweep = ("-m", "hydra/sweeper=vectorized", "tracker=disabled", "report=false", "train.repeats=1",
             "train.steps=20", *GRID, "name=regroup")
    proc, recs = cli(*sweep, "vectorize.max_points=4")
    assert proc.returncode == 0 and len(recs) == 6
    (sweep_dir,) = (tmp_path / "results" / "regroup").iterdir()
    proc, _ = cli(*sweep, "vectorize.max_points=3", f"resume={sweep_dir}")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "the sweep grouped its points in jobs of up to 4 (vectorize.max_points=4), this command in jobs of " \
           "up to 3: resume with vectorize.max_points=4" in proc.stderr
    proc, _ = cli(*sweep[:1], *sweep[2:], "hydra/sweeper=shuffled", f"resume={sweep_dir}")
    assert proc.returncode == 1 and "the sweep ran its points in vectorized jobs (hydra/sweeper=vectorized), " \
                                    "this command in a job per point" in proc.stderr
