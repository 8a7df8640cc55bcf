"""Hydra callbacks: sweep progress as jobs end, and a summary plus exit code when the sweep ends.

Jobs never raise (every outcome is a record), so Hydra alone would exit 0 after a
sweep with failures. `on_multirun_end` reads the records, prints every failed,
skipped and crashed job with its overrides, logs the sweep report to W&B, and exits 1
when a job failed or crashed (ended by Slurm without a result, recorded by harness/slurm.py).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from harness.tracking import STATUSES

log = logging.getLogger("harness")
SWEEP_FILE = "sweep.json"
PROGRESS_FILE = "progress.jsonl"
CLAIM_FILE = ".harness-claim"


def planned_jobs(config: DictConfig) -> int | None:
    """How many jobs the basic sweeper will launch: the product of the swept values, or None."""
    try:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser

        params = config.hydra.sweeper.get("params")
        params = OmegaConf.to_container(params) if params else {}
        args = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
        parsed = OverridesParser.create().parse_overrides(args)
        return sum(len(batch) for batch in BasicSweeper.split_arguments(parsed, None))
    except Exception:  # noqa: BLE001 - another sweeper: progress shows no total
        return None


def _planned(sweep_dir: Path) -> int | None:
    try:
        return json.loads((sweep_dir / SWEEP_FILE).read_text())["planned_jobs"]
    except (OSError, ValueError, KeyError):
        return None


def read_records(directory: Path) -> list[dict[str, Any]]:
    from harness import records as records_lib  # pandas: imported once a job has ended, not at start-up

    records, problems = records_lib.read_records(directory)
    for path, problem in problems:
        log.warning("unreadable record skipped: %s (%s)", path, problem)
    return [record for _, record in records]


def counts(records: list[dict[str, Any]]) -> dict[str, int]:
    return {status: sum(r["status"] == status for r in records) for status in STATUSES}


def summary_lines(records: list[dict[str, Any]], total: int | None) -> list[str]:
    c = counts(records)
    jobs = f"{total} jobs, " if total is not None else ""
    lines = [f"sweep finished: {jobs}{len(records)} runs recorded: " + ", ".join(f"{n} {s}" for s, n in c.items())]
    for r in records:
        if r.get("status") in ("failed", "skipped", "crashed"):
            error = r.get("error") or {}
            overrides = " ".join(r.get("job", {}).get("overrides", []))
            lines.append(f"  {r['status']} #{r.get('job', {}).get('num')}: {overrides}\n"
                         f"      {error.get('type')}: {error.get('message')}")
    return lines


def claim(directory: Path, resume: bool) -> None:
    """Makes `directory` this run's or sweep's own, before any job runs; exits with one clear line if it can't.

    Two commands started in the same microsecond would otherwise write into one dir.
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / CLAIM_FILE, "a" if resume else "x"):
            pass
    except FileExistsError:
        print(f"error: {directory} is already used by another run; start again, or pass resume={directory}",
              file=sys.stderr, flush=True)
        sys.exit(1)
    except OSError as err:
        print(f"error: results_dir: cannot write results to {directory}: {err.strerror or err}; "
              "set results_dir=<a writable directory>", file=sys.stderr, flush=True)
        sys.exit(1)


class SweepCallback(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        claim(Path(config.hydra.run.dir), bool(config.resume))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        claim(sweep_dir, bool(config.resume))
        total = planned_jobs(config)
        (sweep_dir / SWEEP_FILE).write_text(json.dumps({"planned_jobs": total}))
        print(f"sweep: {total if total is not None else '?'} jobs -> {sweep_dir}", flush=True)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        hc = config.hydra
        if str(hc.mode) != "RunMode.MULTIRUN":
            return
        sweep_dir = Path(hc.sweep.dir)
        job_records = read_records(Path(hc.runtime.output_dir))  # one, or one per vectorized point
        statuses = {r.get("status") for r in job_records}
        status = next((s for s in ("failed", "skipped", "diverged", "ok") if s in statuses), "failed")
        # One appended line per job (atomic for small writes, also from parallel workers):
        # progress costs O(jobs) per job, never a re-read of every record.
        with open(sweep_dir / PROGRESS_FILE, "a") as f:
            f.write(json.dumps({"num": hc.job.num, "status": status}) + "\n")
        latest = {}
        for line in (sweep_dir / PROGRESS_FILE).read_text().splitlines():
            entry = json.loads(line)
            latest[entry["num"]] = entry["status"]
        c = counts([{"status": s} for s in latest.values()])
        total = _planned(sweep_dir)
        left = f", {total - len(latest)} left" if total is not None else ""
        print(f"sweep: {len(latest)}/{total or '?'} done ({c['ok']} ok, {c['diverged']} diverged, {c['failed']} failed, "
              f"{c['skipped']} skipped{left})", flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        records = read_records(sweep_dir)
        print("\n".join(summary_lines(records, _planned(sweep_dir))), flush=True)
        if config.report:
            self._report(config, sweep_dir)
        else:
            print(f"report: harness report {sweep_dir}", flush=True)
        if counts(records)["failed"] or counts(records)["crashed"]:
            sys.exit(1)

    @staticmethod
    def _report(config: DictConfig, sweep_dir: Path) -> None:
        """report.md, figures and Parquet in the sweep dir; the same as one W&B run when W&B is on."""
        try:
            from harness import report

            df, _ = report.load_records(sweep_dir)
            figures = report.write_report(sweep_dir, df)
            print(f"report: {sweep_dir / 'report.md'}", flush=True)
            wandb = config.tracker.wandb
            if wandb.mode != "disabled":
                error = report.log_report_to_wandb(sweep_dir, df, figures, mode=wandb.mode, project=wandb.project,
                                                   group=wandb.group or config.name, entity=wandb.entity)
                if error:
                    log.warning("W&B report run not logged: %s", error)
        except Exception as err:  # noqa: BLE001 - the records are the result; the report is a view
            log.warning("sweep report failed: %s: %s", type(err).__name__, err)
