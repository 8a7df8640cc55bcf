"""`harness report` and `harness compare`: finished sweeps as tables, figures, W&B and ratios.

Everything here reads only the `result.json` records a sweep leaves behind (the
ground truth), so it works on a finished, interrupted or copied sweep, with no
training run and no W&B account. The pieces are plain functions, data in and
data out:

- `read_records` / `frame` / `load_records`: records -> one DataFrame row per run.
- `summarize`, `methods_table`: per-configuration medians and spreads over seeds.
- `render_report` and the `*_figure` functions: report.md and its PNG figures.
- `compare`: two sweeps matched by configuration, as ratios B/A with flags.
- `log_report_to_wandb`: the summary and figures as one W&B run, never raising.

`write_report` / `build_report` write the files; `main_report` and
`main_compare` are the command lines around them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import re
import shlex
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from harness.tracking import axes

RECORD_NAME = "result.json"
STATUSES = ("ok", "diverged", "failed", "skipped")
AXIS_COLUMNS = ("experiment", "model", "freeze", "method", "optimizer", "lr", "weight_decay", "steps", "seed",
                "device")
# Config leaves that `axes` already names; other leaves that vary in a sweep get their own column.
AXIS_PATHS = ("name", "model.name", "freeze.name", "method.name", "optimizer.name", "optimizer.lr",
              "optimizer.weight_decay", "train.steps", "task.seed", "device.platform", "device.index")
# Not part of what a run computes: where it is written, how it is tracked, how it is timed.
NOT_CONFIG = ("name", "results_dir", "resume", "tracker", "train.warmup", "train.repeats", "train.measure_dispatch",
              "train.persistent_cache_dir")
# Always rows of the tables; the others become rows only where they split the sweep further.
ALWAYS_KEYS = ("method", "freeze", "optimizer")
MAYBE_KEYS = ("model", "lr", "weight_decay", "steps", "device", "experiment")
FIGURES = {
    "training_curves": "fig_training_curves.png",
    "time_vs_steps": "fig_time_vs_steps.png",
    "frozen_drift": "fig_frozen_drift.png",
    "compile_vs_run": "fig_compile_vs_run.png",
}
FIGURE_TITLES = {
    "training_curves": "Training curves",
    "time_vs_steps": "Run and compile time against step count",
    "frozen_drift": "Drift of the frozen parameters",
    "compile_vs_run": "Compile vs run time",
}
INT_COLUMNS = ("steps", "seed", "job_num", "diverged_at_step", "opt_state_bytes", "opt_state_frozen_bytes",
               "trainable_params", "frozen_params", "repeats")
BOOL_COLUMNS = ("drift_unchanged", "grads_cover_frozen")
FLOAT_COLUMNS = ("lr", "weight_decay", "train_mse", "test_mse", "train_mae", "test_mae", "last_step_train_mse",
                 "slope", "intercept", "drift_l2", "drift_max_abs", "compile_s", "run_s_per_step_median",
                 "run_s_per_step_min", "run_s_per_step_max", "run_s_per_step_iqr", "run_s_per_call_median",
                 "run_s_per_call_min", "run_s_per_call_max")
STR_COLUMNS = ("experiment", "model", "freeze", "method", "optimizer", "device", "status", "error",
               "compile_source", "overrides", "git_commit", "started", "config_key", "path")


# ---------------------------------------------------------------------------------------------
# Reading records
# ---------------------------------------------------------------------------------------------


def _natural_key(path: Path) -> list:
    """Sort key that puts job 2 before job 10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def read_records(sweep_dir: str | Path) -> tuple[list[tuple[Path, dict]], list[tuple[Path, str]]]:
    """Every result.json under `sweep_dir` as (path, record); unreadable ones as (path, reason).

    A record that is half-written, not JSON, not an object or has no status is a
    problem to report, never a reason to lose the rest of the sweep.
    """
    records, problems = [], []
    for path in sorted(Path(sweep_dir).rglob(RECORD_NAME), key=_natural_key):
        try:
            record = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as err:
            problems.append((path, f"{type(err).__name__}: {err}"))
            continue
        if not isinstance(record, dict):
            problems.append((path, f"not a record: a JSON {type(record).__name__}"))
        elif not isinstance(record.get("status"), str):
            problems.append((path, "not a record: no 'status'"))
        else:
            records.append((path, record))
    return records, problems


def _get(node: Any, *keys: str, default: Any = None) -> Any:
    """node[k1][k2]... or `default` when any level is missing or not a dict."""
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return default if node is None else node


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> {'a.b': leaf}; lists become JSON text so they can be compared and stored."""
    if not isinstance(node, dict):
        return {prefix: json.dumps(node) if isinstance(node, list) else node}
    out = {}
    for key, value in node.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _is_under(path: str, prefixes: Iterable[str]) -> bool:
    return any(path == p or path.startswith(p + ".") for p in prefixes)


def config_key(config: dict | None) -> str:
    """What a run computes, as canonical text: the config without names, paths, tracking and timing repeats."""
    leaves = {k: v for k, v in flatten(config or {}).items() if not _is_under(k, NOT_CONFIG)}
    return json.dumps(leaves, sort_keys=True, default=str)


def _error_text(record: dict) -> str | None:
    error = record.get("error")
    if not error:
        return None
    if isinstance(error, dict):
        return f"{error.get('type', 'Error')}: {error.get('message', '')}".rstrip(": ")
    return str(error)


def row(path: Path, record: dict) -> dict[str, Any]:
    """One run as flat columns: its axes, status, final metrics, drift, memory and timings."""
    per_step = _get(record, "timing", "run_s_per_step", default={})
    run_s = _get(record, "timing", "run_s", default=[])
    overrides = _get(record, "job", "overrides", default=[])
    return {
        **axes(record),
        "status": record["status"],
        "error": _error_text(record),
        "diverged_at_step": _get(record, "divergence", "first_nonfinite_step"),
        "train_mse": _get(record, "metrics", "train", "mse"),
        "test_mse": _get(record, "metrics", "test", "mse"),
        "train_mae": _get(record, "metrics", "train", "mae"),
        "test_mae": _get(record, "metrics", "test", "mae"),
        "last_step_train_mse": _get(record, "metrics", "last_step_train_mse"),
        "slope": _get(record, "metrics", "slope"),
        "intercept": _get(record, "metrics", "intercept"),
        "drift_l2": _get(record, "drift", "l2"),
        "drift_max_abs": _get(record, "drift", "max_abs"),
        "drift_unchanged": _get(record, "drift", "unchanged"),
        "grads_cover_frozen": _get(record, "parameters", "grads_cover_frozen"),
        "opt_state_bytes": _get(record, "optimizer_state", "bytes"),
        "opt_state_frozen_bytes": _get(record, "optimizer_state", "frozen_bytes"),
        "trainable_params": _get(record, "parameters", "trainable"),
        "frozen_params": _get(record, "parameters", "frozen"),
        "compile_s": _get(record, "timing", "compile_s"),
        "compile_source": _get(record, "timing", "compile_source"),
        "run_s_per_step_median": _get(per_step, "median"),
        "run_s_per_step_min": _get(per_step, "min"),
        "run_s_per_step_max": _get(per_step, "max"),
        "run_s_per_step_iqr": _get(per_step, "iqr"),
        "run_s_per_call_median": _get(record, "timing", "run_s_per_call", "median"),
        "run_s_per_call_min": _get(record, "timing", "run_s_per_call", "min"),
        "run_s_per_call_max": _get(record, "timing", "run_s_per_call", "max"),
        "repeats": len(run_s) if isinstance(run_s, list) else None,
        "job_num": _get(record, "job", "num"),
        "overrides": shlex.join(map(str, overrides)) if isinstance(overrides, list) else str(overrides),
        "git_commit": _get(record, "environment", "git_commit"),
        "started": record.get("started"),
        "config_key": config_key(record.get("config")),
        "path": str(path),
    }


def _extra_axes(records: list[tuple[Path, dict]]) -> dict[str, list]:
    """Config leaves, other than the named axes, whose value differs between runs (e.g. model.depth)."""
    flat = [flatten(record.get("config") or {}) for _, record in records]
    names = sorted({k for leaves in flat for k in leaves if not _is_under(k, NOT_CONFIG + AXIS_PATHS)})
    varying = {}
    for name in names:
        values = [leaves.get(name) for leaves in flat]
        if len({json.dumps(v, default=str) for v in values}) > 1:
            varying[name] = values
    return varying


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    """Nullable ints and bools, floats and strings: the same dtypes for parquet and CSV whatever is missing."""
    df = df.copy()
    for name in df.columns:
        values = [_nan_to_none(v) for v in df[name]]
        if name in INT_COLUMNS:
            df[name] = pd.array([None if v is None else int(v) for v in values], dtype="Int64")
        elif name in BOOL_COLUMNS:
            df[name] = pd.array([None if v is None else bool(v) for v in values], dtype="boolean")
        elif name in STR_COLUMNS:
            df[name] = pd.array([None if v is None else str(v) for v in values], dtype="str")
        elif name in FLOAT_COLUMNS:
            df[name] = pd.array([None if v is None else float(v) for v in values], dtype="float64")
    return df


def frame(records: list[tuple[Path, dict]]) -> pd.DataFrame:
    """One row per record, axis columns first, then any other varying config leaf, then measurements."""
    rows = [row(path, record) for path, record in records]
    if not rows:
        return _typed(pd.DataFrame(columns=list(row(Path(), {"status": "ok"}))))
    df = pd.DataFrame(rows)
    extra = _extra_axes(records)
    for i, (name, values) in enumerate(extra.items()):
        df.insert(len(AXIS_COLUMNS) + i, name, _one_type(values))
    return _typed(df)


def _one_type(values: list[Any]) -> pd.api.extensions.ExtensionArray | np.ndarray:
    """A column of one type (bool, number or text) from config values that may mix them."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pd.array(values, dtype="boolean")
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return np.array([math.nan if v is None else v for v in values], dtype="float64")
    return pd.array([None if v is None else v if isinstance(v, str) else json.dumps(v) for v in values], dtype="str")


def load_records(sweep_dir: str | Path) -> tuple[pd.DataFrame, list[tuple[Path, str]]]:
    """(one row per run under `sweep_dir`, [(path, reason) for each record that could not be read])."""
    records, problems = read_records(sweep_dir)
    return frame(records), problems


# ---------------------------------------------------------------------------------------------
# Summaries
# ---------------------------------------------------------------------------------------------


def splitting_keys(df: pd.DataFrame, base: Iterable[str], candidates: Iterable[str]) -> list[str]:
    """`base` plus each candidate that takes several values within the groups formed so far.

    weight_decay varies with the optimizer (adam 0, adamw 1e-4) but adds no rows;
    `optimizer.lr=1e-3,1e-2` does.
    """
    keys = [k for k in base if k in df.columns]
    for name in candidates:
        if name not in df.columns or name in keys:
            continue
        counts = df.groupby(keys, dropna=False, sort=False)[name].nunique(dropna=False) if keys else \
            pd.Series([df[name].nunique(dropna=False)])
        if len(counts) and counts.max() > 1:
            keys.append(name)
    return keys


def group_keys(df: pd.DataFrame) -> list[str]:
    """method x freeze x optimizer, plus lr / steps / model / ... (and other config) where they vary."""
    extra = [c for c in df.columns if "." in c]
    return splitting_keys(df, ALWAYS_KEYS, [*MAYBE_KEYS, *extra])


def _groups(df: pd.DataFrame, keys: list[str]):
    """(key values as a dict, rows) per group, in the sweep's order."""
    for values, rows in df.groupby(keys, dropna=False, sort=False):
        yield dict(zip(keys, values)), rows


def _nan_to_none(value: Any) -> Any:
    return None if value is pd.NA or (isinstance(value, float) and math.isnan(value)) else value


def _median_range(values: pd.Series) -> tuple[float, float, float]:
    values = pd.to_numeric(values, errors="coerce").astype("float64").dropna()
    if values.empty:
        return (math.nan,) * 3
    return float(values.median()), float(values.min()), float(values.max())


SPREAD_METRICS = ("train_mse", "test_mse", "slope", "intercept", "drift_l2", "drift_max_abs", "opt_state_bytes",
                  "frozen_params")


def cold_compiles(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs whose compile really ran, or all of them if none did.

    In a sweep, the second seed of a configuration is usually served from JAX's
    in-process cache in microseconds; mixing it in would halve the median.
    """
    cold = runs[runs["compile_source"] == "compiled"]
    return cold if len(cold) else runs


def _source_counts(runs: pd.DataFrame) -> str:
    counts = runs["compile_source"].dropna().value_counts(sort=False)
    return ", ".join(f"{n} {source}" for source, n in counts.items())


def summarize(df: pd.DataFrame, keys: list[str] | None = None) -> pd.DataFrame:
    """Per configuration (all but the seed): run counts, and median/min/max over its ok runs.

    Times per step are the median of the runs' medians, and min/max over every
    timed call of every run: the spread covers both repeats and seeds. Compile
    times count cold compiles only, unless no run of the group compiled.
    """
    keys = group_keys(df) if keys is None else keys
    rows = []
    for values, g in _groups(df, keys):
        ok = g[g["status"] == "ok"]
        out: dict[str, Any] = {**values, "runs": len(g)}
        out.update({status: int((g["status"] == status).sum()) for status in STATUSES})
        for name in SPREAD_METRICS:
            out[f"{name}_median"], out[f"{name}_min"], out[f"{name}_max"] = _median_range(ok[name])
        out["compile_s_median"], out["compile_s_min"], out["compile_s_max"] = _median_range(
            cold_compiles(ok)["compile_s"])
        for unit in ("step", "call"):
            name = f"run_s_per_{unit}"
            out[f"{name}_median"] = _median_range(ok[f"{name}_median"])[0]
            out[f"{name}_min"] = _median_range(ok[f"{name}_min"])[1]
            out[f"{name}_max"] = _median_range(ok[f"{name}_max"])[2]
        unchanged = ok["drift_unchanged"].dropna()
        out["unchanged_runs"] = int(unchanged.sum())
        out["unchanged_of"] = len(unchanged)
        covers = ok["grads_cover_frozen"].dropna()
        out["grads_cover_frozen"] = bool(covers.any()) if len(covers) else None
        out["compile_sources"] = _source_counts(ok)
        rows.append(out)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------


def _num(value: Any) -> str:
    """Three significant digits, without exponents between 0.001 and 100000."""
    value = _nan_to_none(value)
    if value is None:
        return "—"
    value = float(value)
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    if 1e-3 <= abs(value) < 1e5:
        return f"{value:.{max(0, 2 - math.floor(math.log10(abs(value))))}f}"
    return f"{value:.2e}"


def _int(value: Any) -> str:
    value = _nan_to_none(value)
    return "—" if value is None else f"{int(round(value)):,}"


def _cell(median: Any, low: Any, high: Any, fmt=_num, scale: float = 1.0) -> str:
    """'median [min, max]', or just the median when the spread does not show at this precision."""
    if _nan_to_none(median) is None:
        return "—"
    text, low_text, high_text = fmt(median * scale), fmt(low * scale), fmt(high * scale)
    if _nan_to_none(low) is None or _nan_to_none(high) is None or low_text == high_text:
        return text
    return f"{text} [{low_text}, {high_text}]"


def _fraction(n: int, of: int) -> str:
    if not of:
        return "—"
    return "yes" if n == of else "no" if n == 0 else f"{n}/{of}"


def _yes_no(value: Any) -> str:
    value = _nan_to_none(value)
    return "—" if value is None else "yes" if value else "no"


def _key_text(value: Any) -> str:
    value = _nan_to_none(value)
    if value is None or value == "":
        return "—"
    return f"{value:g}" if isinstance(value, float) else str(value)


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub markdown table of `df` as text (no extra dependency)."""
    if df.empty:
        return "_no rows_\n"

    def cell(value: Any) -> str:
        return _key_text(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in values) + " |" for values in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def _keys_frame(summary: pd.DataFrame, keys: list[str]) -> dict[str, Any]:
    return {**{k: summary[k] for k in keys}, "ok runs": [f"{ok}/{n}" for ok, n in zip(summary["ok"], summary["runs"])]}


def fit_table(summary: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    def col(name: str) -> list[str]:
        return [_cell(*v) for v in zip(summary[f"{name}_median"], summary[f"{name}_min"], summary[f"{name}_max"])]

    return pd.DataFrame({**_keys_frame(summary, keys), "train MSE": col("train_mse"), "test MSE": col("test_mse"),
                         "slope": col("slope"), "intercept": col("intercept")})


def frozen_table(summary: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return pd.DataFrame({
        **_keys_frame(summary, keys),
        "drift L2": [_cell(*v) for v in zip(summary["drift_l2_median"], summary["drift_l2_min"],
                                             summary["drift_l2_max"])],
        "bitwise unchanged": [_fraction(n, of) for n, of in zip(summary["unchanged_runs"], summary["unchanged_of"])],
        "optimizer state (bytes)": [_cell(*v, fmt=_int) for v in zip(
            summary["opt_state_bytes_median"], summary["opt_state_bytes_min"], summary["opt_state_bytes_max"])],
    })


def cost_table(summary: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return pd.DataFrame({
        **_keys_frame(summary, keys),
        "compile (s)": [_cell(*v) for v in zip(summary["compile_s_median"], summary["compile_s_min"],
                                                summary["compile_s_max"])],
        "compile source": summary["compile_sources"],
        "run time / step (µs)": [_cell(*v, scale=1e6) for v in zip(
            summary["run_s_per_step_median"], summary["run_s_per_step_min"], summary["run_s_per_step_max"])],
        "run time / call (ms)": [_cell(*v, scale=1e3) for v in zip(
            summary["run_s_per_call_median"], summary["run_s_per_call_min"], summary["run_s_per_call_max"])],
    })


def methods_table(df: pd.DataFrame) -> pd.DataFrame:
    """method x optimizer (and whatever else splits them) -> what happens to the frozen parameters."""
    keys = splitting_keys(df, ("method", "optimizer"), ("freeze", "model", *[c for c in df.columns if "." in c]))
    summary = summarize(df, keys)
    return pd.DataFrame({
        **{k: summary[k] for k in keys},
        "frozen drift L2 (max)": [_num(v) for v in summary["drift_l2_max"]],
        "frozen bitwise unchanged": [_fraction(n, of) for n, of in zip(summary["unchanged_runs"],
                                                                       summary["unchanged_of"])],
        "optimizer state (bytes)": [_cell(m, lo, hi, _int) for m, lo, hi in
                                    zip(summary["opt_state_bytes_median"], summary["opt_state_bytes_min"],
                                        summary["opt_state_bytes_max"])],
        "grads cover frozen": [_yes_no(v) for v in summary["grads_cover_frozen"]],
    })


def _distinct(values: Iterable[Any]) -> str:
    seen = list(dict.fromkeys(str(v) for v in values if v not in (None, "")))
    return ", ".join(seen) if seen else "—"


def environment_table(records: list[dict], date: str) -> pd.DataFrame:
    """Where the numbers were measured; a field that differs between runs lists every value."""
    envs = [r.get("environment") or {} for r in records if r.get("environment")]
    versions = ("jax", "jaxlib", "flax", "optax", "hydra-core", "wandb", "numpy")
    rows = [(name, _distinct(_get(e, "versions", name) for e in envs)) for name in versions]
    rows += [
        ("python", _distinct(e.get("python") for e in envs)),
        ("platform / device kind", _distinct(f"{e.get('platform')} / {e.get('device_kind')}" for e in envs)),
        ("device", _distinct(e.get("device") for e in envs)),
        ("CPU", _distinct(f"{e.get('cpu_model')} ({e.get('cpu_count')} cores)" for e in envs)),
        ("git commit", _distinct(e.get("git_commit") for e in envs)),
        ("runs started", _distinct(_span(r.get("started") for r in records))),
        ("report date", date),
    ]
    return pd.DataFrame(rows, columns=["", ""])


def _span(stamps: Iterable[Any]) -> list[str]:
    stamps = sorted(s for s in stamps if isinstance(s, str))
    return [] if not stamps else [stamps[0] if stamps[0] == stamps[-1] else f"{stamps[0]} … {stamps[-1]}"]


def status_counts(df: pd.DataFrame) -> dict[str, int]:
    counts = {status: int((df["status"] == status).sum()) for status in STATUSES}
    other = len(df) - sum(counts.values())
    return {**counts, "other": other} if other else counts


def not_ok_table(df: pd.DataFrame) -> pd.DataFrame:
    """The runs that did not finish ok: job number, status, overrides, error or first non-finite step."""
    bad = df[df["status"] != "ok"]
    return pd.DataFrame({"job": bad["job_num"], "status": bad["status"], "overrides": bad["overrides"],
                         "error": [_problem_text(run) for _, run in bad.iterrows()]})


def _problem_text(run: pd.Series) -> str | None:
    if _nan_to_none(run["error"]) is not None:
        return run["error"]
    step = _nan_to_none(run["diverged_at_step"])
    return None if step is None else f"non-finite loss from step {step}"


METHOD_NOTES = (
    "Per method and optimizer, over every run of the sweep: how far the frozen parameters moved "
    "(L2 norm of final − initial), whether they stayed bitwise identical, how large the optimizer state is, "
    "and whether gradients were computed for frozen parameters at all."
)


def render_report(sweep_dir: Path, df: pd.DataFrame, records: list[dict], problems: list[tuple[Path, str]],
                  figures: Mapping[str, Path | str], date: str) -> str:
    """report.md as text: environment, run status, method table, fit / frozen / cost tables, figures."""
    counts = status_counts(df)
    keys = group_keys(df) if len(df) else list(ALWAYS_KEYS)
    summary = summarize(df, keys) if len(df) else pd.DataFrame()
    name = _distinct(df["experiment"]) if len(df) else "—"
    parts = [
        f"# Sweep report: {name}\n",
        f"`{sweep_dir}`: {len(df)} runs, " + ", ".join(f"{n} {s}" for s, n in counts.items())
        + (f"; {len(problems)} unreadable records" if problems else "") + ".\n",
        "Numbers are medians over the ok runs of each configuration (seeds, identical repeats), "
        "with [min, max] when they differ; run times span every timed call of every run, compile times "
        "count cold compiles only (a second seed is usually a cache hit). "
        "All runs: `runs.parquet`, `runs.csv`.\n",
        "## Environment\n",
        markdown_table(environment_table(records, date)),
        "## Runs that did not finish ok\n",
        markdown_table(not_ok_table(df)) if counts.get("ok", 0) < len(df) else "None.\n",
    ]
    if problems:
        parts += ["Unreadable records (skipped):\n", "\n".join(f"- `{p}`: {why}" for p, why in problems) + "\n"]
    if summary.empty or not summary["ok"].sum():
        parts += ["No run finished ok: no tables or figures.\n"]
        return "\n".join(parts)
    parts += [
        "## What each method does\n", METHOD_NOTES + "\n", markdown_table(methods_table(df)),
        "## Fit\n", "Final train / test MSE over the task's data, and the line fitted through the test "
                    "predictions.\n", markdown_table(fit_table(summary, keys)),
        "## Frozen parameters\n", "Drift: L2 norm of final − initial over all frozen leaves.\n",
        markdown_table(frozen_table(summary, keys)),
        "## Cost\n", "Compile: ahead-of-time XLA compile of the whole training program. Run: one jitted call "
                     "(all steps), after warm-up.\n", markdown_table(cost_table(summary, keys)),
        "## Figures\n",
    ]
    for key, title in FIGURE_TITLES.items():
        where = figures.get(key, "not drawn")
        parts.append(f"### {title}\n")
        parts.append(f"![{title}]({Path(where).name})\n" if isinstance(where, Path) else f"_Skipped: {where}._\n")
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------


def _label(values: Mapping[str, Any], keys: Iterable[str]) -> str:
    return " · ".join(_key_text(values[k]) if k in ALWAYS_KEYS else f"{k}={_key_text(values[k])}" for k in keys)


def _varying(df: pd.DataFrame, keys: Iterable[str]) -> list[str]:
    """The keys that take more than one value in `df`: the ones worth naming in a legend."""
    return [k for k in keys if k in df.columns and df[k].nunique(dropna=False) > 1]


def _plain_log_labels(axis) -> None:
    """Tick labels like 2 and 0.5 on a log axis instead of 2×10⁰; call once the data is drawn.

    Minor ticks get labels only when the axis spans less than a decade, where
    there may be no major tick at all: every one below a factor 3, else 2, 3 and 5.
    """
    low, high = sorted(axis.get_view_interval())
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    if low > 0 and high / low < 10:
        shown = range(1, 10) if high / low < 3 else (2, 3, 5)

        def minor(v: float, _) -> str:
            return f"{v:g}" if round(v / 10 ** math.floor(math.log10(v))) in shown else ""

        axis.set_minor_formatter(FuncFormatter(minor))
    else:
        axis.set_minor_formatter(NullFormatter())


def _new_figure(width: float, height: float) -> Figure:
    """A figure on its own Agg canvas: no pyplot, no global state, no display needed."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def training_curves_figure(df: pd.DataFrame, histories: Mapping[str, dict]) -> Figure | str:
    """Train MSE against step, one panel per method, one colour per other setting, one line per run."""
    runs = df[df["status"].isin(["ok", "diverged"]) & df["path"].map(lambda p: bool(histories.get(p)))]
    if runs.empty:
        return "no run has a training history"
    methods = list(dict.fromkeys(runs["method"]))
    others = _varying(runs, [k for k in group_keys(runs) if k != "method"])
    colours = {}
    ncols = min(3, len(methods))
    nrows = math.ceil(len(methods) / ncols)
    fig = _new_figure(4.2 * ncols, 3.2 * nrows + 0.6)
    grid = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)
    for ax, method in zip(grid.flat, methods):
        seen = set()
        for _, run in runs[runs["method"] == method].iterrows():
            history = histories[run["path"]]
            step = np.asarray(history.get("step", []), dtype=float)
            mse = np.asarray(history.get("train_mse", []), dtype=float)
            keep = np.isfinite(mse) & (mse > 0)
            if len(step) != len(mse) or not keep.any():
                continue
            label = _label(run, others) or "all"
            colour = colours.setdefault(label, f"C{len(colours) % 10}")
            ax.plot(step[keep], mse[keep], color=colour, alpha=0.8, lw=1.2, label=None if label in seen else label)
            seen.add(label)
        ax.set_title(method)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("train MSE (log)")
        ax.grid(True, alpha=0.3)
        if seen:
            ax.legend(fontsize="x-small")
            _plain_log_labels(ax.yaxis)
    for ax in list(grid.flat)[len(methods):]:
        ax.set_visible(False)
    fig.suptitle("Training curves: train MSE per step (one line per run)")
    return fig


def time_vs_steps_figure(summary: pd.DataFrame, keys: list[str]) -> Figure | str:
    """Run time per step and compile time against step count, log-log, median and min–max per setting."""
    ok = summary[summary["ok"] > 0]
    if "steps" not in ok or ok["steps"].nunique() < 2:
        return "the sweep has a single step count (sweep `train.steps=...` to draw this)"
    others = [k for k in keys if k != "steps"]
    fig = _new_figure(11, 4.2)
    left, right = fig.subplots(1, 2)
    for i, (values, g) in enumerate(_groups(ok, others) if others else [({}, ok)]):
        g = g.sort_values("steps")
        colour, label = f"C{i % 10}", _label(values, _varying(ok, others)) or "all"
        steps = g["steps"].astype(float).to_numpy()
        for ax, name, scale in ((left, "run_s_per_step", 1e6), (right, "compile_s", 1.0)):
            median = g[f"{name}_median"].to_numpy(float) * scale
            low = g[f"{name}_min"].to_numpy(float) * scale
            high = g[f"{name}_max"].to_numpy(float) * scale
            ax.errorbar(steps, median, yerr=[median - low, high - median], marker="o", ms=4, capsize=3,
                        color=colour, label=label)
    left.set(title="Run time per step", xlabel="steps per run", ylabel="time per step (µs)", xscale="log",
             yscale="log")
    right.set(title="Compile time", xlabel="steps per run", ylabel="compile time (s)", xscale="log", yscale="log")
    for ax in (left, right):
        _plain_log_labels(ax.xaxis)
        _plain_log_labels(ax.yaxis)
        ax.grid(True, which="both", alpha=0.3)
    fig.legend(*left.get_legend_handles_labels(), loc="outside lower center", ncols=3, fontsize="x-small")
    fig.suptitle("Cost against step count (median, bars: min–max)")
    return fig


def frozen_drift_figure(summary: pd.DataFrame, keys: list[str]) -> Figure | str:
    """Largest frozen-parameter drift per method, one bar per other setting; 0 means bitwise unchanged."""
    ok = summary[(summary["ok"] > 0) & summary["drift_l2_max"].notna() & (summary["frozen_params_max"] > 0)]
    if ok.empty:
        return "no ok run has frozen parameters (freeze=none, or no drift recorded)"
    methods = list(dict.fromkeys(ok["method"]))
    others = _varying(ok, [k for k in keys if k not in ("method", "steps", "lr")]) or ["optimizer"]
    bar_labels = pd.Series([_label(r, others) for _, r in ok.iterrows()], index=ok.index)
    labels = list(dict.fromkeys(bar_labels))
    width = 0.8 / len(labels)
    fig = _new_figure(max(6.0, 1.2 * len(methods) * max(1, len(labels) / 2)), 4.2)
    ax = fig.subplots()
    for j, label in enumerate(labels):
        heights, texts = [], []
        for method in methods:
            rows = ok[(ok["method"] == method) & (bar_labels == label)]
            heights.append(rows["drift_l2_max"].max() if len(rows) else math.nan)
            bitwise = len(rows) and (rows["unchanged_runs"] == rows["unchanged_of"]).all()
            texts.append("" if not len(rows) else "bitwise 0" if bitwise else _num(heights[-1]))
        x = np.arange(len(methods)) + (j - (len(labels) - 1) / 2) * width
        bars = ax.bar(x, heights, width, color=f"C{j % 10}", label=label)
        ax.bar_label(bars, labels=texts, fontsize="x-small", rotation=90, padding=2)
    ax.set_xticks(np.arange(len(methods)), methods, rotation=20, ha="right")
    ax.set(title="Frozen-parameter drift per method\n(largest over the runs of each bar)", xlabel="freeze method",
           ylabel="L2 norm of final − initial (parameter units)")
    ax.margins(y=0.25)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize="x-small")
    return fig


def compile_vs_run_figure(summary: pd.DataFrame, keys: list[str]) -> Figure | str:
    """Compile time next to one whole jitted call, per configuration, on a log axis."""
    ok = summary[(summary["ok"] > 0) & summary["compile_s_median"].notna()
                 & summary["run_s_per_call_median"].notna()]
    if ok.empty:
        return "no run recorded timings"
    labels = [_label(r, _varying(ok, keys) or keys) for _, r in ok.iterrows()]
    y = np.arange(len(labels))
    fig = _new_figure(9, 1.2 + 0.38 * len(labels))
    ax = fig.subplots()
    compile_s = ok["compile_s_median"].to_numpy(float)
    run_s = ok["run_s_per_call_median"].to_numpy(float)
    ax.barh(y - 0.2, compile_s, 0.4, color="C3", label="compile (AOT, once)")
    ax.barh(y + 0.2, run_s, 0.4, color="C0", label="run (one call, all steps)")
    ax.set_yticks(y, labels, fontsize="x-small")
    ax.invert_yaxis()
    ax.set(title="Compile vs run time (medians; compile: cold compiles)", xlabel="time (s, log)", xscale="log")
    ax.grid(True, axis="x", which="both", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=2, fontsize="x-small")
    return fig


def save_figure(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    return path


def write_figures(df: pd.DataFrame, histories: Mapping[str, dict], out_dir: Path) -> dict[str, Path | str]:
    """Draws every figure into `out_dir`: {name: path written, or the reason it was skipped}."""
    ok = df[df["status"] == "ok"]
    if ok.empty:
        return {name: "no run finished ok" for name in FIGURES}
    keys = group_keys(df)
    summary = summarize(df, keys)
    drawn = {
        "training_curves": training_curves_figure(df, histories),
        "time_vs_steps": time_vs_steps_figure(summary, keys),
        "frozen_drift": frozen_drift_figure(summary, keys),
        "compile_vs_run": compile_vs_run_figure(summary, keys),
    }
    return {name: save_figure(fig, out_dir / FIGURES[name]) if isinstance(fig, Figure) else fig
            for name, fig in drawn.items()}


# ---------------------------------------------------------------------------------------------
# W&B
# ---------------------------------------------------------------------------------------------


def _plain(df: pd.DataFrame) -> pd.DataFrame:
    """Object columns of Python scalars and None: what wandb.Table takes without surprises."""
    return df.astype(object).where(df.notna(), None)


def log_report_to_wandb(sweep_dir: str | Path, df: pd.DataFrame,
                        figure_paths: Mapping[str, Path | str] | Iterable[Path | str], *, mode: str,
                        project: str, group: str | None, entity: str | None = None) -> str | None:
    """One W&B run (job type "report") in the sweep's group: summary tables and figures.

    W&B is an observer: any failure comes back as an error string, never raised.
    The run is written under `<sweep_dir>/wandb/`.
    """
    if mode == "disabled":
        return None
    try:
        import wandb

        if isinstance(figure_paths, Mapping):
            figures = {name: Path(p) for name, p in figure_paths.items() if isinstance(p, (str, Path))}
        else:
            figures = {Path(p).stem: Path(p) for p in figure_paths}
        figures = {name: p for name, p in figures.items() if p.is_file()}
        counts = status_counts(df)
        run = wandb.init(
            project=project, entity=entity, group=group, job_type="report", name=f"report-{Path(sweep_dir).name}",
            dir=str(sweep_dir), mode=mode, config={"sweep_dir": str(sweep_dir), "runs": len(df), **counts},
            settings=wandb.Settings(console="off", silent=True, x_disable_stats=True, x_save_requirements=False,
                                    disable_git=True),
            reinit="finish_previous",
        )
        try:
            logged: dict[str, Any] = {f"figures/{name}": wandb.Image(str(p)) for name, p in figures.items()}
            if len(df) and (df["status"] == "ok").any():
                logged["report/summary"] = wandb.Table(dataframe=_plain(summarize(df)))
                logged["report/methods"] = wandb.Table(dataframe=_plain(methods_table(df)))
            logged["report/runs"] = wandb.Table(dataframe=_plain(df.drop(columns=["config_key"])))
            run.log(logged)
            run.summary.update({f"runs/{k}": v for k, v in counts.items()})
        except Exception:
            run.finish(exit_code=1)
            raise
        run.finish()
    except Exception as err:  # noqa: BLE001 - W&B is an observer, never a point of failure
        return f"{type(err).__name__}: {err}"
    return None


def _wandb_target(records: list[dict]) -> tuple[str, str | None, str | None]:
    """(project, entity, group) the sweep's own runs were logged to."""
    configs = [_get(r, "config", "tracker", "wandb", default={}) for r in records]
    wandb_cfg = next((c for c in configs if c), {})
    name = next((n for n in (_get(r, "config", "name") for r in records) if n), None)
    return wandb_cfg.get("project") or "nnx-freeze-bench", wandb_cfg.get("entity"), wandb_cfg.get("group") or name


# ---------------------------------------------------------------------------------------------
# harness report
# ---------------------------------------------------------------------------------------------


def build_report(sweep_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Reads a sweep and writes runs.parquet, runs.csv, report.md and figures; returns what it made."""
    read, problems = read_records(sweep_dir)
    df = frame(read)
    records = [record for _, record in read]
    figures = write_report(sweep_dir, df, out_dir, records=records, problems=problems)
    out = Path(out_dir) if out_dir is not None else Path(sweep_dir)
    return {"df": df, "problems": problems, "records": records, "figures": figures,
            "tables": [out / "runs.parquet", out / "runs.csv"], "report": out / "report.md"}


def write_report(sweep_dir: str | Path, df: pd.DataFrame, out_dir: str | Path | None = None, *,
                 records: list[dict] | None = None, problems: list[tuple[Path, str]] = ()) -> dict[str, Path | str]:
    """Writes runs.parquet, runs.csv, figures and report.md for `df` into `out_dir` (default: the sweep).

    Returns {figure name: PNG path, or why it was skipped}, ready for
    `log_report_to_wandb`. Without `records`, histories and environments are
    re-read from the files in `df["path"]`.
    """
    sweep_dir = Path(sweep_dir)
    out_dir = Path(out_dir) if out_dir is not None else sweep_dir
    if records is None:
        records = [record for _, record in read_records_at(df["path"])]
    out_dir.mkdir(parents=True, exist_ok=True)
    df.to_parquet(out_dir / "runs.parquet", index=False)
    df.to_csv(out_dir / "runs.csv", index=False)
    histories = {path: record.get("history") for path, record in zip(df["path"], records)}
    figures = write_figures(df, histories, out_dir)
    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    (out_dir / "report.md").write_text(render_report(sweep_dir, df, records, list(problems), figures, date))
    return figures


def read_records_at(paths: Iterable[str | Path]) -> list[tuple[Path, dict]]:
    """The records at these paths, in order; one that no longer reads is an empty record, not an error."""
    out = []
    for path in map(Path, paths):
        try:
            record = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError):
            record = {}
        out.append((path, record if isinstance(record, dict) else {}))
    return out


def _report_lines(made: dict[str, Any]) -> list[str]:
    """What `harness report` prints: counts, where things went, runs that were not ok, unreadable files."""
    df, problems = made["df"], made["problems"]
    counts = status_counts(df)
    lines = [f"{len(df)} runs: " + ", ".join(f"{n} {s}" for s, n in counts.items())
             + (f"; {len(problems)} unreadable records skipped" if problems else "")]
    lines.append("  tables:  " + ", ".join(map(str, made["tables"])))
    lines.append(f"  report:  {made['report']}")
    drawn = [p for p in made["figures"].values() if isinstance(p, Path)]
    lines.append(f"  figures: {len(drawn)} in {made['report'].parent}"
                 + "".join(f"\n    skipped {name}: {why}" for name, why in made["figures"].items()
                           if not isinstance(why, Path)))
    bad = df[df["status"] != "ok"]
    if len(bad):
        lines.append("not ok:")
        for _, run in bad.iterrows():
            lines.append(f"  #{_key_text(run['job_num'])} {run['status']}: {run['overrides'] or '(no overrides)'}")
            if _problem_text(run):
                lines.append(f"      {_problem_text(run)}")
    if problems:
        lines.append("unreadable records:")
        lines += [f"  {path}: {why}" for path, why in problems]
    return lines


def main_report(argv: list[str] | None = None) -> int:
    """`harness report SWEEP_DIR [--out DIR] [--wandb MODE]`; returns the exit code."""
    parser = argparse.ArgumentParser(prog="harness report",
                                     description="Tables, figures and report.md for a finished sweep.")
    parser.add_argument("sweep_dir", type=Path, help="a sweep (or run) directory holding result.json files")
    parser.add_argument("--out", type=Path, help="where to write (default: the sweep directory)")
    parser.add_argument("--wandb", choices=("offline", "online", "disabled"), default="disabled",
                        help="also log the report as a W&B run of job type 'report' (default: disabled)")
    parser.add_argument("--project", help="W&B project (default: the sweep's)")
    parser.add_argument("--entity", help="W&B entity (default: the sweep's)")
    parser.add_argument("--group", help="W&B group (default: the sweep's)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not args.sweep_dir.is_dir():
        print(f"harness report: not a directory: {args.sweep_dir}", file=sys.stderr)
        return 2
    if not any(args.sweep_dir.rglob(RECORD_NAME)):
        print(f"harness report: no {RECORD_NAME} under {args.sweep_dir}", file=sys.stderr)
        return 1
    made = build_report(args.sweep_dir, args.out)
    lines = _report_lines(made)
    if args.wandb != "disabled":
        project, entity, group = _wandb_target(made["records"])
        error = log_report_to_wandb(args.sweep_dir, made["df"], made["figures"], mode=args.wandb,
                                    project=args.project or project, group=args.group or group,
                                    entity=args.entity or entity)
        latest = args.sweep_dir / "wandb" / "latest-run"
        where = latest.resolve() if latest.exists() else args.sweep_dir / "wandb"
        lines.insert(4, f"  W&B ({args.wandb}): " + (f"not logged, {error}" if error else str(where)))
    print("\n".join(lines), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------
# harness compare
# ---------------------------------------------------------------------------------------------

# (column, name in the table); for each, higher is worse.
COMPARED = (
    ("run_s_per_step_median", "run time / step"),
    ("compile_s", "compile"),
    ("train_mse", "train MSE"),
    ("test_mse", "test MSE"),
)


def parse_threshold(text: str) -> float:
    """'5%' or '0.05' -> 0.05; a bare number must be a fraction below 1, so '5' is not read as 500%."""
    text = text.strip()
    percent = text.endswith("%")
    value = float(text[:-1]) / 100 if percent else float(text)
    if not value > 0 or (not percent and value >= 1):
        raise ValueError(f"threshold {text!r}: give a percentage like 5% or a fraction like 0.05")
    return value


def _compared_axes(df: pd.DataFrame) -> list[str]:
    """Axis columns that describe a configuration across sweeps: not the experiment's name."""
    return [k for k in AXIS_COLUMNS if k != "experiment"] + [c for c in df.columns if "." in c]


def per_config(df: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: axes, status ('ok' if any run was), medians of the compared columns.

    The compile time is the median over cold compiles only: a cache hit is not a
    compile time, so a configuration that never compiled has none.
    """
    rows = []
    for (key,), g in df.groupby(["config_key"], dropna=False, sort=False):
        ok = g[g["status"] == "ok"]
        out = {"config_key": key, **{k: g[k].iloc[0] for k in _compared_axes(df)},
               "status": "ok" if len(ok) else ",".join(sorted(set(g["status"]))), "runs": len(g),
               "overrides": g["overrides"].iloc[0], "compile_source": _source_counts(ok)}
        for name, _ in COMPARED:
            runs = ok[ok["compile_source"] == "compiled"] if name == "compile_s" else ok
            out[name] = _median_range(runs[name])[0]
        rows.append(out)
    return pd.DataFrame(rows, columns=["config_key", *_compared_axes(df), "status", "runs", "overrides",
                                       "compile_source", *(name for name, _ in COMPARED)])


def _ratio(a: float, b: float) -> float:
    if _nan_to_none(a) is None or _nan_to_none(b) is None:
        return math.nan
    if a == 0:
        return 1.0 if b == 0 else math.inf
    return b / a


def _verdict(ratio: float, threshold: float) -> str:
    """'regression' above 1 + threshold (higher is worse), 'improvement' below 1 / (1 + threshold), or ''."""
    if math.isnan(ratio):
        return ""
    return "regression" if ratio > 1 + threshold else "improvement" if ratio < 1 / (1 + threshold) else ""


def _compare_one(a: pd.Series, b: pd.Series, threshold: float) -> dict[str, Any]:
    """Ratios B/A of one configuration, each flagged 'regression' / 'improvement' / ''."""
    out: dict[str, Any] = {"status": a["status"] if a["status"] == b["status"] else f"{a['status']} → {b['status']}"}
    flags = []
    if a["status"] == "ok" and b["status"] != "ok":
        flags.append(f"status {b['status']} (regression)")
    elif a["status"] != "ok" and b["status"] == "ok":
        flags.append("status ok (improvement)")
    for name, title in COMPARED:
        ratio = _ratio(a[name], b[name])
        verdict = _verdict(ratio, threshold)
        out.update({f"{name}_a": a[name], f"{name}_b": b[name], f"{name}_ratio": ratio, f"{name}_flag": verdict})
        if verdict:
            flags.append(f"{title} ×{_num(ratio)} ({verdict})")
    out["regression"] = any(f.endswith("(regression)") for f in flags)
    out["flags"] = "; ".join(flags)
    return out


def compare(a: pd.DataFrame, b: pd.DataFrame, threshold: float = 0.05) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(matched configurations with B/A ratios and flags, configurations found in one sweep only).

    Configurations match on everything a run computes (`config_key`), so the
    experiment name, results dir, tracker and timestamps never prevent a match.
    A run that was ok in A and is not in B is a regression too.
    """
    left = per_config(a).set_index("config_key", drop=False)
    right = per_config(b).set_index("config_key", drop=False)
    axes_ = list(dict.fromkeys([*_compared_axes(a), *_compared_axes(b)]))
    rows, unmatched = [], []
    for key in left.index:
        if key in right.index:
            rows.append({**{k: left.at[key, k] if k in left else None for k in axes_},
                         **_compare_one(left.loc[key], right.loc[key], threshold)})
    for side, this, other in (("A", left, right), ("B", right, left)):
        for key in this.index.difference(other.index, sort=False):
            unmatched.append({"only in": side, **{k: this.at[key, k] if k in this else None for k in axes_},
                              "status": this.at[key, "status"], "overrides": this.at[key, "overrides"]})
    table = pd.DataFrame(rows, columns=[*axes_, "status", *(f"{name}_{part}" for name, _ in COMPARED
                                                            for part in ("a", "b", "ratio", "flag")),
                                        "regression", "flags"])
    return _typed(table), _typed(pd.DataFrame(unmatched, columns=["only in", *axes_, "status", "overrides"]))


def _shown_axes(*frames: pd.DataFrame) -> list[str]:
    """Axis columns worth a column in a printed table: method, freeze, optimizer and whatever varies."""
    names = list(dict.fromkeys(c for f in frames for c in f.columns if c in AXIS_COLUMNS or "." in c))
    rows = [r for f in frames for r in f.reindex(columns=names).to_dict("records")]
    if not rows:
        return list(ALWAYS_KEYS)
    return splitting_keys(_typed(pd.DataFrame(rows, columns=names)), ALWAYS_KEYS, names)


def compare_markdown(table: pd.DataFrame, unmatched: pd.DataFrame, threshold: float, a: Path, b: Path) -> str:
    """The comparison as markdown: ratios B/A, flagged cells in bold, then unmatched runs."""
    keys = _shown_axes(table, unmatched)
    lines = ["# Compare: B / A\n", f"A: `{a}`  \nB: `{b}`  \nthreshold: {threshold:.1%} "
             "(higher is worse for every column)\n"]
    if len(table):
        shown = {k: table[k] for k in keys}
        shown["status"] = table["status"]
        for name, title in COMPARED:
            shown[f"{title} B/A"] = [f"**{_num(r)}**" if flag else _num(r)
                                     for r, flag in zip(table[f"{name}_ratio"], table[f"{name}_flag"])]
        shown["flags"] = table["flags"]
        lines.append(markdown_table(pd.DataFrame(shown)))
    else:
        lines.append("No configuration is in both sweeps.\n")
    if len(unmatched):
        lines.append("Unmatched (in one sweep only):\n")
        lines.append(markdown_table(unmatched[["only in", *keys, "status", "overrides"]]))
    return "\n".join(lines)


def main_compare(argv: list[str] | None = None) -> int:
    """`harness compare A B [--threshold 5%] [--fail-on-regression] [--out FILE]`; returns the exit code."""
    parser = argparse.ArgumentParser(prog="harness compare",
                                     description="Ratios B/A per matching configuration of two sweeps.")
    parser.add_argument("a", type=Path, help="baseline sweep directory")
    parser.add_argument("b", type=Path, help="new sweep directory")
    parser.add_argument("--threshold", default="5%", help="flag changes beyond this (5%% or 0.05; default 5%%)")
    parser.add_argument("--fail-on-regression", action="store_true", help="exit 1 when a regression is flagged")
    parser.add_argument("--out", type=Path, help="also write the table: .csv for CSV, anything else markdown")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        threshold = parse_threshold(args.threshold)
    except ValueError as err:
        parser.error(str(err))
    frames = []
    for path in (args.a, args.b):
        if not path.is_dir():
            print(f"harness compare: not a directory: {path}", file=sys.stderr)
            return 2
        df, problems = load_records(path)
        for bad, why in problems:
            print(f"unreadable record skipped: {bad}: {why}", file=sys.stderr)
        frames.append(df)
    table, unmatched = compare(*frames, threshold=threshold)
    text = compare_markdown(table, unmatched, threshold, args.a, args.b)
    print(text, flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if args.out.suffix == ".csv":
            pd.concat([table.assign(matched=True), unmatched.assign(matched=False)], ignore_index=True).to_csv(
                args.out, index=False)
        else:
            args.out.write_text(text)
    regressions = int(table["regression"].sum()) if len(table) else 0
    print(f"{len(table)} matched, {regressions} with a regression, {len(unmatched)} unmatched", flush=True)
    return 1 if regressions and args.fail_on_regression else 0


def _main(argv: list[str]) -> int:
    """`python -m harness.report report|compare ARGS`."""
    commands = {"report": main_report, "compare": main_compare}
    if len(argv) < 2 or argv[1] not in commands:
        print("usage: python -m harness.report {report,compare} ...", file=sys.stderr)
        return 2
    return commands[argv[1]](argv[2:])


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
