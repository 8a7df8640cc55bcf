"""Where a finished run's record goes: the local JSON file (ground truth) and W&B (an observer).

The record is written atomically first; `WandbSink` runs after it, and whatever it
raises is reported in the record (harness/app.py), never costing the local result.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from harness.config import WandbConfig

log = logging.getLogger(__name__)
RECORD_NAME = "result.json"
STATUSES = ("ok", "diverged", "failed", "skipped")


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


# Override keys that say where or how a run is written, not what it computes: no part of its name or tags.
NOT_SWEPT = ("name", "experiment", "results_dir", "resume", "report", "tracker", "hydra", "vectorize", "train.warmup",
             "train.repeats", "train.measure_dispatch", "train.persistent_cache_dir")
NAMED = ("method", "freeze", "optimizer", "optimizer.lr", "task.seed")  # always in the name, in this order


def short_number(value: Any) -> str:
    """1e-3 -> '1e-3', 0.0015 -> '1.5e-3', 0.05 -> '5e-2', 123 -> '123': short and unambiguous in a run name."""
    if isinstance(value, float) and value and not (1 <= abs(value) < 1000 and value == int(value)):
        mantissa, exponent = f"{value:e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return str(int(value) if isinstance(value, float) else value)


def _swept(record: dict[str, Any], skip: Iterable[str] = NAMED) -> list[tuple[str, str]]:
    """(key, value) of the job's overrides that change what it computes, less the keys in `skip`."""
    out = []
    for override in (record.get("job") or {}).get("overrides") or []:
        key, sep, value = str(override).lstrip("+~").partition("=")
        if sep and key not in skip and not any(key == p or key.startswith(p + ".") or key.startswith(p + "/")
                                                 for p in NOT_SWEPT):
            out.append((key, value))
    return out


def run_name(record: dict[str, Any]) -> str:
    """The run's swept values as its W&B name, e.g. 'diffstate-kernel-adamw-lr1e-3-s123' (+ 'steps500', ...).

    >>> run_name({"config": {"method": {"name": "diffstate"}, "freeze": {"name": "kernel"},
    ...           "optimizer": {"name": "adamw", "lr": 0.001}, "task": {"seed": 123}},
    ...           "job": {"overrides": ["train.steps=500", "tracker=offline"]}})
    'diffstate-kernel-adamw-lr1e-3-s123-steps500'
    """
    a = axes(record)
    parts = [a["method"], a["freeze"], a["optimizer"],
             None if a["lr"] is None else f"lr{short_number(a['lr'])}",
             None if a["seed"] is None else f"s{a['seed']}"]
    for key, value in _swept(record):
        try:
            value = short_number(float(value))
        except ValueError:
            pass
        parts.append(f"{key.split('.')[-1].split('/')[-1]}{value}")
    return "-".join(str(p) for p in parts if p not in (None, ""))


def sweep_group(experiment: str | None, sweep_dir: str | Path | None) -> str:
    """One W&B group per sweep: the experiment's name and the sweep's timestamped directory.

    >>> sweep_group("freeze_matrix", "results/freeze_matrix/2026-11-22_01-09-23-782819")
    'freeze_matrix-2026-11-22_01-09-23-782819'
    """
    experiment = experiment or "default"
    return f"{experiment}-{Path(sweep_dir).name}" if sweep_dir else experiment


def run_group(record: dict[str, Any]) -> str:
    """The group of the sweep a record belongs to (see `sweep_group`)."""
    return sweep_group(axes(record)["experiment"], (record.get("job") or {}).get("sweep_dir"))


WANDB_VARIABLES = {"mode": "WANDB_MODE", "project": "WANDB_PROJECT", "entity": "WANDB_ENTITY"}


def with_environment(cfg: WandbConfig, overrides: Iterable[str], environ: Mapping[str, str] = os.environ
                     ) -> WandbConfig:
    """`cfg` with WANDB_MODE, WANDB_PROJECT and WANDB_ENTITY applied where the command line does not set them.

    The command line wins (`tracker=...` or `tracker.wandb.mode=...` set the mode), then W&B's own
    variables, then the config. WANDB_MODE=dryrun / run mean offline / online, as in wandb.

    >>> with_environment(WandbConfig(), [], {"WANDB_MODE": "disabled"}).mode
    'disabled'
    >>> with_environment(WandbConfig(), ["tracker=offline"], {"WANDB_MODE": "disabled"}).mode
    'offline'
    """
    on_command_line = set()
    for override in overrides:
        key = str(override).lstrip("+~").partition("=")[0]
        if key == "tracker":
            on_command_line.add("mode")
        elif key.startswith("tracker.wandb."):
            on_command_line.add(key.rsplit(".", 1)[-1])
    changes = {}
    for name, variable in WANDB_VARIABLES.items():
        value = (environ.get(variable) or "").strip()
        if value and name not in on_command_line:
            changes[name] = {"dryrun": "offline", "run": "online"}.get(value.lower(), value.lower()) \
                if name == "mode" else value
    try:
        return dataclasses.replace(cfg, **changes)
    except ValueError as err:  # e.g. WANDB_MODE=typo: W&B is an observer, the run goes on with the config's
        log.warning("ignoring W&B environment: %s", err)
        return cfg


def run_tags(record: dict[str, Any], extra: list[str] = ()) -> list[str]:
    """The experiment's name, then 'axis:value' for the run's categorical axes and every swept value.

    W&B takes at most 64 characters a tag.
    """
    a = axes(record)
    tags = [a["experiment"] or "default", *(f"{k}:{a[k]}" for k in ("method", "freeze", "optimizer", "model") if a[k]),
            *(f"{key}:{value}" for key, value in _swept(record, skip=("method", "freeze", "optimizer", "model"))),
            *extra]
    return list(dict.fromkeys(t[:64] for t in tags))


def define_metrics(run) -> None:
    """Per-step curves against `train/step`, each summarized by its minimum and its last value."""
    run.define_metric("train/step")
    run.define_metric("train/*", step_metric="train/step", summary="min,last")


def summary(record: dict[str, Any]) -> dict[str, Any]:
    """Final numbers under flat slash-separated names (W&B summary keys).

    The final train metrics are `final/train_*`: `train/*` are the per-step curves, summarized by W&B.
    """
    out: dict[str, Any] = {"status": record["status"]}
    m = record.get("metrics") or {}
    for name, value in (m.get("train") or {}).items():
        out[f"final/train_{name}"] = value
    for name, value in (m.get("test") or {}).items():
        out[f"test/{name}"] = value
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
        out["memory/bytes"] = memory.get("total_bytes")
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
            group=self.cfg.group or run_group(record),
            job_type=self.cfg.job_type,
            tags=run_tags(record, list(self.cfg.tags)),
            name=run_name(record),
            dir=str(out_dir),
            mode=self.cfg.mode,
            config={**axes(record), **record["config"]},  # group names stay the nested config
            settings=quiet_settings(),
            reinit="finish_previous",
        )
        try:
            define_metrics(run)
            history = record.get("history") or {}
            for i, step in enumerate(history.get("step", [])):
                run.log({"train/step": step, **{f"train/{name[len('train_'):]}": values[i]
                                                for name, values in history.items() if name.startswith("train_")}},
                        step=step)
            run.summary.update(summary(record))
            info = {"mode": self.cfg.mode, "id": run.id, "dir": run.dir}
            if self.cfg.mode == "online":
                info["url"] = run.url
        finally:
            run.finish(exit_code=1 if record["status"] == "failed" else 0)
        return info
