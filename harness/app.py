"""The Hydra entry point: one job = validate, run, write the local record, log to W&B.

A job never raises for a run-time problem: whatever happens is written to its
record (status ok / diverged / failed / skipped) so a multirun always goes on.
The sweep's exit code and summary come from `harness.callbacks`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from harness.config import ConfigError, DeviceUnavailable, register, to_spec
from harness.tracking import WandbSink, write_json_atomic

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"  # the repo's conf/ (editable install)
log = logging.getLogger("harness")
RECORD_NAME = "result.json"
COMPLETE = ("ok", "diverged")  # what resume does not run again
register()


def job_info() -> dict[str, Any]:
    hc = HydraConfig.get()
    return {
        "name": hc.job.name if hc.mode != RunMode.MULTIRUN else f"{hc.job.name}-{hc.job.num}",
        "num": hc.job.get("num"),
        "overrides": list(hc.overrides.task),
        "override_dirname": hc.job.override_dirname,
        "output_dir": hc.runtime.output_dir,
    }


def run_job(cfg: DictConfig, out_dir: Path, job: dict[str, Any]) -> dict[str, Any]:
    """Runs one job and writes its record; returns the record."""
    config = OmegaConf.to_container(cfg, resolve=True)
    record: dict[str, Any] = {
        "schema_version": 1,
        "status": "failed",
        "error": None,
        "job": job,
        "config": config,
        "config_hash": config_hash(config),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        spec = to_spec(cfg)
        # JAX is imported only once the config is valid: bad input is answered in about a second.
        from harness.devices import select
        from harness.environment import environment
        from harness.run import execute

        devices = select(spec.device)
        record["environment"] = environment(devices[0])
        record.update(execute(spec, devices))
    except DeviceUnavailable as err:
        record.update(status="skipped", error={"type": type(err).__name__, "message": str(err)})
    except ConfigError as err:
        record["error"] = {"type": type(err).__name__, "message": str(err)}
    except Exception as err:  # noqa: BLE001 - any failure becomes a record, never a lost sweep
        message = str(err).strip().splitlines()[0] if str(err).strip() else ""
        record["error"] = {"type": type(err).__name__, "message": message, "traceback": traceback.format_exc(limit=-8)}
    record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    path = out_dir / RECORD_NAME
    write_json_atomic(path, record)  # the ground truth lands before W&B is touched
    record["wandb"] = _log_wandb(cfg, record, out_dir)
    write_json_atomic(path, record)
    return record


def _log_wandb(cfg: DictConfig, record: dict[str, Any], out_dir: Path) -> dict[str, Any] | None:
    try:
        wandb_cfg = OmegaConf.to_object(cfg.tracker.wandb)
    except Exception:  # noqa: BLE001 - a bad tracker config is already the record's error
        return None
    try:
        return WandbSink(wandb_cfg)(record, out_dir)
    except Exception as err:  # noqa: BLE001 - W&B is an observer, never a point of failure
        log.warning("W&B logging failed, the local record is kept: %s: %s", type(err).__name__, err)
        return {"mode": wandb_cfg.mode, "error": f"{type(err).__name__}: {err}"}


def config_hash(config: dict[str, Any]) -> str:
    """Content hash of a resolved config, ignoring `resume` and the tracker (an observer)."""
    content = {k: v for k, v in config.items() if k not in ("resume", "tracker")}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def finished_record(out_dir: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    """The job dir's completed record for this config, if any; a different config's is an error."""
    try:
        record = json.loads((out_dir / RECORD_NAME).read_text())
    except (OSError, ValueError):
        return None
    if record.get("status") not in COMPLETE:
        return None
    if record.get("config_hash") != config_hash(config):
        raise ConfigError("resume", f"{out_dir} holds a completed record of another config; "
                                    "resume a sweep with the same overrides, or start a new one")
    return record


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> None:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    single = HydraConfig.get().mode != RunMode.MULTIRUN
    if cfg.resume:
        try:
            done = finished_record(out_dir, OmegaConf.to_container(cfg, resolve=True))
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            if single:
                sys.exit(1)
            return
        if done:
            print(f"{done['status']} (already recorded, skipped by resume): {out_dir / RECORD_NAME}", flush=True)
            return
    record = run_job(cfg, out_dir, job_info())
    print(f"{record['status']}: {out_dir / RECORD_NAME}", flush=True)
    if (record.get("wandb") or {}).get("dir"):
        print(f"  W&B ({record['wandb']['mode']}): {Path(record['wandb']['dir']).parent}", flush=True)
    if record.get("error"):
        label = "reason" if record["status"] == "skipped" else "error"
        print(f"{label}: {record['error']['type']}: {record['error']['message']}", file=sys.stderr, flush=True)
    if record["status"] in ("failed", "skipped") and single:
        sys.exit(1)
