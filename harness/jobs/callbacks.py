"""Hydra callbacks: start-up checks and the sweep's lock, progress as jobs end, a summary and exit code at the end.

Jobs never raise (every outcome is a record), so Hydra alone would exit 0 after a
sweep with failures. `on_multirun_end` reads the records, prints every failed,
skipped and crashed job (ended without a result, also by Slurm: harness/jobs/slurm.py) and
every planned job with no record, and sets the exit code (1 when any job did not finish
well) that harness.cli exits with once the sweep's report is written
(harness/analysis/report_callback.py, the next callback).

Before anything is written, a command checks what it was given (keys, paths,
W&B names, the dir a resume names) and takes the lock of its directory, which
it holds until it ends: a second command on the same sweep (two resumes) stops
with one line instead of running the same jobs twice.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from pathlib import Path
from typing import Any, NoReturn

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from harness.core.checks import ConfigError
from harness.core.config import check_startup
from harness.core.files import atomic_path
from harness.jobs import store
from harness.jobs.grouping import points_of
from harness.jobs.processes import following_task
from harness.jobs.record import COMPLETE, RUNNING, STATUSES, crashed, error_line
from harness.jobs.store import RECORD_NAME, write_json_atomic
from harness.jobs.sweep_plan import (
    SWEEP_FILE,
    base_hash,
    duplicates,
    missing_runs,
    plan_difference,
    plan_problem,
    planned_count,
    read_plan,
)
from harness.jobs.tracking import WANDB_OFFLINE_FLAG, finish_writing

log = logging.getLogger("harness")
PROGRESS_FILE = "progress.jsonl"
CLAIM_FILE = ".harness-claim"
LOCK_FILE = ".harness.lock"
NOT_FINISHED_WELL = ("failed", "skipped", "crashed")  # listed in the summary with their overrides
ACTIVE_DIR: list[str] = []  # the dir this command works in, once checked: named by harness.cli when stopped
SWEEP_EXIT: list[int] = []  # a finished sweep's exit code, for harness.cli: 1 when a job did not finish well
SWEEP_MISSING: list[int] = []  # how many of a finished sweep's planned runs left no record (its report says so)
# The held directory lock lives here, not on the callback: launchers pickle the callbacks (submitit, joblib).
_HELD: list[Any] = []


def _fail(message: str) -> NoReturn:
    """One line on stderr and exit 1. SystemExit: Hydra turns any other error raised in a callback into a warning."""
    print(message, file=sys.stderr, flush=True)
    sys.exit(1)


def plan_jobs(config: DictConfig) -> list[dict[str, Any]] | None:
    """The jobs the basic (or shuffled) sweeper will launch, [{"num", "overrides"}] in launch order, or None."""
    try:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from hydra.utils import get_class

        params = config.hydra.sweeper.get("params")
        params = OmegaConf.to_container(params) if params else {}
        given = OmegaConf.to_container(config.hydra.overrides.task, resolve=False)  # `${oops}` as typed: its job fails
        args = [f"{k}={v}" for k, v in params.items()] + given
        parsed = OverridesParser.create().parse_overrides(args)
        (grid,) = BasicSweeper.split_arguments(parsed, None)
        sweeper = get_class(config.hydra.sweeper._target_)
        jobs = [list(overrides) for overrides in grid]
        if hasattr(sweeper, "planned"):  # the harness's sweepers say which jobs they launch, in which order
            jobs = sweeper.planned(jobs, config.hydra.sweeper.get("seed"), config)
        return [{"num": num, "overrides": overrides} for num, overrides in enumerate(jobs)]
    except Exception:  # noqa: BLE001 - another sweeper: progress shows no total, report checks no plan
        return None


def _base(config: DictConfig) -> str | None:
    try:
        unswept = OmegaConf.masked_copy(config, [k for k in config if k != "hydra"])
        return base_hash(OmegaConf.to_container(unswept, resolve=True))
    except Exception:  # noqa: BLE001 - a config that does not resolve here is refused by its jobs
        return None


def read_records(directory: Path) -> list[dict[str, Any]]:
    records, problems = store.read_records(directory)
    for path, problem in problems:
        log.warning("unreadable record skipped: %s (%s)", path, problem)
    return [record for _, record in records]


def counts(records: list[dict[str, Any]]) -> dict[str, int]:
    return {status: sum(r["status"] == status for r in records) for status in STATUSES}


def _wandb_lines(records: list[dict[str, Any]], sweep_dir: Path | None) -> list[str]:
    """What the summary says when W&B online was not reached and runs were logged offline instead."""
    fallen = [r for r in records if isinstance(r.get("wandb"), dict) and r["wandb"].get("fallback")]
    if not fallen:
        return []
    where = sweep_dir or "<sweep dir>"
    return [f"W&B: online not reached ({fallen[0]['wandb']['fallback']}); {len(fallen)} runs logged offline "
            f"instead. Upload them with:\n  find {where} -type d -name 'offline-run-*' -exec wandb sync {{}} +"]


def summary_lines(records: list[dict[str, Any]], total: int | None, missing: list[dict[str, Any]] = (),
                  sweep_dir: Path | None = None) -> list[str]:
    c = counts(records)
    jobs = f"{total} jobs, " if total is not None else ""
    lines = [f"sweep finished: {jobs}{len(records)} runs recorded: " + ", ".join(f"{n} {s}" for s, n in c.items())]
    for r in records:
        if r.get("status") in NOT_FINISHED_WELL:
            error = r.get("error") or {}
            overrides = " ".join(r.get("job", {}).get("overrides", []))
            lines.append(f"  {r['status']} #{r.get('job', {}).get('num')}: {overrides}\n"
                         f"      {error_line(error)}")
    if missing:
        lines.append(f"  {len(missing)} planned runs left no record:")
        lines += [f"  missing #{job['num']}: {' '.join(job.get('overrides') or [])}" for job in missing]
    return lines + _wandb_lines(records, sweep_dir)


def claim(directory: Path) -> None:
    """Makes `directory` this run's or sweep's own, before any job runs; exits with one clear line if it can't.

    Two commands started in the same microsecond would otherwise write into one dir.
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / CLAIM_FILE, "x"):
            pass
    except FileExistsError:
        _fail(f"error: {directory} is already used by another run; start again, or pass resume={directory}")
    except OSError as err:
        _fail(f"error: results_dir: cannot write results to {directory}: {err.strerror or err}; "
              "set results_dir=<a writable directory>")


def check_resume_dir(directory: Path, multirun: bool) -> None:
    """`resume=` names an existing directory this harness made, of the same kind (sweep or single run)."""
    if not directory.exists():
        _fail(f"error: resume: {directory} does not exist; pass the directory of an earlier sweep or run "
              "(results/<name>/<timestamp>), or leave resume out to start a new one")
    if not directory.is_dir():
        _fail(f"error: resume: {directory} is a file, not a sweep or run directory; pass the directory of an "
              "earlier sweep or run (results/<name>/<timestamp>)")
    if not (directory / CLAIM_FILE).exists():
        _fail(f"error: resume: {directory} is not a directory this harness wrote (no {CLAIM_FILE}); pass the "
              "directory of an earlier sweep or run (results/<name>/<timestamp>)")
    is_sweep = (directory / SWEEP_FILE).exists()
    if multirun and not is_sweep:
        _fail(f"error: resume: {directory} holds a single run, not a sweep; resume it without -m")
    if not multirun and is_sweep:
        _fail(f"error: resume: {directory} holds a sweep; resume it with -m and the sweep's own overrides")


def lock(directory: Path):
    """The directory's lock, held until this process ends; exits with one clear line when another command holds it."""
    from filelock import FileLock, Timeout

    held = FileLock(str(directory / LOCK_FILE), timeout=0)
    try:
        held.acquire()
    except Timeout:
        _fail(f"error: another harness command is running in {directory} (the sweep itself or a resume of it); "
              "wait for it to end, or stop it, then resume")
    except OSError as err:
        _fail(f"error: cannot lock {directory}: {err.strerror or err}")
    return held


def mark_crashed(directory: Path) -> list[Path]:
    """Rewrites every `running` marker under `directory` as a `crashed` record; returns their paths.

    Only called by a process that holds the directory's lock with none of its own jobs
    running (a sweep's end, a resume's start): whatever wrote those markers is gone.
    """
    found = []
    for path in sorted(directory.rglob(RECORD_NAME)):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and record.get("status") == RUNNING:
            try:
                write_json_atomic(path, crashed(record))
                found.append(path)
            except OSError as err:
                log.warning("cannot mark %s as crashed: %s", path, err.strerror or err)
    return found


def mark_stopped(directory: Path, how: str, wait_s: float = 10.0) -> list[Path]:
    """After a Ctrl-C or SIGTERM of the command: every `running` marker under `directory` rewritten as a `crashed`
    record that says so (not a guess at memory), once the process that wrote it has ended (a launcher's worker
    is ended with the command, within `wait_s`); returns their paths. A marker whose writer still runs stays."""
    import time

    found, deadline = [], time.monotonic() + wait_s
    for path in sorted(directory.rglob(RECORD_NAME)):
        record, _ = store.read_record(path)
        if record is None or record["status"] != RUNNING:
            continue
        while store.writer_alive(record) and time.monotonic() < deadline:
            time.sleep(0.1)
        if store.writer_alive(record):
            continue
        try:
            write_json_atomic(path, crashed(record, "Stopped", f"stopped by {how} before it finished; resume reruns "
                                                               "it"))
            found.append(path)
        except OSError as err:
            log.warning("cannot mark %s as stopped: %s", path, err.strerror or err)
    return found


def release() -> None:
    """Releases the directory lock this command holds (also released when the process ends)."""
    while _HELD:
        _HELD.pop().release()


def exit_code() -> int:
    """What the command should exit with after Hydra returned: a sweep's outcome, else 0."""
    return SWEEP_EXIT[-1] if SWEEP_EXIT else 0


def _vectorized_repeats(job: dict[str, Any], config: DictConfig) -> list[str]:
    """'job #0: vectorize.seed lists 1 2 times' for each value a job's vectorized points repeat."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    lists = {name: list(config.vectorize[name] or []) for name in ("lr", "seed")}
    for override in job["overrides"]:
        key, _, _ = override.partition("=")
        if key.lstrip("+~") in ("vectorize.lr", "vectorize.seed"):
            with contextlib.suppress(Exception):  # a value the job itself refuses, with its own message
                lists[key.lstrip("+~").split(".")[1]] = list(OverridesParser.create().parse_override(override).value())
    where = f"job #{job['num']}: " if job["num"] is not None else ""
    return [f"{where}vectorize.{name} lists {value} {values.count(value)} times"
            for name, values in lists.items() for value in dict.fromkeys(values) if values.count(value) > 1]


def _points(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sweep's points as jobs: a vectorized sweeper's job as one per point, numbered `<job>/<point>`."""
    out = []
    for job in jobs:
        points = points_of(job["overrides"])
        out += [{"num": job["num"] if len(points) == 1 else f"{job['num']}/{i}", "overrides": overrides}
                for i, overrides in enumerate(points)]
    return out


def _warn_duplicates(repeated_jobs: list[tuple[int, int]], repeated_points: list[str]) -> None:
    """One warning naming every sweep point listed more than once: each runs, and findings count it once."""
    named = [f"job #{job} repeats job #{first}" for job, first in repeated_jobs] + repeated_points
    if named:
        print(f"warning: duplicate sweep points ({'; '.join(named)}): each runs, and findings count each point once",
              flush=True)


def _restart_progress(sweep_dir: Path) -> None:
    """A resume's progress starts from what is done: the jobs whose records are complete and validate."""
    records, problems = store.read_records(sweep_dir)
    statuses: dict[Any, set[str]] = {}
    for path, record in records:
        statuses.setdefault(record.get("job", {}).get("num"), set()).add(record["status"])
    invalid = {path.relative_to(sweep_dir).parts[0] for path, _ in problems}
    done = [{"num": num, "status": "diverged" if "diverged" in seen else "ok"} for num, seen in statuses.items()
            if isinstance(num, int) and seen <= set(COMPLETE) and str(num) not in invalid]
    try:
        with atomic_path(sweep_dir / PROGRESS_FILE) as tmp:
            tmp.write_text("".join(json.dumps(entry) + "\n" for entry in done))
    except OSError as err:
        log.warning("progress not recorded: %s", err.strerror or err)


def _swept_keys(config: DictConfig) -> tuple[str, ...]:
    """The keys a sweep's command line gives several values (`task._target_=a,b`)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    given = OmegaConf.to_container(config.hydra.overrides.task, resolve=False)
    try:
        parsed = OverridesParser.create().parse_overrides(given)
    except Exception:  # noqa: BLE001 - Hydra has said so already
        return ()
    return tuple(o.key_or_group for o in parsed if o.is_sweep_override())


class SweepCallback(Callback):
    def _start(self, config: DictConfig, directory_key: str, multirun: bool) -> Path:
        """Checks, then the lock: nothing is written before a command is known to be good."""
        try:
            check_startup(config, _swept_keys(config) if multirun else ())
        except ConfigError as err:
            _fail(f"error: {err}")
        directory = Path(OmegaConf.select(config, directory_key))
        if config.resume:
            check_resume_dir(directory, multirun)
            _HELD.append(lock(directory))
            if multirun:
                old, new = read_plan(directory), plan_jobs(config)
                if old is not None and new is not None and (why := plan_difference(
                        old, new, _base(config), config.vectorize.max_points)):
                    _fail(f"error: resume: {why}; resume with the sweep's own overrides (see "
                          f"{directory / 'multirun.yaml'}), or start a new sweep")
            for path in mark_crashed(directory):
                print(f"crashed earlier (no result; resume runs it again): {path}", flush=True)
        else:
            claim(directory)
            _HELD.append(lock(directory))
        ACTIVE_DIR.append(str(directory))
        return directory

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._start(config, "hydra.run.dir", multirun=False)
        given = OmegaConf.to_container(config.hydra.overrides.task, resolve=False)
        _warn_duplicates([], _vectorized_repeats({"num": None, "overrides": given}, config))

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        finish_writing()  # a vectorized run's W&B copies, into its records
        release()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = self._start(config, "hydra.sweep.dir", multirun=True)
        (sweep_dir / WANDB_OFFLINE_FLAG).unlink(missing_ok=True)  # a resume tries W&B online again
        jobs = plan_jobs(config)
        if config.resume and (why := plan_problem(sweep_dir)):
            print(f"warning: {why}; this resume writes the plan anew from its own overrides", flush=True)
        if not (config.resume and read_plan(sweep_dir) is not None):  # a resume keeps the sweep's plan
            plan = {"planned_jobs": len(jobs) if jobs is not None else None, "jobs": jobs, "base": _base(config),
                    "vectorize_max_points": config.vectorize.max_points}
            try:
                write_json_atomic(sweep_dir / SWEEP_FILE, plan)
            except OSError as err:
                _fail(f"error: results_dir: cannot write {sweep_dir / SWEEP_FILE}: {err.strerror or err}")
        if config.resume:
            _restart_progress(sweep_dir)
        total = len(jobs) if jobs is not None else None
        print(f"sweep: {total if total is not None else '?'} jobs -> {sweep_dir}", flush=True)
        if jobs is not None:
            _warn_duplicates(duplicates(_points(jobs)), [r for job in jobs for r in _vectorized_repeats(job, config)])

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        hc = config.hydra
        if str(hc.mode) != "RunMode.MULTIRUN" or following_task():
            return  # a Slurm task after the first of its step: task 0 reports the job
        sweep_dir = Path(hc.sweep.dir)
        job_records = read_records(Path(hc.runtime.output_dir))  # one, or one per vectorized point
        statuses = {r.get("status") for r in job_records}
        status = next((s for s in ("failed", "crashed", "skipped", "diverged", "ok") if s in statuses), "failed")
        # One appended line per job (atomic for small writes, also from parallel workers):
        # progress costs O(jobs) per job, never a re-read of every record.
        try:
            with open(sweep_dir / PROGRESS_FILE, "a") as f:
                f.write(json.dumps({"num": hc.job.num, "status": status}) + "\n")
            lines = (sweep_dir / PROGRESS_FILE).read_text().splitlines()
        except OSError as err:
            log.warning("progress not recorded: %s", err.strerror or err)
            return
        latest = {}
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut short by a full disk
            latest[entry["num"]] = entry["status"]
        c = counts([{"status": s} for s in latest.values()])
        total = planned_count(read_plan(sweep_dir))
        left = f", {total - len(latest)} left" if total is not None else ""
        print(f"sweep: {len(latest)}/{total or '?'} done ({c['ok']} ok, {c['diverged']} diverged, {c['failed']} failed, "
              f"{c['skipped']} skipped{left})", flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        finish_writing()  # the W&B copies still being written (harness.jobs.tracking.log_records), into the records
        sweep_dir = Path(config.hydra.sweep.dir)
        mark_crashed(sweep_dir)  # every job has ended: a marker left is a job that died
        records = read_records(sweep_dir)
        plan = read_plan(sweep_dir)
        missing = missing_runs(plan, records)
        print("\n".join(summary_lines(records, planned_count(plan), missing, sweep_dir)), flush=True)
        c = counts(records)
        SWEEP_EXIT.append(1 if c["failed"] or c["crashed"] or missing else 0)
        SWEEP_MISSING.append(len(missing))
        # The lock is held until the process ends (harness.cli releases it): the report, written
        # next by harness.analysis.report_callback, is part of this command.

