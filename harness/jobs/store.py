"""A job's record on disk: `result.json`, written atomically, and read back by everything after it.

The records themselves are built in harness/jobs/record.py. A `running` marker whose
process is gone is a job that died (killed, out of memory, machine down): readers
show it, and the sweep's end and `resume` rewrite it, as `crashed`.

Plain JSON and the standard library: the sweep's callbacks, resume, Slurm and
the analysis wing all read records through this module, none of them with pandas or JAX.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import sys
from pathlib import Path
from typing import Any

from harness.core.checks import ConfigError
from harness.core.fields import CHANGEABLE_ON_RESUME, FIELDS, config_hash
from harness.core.files import atomic_path
from harness.jobs.record import COMPLETE, RUNNING, SCHEMA_VERSION, crashed

RECORD_NAME = "result.json"


def finite_or_null(obj: Any) -> Any:
    """NaN and infinities as None: records are strict JSON (jq, browsers); `divergence` says where they began."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_null(v) for v in obj]
    return obj


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write, fsync, rename: a reader sees the old file, the whole new one, or none, never half."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(finite_or_null(obj), f, indent=1, allow_nan=False)


def writer_alive(record: dict[str, Any]) -> bool | None:
    """Whether the process that wrote a `running` marker still runs: None when it ran on another host."""
    process = record.get("process") if isinstance(record.get("process"), dict) else {}
    pid = process.get("pid")
    if (process.get("host") != socket.gethostname() or not isinstance(pid, int) or isinstance(pid, bool)
            or pid <= 0):
        return None
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    except OverflowError:
        return None
    return True


def write_record(path: Path, record: dict[str, Any], lost: str | None = None) -> bool:
    """Writes a record; a failing write (disk full, read-only) is one clear line and False, never a raised error.

    `lost` says what the failure leaves unsaved (by default: the job's result).
    """
    try:
        write_json_atomic(path, record)
        return True
    except OSError as err:
        lost = lost or (f"this job's {record.get('status')} result is not saved (free some space, then resume "
                        "the sweep)")
        print(f"error: cannot write {path}: {err.strerror or err}; {lost}", file=sys.stderr, flush=True)
        return False


def point_count(config: dict[str, Any]) -> int:
    """How many runs a job of `config` records: 1, or one per vectorized point."""
    vectorize = config.get("vectorize") or {}
    if vectorize.get("points"):
        return len(vectorize["points"])
    return max(len(vectorize.get("lr") or []), 1) * max(len(vectorize.get("seed") or []), 1)


def completed(out_dir: Path, config: dict[str, Any]) -> tuple[list[tuple[Path, dict[str, Any]]],
                                                             list[tuple[Path, str]]]:
    """(the job's completed records as (path, record), one or some of its vectorized points'; the records in its
    dir that do not validate, as (path, why)): what resume skips, and what it must run again.

    Records are read as `harness report` reads them (`read_records`): a record that does not validate
    (unreadable, or a field of the wrong kind) is not complete, whatever its status says. A completed
    record of another config in the job's dir is an error: resuming with other overrides would mix two sweeps.
    """
    done = []
    records, problems = read_records(out_dir)
    for path, record in records:
        if record.get("status") not in COMPLETE:
            continue
        if record.get("schema_version", 1) != SCHEMA_VERSION:
            raise ConfigError("resume", f"{path} was written by another version of the harness (record schema "
                                        f"{record.get('schema_version', 1)}, this one writes {SCHEMA_VERSION}): its "
                                        "config reads differently; finish that sweep with the version that started "
                                        "it, or start a new one")
        # What a resume may change (report=, tracker=...) is taken as the record was written.
        stored = record.get("config") if isinstance(record.get("config"), dict) else {}
        as_written = {**config, **{k: stored[k] for k in CHANGEABLE_ON_RESUME if k in stored}}
        if record.get("config_hash") != config_hash(as_written):
            raise ConfigError("resume", f"{path} is a completed record of another config; resume a sweep with "
                                        "the same overrides, or start a new one")
        done.append((path, record))
    return done, problems


def already_done(out_dir: Path, config: dict[str, Any]) -> list[tuple[Path, dict[str, Any]]]:
    """The job's completed records (see `completed`) when every run of the job has one and all validate, else []."""
    done, problems = completed(out_dir, config)
    return done if len(done) == point_count(config) and not problems else []


# --- reading ---------------------------------------------------------------------------------------


def _natural_key(path: Path) -> list:
    """Sort key that puts job 2 before job 10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def read_record(path: Path) -> tuple[dict | None, str | None]:
    """(the record at `path`, None), or (None, why it is not one): unreadable, not JSON, not an object, no status."""
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        return None, f"{type(err).__name__}: {err}"
    if not isinstance(record, dict):
        return None, f"not a record: a JSON {type(record).__name__}"
    if not isinstance(record.get("status"), str):
        return None, "not a record: no 'status'"
    return record, None


def read_records(sweep_dir: str | Path) -> tuple[list[tuple[Path, dict]], list[tuple[Path, str]]]:
    """Every result.json under `sweep_dir` as (path, record), in job order; unreadable ones as (path, reason).

    A `running` marker whose process is gone reads as `crashed`; a record with a value of the
    wrong kind where a column expects a number (a string for a learning rate) is a problem, not a row.
    """
    records, problems = [], []
    for path in sorted(Path(sweep_dir).rglob(RECORD_NAME), key=_natural_key):
        record, problem = read_record(path)
        if record is not None and record["status"] == RUNNING and writer_alive(record) is False:
            record = crashed(record)
        if record is not None:
            problem = malformed(path, record)
        if problem is None:
            records.append((path, record))
        else:
            problems.append((path, problem))
    return records, problems


def malformed(path: Path, record: dict) -> str | None:
    """Why `record` cannot be a row (a column's value of the wrong kind), or None."""
    for key in ("config", "job", "metrics", "timing"):
        if record.get(key) is not None and not isinstance(record[key], dict):
            return f"malformed record: {key} is {record[key]!r}, expected an object"
    for field in FIELDS:
        try:
            value = field.get(record)
        except (AttributeError, TypeError, ValueError) as err:
            return f"malformed record: {type(err).__name__}: {err}"
        name, cast = field.column, field.kind
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        wrong = (isinstance(value, (dict, list)) or (cast in (int, float) and isinstance(value, (str, bool)))
                 or (cast is bool and not isinstance(value, bool)))
        if not wrong:
            try:
                cast(value)
            except (TypeError, ValueError, OverflowError):
                wrong = True
        if wrong:
            kind = {int: "an integer", float: "a number", bool: "true or false", str: "text"}[cast]
            return f"malformed record: {name} is {value!r}, expected {kind}"
    return None
