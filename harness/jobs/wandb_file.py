"""W&B's run file (run-*.wandb) read back with no server: is the copy W&B holds complete?

The file is ":W&B" + magic + version, then LevelDB-log framed records (32 KiB
blocks, 7-byte headers: crc, length, type) holding wandb_internal_pb2.Record
protobufs. wandb-core writes the `exit` record last, so a file without one was
cut short (a kill while logging), and one without a summary was closed before the
harness logged anything (Ctrl-C, SIGTERM): `resume` logs such a run again from its record.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

_BLOCK = 32768
_HEADER = 7
_FULL, _LAST = 1, 4


def _chunks(path: str | Path) -> list[bytes]:
    """The file's records as their serialized bytes, in order; a cut-off tail ends the list."""
    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        return []
    pos, chunk, out = 7, b"", []
    while pos + _HEADER <= len(data):
        left_in_block = _BLOCK - pos % _BLOCK
        if left_in_block < _HEADER:
            pos += left_in_block
            continue
        length, kind = struct.unpack("<HB", data[pos + 4 : pos + 7])
        if length == 0 and kind == 0:
            pos += left_in_block
            continue
        if pos + _HEADER + length > len(data):
            break  # a record cut off by a kill
        chunk += data[pos + _HEADER : pos + _HEADER + length]
        pos += _HEADER + length
        if kind in (_FULL, _LAST):
            out.append(chunk)
            chunk = b""
    return out


def _parsed(chunks: Iterable[bytes]) -> Iterator:
    from wandb.proto import wandb_internal_pb2

    for chunk in chunks:
        record = wandb_internal_pb2.Record()
        try:
            record.ParseFromString(chunk)
        except Exception:  # noqa: BLE001 - a damaged record ends what can be read
            return
        yield record


def records(path: str | Path) -> Iterator:
    """The file's wandb_internal_pb2.Record protobufs, in order; a cut-off tail ends the iteration."""
    return _parsed(_chunks(path))


def is_complete(path: str | Path | None) -> bool:
    """Whether the run file exists and holds a summary and its exit record.

    Every run the harness logs has a summary (the record's numbers and status); a run that W&B
    closed after a Ctrl-C or SIGTERM, before anything was logged, has an exit record and W&B's own
    summary keys (`_runtime`) only. Read from the end, where both are: a sweep's writers check every run.
    """
    if not path:
        return False
    kinds = set()
    try:
        for record in _parsed(reversed(_chunks(path))):
            kind = record.WhichOneof("record_type")
            if kind != "summary" or any(not (item.key or item.nested_key[0]).startswith("_")
                                        for item in record.summary.update):  # W&B's own keys start with _
                kinds.add(kind)
            if {"exit", "summary"} <= kinds:
                return True
    except OSError:
        return False
    return False


def job_type(path: str | Path | None) -> str | None:
    """The job type of the run a run file holds ("train", "report"), or None when the file does not say."""
    try:
        for record in records(path) if path else ():
            if record.WhichOneof("record_type") == "run":
                return record.run.job_type
    except OSError:
        pass
    return None


def wait_complete(path: str | Path | None, timeout_s: float = 10.0) -> bool:
    """`is_complete`, waiting up to `timeout_s`: `run.finish()` can return before wandb-core wrote the exit record."""
    deadline = time.monotonic() + timeout_s
    while not is_complete(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def run_file(run_dir: str | Path) -> Path | None:
    """The run-*.wandb file of a run directory (offline-run-* or run-*), or None."""
    found = sorted(Path(run_dir).glob("run-*.wandb"))
    return found[0] if found else None
