"""The Hydra entry point: one job = resolve its config once, run, write the local record, log to W&B.

The path of one run: Hydra's config -> `harness.jobs.job.start` (the typed spec, the W&B settings,
the job's identity, its points) -> `harness.core.run.execute` (plain measurements) ->
`harness.jobs.record` (the record) -> `harness.jobs.store` (result.json) and `harness.jobs.tracking` (W&B).

A job never raises for a run-time problem: whatever happens is written to its
record (status ok / diverged / failed / skipped) so a multirun always goes on.
Before it trains, a job writes a `running` marker in place of its record, so a
job killed outright leaves a trace (shown as `crashed`, rerun by resume).
The sweep's exit code and summary come from `harness.jobs.callbacks`.
"""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from harness.core.checks import ConfigError
from harness.core.config import Config, WandbConfig, register
from harness.jobs import record
from harness.jobs.callbacks import ACTIVE_DIR
from harness.jobs.compose import CONF_DIR
from harness.jobs.console import run_lines
from harness.jobs.job import Job, Point, start
from harness.jobs.lifetime import raised_by_code, watch_command
from harness.jobs.processes import across_processes, following_task, run_joined, slurm_step
from harness.jobs.store import RECORD_NAME, completed, read_record, write_record
from harness.jobs.sweep_compose import compose_once_per_choice
from harness.jobs.tracking import LiveCurves, WandbSink, log_record, log_records, start_writers, wandb_copy_complete

log = logging.getLogger("harness")
register()
W_AND_B_NOTE_LOST = ("the record written before W&B stands, without its note of the W&B copy (resume logs that "
                     "copy again and notes it)")


def _hydra_files_may_fail() -> None:
    """Hydra saves each job's config (.hydra/*.yaml) before the job runs, and a full disk there would end the
    whole sweep in a traceback: a file it cannot write is one line instead, and the job runs on (its record
    holds its config). Done when this module is imported: in the command's process and in every process a
    launcher runs jobs in (joblib, submitit), which imports it to call `main`. The job's log file on a full
    disk: lines that do not fit are dropped (the console has them), not each one a logging traceback."""
    logging.raiseExceptions = False
    from hydra.core import utils

    save = utils._save_config

    def save_or_say(cfg, filename: str, output_dir: Path) -> None:
        try:
            save(cfg, filename, output_dir)
        except OSError as err:
            Path(output_dir, filename).unlink(missing_ok=True)
            print(f"error: cannot write {Path(output_dir, filename)}: {err.strerror or err}; Hydra's copy of the "
                  "job's config is not saved (the job runs, and its record holds its config)", file=sys.stderr,
                  flush=True)

    utils._save_config = save_or_say


_hydra_files_may_fail()
compose_once_per_choice()


def _outcomes(job: Job, live: LiveCurves | None = None, only: set[int] | None = None
              ) -> list[tuple[Point, dict[str, Any]]]:
    """(run, result) per run of this job: one, or one per vectorized point (those in `only`).

    Points that share a compiled program train as one vmapped program (harness.core.run.shared_programs);
    a point that cannot, or whose group's programs turn out to differ, trains alone, and a group too large
    for the memory left trains as two halves. A group that fails trains each of its points alone: a point
    whose own task or run raises fails alone, as it would job by job, and the others' records stand.
    """
    if not isinstance(job.spec, Config):
        raise job.spec
    # JAX is imported only once the config is valid: bad input is answered in about a second.
    from harness.core.devices import select
    from harness.core.environment import environment
    from harness.core.memory import InsufficientMemory
    from harness.core.run import ProgramsDiffer, execute, execute_vectorized, shared_programs

    step = slurm_step()
    if step is not None:  # task 0 of a Slurm step of several tasks: the run's processes are the step's tasks
        return [(job.points(only)[0], run_joined(job.spec, step))]
    if job.spec.distributed.processes > 1:  # one run across processes it spawns (harness/jobs/processes.py)
        return [(job.points(only)[0], across_processes(job.spec, job.out_dir))]
    devices = select(job.spec.device)
    env = {"environment": environment(devices[0])}
    runs = job.points(only)
    if runs[0].index is None:
        return [(runs[0], {**env, **execute(job.spec, devices, on_chunk=live)})]
    results = {run.index: record.failed(run.spec) for run in runs if not isinstance(run.spec, Config)}
    trainable = [(run.index, run.spec) for run in runs if isinstance(run.spec, Config)]

    def train(members: list[tuple[int, Config]]) -> None:
        if len(members) > 1:
            try:
                results.update(zip([i for i, _ in members], execute_vectorized([p for _, p in members], devices)))
                return
            except ProgramsDiffer:
                pass  # each trains alone, below
            except InsufficientMemory:  # K points do not fit: two groups of K/2, each checked again
                half = len(members) // 2
                train(members[:half])
                train(members[half:])
                return
            except (Exception, SystemExit):  # noqa: BLE001 - one point's task, build or run may have raised:
                pass  # each trains alone, below, so each record is what it would be job by job
        for i, point in members:
            try:
                results[i] = execute(point, devices)
            except (Exception, SystemExit) as err:  # noqa: BLE001 - this point's record; the job's others go on
                results[i] = record.failed(err)

    for group in shared_programs([point for _, point in trainable]):
        train([trainable[g] for g in group])
    return [(run, {**env, **results[run.index]}) for run in runs]


def run_job(job: Job, only: set[int] | None = None) -> list[dict[str, Any]]:
    """Runs one job (one run, or every vectorized point, or those in `only`) and writes a record per run."""
    marker_path = job.out_dir / RECORD_NAME
    marker = record.running(job.info, job.config, job.started)
    write_record(marker_path, marker, lost="the job runs without its `running` marker (killed, it would leave no "
                                           "trace)")  # a job killed from here on leaves this trace
    live, logging_on = None, job.wandb is not None and job.wandb.mode != "disabled"
    if isinstance(job.spec, Config) and logging_on:
        if (job.spec.train.log_every or job.spec.train.eval_every) and not job.vectorized:
            live = LiveCurves(WandbSink(job.wandb, job.offline_flag), marker, job.out_dir)
        else:
            start_writers(len(only) if only is not None else job.runs)
    try:
        outcomes = _outcomes(job, live, only)
    except (Exception, SystemExit) as err:  # noqa: BLE001 - any failure becomes a record, never a lost sweep;
        # also a sys.exit() in a user's own task or model: that job's failed record, and the sweep goes on
        outcomes = [(Point(None, err, job.config, job.info), record.failed(err))]
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM (harness.cli raises it as a KeyboardInterrupt)
        if not raised_by_code(stop):
            write_record(marker_path, record.crashed(marker, type(stop).__name__, str(stop) or
                                                     "stopped by Ctrl-C before it finished; resume reruns it"))
            raise
        outcomes = [(Point(None, stop, job.config, job.info), record.failed(stop))]  # the run's own code raised it
    records, to_log = [], []  # every record is written before W&B is touched
    for run, result in outcomes:
        finished = record.finished(run.info, run.config, job.config, job.started, result)
        record_dir = Path(run.info["output_dir"])
        if not logging_on:
            finished["wandb"] = log_record(job.wandb, finished, record_dir)  # says so at once: one write
        path = record_dir / RECORD_NAME
        if not write_record(path, finished, lost=f"this job's {finished['status']} result is not saved; trying a "
                                                 "small failed record in its place"):
            finished = record.unsaved(finished)
            if write_record(path, finished, lost="no record of this job is saved (the sweep lists it; free some "
                                                 "space, then resume the sweep)"):
                records.append(finished)  # else its marker, if written, shows it crashed; the sweep lists it
            continue
        records.append(finished)
        if logging_on:
            to_log.append((finished, record_dir))

    def written(finished: dict[str, Any], record_dir: Path, info: dict[str, Any] | None) -> None:
        finished["wandb"] = info  # the record above stands; resume redoes a W&B copy this note does not reach
        write_record(record_dir / RECORD_NAME, finished, lost=W_AND_B_NOTE_LOST)

    if live is not None and [record_dir for _, record_dir in to_log] == [job.out_dir]:
        written(*to_log[0], log_record(job.wandb, to_log[0][0], job.out_dir, job.offline_flag, live))
    else:
        # In the sweep's own process (the basic launcher), many W&B runs are written while the next jobs
        # train: the sweep's end waits for them (harness.jobs.callbacks); a job of its own process waits here.
        log_records(job.wandb, to_log, job.offline_flag, written, wait=not ACTIVE_DIR)
    if all(run.index is not None for run, _ in outcomes):
        marker_path.unlink(missing_ok=True)  # vectorized: the points' records are in <job>/<point>/
    return records


def redo_wandb_copy(settings: WandbConfig | None, path: Path, finished: dict[str, Any],
                    offline_flag: Path | None) -> bool:
    """Logs a completed record to W&B again when its copy there is missing or incomplete; True if it did.

    A kill while W&B was logging leaves an `ok` record with no (or a cut-off, or an empty but
    finished) W&B run: the record holds the config, history and summary, so the copy is made from it.
    Every earlier local copy of the record's run is removed first, so `wandb sync` uploads one run.
    """
    if settings is None or settings.mode == "disabled" or wandb_copy_complete(finished.get("wandb")):
        return False
    _remove_wandb_copies(path.parent / "wandb")
    finished["wandb"] = log_record(settings, finished, path.parent, offline_flag)
    write_record(path, finished, lost=W_AND_B_NOTE_LOST)
    return True


def _remove_wandb_copies(wandb_dir: Path) -> None:
    """Removes the local W&B runs in a record's `wandb` dir: the record they copied is being replaced or logged
    again, and `wandb sync` should upload one run per record."""
    for run_dir in sorted(wandb_dir.glob("*run-*")):
        if run_dir.name.startswith(("offline-run-", "run-")) and run_dir.is_dir() and not run_dir.is_symlink():
            shutil.rmtree(run_dir, ignore_errors=True)


def _previous(out_dir: Path) -> dict[str, Any] | None:
    """The record a resumed job replaces (a dead job's marker read as `crashed`), or None."""
    previous, _ = read_record(out_dir / RECORD_NAME)
    if previous is not None and previous["status"] == record.RUNNING:
        previous = record.crashed(previous)
    return previous


def _resume(job: Job) -> set[int] | None:
    """What a resumed job runs: None for all of it, the indexes of a vectorized job's points without a completed
    record, or the empty set when it has nothing left to run. Says what it skips and why it runs."""
    out_dir = job.out_dir
    try:  # a config that does not resolve has no completed record: it runs, and fails with that in its record
        done, problems = completed(out_dir, job.config) if job.resolved else ([], [])
    except ConfigError as err:  # a record of another config in its dir: nothing of this sweep may run into it
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(1)
    expected = job.runs
    for path, why in problems:
        print(f"record does not validate, run again by resume: {path} ({why})", flush=True)
    for path, done_record in done:
        print(f"{done_record['status']} (already recorded, skipped by resume): {path}", flush=True)
        if redo_wandb_copy(job.wandb, path, done_record, job.offline_flag):
            print(f"  W&B copy was missing or incomplete, logged again from the record: "
                  f"{(done_record.get('wandb') or {}).get('dir') or (done_record.get('wandb') or {}).get('error')}",
                  flush=True)
    only = None
    if job.vectorized:
        only = set(range(expected)) - {int(path.parent.name) for path, _ in done if path.parent.parent == out_dir
                                       and path.parent.name.isdigit()}
        if not only:
            (out_dir / RECORD_NAME).unlink(missing_ok=True)  # a vectorized job's leftover marker
            return only
    elif done:
        return set()
    previous = _previous(out_dir) or {}
    if previous.get("status") in ("crashed", "failed", "skipped"):
        print(f"{previous['status']} before, run again by resume: {out_dir / RECORD_NAME}", flush=True)
        if isinstance(previous.get("error"), dict) and previous["error"].get("out_of_memory"):
            print("  it ran out of memory last time and needs as much again: it will be killed again unless "
                  "it gets more memory (free some, or hydra.launcher.mem_gb under Slurm) or needs less "
                  "(model.width, task.n_train, train.batch_size)", flush=True)
    # The rerun's records replace the old: so do their W&B runs (a completed point's stay).
    rerun = [out_dir / "wandb", *(out_dir / str(i) / "wandb" for i in sorted(only or ()))]
    for wandb_dir in rerun if job.vectorized else out_dir.rglob("wandb"):
        _remove_wandb_copies(wandb_dir)
    if job.vectorized:
        if done:
            print(f"resume runs {len(only)} of this job's {expected} points again: {sorted(only)}", flush=True)
        # A vectorized job writes one record per point, in <job>/<point>/; a record in <job>/ itself
        # is the job's earlier end (failed before its points, or crashed: harness/jobs/slurm.py). The
        # rerun replaces it, so it must not stay behind to be counted with the new ones.
        (out_dir / RECORD_NAME).unlink(missing_ok=True)
    return only


def _follows(job: Job) -> bool:
    """Whether this process is a task after the first of a Slurm step of several tasks; if so it has trained its
    share of the run. Task 0 alone writes the job's marker, record and W&B run (its result is every task's); this
    one writes nothing and never fails the Slurm job: submitit would stop the sweep on its error."""
    if not following_task():
        return False
    step = slurm_step()
    if isinstance(job.spec, Config) and not (job.config.get("resume") and _done_before(job)):
        try:
            run_joined(job.spec, step)
        except (Exception, SystemExit) as err:  # noqa: BLE001 - task 0's record says what went wrong
            log.warning("task %d of the run: %s (the record, from task 0, says how the run ended)",
                        step.process_id, record.error_line(record.failed(err)["error"]))
    return True


def _done_before(job: Job) -> bool:
    """Whether resume finds this job's record completed (task 0 then skips it, and joins no one)."""
    try:
        done, _ = completed(job.out_dir, job.config)
    except ConfigError:
        return True  # task 0 refuses the dir
    return bool(done) and not job.vectorized


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> None:
    watch_command()  # in a launcher's worker process (joblib): it ends when the command does
    hc = HydraConfig.get()
    single = hc.mode != RunMode.MULTIRUN
    job = start(cfg, hc, multirun=not single)
    if _follows(job):
        return
    only = _resume(job) if job.config.get("resume") else None  # a vectorized job's points to run, else all
    if only is not None and not only:
        return  # every run of the job has its completed record
    records = run_job(job, only)
    for finished in records:
        if single:
            print("\n".join(run_lines(finished)), flush=True)
        print(f"{finished['status']}: {Path(finished['job']['output_dir']) / RECORD_NAME}", flush=True)
        if (finished.get("wandb") or {}).get("dir"):
            print(f"  W&B ({finished['wandb']['mode']}): {Path(finished['wandb']['dir']).parent}", flush=True)
        if finished.get("error"):
            label = "reason" if finished["status"] == "skipped" else "error"
            print(f"{label}: {record.error_line(finished['error'])}", file=sys.stderr, flush=True)
    if single and (not records or any(r["status"] in ("failed", "skipped", "crashed") for r in records)):
        sys.exit(1)  # no record at all: a full disk, said above
