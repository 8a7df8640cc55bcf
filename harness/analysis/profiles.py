"""Performance profiles across workloads: MLCommons AlgoPerf's scoring, with bands drawn from the seeds.

A problem is one workload (a record's task and model) and one seed. On each problem a method's time is
its time to the validation target (`time_to_target_s`), infinite when it missed it (or did not finish
ok); its ratio is that time over the fastest method's on that problem (every method's ratio is
infinite when none reached it). rho_m(tau) is the share of problems on which method m is within tau of
the fastest. The score is the area under rho over [1, TAU_MAX], divided by TAU_MAX - 1 (linear tau,
computed exactly from the step function): 1 for a method fastest everywhere, 0 for one never within
TAU_MAX. TAU_MAX = 4 as AlgoPerf's; AlgoPerf plots tau on a log scale, as the figure here does.

Bands: the seeds are resampled (a draw takes the k-th seed of every workload together, so that a
seed's problems stay one cluster; in a tuned sweep a seed is a study, and each study's chosen trial
goes with it), percentile 95%, seeded; from fewer than MIN_SEEDS seeds there is none. P(A before B) is
the share of problems on which A's time is below B's, a tie (both missed, or equal) counting half.

A method is each method at its tuned best in a tuned sweep (harness.analysis.tuning, the fastest trial
to the validation target per study), else each configuration as run: everything its runs vary less the
workload, the seed and what follows from the workload (its rate, steps, ...). Pure pandas / numpy.

>>> t = pd.DataFrame({"a": [1.0, 2.0], "b": [2.0, math.inf]}, index=["p1", "p2"])
>>> ratios(t).to_dict("list")
{'a': [1.0, 1.0], 'b': [2.0, inf]}
>>> score(ratios(t)).round(3).to_dict()
{'a': 1.0, 'b': 0.333}
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.analysis.canvas import new_figure, plain_log_labels
from harness.analysis.findings import CONFIDENCE, MIN_SEEDS, RESAMPLES, SEED
from harness.analysis.frames import follows, group_keys, key_text, markdown_table, number_text

TAU_MAX = 4.0
TIME = "time_to_target_s"
WORKLOAD_KEYS = ("task", "model")
# Set by the workload, never a method: a workload's rate, steps, batch size and target are its own.
_NOT_METHODS = (*WORKLOAD_KEYS, "seed", "experiment", "device")


def _workload(row: pd.Series) -> str:
    return "/".join(key_text(row[k]) for k in WORKLOAD_KEYS if k in row and row[k] is not None)


def method_keys(df: pd.DataFrame, candidates: Sequence[str] | None = None) -> list[str]:
    """The axes that tell methods apart: those of `candidates` (default: every group key) the runs vary, less the
    workload, the seed, any axis that takes one value per workload (it follows from the workload: its rate, its
    steps) and any that follows from another (a strategy's freeze option: "probe", not "backbone, probe").

    >>> df = pd.DataFrame({"task": ["a"] * 4 + ["b"] * 4, "steps": [5] * 4 + [9] * 4,
    ...                    "fine_tuning": ["scratch", "finetune", "probe", "lora4"] * 2,
    ...                    "freeze": ["none", "none", "backbone", "lora"] * 2})
    >>> method_keys(df, ["freeze", "fine_tuning", "steps"])
    ['fine_tuning']
    """
    keys = [k for k in (group_keys(df) if candidates is None else candidates)
            if k in df and k not in _NOT_METHODS and df[k].nunique(dropna=False) > 1]
    workloads = df.apply(_workload, axis=1) if len(df) else pd.Series(dtype=str)
    if workloads.nunique() > 1:
        keys = [k for k in keys if not follows(df, workloads, k)]
    # Dropped where another names it already; of two that name each other, the first stays.
    return [k for i, k in enumerate(keys)
            if not any(follows(df, j, k) and (not follows(df, k, j) or keys.index(j) < i) for j in keys if j != k)]


def _label(row: pd.Series, keys: Sequence[str]) -> str:
    return ", ".join(key_text(row[k]) for k in keys) or "all runs"


def times(df: pd.DataFrame, tune: dict[str, Any] | None = None) -> pd.DataFrame:
    """(workload, seed) x method: time to the validation target, inf where missed or not ok.

    A problem on which some method has no run at all (not run, as opposed to missed) is left out. A tuned
    sweep's method is its fastest trial to the target per study (`tuning.chosen(..., by="time_to_target")`).
    """
    from harness.analysis.tuning import METHOD_AXES, chosen

    ok = df[df["status"] == "ok"]  # the keys are read before any column is added
    runs = df.copy()
    runs["workload"] = runs.apply(_workload, axis=1) if len(runs) else []
    reached = runs["target_reached"].fillna(False).astype(bool) if "target_reached" in runs else False
    runs["_time"] = np.where((runs["status"] == "ok") & reached, runs[TIME].astype(float), math.inf)
    if tune is not None:
        # A trial's searched values (lr, ...) name no method: only the axes a tuned row names (METHOD_AXES) do.
        keys = method_keys(ok, METHOD_AXES) or ["method"]
        runs["method_label"] = runs.apply(lambda r: _label(r, keys), axis=1)
        best = chosen(runs, tune, by="time_to_target")
        fastest = set(best["path"]) if len(best) and "path" in best else set()
        # Every (method, study) that ran: its fastest trial's time, or inf when no trial reached the target.
        runs["_time"] = np.where(runs["path"].isin(fastest), runs["_time"], math.inf)
    else:
        keys = method_keys(ok) or ["method"]
        runs["method_label"] = runs.apply(lambda r: _label(r, keys), axis=1)
    table = runs.groupby(["workload", "seed", "method_label"], sort=False)["_time"].min().unstack("method_label")
    return table.dropna(how="any")


def ratios(t: pd.DataFrame) -> pd.DataFrame:
    """Each method's time over the fastest method's on each problem; inf for all where none reached the target."""
    best = t.min(axis=1)
    out = t.div(best.where(np.isfinite(best)), axis=0)
    return out.fillna(math.inf)


def rho(r: pd.DataFrame, taus: Sequence[float]) -> pd.DataFrame:
    """tau x method: the share of problems on which each method is within tau of the fastest.

    >>> rho(pd.DataFrame({"a": [1.0, 3.0]}), [1, 2, 3]).to_dict("list")
    {'a': [0.5, 0.5, 1.0]}
    """
    values = r.to_numpy(dtype=float)
    return pd.DataFrame((values[None, :, :] <= np.asarray(taus, dtype=float)[:, None, None]).mean(axis=1),
                        index=pd.Index(taus, name="tau"), columns=r.columns)


def score(r: pd.DataFrame, tau_max: float = TAU_MAX) -> pd.Series:
    """The area under rho over [1, tau_max] / (tau_max - 1), exact: a problem at ratio x adds
    (tau_max - x) / (tau_max - 1) when x <= tau_max, else 0, averaged over problems."""
    values = r.to_numpy(dtype=float)
    per_problem = np.where(values <= tau_max, (tau_max - values) / (tau_max - 1), 0.0)
    return pd.Series(per_problem.mean(axis=0), index=r.columns)


def before(t: pd.DataFrame, a: str, b: str) -> float:
    """P(A reaches the target before B): the share of problems where A's time is below B's, ties counting half.

    >>> before(pd.DataFrame({"a": [1.0, math.inf, 2.0], "b": [2.0, math.inf, 1.0]}), "a", "b")
    0.5
    """
    x, y = t[a].to_numpy(dtype=float), t[b].to_numpy(dtype=float)
    return float(np.mean(np.where(x < y, 1.0, np.where(x == y, 0.5, 0.0))))


def _seed_clusters(t: pd.DataFrame) -> np.ndarray:
    """Each problem's seed rank within its workload: the k-th seeds of all workloads are drawn together."""
    seeds = pd.Series([s for _, s in t.index], index=t.index)
    workloads = pd.Series([w for w, _ in t.index], index=t.index)
    return seeds.groupby(workloads).rank(method="dense").astype(int).to_numpy() - 1


def bands(t: pd.DataFrame, taus: Sequence[float], tau_max: float = TAU_MAX, *, confidence: float = CONFIDENCE,
          seed: int = SEED, resamples: int = RESAMPLES) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame] | None:
    """(rho low, rho high, score [low, high] per method) over seed resamples; None from fewer than MIN_SEEDS seeds.
    Ratios are recomputed per problem, so a draw changes only which problems count and how often."""
    clusters = _seed_clusters(t)
    k = int(clusters.max()) + 1 if len(clusters) else 0
    if k < MIN_SEEDS:
        return None
    r = ratios(t).to_numpy(dtype=float)
    draws = np.random.default_rng(seed).multinomial(k, np.full(k, 1 / k), size=resamples)
    weights = draws[:, clusters].astype(float)  # resample x problem: how often each problem is drawn
    weights /= weights.sum(axis=1, keepdims=True)
    within = (r[None, :, :] <= np.asarray(taus, dtype=float)[:, None, None]).astype(float)  # tau x problem x method
    rhos = np.einsum("rp,tpm->rtm", weights, within)
    per_problem = np.where(r <= tau_max, (tau_max - r) / (tau_max - 1), 0.0)
    scores = weights @ per_problem
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(rhos, [tail, 100 - tail], axis=0)
    s_low, s_high = np.percentile(scores, [tail, 100 - tail], axis=0)
    index = pd.Index(taus, name="tau")
    return (pd.DataFrame(low, index=index, columns=t.columns), pd.DataFrame(high, index=index, columns=t.columns),
            pd.DataFrame({"low": s_low, "high": s_high}, index=t.columns))


def taus(tau_max: float = TAU_MAX, points: int = 200) -> np.ndarray:
    """Log-spaced tau from 1 to tau_max, with every problem's ratio below it exact at its step."""
    return np.geomspace(1.0, tau_max, points)


def profile_figure(t: pd.DataFrame, tau_max: float = TAU_MAX):
    """rho_m(tau) per method on a log tau axis from 1 to tau_max, with the seeds' 95% band where there are enough."""

    grid = np.unique(np.concatenate([taus(tau_max), np.clip(ratios(t).to_numpy().ravel(), 1.0, tau_max)]))
    grid = grid[np.isfinite(grid)]
    curves, band = rho(ratios(t), grid), bands(t, grid, tau_max)
    fig = new_figure(7.6, 4.2)
    ax = fig.add_subplot(111)
    for method in t.columns:
        line, = ax.step(grid, curves[method], where="post", label=method)
        if band is not None:
            ax.fill_between(grid, band[0][method], band[1][method], step="post", alpha=0.2, color=line.get_color())
    ax.set_xscale("log")
    ax.set_xlim(1.0, tau_max)
    plain_log_labels(ax.xaxis)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("τ: time to the validation target / the fastest method's (log scale)")
    ax.set_ylabel("ρ(τ): share of (workload, seed) problems")
    ax.set_title("Performance profiles" + ("" if band is not None else f" (no band: fewer than {MIN_SEEDS} seeds)"))
    fig.legend(*ax.get_legend_handles_labels(), fontsize=7, loc="outside right upper")  # inside, it hid curves
    return fig


FIGURE = "fig_profile.png"
TITLE = "Performance profiles: time to the validation target across workloads"


def report_section(df: pd.DataFrame, out_dir: str | Path, tune: dict[str, Any] | None = None,
                   tau_max: float = TAU_MAX) -> tuple[str, Path | str] | None:
    """The report's performance-profile section and its figure (a path, or why it was not drawn); None unless
    the sweep's runs had a target and it has more than one workload or a time to a target, and two methods to
    profile."""
    from harness.analysis.figures import _save

    ok = df[df["status"] == "ok"]
    if "target_reached" not in ok or not ok["target_reached"].notna().any():
        return None  # no run had a target (train.target): nothing to profile
    workloads = ok.apply(_workload, axis=1).nunique() if len(ok) else 0
    has_time = TIME in df and df[TIME].notna().any()
    if not (workloads > 1 or has_time):
        return None
    try:
        t = times(df, tune)
    except ValueError as err:  # a tuned sweep without a validation metric (records from before validation splits)
        return f"## {TITLE}\n\nNot profiled: {err}.\n", str(err)
    if t.shape[1] < 2 or t.empty:
        return None
    r = ratios(t)
    s = score(r, tau_max)
    band = bands(t, taus(tau_max), tau_max)
    seeds = int(_seed_clusters(t).max()) + 1
    score_text = {m: number_text(s[m]) + (f" [{number_text(band[2].at[m, 'low'])}, "
                                          f"{number_text(band[2].at[m, 'high'])}]" if band is not None else "")
                  for m in t.columns}
    methods = list(t.columns)
    table = pd.DataFrame({
        "#": [str(i) for i in range(1, len(methods) + 1)],  # the P(before #) columns name methods by number
        "method": methods,
        f"score (τ ≤ {tau_max:g})": [score_text[m] for m in t.columns],
        "reached": [f"{int(np.isfinite(t[m]).sum())}/{len(t)}" for m in t.columns],
        "fastest on": [f"{int((r[m] == 1).sum())}/{len(t)}" for m in t.columns],
        **{f"P(before {j})": [number_text(before(t, a, b)) if a != b else "—" for a in t.columns]
           for j, b in enumerate(methods, start=1)},
    })
    protocol = ("each method at its fastest of the tuned trials per study (validation target)" if tune is not None
                else "each method as run, at one rate, not tuned")
    try:
        figure: Path | str = _save(profile_figure(t, tau_max), Path(out_dir) / FIGURE)
    except Exception as err:  # noqa: BLE001 - a figure that fails is named, never the report's end
        figure = f"{type(err).__name__}: {err}"
    text = [f"## {TITLE}\n",
            f"{len(t)} problems ({t.index.get_level_values(0).nunique()} workloads x their seeds), {protocol}. "
            f"A problem's ratio is a method's time to the validation target over the fastest method's on it; a "
            f"missed target is infinite. ρ(τ): the share of problems within τ; score: the area under ρ over "
            f"[1, {tau_max:g}] / {tau_max - 1:g} (AlgoPerf's τ_max, linear τ), "
            + (f"[95% CI] from the {seeds} seeds resampled" if band is not None
               else f"{seeds} seed{'s' if seeds != 1 else ''}: no CI, add seeds")
            + "; P(before n): the share of problems on which the row reaches the target before method n "
            "(ties half). "
            "Times of trials trained in vectorized groups are their group's share of a call.\n",
            markdown_table(table)]
    if isinstance(figure, Path):
        text.append(f"![{TITLE}]({figure.name})\n")
    else:
        text.append(f"_Not drawn: {figure}._\n")
    return "\n".join(text), figure
