"""Where a finished run's record goes: the local JSON file (ground truth) and W&B (an observer).

The record is written atomically first; `WandbSink` runs after it, and whatever it
raises is reported in the record (harness/app.py), never costing the local result.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from harness.config import WandbConfig

log = logging.getLogger(__name__)
RECORD_NAME = "result.json"
STATUSES = ("ok", "diverged", "failed", "skipped", "crashed")  # crashed: ended by Slurm, no result (harness/slurm.py)


def finite_or_null(obj: Any) -> Any:
    """NaN and infinities as None: records are strict JSON (jq, browsers); `divergence` says where they began."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_null(v) for v in obj]
    return obj


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write, fsync, rename: a reader sees the old file, the whole new one, or none, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(finite_or_null(obj), f, indent=1, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def axes(record: dict[str, Any]) -> dict[str, Any]:
    """The swept axes under short flat names, for W&B dashboards and report columns."""
    cfg = record.get("config", {})

    def get(*keys):
        node = cfg
        for key in keys:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        return None if node == {} else node

    return {
        "experiment": get("name"),
        "model": get("model", "name"),
        "freeze": get("freeze", "name"),
        "method": get("method", "name"),
        "optimizer": get("optimizer", "name"),
        "lr": get("optimizer", "lr"),
        "weight_decay": get("optimizer", "weight_decay"),
        "steps": get("train", "steps"),
        "seed": get("task", "seed"),
        "device": f"{get('device', 'platform')}:{get('device', 'index')}",
    }


def summary(record: dict[str, Any]) -> dict[str, Any]:
    """Final numbers under flat slash-separated names (W&B summary keys)."""
    out: dict[str, Any] = {"status": record["status"]}
    m = record.get("metrics") or {}
    for split in ("train", "test"):
        for name, value in (m.get(split) or {}).items():
            out[f"{split}/{name}"] = value
    for name in ("slope", "intercept"):
        if name in m:
            out[f"final/{name}"] = m[name]
    for name in ("l2", "max_abs", "unchanged"):
        if record.get("drift"):
            out[f"drift/{name}"] = record["drift"][name]
    if record.get("optimizer_state"):
        out["optimizer_state/bytes"] = record["optimizer_state"]["bytes"]
    if record.get("parameters"):
        out["parameters/trainable"] = record["parameters"]["trainable"]
        out["parameters/frozen"] = record["parameters"]["frozen"]
    t = record.get("timing") or {}
    if t:
        out["time/compile_s"] = t["compile_s"]
        out["time/compile_source"] = t["compile_source"]  # a cache hit's compile_s is no compile time
        out["time/run_s_per_call_median"] = t["run_s_per_call"]["median"]
        out["time/run_s_per_step_median"] = t["run_s_per_step"]["median"]
        if "in_loop_s_per_step" in t:
            out["time/in_loop_s_per_step"] = t["in_loop_s_per_step"]
        memory = t.get("memory") or {}
        out["memory/peak_bytes"] = memory.get("peak_memory_in_bytes")
        out["memory/temp_bytes"] = memory.get("temp_size_in_bytes")
    if record.get("batch"):
        out["batch/regime"] = record["batch"]["regime"]
        out["batch/size"] = record["batch"]["size"]
    p = record.get("plausibility") or {}
    if p:
        out["perf/achieved_flops_per_s"] = p.get("achieved_flops_per_s")
        out["perf/peak_fraction"] = p.get("peak_fraction")
        if p.get("warning"):
            out["warning"] = p["warning"]
    if record.get("error"):
        out["error"] = f"{record['error']['type']}: {record['error']['message']}"
    return out


def quiet_settings():
    """W&B settings for many short runs: no console capture, system stats, requirements or git scan."""
    import wandb

    return wandb.Settings(console="off", silent=True, x_disable_stats=True, x_save_requirements=False,
                          disable_git=True)


class WandbSink:
    """One W&B run per job, written after the local record; offline by default."""

    def __init__(self, cfg: WandbConfig):
        self.cfg = cfg

    def __call__(self, record: dict[str, Any], out_dir: Path) -> dict[str, Any] | None:
        if self.cfg.mode == "disabled":
            return {"mode": "disabled"}
        import wandb  # imported here: a disabled tracker costs nothing

        run = wandb.init(
            project=self.cfg.project,
            entity=self.cfg.entity,
            group=self.cfg.group or record["config"].get("name"),
            job_type=self.cfg.job_type,
            tags=list(self.cfg.tags),
            name=record.get("job", {}).get("name"),
            dir=str(out_dir),
            mode=self.cfg.mode,
            config={**axes(record), **record["config"]},  # group names stay the nested config
            settings=quiet_settings(),
            reinit="finish_previous",
        )
        try:
            history = record.get("history") or {}
            for i, step in enumerate(history.get("step", [])):
                run.log({"train/mse": history["train_mse"][i], "train/mae": history["train_mae"][i]}, step=step)
            run.summary.update(summary(record))
            info = {"mode": self.cfg.mode, "id": run.id, "dir": run.dir}
            if self.cfg.mode == "online":
                info["url"] = run.url
        finally:
            run.finish(exit_code=1 if record["status"] in ("failed", "crashed") else 0)
        return info
