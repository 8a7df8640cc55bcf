"""One run across processes on this machine: the job spawns them, waits for them, and returns process 0's result.

`run_across(spec, out_dir)` starts `distributed.processes` copies of `python -m harness.jobs.processes`
on 127.0.0.1, each joining the others through a coordinator on a free port (or `distributed.port`),
each with `device.count` CPU devices (harness.core.distributed). Every process trains the same run
on one global mesh (harness.core.run.execute); process 0 hands its result back through a file, and
the job writes the one record (harness/jobs/app.py). Each process's output goes to
`<job dir>/process-<i>.log`.

Faults end the run, never hang it: a process that dies is noticed by the others through the
coordination service's heartbeat (`distributed.timeout_s`); whatever is still running
`distributed.timeout_s` + GRACE_S seconds after a death is killed, and the result is `crashed`, naming
the process that died first. A Ctrl-C (or any exception) in the job kills every process it started.
Each process also ends itself when the job's process is gone (harness.jobs.lifetime.end_with).

Under Slurm the processes are the tasks of the job's srun step (`hydra.launcher.tasks_per_node`, `nodes`):
submitit runs the whole Hydra job in each task, so the job does not spawn; each task joins the others
(`slurm_step`, `run_joined`). Task 0 writes the marker, the record and the W&B run; the others train and
write nothing (harness/jobs/app.py). A task that dies ends the step; the sweep records the job `crashed`
from Slurm's accounting (harness/jobs/slurm.py), as any job Slurm ended.
"""

from __future__ import annotations

import argparse
import errno
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.checks import ConfigError
from harness.core.config import Config

HOST = "127.0.0.1"
GRACE_S = 10.0  # after the heartbeat timeout: a process's own exit (its error, its log) takes time too
POLL_S = 0.05
RESULT = "result-{}.pkl"


def coordinator_port(port: int | None) -> int:
    """`port` when it is free on 127.0.0.1 (a ConfigError naming distributed.port when it is not), else a free one.

    A free port is found by binding port 0; the coordinator binds it again a moment later, so another
    program could take it in between: the run then fails at start-up with the port named.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((HOST, port or 0))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise ConfigError("distributed.port", f"{HOST}:{port} is in use by another program; pick a free "
                                                      "port, or leave distributed.port null for one") from None
            raise ConfigError("distributed.port", f"cannot bind {HOST}:{port}: {err.strerror}") from None
        return probe.getsockname()[1]


@dataclass(frozen=True)
class SlurmStep:
    """This process as one task of a Slurm step of several tasks (srun): the run's processes."""

    process_id: int
    processes: int
    port: int  # the coordinator's, unless distributed.port names one
    nodes: str  # the step's node list (Slurm's compressed form)

    def coordinator(self, port: int | None) -> str:
        """host:port of the coordinator, beside task 0 on the step's first node (127.0.0.1 when it is this one)."""
        if os.environ.get("SLURM_STEP_NUM_NODES", "1") == "1":
            host = HOST
        else:  # the first node's name, as Slurm expands its list
            names = subprocess.run(["scontrol", "show", "hostnames", self.nodes], capture_output=True, text=True,
                                   timeout=30, check=True).stdout.split()
            host = names[0]
        return f"{host}:{port or self.port}"


def slurm_step() -> SlurmStep | None:
    """This process's place among the tasks of its srun step, None outside a step of several tasks.

    The coordinator's port: `distributed.port`, else `JAX_COORDINATOR_PORT`, else as JAX picks it under Slurm,
    job id % 4096 + 61440 (every task computes the same).
    """
    env = os.environ
    processes = int(env.get("SLURM_STEP_NUM_TASKS", env.get("SLURM_NTASKS", "1")))
    if "SLURM_STEP_NODELIST" not in env or processes < 2:
        return None
    port = int(env.get("JAX_COORDINATOR_PORT") or int(env["SLURM_JOB_ID"]) % 2**12 + 65536 - 2**12)
    return SlurmStep(int(env["SLURM_PROCID"]), processes, port, env["SLURM_STEP_NODELIST"])


def following_task() -> bool:
    """Whether this process is a task after the first of a Slurm step of several tasks: it writes nothing."""
    step = slurm_step()
    return step is not None and step.process_id > 0


def check_step(spec: Config, step: SlurmStep) -> None:
    """A ConfigError unless the run asks for as many processes as the step has tasks: the config says what runs
    (its hash groups the run), so a 2-task step never trains a run configured for one process."""
    if spec.distributed.processes != step.processes:
        raise ConfigError("distributed.processes", f"is {spec.distributed.processes}, but this Slurm step runs "
                                                   f"{step.processes} tasks (hydra.launcher.tasks_per_node x nodes), "
                                                   "each one process of the run: make them equal")


def run_joined(spec: Config, step: SlurmStep) -> dict[str, Any]:
    """This task's result of `spec` trained across the step's tasks: joins them, then trains its share."""
    import jax

    from harness.core import distributed
    from harness.core.environment import environment
    from harness.core.run import check_split, execute
    from harness.core.tasks import make_task

    check_step(spec, step)
    coordinator = step.coordinator(spec.distributed.port)
    distributed.join(coordinator, step.processes, step.process_id, spec.device.count, spec.distributed.timeout_s)
    check_split(spec, make_task(spec.task))  # the same check in every task: all refuse, none waits for the others
    result = execute(spec, jax.devices())
    about = {"coordinator": coordinator, "launcher": "slurm"}
    return {"environment": environment(jax.local_devices()[0]), **result,
            "distributed": {**result.get("distributed", {}), **about}}


def _worker_env() -> dict[str, str]:
    """The job's environment for a process of the run: its CPU devices come from device.count, not XLA_FLAGS."""
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith("--xla_force_host_platform_device_count")]
    env["XLA_FLAGS"] = " ".join(flags)
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("JAX_COORDINATOR_ADDRESS", None)
    return env


def _ended(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def run_across(spec: Config, out_dir: Path) -> dict[str, Any]:
    """Process 0's result of `spec` trained across `spec.distributed.processes` local processes (module docstring).

    Raises ConfigError for a busy `distributed.port`; returns a `crashed` result when a process died.
    """
    settings = spec.distributed
    port = coordinator_port(settings.port)
    coordinator = f"{HOST}:{port}"
    out_dir.mkdir(parents=True, exist_ok=True)
    about = {"coordinator": coordinator, "logs": [str(out_dir / f"process-{i}.log") for i in range(settings.processes)]}
    with tempfile.TemporaryDirectory(prefix="harness-processes-") as work:
        work = Path(work)
        (work / "spec.pkl").write_bytes(pickle.dumps(spec))
        procs, logs = [], []
        try:
            for i in range(settings.processes):
                log = open(about["logs"][i], "w")  # noqa: SIM115 - closed below, after the process ends
                logs.append(log)
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "harness.jobs.processes", str(work), coordinator, str(i),
                     str(settings.processes), str(os.getpid())],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=_worker_env()))
            died, ended = _wait(procs, settings.timeout_s + GRACE_S, work)
        finally:
            _stop(procs)
            for log in logs:
                log.close()
        return _result(work, procs, died, ended, about)


def _wait(procs: list[subprocess.Popen], after_death_s: float, work: Path
          ) -> tuple[tuple[int, int] | None, list[int | None]]:
    """Waits for every process: ((process, exit code) of the first that failed, or None; every exit code, None for
    a process still running). The rest are given
    `after_death_s` seconds to end once one died (their heartbeat notices), then killed by `_stop`; at once
    when the one that failed wrote its error (its peers, waiting in a collective, have nothing left to do)."""
    died, deadline = None, None
    while True:
        codes = [p.poll() for p in procs]
        if died is None:
            failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                died = failed[0]
                said = (work / RESULT.format(died[0])).exists()
                deadline = time.monotonic() + (0 if said else after_death_s)
        if all(c is not None for c in codes) or (deadline is not None and time.monotonic() > deadline):
            return died, codes
        time.sleep(POLL_S)


def _stop(procs: list[subprocess.Popen], grace_s: float = 2.0) -> None:
    """Every process still running: SIGTERM, then SIGKILL after `grace_s` (a process blocked in a collective)."""
    alive = [p for p in procs if p.poll() is None]
    for p in alive:
        p.terminate()
    end = time.monotonic() + grace_s
    for p in alive:
        try:
            p.wait(max(end - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _result(work: Path, procs: list[subprocess.Popen], died: tuple[int, int] | None, ended: list[int | None],
            about: dict[str, Any]) -> dict[str, Any]:
    """Process 0's result; else `crashed`, naming a process that ended without writing why (`ended`: the exit codes
    before `_stop` killed anything); else the error a process wrote."""
    n = len(procs)
    written = [pickle.loads(path.read_bytes()) if (path := work / RESULT.format(i)).exists() else None
               for i in range(n)]
    if died is None and written[0] is not None:
        result = written[0]
        return {**result, "distributed": {**result.get("distributed", {}), **about}}
    # A process that ended without saying why (killed, crashed) is the cause; its peers' errors (a collective
    # whose peer is gone) follow from it.
    silent = [i for i, code in enumerate(ended) if code not in (None, 0) and written[i] is None]
    own = next((r for r in written if r is not None and r.get("status") != "ok"), None)
    if own is not None and not silent:
        return {**own, "distributed": {"processes": n, **about}}  # its own error (a config the task refuses)
    first = died[0] if died is not None and died[0] in silent else (silent or [0])[0]
    code = procs[first].returncode
    others = [f"process {i} {_ended(p.returncode)}" + (f" ({r['error']['type']}: {r['error']['message'][:200]})"
                                                       if (r := written[i]) and r.get("error") else "")
              for i, p in enumerate(procs) if i != first]
    message = (f"process {first} of {n} (pid {procs[first].pid}) {_ended(code)} before the run finished; "
               f"{', '.join(others)}; its output: {about['logs'][first]}")
    return {"status": "crashed", "error": {"type": "ProcessDied", "message": message, "process": first,
                                           "exit_code": code},
            "distributed": {"processes": n, "exit_codes": [p.returncode for p in procs], **about}}


def across_processes(spec: Config, out_dir: Path) -> dict[str, Any]:
    """The job's result of a run across processes: checked here first (the batch against every device, the
    port), then `run_across`, with the environment of the job's machine as every record has it."""
    import jax

    from harness.core.environment import environment
    from harness.core.run import check_split
    from harness.core.tasks import make_task

    check_split(spec, make_task(spec.task))  # one line before any process starts
    return {"environment": environment(jax.devices("cpu")[0]), **run_across(spec, out_dir)}


def _main(argv: list[str]) -> int:
    """One process of the run: join the others, train, and (process 0, or any that fails) write its result."""
    parser = argparse.ArgumentParser(prog="python -m harness.jobs.processes")
    for name in ("work", "coordinator", "process_id", "processes", "parent"):
        parser.add_argument(name)
    args = parser.parse_args(argv)
    from harness.jobs.lifetime import end_with

    end_with(int(args.parent))  # the job's process gone (killed outright): this one ends too
    work, process_id = Path(args.work), int(args.process_id)
    spec: Config = pickle.loads((work / "spec.pkl").read_bytes())
    from harness.core import distributed

    distributed.join(args.coordinator, int(args.processes), process_id, spec.device.count,
                     spec.distributed.timeout_s)
    import jax

    from harness.core.run import execute
    from harness.jobs import record

    try:
        result = execute(spec, jax.devices())
    except (Exception, SystemExit) as err:  # noqa: BLE001 - its failed result, written for the job to record
        _write(work, process_id, record.failed(err))
        return 1
    if process_id == 0:
        _write(work, process_id, result)
    return 0


def _write(work: Path, process_id: int, result: dict[str, Any]) -> None:
    path = work / RESULT.format(process_id)
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(pickle.dumps(result))
    temporary.rename(path)  # whole or absent: the job never reads half a result


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
