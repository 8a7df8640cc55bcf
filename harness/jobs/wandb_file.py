"""W&B's run file (run-*.wandb) read back with no server: is the copy W&B holds complete?

The file is ":W&B" + magic + version, then LevelDB-log framed records (32 KiB
blocks, 7-byte headers: crc, length, type) holding wandb_internal_pb2.Record
protobufs. wandb-core writes the `exit` record last, so a file without one was
cut short (a kill while logging) and `resume` logs that run again from its record.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from pathlib import Path

_BLOCK = 32768
_HEADER = 7
_FULL, _LAST = 1, 4


def records(path: str | Path) -> Iterator:
    """The file's wandb_internal_pb2.Record protobufs, in order; a cut-off tail ends the iteration."""
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        return
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
        if pos + _HEADER + length > len(data):
            return  # a record cut off by a kill
        chunk += data[pos + _HEADER : pos + _HEADER + length]
        pos += _HEADER + length
        if kind in (_FULL, _LAST):
            record = wandb_internal_pb2.Record()
            try:
                record.ParseFromString(chunk)
            except Exception:  # noqa: BLE001 - a damaged record ends what can be read
                return
            yield record
            chunk = b""


def is_complete(path: str | Path | None) -> bool:
    """Whether the run file exists and holds its exit record."""
    if not path:
        return False
    try:
        return any(r.WhichOneof("record_type") == "exit" for r in records(path))
    except OSError:
        return False


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
