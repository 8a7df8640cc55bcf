"""The Hydra entry point: one job = validate, run, write the local record, log to W&B.

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
import time
import traceback
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from harness.core.checks import ConfigError, DeviceUnavailable
from harness.core.components import with_custom_options
from harness.core.config import Config, register, resolved, resolved_or_null, to_spec, with_traced
from harness.core.fields import config_hash
from harness.jobs.callbacks import ACTIVE_DIR
from harness.jobs.console import run_lines
from harness.jobs.grouping import POINTS, point_overrides
from harness.jobs.slurm import slurm_job
from harness.jobs.store import (
    RECORD_NAME,
    RUNNING,
    SCHEMA_VERSION,
    completed,
    crashed,
    point_count,
    read_record,
    running_marker,
    write_record,
)
from harness.jobs.tracking import (
    WANDB_OFFLINE_FLAG,
    LiveCurves,
    log_record,
    log_records,
    sink_for,
    start_writers,
    wandb_copy_complete,
)

# An installed wheel carries the configs as harness/conf; a source checkout (editable install) has them in conf/.
_PACKAGE = Path(__file__).resolve().parents[1]  # harness/
CONF_DIR = _PACKAGE / "conf" if (_PACKAGE / "conf" / "config.yaml").is_file() else _PACKAGE.parent / "conf"
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


def spec_from_overrides(*overrides: str) -> Config:
    """A validated Config composed from conf/ as the command line would: for tests, benchmarks, notebooks.

    >>> spec_from_overrides("method=stop_gradient", "optimizer.lr=0.01").optimizer.lr
    0.01
    """
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return to_spec(compose("config", overrides=with_custom_options(list(overrides))))


def job_info() -> dict[str, Any]:
    hc = HydraConfig.get()
    return {
        "name": hc.job.name if hc.mode != RunMode.MULTIRUN else f"{hc.job.name}-{hc.job.num}",
        "num": hc.job.get("num"),
        "overrides": OmegaConf.to_container(hc.overrides.task, resolve=False),
        "override_dirname": hc.job.override_dirname,
        "output_dir": hc.runtime.output_dir,
        # the sweep's (or the single run's) directory: its name is the W&B group's timestamp
        "sweep_dir": str(Path(hc.runtime.output_dir).parent) if hc.mode == RunMode.MULTIRUN else hc.runtime.output_dir,
        "slurm": slurm_job(),  # None outside Slurm
    }


def _point_runs(spec: Config, config: dict[str, Any], job: dict[str, Any], only: set[int] | None):
    """(index, its Config or the ConfigError of its values, config, job) of each point of a vectorized job:
    its place, and the config and overrides it has as a single run (what compare and reports match on)."""
    from harness.core.run import points

    if spec.vectorize.enabled:  # every (lr, seed) pair
        point_specs = points(spec)
        given = [({"optimizer.lr": p.optimizer.lr, "task.seed": p.task.seed},
                  [*job["overrides"], f"optimizer.lr={p.optimizer.lr}", f"task.seed={p.task.seed}"])
                 for p in point_specs]
    else:  # the points the vectorized sweeper grouped, each with its own overrides
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parser, base = OverridesParser.create(), [o for o in job["overrides"] if not o.startswith(f"{POINTS}=")]
        given = [({o.key_or_group: o.value() for o in parser.parse_overrides(text.split())},
                  point_overrides(base, text)) for text in spec.vectorize.points]
    runs = []
    for i, (values, overrides) in enumerate(given):
        if only is not None and i not in only:
            continue
        try:
            point = with_traced(spec, values)
        except ConfigError as err:
            point = err
        # The job's config with the point's own values: new dicts where they differ, the rest shared (read only).
        point_config = {**config, "vectorize": {**config["vectorize"], "lr": [], "seed": [], "points": []}}
        for key in values:
            section, name = key.split(".")
            point_config[section] = {**point_config[section], name: getattr(getattr(point, section), name)
                                     if isinstance(point, Config) else values[key]}
        runs.append((i, point, point_config, {**job, "name": f"{job['name']}-{i}",
                                              "output_dir": str(Path(job["output_dir"]) / str(i)),
                                              "overrides": overrides,
                                              "vectorized": {"point": i, "points": len(given)}}))
    return runs


def _outcomes(cfg: DictConfig, config: dict[str, Any], job: dict[str, Any], out_dir: Path,
              live: LiveCurves | None = None, only: set[int] | None = None):
    """(record dir, config, job, result) per run of this job: one, or one per vectorized point (those in `only`).

    Points that share a compiled program train as one vmapped program (harness.core.run.shared_programs);
    a point that cannot, or whose group's programs turn out to differ, trains alone, and a group too large
    for the memory left trains as two halves. A failure is the record of the points it concerns: never of a
    point that finished.
    """
    spec = to_spec(cfg)
    # JAX is imported only once the config is valid: bad input is answered in about a second.
    from harness.core.devices import select
    from harness.core.environment import environment
    from harness.core.memory import InsufficientMemory
    from harness.core.run import ProgramsDiffer, execute, execute_vectorized, shared_programs

    devices = select(spec.device)
    env = {"environment": environment(devices[0])}
    if not (spec.vectorize.enabled or spec.vectorize.points):
        return [(out_dir, config, job, {**env, **execute(spec, devices, on_chunk=live)})]
    runs = _point_runs(spec, config, job, only)
    results = {i: _failure(point) for i, point, *_ in runs if not isinstance(point, Config)}
    trainable = [(i, point) for i, point, *_ in runs if isinstance(point, Config)]

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
            except Exception as err:  # noqa: BLE001 - the group's failure is each of its points' record
                results.update({i: _failure(err) for i, _ in members})
                return
        for i, point in members:
            try:
                results[i] = execute(point, devices)
            except Exception as err:  # noqa: BLE001 - this point's record; the job's other points go on
                results[i] = _failure(err)

    for group in shared_programs([point for _, point in trainable]):
        train([trainable[g] for g in group])
    return [(out_dir / str(i), point_config, point_job, {**env, **results[i]})
            for i, _, point_config, point_job in runs]


def _vectorized(cfg: DictConfig) -> bool:
    """Whether a job trains vectorized points (its records in <job>/<point>/), however many."""
    return bool(cfg.vectorize.lr or cfg.vectorize.seed or cfg.vectorize.points)


def _failure(err: Exception) -> dict[str, Any]:
    """The result of a run that did not finish: skipped (its device is not there) or failed, with why."""
    if isinstance(err, DeviceUnavailable):
        return {"status": "skipped", "error": _error(err)}
    if isinstance(err, ConfigError):
        return {"status": "failed", "error": _error(err)}
    return {"status": "failed", "error": {**_error(err), "traceback": traceback.format_exc(limit=-8)}}


def run_job(cfg: DictConfig, out_dir: Path, job: dict[str, Any], offline_flag: Path | None = None,
            only: set[int] | None = None) -> list[dict[str, Any]]:
    """Runs one job (one run, or every vectorized point, or those in `only`) and writes a record per run."""
    try:
        config, unresolved = resolved(cfg), None
    except ConfigError as err:  # a swept value `${oops}`: this job's failed record, and the sweep goes on
        config, unresolved = resolved_or_null(cfg), err
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    marker_path = out_dir / RECORD_NAME
    marker = running_marker(job, config, config_hash(config), started)
    write_record(marker_path, marker, lost="the job runs without its `running` marker (killed, it would leave no "
                                           "trace)")  # a job killed from here on leaves this trace
    live, sink = None, sink_for(cfg, job, offline_flag)  # None: W&B disabled (or its config is the record's error)
    if unresolved is None and sink is not None:
        if (cfg.train.log_every or cfg.train.eval_every) and not _vectorized(cfg):
            live = LiveCurves(sink, {"status": RUNNING, "job": job, "config": config}, out_dir)
        else:
            start_writers(len(only) if only is not None else point_count(config))
    try:
        if unresolved is not None:
            raise unresolved
        outcomes = _outcomes(cfg, config, job, out_dir, live, only)
    except Exception as err:  # noqa: BLE001 - any failure becomes a record, never a lost sweep
        outcomes = [(out_dir, config, job, _failure(err))]
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM (harness.cli raises it as a KeyboardInterrupt)
        write_record(marker_path, crashed(marker, type(stop).__name__,
                                          str(stop) or "stopped by Ctrl-C before it finished; resume reruns it"))
        raise
    records, to_log = [], []  # every record is written before W&B is touched
    for record_dir, run_config, run_job_info, result in outcomes:
        record = {"schema_version": SCHEMA_VERSION, "status": "failed", "error": None, "job": run_job_info, "config": run_config,
                  "config_hash": config_hash(config), "started": started, **result,
                  "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        if sink is None:
            record["wandb"] = log_record(cfg, record, record_dir)  # says so at once: one write
        path = record_dir / RECORD_NAME
        if not write_record(path, record, lost=f"this job's {record['status']} result is not saved; trying a "
                                               "small failed record in its place"):
            record = {**{k: record[k] for k in ("schema_version", "job", "config", "config_hash", "started",
                                                "finished")},
                      "status": "failed", "error": {"type": "OSError", "message": (
                          f"its {record['status']} record could not be written (see the sweep's output); "
                          "its measurements are lost")}}
            if write_record(path, record, lost="no record of this job is saved (the sweep lists it; free some "
                                               "space, then resume the sweep)"):
                records.append(record)  # else its marker, if written, shows it crashed; the sweep lists it
            continue
        records.append(record)
        if sink is not None:
            to_log.append((record, record_dir))

    def written(record: dict[str, Any], record_dir: Path, info: dict[str, Any] | None) -> None:
        record["wandb"] = info  # the record above stands; resume redoes a W&B copy this note does not reach
        write_record(record_dir / RECORD_NAME, record, lost=W_AND_B_NOTE_LOST)

    if live is not None and [record_dir for _, record_dir in to_log] == [out_dir]:
        written(*to_log[0], log_record(cfg, to_log[0][0], out_dir, offline_flag, live))
    else:
        # In the sweep's own process (the basic launcher), many W&B runs are written while the next jobs
        # train: the sweep's end waits for them (harness.jobs.callbacks); a job of its own process waits here.
        log_records(cfg, to_log, offline_flag, written, wait=not ACTIVE_DIR)
    if all(record_dir != out_dir for record_dir, *_ in outcomes):
        marker_path.unlink(missing_ok=True)  # vectorized: the points' records are in <job>/<point>/
    return records


def _error(err: BaseException) -> dict[str, str]:
    text = str(err).strip()
    return {"type": type(err).__name__, "message": text.splitlines()[0] if text else ""}


def redo_wandb_copy(cfg: DictConfig, path: Path, record: dict[str, Any], offline_flag: Path | None) -> bool:
    """Logs a completed record to W&B again when its copy there is missing or incomplete; True if it did.

    A kill while W&B was logging leaves an `ok` record with no (or a cut-off, or an empty but
    finished) W&B run: the record holds the config, history and summary, so the copy is made from it.
    Every earlier local copy of the record's run is removed first, so `wandb sync` uploads one run.
    """
    if cfg.tracker.wandb.mode == "disabled" or wandb_copy_complete(record.get("wandb")):
        return False
    _remove_wandb_copies(path.parent / "wandb")
    record["wandb"] = log_record(cfg, record, path.parent, offline_flag)
    write_record(path, record, lost=W_AND_B_NOTE_LOST)
    return True


def _remove_wandb_copies(wandb_dir: Path) -> None:
    """Removes the local W&B runs in a record's `wandb` dir: the record they copied is being replaced or logged
    again, and `wandb sync` should upload one run per record."""
    for run_dir in sorted(wandb_dir.glob("*run-*")):
        if run_dir.name.startswith(("offline-run-", "run-")) and run_dir.is_dir() and not run_dir.is_symlink():
            shutil.rmtree(run_dir, ignore_errors=True)


def _previous(out_dir: Path) -> dict[str, Any] | None:
    """The record a resumed job replaces (a dead job's marker read as `crashed`), or None."""
    record, _ = read_record(out_dir / RECORD_NAME)
    if record is not None and record["status"] == RUNNING:
        record = crashed(record)
    return record


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    single = hc.mode != RunMode.MULTIRUN
    offline_flag = None if single else Path(hc.sweep.dir) / WANDB_OFFLINE_FLAG
    only = None  # a vectorized job's points to run: all, or on resume those without a completed record
    if cfg.resume:
        try:
            config = resolved(cfg)
            (done, problems), expected = completed(out_dir, config), point_count(config)
        except ConfigError as err:
            if err.field != "resume":  # its config does not resolve: it runs, and fails with that in its record
                done, problems, expected = [], [], 1
            else:
                print(f"error: {err}", file=sys.stderr, flush=True)
                sys.exit(1)  # also in a multirun: nothing of this sweep should run into another's dir
        for path, why in problems:
            print(f"record does not validate, run again by resume: {path} ({why})", flush=True)
        for path, record in done:
            print(f"{record['status']} (already recorded, skipped by resume): {path}", flush=True)
            if redo_wandb_copy(cfg, path, record, offline_flag):
                print(f"  W&B copy was missing or incomplete, logged again from the record: "
                      f"{(record.get('wandb') or {}).get('dir') or (record.get('wandb') or {}).get('error')}",
                      flush=True)
        vectorized = _vectorized(cfg)
        if vectorized:
            only = set(range(expected)) - {int(path.parent.name) for path, _ in done if path.parent.parent == out_dir
                                           and path.parent.name.isdigit()}
            if not only:
                (out_dir / RECORD_NAME).unlink(missing_ok=True)  # a vectorized job's leftover marker
                return
        elif done:
            return
        previous = _previous(out_dir) or {}
        if previous.get("status") in ("crashed", "failed", "skipped"):
            print(f"{previous['status']} before, run again by resume: {out_dir / RECORD_NAME}", flush=True)
            if isinstance(previous.get("error"), dict) and previous["error"].get("out_of_memory"):
                print("  it ran out of memory last time and needs as much again: it will be killed again unless "
                      "it gets more memory (free some, or hydra.launcher.mem_gb under Slurm) or needs less "
                      "(model.width, task.n_train, train.batch_size)", flush=True)
        # The rerun's records replace the old: so do their W&B runs (a completed point's stay).
        rerun = [out_dir / "wandb", *(out_dir / str(i) / "wandb" for i in sorted(only or ()))]
        for wandb_dir in rerun if vectorized else out_dir.rglob("wandb"):
            _remove_wandb_copies(wandb_dir)
        if vectorized:
            if done:
                print(f"resume runs {len(only)} of this job's {expected} points again: {sorted(only)}", flush=True)
            # A vectorized job writes one record per point, in <job>/<point>/; a record in <job>/ itself
            # is the job's earlier end (failed before its points, or crashed: harness/jobs/slurm.py). The
            # rerun replaces it, so it must not stay behind to be counted with the new ones.
            (out_dir / RECORD_NAME).unlink(missing_ok=True)
    records = run_job(cfg, out_dir, job_info(), offline_flag, only)
    for record in records:
        if single:
            print("\n".join(run_lines(record)), flush=True)
        print(f"{record['status']}: {Path(record['job']['output_dir']) / RECORD_NAME}", flush=True)
        if (record.get("wandb") or {}).get("dir"):
            print(f"  W&B ({record['wandb']['mode']}): {Path(record['wandb']['dir']).parent}", flush=True)
        if record.get("error"):
            label = "reason" if record["status"] == "skipped" else "error"
            print(f"{label}: {record['error']['type']}: {record['error']['message']}", file=sys.stderr, flush=True)
    if single and (not records or any(r["status"] in ("failed", "skipped") for r in records)):
        sys.exit(1)  # no record at all: a full disk, said above
