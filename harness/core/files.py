"""Files written whole or not at all, with the permissions of any other file the user writes.

A record, a sweep's plan, a report or a cached pretrained model is written to a temporary
file beside its destination, flushed to disk and renamed over it: a reader sees the old
file, the whole new one, or none, never half (a kill or a full disk mid-write leaves the
old one and no temporary file). `tempfile.mkstemp` creates files readable by their owner
only; the file is given the mode the user's umask gives new files (0644 under the usual
022) before the rename, so colleagues on a shared results directory can read records as
they read report.md.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def umask() -> int:
    """The process's umask (read by setting it and setting it back: POSIX has no other way to read it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` to write to; on success it is fsynced, given the umask's mode and renamed
    to `path`, on any error removed (the error is raised).

    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("whole")
    >>> target.read_text(), sorted(p.name for p in target.parent.iterdir())
    ('whole', ['a.txt'])
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The destination's suffix last: a writer that picks its format by the name (matplotlib) picks the right one.
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except OSError as err:  # named by the file it was for, not by its temporary name
        _remove(tmp)
        raise OSError(err.errno, err.strerror or str(err), str(path)) from err
    except BaseException:
        _remove(tmp)
        raise


def _remove(tmp: Path | None) -> None:
    if tmp is not None:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
