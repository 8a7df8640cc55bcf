"""The best trial per method of a tuned sweep (hydra/sweeper=tuned), chosen on validation, its test metric reported.

MLCommons AlgoPerf's external tuning: each method gets the same trials; per study the best trial by
the VALIDATION metric (or by time to the validation target); the test metric of that trial is what is
reported, never what chooses it. A best value in the outer `edge` of its searched range is flagged:
the optimum may lie outside the space ("widen optimizer.lr's range").

A "method" here is everything a trial's config says less what tuning sets: the optimizer's TRACED values
and the seed (its study). Pure pandas over `harness.analysis.frames.load_records`' frame.

Timed figures (step time, time to target) of the chosen trial are NOT taken from its group: a trial trained
inside a vectorized group reports the group's timing. Once the trials have ended, the tuned sweeper trains each
such chosen trial again alone (`timed_reruns`), in the same sweep, as a run with `rerun_of` set; `best_runs` takes
the chosen trial's timed figures from that run. `rerun` is the command that does the same by hand.
"""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path
from typing import Any

import pandas as pd

from harness.core.config import TUNABLE
from harness.core.fields import FIELDS, is_under
from harness.core.metrics import METRICS

_SET_BY_TUNING = (*TUNABLE.values(), "task.seed")
METHOD_AXES = ("task", "model", "fine_tuning", "freeze", "method", "optimizer", "steps")  # what a row names
_NOT_RERUN = ("vectorize.points", "results_dir", "tracker", "report", "resume")
# What a vectorized group measures as a whole (its call, its compile, its buffers): no trial's own figure.
GROUP_MEASURED = ("run_s", "one_step_call", "in_loop_s", "compile_s", "time_to_target", "memory_bytes", "temp_bytes",
                  "achieved_flops", "peak_fraction", "dispatch_overhead_s", "flops_per_step")


# How a run ran, from the one table of fields: its times, program, memory and plausibility. A chosen trial's rerun
# alone gives these; its quality (what the trial was chosen on and reports) stays the trial's own.
RAN = tuple(f.column for f in FIELDS if any(is_under(path, ("timing", "plausibility", "target.time_s",
                                                             "target.time_with_compile_s")) for path in f.paths))


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


def _main_metrics(df: pd.DataFrame) -> list[str]:
    """The main metrics of the tasks in `df`, found by which validation columns they have (MSE for regression,
    accuracy for classification; a sweep of both kinds has both)."""
    return [name for name, metric in METRICS.items()
            if metric.main and f"val_{name}" in df and df[f"val_{name}"].notna().any()]


def _main_metric(df: pd.DataFrame) -> str:
    """The first of `_main_metrics`; ValueError when the records have no validation metric."""
    found = _main_metrics(df)
    if not found:
        raise ValueError("no validation metric in these records (a sweep from before validation splits?)")
    return found[0]


def best_trials(df: pd.DataFrame, space: dict[str, Any], by: str = "val", metric: str | None = None,
                edge: float = 0.1) -> pd.DataFrame:
    """Per method and study (seed): the best trial, chosen on validation only.

    df: `load_records`' frame of a tuned sweep; space: the searched values of the sweep's optimizer
    ({name: {low, high, scale}}, hydra.sweeper.tune.space.<optimizer>); by: "val" (the best final
    validation `metric`, by default each task's main metric) or "time_to_target" (the fastest to the
    validation target; not reached: never best). Failed and diverged trials are never best. A tie goes to the
    better value of the task's other validation metrics (its loss first), then to the config's text.

    One row per (method, study): the method's axes, `trials`, the chosen values, `metric`, `val_<metric>`,
    `test_<metric>` of that trial (reported, not chosen on), `edge` notes and `rerun`.
    """
    if by not in ("val", "time_to_target"):
        raise ValueError(f"by={by!r}: choose on 'val' or 'time_to_target'")
    ok = trials_of(df)
    ok = ok[ok["status"] == "ok"].copy()
    ok["method_key"] = ok["config_key"].map(method_key)
    fallback = metric or _main_metric(ok if len(ok) else df)
    rows = []
    axes = [c for c in METHOD_AXES if c in ok]
    for (_, seed), trials in ok.groupby(["method_key", "seed"], sort=False, dropna=False):
        # Each task by its own main metric: a sweep of regression and classification workloads (a tuned profile)
        # chooses transfer's trials on validation MSE and digits' on validation accuracy.
        name = metric or next((n for n in _main_metrics(trials)), fallback)
        if by == "val":
            score = trials[f"val_{name}"].astype(float)
            trials = trials.assign(_score=score if METRICS[name].better == "lower" else -score)
        else:
            reached = trials["target_reached"].fillna(False).astype(bool)
            trials = trials.assign(_score=trials["time_to_target_s"].astype(float).where(reached))
        # Ties (an accuracy on a few hundred validation rows ties often) go to the task's other validation metrics,
        # the loss first, then to the config's text: the choice never depends on the order the rows come in.
        ties = {f"_tie_{n}": trials[f"val_{n}"].astype(float) * (1 if METRICS[n].better == "lower" else -1)
                for n in sorted((n for n in METRICS if n != name and f"val_{n}" in trials),
                                key=lambda n: not METRICS[n].loss)}
        ranked = trials.assign(**ties).dropna(subset=["_score"]).sort_values(["_score", *ties, "config_key"],
                                                                             kind="stable")
        if ranked.empty:
            continue
        best = ranked.iloc[0]
        values = searched(best["config_key"], space)
        rows.append({
            **{c: best[c] for c in axes},
            "study_seed": seed,
            "trials": len(trials),
            **values,
            "metric": name,
            f"val_{name}": best[f"val_{name}"],
            # Reported, never chosen on: the selection above reads validation (or its target) only.
            f"test_{name}": best[f"test_{name}"] if f"test_{name}" in best else None,
            "edge": "; ".join(on_edge(space, {k: v for k, v in values.items() if v is not None}, edge)) or None,
            # What the trial computes, not where the sweep kept its results or whether it tracked them.
            "rerun": "harness " + shlex.join(o for o in shlex.split(best["overrides"] or "")
                                             if o.split("=", 1)[0] not in _NOT_RERUN),
            **({"path": best["path"]} if "path" in best else {}),  # which run: the findings compare these
        })
    return pd.DataFrame(rows)


def trials_of(df: pd.DataFrame) -> pd.DataFrame:
    """The sweep's trials: its runs less the timed reruns of chosen trials (which no choice may count twice)."""
    return df[df["rerun_of"].isna()] if "rerun_of" in df else df


def reruns_of(df: pd.DataFrame) -> pd.DataFrame:
    """The sweep's timed reruns of its chosen trials that finished ok."""
    return df[df["rerun_of"].notna() & (df["status"] == "ok")] if "rerun_of" in df else df.iloc[:0]


def in_group(df: pd.DataFrame) -> pd.Series:
    """Which runs trained in a vectorized group, so that their times are the group's."""
    return df["timing_points"].fillna(1) > 1 if "timing_points" in df else pd.Series(False, index=df.index)


def timed_reruns(df: pd.DataFrame, tune: dict[str, Any]) -> pd.DataFrame:
    """The chosen trials (`chosen`, on validation) that trained in a vectorized group, so their timed figures are
    the group's: each to be trained again alone. Their `path`s, in `chosen`'s order."""
    best = chosen(df, tune, "val")
    return best[best["path"].isin(set(df.loc[in_group(df), "path"]))].reset_index(drop=True) if len(best) else best


# --- a tuned sweep, found from its files ---------------------------------------------------------

TUNED_SWEEPER = "TunedSweeper"  # hydra/sweeper=tuned's class (hydra_plugins/harness_tuned_sweeper)
TUNE_FILE = "tune.json"  # a report's copy of the sweep's `tune` node: a report of runs.parquet alone is still tuned


def tune_of(sweep_dir: str | Path) -> dict[str, Any] | None:
    """The `hydra.sweeper.tune` node ({trials, studies, sampler, seed, space}) of a sweep run with
    hydra/sweeper=tuned: from Hydra's multirun.yaml in `sweep_dir` (or one sweep below it), else from the
    TUNE_FILE a report wrote there. None for any other sweep, or when neither reads."""
    from omegaconf import OmegaConf

    sweep_dir = Path(sweep_dir)
    for path in [sweep_dir / "multirun.yaml", *sorted(sweep_dir.glob("*/multirun.yaml"))]:
        try:
            sweeper = OmegaConf.to_container(OmegaConf.load(path).hydra.sweeper, resolve=False)
        except Exception:  # noqa: BLE001 - not a Hydra multirun config: not a tuned sweep
            continue
        if str(sweeper.get("_target_", "")).endswith(TUNED_SWEEPER) and isinstance(sweeper.get("tune"), dict):
            return sweeper["tune"]
    try:
        tune = json.loads((sweep_dir / TUNE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return tune if isinstance(tune, dict) and "trials" in tune else None


def chosen(df: pd.DataFrame, tune: dict[str, Any], by: str = "val") -> pd.DataFrame:
    """`best_trials` of a tuned sweep, each optimizer's runs against that optimizer's search space."""
    ok = df[df["status"] == "ok"]
    parts = [best_trials(ok[ok["optimizer"] == optimizer], tune["space"][optimizer], by=by)
             for optimizer in dict.fromkeys(ok["optimizer"]) if optimizer in (tune.get("space") or {})]
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def best_runs(df: pd.DataFrame, tune: dict[str, Any], by: str = "val") -> pd.DataFrame:
    """The runs `chosen` picks, one per method and study, with the searched values cleared: a method's best
    trial is compared with another's at each one's own values, so those values are no setting to pair on. A trial
    trained in a vectorized group has its group's times and memory cleared: they are no trial's own."""
    best = chosen(df, tune, by)
    if best.empty or "path" not in best:
        return df.iloc[:0]
    runs = df[df["path"].isin(set(best["path"]))].copy()
    if "timing_points" in runs:  # a grouped trial's times are its group's: its own come from its rerun alone
        runs = _timed_alone(runs, reruns_of(df))
    for column in ("lr", "weight_decay", *TUNABLE.values()):
        if column in runs:
            runs[column] = None
    if "config_key" in runs:  # one configuration per method and study: the searched values left out
        runs["config_key"] = [json.dumps({**{k: v for k, v in _config(key).items() if k not in TUNABLE.values()}},
                                         sort_keys=True) for key in runs["config_key"]]
    return runs


def _timed_alone(runs: pd.DataFrame, reruns: pd.DataFrame) -> pd.DataFrame:
    """`runs` with each grouped trial's timed figures replaced by those of its rerun alone (the run that computes what
    it computes: the same config key and seed), or cleared where it has none."""
    out = runs.copy()
    grouped = in_group(out)
    alone = reruns.drop_duplicates(["config_key", "seed"], keep="last").set_index(["config_key", "seed"])
    keys = pd.MultiIndex.from_frame(out[["config_key", "seed"]])
    found = grouped & keys.isin(alone.index)
    for column in [c for c in out if c.startswith(GROUP_MEASURED)]:
        out.loc[grouped & ~found, column] = None
    for column in [c for c in RAN if c in out and c in alone]:
        if found.any():
            out.loc[found, column] = alone[column].reindex(keys[found.to_numpy()]).to_numpy()
    return out


def _seed_mean_text(values: list[float]) -> str:
    """A metric's mean over studies with its bootstrap CI over them; fewer than MIN_SEEDS studies: none."""
    from harness.analysis.findings import MIN_SEEDS, mean_ci
    from harness.analysis.frames import number_text

    values = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not values:
        return "—"
    mean, low, high = mean_ci(values)
    if len(values) < MIN_SEEDS:
        return f"{number_text(mean)} ({len(values)} seed{'' if len(values) == 1 else 's'}: no CI, add seeds)"
    return f"{number_text(mean)} [{number_text(low)}, {number_text(high)}]"


def tuning_section(df: pd.DataFrame, tune: dict[str, Any]) -> str:
    """The report's "Tuning" section: per method its chosen trial (values, validation metric, test metric over the
    studies with their CI), edge flags and the command that reruns the chosen trial alone for timed figures."""
    from harness.analysis.frames import markdown_table, number_text

    try:
        _main_metric(df)
    except ValueError as err:
        return f"## Tuning\n\nNo best trial chosen: {err}.\n"
    best = chosen(df, tune, "val")
    if best.empty:
        return "## Tuning\n\nNo trial finished ok: no best trial to choose.\n"
    names = [n for n in dict.fromkeys(n for space in tune["space"].values() for n in space) if n in best]
    # The sweep's own reruns of its chosen trials (hydra/sweeper=tuned), by what they compute.
    key_of = dict(zip(df["path"], df["config_key"])) if "config_key" in df else {}
    reruns = reruns_of(df)
    in_groups = set(df.loc[in_group(df), "path"])
    rerun_jobs = {(key, seed): job for key, seed, job in zip(reruns.get("config_key", []), reruns.get("seed", []),
                                                             reruns.get("job_num", []))}
    keys = [c for c in METHOD_AXES if c in best and best[c].nunique(dropna=False) > 1] or \
        [c for c in ("method",) if c in best]
    metrics = list(dict.fromkeys(best["metric"]))  # a sweep of regression and classification tasks: both
    chosen_on, whose = " or ".join(metrics), "each task's" if len(metrics) > 1 else "the"
    rows, notes = [], []
    for _, g in best.groupby(keys, sort=False, dropna=False) if keys else [((), best)]:
        g = g.sort_values("study_seed", kind="stable")
        first = g.iloc[0]
        quality = {}
        for metric in metrics:  # each task by its own main metric; "—" under another kind's
            mine = g[g["metric"] == metric]
            quality[f"val {metric} (median)"] = number_text(mine[f"val_{metric}"].median()) if len(mine) else "—"
            quality[f"test {metric} (mean, 95% CI)"] = (_seed_mean_text(list(mine.get(f"test_{metric}", [])))
                                                        if len(mine) else "—")
        rows.append({**{k: first[k] for k in keys}, "studies": len(g), "trials": int(g["trials"].max()),
                     **{n: "; ".join(number_text(v) for v in g[n]) for n in names}, **quality})
        label = ", ".join(f"{k}={first[k]}" for k in keys) or "the method"
        notes += [f"- {label}: {edge}" for edge in g["edge"].dropna()]
        # A chosen trial that trained alone has its own times; one trained in a group, its rerun's.
        grouped = g[g["path"].isin(in_groups)]
        jobs = [rerun_jobs.get((key_of.get(path), seed)) for path, seed in zip(grouped["path"], grouped["study_seed"])]
        missing = grouped[[job is None for job in jobs]]
        if len(grouped) and missing.empty:
            notes.append(f"- {label}: timed figures from each study's chosen trial trained again alone, job"
                         f"{'' if len(jobs) == 1 else 's'} #{', #'.join(str(int(j)) for j in jobs)}")
        elif len(missing):  # a rerun that left no record: the command that does it by hand
            notes.append(f"- {label}, timed figures of study {missing.iloc[0]['study_seed']}'s chosen trial (run "
                         f"alone): `{missing.iloc[0]['rerun']}`")
    return "\n".join([
        "## Tuning\n",
        f"Each method's best of {tune.get('trials')} quasi-random trials ({tune.get('sampler', 'halton')}) per "
        f"study, {tune.get('studies', 1)} stud{'y' if tune.get('studies', 1) == 1 else 'ies'}, chosen on {whose} "
        f"validation {chosen_on} alone (harness.analysis.tuning); its test {chosen_on} is reported, never chosen "
        "on. Values per study; the test CI resamples the studies (their seeds). "
        + ("Trials trained in vectorized groups: their step time and time to target are the group's, so each chosen "
           "trial's timed figures come from a run of it alone (below).\n" if in_groups else
           "Each trial trained alone: its timed figures are its own.\n"),
        markdown_table(pd.DataFrame(rows)),
        *(["Edges and reruns:\n", "\n".join(notes) + "\n"] if notes else []),
    ])
