"""The sweep's report, written when a multirun ends: a Hydra callback of the analysis wing.

conf/config.yaml lists it before `harness.jobs.callbacks.SweepCallback`; Hydra calls
`on_multirun_end` in reverse order, so the sweep's summary (and its crashed jobs) come
first and the report reads the records as they finally are. The jobs wing never imports
this one: the config wires the two together.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from harness.jobs import callbacks
from harness.jobs.store import read_records
from harness.jobs.tracking import sweep_group, with_environment

log = logging.getLogger("harness")


class ReportCallback(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if config.report:
            write(config, sweep_dir)
        else:
            print(f"report: harness report {sweep_dir}", flush=True)


def write(config: DictConfig, sweep_dir: Path) -> None:
    """report.md, figures and Parquet in the sweep dir; the same as one W&B run when W&B is on.

    A report that cannot be written (a full disk) is one line and makes the command exit 1: the
    records stand, and `harness report <sweep dir>` writes the report once there is room.
    """
    # Imported when a sweep ends, not when Hydra makes its callbacks: pandas, scipy and matplotlib would add
    # about 1.2 s to every command's start-up.
    from harness.analysis import report
    from harness.analysis.frames import load_records

    try:
        df, _ = load_records(sweep_dir)
        figures = report.write_report(sweep_dir, df)
    except Exception as err:  # noqa: BLE001 - the records are the result; the report is a view
        reason = f"cannot write {err.filename}: {err.strerror or err}" if isinstance(err, OSError) and err.filename \
            else f"{type(err).__name__}: {err}"
        saved = (f"{callbacks.SWEEP_MISSING[-1]} planned runs have no record (listed above)"
                 if callbacks.SWEEP_MISSING and callbacks.SWEEP_MISSING[-1] else "every record is saved")
        print(f"error: the sweep's report was not written ({reason}); {saved}; no report file is left "
              f"half-written; once fixed, `harness report {sweep_dir}` writes it", file=sys.stderr, flush=True)
        callbacks.SWEEP_EXIT.append(1)
        return
    print(f"report: {sweep_dir / 'report.md'}", flush=True)
    try:
        _headline_and_wandb(config, sweep_dir, df, figures)
    except Exception as err:  # noqa: BLE001 - the report is written; its headline and W&B run are views of it
        log.warning("the report is written, its headline or W&B run not: %s: %s", type(err).__name__, err)


def _headline_and_wandb(config: DictConfig, sweep_dir: Path, df, figures) -> None:
    """The findings' headline on the terminal, and the report as the sweep's one W&B report run when W&B is on."""
    from harness.analysis import report

    print("\n".join(report.headline_lines(df, sweep_dir)), flush=True)
    wandb = with_environment(OmegaConf.to_object(config.tracker.wandb),
                             OmegaConf.to_container(config.hydra.overrides.task, resolve=False))
    if wandb.mode == "disabled":
        return
    if current := report.current_report_run(sweep_dir):
        print(f"W&B report run unchanged (no record changed since it was logged): {current}", flush=True)
        return
    # W&B online not reached by the jobs: the report run goes offline with them, at once.
    records = [record for _, record in read_records(sweep_dir)[0]]
    fell_back = any(isinstance(r.get("wandb"), dict) and r["wandb"].get("fallback") for r in records)
    error = report.log_report_to_wandb(sweep_dir, df, figures, mode="offline" if fell_back else wandb.mode,
                                       project=wandb.project, group=wandb.group or sweep_group(config.name, sweep_dir),
                                       entity=wandb.entity, init_timeout=wandb.init_timeout)
    if error:
        log.warning("W&B report run not logged: %s", error)
