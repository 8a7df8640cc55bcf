"""The report's PNG figures, drawn from the runs DataFrame and its per-configuration summary.

Each `*_figure` function returns a matplotlib Figure, or the reason it has
nothing to draw as text, which report.md shows in the figure's place. Figures
live on their own Agg canvas: no pyplot, no global state, no display needed.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from harness.analysis.canvas import new_figure, plain_log_labels
from harness.analysis.findings import CONFIDENCE, run_to_run, samples, side_ci, step_time_column
from harness.analysis.frames import (
    ALWAYS_KEYS,
    follows,
    group_keys,
    groups,
    key_text,
    number_text,
    splitting_keys,
    summarize,
)
from harness.analysis.tables import pooled_axes, program_keys
from harness.analysis.tradeoffs import pareto_figure
from harness.core.files import atomic_path
from harness.core.metrics import METRICS

FIGURE_TITLES = {
    "step_time": "Step time per compiled program, with the findings' 95% confidence intervals",
    "training_curves": "Training curves",
    "time_vs_steps": "Run and compile time against step count",
    "frozen_drift": "Drift of the frozen parameters",
    "compile_vs_run": "Compile vs run time",
    "cost_vs_params": "Step time and memory against parameter count",
    "pareto": "Test quality against step time, memory and trainable parameters",
}
# Axes that change the parameter count (or only add points along a line): not what separates the lines.
# A model's name is not a size: a CNN and a ViT are two models, never one line through two sizes.
SIZE_KEYS = ("model.width", "model.depth", "lr", "steps", "experiment")
FIGURES = {name: f"fig_{name}.png" for name in FIGURE_TITLES}


def fitted(title: str, width_in: float) -> str:
    """`title`'s lines wrapped to a figure `width_in` inches wide at the medium font: never cut off at its edges.

    >>> fitted("a long line of words", 1.0)
    'a long line\\nof words'
    """
    return "\n".join(textwrap.fill(line, width=max(10, int(width_in * 11))) for line in title.split("\n"))


def _label(values: Mapping[str, Any], keys: Iterable[str]) -> str:
    return " · ".join(key_text(values[k]) if k in ALWAYS_KEYS else f"{k}={key_text(values[k])}" for k in keys)


def _varying(df: pd.DataFrame, keys: Iterable[str]) -> list[str]:
    """The keys that take more than one value in `df`: the ones worth naming in a legend."""
    return [k for k in keys if k in df.columns and df[k].nunique(dropna=False) > 1]


STYLES = ("-", "--", ":", "-.")
MAX_PANELS_PER_AXIS = 8


def training_curves_figure(df: pd.DataFrame, histories: Mapping[str, dict], question: Sequence[str] = (),
                           evaluations: Mapping[str, dict] | None = None) -> Figure | str:
    """The training loss against step (the first loss metric of harness.core.metrics a run logged) and, beside it,
    the test metric the run evaluated during training (its `target.evaluations`), one row of panels per workload,
    one line per run.

    Colour tells the first question axis that varies, line style the second; axes that follow from those (a
    strategy's freeze option) need no telling apart, and any other is named in the title.
    """
    evaluations = evaluations or {}
    runs = df[df["status"].isin(["ok", "diverged"]) & df["path"].map(lambda p: bool(histories.get(p)))]
    if runs.empty:
        return "no run has a training history"
    panel_keys = [k for k in PANEL_KEYS if k in runs and runs[k].nunique(dropna=False) > 1]
    varying = _varying(runs, [k for k in group_keys(runs) if k not in panel_keys])
    ordered = [k for k in question if k in varying] + [k for k in varying if k not in question]
    others = [k for k in splitting_keys(runs, panel_keys, ordered) if k not in panel_keys]
    # More lines than a reader can follow in one panel: the first question axis gets a panel per value instead,
    # while it has few values (a tuned sweep's learning rates, one per trial, would make a panel per run).
    while (others and runs[others[0]].nunique(dropna=False) <= MAX_PANELS_PER_AXIS
           and max(len(rows) for _, rows in (groups(runs, panel_keys) if panel_keys else [({}, runs)])) > 24):
        panel_keys.append(others.pop(0))
    colour_key = others[0] if others else None
    style_key = others[1] if len(others) > 1 and runs[others[1]].nunique() <= len(STYLES) else None
    colours = {v: f"C{i % 10}" for i, v in enumerate(dict.fromkeys(runs[colour_key]))} if colour_key else {}
    styles = {v: STYLES[i] for i, v in enumerate(dict.fromkeys(runs[style_key]))} if style_key else {}
    evaluated = {p: e for p, e in evaluations.items() if e and e.get("step") and p in set(runs["path"])}
    panels = list(groups(runs, panel_keys)) if panel_keys else [({}, runs)]
    # Each panel's train and test side by side; without test curves, train panels wrap three to a row.
    per_panel = 2 if evaluated else 1
    ncols = 2 if evaluated else min(3, len(panels))
    nrows = math.ceil(len(panels) * per_panel / ncols)
    width = max(7.5, 4.6 * ncols + 0.5)
    fig = new_figure(width, 2.9 * nrows + 1.5)
    grid = fig.subplots(nrows, ncols, sharex=True, squeeze=False)
    cells = list(grid.flat)
    for ax in cells[len(panels) * per_panel:]:
        ax.set_visible(False)
    pairs = [cells[i * per_panel:(i + 1) * per_panel] for i in range(len(panels))]
    losses = [m for m in METRICS.values() if m.loss]
    titles, tested = set(), set()
    for (panel, rows), (left, *right) in zip(panels, pairs):
        drawn = False
        for _, run in rows.iterrows():
            history = histories[run["path"]]
            colour = colours.get(run[colour_key], "C0") if colour_key else "C0"
            style = styles.get(run[style_key], "-") if style_key else "-"
            metric = next((m for m in losses if f"train_{m.name}" in history), None)
            if metric is not None:
                step = np.asarray(history.get("step", []), dtype=float)
                loss = np.asarray(history[f"train_{metric.name}"], dtype=float)
                keep = np.isfinite(loss) & (loss > 0)
                if len(step) == len(loss) and keep.any():
                    left.plot(step[keep], loss[keep], color=colour, ls=style, alpha=0.7, lw=1.1)
                    titles.add(metric.title)
                    drawn = True
            if right and (curve := evaluated.get(run["path"])):
                right[0].plot(curve["step"], curve["value"], color=colour, ls=style, alpha=0.8, lw=1.1, marker=".",
                              ms=3)
                tested.add(curve.get("metric") or "metric")
        name = " · ".join(key_text(panel[k]) if k in ALWAYS_KEYS else f"{k}={key_text(panel[k])}" for k in panel_keys)
        left.set_title(f"{name}: train" if name else "train", fontsize="medium")
        left.set_yscale("log")
        left.set_ylabel(f"train {' / '.join(sorted(titles)) or 'loss'} (log scale)")
        if drawn:
            plain_log_labels(left.yaxis)
        if right:
            right[0].set_title(f"{name}: test, evaluated during training" if name else
                               "test, evaluated during training", fontsize="medium")
            right[0].set_ylabel(f"test {' / '.join(sorted(tested)) or 'metric'}")
        for ax in (left, *right):
            ax.grid(True, alpha=0.3)
    for ax in cells[:len(panels) * per_panel]:
        ax.set_xlabel("step")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, label=f"{colour_key}={key_text(v)}") for v, c in colours.items()]
    handles += [Line2D([], [], color="0.3", ls=ls, label=f"{style_key}={key_text(v)}") for v, ls in styles.items()]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), max(2, int(width / 2.6))),
                   fontsize="small")
    rest = [k for k in others if k not in (colour_key, style_key)]
    fig.suptitle(fitted("Training curves, one line per run" + ("" if evaluated else "\n(no test metric was evaluated "
                                                               "during training: set train.eval_every)")
                        + (f"\n{', '.join(rest)} not told apart" if rest else ""), width), fontsize="medium")
    return fig


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


PANEL_KEYS = ("task", "model")  # one panel per workload: step times of two models share no scale worth reading


def step_time_figure(df: pd.DataFrame, question: Sequence[str] = ()) -> Figure | str:
    """Mean step time per compiled program with its bootstrap CI as the findings resample it (`side_ci`: runs,
    repeats, the spread between runs), one panel per workload, colour and marker keyed to the question's axes in
    config order; flagged timings left out.

    Dots with whiskers, never bars: the axis turns log only when the times span more than 10x, and says so.
    A point pools only runs of one program (`program_keys`); the title names what it pools and each tick
    how many runs it holds.
    """
    ok = df[df["status"] == "ok"]
    column = step_time_column(ok)
    flagged = ok["warning"].notna() if "warning" in ok else pd.Series(False, index=ok.index)
    shown = ok[~flagged]
    if shown.empty:
        return "no ok run recorded a plausible step time"
    all_keys = group_keys(shown)
    keys = program_keys(shown, all_keys)
    panel_keys = [k for k in PANEL_KEYS if k in keys and shown[k].nunique(dropna=False) > 1]
    point_keys = [k for k in keys if k not in panel_keys and shown[k].nunique(dropna=False) > 1]
    # Colour tells the question's first axis apart, also where a point pools several of its values (scratch and
    # finetune, one program: one colour for the pair); a key that follows from it (a strategy's freeze) adds nothing.
    asked = [q for q in question if q in shown and q not in panel_keys and shown[q].nunique(dropna=False) > 1]
    colour_key = asked[0] if asked else point_keys[0] if point_keys else None
    told = [k for k in point_keys if k != colour_key and not (colour_key and follows(shown, colour_key, k))]
    told = [k for k in asked if k in told] + [k for k in told if k not in asked]
    marker_key = told[0] if told and shown[told[0]].nunique() <= len(MARKERS) else None

    def colour_value(g: pd.DataFrame) -> str:
        return ", ".join(dict.fromkeys(key_text(v) for v in g[colour_key])) if colour_key else ""

    # One colour per value in config order, as the training curves draw it; a pooled point takes its first value's.
    rank = {v: i for i, v in enumerate(dict.fromkeys(key_text(v) for v in shown[colour_key]))} if colour_key else {}
    point_groups = [colour_value(g) for _, g in groups(shown, point_keys)] if point_keys else []
    colours = {v: f"C{rank.get(v.split(', ')[0], 0) % 10}" for v in dict.fromkeys(point_groups)}
    markers = {v: MARKERS[i] for i, v in enumerate(dict.fromkeys(shown[marker_key]))} if marker_key else {}
    between = run_to_run(shown, column) or 0.0  # the spread between runs the findings' intervals hold
    panels = list(groups(shown, panel_keys)) if panel_keys else [({}, shown)]
    points = max(len(list(groups(rows, point_keys))) if point_keys else 1 for _, rows in panels)
    width = min(16.0, max(6.0, 0.7 * points * len(panels) + 1.5))
    fig = new_figure(width, 5.0)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    drawn, spans = False, {}
    for ax, (panel, rows) in zip(axes, panels):
        labels = []
        for x, (values, g) in enumerate(groups(rows, point_keys) if point_keys else [({}, rows)]):
            mean, lo, hi = side_ci(samples(g, column), between=between)
            # The question's values first (a pooled axis lists those it holds), then what else tells points apart.
            labels.append(" · ".join([*([colour_value(g)] if colour_key else []),
                                      *(key_text(values[k]) for k in told)]) + f" (n={len(g)})")
            if not math.isfinite(mean):
                continue
            drawn = True
            spans.setdefault(id(ax), []).append(mean * 1e6)
            ax.errorbar([x], [mean * 1e6], yerr=[[(mean - lo) * 1e6 if math.isfinite(lo) else 0.0],
                                                 [(hi - mean) * 1e6 if math.isfinite(hi) else 0.0]],
                        fmt=markers.get(values.get(marker_key), "o"), ms=6, capsize=4,
                        color=colours.get(colour_value(g), "C0"))
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize="small")
        ax.set_xlim(-0.6, len(labels) - 0.4)
        ax.set_title(" · ".join(f"{k}={key_text(panel[k])}" for k in panel_keys) or None, fontsize="medium")
        ax.grid(True, axis="y", which="both", alpha=0.3)
    if not drawn:
        return "no ok run recorded a plausible step time"
    name = "in-loop step time" if column == "in_loop_s_per_step" else "run time / step"
    for ax in axes:
        means = spans.get(id(ax), [1.0])
        log = max(means) / max(min(means), 1e-12) > 10  # each panel its own scale: linear unless it spans 10x
        ax.set_ylabel(f"{name} (µs{', log scale' if log else ''})")
        if log:
            ax.set_yscale("log")
            plain_log_labels(ax.yaxis)
        else:
            ax.set_ylim(bottom=0)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, marker="o", ls="", label=f"{colour_key}={v}") for v, c in colours.items()]
    handles += [Line2D([], [], color="0.3", marker=m, ls="", label=f"{marker_key}={key_text(v)}")
                for v, m in markers.items()]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), max(2, int(width / 2.4))),
                   fontsize="small")
    pooled = pooled_axes(shown, all_keys, keys)
    fig.suptitle(fitted(f"Mean {name} per compiled program\nwhiskers: the findings' {CONFIDENCE:.0%} bootstrap CI"
                        + (f"; pooled over {', '.join(pooled)} (one compiled program per point)" if pooled else "")
                        + (f"; {int(flagged.sum())} implausible runs left out" if flagged.any() else ""), width),
                 fontsize="medium")
    return fig


def time_vs_steps_figure(summary: pd.DataFrame, keys: list[str]) -> Figure | str:
    """Run time per step and compile time against step count, log-log, median and min–max per setting."""
    ok = summary[summary["ok"] > 0]
    if "steps" not in ok or ok["steps"].nunique() < 2:
        return "the sweep has a single step count (sweep `train.steps=...` to draw this)"
    others = [k for k in keys if k != "steps"]
    fig = new_figure(11, 4.2)
    left, right = fig.subplots(1, 2)
    for i, (values, g) in enumerate(groups(ok, others) if others else [({}, ok)]):
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
        plain_log_labels(ax.xaxis)
        plain_log_labels(ax.yaxis)
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
    fig = new_figure(max(6.0, 1.2 * len(methods) * max(1, len(labels) / 2)), 4.2)
    ax = fig.subplots()
    for j, label in enumerate(labels):
        heights, texts = [], []
        for method in methods:
            rows = ok[(ok["method"] == method) & (bar_labels == label)]
            heights.append(rows["drift_l2_max"].max() if len(rows) else math.nan)
            bitwise = len(rows) and (rows["unchanged_runs"] == rows["unchanged_of"]).all()
            texts.append("" if not len(rows) else "bitwise 0" if bitwise else number_text(heights[-1]))
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
    fig = new_figure(9, 1.2 + 0.38 * len(labels))
    ax = fig.subplots()
    # Dots, not bars: the axis is log (compile and run differ by orders of magnitude), where a bar's length means
    # nothing.
    ax.plot(ok["compile_s_median"].to_numpy(float), y, "D", color="C3", label="compile (AOT, once)")
    ax.plot(ok["run_s_per_call_median"].to_numpy(float), y, "o", color="C0", label="run (one call, all steps)")
    ax.set_yticks(y, labels, fontsize="x-small")
    ax.invert_yaxis()
    ax.set(title="Compile vs run time (medians; compile: cold compiles)", xlabel="time (s, log scale)", xscale="log")
    ax.grid(True, axis="x", which="both", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=2, fontsize="x-small")
    return fig


def cost_vs_params_figure(summary: pd.DataFrame, keys: list[str]) -> Figure | str:
    """In-loop step time and memory of one call against parameter count, log-log, one line per method x freeze x ..."""
    ok = summary[(summary["ok"] > 0)].copy()
    ok["params"] = ok["trainable_params_median"].astype(float) + ok["frozen_params_median"].astype(float)
    if ok["params"].nunique() < 2:
        return "the sweep has a single model size (sweep model.width / model.depth to draw this)"
    if not any(c in ok and ok[c].notna().any() for c in ("in_loop_s_per_step_median", "memory_bytes_median")):
        return "no run recorded its own step time or memory"  # e.g. a tuned sweep's trials, trained in groups
    others = [k for k in keys if k not in SIZE_KEYS]
    fig = new_figure(11, 4.6)
    left, right = fig.subplots(1, 2)
    methods = list(dict.fromkeys(ok["method"]))
    styles = {value: style for value, style in zip(dict.fromkeys(ok["freeze"]), ("-", "--", ":", "-."))}
    for values, g in groups(ok, others) if others else [({}, ok)]:
        g = g.groupby("params", sort=True).median(numeric_only=True).reset_index()
        # Colour by method, line style by freeze option: 12 lines stay tellable apart.
        colour = f"C{methods.index(values['method']) % 10}" if "method" in values else "C0"
        style = styles.get(values.get("freeze"), "-")
        label = _label(values, _varying(ok, others)) or "all"
        left.plot(g["params"], g["in_loop_s_per_step_median"] * 1e3, style, marker="o", ms=4, color=colour,
                  label=label)
        right.plot(g["params"], g["memory_bytes_median"] / 2**20, style, marker="o", ms=4, color=colour)
    left.set(title="In-loop step time", xlabel="parameters (trainable + frozen)", ylabel="ms per step",
             xscale="log", yscale="log")
    right.set(title="Memory of one call (XLA: args + outputs + temps)", xlabel="parameters (trainable + frozen)",
              ylabel="MiB", xscale="log", yscale="log")
    for ax in (left, right):
        plain_log_labels(ax.yaxis)
        ax.grid(True, which="both", alpha=0.3)
    fig.legend(*left.get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize="x-small")
    fig.suptitle("Cost against model size (medians per configuration)")
    return fig


def write_figures(df: pd.DataFrame, histories: Mapping[str, dict], out_dir: Path,
                  question: Sequence[str] = (), evaluations: Mapping[str, dict] | None = None) -> dict[str, Path | str]:
    """Draws every figure into `out_dir`: {name: PNG path written, or the reason it was skipped}."""
    if not (df["status"] == "ok").any():
        return {name: "no run finished ok" for name in FIGURES}
    keys = group_keys(df)
    summary = summarize(df, keys)
    drawn = {
        "step_time": step_time_figure(df, question),
        "training_curves": training_curves_figure(df, histories, question, evaluations),
        "time_vs_steps": time_vs_steps_figure(summary, keys),
        "frozen_drift": frozen_drift_figure(summary, keys),
        "compile_vs_run": compile_vs_run_figure(summary, keys),
        "cost_vs_params": cost_vs_params_figure(summary, keys),
        "pareto": pareto_figure(df, question),
    }
    return {name: _save(fig, out_dir / FIGURES[name]) if isinstance(fig, Figure) else fig
            for name, fig in drawn.items()}


def _save(fig: Figure, path: Path) -> Path:
    with atomic_path(path) as tmp:  # whole or not at all (harness.core.files)
        fig.savefig(tmp, dpi=110)
    return path
