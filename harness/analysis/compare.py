"""`harness compare A B`: two sweeps matched by configuration, as ratios B/A with confidence intervals.

Configurations match on what a run computes (`config_key`) less the seed and any config
leaf only one sweep has, so an experiment renamed, moved, resumed or run by another version
of the harness still matches, and seeds are replicates: each ratio's 95% bootstrap CI covers
every timed repeat of every seed (harness.analysis.findings) and the spread of a
configuration between runs and between the two sweeps (`between_sweeps`). A change is
flagged only when the whole interval lies beyond the threshold, as `asv compare` and
criterion.rs do, and a step time below its noise floor (harness.analysis.resolution) is
"too short to resolve", never a change. Every compared column is a cost: higher is worse.
A side is a sweep's records, or the runs.parquet a committed reference keeps; the header
says where each side was measured.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from harness.analysis import findings
from harness.analysis.frames import (
    ALWAYS_KEYS,
    AXIS_COLUMNS,
    compile_sources,
    config_leaves,
    extra_axes,
    key_text,
    load_runs,
    markdown_table,
    nan_to_none,
    natural_order,
    number_text,
    splitting_keys,
    sweep_order,
    typed,
    without_seed,
)
from harness.analysis.resolution import IN_LOOP, Floor, floor_of, too_short
from harness.core.fields import ENVIRONMENT
from harness.core.files import atomic_path
from harness.core.metrics import METRICS
from harness.jobs.record import SCHEMA_VERSION

# (column, name in the table): costs (higher is worse), then each quality metric of harness.core.metrics
# that runs of both sweeps have. The step time is in-loop when both sweeps measured it.
COSTS = (
    ("in_loop_s_per_step", "in-loop step"),
    ("run_s_per_step", "run time / step"),
    ("time_to_target_s", "time to target"),
    ("compile_s", "compile"),
    ("memory_bytes", "memory"),
)
PARTS = ("ratio", "low", "high", "verdict")
MAD_EFFICIENCY = 0.37  # of the median absolute deviation against the standard deviation, for normal samples


def parse_threshold(text: str) -> float:
    """'5%' or '0.05' -> 0.05; a bare number must be a fraction below 1, so '5' is not read as 500%."""
    text = text.strip()
    percent = text.endswith("%")
    try:
        value = float(text[:-1]) / 100 if percent else float(text)
    except ValueError:
        value = float("nan")  # not a number: the one message below
    if not value > 0 or (not percent and value >= 1):
        raise ValueError(f"threshold {text!r}: give a percentage like 5% or a fraction like 0.05")
    return value


def with_option_values(argv: list[str], options: tuple[str, ...]) -> list[str]:
    """`argv` with each of `options` joined to its value (`--threshold -5%` -> `--threshold=-5%`): argparse
    takes a value that starts with '-' for another option, and the value's own check should answer it.

    >>> with_option_values(["a", "--threshold", "-5%"], ("--threshold",))
    ['a', '--threshold=-5%']
    """
    out = list(argv)
    for i in range(len(out) - 2, -1, -1):
        if out[i] in options and out[i + 1].startswith("-"):
            out[i:i + 2] = [f"{out[i]}={out[i + 1]}"]
    return out


def _compared_axes(df: pd.DataFrame) -> list[str]:
    """Axis columns that describe a configuration across sweeps: not the experiment's name, not the seed."""
    return [k for k in AXIS_COLUMNS if k not in ("experiment", "seed")] + extra_axes(df)


def _status(runs: pd.DataFrame) -> str:
    """'ok' when every run is, else the statuses seen, e.g. 'diverged,ok'."""
    statuses = sorted(set(runs["status"]))
    return "ok" if statuses == ["ok"] else ",".join(statuses)


def trained(df: pd.DataFrame) -> pd.Series:
    """How each run trained: "alone", or "group of K" (a vectorized job's point: its times, compile and memory are
    the group's). A tuned sweep trains a chosen trial twice, in its group and alone: one configuration, two programs.

    >>> trained(pd.DataFrame({"timing_points": [16, None, 1]})).tolist()
    ['group of 16', 'alone', 'alone']
    """
    points = df["timing_points"] if "timing_points" in df else pd.Series(None, index=df.index, dtype=float)
    return pd.Series(["alone" if pd.isna(k) or k <= 1 else f"group of {int(k)}" for k in points], index=df.index)


def per_config(df: pd.DataFrame, leaves: Collection[str] | None = None) -> pd.DataFrame:
    """One row per configuration and way it trained (`trained`; seeds pooled; config leaves not in `leaves` left
    out): axes, status, runs, overrides, the runs themselves, and their ok runs read once as mappings (`ok_runs`:
    every metric reads them). A configuration trained in a group and alone is two rows: two compiled programs."""
    axes = _compared_axes(df)
    df = df.assign(config=[without_seed(k, leaves) for k in df["config_key"]], trained=trained(df))
    records = findings.rows_by_index(df)
    rows = []
    for (key, how), g in df.groupby(["config", "trained"], dropna=False, sort=False):
        ok = g[g["status"] == "ok"]
        rows.append({"config_key": key, "trained": how, **{k: g[k].iloc[0] for k in axes}, "status": _status(g),
                     "runs": len(g), "seeds": g["seed"].nunique(), "overrides": g["overrides"].iloc[0],
                     "compile_source": compile_sources(ok), "rows": g, "ok_runs": [records[i] for i in ok.index]})
    return pd.DataFrame(rows, columns=["config_key", "trained", *axes, "status", "runs", "seeds", "overrides",
                                       "compile_source", "rows", "ok_runs"])


def compared_columns(a: pd.DataFrame, b: pd.DataFrame) -> list[tuple[str, str]]:
    """COSTS (less the in-loop step time when either sweep did not measure it, and the time to a target when
    either has none), then the train and test value of each metric both sweeps have."""
    both = all(any(findings.run_samples(run, IN_LOOP) for run in findings.ok_runs(df)) for df in (a, b))
    costs = [(name, title) for name, title in COSTS if (name != IN_LOOP or both)
             and (name != "time_to_target_s" or all(name in df and df[name].notna().any() for df in (a, b)))]
    quality = [(f"{split}_{m.name}", f"{split} {m.title}") for m in METRICS.values() for split in ("train", "test")]
    return costs + [(name, title) for name, title in quality
                    if all(name in df and df[name].notna().any() for df in (a, b))]


def strata(a: list[Mapping], b: list[Mapping], metric: findings.Measure) -> list[tuple[Any, list, list]]:
    """(seed, A samples, B samples) of one configuration's ok runs (`per_config`): one pair (seed None), or one per
    seed run on both sides for a paired metric (quality, time to target: a seed fixes the data and init on both
    sides, and the seeds are what its interval resamples, `findings.seed_ratio_ci`)."""
    if not metric.paired:
        return [(None, findings.runs_samples(a, metric.column), findings.runs_samples(b, metric.column))]
    seeds = [s for s in dict.fromkeys(r["seed"] for r in a) if s in {r["seed"] for r in b}]
    return [(s, findings.runs_samples([r for r in a if r["seed"] == s], metric.column),
             findings.runs_samples([r for r in b if r["seed"] == s], metric.column)) for s in seeds]


def estimate(pairs: list[tuple[Any, list, list]], metric: findings.Measure, between: float,
             seed: int) -> findings.Estimate:
    """B/A over `strata`' pairs: drawn from the seeds for a paired metric, else from the runs and repeats."""
    if metric.paired:
        return findings.seed_ratio_ci(pairs, seed=seed)
    return findings.ratio_ci([(a, b) for _, a, b in pairs], exact=metric.exact, between=between,
                             timed=metric.timed, seed=seed)


def _floor(a: pd.Series, b: pd.Series, metric: findings.Measure, threshold: float) -> Floor:
    """Whether both sides of a configuration resolve a timed `metric` (harness.analysis.resolution)."""
    return floor_of([*a["ok_runs"], *b["ok_runs"]], metric.column, threshold)


def between_sweeps(left: pd.DataFrame, right: pd.DataFrame, matched: list[str], column: str,
                   threshold: float) -> float | None:
    """The spread of a configuration's mean time between the two sweeps beyond its repeats (log scale, per side).

    Each matched configuration that resolves `column` on both sides gives a log ratio B/A (calls
    `held_up` left out); their spread about the median (a robust standard deviation, so that a
    few real changes do not widen it), bounded above as the run-to-run spread is
    (findings.spread_bound) and less what the repeats account for, is what two processes add to
    one configuration; half of its variance is each side's. Needs three configurations; else None.
    """
    logs, repeats = [], []
    for key in matched:
        a, b = left.at[key, "ok_runs"], right.at[key, "ok_runs"]
        if not floor_of([*a, *b], column, threshold).resolved:
            continue
        sides = [findings.runs_samples(side, column) for side in (a, b)]
        if not all(sides):
            continue
        sides = [[np.asarray(run)[~findings.held_up(run)] for run in side] for side in sides]
        values = [np.mean([run.mean() for run in side]) for side in sides]
        if min(values) <= 0:
            continue
        logs.append(math.log(values[1] / values[0]))
        repeats.append(sum(np.mean([findings.mean_variance(run) for run in side]) / len(side) for side in sides))
    if len(logs) < 3:
        return None
    spread = float(stats.median_abs_deviation(logs, scale="normal"))
    bound = findings.spread_bound(spread ** 2, MAD_EFFICIENCY * (len(logs) - 1), float(np.median(repeats)))
    return bound / math.sqrt(2)


def _compare_one(a: pd.Series, b: pd.Series, threshold: float, columns: list[tuple[str, str]],
                 spread: dict[str, float | None], seed: int, machine: Machines | None = None,
                 gate: str = "raw") -> dict[str, Any]:
    """Ratios B/A of one configuration with CIs and verdicts; flags for worse-beyond-threshold and status."""
    out: dict[str, Any] = {"status": a["status"] if a["status"] == b["status"] else f"{a['status']} → {b['status']}"}
    flags = []
    if a["status"] == "ok" and b["status"] != "ok":
        flags.append(f"status {b['status']} (regression)")
    elif a["status"] != "ok" and b["status"] == "ok":
        flags.append("status ok (improvement)")
    for name, title in columns:
        metric = findings.MEASURES[name]
        est = estimate(strata(a["ok_runs"], b["ok_runs"], metric), metric, spread.get(name) or 0.0, seed)
        word = findings.verdict(est, threshold, metric)
        if metric.of_group and not findings.like_groups(a["rows"], b["rows"]):
            word = findings.UNLIKE_GROUPS
        elif not (below := _floor(a, b, metric, threshold)).resolved:
            word = too_short(below)  # never slower, faster or a regression
        elif metric.timed and spread.get(name) is None:
            word = findings.NO_SPREAD
        else:
            word, adjusted = _machine_word(metric, est, word, threshold, machine, gate)
            if adjusted is not None:
                out[f"{name}_per_machine"] = adjusted.text()
        out.update({f"{name}_ratio": est.ratio, f"{name}_low": est.low, f"{name}_high": est.high,
                    f"{name}_verdict": word, f"{name}_text": est.text()})
        if word in (metric.higher, metric.lower):
            flags.append(f"{title} {est.text()} {word}" + (" (regression)" if word == metric.worse else ""))
    out["regression"] = any(f.endswith("(regression)") for f in flags)
    out["flags"] = "; ".join(flags)
    return out


def overall(left: pd.DataFrame, right: pd.DataFrame, matched: list[str], columns: list[tuple[str, str]],
            threshold: float, spread: dict[str, float | None], seed: int, machine: Machines | None = None,
            gate: str = "raw") -> pd.DataFrame:
    """Per metric, B/A over every matched configuration that resolves it: geometric mean, stratified CI, verdict."""
    rows = []
    for name, title in columns:
        metric = findings.MEASURES[name]
        alike = [k for k in matched if not metric.of_group or findings.like_groups(left.at[k, "rows"],
                                                                                 right.at[k, "rows"])]
        floors = {k: _floor(left.loc[k], right.loc[k], metric, threshold) for k in alike}
        resolved = [k for k in alike if floors[k].resolved]
        pairs = [pair for k in resolved for pair in strata(left.at[k, "ok_runs"], right.at[k, "ok_runs"], metric)]
        est = estimate(pairs, metric, spread.get(name) or 0.0, seed)
        word = findings.verdict(est, threshold, metric)
        if matched and not alike:
            word = findings.UNLIKE_GROUPS
        elif alike and not resolved:
            word = too_short(Floor(False, max(f.steps for f in floors.values())))
        elif metric.timed and spread.get(name) is None:
            word = findings.NO_SPREAD
        else:
            word, adjusted = _machine_word(metric, est, word, threshold, machine, gate)
        rows.append({"metric": title, "column": name, "ratio": est.ratio, "low": est.low, "high": est.high,
                     "configurations": est.strata, "too_short": len(alike) - len(resolved),
                     "estimate": est.text() + (f" (÷ machine: {adjusted.text()})"
                                               if metric.timed and (adjusted := per_machine(est, machine)) else ""),
                     "verdict": word, "regression": word == metric.worse, "run_to_run": spread.get(name)})
    return pd.DataFrame(rows, columns=["metric", "column", "ratio", "low", "high", "configurations", "too_short",
                                       "estimate", "verdict", "regression", "run_to_run"])


def compare(a: pd.DataFrame, b: pd.DataFrame, threshold: float = findings.THRESHOLD, *,
            seed: int = findings.SEED, gate: str = "raw") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(matched configurations with B/A ratios, CIs and flags, configurations found in one sweep only).

    A configuration whose runs were all ok in A and are not in B is a regression
    too. `compare.attrs["overall"]` holds `overall` over the matched configurations.
    Configurations match on the config leaves both sweeps have: a leaf one version of the
    harness added or dropped (`table.attrs["left_out"]` names them) does not part them.
    """
    leaves = {"A": config_leaves(a), "B": config_leaves(b)}
    common = leaves["A"] & leaves["B"]
    left = per_config(a, common).set_index(["config_key", "trained"], drop=False)
    right = per_config(b, common).set_index(["config_key", "trained"], drop=False)
    axes = list(dict.fromkeys([*_compared_axes(a), *_compared_axes(b)]))
    if (left["trained"] != "alone").any() or (right["trained"] != "alone").any():
        axes.append("trained")  # a vectorized sweep: which rows hold a group's times, which a run's own
    columns = compared_columns(a, b)

    def axes_of(side: pd.DataFrame, key: str) -> dict[str, Any]:
        return {k: side.at[key, k] if k in side else None for k in axes}

    matched = [key for key in left.index if key in right.index]
    # Timed measures: the larger of each sweep's own run-to-run spread and the spread between the sweeps;
    # None when neither sweep can measure one.
    spread = {}
    for name, _ in columns:
        if findings.MEASURES[name].timed:
            # Runs of one program in either sweep, or in both (an unchanged program: its spread spans processes).
            measured = [findings.run_to_run(pd.concat([a, b], ignore_index=True), name, threshold),
                        between_sweeps(left, right, matched, name, threshold)]
            spread[name] = max((m for m in measured if m is not None), default=None)
    machine = machines(a, b)
    rows = [{**axes_of(left, key), "seeds": int(min(left.at[key, "seeds"], right.at[key, "seeds"])),
             **_compare_one(left.loc[key], right.loc[key], threshold, columns, spread, seed, machine, gate)}
            for key in matched]
    unmatched = [{"only in": name, **axes_of(side, key), "status": side.at[key, "status"],
                  "overrides": side.at[key, "overrides"]}
                 for name, side, other in (("A", left, right), ("B", right, left))
                 for key in side.index.difference(other.index, sort=False)]
    table = pd.DataFrame(rows, columns=[*axes, "seeds", "status",
                                        *(f"{name}_{part}" for name, _ in columns for part in (*PARTS, "text")),
                                        "regression", "flags"])
    per_machine_columns = [f"{name}_per_machine" for name, _ in columns if any(f"{name}_per_machine" in r for r in rows)]
    table = table.assign(**{c: [r.get(c) for r in rows] for c in per_machine_columns})
    table = typed(table)
    table.attrs["machines"] = machine
    table.attrs["overall"] = overall(left, right, matched, columns, threshold, spread, seed, machine, gate)
    table.attrs["columns"] = columns
    table.attrs["left_out"] = {side: sorted(found - common) for side, found in leaves.items()}
    return table, typed(pd.DataFrame(unmatched, columns=["only in", *axes, "status", "overrides"]))


REGENERATE = "results/reference/regenerate.sh"
NUMERICS = "numerics differ between these machines"
MACHINE_FIELDS = ("cpu_model", "device_kind")  # what makes two sides two machines (not two processes of one)


@dataclass(frozen=True)
class Machines:
    """Where the two sides ran when they ran on two machines: what differs, and the machine's own time ratio B/A
    (each side's calibrated matmul peak, A's over B's: above 1, B's machine is slower), None when not calibrated."""

    differ: str
    time_ratio: float | None


def machines(a: pd.DataFrame, b: pd.DataFrame) -> Machines | None:
    """The two machines when the sides ran on different CPU models or devices, else None."""
    def values(df: pd.DataFrame, name: str) -> str:
        return ", ".join(sorted({key_text(v) for v in df[name] if nan_to_none(v) is not None})) if name in df else ""

    differ = [f"{name} A {values(a, name)}, B {values(b, name)}" for name in MACHINE_FIELDS
              if values(a, name) and values(b, name) and values(a, name) != values(b, name)]
    if not differ:
        return None
    peaks = [pd.to_numeric(df["calibrated_flops_per_s"], errors="coerce").median()
             if "calibrated_flops_per_s" in df else math.nan for df in (a, b)]
    ratio = peaks[0] / peaks[1] if all(math.isfinite(p) and p > 0 for p in peaks) else None
    return Machines("; ".join(differ), ratio)


def per_machine(est: findings.Estimate, machine: Machines | None) -> findings.Estimate | None:
    """A timed ratio B/A divided by the machines' own time ratio: an estimate of what the code changed, were the
    two machines to differ on this work as they do on a matmul. None without two calibrated machines."""
    if machine is None or machine.time_ratio is None:
        return None
    return findings.Estimate(est.ratio / machine.time_ratio, est.low / machine.time_ratio,
                             est.high / machine.time_ratio, est.strata, est.samples)


def _machine_word(metric: findings.Measure, est: findings.Estimate, word: str, threshold: float,
                  machine: Machines | None, gate: str) -> tuple[str, findings.Estimate | None]:
    """(the verdict once the two machines are taken into account, the per-machine estimate of a timed ratio).

    Quality that differs between two machines is their numerics (another CPU rounds a pretraining differently),
    unless `gate` holds "exact"; a timed verdict is the raw ratio's unless `gate` holds "calibrated"
    (e.g. "calibrated+exact")."""
    if machine is None:
        return word, None
    adjusted = per_machine(est, machine) if metric.timed else None
    quality = metric.column.startswith(("train_", "test_"))
    if quality and "exact" not in gate and word in (metric.higher, metric.lower):
        return NUMERICS, None
    if adjusted is not None and "calibrated" in gate and word in (metric.higher, metric.lower,
                                                                   findings.NO_DIFFERENCE, "inconclusive",
                                                                   f"within ±{threshold:.0%}"):
        return findings.verdict(adjusted, threshold, metric), adjusted
    return word, adjusted


def stale_schema(df: pd.DataFrame) -> int | None:
    """The record schema of `df`'s runs when it is not the one this harness writes (their config keys cannot match
    a current sweep's), else None."""
    found = {int(v) for v in df["schema_version"].dropna()} if "schema_version" in df else set()
    return next((v for v in sorted(found) if v != SCHEMA_VERSION), None)


def why_unmatched(a: pd.DataFrame, b: pd.DataFrame, shown: int = 4) -> str:
    """Why no configuration of A is in B: the config leaves both sides have whose values the two sides never share
    (e.g. 'model.width: A 16, 64; B 128'), the seed aside."""
    def values(df: pd.DataFrame) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for key in df["config_key"].dropna():
            try:
                leaves = json.loads(key)
            except (TypeError, ValueError):
                continue
            for leaf, value in leaves.items():
                out.setdefault(leaf, set()).add(json.dumps(value, sort_keys=True))
        return out

    left, right = values(a), values(b)
    differ = [f"{leaf}: A {', '.join(sorted(left[leaf]))}; B {', '.join(sorted(right[leaf]))}"
              for leaf in sorted(left.keys() & right.keys()) if leaf != "task.seed" and not left[leaf] & right[leaf]]
    if not differ:
        return "no single config leaf parts them; their combinations of values differ"
    more = f" (and {len(differ) - shown} more)" if len(differ) > shown else ""
    return "config leaves with no value in common: " + " | ".join(differ[:shown]) + more


def _shown_axes(*frames: pd.DataFrame) -> list[str]:
    """Axis columns worth a column in a printed table: method, freeze, optimizer and whatever varies."""
    names = list(dict.fromkeys(c for f in frames for c in [*(k for k in f.columns if k in AXIS_COLUMNS),
                                                             *extra_axes(f)]))
    rows = [r for f in frames for r in f.reindex(columns=names).to_dict("records")]
    if not rows:
        return list(ALWAYS_KEYS)
    return splitting_keys(typed(pd.DataFrame(rows, columns=names)), ALWAYS_KEYS, names)


# Where two sweeps were measured: the same, or not, in these (the calibrated peaks as medians and a ratio).
MACHINE = [f.column for f in ENVIRONMENT if f.kind is not float] + ["git_commit"]
PEAKS = {"calibrated_flops_per_s": ("calibrated matmul peak", 1e-9, "GFLOP/s"),
         "calibrated_copy_bytes_per_s": ("calibrated copy rate", 1e-9, "GB/s")}


def environment_lines(a: pd.DataFrame, b: pd.DataFrame) -> list[str]:
    """Where the two sweeps were measured: what is the same, what differs (versions, machine, commit, calibrated
    peaks), and what one of them did not record (a runs.parquet older than those fields)."""
    same, differ, unrecorded, peaks = [], [], [], []
    for name in MACHINE:
        values = [", ".join(sorted({key_text(v) for v in df[name] if nan_to_none(v) is not None})) if name in df
                  else "" for df in (a, b)]
        if not all(values):
            unrecorded += [name] if any(values) else []
        elif values[0] == values[1]:
            same.append(f"{name} {values[0]}")
        else:
            differ.append(f"{name}: A {values[0]}, B {values[1]}")
    for name, (title, scale, unit) in PEAKS.items():
        medians = [pd.to_numeric(df[name], errors="coerce").median() if name in df else math.nan for df in (a, b)]
        if all(math.isfinite(m) for m in medians):
            peaks.append(f"{title} A {number_text(medians[0] * scale)} {unit}, B {number_text(medians[1] * scale)} "
                         f"{unit} (B/A ×{number_text(medians[1] / medians[0])})")
    lines = [f"Measured alike: {'; '.join(same)}." if same else "",
             f"**Measured differently**: {'; '.join(differ)}." if differ else "",
             f"Each process's calibration (median over the runs): {'; '.join(peaks)}." if peaks else "",
             f"Not recorded by one side (older records or runs.parquet): {', '.join(unrecorded)}." if unrecorded else ""]
    return [line for line in lines if line]


def compare_markdown(table: pd.DataFrame, unmatched: pd.DataFrame, threshold: float, a: Path, b: Path,
                     header: list[str] = ()) -> str:
    """The comparison as markdown: where each side was measured, the overall ratios, then B/A per configuration
    (regressions in bold)."""
    keys = _shown_axes(table, unmatched) + (["trained"] if "trained" in table else [])
    columns = table.attrs.get("columns", [])
    everything = table.attrs.get("overall")
    timed = everything[everything["column"].map(lambda c: findings.MEASURES[c].timed)] if everything is not None \
        else pd.DataFrame(columns=["configurations", "run_to_run"])
    spread = timed["run_to_run"].dropna()
    lines = ["# Compare: B / A\n", f"A: `{a}`  \nB: `{b}`  \nthreshold: {threshold:.1%}; ratios B/A with "
             f"{findings.CONFIDENCE:.0%} bootstrap CIs over repeats and seeds (seeded), holding the spread of one "
             f"configuration between runs and between the sweeps"
             + (f" (±{max(spread):.1%}, log scale)" if len(spread) else "")
             + "; a change is called only when the whole CI lies beyond the threshold, and a step time whose work is "
             f"within the jitter of a call is {findings.TOO_SHORT}, never a change. Higher is worse for every "
             "column.\n"]
    if (machine := table.attrs.get("machines")) is not None:
        lines.append(f"**Two machines**: {machine.differ}. Every timed verdict compares the machines as well as "
                     "the code; "
                     + (f"the machines' own time ratio B/A on a matmul is ×{number_text(machine.time_ratio)} (each "
                        "side's calibrated peak), and '÷ machine (estimate)' divides each timed ratio by it: an "
                        "estimate, since work other than a matmul need not scale alike. "
                        if machine.time_ratio else "neither side's calibrated peak is known to divide by. ")
                     + f"Quality that differs reads \"{NUMERICS}\" (--exact-quality to call it).\n")
    lines += [line + "\n" for line in header]
    if (timed["configurations"] > 0).any() and timed.loc[timed["configurations"] > 0, "run_to_run"].isna().any():
        lines.append("**No spread between runs could be measured** (fewer than three matched configurations resolve "
                     "a step time, and no two runs of one compiled program): the step-time intervals hold each run's "
                     "repeats only, and two processes can differ by more, so they call nothing. Add seeds or "
                     "configurations.\n")
    left_out = {side: names for side, names in table.attrs.get("left_out", {}).items() if names}
    if left_out:
        lines.append("Config leaves in one sweep only, left out of the match: "
                     + "; ".join(f"{side}: {', '.join(names)}" for side, names in left_out.items()) + ".\n")
    if everything is not None and len(everything):
        lines.append(f"Over all {len(table)} matched configurations (geometric mean):\n")
        lines.append(markdown_table(pd.DataFrame({
            "metric": everything["metric"], "B/A [95% CI]": everything["estimate"],
            "verdict": [f"**{v}**" if bad else v for v, bad in zip(everything["verdict"], everything["regression"])]})))
    if len(table):
        shown = {k: table[k] for k in keys}
        shown["seeds"] = table["seeds"]
        shown["status"] = table["status"]
        for name, title in columns:
            worse = findings.MEASURES[name].worse
            shown[f"{title} B/A"] = [f"**{text} {word}**" if word == worse else findings.estimate_cell(text, word)
                                     for text, word in zip(table[f"{name}_text"], table[f"{name}_verdict"])]
            if f"{name}_per_machine" in table:
                shown[f"{title} ÷ machine (estimate)"] = [key_text(v) for v in table[f"{name}_per_machine"]]
        shown["flags"] = table["flags"]
        lines.append(markdown_table(pd.DataFrame(shown)))
    else:
        lines.append("No configuration is in both sweeps.\n")
    if len(unmatched):
        lines.append("Unmatched (in one sweep only; a run only in A is missing from B: a regression):\n")
        lines.append(markdown_table(unmatched[["only in", *keys, "status", "overrides"]]))
    return "\n".join(lines)


def regressions(table: pd.DataFrame) -> int:
    """Configurations with a regression, plus one if the overall ratio of some metric is one."""
    per_config = int(table["regression"].sum()) if len(table) else 0
    everything = table.attrs.get("overall")
    return per_config + int(everything is not None and len(everything) and everything["regression"].any())


def main_compare(argv: list[str] | None = None) -> int:
    """`harness compare A B [--threshold 5%] [--fail-on-regression] [--out FILE]`; returns the exit code."""
    parser = argparse.ArgumentParser(prog="harness compare",
                                     description="Ratios B/A per matching configuration of two sweeps.")
    parser.add_argument("a", type=Path, help="baseline sweep directory")
    parser.add_argument("b", type=Path, help="new sweep directory")
    parser.add_argument("--threshold", default="5%", help="flag changes beyond this (5%% or 0.05; default 5%%)")
    parser.add_argument("--fail-on-regression", action="store_true",
                        help="exit 1 when a cost is higher beyond the threshold with its whole 95%% CI, or a "
                             "configuration of A is missing from B")
    parser.add_argument("--out", type=Path, help="also write the table: .csv for CSV, anything else markdown")
    parser.add_argument("--calibrated", action="store_true",
                        help="on two machines, give timed verdicts (and --fail-on-regression) on the ratio divided "
                             "by the machines' calibrated time ratio, an estimate (default: the raw ratio)")
    parser.add_argument("--exact-quality", action="store_true",
                        help="on two machines, call a quality difference higher / lower (default: numerics differ)")
    args = parser.parse_args(with_option_values(sys.argv[1:] if argv is None else argv, ("--threshold",)))
    try:
        threshold = parse_threshold(args.threshold)
    except ValueError as err:
        parser.error(str(err))
    frames, sources = [], []
    for side, path in (("A", args.a), ("B", args.b)):
        if not path.is_dir():
            print(f"harness compare: not a directory: {path}", file=sys.stderr)
            return 2
        df, problems, source = load_runs(path)
        for bad, why in problems:
            print(f"unreadable record skipped: {bad}: {why}", file=sys.stderr)
        if df.empty:
            print(f"harness compare: {side} ({path}) holds no readable record: nothing to compare"
                  + (f" ({len(problems)} unreadable)" if problems else ""), file=sys.stderr, flush=True)
            return 1
        if (stale := stale_schema(df)) is not None:
            print(f"harness compare: {side} ({path}) holds records of schema {stale}, this harness writes schema "
                  f"{SCHEMA_VERSION}: their configurations cannot match; regenerate it ({REGENERATE})",
                  file=sys.stderr, flush=True)
            return 1
        frames.append(natural_order(df, sweep_order(path)))
        sources.append(source)
    table, unmatched = compare(*frames, threshold=threshold,
                               gate="+".join(name for asked, name in ((args.calibrated, "calibrated"),
                                                                      (args.exact_quality, "exact")) if asked) or "raw")
    if not len(table):  # an empty table printed as if compared hides the reason: say it instead
        print(f"harness compare: no configuration is in both sweeps ({len(unmatched)} in one only): "
              f"{why_unmatched(*frames)}", file=sys.stderr, flush=True)
        return 1
    header = [f"Read: A {sources[0]}, B {sources[1]}.", *environment_lines(*frames)]
    text = compare_markdown(table, unmatched, threshold, args.a, args.b, header)
    print(text, flush=True)
    if args.out:
        try:
            with atomic_path(args.out) as tmp:
                if args.out.suffix == ".csv":
                    pd.concat([table.assign(matched=True), unmatched.assign(matched=False)],
                              ignore_index=True).to_csv(tmp, index=False)
                else:
                    tmp.write_text(text)
        except OSError as err:
            print(f"harness compare: cannot write {err.filename or args.out}: {err.strerror or err}; the table above "
                  "is not saved", file=sys.stderr, flush=True)
            return 1
    regressed = int(table["regression"].sum()) if len(table) else 0
    everything = table.attrs.get("overall")
    worse = list(everything.loc[everything["regression"], "metric"]) if everything is not None else []
    lost = int((unmatched["only in"] == "A").sum()) if len(unmatched) else 0  # in the baseline, gone from B
    print(f"{len(table)} matched, {regressed} with a regression, {len(unmatched)} unmatched"
          + (f" ({lost} only in A: a regression)" if lost else "")
          + (f"; overall regression in {', '.join(worse)}" if worse else ""), flush=True)
    return 1 if (regressions(table) or lost) and args.fail_on_regression else 0
