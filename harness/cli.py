"""`harness`: run or sweep (Hydra), `harness report|compare|dashboard ...` on finished sweeps, `harness options`.

Stopping: Ctrl-C (SIGINT) and SIGTERM stop a run or sweep at the next Python
bytecode, i.e. between compiled calls (between chunks with train.log_every), with
one line: the job in progress is recorded as `crashed` (resume reruns it),
finished jobs keep their records, and a joblib sweep's workers are ended with it.
"""

from __future__ import annotations

import _thread
import atexit
import os
import re
import shlex
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from harness.jobs.lifetime import COMMAND_PID, signalled


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C so that the same clean-up runs."""


def _on_sigterm(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one clean-up; a second SIGTERM does not interrupt it
    # Raised in the main thread: a job in progress records itself as crashed, and joblib, which
    # catches any BaseException while it waits, kills its workers before this process exits
    # (with the default action they outlived it by a minute).
    raise signalled(Terminated("stopped by SIGTERM before it finished; resume reruns it"))


# A stop that landed where Python ignores exceptions, waiting to be raised again in the main thread.
_SWALLOWED: list[KeyboardInterrupt] = []


def _on_sigint(signum, frame) -> None:
    raise _SWALLOWED.pop() if _SWALLOWED else signalled(KeyboardInterrupt())


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


COMMANDS = (
    ("harness [OVERRIDE ...]", "one run: the seed study, or what the overrides choose (model=mlp freeze=backbone)"),
    ("harness -m [OVERRIDE ...]", "a sweep: the product of comma-separated values (method=diffstate,jax_split)"),
    ("harness report SWEEP_DIR", "report.md, tables, figures and Parquet of a finished sweep (report -h)"),
    ("harness compare DIR_A DIR_B", "two sweeps matched config by config, ratios B/A with 95% CIs (compare -h)"),
    ("harness dashboard SWEEP_DIR", "a W&B workspace for a sweep, as code (needs the dashboard extra)"),
    ("harness options [GROUP ...]", "what each config group offers, one line per option (options freeze)"),
)


def _help() -> str:
    """`harness --help`: the commands, the config groups and their options, and where Hydra's help is."""
    from harness.jobs.options import GROUPS, _defaults, _repository

    try:
        repo = _repository(None, [])
        from hydra.core.object_type import ObjectType

        chosen = {"hydra/launcher": "basic", "hydra/sweeper": "basic", **_defaults(repo)}
        groups = [f"  {g:<16}" + " ".join(f"{o}*" if o == chosen.get(g) else o
                                          for o in repo.get_group_options(g, ObjectType.CONFIG)) for g in GROUPS]
    except Exception as err:  # noqa: BLE001 - the help still names the commands
        groups = [f"  (cannot list them: {type(err).__name__}: {err})"]
    width = max(len(c) for c, _ in COMMANDS) + 2
    return "\n".join([
        "harness: a benchmark harness for parameter freezing in flax.nnx (docs/: getting started, studies, reports)",
        "",
        "commands:",
        *(f"  {c.ljust(width)}{what}" for c, what in COMMANDS),
        "",
        "config groups (choose with GROUP=OPTION, * the default; `harness options GROUP` says what each does):",
        *groups,
        "  settings: KEY=VALUE (train.steps=1000 optimizer.lr=1e-2 task.seed=7), quoted when it has spaces or",
        "  special characters: harness 'freeze.patterns=[\"^backbone/\"]'",
        "",
        "more:",
        "  harness --cfg job [OVERRIDE ...]   the composed config, without running it",
        "  harness --config-dir DIR ...       options of your own in DIR/<group>/<name>.yaml (harness options GROUP)",
        "  harness --hydra-help               Hydra's own help: its flags (--multirun, --cfg, --info, ...)",
    ])


def _quoted_lists(value: str) -> str | None:
    """`value` as one or more lists with each item in double quotes, or None when it is not lists.

    >>> _quoted_lists("[^attn/],[^embed/, ^pos$],[]")
    '["^attn/"],["^embed/","^pos$"],[]'
    """
    if not re.fullmatch(r"\s*\[[^\[\]]*\](\s*,\s*\[[^\[\]]*\])*\s*", value):
        return None
    lists = []
    for body in re.findall(r"\[([^\[\]]*)\]", value):
        items = [item.strip().strip("'\"") for item in body.split(",") if item.strip()]
        if any('"' in item or "\\" in item for item in items):
            return None
        lists.append("[" + ",".join(f'"{item}"' for item in items) + "]")
    return ",".join(lists)


def _list_hint(key: str, value: str, parser) -> str | None:
    """The exact argument that gives `value`'s list (or sweep over lists) to `key`, checked by Hydra's parser."""
    quoted = _quoted_lists(value)
    if quoted is None:
        return None
    try:
        (override,) = parser.parse_overrides([f"{key}={quoted}"])
    except Exception:  # noqa: BLE001 - no hint rather than a wrong one
        return None
    argument = shlex.quote(f"{key}={quoted}")
    if override.is_sweep_override():
        return (f"a sweep over lists, one list per job, each item quoted inside its list: "
                f"harness -m {argument}")
    return f"each item quoted inside the list: harness {argument}"


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
    modes = [flag for flag, on in (("--multirun", args.multirun), ("--cfg", args.cfg), ("--info", args.info),
                                   ("--run", args.run), ("--shell-completion", args.shell_completion)) if on]
    if len(modes) > 1:
        return (f"error: {' and '.join(modes)} cannot go together: one of --run, --multirun, --cfg, --info, "
                "--shell-completion")
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
            hint = _list_hint(key, value, parser) or (
                f"quote a value with spaces or special characters, quotes inside the argument: "
                f"harness \"{key}='{value}'\"")
            return f"error: {key}: cannot read the value {value!r} ({reason}); {hint}"
    return None


# Config groups every run needs an option of (conf/config.yaml's defaults): `~optimizer` would silently fall back on
# the schema's values, `~method` fail each job.
REQUIRED_GROUPS = ("task", "model", "freeze", "method", "optimizer", "device", "tracker")


def _removed_group(overrides: list[str]) -> str | None:
    """One line for a `~group` of a group every run needs, or None.

    >>> _removed_group(["~optimizer"]).split(";")[0], _removed_group(["~experiment", "~train.steps"])
    ('error: optimizer: a group every run needs cannot be removed (~optimizer)', None)
    """
    for override in overrides:
        group = override.partition("=")[0].removeprefix("~") if override.startswith("~") else None
        if group in REQUIRED_GROUPS:
            return (f"error: {group}: a group every run needs cannot be removed (~{group}); choose one of its options "
                    f"instead, e.g. {group}=<option> (harness options {group} lists them)")
    return None


def _analysis(command: str) -> int:
    """`harness report|compare|dashboard ...`: pandas and matplotlib, no JAX."""
    if command == "dashboard":
        from harness.analysis.dashboard import main_dashboard

        return main_dashboard()
    from harness.analysis import report

    return report.main_report() if command == "report" else report.main_compare()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "options":
        from harness.jobs.options import main_options

        sys.argv.pop(1)
        sys.exit(main_options())
    if any(a in ("--help", "-h") for a in sys.argv[1:]) and sys.argv[1:2] not in (["report"], ["compare"],
                                                                                    ["dashboard"]):
        print(_help())
        sys.exit(0)
    _private_temp()
    os.environ[COMMAND_PID] = str(os.getpid())  # the processes it starts end with it (harness.jobs.lifetime)
    if len(sys.argv) > 1 and sys.argv[1] in ("report", "compare", "dashboard"):
        command = sys.argv.pop(1)
        try:
            sys.exit(_analysis(command))
        except KeyboardInterrupt:  # a report is written atomically: stopped, it leaves the old one or none
            print(f"harness {command}: interrupted by Ctrl-C; nothing half-written is left", file=sys.stderr,
                  flush=True)
            sys.exit(130)
    from harness.core.components import with_custom_options
    from harness.jobs import callbacks
    from harness.jobs.app import main as hydra_main
    from harness.jobs.options import missing_extra

    if message := _unreadable_override(sys.argv[1:]) or _removed_group(sys.argv[1:]) or missing_extra(sys.argv[1:]):
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
        if callbacks.ACTIVE_DIR:  # jobs of other processes (joblib's workers) left their markers: say why they ended
            callbacks.mark_stopped(Path(callbacks.ACTIVE_DIR[-1]), how)
        print(f"interrupted by {how}: finished jobs keep their records, the job in progress is recorded as "
              f"crashed; {where} runs what is left", file=sys.stderr, flush=True)
        sys.exit(143 if isinstance(stop, Terminated) else 130)
