"""Reads an offline W&B run file (run-*.wandb) with no server: the test's view of what W&B got.

The file is ":W&B" + magic + version, then LevelDB-log framed records (32 KiB
blocks, 7-byte headers: crc, length, type) holding wandb_internal_pb2.Record
protobufs.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2

_BLOCK = 32768
_HEADER = 7


def records(path: Path):
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"not a W&B run file: {path}"
    pos, chunk = 7, b""
    while pos + _HEADER <= len(data):
        left_in_block = _BLOCK - pos % _BLOCK
        if left_in_block < _HEADER:
            pos += left_in_block
            continue
        length, kind = struct.unpack("<HB", data[pos + 4 : pos + 7])
        if length == 0 and kind == 0:
            pos += left_in_block
            continue
        chunk += data[pos + _HEADER : pos + _HEADER + length]
        pos += _HEADER + length
        if kind in (1, 4):  # FULL or LAST
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            yield record
            chunk = b""


def read_run(path: Path) -> dict:
    """{'config': {...}, 'history': [{...}], 'summary': {...}, 'run': Record.run, 'exit_code': int | None,
    'metrics': {name or glob: {'step_metric': str, 'summary': [aggregations]}} from define_metric}."""
    out = {"config": {}, "history": [], "summary": {}, "run": None, "exit_code": None, "metrics": {}}
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["run"] = record.run
            for item in record.run.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "history":
            out["history"].append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            for item in record.summary.update:
                out["summary"][item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "metric":
            metric = record.metric
            out["metrics"][metric.name or metric.glob_name] = {
                "step_metric": metric.step_metric,
                "summary": [f.name for f, on in metric.summary.ListFields() if on]}
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
    return out


def read_finished_run(path: Path, timeout: float = 30.0) -> dict:
    """`read_run` once the file holds its exit record: in-process, `run.finish()` may return before
    wandb-core has written everything (a finished CLI process has no such gap)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        run = read_run(path)
        if run["exit_code"] is not None or time.monotonic() > deadline:
            return run
        time.sleep(0.1)
