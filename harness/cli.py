"""`harness`: run or sweep (Hydra), or `harness report|compare|dashboard ...` on finished sweeps.

Stopping: Ctrl-C (SIGINT) and SIGTERM stop a run or sweep at the next Python
bytecode, i.e. between compiled calls (between chunks with train.log_every), with
one line: the job in progress is recorded as `crashed` (resume reruns it),
finished jobs keep their records, and a joblib sweep's workers are ended with it.
"""

from __future__ import annotations

import signal
import sys


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C so that the same clean-up runs."""


def _on_sigterm(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one clean-up; a second SIGTERM does not interrupt it
    # Raised in the main thread: a job in progress records itself as crashed, and joblib, which
    # catches any BaseException while it waits, kills its workers before this process exits
    # (with the default action they outlived it by a minute).
    raise Terminated("stopped by SIGTERM before it finished; resume reruns it")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "dashboard":
        from harness.analysis.dashboard import main_dashboard

        sys.argv.pop(1)
        sys.exit(main_dashboard())
    if len(sys.argv) > 1 and sys.argv[1] in ("report", "compare"):
        from harness.analysis import report

        command = sys.argv.pop(1)
        sys.exit(report.main_report() if command == "report" else report.main_compare())
    from harness.core.components import with_custom_options
    from harness.jobs import callbacks
    from harness.jobs.app import main as hydra_main

    sys.argv[1:] = with_custom_options(sys.argv[1:])
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        hydra_main()
        callbacks.release()
        sys.exit(callbacks.exit_code())
    except KeyboardInterrupt as stop:
        how = "SIGTERM" if isinstance(stop, Terminated) else "Ctrl-C"
        where = f"resume={callbacks.ACTIVE_DIR[-1]}" if callbacks.ACTIVE_DIR else "resume=<its directory>"
        print(f"interrupted by {how}: finished jobs keep their records, the job in progress is recorded as "
              f"crashed; {where} runs what is left", file=sys.stderr, flush=True)
        sys.exit(143 if isinstance(stop, Terminated) else 130)
