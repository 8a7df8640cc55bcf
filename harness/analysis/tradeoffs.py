"""Cost and quality side by side, as Hugging Face PEFT's method comparison states them: per workload (task x
model) and configuration, trainable parameters, optimizer state, memory, in-loop step time, time to the
target, test quality and forgetting; where a step's flops go; and Pareto fronts of quality against cost.

A configuration is Pareto-optimal when no other configuration of its workload is at least as good in
quality and at least as cheap in the cost, and strictly better in one of them.

>>> pareto([(1.0, 0.9), (2.0, 0.95), (3.0, 0.93), (1.5, 0.85)], higher_is_better=True)
[True, True, False, False]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from harness.analysis.findings import THRESHOLD
from harness.analysis.frames import group_keys, key_text, number_text
from harness.core.metrics import METRICS

WORKLOAD = ("task", "model")
PROGRAM_COSTS = ("in_loop_s_per_step", "memory_bytes")  # costs of the compiled program, measured with noise (time)
# (column, axis label, scale) of the costs the Pareto panels put quality against.
COSTS = (("in_loop_s_per_step", "in-loop step (ms)", 1e3), ("memory_bytes", "memory (MiB)", 2.0**-20),
         ("trainable_params", "trainable parameters", 1.0))


def pareto(points: Sequence[tuple[float, float]], higher_is_better: bool, tolerance: float = 0.0) -> list[bool]:
    """Which (cost, quality) points no other point dominates (as cheap and as good, and better in one).

    Costs within a factor 1 + `tolerance` of each other are a tie: a difference the findings would not resolve
    (their threshold) neither makes a point cheaper nor keeps a worse one on the front.

    >>> pareto([(1.0, 0.95), (0.98, 0.93)], higher_is_better=True, tolerance=0.05)
    [True, False]
    """
    sign = 1.0 if higher_is_better else -1.0
    scored = [(cost, sign * quality) for cost, quality in points]

    def cheaper(c: float, cost: float) -> bool:
        return c * (1 + tolerance) < cost

    return [not any((cheaper(c, cost) or c <= cost * (1 + tolerance)) and q >= quality
                    and (cheaper(c, cost) or q > quality) for c, q in scored)
            for cost, quality in scored]


def main_metric(df: pd.DataFrame):
    """The main quality metric (harness.core.metrics) the runs have, e.g. accuracy; None if none."""
    return next((m for m in METRICS.values() if m.main and f"test_{m.name}" in df and df[f"test_{m.name}"].notna().any()),
                None)


def configurations(df: pd.DataFrame) -> tuple[list[str], pd.DataFrame]:
    """(the configuration keys, one row per workload and configuration: medians over its ok runs)."""
    ok = df[df["status"] == "ok"]
    if "warning" in ok and "in_loop_s_per_step" in ok:
        # A step time faster than the machine can compute (XLA hoisted the work) is no cost: it takes no part in
        # a median, a Pareto mark or the time to a target.
        flagged = ok["warning"].notna()
        ok = ok.assign(**{c: ok[c].mask(flagged) for c in ("in_loop_s_per_step", "time_to_target_s") if c in ok})
    keys = [k for k in dict.fromkeys([*WORKLOAD, *group_keys(ok)]) if k in ok and k != "seed"]
    columns = [c for c in ("trainable_params", "opt_state_bytes", "memory_bytes", "in_loop_s_per_step",
                           "time_to_target_s", "forgetting", *(f"test_{m}" for m in METRICS),
                           "forward_flops", "gradient_flops", "full_gradient_flops", "rest_flops", "step_flops")
               if c in ok and ok[c].notna().any()]
    table = ok.groupby(keys, dropna=False, sort=False)[columns].median().reset_index()
    table["runs"] = ok.groupby(keys, dropna=False, sort=False).size().to_numpy()
    if "program_fingerprint" in ok:  # the configuration's one compiled program, None when its runs ran several
        table["program"] = [g.iloc[0] if g.nunique() == 1 and g.notna().all() else None
                            for _, g in ok.groupby(keys, dropna=False, sort=False)["program_fingerprint"]]
    reached = ok.groupby(keys, dropna=False, sort=False)["target_reached"] if "target_reached" in ok else None
    if reached is not None:
        table["reached"] = [f"{int(g.fillna(False).sum())}/{len(g)}" for _, g in reached]
    return keys, table


def _text(value, scale: float = 1.0, integer: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    value = value + 0.0  # no "-0"
    return f"{int(round(value * scale)):,}" if integer else number_text(value * scale)


def peft_table(df: pd.DataFrame) -> tuple[list[str], pd.DataFrame]:
    """(its keys, the PEFT-style table): one row per workload and configuration; Pareto-optimal (quality vs step
    time) rows are marked *."""
    keys, table = configurations(df)
    metric = main_metric(df)
    quality = f"test_{metric.name}" if metric else None
    front = _front(table, "in_loop_s_per_step", metric)
    out = {k: [key_text(v) for v in table[k]] for k in keys}
    out["runs"] = table["runs"]
    for column, title, scale, integer in (("trainable_params", "trainable params", 1.0, True),
                                          ("opt_state_bytes", "optimizer state (KiB)", 2.0**-10, False),
                                          ("memory_bytes", "memory (MiB)", 2.0**-20, False),
                                          ("in_loop_s_per_step", "in-loop step (ms)", 1e3, False)):
        if column in table:
            out[title] = [_text(v, scale, integer) for v in table[column]]
    if "time_to_target_s" in table:
        out["time to target (s)"] = [_text(v) + (f" ({r})" if r else "")
                                     for v, r in zip(table["time_to_target_s"],
                                                     table["reached"] if "reached" in table else [""] * len(table))]
    if quality and quality in table:
        out[f"test {metric.title}"] = [_text(v) + (" *" if f else "") for v, f in zip(table[quality], front)]
    if "forgetting" in table:
        out["forgetting"] = [_text(v) for v in table["forgetting"]]
    return keys, pd.DataFrame(out)


def flops_table(df: pd.DataFrame) -> tuple[list[str], pd.DataFrame]:
    """(its keys, per configuration a step's MFLOP by part (harness.core.cost), and what freezing removed)."""
    keys, table = configurations(df)
    out = {k: [key_text(v) for v in table[k]] for k in keys}
    for part, title in (("forward", "forward"), ("gradient", "gradient (needed)"), ("rest", "rest"),
                        ("step", "step")):
        if f"{part}_flops" in table:
            out[f"{title} (MFLOP)"] = [_text(v, 1e-6) for v in table[f"{part}_flops"]]
    if "full_gradient_flops" in table and "gradient_flops" in table:
        out["freezing removed (MFLOP)"] = [_text(full - needed, 1e-6) for full, needed in
                                           zip(table["full_gradient_flops"], table["gradient_flops"])]
    return keys, pd.DataFrame(out)


def _front(table: pd.DataFrame, cost: str, metric) -> list[bool]:
    """Pareto-optimal rows of `table` for quality against `cost`, within each workload."""
    if metric is None or cost not in table or f"test_{metric.name}" not in table:
        return [False] * len(table)
    flags = pd.Series(False, index=table.index)
    for _, rows in table.groupby([k for k in WORKLOAD if k in table], dropna=False, sort=False):
        usable = rows[rows[cost].notna() & rows[f"test_{metric.name}"].notna()]
        costs = usable[cost].astype(float)
        if cost in PROGRAM_COSTS and "program" in usable:
            # Configurations of one compiled program (scratch and a fine-tune) cost the same: what their step
            # times differ by is drift between runs, never a reason for one to dominate the other.
            shared = usable["program"].notna()
            costs[shared] = usable[shared].groupby("program")[cost].transform("mean")
        marks = pareto(list(zip(costs, usable[f"test_{metric.name}"])), metric.better == "higher",
                       tolerance=THRESHOLD if cost in PROGRAM_COSTS else 0.0)
        flags[usable.index] = marks
    return flags.tolist()


def pareto_figure(df: pd.DataFrame) -> Figure | str:
    """Test quality against step time, memory and trainable parameters; Pareto-optimal configurations ringed."""
    metric = main_metric(df)
    keys, table = configurations(df)
    if metric is None or not len(table):
        return "no run has a main quality metric (accuracy, MSE)"
    costs = [c for c in COSTS if c[0] in table and (table[c[0]] > 0).any()]  # log axes: positive costs only
    if not costs:
        return "no run has a positive step time, memory or parameter count"
    label_keys = [k for k in keys if k not in WORKLOAD and table[k].nunique(dropna=False) > 1]
    fig = Figure(figsize=(4.6 * len(costs), 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(costs), squeeze=False)[0]
    workloads = list(table.groupby([k for k in WORKLOAD if k in table], dropna=False, sort=False))
    placed = []
    for ax, (column, title, scale) in zip(axes, costs):
        texts = []
        placed.append((ax, texts))
        front = _front(table, column, metric)
        for i, (workload, rows) in enumerate(workloads):
            colour = f"C{i % 10}"
            rows = rows[rows[column] > 0]
            x, y = rows[column].to_numpy(float) * scale, rows[f"test_{metric.name}"].to_numpy(float)
            ax.scatter(x, y, color=colour, s=22, label=" · ".join(map(key_text, np.atleast_1d(workload))))
            best = np.array([front[j] for j in rows.index])
            ax.scatter(x[best], y[best], facecolors="none", edgecolors="k", s=90, linewidths=1.2)
            order = np.argsort(x[best])
            ax.plot(x[best][order], y[best][order], color=colour, lw=0.8, alpha=0.6)
            for xi, yi, (_, row) in zip(x, y, rows.iterrows()):
                texts.append(ax.text(xi, yi, " · ".join(key_text(row[k]) for k in label_keys), fontsize=6.5,
                                     alpha=0.85))
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(title)
        ax.set_ylabel(f"test {metric.title}")
        ax.grid(True, alpha=0.3)
    # Below the panels: a legend inside would cover points, and place_labels draws before the figure is saved.
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center",
               ncols=min(len(workloads), 6), fontsize="x-small")
    runs = sorted(set(table["runs"]))
    fig.suptitle(f"Test {metric.title} against cost: each point a configuration's medians over its runs "
                 f"(n = {runs[0] if len(runs) == 1 else f'{runs[0]}–{runs[-1]}'})\n(ringed: Pareto-optimal within a "
                 f"workload; step times and memory within {THRESHOLD:.0%}, or of one compiled program, are ties)",
                 fontsize="medium")
    place_labels(fig, placed)
    return fig


def place_labels(fig: Figure, placed: list) -> None:
    """Moves each axes' point labels apart (adjustText) once the layout is final, so none overlaps another; labels
    it cannot part are left out rather than drawn as a smear (the table beside the figure names every point)."""
    from adjustText import adjust_text

    fig.canvas.draw()  # the constrained layout settles the axes' sizes that the label boxes are measured in
    for ax, texts in placed:
        if texts:
            adjust_text(texts, ax=ax, arrowprops={"arrowstyle": "-", "color": "0.5", "lw": 0.5}, ensure_inside_axes=True)
    renderer = fig.canvas.get_renderer()
    for ax, texts in placed:
        kept = []
        for text in texts:
            box = text.get_window_extent(renderer)
            if any(box.overlaps(other) for other in kept):
                text.set_visible(False)
            else:
                kept.append(box)
