"""Runs across processes (issue 30): the same numbers as one process with as many devices, and faults that end.

2 processes x 1 device (distributed.processes=2, gloo between them) against 1 process x 2 devices
(device.count=2, XLA's host platform split in two): one global batch split over two devices either
way, so the losses, metrics and trained parameters agree to float32 rounding of the gradient's
all-reduce (its order of summation is gloo's in one, XLA's in the other), and frozen parameters are
bitwise unchanged in both.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import records, run_cli

TWO_DEVICES = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
QUICK = ("tracker=disabled", "train.measure_dispatch=false", "train.warmup=0", "train.repeats=2")
# float32 rounding of a 2-way sum in another order, compounded over the steps: relative, on losses and parameters
SEED_RTOL, CNN_RTOL = 1e-5, 1e-4


def _start(*args: str, cwd: Path, env: dict | None = None) -> subprocess.Popen:
    full = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    return subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=cwd, env={**full, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _both(tmp_path: Path, *overrides: str) -> tuple[dict, dict]:
    """(record of 2 processes x 1 device, record of 1 process x 2 devices) of one run, run side by side."""
    runs = {}
    for name, extra, env in (("procs", ["distributed.processes=2"], None), ("devices", ["device.count=2"], TWO_DEVICES)):
        runs[name] = _start(*QUICK, *overrides, *extra, f"results_dir={tmp_path / name}", cwd=tmp_path, env=env)
    out = {}
    for name, proc in runs.items():
        text, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, text
        (out[name],) = records(tmp_path / name)
    return out["procs"], out["devices"]


def _same_numbers(procs: dict, devices: dict, rtol: float) -> None:
    assert procs["status"] == devices["status"] == "ok"
    assert procs["distributed"]["processes"] == 2 and procs["distributed"]["devices_per_process"] == 1
    assert "distributed" not in devices and devices["placement"]["train_batch"] == ["cpu:0", "cpu:1"]
    assert len(procs["placement"]["train_batch"]) == 2  # one device in each process
    for split in ("train", "val", "test"):
        for name, value in devices["metrics"][split].items():
            np.testing.assert_allclose(procs["metrics"][split][name], value, rtol=rtol, err_msg=f"{split} {name}")
    for key, values in devices["history"].items():
        np.testing.assert_allclose(procs["history"][key], values, rtol=rtol, err_msg=key)
    for path, values in devices["parameters"]["final"].items():
        np.testing.assert_allclose(procs["parameters"]["final"][path], values, rtol=rtol, atol=1e-7, err_msg=path)
    for record in (procs, devices):  # frozen parameters: bitwise, not within a tolerance
        assert record["drift"]["unchanged"] is True and record["drift"]["max_abs"] == 0.0
        assert record["parameters"]["frozen"] > 0


def test_two_processes_match_two_devices_on_the_seed_study(tmp_path):
    procs, devices = _both(tmp_path, "task.n_train=56", "train.steps=30")
    _same_numbers(procs, devices, SEED_RTOL)
    about = procs["distributed"]
    assert about["coordinator"].startswith("127.0.0.1:") and about["hosts"] == [socket.gethostname()] * 2
    per_process = np.asarray(about["run_s"])  # each process's timed calls, and the record's: the slower of the two
    assert per_process.shape == (2, 2)
    np.testing.assert_allclose(procs["timing"]["run_s"], per_process.max(axis=0))
    assert procs["config"]["distributed"]["processes"] == 2
    # One program either way (XLA's SPMD partitioner, not the transport, places the collectives): the trained
    # bias's gradient and the loss, 4 bytes each, all-reduced once per step.
    assert procs["timing"]["collectives"] == devices["timing"]["collectives"]
    assert procs["timing"]["collectives"]["per_step"]["all-reduce"] == {"count": 1, "bytes": 4 * (1 + 1)}


@pytest.mark.slow
def test_two_processes_match_two_devices_on_the_digits_cnn(tmp_path):
    procs, devices = _both(tmp_path, "task=digits", "model=cnn", "freeze=backbone", "train.steps=20",
                           "task.pretrain_steps=20")
    _same_numbers(procs, devices, CNN_RTOL)


def test_one_process_keeps_its_config_and_hash(tmp_path):
    """distributed.processes=1 (the default) leaves no trace in the record: its config and hash are as before."""
    from harness.core.fields import config_hash

    proc, (record,) = run_cli("tracker=disabled", "train.steps=3", "train.measure_dispatch=false",
                              f"results_dir={tmp_path}", cwd=tmp_path), records(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "distributed" not in record["config"] and "distributed" not in record
    assert record["config_hash"] == config_hash(record["config"])
    spread = {**record["config"], "distributed": {"processes": 2, "port": None, "timeout_s": 60}}
    assert config_hash(spread) != record["config_hash"]


def test_how_processes_meet_is_no_part_of_a_run():
    """A resume may change the port and the timeout; the process count is part of what the run is."""
    from harness.core.fields import config_hash, config_key

    base = {"train": {"steps": 5}, "distributed": {"processes": 2, "port": None, "timeout_s": 60}}
    met = {"train": {"steps": 5}, "distributed": {"processes": 2, "port": 4242, "timeout_s": 5}}
    more = {"train": {"steps": 5}, "distributed": {"processes": 4, "port": None, "timeout_s": 60}}
    assert config_hash(base) == config_hash(met) != config_hash(more)
    assert config_key(base) == config_key(met) != config_key(more)


def test_a_slurm_task_finds_its_place_and_coordinator_in_its_step(monkeypatch):
    """What each task of a Slurm step reads from srun's variables (the run itself: tests/test_slurm.py)."""
    from harness.core.checks import ConfigError
    from harness.core.config import Config, DistributedConfig
    from harness.jobs.processes import check_step, following_task, slurm_step

    for name in ("SLURM_STEP_NODELIST", "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS", "SLURM_STEP_NUM_NODES",
                 "JAX_COORDINATOR_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert slurm_step() is None and not following_task()  # outside Slurm
    monkeypatch.setenv("SLURM_JOB_ID", "93")
    monkeypatch.setenv("SLURM_PROCID", "1")
    monkeypatch.setenv("SLURM_STEP_NODELIST", "node07")
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "1")
    monkeypatch.setenv("SLURM_STEP_NUM_NODES", "1")
    assert slurm_step() is None  # a one-task step: the job spawns, as outside Slurm
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "2")
    step = slurm_step()
    assert (step.process_id, step.processes, step.port) == (1, 2, 93 % 4096 + 61440) and following_task()
    assert step.coordinator(None) == "127.0.0.1:61533" and step.coordinator(4242) == "127.0.0.1:4242"
    monkeypatch.setenv("JAX_COORDINATOR_PORT", "5000")
    assert slurm_step().coordinator(None) == "127.0.0.1:5000"
    check_step(Config(distributed=DistributedConfig(processes=2)), step)
    with pytest.raises(ConfigError, match="is 1, but this Slurm step runs 2 tasks"):
        check_step(Config(), step)


@pytest.mark.parametrize("overrides, line", [
    (["distributed.processes=0"], "distributed.processes: must be >= 1, got 0"),
    (["distributed.processes=2"], ("distributed.processes: 2 processes x device.count=1 = 2 devices cannot split "
                                  "the 55 training rows of task 'seed' per step evenly")),
    (["distributed.processes=3", "train.batch_size=8"], ("distributed.processes: 3 processes x device.count=1 = 3 "
                                                        "devices cannot split train.batch_size=8 rows")),
    (["distributed.processes=2", "device=gpu"], "distributed.processes: spawns CPU processes"),
])
def test_bad_process_counts_are_one_line(tmp_path, overrides, line):
    proc = run_cli("tracker=disabled", *overrides, f"results_dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode != 0 and line in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not list(tmp_path.rglob("process-*.log"))  # refused before any process started


def test_a_busy_coordinator_port_is_one_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = run_cli("tracker=disabled", "task.n_train=56", "distributed.processes=2", f"distributed.port={port}",
                       f"results_dir={tmp_path}", cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and f"distributed.port: 127.0.0.1:{port} is in use by another program" in out, out
    assert "Traceback" not in out and not list(tmp_path.rglob("process-*.log"))


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _training(tmp_path: Path, timeout_s: int) -> tuple[subprocess.Popen, list[int]]:
    """A long run across 2 processes, once both have joined: (the command, its two processes' pids)."""
    command = _start("tracker=disabled", "task.n_train=56", "train.steps=20000000", "train.measure_dispatch=false",
                     "distributed.processes=2", f"distributed.timeout_s={timeout_s}", f"results_dir={tmp_path}",
                     cwd=tmp_path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        logs = sorted(tmp_path.rglob("process-*.log"))
        if len(logs) == 2 and all("connected" in log.read_text() for log in logs):
            workers = _children(command.pid)
            assert len(workers) == 2
            return command, workers
        assert command.poll() is None, command.communicate()[0]
        time.sleep(0.2)
    command.kill()
    raise AssertionError("the processes did not join within 120 s")


@pytest.mark.slow  # ~50 s on 2 loaded cores: two processes joining, then the fault
def test_a_killed_process_ends_the_run_as_crashed(tmp_path):
    timeout_s = 5
    command, workers = _training(tmp_path, timeout_s)
    time.sleep(3)  # into the run
    killed = time.monotonic()
    os.kill(workers[1], signal.SIGKILL)
    text, _ = command.communicate(timeout=120)
    ended = time.monotonic() - killed
    assert ended < timeout_s + 10 + 5, f"the run took {ended:.0f} s to end after a process died"  # + GRACE_S, start
    assert not any(_alive(pid) for pid in workers)
    (record,) = records(tmp_path)
    assert record["status"] == "crashed", text
    assert record["error"]["type"] == "ProcessDied" and record["error"]["process"] == 1
    assert "process 1 of 2" in record["error"]["message"] and "SIGKILL" in record["error"]["message"]
    assert command.returncode != 0


@pytest.mark.slow
def test_ctrl_c_ends_every_process(tmp_path):
    command, workers = _training(tmp_path, 60)
    command.send_signal(signal.SIGINT)
    command.communicate(timeout=60)
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers)
    (record,) = records(tmp_path)
    assert record["status"] == "crashed" and "Ctrl-C" in record["error"]["message"]
    assert json.loads(json.dumps(record))  # a whole record, readable


# Per method (freeze=backbone on the MLP: the head's 16 weights and 1 bias train): the all-reduce of one step, read
# from the compiled program on 2 devices of one process.
PROBE = """
import json, sys, jax
from harness.jobs.compose import spec_from_overrides
from harness.core import abstract
from harness.core.batching import order_key
from harness.core.run import _layout, _training, step_metrics
from harness.core.timing import compile_timed
out = {}
for method in sys.argv[1:]:
    spec = spec_from_overrides("model=mlp", "freeze=" + ("none" if method == "full" else "backbone"),
                               "method=" + ("diffstate" if method == "full" else method), "device.count=2",
                               "task.n_train=56", "train.batch_size=8")
    ahead = abstract.shapes(spec)
    layout = _layout(spec, jax.devices()[:2], ahead.task)
    key = jax.eval_shape(lambda: order_key(spec.task.seed))
    jitted, shaped, static, _ = _training(spec, layout, ahead.task, ahead.built.state, key,
                                          step_metrics(spec, ahead.task), True)
    _, timing = compile_timed(jitted, shaped, {**static, "program": ahead.built.program}, steps=1, warmup=0)
    out[method] = timing.collectives
print(json.dumps(out))
"""


def test_a_frozen_backbone_all_reduces_the_head_gradient_only(tmp_path):
    methods = ("diffstate", "stop_gradient", "optax_partition", "full")
    proc = subprocess.run([sys.executable, "-c", PROBE, *methods], cwd=tmp_path, capture_output=True, text=True, check=False,
                          env={**os.environ, **TWO_DEVICES}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout.splitlines()[-1])
    head, everything = 16 + 1, 1 * 16 + 16 + 16 * 16 + 16 + 16 + 1  # model.width=16, model.depth=2, one input
    for method in methods[:-1]:  # stop_gradient and optax_partition compute frozen gradients XLA then drops
        assert found[method]["per_step"]["all-reduce"] == {"count": 1, "bytes": 4 * (head + 1)}, method
        assert found[method]["bytes_per_step"] == 4 * (head + 1)
    assert found["full"]["all_reduce_bytes_per_step"] == 4 * (everything + 1)
