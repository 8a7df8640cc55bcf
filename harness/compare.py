"""`harness compare A B`: two sweeps matched by configuration, as ratios B/A flagged past a threshold.

Configurations match on what a run computes (`config_key`), so an experiment
renamed, moved or resumed still matches. Every compared column is a cost:
higher is worse.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from harness.records import (ALWAYS_KEYS, AXIS_COLUMNS, compile_sources, load_records, markdown_table, median_range,
                             nan_to_none, number_text, splitting_keys, typed)

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
    axes = _compared_axes(df)
    rows = []
    for (key,), g in df.groupby(["config_key"], dropna=False, sort=False):
        ok = g[g["status"] == "ok"]
        out = {"config_key": key, **{k: g[k].iloc[0] for k in axes},
               "status": "ok" if len(ok) else ",".join(sorted(set(g["status"]))), "runs": len(g),
               "overrides": g["overrides"].iloc[0], "compile_source": compile_sources(ok)}
        for name, _ in COMPARED:
            runs = ok[ok["compile_source"] == "compiled"] if name == "compile_s" else ok
            out[name] = median_range(runs[name])[0]
        rows.append(out)
    return pd.DataFrame(rows, columns=["config_key", *axes, "status", "runs", "overrides", "compile_source",
                                       *(name for name, _ in COMPARED)])


def _ratio(a: float, b: float) -> float:
    if nan_to_none(a) is None or nan_to_none(b) is None:
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
            flags.append(f"{title} ×{number_text(ratio)} ({verdict})")
    out["regression"] = any(f.endswith("(regression)") for f in flags)
    out["flags"] = "; ".join(flags)
    return out


def compare(a: pd.DataFrame, b: pd.DataFrame, threshold: float = 0.05) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(matched configurations with B/A ratios and flags, configurations found in one sweep only).

    A run that was ok in A and is not in B is a regression too.
    """
    left = per_config(a).set_index("config_key", drop=False)
    right = per_config(b).set_index("config_key", drop=False)
    axes = list(dict.fromkeys([*_compared_axes(a), *_compared_axes(b)]))

    def axes_of(side: pd.DataFrame, key: str) -> dict[str, Any]:
        return {k: side.at[key, k] if k in side else None for k in axes}

    rows = [{**axes_of(left, key), **_compare_one(left.loc[key], right.loc[key], threshold)}
            for key in left.index if key in right.index]
    unmatched = [{"only in": name, **axes_of(side, key), "status": side.at[key, "status"],
                  "overrides": side.at[key, "overrides"]}
                 for name, side, other in (("A", left, right), ("B", right, left))
                 for key in side.index.difference(other.index, sort=False)]
    table = pd.DataFrame(rows, columns=[*axes, "status", *(f"{name}_{part}" for name, _ in COMPARED
                                                           for part in ("a", "b", "ratio", "flag")),
                                        "regression", "flags"])
    return typed(table), typed(pd.DataFrame(unmatched, columns=["only in", *axes, "status", "overrides"]))


def _shown_axes(*frames: pd.DataFrame) -> list[str]:
    """Axis columns worth a column in a printed table: method, freeze, optimizer and whatever varies."""
    names = list(dict.fromkeys(c for f in frames for c in f.columns if c in AXIS_COLUMNS or "." in c))
    rows = [r for f in frames for r in f.reindex(columns=names).to_dict("records")]
    if not rows:
        return list(ALWAYS_KEYS)
    return splitting_keys(typed(pd.DataFrame(rows, columns=names)), ALWAYS_KEYS, names)


def compare_markdown(table: pd.DataFrame, unmatched: pd.DataFrame, threshold: float, a: Path, b: Path) -> str:
    """The comparison as markdown: ratios B/A, flagged cells in bold, then unmatched runs."""
    keys = _shown_axes(table, unmatched)
    lines = ["# Compare: B / A\n", f"A: `{a}`  \nB: `{b}`  \nthreshold: {threshold:.1%} "
             "(higher is worse for every column)\n"]
    if len(table):
        shown = {k: table[k] for k in keys}
        shown["status"] = table["status"]
        for name, title in COMPARED:
            shown[f"{title} B/A"] = [f"**{number_text(r)}**" if flag else number_text(r)
                                     for r, flag in zip(table[f"{name}_ratio"], table[f"{name}_flag"])]
        shown["flags"] = table["flags"]
        lines.append(markdown_table(pd.DataFrame(shown)))
    else:
        lines.append("No configuration is in both sweeps.\n")
    if len(unmatched):
        lines.append("Unmatched (in one sweep only; a run only in A is missing from B: a regression):\n")
        lines.append(markdown_table(unmatched[["only in", *keys, "status", "overrides"]]))
    return "\n".join(lines)


def main_compare(argv: list[str] | None = None) -> int:
    """`harness compare A B [--threshold 5%] [--fail-on-regression] [--out FILE]`; returns the exit code."""
    parser = argparse.ArgumentParser(prog="harness compare",
                                     description="Ratios B/A per matching configuration of two sweeps.")
    parser.add_argument("a", type=Path, help="baseline sweep directory")
    parser.add_argument("b", type=Path, help="new sweep directory")
    parser.add_argument("--threshold", default="5%", help="flag changes beyond this (5%% or 0.05; default 5%%)")
    parser.add_argument("--fail-on-regression", action="store_true",
                        help="exit 1 when a regression is flagged or a configuration of A is missing from B")
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
    lost = int((unmatched["only in"] == "A").sum()) if len(unmatched) else 0  # in the baseline, gone from B
    print(f"{len(table)} matched, {regressions} with a regression, {len(unmatched)} unmatched"
          + (f" ({lost} only in A: a regression)" if lost else ""), flush=True)
    if not len(table):
        print("harness compare: no configuration is in both sweeps: nothing was compared", file=sys.stderr, flush=True)
        return 1
    return 1 if (regressions or lost) and args.fail_on_regression else 0
