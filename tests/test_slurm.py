"""Sweeps through `hydra/launcher=slurm` on a real single-node Slurm cluster (tests/slurm/start.sh).

Every job is a Slurm job; jobs that Slurm ends (time limit, memory limit, scancel) leave `crashed`
records and the sweep still ends with its summary, its report and exit code 1; `resume` reruns
exactly those jobs. Marked `slurm`: they run where the cluster is up (.ci/run starts it) and are
skipped, with the reason, where it is not; under CI (CI=true) a missing cluster fails them instead.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import records, run_cli, wandb_file
from harness.core.fields import config_key
from wandb_reader import read_run

STATE = Path("/run/harness-slurm")
# Minutes of real Slurm jobs (one waits for a 1-minute time limit): with the slow checks, in .ci/run.
pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def _cluster_problem() -> str | None:
    if shutil.which("sbatch") is None:
        return "no Slurm client (sbatch) here; as root: bash tests/slurm/start.sh"
    try:
        out = subprocess.run(["sinfo", "-h", "-p", "debug", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as err:
        return f"sinfo failed ({err}); as root: bash tests/slurm/start.sh"
    if out.returncode != 0 or not any(s in out.stdout for s in ("idle", "mixed", "allocated")):
        return f"no Slurm partition 'debug' with a usable node ({(out.stderr or out.stdout).strip()!r}); " \
               "as root: bash tests/slurm/start.sh"
    return None


_problem = _cluster_problem()
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
if _problem and not IN_CI:
    pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.skip(reason=_problem)]


@pytest.fixture(autouse=True)
def _cluster_up_in_ci():
    if _problem:  # only reached in CI: .ci/run starts the cluster, so its absence is a failure there
        pytest.fail(f"CI must run the Slurm tests: {_problem}")


ENFORCED_MEMORY = (STATE / "enforce_memory").exists() and (STATE / "enforce_memory").read_text().strip() == "yes"
# Small Slurm jobs: one core and W&B off unless a test reads it; report=true as a user's default.
SLURM = ("hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.cpus_per_task=1",
         "hydra.launcher.mem_gb=2", "train.warmup=0", "train.repeats=1", "train.measure_dispatch=false")
# The killed-jobs sweep has four kinds of job on one axis: test-only experiment files (--config-dir).
MLP = "defaults:\n  - override /model: mlp\n  - override /freeze: none\n"
JOB_KINDS = {
    "ok": ("", 50),
    # A billion float32 rows: far over hydra.launcher.mem_gb; refused inside the job's Slurm cgroup before its
    # data exists (harness/core/memory.py), where the cgroup used to kill it within seconds.
    "huge_data": ("task: {n_train: 1000000000}\n", 50),
    # Seconds of training: scancel'd while it runs, completes when resumed.
    "short": (MLP + "model: {width: 32}\n", 2000),
    # Hours of training with a small history (10M steps of a 512-wide MLP): always ended by the time limit.
    "endless": (MLP + "model: {width: 512}\n", 10_000_000),
}


def write_job_kinds(conf_dir: Path) -> None:
    (conf_dir / "experiment").mkdir(parents=True)
    for kind, (body, steps) in JOB_KINDS.items():
        (conf_dir / "experiment" / f"slurm_{kind}.yaml").write_text(
            f"# @package _global_\n{body}train: {{steps: {steps}}}\n")


def sacct_states(job_ids: list[str]) -> dict[str, str]:
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "JobID,State", *[f"-j{j}" for j in job_ids]],
                         capture_output=True, text=True, check=True).stdout
    return dict(line.split("|", 1) for line in out.splitlines())


def scancel_when_running(sweep_dir: Path, job_num: int, proc: subprocess.Popen, timeout: float = 600) -> str:
    """Waits until job `job_num` of the sweep in `sweep_dir` runs in Slurm, then scancels it; returns its id."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, "the sweep ended before its job could be cancelled"
        for path in (sweep_dir / ".submitit").glob(f"*_{job_num}"):  # <array job id>_<array index = job num>
            state = subprocess.run(["squeue", "-h", "-j", path.name, "-o", "%T"], capture_output=True,
                                   text=True).stdout.strip()
            if state == "RUNNING":
                subprocess.run(["scancel", path.name], check=True)
                return path.name
        time.sleep(0.2)
    raise AssertionError(f"job {job_num} of {sweep_dir} never ran")


def popen_cli(*args: str, cwd: Path, log: Path) -> subprocess.Popen:
    """`python -m harness ARGS` in the background; its output goes to log.out / log.err (no pipe to fill)."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    env.pop("PYTEST_CURRENT_TEST", None)
    return subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=cwd, env=env,
                            stdout=open(log.with_suffix(".out"), "w"), stderr=open(log.with_suffix(".err"), "w"))


def finish(proc: subprocess.Popen, log: Path) -> tuple[str, str]:
    proc.wait(timeout=900)
    return log.with_suffix(".out").read_text(), log.with_suffix(".err").read_text()


def by_num(recs: list[dict]) -> dict[int, dict]:
    return {r["job"]["num"]: r for r in recs}


def test_a_slurm_sweep_runs_every_job_as_a_slurm_job_with_records_wandb_runs_and_a_report(tmp_path):
    results = tmp_path / "results"
    # Job 0: two vectorized points in one Slurm job; job 1's two points fail in Python once JAX has
    # traced the model (the linear model has no backbone to freeze): a failed record each, as alone.
    proc = run_cli("-m", *SLURM, f"results_dir={results}", "name=slurm", "tracker=offline", "report=true",
                   "vectorize.lr=[1e-3,1e-2]", "train.steps=20", "freeze=kernel,backbone", cwd=tmp_path, timeout=900)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    recs = records(results)
    assert sorted((r["job"]["num"], r["status"]) for r in recs) == [(0, "ok"), (0, "ok"), (1, "failed"),
                                                                       (1, "failed")], recs
    ok = [r for r in recs if r["status"] == "ok"]
    failed = [r for r in recs if r["status"] == "failed"]
    assert all("matches no parameter" in r["error"]["message"] for r in failed)
    assert sorted(r["config"]["optimizer"]["lr"] for r in failed) == [1e-3, 1e-2]
    assert sorted(r["config"]["optimizer"]["lr"] for r in ok) == [1e-3, 1e-2]
    assert [r["job"]["vectorized"]["points"] for r in ok] == [2, 2]

    # Every job ran as its own task of one Slurm array job, which Slurm saw complete (the Python
    # failure is a record, not a failed Slurm job), on this cluster's partition.
    job_ids = {r["job"]["num"]: r["job"]["slurm"]["job_id"] for r in recs}
    assert ok[0]["job"]["slurm"]["job_id"] == ok[1]["job"]["slurm"]["job_id"]
    (array_id,) = {job_id.split("_")[0] for job_id in job_ids.values()}
    assert job_ids == {0: f"{array_id}_0", 1: f"{array_id}_1"}
    assert all(r["job"]["slurm"]["partition"] == "debug" for r in recs)
    assert set(sacct_states(list(job_ids.values())).values()) == {"COMPLETED"}

    # Each run's offline W&B run is in its own dir, complete and readable with no server.
    for r in recs:
        run = read_run(wandb_file(r))
        assert Path(r["wandb"]["dir"]).is_relative_to(Path(r["job"]["output_dir"]))
        assert run["summary"]["status"] == r["status"]
    assert "sweep finished: 2 jobs, 4 runs recorded: 2 ok, 0 diverged, 2 failed, 0 skipped, 0 crashed" in proc.stdout
    (report,) = results.glob("slurm/*/report.md")
    assert "4 runs, 2 ok, 0 diverged, 2 failed, 0 skipped, 0 crashed" in report.read_text()


def test_jobs_slurm_ends_are_recorded_crashed_and_resume_reruns_exactly_them(tmp_path):
    """Time limit, memory limit (where the cluster enforces it) and scancel, in one sweep, then resumed."""
    write_job_kinds(tmp_path / "conf")
    kinds = ["ok", "huge_data", "short", "endless"] if ENFORCED_MEMORY else ["ok", "short", "endless"]
    num = {kind: i for i, kind in enumerate(kinds)}
    results = tmp_path / "results"
    # A warning signal asked for 90 s before a 1-minute limit: Slurm sends it as each job starts, before its Python
    # has a handler; it must kill none (the ok job completes, the endless one ends by its time limit).
    args = ["-cd", str(tmp_path / "conf"), "-m", *SLURM, "hydra.launcher.timeout_min=1",
            "hydra.launcher.signal_delay_s=90", f"results_dir={results}",
            "name=killed", "tracker=disabled", "report=true", "experiment=" + ",".join(f"slurm_{k}" for k in kinds)]

    proc = popen_cli(*args, cwd=tmp_path, log=tmp_path / "sweep")
    while not list(results.glob("killed/*/.submitit")) and proc.poll() is None:
        time.sleep(0.2)
    (sweep,) = results.glob("killed/*")
    cancelled = scancel_when_running(sweep, num["short"], proc)
    stdout, stderr = finish(proc, tmp_path / "sweep")
    assert proc.returncode == 1, stdout[-3000:] + stderr[-3000:]

    recs = by_num(records(results))
    assert sorted(recs) == list(range(len(kinds))), "one record per job, the killed ones included"
    assert recs[num["ok"]]["status"] == "ok"
    expected = {"short": "CANCELLED", "endless": "TIMEOUT"}
    for kind, state in expected.items():
        record = recs[num[kind]]
        assert record["status"] == "crashed", record
        assert record["job"]["slurm"]["state"].split()[0] == state
        assert f"ended {state}" in record["error"]["message"]
        assert record["job"]["output_dir"] == str(sweep / str(num[kind]))
        assert record["config"]["train"]["steps"] == JOB_KINDS[kind][1]
    assert recs[num["short"]]["job"]["slurm"]["job_id"] == cancelled
    # Slurm's own words in the job's stderr: slurmstepd's "CANCELLED AT" once the step runs, srun's "has
    # expired" when the scancel lands between the allocation (squeue's RUNNING) and the step's start.
    tail = recs[num["short"]]["error"]["stderr_tail"]
    assert "CANCELLED AT" in tail or re.search(r"srun: error: Slurm job \d+ has expired", tail), tail
    assert "DUE TO TIME LIMIT" in recs[num["endless"]]["error"]["stderr_tail"]
    if ENFORCED_MEMORY:
        record = recs[num["huge_data"]]
        assert record["status"] == "failed", record
        assert record["error"]["type"] == "InsufficientMemory", record["error"]
        assert "cgroup limit" in record["error"]["message"] and "refused before making its data" in \
            record["error"]["message"], record["error"]["message"]
    failed, crashed = int(ENFORCED_MEMORY), 2
    counts = f"1 ok, 0 diverged, {failed} failed, 0 skipped, {crashed} crashed"
    assert f"{len(kinds)} runs recorded: {counts}" in stdout
    assert stdout.count("crashed #") == crashed
    report = (sweep / "report.md").read_text()
    assert counts in report

    # resume: the ok job is not run again; every crashed or failed one is, as a new Slurm job. The endless
    # job is cancelled as soon as it runs again (it would only hit its time limit once more).
    before = {n: (sweep / str(n) / "result.json").read_bytes() for n in recs}
    proc = popen_cli(*args, f"resume={sweep}", cwd=tmp_path, log=tmp_path / "resume")
    submitted = set((sweep / ".submitit").iterdir())
    while proc.poll() is None and not set((sweep / ".submitit").iterdir()) - submitted:
        time.sleep(0.2)
    recancelled = scancel_when_running(sweep, num["endless"], proc)
    stdout, stderr = finish(proc, tmp_path / "resume")
    assert proc.returncode == 1, stdout[-3000:] + stderr[-3000:]
    after = by_num(records(results))
    assert sorted(after) == sorted(recs)
    assert (sweep / str(num["ok"]) / "result.json").read_bytes() == before[num["ok"]], "resume re-ran an ok job"
    assert after[num["short"]]["status"] == "ok", "the cancelled job, run again, completes"
    assert after[num["endless"]]["status"] == "crashed"
    assert after[num["endless"]]["job"]["slurm"]["job_id"] == recancelled != recs[num["endless"]]["job"]["slurm"]["job_id"]
    if ENFORCED_MEMORY:
        assert after[num["huge_data"]]["job"]["slurm"]["job_id"] != recs[num["huge_data"]]["job"]["slurm"]["job_id"]
    for n in recs:
        if n != num["ok"]:
            assert (sweep / str(n) / "result.json").read_bytes() != before[n], f"job {n} was not run again"


@pytest.mark.skipif(not ENFORCED_MEMORY and not IN_CI, reason="this cluster does not enforce memory limits (no "
                    "cgroup v1 memory controller: see tests/slurm/start.sh)")
def test_the_cluster_enforces_memory_limits():
    """Keeps the memory case above from silently dropping out in CI, where the cluster must enforce memory."""
    assert ENFORCED_MEMORY, f"{STATE / 'enforce_memory'}: tests/slurm/start.sh found no cgroup v1 memory controller"
    out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, check=True).stdout
    assert "proctrack/cgroup" in out and "CR_CORE_MEMORY" in out.upper()


def test_a_two_task_slurm_job_is_one_run_across_two_processes_recorded_once(tmp_path):
    """`hydra.launcher.tasks_per_node=2`: the job's two srun tasks are the run's two processes (issue 30).

    Job 0 asks for one process in a 2-task step: refused by both tasks, one failed record naming the field.
    Job 1 asks for two: task 0 writes the one record and the one W&B run, and its numbers are those of the same
    run spawned locally as two processes (gloo either way, the same programs)."""
    results = tmp_path / "results"
    run = ("task.n_train=64", "train.steps=30")
    proc = run_cli("-m", *SLURM, "hydra.launcher.tasks_per_node=2", f"results_dir={results}", "name=tasks",
                   "tracker=offline", "distributed.processes=1,2", *run, cwd=tmp_path, timeout=900)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    recs = by_num(records(results))
    assert sorted(recs) == [0, 1], "one record per job, not one per task"
    assert recs[0]["status"] == "failed" and recs[0]["error"]["type"] == "ConfigError", recs[0]["error"]
    assert recs[0]["error"]["message"].startswith("distributed.processes: is 1, but this Slurm step runs 2 tasks")

    across = recs[1]
    assert across["status"] == "ok", across.get("error")
    assert across["distributed"]["processes"] == 2 and across["distributed"]["devices_per_process"] == 1
    assert across["distributed"]["launcher"] == "slurm" and across["distributed"]["coordinator"].startswith("127.0.0.1:")
    assert len(across["placement"]["train_batch"]) == 2 and len(across["distributed"]["run_s"]) == 2
    job_id = across["job"]["slurm"]["job_id"]
    out = subprocess.run(["sacct", "-j", job_id, "-n", "-P", "-o", "JobID,NTasks,State"], capture_output=True,
                         text=True, check=True).stdout
    steps = {row.split("|")[0]: row.split("|")[1:] for row in out.splitlines()}
    assert steps[f"{job_id}.0"] == ["2", "COMPLETED"], out  # submitit's srun step: two tasks
    job_dir = Path(across["job"]["output_dir"])
    assert len(list(job_dir.glob("wandb/offline-run-*"))) == 1, "one W&B run, task 0's"
    progress = (job_dir.parent / "progress.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["num"] for line in progress) == [0, 1], "task 0 alone reports the job's end"
    assert read_run(wandb_file(across))["summary"]["status"] == "ok"

    local = run_cli("tracker=disabled", "distributed.processes=2", *run, *SLURM[4:], f"results_dir={tmp_path / 'local'}",
                    cwd=tmp_path)
    assert local.returncode == 0, local.stdout[-3000:] + local.stderr[-3000:]
    (spawned,) = records(tmp_path / "local")
    assert config_key(spawned["config"]) == config_key(across["config"])  # the same run, launched another way
    assert spawned["history"] == across["history"] and spawned["metrics"] == across["metrics"]
