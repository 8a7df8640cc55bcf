"""`harness`: run or sweep (Hydra), or `harness report|compare ...` on finished sweeps.

Stopping: Ctrl-C (SIGINT) and SIGTERM stop a run or sweep at the next Python
bytecode, i.e. between compiled calls, with one line: the job in progress is
recorded as `crashed` (resume reruns it), finished jobs keep their records.
SIGTERM first ends this process's children (joblib's workers, wandb-core), which
would otherwise keep running for a minute after their parent is gone.
"""

from __future__ import annotations

import signal
import sys

class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C so that the same clean-up runs."""


def _end_children(timeout_s: float = 5.0) -> None:
    """Terminates (then kills) every descendant process and waits for them."""
    import psutil

    children = psutil.Process().children(recursive=True)
    for child in children:
        try:
            child.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(children, timeout=timeout_s)
    for child in alive:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=timeout_s)


def _on_sigterm(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one clean-up; a second SIGTERM does not interrupt it
    _end_children()
    raise Terminated("stopped by SIGTERM before it finished; resume reruns it")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("report", "compare"):
        from harness import report

        command = sys.argv.pop(1)
        sys.exit(report.main_report() if command == "report" else report.main_compare())
    from harness.app import main as hydra_main

    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        hydra_main()
    except KeyboardInterrupt as stop:
        from harness.callbacks import ACTIVE_DIR

        how = "SIGTERM" if isinstance(stop, Terminated) else "Ctrl-C"
        where = f"resume={ACTIVE_DIR[-1]}" if ACTIVE_DIR else "resume=<its directory>"
        print(f"interrupted by {how}: finished jobs keep their records, the job in progress is recorded as "
              f"crashed; {where} runs what is left", file=sys.stderr, flush=True)
        sys.exit(143 if isinstance(stop, Terminated) else 130)
