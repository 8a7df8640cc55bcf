"""Real multiruns through the command line: axes, failures, missing devices, launchers, kill and resume."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from harness.analysis import findings, report
from harness.analysis.frames import load_records

from conftest import records, run_cli, wandb_file
from wandb_reader import read_run

FAST = ("tracker=disabled", "train.warmup=0", "train.repeats=1", "train.measure_dispatch=false", "report=false")


@pytest.mark.slow
def test_a_sweep_over_every_axis_records_every_job_and_isolates_failures(cli):
    # freeze=backbone is a bad value only found at run time: the linear model has no backbone.
    proc, recs = cli("-m", *FAST, "freeze=kernel,backbone", "optimizer=adam,adamw", "optimizer.lr=1e-3,1e-2",
                     "train.steps=5,10", "device=cpu,gpu")
    assert proc.returncode == 1, "a sweep with a failed job exits non-zero"
    assert len(recs) == 32, proc.stdout[-3000:]
    by_status = {s: [r for r in recs if r["status"] == s] for s in ("ok", "failed", "skipped")}
    assert len(by_status["skipped"]) == 16  # every device=gpu job: this machine has none
    assert all("no 'gpu' devices" in r["error"]["message"] and "'cpu'" in r["error"]["message"]
               for r in by_status["skipped"])
    assert len(by_status["failed"]) == 8
    assert all("matches no parameter" in r["error"]["message"] for r in by_status["failed"])
    assert len(by_status["ok"]) == 8
    ok = by_status["ok"]
    assert {(r["config"]["optimizer"]["name"], r["config"]["optimizer"]["lr"], r["config"]["train"]["steps"])
            for r in ok} == {(o, lr, s) for o in ("adam", "adamw") for lr in (1e-3, 1e-2) for s in (5, 10)}
    # The summary names every failed and skipped job with its overrides; progress counted all 32.
    assert proc.stdout.count("failed #") == 8 and proc.stdout.count("skipped #") == 16
    assert "freeze=backbone" in proc.stdout
    assert "sweep: 32/32 done" in proc.stdout


@pytest.mark.slow  # over 8 s on 2 cores: the everyday suite stays near 5 minutes
def test_experiment_files_run_and_land_under_results_name_with_a_report(cli, tmp_path):
    proc, recs = cli("-m", "experiment=devices", *FAST, "report=true")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(r["status"] for r in recs) == ["ok", "ok", "skipped", "skipped"]
    assert all("/results/devices/" in r["job"]["output_dir"] for r in recs)
    (report,) = (tmp_path / "results" / "devices").glob("*/report.md")
    assert "2 ok, 0 diverged, 0 failed, 2 skipped" in report.read_text()
    assert (report.parent / "runs.parquet").stat().st_size > 0


@pytest.mark.slow
def test_device_index_and_data_parallel_count_on_a_two_device_host(cli):
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    proc, recs = cli("-m", *FAST, "task.n_train=56", "device.index=0,1", "device.count=1", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    placements = sorted(r["placement"]["state"] for r in recs)
    assert placements == [["TFRT_CPU_0"], ["TFRT_CPU_1"]] or placements == [["cpu:0"], ["cpu:1"]], placements
    proc, recs2 = cli("-m", *FAST, "task.n_train=56", "device.count=2", "device.index=0,1", env=env)
    assert proc.returncode == 0
    two = [r for r in recs2 if r["config"]["device"]["count"] == 2]
    sharded = [r for r in two if r["status"] == "ok"]
    assert len(sharded) == 1 and len(sharded[0]["placement"]["train_batch"]) == 2
    assert [r["status"] for r in two if r["config"]["device"]["index"] == 1] == ["skipped"]
    single = next(r for r in recs if r["config"]["device"]["index"] == 0)
    np.testing.assert_allclose(sharded[0]["metrics"]["test"]["mse"], single["metrics"]["test"]["mse"], rtol=1e-5)
    # Minibatches: each step's batch (not the training set) is split over the two devices.
    proc, recs3 = cli("-m", *FAST, "task.n_train=56", "train.batch_size=8", "device.count=1,2", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    one, two = sorted((r for r in recs3 if r["config"]["train"]["batch_size"] == 8),
                      key=lambda r: r["config"]["device"]["count"])
    assert len(two["placement"]["state"]) == 2 and two["batch"]["size"] == 8
    np.testing.assert_allclose(two["history"]["train_mse"], one["history"]["train_mse"], rtol=1e-5)


@pytest.mark.slow
def test_joblib_launcher_gives_each_job_its_own_wandb_run(cli):
    proc, recs = cli("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "tracker=offline",
                     "train.repeats=1", "report=false", "method=diffstate,stop_gradient")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [r["status"] for r in recs] == ["ok", "ok"]
    runs = [read_run(wandb_file(r)) for r in recs]
    assert runs[0]["run"].run_id != runs[1]["run"].run_id
    assert [w["config"]["method"]["name"] for w in runs] == [r["config"]["method"]["name"] for r in recs]


@pytest.mark.slow
def test_submitit_launcher_code_path_runs_locally(cli):
    proc, recs = cli("-m", "hydra/launcher=submitit_local", *FAST, "optimizer=adam,adamw")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [r["status"] for r in recs] == ["ok", "ok"]


@pytest.mark.slow
def test_sigkill_mid_sweep_leaves_a_crashed_job_that_report_shows_and_resume_reruns(tmp_path):
    results = tmp_path / "results"
    args = ["-m", f"results_dir={results}", "name=killed", "tracker=disabled", "report=false", "train.steps=100000",
            "train.warmup=0", "train.repeats=2", "optimizer.lr=1e-3,2e-3,3e-3,4e-3,5e-3,6e-3"]
    proc = subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)

    def statuses():
        out = []
        for path in results.rglob("result.json"):
            try:
                out.append(json.loads(path.read_text())["status"])
            except (OSError, ValueError):
                pass  # not there yet; a record is never half-written (asserted below)
        return out

    deadline = time.time() + 120
    while statuses().count("ok") < 2 and time.time() < deadline:
        time.sleep(0.02)
    while "running" not in statuses() and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {p: p.read_bytes() for p in results.rglob("result.json")}
    finished = {p: c for p, c in before.items() if json.loads(c)["status"] == "ok"}
    assert 2 <= len(finished) < 6, "the kill must land mid-sweep"
    # Every file is whole: the finished jobs' records and one marker for the job that was killed.
    assert sorted(json.loads(c)["status"] for c in before.values()) == ["ok"] * len(finished) + ["running"]
    (sweep,) = {p.parent.parent for p in before}
    (marker_path,) = [p for p, c in before.items() if json.loads(c)["status"] == "running"]
    marker = json.loads(marker_path.read_text())
    if isinstance(marker["process"]["oom_kills"], int):  # the kernel says (/proc/vmstat): as if it OOM-killed it
        marker["process"]["oom_kills"] -= 1
        marker_path.write_text(json.dumps(marker))

    # The killed job is visible: report shows it crashed and lists the jobs that never started.
    shown = run_cli("report", str(sweep), cwd=tmp_path)
    assert shown.returncode == 1, shown.stdout + shown.stderr
    assert "1 crashed" in shown.stdout and f"#{len(finished)} crashed" in shown.stdout
    assert "pid" in shown.stdout and "ended without writing its result" in shown.stdout
    assert f"missing: {6 - len(finished) - 1} planned jobs have no record" in shown.stdout
    assert "optimizer.lr=0.006" in shown.stdout and "Traceback" not in shown.stderr

    resumed = run_cli(*args, f"resume={sweep}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    recs = records(results)
    assert len(recs) == 6 and all(r["status"] == "ok" for r in recs)
    assert resumed.stdout.count("skipped by resume") == len(finished)
    assert resumed.stdout.count("crashed before, run again by resume") == 1
    if isinstance(marker["process"]["oom_kills"], int):
        assert "the kernel's OOM killer killed 1 process(es) on this host meanwhile" in shown.stdout
        assert "it ran out of memory last time and needs as much again" in resumed.stdout
    for path, content in finished.items():
        assert path.read_bytes() == content, "resume re-ran a completed job"
    assert report.main_report([str(sweep)]) == 0  # complete now (in-process: the command ran above)


@pytest.mark.slow
def test_a_shuffled_sweep_runs_its_grid_in_a_seeded_order_that_its_plan_and_resume_keep(tmp_path):
    """hydra/sweeper=shuffled: every grid point once, in the order launch_order gives for the seed, each job
    under the number its plan gives it; resume after two lost records reruns exactly those two (a resume in
    another order is refused, one with another report= is not)."""
    from harness.jobs.sweep_plan import launch_order

    results = tmp_path / "results"
    args = ["-m", "hydra/sweeper=shuffled", f"results_dir={results}", "name=shuffled", "tracker=disabled",
            "report=false", "train.steps=5", "train.warmup=0", "train.repeats=1", "train.measure_dispatch=false",
            "method=diffstate,stop_gradient,attribute", "task.seed=1,2"]
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (sweep,) = (results / "shuffled").iterdir()
    plan = json.loads((sweep / "sweep.json").read_text())["jobs"]
    grid = [[f"method={m}", f"task.seed={s}"] for m in ("diffstate", "stop_gradient", "attribute") for s in (1, 2)]
    assert [job["overrides"][-2:] for job in plan] == launch_order(grid, 0) != grid
    for job in plan:
        record = json.loads((sweep / str(job["num"]) / "result.json").read_text())
        assert record["job"]["overrides"][-2:] == job["overrides"][-2:] and record["status"] == "ok"
    for num in (1, 4):
        (sweep / str(num) / "result.json").unlink()
    in_grid_order = run_cli(*[a for a in args if a != "hydra/sweeper=shuffled"], f"resume={sweep}", cwd=tmp_path)
    assert in_grid_order.returncode == 1 and "the same jobs in another order" in in_grid_order.stderr
    # What a resume may change, here report=, leaves the completed jobs complete.
    args = [a if a != "report=false" else "report=true" for a in args]
    resumed = run_cli(*args, f"resume={sweep}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert resumed.stdout.count("skipped by resume") == 4
    for num in (1, 4):
        overrides = json.loads((sweep / str(num) / "result.json").read_text())["job"]["overrides"]
        assert [o for o in overrides if o.startswith(("method=", "task.seed="))] == plan[num]["overrides"][-2:]


@pytest.mark.slow
def test_a_record_that_does_not_validate_is_rerun_by_resume_and_a_finished_sweep_resumes_to_nothing_new(tmp_path):
    """A malformed `ok` record is not done (resume and report agree); progress counts what is done; one W&B run per
    job and one report run, also after a resume that has nothing left to run; every file follows the umask."""
    results = tmp_path / "results"
    args = ["-m", f"results_dir={results}", "tracker=offline", "train.warmup=0", "train.repeats=1",
            "train.measure_dispatch=false", "train.steps=5", "method=diffstate,stop_gradient,stop_gradient"]
    old = os.umask(0o027)  # the harness's processes inherit it
    try:
        first = run_cli(*args, cwd=tmp_path)
    finally:
        os.umask(old)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "warning: duplicate sweep points (job #2 repeats job #1)" in first.stdout
    (sweep,) = (results / "default").iterdir()
    files = [p for p in sweep.rglob("*") if p.is_file() and "wandb" not in p.parts and p.name != ".harness.lock"]
    assert {oct(p.stat().st_mode & 0o777) for p in files} == {"0o640"}, {p: oct(p.stat().st_mode) for p in files}
    assert {p.name for p in files} >= {"result.json", "sweep.json", "report.md", "runs.parquet", "progress.jsonl"}

    bad = sweep / "1" / "result.json"
    record = json.loads(bad.read_text())
    record["metrics"]["test"]["mse"] = "low"  # status ok, one field of the wrong kind
    bad.write_text(json.dumps(record))
    assert report.main_report([str(sweep)]) == 1  # the job is missing: its record does not validate

    resumed = run_cli(*args, f"resume={sweep}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (f"record does not validate, run again by resume: {bad} (malformed record: test_mse is 'low', expected "
            "a number)") in resumed.stdout
    assert resumed.stdout.count("skipped by resume") == 2
    progress = [line for line in resumed.stdout.splitlines() if line.startswith("sweep: ") and "done" in line]
    assert progress[0].startswith("sweep: 2/3 done") and progress[-1].startswith("sweep: 3/3 done"), progress
    assert json.loads(bad.read_text())["metrics"]["test"]["mse"] > 0
    assert report.main_report([str(sweep)]) == 0
    for job in ("0", "1", "2"):
        assert len(list((sweep / job / "wandb").glob("offline-run-*"))) == 1, job
    (report_run,) = (sweep / "wandb").glob("offline-run-*")  # the rerun's report replaced the first

    nothing_left = run_cli(*args, f"resume={sweep}", cwd=tmp_path)
    assert nothing_left.returncode == 0, nothing_left.stderr[-2000:]
    assert nothing_left.stdout.count("skipped by resume") == 3
    assert f"W&B report run unchanged (no record changed since it was logged): {report_run}" in nothing_left.stdout
    assert list((sweep / "wandb").glob("offline-run-*")) == [report_run]


@pytest.mark.slow
def test_an_a_a_pair_of_real_seed_sweeps_is_no_regression_and_a_step_below_the_floor_is_too_short(tmp_path):
    """Issue 21's A/A pair: one seed-study sweep run twice, one after the other, each in its own process.
    `harness compare --fail-on-regression` exits 0. At 10 steps (~3 µs of work inside a ~40 µs call) the
    in-loop step time is below the noise floor on any machine: every comparison of it says so, in compare and
    in the sweep's own findings, with the step count that would resolve it; none calls it slower or faster."""
    sweeps = []
    for name in ("a", "b"):
        proc = run_cli("-m", "method=diffstate,stop_gradient,reference", "train.steps=10", "tracker=disabled",
                       "report=false", f"name={name}", f"results_dir={tmp_path / 'results'}", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        (sweep,) = (tmp_path / "results" / name).iterdir()
        sweeps.append(sweep)
    proc = run_cli("compare", *map(str, sweeps), "--fail-on-regression", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 matched, 0 with a regression, 0 unmatched" in proc.stdout
    overall = proc.stdout.split("Over all 3 matched configurations")[1]
    assert "| in-loop step | — | too short to resolve: use more steps (at least " in overall
    assert overall.count("too short to resolve: use more steps (at least ") >= 4  # overall, then each configuration
    found = findings.comparisons(load_records(sweeps[0])[0])
    in_loop = found[found["metric"] == "in_loop_s_per_step"]
    assert list(in_loop["candidate"]) == ["stop_gradient", "reference"]
    assert in_loop["verdict"].str.startswith("too short to resolve: use more steps (at least ").all()


@pytest.mark.parametrize("experiment, sweeper", [(None, "GridSweeper"), ("digits", "ShuffledSweeper"),
                                                 ("digits_tuned", "TunedSweeper")])
def test_an_experiment_chooses_its_own_sweeper_over_the_default_grid(experiment, sweeper):
    # an `override hydra/sweeper` in the primary config would beat the experiment's own (it did, for a day)
    from hydra import compose, initialize_config_dir

    from harness.core.config import register
    from harness.jobs.compose import CONF_DIR

    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={experiment}"] if experiment else [],
                      return_hydra_config=True)
    assert cfg.hydra.sweeper._target_.endswith(f".{sweeper}")
