"""A run's record, built here and nowhere else: what `result.json` holds, and what W&B is given.

Every record is a plain JSON object (`Record`). A job writes a `running` marker (`running`) before
it trains and replaces it with its final record (`finished`), whose status is one of STATUSES; a
job that died leaves its marker, which readers, the sweep's end and `resume` turn into a `crashed`
record (`crashed`). harness/jobs/store.py writes and reads records, harness/jobs/tracking.py copies
them to W&B: neither builds one, and neither reads the job's Hydra config.

>>> failed(ConfigError("optimizer.lr", "must be a finite number > 0, got -1.0"))
{'status': 'failed', 'error': {'type': 'ConfigError', 'message': 'optimizer.lr: must be a finite number > 0, got -1.0'}}
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from pathlib import Path
from typing import Any, TypedDict

from harness.core.checks import ConfigError, DeviceUnavailable
from harness.core.fields import config_hash

# 2: task and model settings per component (harness/core/components.py), so configs of schema 1 hash differently.
SCHEMA_VERSION = 2
STATUSES = ("ok", "diverged", "failed", "skipped", "crashed")  # crashed: a job that died (also by Slurm)
RUNNING = "running"  # the marker of a job in progress: not a final status
COMPLETE = ("ok", "diverged")  # what resume does not run again


class Record(TypedDict, total=False):
    """The fields every record has; a finished run's also has what `harness.core.run.execute` measured
    (metrics, drift, parameters, timing, plausibility, history, ...: harness/core/fields.py names each)."""

    schema_version: int  # SCHEMA_VERSION when written; `compare` and `resume` refuse another
    status: str  # one of STATUSES, or RUNNING for a job in progress
    error: dict[str, Any] | None  # {"type", "message", ...} when the run did not finish well
    job: dict[str, Any]  # who ran it: name, num, overrides (as if run alone), output and sweep dirs, Slurm
    config: dict[str, Any]  # the run's resolved config: what it computed
    config_hash: str  # what resume compares (harness.core.fields.config_hash of the job's config)
    started: str
    finished: str
    wandb: dict[str, Any] | None  # what tracking says of the W&B copy (mode, dir, file, or its error)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def running(job: dict[str, Any], config: dict[str, Any], started: str) -> Record:
    """What a job writes before it trains: who runs it, so a reader can tell a live job from a dead one, and the
    host's count of OOM kills, so a reader can tell whether the kernel killed something for memory meanwhile."""
    return {"schema_version": SCHEMA_VERSION, "status": RUNNING, "error": None, "job": job, "config": config,
            "config_hash": config_hash(config), "started": started,
            "process": {"host": socket.gethostname(), "pid": os.getpid(), "oom_kills": oom_kills()}}


def finished(job: dict[str, Any], config: dict[str, Any], job_config: dict[str, Any], started: str,
             result: dict[str, Any]) -> Record:
    """The final record of one run: who ran it (`job`), its config, and its `result` (status and measurements).

    `job_config` is the config of the job the run was part of: a vectorized point's config is the job's with
    the point's own values, and resume compares the job's.
    """
    return {"schema_version": SCHEMA_VERSION, "status": "failed", "error": None, "job": job, "config": config,
            "config_hash": config_hash(job_config), "started": started, **result, "finished": now()}


def unsaved(record: Record) -> Record:
    """The small failed record written in place of one that could not be written (a full disk)."""
    return {**{k: record[k] for k in ("schema_version", "job", "config", "config_hash", "started", "finished")},
            "status": "failed", "error": {"type": "OSError", "message": (
                f"its {record['status']} record could not be written (see the sweep's output); its measurements "
                "are lost")}}


def ended(job: dict[str, Any], config: dict[str, Any], error: dict[str, Any], started: str | None) -> Record:
    """The `crashed` record a job's scheduler writes for it when the job ended without one (harness/jobs/slurm.py)."""
    return {"schema_version": SCHEMA_VERSION, "status": "crashed", "error": error, "job": job, "config": config,
            "config_hash": config_hash(config), "started": started, "finished": now()}


def error_of(err: BaseException) -> dict[str, str]:
    """An exception as a record's error: its type and the first line of its message."""
    text = str(err).strip()
    return {"type": type(err).__name__, "message": text.splitlines()[0] if text else ""}


def error_line(error: dict[str, Any] | None, limit: int = 500) -> str:
    """A record's error as one line for a terminal: 'Type: message', cut at `limit` characters (the record holds
    it whole: a user's exception may carry megabytes).

    >>> error_line({"type": "ValueError", "message": "x" * 600}, limit=40)
    'ValueError: xxxxxxxxxxxxxxxx ... (612 characters; result.json holds them all)'
    """
    error = error or {}
    text = f"{error.get('type')}: {error.get('message')}"
    if len(text) <= limit:
        return text
    return f"{text[:limit - 12]} ... ({len(text)} characters; result.json holds them all)"


def failed(err: Exception | SystemExit | KeyboardInterrupt) -> dict[str, Any]:
    """The result of a run that did not finish: skipped (its device is not there) or failed, with why; a failure
    that is not a config error keeps the end of its traceback (call it where the exception is handled)."""
    if isinstance(err, SystemExit):  # user code that called sys.exit(): it ends this run, not the sweep
        return {"status": "failed", "error": {
            "type": "SystemExit", "message": f"the run's code called sys.exit({err.code!r}) (exit code "
                                             f"{err.code if isinstance(err.code, int) else 1}); recorded as this "
                                             "run's failure",
            "exit_code": err.code if isinstance(err.code, int) else 1, "traceback": traceback.format_exc(limit=-8)}}
    if isinstance(err, KeyboardInterrupt):  # raised by user code, not a signal (harness.jobs.lifetime.signalled)
        return {"status": "failed", "error": {
            "type": "KeyboardInterrupt", "traceback": traceback.format_exc(limit=-8),
            "message": "the run's code raised KeyboardInterrupt (no signal stopped it): this run's failure"}}
    if isinstance(err, DeviceUnavailable):
        return {"status": "skipped", "error": error_of(err)}
    if isinstance(err, ConfigError):
        return {"status": "failed", "error": error_of(err)}
    return {"status": "failed", "error": {**error_of(err), "traceback": traceback.format_exc(limit=-8)}}


def oom_kills(proc: Path = Path("/proc")) -> int | None:
    """How many processes the kernel's OOM killer has killed on this host since it booted (also a memory cgroup's
    limit), or None where the kernel does not say (/proc/vmstat's oom_kill, Linux 4.13 and later)."""
    try:
        for line in (proc / "vmstat").read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        pass
    return None


def crashed(marker: Record, error_type: str = "Crashed", message: str | None = None) -> Record:
    """The record of a job that ended without writing its own: its marker with status `crashed` and why.

    When the kernel's OOM killer killed a process on the marker's host since the marker was written
    (/proc/vmstat), the job most likely ran out of memory: the record says so (`error.out_of_memory`),
    and a resume says why it may crash again.
    """
    process = marker.get("process") if isinstance(marker.get("process"), dict) else {}
    where = f"pid {process.get('pid')} on {process.get('host')}" if process else "its process"
    error = {"type": error_type}
    before, count = process.get("oom_kills"), oom_kills()
    if (message is None and process.get("host") == socket.gethostname() and isinstance(before, int)
            and count is not None and count > before):
        error["out_of_memory"] = True
        message = (f"the job's process ({where}) ended without writing its result, and the kernel's OOM killer "
                   f"killed {count - before} process(es) on this host meanwhile (oom_kill {before} -> {count} in "
                   "/proc/vmstat): most likely it ran out of memory; resume reruns it")
    message = message or (f"the job's process ({where}) ended without writing its result: killed (out of memory, "
                          "SIGKILL, a scheduler's time limit) or its machine stopped; resume reruns it")
    return {**marker, "status": "crashed", "error": {**error, "message": message}, "crash_detected": now()}
