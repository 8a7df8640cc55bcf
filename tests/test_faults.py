"""Faults, through the real command line: a W&B server that never answers, a program too big for the
machine, a full disk, a W&B copy cut short, a second command on a locked sweep, Ctrl-C and SIGTERM.

Faults are put in by monkeypatching inside the harness process (`run_injected`) or by
a server on 127.0.0.1 that accepts connections and never answers: no traffic leaves
this machine.
"""

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import wandb
from filelock import FileLock

from harness.analysis import report
from harness.core import config as config_lib
from harness.core.checks import ConfigError
from harness.core.config import WandbConfig
from harness.core.memory import available_bytes

from conftest import records, run_cli, run_injected, wandb_file
from wandb_reader import read_run

FAST = ("train.warmup=0", "train.repeats=1", "train.measure_dispatch=false")


def start(*args: str, cwd: Path, env: dict | None = None) -> subprocess.Popen:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    return subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=cwd,
                            env={**base, "HYDRA_FULL_ERROR": "0", **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def on_disk(root: Path) -> list[dict]:
    """Every record under `root` that reads right now (a sweep in progress may be writing)."""
    out = []
    for path in root.rglob("result.json"):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            pass
    return out


def wait_for(predicate, proc: subprocess.Popen, what: str, limit_s: float = 180) -> None:
    """Polls until `predicate()` holds; the limit only guards against a hang."""
    deadline = time.monotonic() + limit_s
    while not predicate():
        assert proc.poll() is None, f"the command ended before {what}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"no {what} after {limit_s} s"
        time.sleep(0.05)


def snapshot(directory: Path) -> dict[Path, tuple[bytes, int]]:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(directory.rglob("*")) if p.is_file()}


# --- W&B -------------------------------------------------------------------------------------------


@pytest.fixture
def silent_server():
    """A server on 127.0.0.1 that accepts connections and never answers: W&B online with no way through."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    connections, stop = [], threading.Event()

    def accept():
        while not stop.is_set():
            try:
                connections.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}", connections
    stop.set()
    thread.join()
    for conn in connections:
        conn.close()
    server.close()


@pytest.mark.slow
def test_wandb_online_that_never_answers_costs_one_short_timeout_then_the_sweep_logs_offline(tmp_path,
                                                                                            silent_server):
    url, connections = silent_server
    env = {"WANDB_BASE_URL": url, "WANDB_API_KEY": "k" * 40, "HOME": str(tmp_path),
           "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config")}
    proc = run_cli("-m", f"results_dir={tmp_path / 'results'}", "tracker=online", "tracker.wandb.init_timeout=1",
                   *FAST, "optimizer.lr=1e-3,1e-2", cwd=tmp_path, env=env, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = records(tmp_path / "results")
    assert [r["status"] for r in recs] == ["ok", "ok"]
    assert connections, "W&B never tried the server"
    for rec in recs:
        copy = rec["wandb"]
        assert copy["requested_mode"] == "online" and copy["mode"] == "offline"
        assert copy["fallback"].startswith("CommError") and copy["file_complete"] is True and copy["finished"]
        run = read_run(wandb_file(rec))
        assert run["exit_code"] == 0 and run["summary"]["test/mse"] == rec["metrics"]["test"]["mse"]
    # Only the first job waited for the server; the summary says what happened and how to upload.
    assert (proc.stdout + proc.stderr).count("W&B online not reached") == 1
    assert "W&B: online not reached (CommError" in proc.stdout and "2 runs logged offline" in proc.stdout
    assert "-exec wandb sync {} +" in proc.stdout
    (sweep,) = (tmp_path / "results" / "default").iterdir()
    assert list((sweep / "wandb").glob("offline-run-*/run-*.wandb")), "the report run went offline too"


@pytest.mark.slow  # over 8 s on 2 cores: the everyday suite stays near 5 minutes
def test_a_refused_wandb_port_falls_back_at_once_and_wandb_leaves_nothing_on_the_terminal_or_in_tmp(tmp_path):
    """Nothing listens on the port: the run goes offline without waiting out init_timeout (W&B would retry for all
    of it), a cache directory W&B cannot write keeps wandb-core's log off the terminal, and no temporary directory
    of W&B's is left behind."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {"WANDB_BASE_URL": f"http://127.0.0.1:{port}", "WANDB_API_KEY": "k" * 40, "HOME": str(tmp_path),
           "WANDB_CACHE_DIR": "/proc/harness-wandb-cache", "TMPDIR": str(temp)}
    proc = run_cli(f"results_dir={tmp_path / 'results'}", "tracker=online", "tracker.wandb.init_timeout=300", *FAST,
                   cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (rec,) = records(tmp_path / "results")
    assert rec["wandb"]["fallback"].startswith(f"ConnectionRefusedError: nothing listens on 127.0.0.1:{port}")
    assert rec["wandb"]["mode"] == "offline" and rec["wandb"]["file_complete"] is True
    assert "W&B's cache directory /proc/harness-wandb-cache cannot be written" in proc.stdout + proc.stderr
    assert not re.search(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (INFO|ERROR|WARN)", proc.stdout + proc.stderr, re.MULTILINE)
    assert list(temp.iterdir()) == []


def test_wandb_names_are_checked_by_the_rules_wandb_itself_applies():
    """harness.core.config's checks (start-up, no wandb import) agree with wandb.Settings on each case."""
    for project in ("ok-name", "a/b", "a:b", "x" * 128, "x" * 129, "percent%", "hash#"):
        ours = _accepted(lambda: WandbConfig(project=project))
        theirs = _accepted(lambda: wandb.Settings(project=project))
        assert ours == theirs, project
    for tag in ("t", "t" * 64, "t" * 65, ""):
        assert _accepted(lambda: WandbConfig(tags=[tag])) == _accepted(lambda: wandb.Settings(run_tags=(tag,))), tag
    assert not _accepted(lambda: WandbConfig(project=""))
    assert config_lib.WANDB_NAME_MAX == 128 and config_lib.WANDB_TAG_MAX == 64


def _accepted(make) -> bool:
    try:
        make()
        return True
    except (ConfigError, wandb.errors.UsageError, ValueError):
        return False


EMPTY_WANDB_RUN = """
import sys
import wandb
from harness.jobs.tracking import quiet_settings
wandb.init(dir=sys.argv[1], project="x", settings=quiet_settings()).finish()  # no summary of ours
"""


@pytest.mark.slow
def test_a_wandb_copy_cut_short_is_logged_again_by_resume_from_the_record(tmp_path):
    results = tmp_path / "results"
    args = (f"results_dir={results}", "tracker=offline", *FAST)
    first = run_cli(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    (rec,) = records(results)
    path, old_file = Path(rec["job"]["output_dir"]) / "result.json", Path(rec["wandb"]["file"])
    assert rec["wandb"]["file_complete"] is True
    # What a kill while W&B was logging leaves: an ok record without its W&B part, a 7-byte run file (SIGKILL),
    # and from an earlier try, a copy W&B closed after a Ctrl-C before anything was logged: exit record, no summary.
    old_file.write_bytes(old_file.read_bytes()[:7])
    path.write_text(json.dumps({k: v for k, v in rec.items() if k != "wandb"}))
    empty = subprocess.run([sys.executable, "-c", EMPTY_WANDB_RUN, str(path.parent)], capture_output=True, text=True,
                           env={**os.environ, "WANDB_MODE": "offline"}, timeout=120, check=False)
    assert empty.returncode == 0, empty.stderr[-2000:]
    (empty_copy,) = set((path.parent / "wandb").glob("offline-run-*")) - {old_file.parent}
    assert read_run(next(empty_copy.glob("run-*.wandb")))["exit_code"] == 0, "W&B closed it"

    resumed = run_cli(*args, f"resume={path.parent}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "skipped by resume" in resumed.stdout and "logged again from the record" in resumed.stdout
    (again,) = records(results)
    assert {k: v for k, v in again.items() if k != "wandb"} == {k: v for k, v in rec.items() if k != "wandb"}
    assert again["wandb"]["file_complete"] is True and Path(again["wandb"]["file"]) != old_file
    assert not old_file.parent.exists(), "the cut-off copy stays behind for `wandb sync`"
    assert list((path.parent / "wandb").glob("offline-run-*")) == [Path(again["wandb"]["file"]).parent]
    run = read_run(Path(again["wandb"]["file"]))
    assert [h["train/mse"] for h in run["history"]] == rec["history"]["train_mse"] and run["exit_code"] == 0

    untouched = run_cli(*args, f"resume={path.parent}", cwd=tmp_path)  # a whole copy is left alone
    assert untouched.returncode == 0 and "logged again" not in untouched.stdout
    assert records(results) == [again]


# --- a job that cannot finish ----------------------------------------------------------------------


def test_a_program_bigger_than_the_memory_left_is_refused_as_a_failed_record(tmp_path):
    injection = "import harness.core.memory\nharness.core.memory.available_bytes = lambda: (1000, 'a 1000-byte test limit')"
    proc = run_injected(injection, f"results_dir={tmp_path / 'results'}", "tracker=disabled", *FAST, cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "error: InsufficientMemory: memory: the run needs about" in proc.stderr
    (rec,) = records(tmp_path / "results")
    assert rec["status"] == "failed" and rec["error"]["type"] == "InsufficientMemory"
    assert "a 1000-byte test limit" in rec["error"]["message"] and "traceback" not in rec["error"]
    assert "timing" not in rec, "refused before the first timed call"


def test_available_memory_is_the_least_of_meminfo_and_every_cgroup_limit(tmp_path):
    proc, cgroups = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "self").mkdir(parents=True)
    (proc / "meminfo").write_text("MemTotal:  9000000 kB\nMemAvailable:  8000000 kB\n")
    (proc / "self" / "cgroup").write_text("0::/job/step\n")
    (cgroups / "job" / "step").mkdir(parents=True)
    (cgroups / "job" / "memory.max").write_text("3000000000\n")
    (cgroups / "job" / "memory.current").write_text("1000000000\n")
    (cgroups / "job" / "step" / "memory.max").write_text("max\n")
    (cgroups / "job" / "step" / "memory.current").write_text("5\n")
    assert available_bytes(proc, cgroups) == (2_000_000_000, f"cgroup limit {cgroups / 'job' / 'memory.max'} "
                                                             "less its usage")
    (proc / "self" / "cgroup").write_text("4:memory:/slurm\n")  # cgroup v1
    (cgroups / "memory" / "slurm").mkdir(parents=True)
    (cgroups / "memory" / "slurm" / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # no limit
    (cgroups / "memory" / "slurm" / "memory.usage_in_bytes").write_text("7\n")
    assert available_bytes(proc, cgroups) == (8_192_000_000, "MemAvailable in /proc/meminfo")
    here = available_bytes()  # this machine: something, and no more than it has
    total = next(int(line.split()[1]) * 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                 if line.startswith("MemTotal:"))
    assert here is not None and 0 < here[0] <= total


@contextlib.contextmanager
def memory_cgroup(limit: int):
    """A memory cgroup of its own with `limit` bytes (v1, or v2 where the memory controller is delegated), as the
    command prefix that runs a command in it, and a function reading its peak usage; skipped with the reason where
    the machine has none this process may make (not root, no memory controller)."""
    name = f"harness-test-{os.getpid()}-{time.monotonic_ns()}"
    v1, v2 = Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup")
    delegated = (v2 / "cgroup.subtree_control").read_text().split() if (v2 / "cgroup.subtree_control").exists() else []
    if (v1 / "memory.limit_in_bytes").exists():
        group, limit_file, peak_file = v1 / name, "memory.limit_in_bytes", "memory.max_usage_in_bytes"
    elif "memory" in delegated:
        group, limit_file, peak_file = v2 / name, "memory.max", "memory.peak"
    else:
        pytest.skip("this machine mounts no memory cgroup controller (neither v1's nor a delegated v2)")
    try:
        group.mkdir()
        (group / limit_file).write_text(str(limit))
    except OSError as err:
        pytest.skip(f"cannot make a memory cgroup here ({err.strerror}): needs root")
    try:
        yield (["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(group / "cgroup.procs")],
               lambda: int((group / peak_file).read_text()) if (group / peak_file).exists() else None)
    finally:
        group.rmdir()


@pytest.mark.slow
def test_a_run_too_big_for_its_memory_cgroup_is_refused_before_its_data_or_state_exists(tmp_path):
    """Inside a 3 GiB memory cgroup, runs whose state (width 20,000) or data (1.5e9 rows) cannot fit used to be
    OOM-killed within seconds (exit 137, a `running` marker left): each is refused before allocating anything,
    naming what to lower, and the sweep goes on to the run that fits."""
    with memory_cgroup(3 * 2**30) as (inside, peak):
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
        proc = subprocess.run([*inside, sys.executable, "-m", "harness", "-m", f"results_dir={tmp_path / 'results'}",
                               "tracker=disabled", "report=false", *FAST, "model=mlp", "model.depth=4", "freeze=none",
                               "model.width=20000,1", "task.n_train=55,1500000000"],
                              cwd=tmp_path, env={**env, "HYDRA_FULL_ERROR": "0"}, capture_output=True, text=True,
                              timeout=300, check=False)
        used = peak()
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    recs = sorted(records(tmp_path / "results"), key=lambda r: r["job"]["num"])
    assert [r["status"] for r in recs] == ["failed", "failed", "ok", "failed"], proc.stdout[-3000:]
    state, program, data = (r["error"]["message"] for r in recs if r["status"] == "failed")
    assert all(r["error"]["type"] == "InsufficientMemory" for r in recs if r["status"] == "failed")
    assert "cgroup limit" in state and "refused before making its data" in state, state
    assert state.endswith("Lower the model's size (model.width, model.depth), or run on a machine with more memory")
    assert "Lower train.batch_size, task.n_train or the model's size" in program, program
    assert "data 12.00 GB" in data and "task.n_train" in data.partition("Lower")[2], data
    assert "sweep: 4/4 done (1 ok, 0 diverged, 3 failed" in proc.stdout
    assert used is None or used < 2 * 2**30, f"{used / 2**30:.2f} GiB used: something large was allocated"


def test_on_an_accelerator_the_run_is_checked_against_the_device_memory_its_allocator_reports():
    """Host memory says nothing of a GPU's: there, data, state, program and forward pass go against the device's
    own bytes_limit less bytes_in_use (what `jax.Device.memory_stats()` reports), and a device that reports
    nothing is not checked."""
    from harness.core.memory import InsufficientMemory, Needs, check_needs

    class Device:
        platform = "gpu"

        def __init__(self, stats):
            self.stats = stats

        def memory_stats(self):
            return self.stats

        def __str__(self):
            return "cuda:0"

    needs = Needs(data=4 * 2**30, state=2**30, program={"output_size_in_bytes": 2**30, "temp_size_in_bytes": 0},
                  largest=2**20, predictions=2**30)
    assert needs.on_device() == 4 * 2**30 + 2 * 2**30 + 2 * 2**20 < needs.total()  # metrics run on the host
    check_needs(needs, Device({"bytes_limit": 80 * 2**30, "bytes_in_use": 2**30}))
    with pytest.raises(InsufficientMemory, match=r"cuda:0's memory: bytes_limit less bytes_in_use"):
        check_needs(needs, Device({"bytes_limit": 8 * 2**30, "bytes_in_use": 4 * 2**30}))
    check_needs(needs, Device({}))


FULL_DISK_FOR_JOB_1 = """
import errno
import harness.jobs.store

real_write = harness.jobs.store.write_json_atomic

def write_or_disk_full(path, record):
    if record.get("job", {}).get("num") == 1 and "metrics" in record:  # job 1's full record does not fit
        raise OSError(errno.ENOSPC, "No space left on device")
    return real_write(path, record)

harness.jobs.store.write_json_atomic = write_or_disk_full
"""


@pytest.mark.slow  # over 8 s on 2 cores: the everyday suite stays near 5 minutes
def test_a_full_disk_while_writing_a_record_is_one_line_a_failed_job_and_the_sweep_goes_on(tmp_path):
    results = tmp_path / "results"
    proc = run_injected(FULL_DISK_FOR_JOB_1, "-m", f"results_dir={results}", "tracker=disabled", "report=false",
                        *FAST, "optimizer.lr=1e-3,2e-3,3e-3", cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    recs = sorted(records(results), key=lambda r: r["job"]["num"])
    assert [r["status"] for r in recs] == ["ok", "failed", "ok"]
    assert recs[1]["error"]["type"] == "OSError" and "could not be written" in recs[1]["error"]["message"]
    lines = [line for line in proc.stderr.splitlines() if "No space left on device" in line]
    assert len(lines) == 1 and lines[0].startswith("error: cannot write ") and "/1/result.json" in lines[0]
    assert "failed #1" in proc.stdout and "sweep: 3/3 done" in proc.stdout


FULL_DISK_FOR_POINT_1 = """
import errno
import harness.jobs.store

real_write = harness.jobs.store.write_json_atomic

def write_or_disk_full(path, record):
    if (record.get("job", {}).get("vectorized") or {}).get("point") == 1:  # neither its record nor the small one
        raise OSError(errno.ENOSPC, "No space left on device")
    return real_write(path, record)

harness.jobs.store.write_json_atomic = write_or_disk_full
"""


@pytest.mark.slow  # over 8 s on 2 cores: the everyday suite stays near 5 minutes
def test_a_point_of_a_vectorized_job_whose_records_do_not_fit_is_listed_missing_and_fails_the_sweep(tmp_path):
    results = tmp_path / "results"
    proc = run_injected(FULL_DISK_FOR_POINT_1, "-m", "hydra/sweeper=vectorized", f"results_dir={results}",
                        "tracker=disabled", "report=false", *FAST, "optimizer.lr=1e-3,2e-3,3e-3", cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert [r["job"]["vectorized"]["point"] for r in records(results)] == [0, 2]
    assert "sweep finished: 1 jobs, 2 runs recorded: 2 ok" in proc.stdout
    assert "1 planned runs left no record:" in proc.stdout and "missing #0/1: " in proc.stdout
    (sweep,) = (results / "default").iterdir()
    shown = run_cli("report", str(sweep), cwd=tmp_path)  # `harness report` counts the lost point too
    assert shown.returncode == 1 and "incomplete sweep: 1 planned jobs with no record" in shown.stderr, shown.stderr


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str):
    """A tmpfs of `size` mounted at `where` for the test; skipped with the reason where this process cannot mount."""
    where.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True,
                             text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill ({mounted.stderr.strip() or 'mount failed'}): needs root")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


@pytest.mark.slow
def test_a_full_disk_is_one_line_per_file_never_a_traceback_and_never_exit_0(tmp_path, capsys):
    """On a 160 KiB tmpfs: the two jobs' records fit and the report does not. Then on a 40 KiB one, Hydra's own
    config files and the records of the later jobs do not fit either: the sweep goes on, each file not written
    is one line, every job is a record or listed missing, and nothing is left half-written."""
    args = ("-m", "tracker=disabled", *FAST, "optimizer.lr=1e-3,2e-3")
    with small_tmpfs(tmp_path / "disk", "160k") as disk:
        proc = run_cli(*args, f"results_dir={disk}", cwd=tmp_path)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
        assert [r["status"] for r in records(disk)] == ["ok"] * 2 and "sweep: 2/2 done" in proc.stdout
        (line,) = [line for line in proc.stderr.splitlines() if "No space left on device" in line]
        assert line.startswith("error: the sweep's report was not written (cannot write ") and "every record is saved" in line
        (sweep,) = (disk / "default").iterdir()
        if (sweep / "runs.parquet").exists():
            pd.read_parquet(sweep / "runs.parquet")  # whole, never cut short
        capsys.readouterr()
        assert report.main_report([str(sweep)]) == 1  # `harness report` on the full disk
        shown = capsys.readouterr().err
        assert shown.startswith("harness report: cannot write ") and "No space left on device" in shown
        assert len(shown.strip().splitlines()) == 1 and not list(disk.rglob("*.tmp*"))
    with small_tmpfs(tmp_path / "fuller", "40k") as disk:
        proc = run_cli(*args, f"results_dir={disk}", cwd=tmp_path)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
        recorded = {r["job"]["num"] for r in records(disk)}
        missing = {int(n) for n in re.findall(r"missing #(\d+)", proc.stdout)}
        assert recorded | missing == {0, 1} and missing, proc.stdout
        assert "sweep finished: 2 jobs" in proc.stdout and "error: the sweep's report was not written" in proc.stderr
        assert "Hydra's copy of the job's config is not saved" in proc.stderr
        assert all(line.startswith("error: ") for line in proc.stderr.splitlines() if "No space left" in line)
        assert not list(disk.rglob("*.tmp*"))


# --- commands on one sweep -------------------------------------------------------------------------


@pytest.mark.slow
def test_a_locked_sweep_and_a_resume_of_other_jobs_or_config_are_refused_without_changing_anything(tmp_path):
    results = tmp_path / "results"
    args = ("-m", f"results_dir={results}", "tracker=disabled", "report=false", *FAST)
    made = run_cli(*args, "optimizer.lr=1e-3,1e-2", cwd=tmp_path)
    assert made.returncode == 0, made.stderr[-2000:]
    (sweep,) = (results / "default").iterdir()
    plan = json.loads((sweep / "sweep.json").read_text())
    assert plan["planned_jobs"] == 2 and [j["num"] for j in plan["jobs"]] == [0, 1]
    assert "optimizer.lr=0.01" in plan["jobs"][1]["overrides"]  # as Hydra writes it, and each job's record
    before = snapshot(sweep)

    with FileLock(str(sweep / ".harness.lock"), timeout=0):  # another harness command works in the sweep
        locked = run_cli(*args, "optimizer.lr=1e-3,1e-2", f"resume={sweep}", cwd=tmp_path)
    assert locked.returncode == 1, locked.stdout
    assert f"error: another harness command is running in {sweep}" in locked.stderr
    other = run_cli(*args, "optimizer.lr=1e-3,5e-2", f"resume={sweep}", cwd=tmp_path)
    assert other.returncode == 1 and "error: resume: job #1 was" in other.stderr, other.stderr
    assert "optimizer.lr=0.05" in other.stderr
    changed = run_cli(*args, "optimizer.lr=1e-3,1e-2", "task.n_train=40", f"resume={sweep}", cwd=tmp_path)
    assert changed.returncode == 1 and "error: resume: the sweep's config differs" in changed.stderr
    single = run_cli("tracker=disabled", f"resume={sweep}", cwd=tmp_path)
    assert single.returncode == 1 and "holds a sweep; resume it with -m" in single.stderr
    for proc in (locked, other, changed, single):
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert snapshot(sweep) == before, "a refused resume changed the sweep"


# --- stopping --------------------------------------------------------------------------------------


@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM"])
def test_a_stop_that_lands_in_a_callback_python_ignores_exceptions_from_is_raised_again(stop):
    """Seen in a run: Ctrl-C landed in XLA's garbage-collection callback, Python printed 'Exception ignored' and the
    sweep ran on for minutes. The same, made to happen: the signal's handler raises inside a gc callback."""
    script = f"""
import gc, signal, time
from harness import cli
cli.install_stop_handlers()
fired = []
def callback(phase, info):
    if not fired:
        fired.append(phase)
        signal.raise_signal(signal.{stop})  # the handler raises here, in the callback: Python swallows it
        fired.append("not reached")
gc.callbacks.append(callback)
try:
    gc.collect()
    time.sleep(5)
    print("lost")
except KeyboardInterrupt as stop:
    print("raised again:", type(stop).__name__, fired)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    expected = "Terminated" if stop == "SIGTERM" else "KeyboardInterrupt"
    assert proc.stdout.startswith(f"raised again: {expected} ['start']"), proc.stdout
    assert "Exception ignored" not in proc.stderr, proc.stderr


@pytest.mark.slow  # over 8 s on 2 cores: the everyday suite stays near 5 minutes
def test_ctrl_c_stops_a_sweep_with_one_line_and_leaves_whole_records(tmp_path):
    results = tmp_path / "results"
    # A short job, then one long enough (minutes) that the Ctrl-C lands in it however slow the poll is.
    proc = start("-m", f"results_dir={results}", "tracker=disabled", "report=false", "train.steps=50000",
                 "train.warmup=0", "train.repeats=2,3000", "train.measure_dispatch=false", cwd=tmp_path)
    statuses = lambda: [r["status"] for r in on_disk(results)]  # noqa: E731
    wait_for(lambda: "ok" in statuses() and "running" in statuses(), proc, "a finished and a running job")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-2000:]
    (sweep,) = (results / "default").iterdir()
    assert "interrupted by Ctrl-C: finished jobs keep their records" in err and f"resume={sweep}" in err
    recs = records(results)
    stopped = [r for r in recs if r["status"] == "crashed"]
    assert len(stopped) == 1 and stopped[0]["error"]["type"] == "KeyboardInterrupt"
    assert sorted(r["status"] for r in recs) == ["crashed", "ok"]


@pytest.mark.slow
def test_sigterm_to_a_joblib_sweep_ends_its_workers(tmp_path):
    """Also: the workers' W&B runs (live curves) leave no temporary directory, though the workers are killed."""
    results, temp = tmp_path / "results", tmp_path / "tmp"
    temp.mkdir()
    proc = start("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"results_dir={results}",
                 "tracker=offline", "report=false", "train.steps=100000", "train.warmup=0", "train.repeats=1000",
                 "train.log_every=1000", "train.measure_dispatch=false", "optimizer.lr=1e-3,2e-3", cwd=tmp_path,
                 env={"TMPDIR": str(temp)})
    running = lambda: [r for r in on_disk(results) if r["status"] == "running"]  # noqa: E731
    wait_for(lambda: len(running()) == 2 and len(list(results.rglob("offline-run-*"))) == 2, proc,
             "both workers running a job and logging it to W&B")
    workers = [r["process"]["pid"] for r in running()]
    assert proc.pid not in workers and all(psutil.pid_exists(pid) for pid in workers)
    proc.terminate()
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 143, err[-2000:]
    assert "interrupted by SIGTERM" in err and "Traceback" not in err, err[-2000:]
    for pid in workers:  # gone by the time the sweep's process has exited, not a minute later
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, pid
    (sweep,) = (results / "default").iterdir()
    shown = run_cli("report", str(sweep), cwd=tmp_path)  # the workers' jobs: crashed, not "running"
    assert shown.returncode == 1 and "2 runs: 0 ok, 0 diverged, 0 failed, 0 skipped, 2 crashed" in shown.stdout
    assert list(temp.iterdir()) == [], "temporary files left behind"
    # Their records say what ended them, not a guess at memory.
    assert all(r["status"] == "crashed" and r["error"]["type"] == "Stopped" and "stopped by SIGTERM" in
               r["error"]["message"] and not r["error"].get("out_of_memory") for r in on_disk(results))


def _children_end_with_the_command(proc: subprocess.Popen, children: list[psutil.Process]) -> None:
    """SIGKILLs the command (nothing of it can clean up), then waits for every process it had started to end."""
    proc.kill()
    proc.communicate(timeout=60)
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, [(p.pid, p.name()) for p in alive]


@pytest.mark.slow
def test_sigkill_of_a_sweep_leaves_no_joblib_worker_or_wandb_writer_behind(tmp_path):
    """The workers of hydra/launcher=joblib and the W&B writer processes of a vectorized sweep (with their
    wandb-core) watch the command, and end themselves within seconds once it is gone."""
    results = tmp_path / "joblib"
    proc = start("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"results_dir={results}",
                 "tracker=disabled", "report=false", "train.steps=100000", "train.warmup=0", "train.repeats=1000",
                 "train.measure_dispatch=false", "optimizer.lr=1e-3,2e-3", cwd=tmp_path)
    wait_for(lambda: len([r for r in on_disk(results) if r["status"] == "running"]) == 2, proc, "two workers' jobs")
    _children_end_with_the_command(proc, psutil.Process(proc.pid).children(recursive=True))

    results = tmp_path / "vectorized"
    lrs = ",".join(str(0.001 * (i + 1)) for i in range(8))
    proc = start("-m", "hydra/sweeper=vectorized", f"results_dir={results}", "tracker=offline", "report=false",
                 "train.steps=200000", "train.repeats=50", "train.measure_dispatch=false", f"optimizer.lr={lrs}",
                 cwd=tmp_path)
    writers = lambda: [c for c in psutil.Process(proc.pid).children(recursive=True)  # noqa: E731
                       if "wandb-core" in c.name() or "spawn" in " ".join(c.cmdline())]
    wait_for(lambda: len(writers()) >= 2, proc, "W&B writer processes started")
    _children_end_with_the_command(proc, psutil.Process(proc.pid).children(recursive=True))



def test_config_identity_resume_keeps_what_it_wrote_and_reports_match_on_what_runs_compute():
    """Resume compares the hash in records already written (a changed digest would refuse every old sweep);
    the report's key leaves out the name and the timing repeats, which do not change what a run computes."""
    from harness.core.fields import config_hash, config_key

    config = {"name": "x", "results_dir": "r", "resume": False, "tracker": {"wandb": {"mode": "offline"}},
              "train": {"steps": 5, "repeats": 3}, "task": {"seed": 1}}
    assert config_hash(config) == "01acfe0a26893cd5"  # what harness wrote before fields.py existed
    assert config_hash({**config, "train": {"steps": 5, "repeats": 4}}) != config_hash(config)
    assert config_key(config) == '{"task.seed": 1, "train.steps": 5}'
    assert config_key({**config, "name": "y", "train": {"steps": 5, "repeats": 4}}) == config_key(config)


@pytest.mark.slow  # over 8 s on 2 cores: the everyday suite stays near 5 minutes
def test_with_home_unset_wandb_logs_nothing_to_the_terminal(tmp_path):
    """wandb-core places its own log by XDG_CACHE_HOME or HOME; with neither it wrote ~30 lines to the terminal."""
    env = {k: v for k, v in os.environ.items() if k not in ("HOME", "XDG_CACHE_HOME", "WANDB_MODE")
           and not k.startswith("PYTEST")}
    proc = subprocess.run([sys.executable, "-m", "harness", "tracker=offline", f"results_dir={tmp_path / 'r'}",
                           *FAST], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (record,) = records(tmp_path / "r")
    assert record["wandb"]["mode"] == "offline" and record["wandb"]["file_complete"] is True
    assert "INFO" not in proc.stderr + proc.stdout and "ERROR" not in proc.stderr, proc.stderr[-3000:]
