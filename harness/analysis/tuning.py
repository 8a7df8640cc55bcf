"""The best trial per method of a tuned sweep (hydra/sweeper=tuned), chosen on validation, its test metric reported.

MLCommons AlgoPerf's external tuning: each method gets the same trials; per study the best trial by
the VALIDATION metric (or by time to the validation target); the test metric of that trial is what is
reported, never what chooses it. A best value in the outer `edge` of its searched range is flagged:
the optimum may lie outside the space ("widen optimizer.lr's range").

A "method" here is everything a trial's config says less what tuning sets: the optimizer's TRACED values
and the seed (its study). Pure pandas over `harness.analysis.frames.load_records`' frame.

Timed figures (step time, time to target) of the chosen trial are NOT taken from the sweep: a trial
trained inside a vectorized group reports the group's timing. `rerun` is the command that runs the
chosen trial alone; its record holds the timed figures.
"""

from __future__ import annotations

import json
import math
import shlex
from typing import Any

import pandas as pd

from harness.core.config import TUNABLE
from harness.core.metrics import METRICS

_SET_BY_TUNING = (*TUNABLE.values(), "task.seed")


def _config(key: str) -> dict[str, Any]:
    return json.loads(key) if isinstance(key, str) and key else {}


def method_key(config_key: str) -> str:
    """A trial's config less what tuning sets (the optimizer's searched values and the seed): its method."""
    return json.dumps({k: v for k, v in _config(config_key).items() if k not in _SET_BY_TUNING}, sort_keys=True)


def searched(config_key: str, space: dict[str, Any]) -> dict[str, float]:
    """The values of `space`'s names ({name: {low, high, scale}}) a trial trained with (one_minus_b1: 1 - b1)."""
    config = _config(config_key)
    out = {}
    for name in space:
        value = config.get(TUNABLE[name])
        out[name] = None if value is None else (1.0 - value if name.startswith("one_minus_") else float(value))
    return out


def on_edge(space: dict[str, Any], values: dict[str, float], edge: float = 0.1) -> list[str]:
    """One note per value in the lowest or highest `edge` of its searched range (on the range's scale).

    >>> on_edge({"lr": {"low": 1e-4, "high": 1e-1, "scale": "log"}}, {"lr": 1.2e-4})
    ["widen lr's range: the best value 0.00012 lies in the lowest 10% of [0.0001, 0.1] (log)"]
    """
    notes = []
    for name, value in values.items():
        d = space[name]
        scale = d.get("scale", "log")
        low, high = float(d["low"]), float(d["high"])
        where = ((math.log(value) - math.log(low)) / (math.log(high) - math.log(low)) if scale == "log"
                 else (value - low) / (high - low))
        if where <= edge or where >= 1 - edge:
            side = "lowest" if where <= edge else "highest"
            notes.append(f"widen {name}'s range: the best value {value:.6g} lies in the {side} {edge:.0%} of "
                         f"[{low:g}, {high:g}] ({scale})")
    return notes


def _main_metric(df: pd.DataFrame) -> str:
    """The main metric of the sweep's task kind, found by which validation column it has."""
    for name, metric in METRICS.items():
        if metric.main and f"val_{name}" in df and df[f"val_{name}"].notna().any():
            return name
    raise ValueError("no validation metric in these records (a sweep from before validation splits?)")


def best_trials(df: pd.DataFrame, space: dict[str, Any], by: str = "val", metric: str | None = None,
                edge: float = 0.1) -> pd.DataFrame:
    """Per method and study (seed): the best trial, chosen on validation only.

    df: `load_records`' frame of a tuned sweep; space: the searched values of the sweep's optimizer
    ({name: {low, high, scale}}, hydra.sweeper.tune.space.<optimizer>); by: "val" (the best final
    validation `metric`, the task's main metric by default) or "time_to_target" (the fastest to the
    validation target; not reached: never best). Failed and diverged trials are never best.

    One row per (method, study): the method's axes, `trials`, the chosen values, `val_<metric>`,
    `test_<metric>` of that trial (reported, not chosen on), `edge` notes and `rerun`.
    """
    metric = metric or _main_metric(df)
    better = METRICS[metric].better
    ok = df[df["status"] == "ok"].copy()
    ok["method_key"] = ok["config_key"].map(method_key)
    if by == "val":
        score = ok[f"val_{metric}"].astype(float)
        ok["_score"] = score if better == "lower" else -score
    elif by == "time_to_target":
        ok["_score"] = ok["time_to_target_s"].astype(float).where(ok["target_reached"].fillna(False).astype(bool))
    else:
        raise ValueError(f"by={by!r}: choose on 'val' or 'time_to_target'")
    rows = []
    axes = [c for c in ("task", "model", "freeze", "method", "optimizer", "steps") if c in ok]
    for (_, seed), trials in ok.groupby(["method_key", "seed"], sort=False, dropna=False):
        ranked = trials.dropna(subset=["_score"]).sort_values("_score", kind="stable")
        if ranked.empty:
            continue
        best = ranked.iloc[0]
        values = searched(best["config_key"], space)
        rows.append({
            **{c: best[c] for c in axes},
            "study_seed": seed,
            "trials": len(trials),
            **values,
            f"val_{metric}": best[f"val_{metric}"],
            # Reported, never chosen on: the selection above reads validation (or its target) only.
            f"test_{metric}": best[f"test_{metric}"] if f"test_{metric}" in best else None,
            "edge": "; ".join(on_edge(space, {k: v for k, v in values.items() if v is not None}, edge)) or None,
            "rerun": "harness " + shlex.join(o for o in shlex.split(best["overrides"] or "")
                                             if not o.startswith("vectorize.points=")),
        })
    return pd.DataFrame(rows)


def per_method(best: pd.DataFrame, metric: str) -> pd.DataFrame:
    """`best_trials` summarized over studies as AlgoPerf does: the median per method of its studies' best trials."""
    keys = [c for c in ("task", "model", "freeze", "method", "optimizer", "steps") if c in best]
    return best.groupby(keys, sort=False).agg(studies=("study_seed", "nunique"),
                                              **{f"val_{metric}": (f"val_{metric}", "median"),
                                                 f"test_{metric}": (f"test_{metric}", "median")}).reset_index()
