"""Processes a command starts end with it, however it ends: also when it is SIGKILLed and can clean up nothing.

A sweep's W&B writer processes and a joblib launcher's workers are the command's children. Killed
outright, the command cannot stop them, and they (with W&B's own wandb-core beneath a writer) would
live on for minutes, holding memory. Each watches the command instead and ends itself once it is
gone. A watch, not Linux's parent-death signal: that signal follows the thread that started the
child, and the pools start children from threads that may end first.
"""

from __future__ import annotations

import os
import signal
import threading
import time

COMMAND_PID = "HARNESS_COMMAND_PID"  # set by harness.cli: the process whose end ends its children


def signalled(stop: KeyboardInterrupt) -> KeyboardInterrupt:
    """`stop` marked as raised by harness.cli's signal handlers (Ctrl-C, SIGTERM): a stop of the whole command."""
    stop.harness_signal = True
    return stop


def raised_by_code(stop: KeyboardInterrupt) -> bool:
    """Whether `stop` was raised by a run's code, not by a signal: so only in the command's own process, where
    every signal arrives `signalled` (a launcher's worker gets Python's own KeyboardInterrupt on Ctrl-C)."""
    return not getattr(stop, "harness_signal", False) and os.environ.get(COMMAND_PID) == str(os.getpid())


def end_with(parent: int, every_s: float = 1.0) -> None:
    """In a child of process `parent`: end this process once `parent` is gone (at once if it already is)."""

    def watch() -> None:
        while os.getppid() == parent:  # a child whose parent ended is given to another (init or a subreaper)
            time.sleep(every_s)
        os.kill(os.getpid(), signal.SIGKILL)  # nothing of its own to save: the command's records are written

    threading.Thread(target=watch, name="harness-end-with-parent", daemon=True).start()


def watch_command() -> None:
    """In a launcher's worker that the `harness` command started (joblib's): end it with the command. Does nothing
    elsewhere (the command itself, a Slurm job, which another process started and which may outlive it)."""
    pid = os.environ.get(COMMAND_PID)
    if pid and pid.isdigit() and int(pid) != os.getpid() and os.getppid() == int(pid):
        end_with(int(pid))
