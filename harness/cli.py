"""`harness`: run or sweep (Hydra), or `harness report|compare|dashboard ...` on finished sweeps.

Stopping: Ctrl-C (SIGINT) and SIGTERM stop a run or sweep at the next Python
bytecode, i.e. between compiled calls (between chunks with train.log_every), with
one line: the job in progress is recorded as `crashed` (resume reruns it),
finished jobs keep their records, and a joblib sweep's workers are ended with it.
"""

from __future__ import annotations

import _thread
import atexit
import os
import shutil
import signal
import sys
import tempfile
import time


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C so that the same clean-up runs."""


def _on_sigterm(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one clean-up; a second SIGTERM does not interrupt it
    # Raised in the main thread: a job in progress records itself as crashed, and joblib, which
    # catches any BaseException while it waits, kills its workers before this process exits
    # (with the default action they outlived it by a minute).
    raise Terminated("stopped by SIGTERM before it finished; resume reruns it")


# A stop that landed where Python ignores exceptions, waiting to be raised again in the main thread.
_SWALLOWED: list[KeyboardInterrupt] = []


def _on_sigint(signum, frame) -> None:
    raise _SWALLOWED.pop() if _SWALLOWED else KeyboardInterrupt()


def _raise_swallowed_stops_again(unraisable, default=sys.unraisablehook) -> None:
    """sys.unraisablehook: a Ctrl-C or SIGTERM raised inside a callback whose exceptions Python only prints (XLA's
    garbage-collection callback, a __del__) would be lost, and the run would go on for minutes: it is raised
    again, as it was, in the main thread once the callback has returned."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        _SWALLOWED.append(unraisable.exc_value)
        # From another thread, a moment later, interrupt_main only flags SIGINT: _on_sigint runs at the main
        # thread's next bytecode, after this hook and the callback have returned (called here, it would raise
        # inside the hook, and be lost). Swallowed again, it comes back here again.
        _thread.start_new_thread(_interrupt_main_soon, ())
        return
    default(unraisable)


def _interrupt_main_soon() -> None:
    time.sleep(0.01)
    _thread.interrupt_main(signal.SIGINT)


def install_stop_handlers() -> None:
    """Ctrl-C and SIGTERM raise in the main thread, and are never lost in a callback that swallows exceptions."""
    signal.signal(signal.SIGINT, _on_sigint)
    signal.signal(signal.SIGTERM, _on_sigterm)
    sys.unraisablehook = _raise_swallowed_stops_again


def _private_temp() -> None:
    """This command's own temporary directory, removed when it ends: W&B's temporary files and those of
    the joblib workers and W&B processes it starts (they inherit TMPDIR) go with it, even when a worker
    is killed before it can clean up after itself."""
    root = tempfile.mkdtemp(prefix="harness-")
    os.environ["TMPDIR"] = tempfile.tempdir = root
    atexit.register(shutil.rmtree, root, True)


def _unreadable_override(overrides: list[str]) -> str | None:
    """One line for the first command-line override Hydra's grammar cannot read, or None.

    Hydra would answer with its parser's exception (LexerNoViableAltException, "missing EQUAL"),
    before any code of ours runs.
    """
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    try:
        args, _ = get_args_parser().parse_known_args(overrides)
    except SystemExit:  # Hydra's own flags, used wrongly: Hydra says so itself
        return None
    parser = OverridesParser.create()
    for i, override in enumerate(args.overrides):
        try:
            parser.parse_overrides([override])
        except OverrideParseException as err:
            if "=" not in override:
                key, _, value = (args.overrides[i - 1] if i else "key=value").partition("=")
                return (f"error: {override!r} is not an override (key=value); if it belongs to the value before "
                        f"it, quote the whole value: harness \"{key}='{value} {override}'\"")
            key, _, value = override.partition("=")
            reason = str(err).strip().splitlines()[0]
            return (f"error: {key}: cannot read the value {value!r} ({reason}); quote a value with spaces or "
                    f"special characters, quotes inside the argument: harness \"{key}='{value}'\"")
    return None


def main() -> None:
    _private_temp()
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

    if message := _unreadable_override(sys.argv[1:]):
        print(message, file=sys.stderr, flush=True)
        sys.exit(1)
    sys.argv[1:] = with_custom_options(sys.argv[1:])
    install_stop_handlers()
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
