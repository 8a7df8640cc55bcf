"""Cost and quality side by side, as Hugging Face PEFT's method comparison states them: per workload (task x
model) and configuration, trainable parameters, optimizer state, memory, in-loop step time, time to the
target, test quality and forgetting; where a step's flops go; and Pareto fronts of quality against cost.

A configuration is Pareto-optimal when no other configuration of its workload dominates it: resolved better in
quality or cost by the findings' own test (harness.analysis.findings: `ratio_ci`, `seed_ratio_ci` and `verdict` at
their threshold, step times spread by the sweep's run-to-run spread, quality paired by seed with its interval drawn
from the seeds, none from fewer than 3) and worse in neither
(resolved worse, or, where no test can be drawn such as a step below the noise floor, worse by the medians).
Configurations of one compiled program (one HLO fingerprint: scratch and a full fine-tune) share one
step time and one memory, the program's: what their runs' clocks differ by is drift, never a reason for one to
dominate the other.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from harness.analysis.canvas import plain_log_labels
from harness.analysis.findings import (
    CONFIDENCE,
    MEASURES,
    THRESHOLD,
    Measure,
    ratio_ci,
    rows_by_index,
    run_to_run,
    runs_samples,
    seed_ratio_ci,
    side_ci,
    verdict,
)
from harness.analysis.frames import follows, group_keys, key_text, lead_with, number_text
from harness.analysis.resolution import floor_of
from harness.core.metrics import METRICS

WORKLOAD = ("task", "model")
PROGRAM_COSTS = ("in_loop_s_per_step", "memory_bytes")  # costs of the compiled program, measured with noise (time)
# (column, axis label, scale) of the costs the Pareto panels put quality against.
COSTS = (("in_loop_s_per_step", "in-loop step (ms)", 1e3), ("memory_bytes", "memory (MiB)", 2.0**-20),
         ("trainable_params", "trainable parameters", 1.0))
MARKERS = "osD^vPX*"  # one per value of the axis a Pareto figure shows by marker
LABEL_ALL = 12  # a Pareto panel labels every point up to this many, else the ringed ones up to as many, else none
LABEL_MOVES = 400  # adjustText's moves per panel: where labels will not part, about half a second on 2026's CPUs
# How one configuration compares with another in one measure (`Dominance.compare`).
BETTER, LOOKS_BETTER, TIE, LOOKS_WORSE, WORSE = 2, 1, 0, -1, -2
# A count: any difference is real (threshold 0), and no interval is needed to say so.
TRAINABLE = Measure("trainable_params", "trainable parameters", "more", "fewer", exact=True)


def _measure(column: str) -> tuple[Measure, float]:
    """The findings' measure of a cost or quality column and the threshold its verdict is held to."""
    return (TRAINABLE, 0.0) if column == TRAINABLE.column else (MEASURES[column], THRESHOLD)


def main_metrics(df: pd.DataFrame) -> list:
    """Every main quality metric (harness.core.metrics) the runs have: one per kind of task in the sweep (MSE for
    regression, accuracy for classification), each workload measured by its own."""
    return [m for m in METRICS.values() if m.main and f"test_{m.name}" in df and df[f"test_{m.name}"].notna().any()]


def main_metric(df: pd.DataFrame):
    """The first main quality metric the runs have, e.g. accuracy; None if none."""
    return next(iter(main_metrics(df)), None)


def configurations(df: pd.DataFrame, question: Sequence[str] = ()) -> tuple[list[str], pd.DataFrame]:
    """(the configuration keys, the question's axes first; one row per workload and configuration: medians over
    its ok runs)."""
    ok = df[df["status"] == "ok"]
    if "warning" in ok and "in_loop_s_per_step" in ok:
        # A step time faster than the machine can compute (XLA hoisted the work) is no cost: it takes no part in
        # a median, a Pareto mark or the time to a target.
        flagged = ok["warning"].notna()
        ok = ok.assign(**{c: ok[c].mask(flagged) for c in ("in_loop_s_per_step", "time_to_target_s") if c in ok})
    keys = lead_with([k for k in dict.fromkeys([*WORKLOAD, *group_keys(ok)]) if k in ok and k != "seed"], question)
    columns = [c for c in ("trainable_params", "opt_state_bytes", "memory_bytes", "in_loop_s_per_step",
                           "time_to_target_s", "forgetting", *(f"test_{m}" for m in METRICS),
                           "forward_flops", "gradient_flops", "full_gradient_flops", "rest_flops", "step_flops")
               if c in ok and ok[c].notna().any()]
    table = ok.groupby(keys, dropna=False, sort=False)[columns].median().reset_index()
    table["runs"] = ok.groupby(keys, dropna=False, sort=False).size().to_numpy()
    if "program_fingerprint" in ok:  # the configuration's one compiled program, None when its runs ran several
        table["program"] = [g.iloc[0] if g.nunique() == 1 and g.notna().all() else None
                            for _, g in ok.groupby(keys, dropna=False, sort=False)["program_fingerprint"]]
        if "in_loop_s_per_step" in table:
            # Configurations of one program share its step time, the median over all its runs: what their own
            # runs' clocks differ by is drift between runs, no property of the configuration.
            workload = [k for k in WORKLOAD if k in ok]
            program_step = ok.groupby([*workload, "program_fingerprint"], dropna=False)["in_loop_s_per_step"].median()
            shared = table["program"].notna()
            table.loc[shared, "in_loop_s_per_step"] = [
                program_step.get((*(row[k] for k in workload), row["program"]), row["in_loop_s_per_step"])
                for _, row in table[shared].iterrows()]
    reached = ok.groupby(keys, dropna=False, sort=False)["target_reached"] if "target_reached" in ok else None
    if reached is not None:
        table["reached"] = [f"{int(g.fillna(False).sum())}/{len(g)}" for _, g in reached]
    return keys, table


def _text(value, scale: float = 1.0, integer: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    value = value + 0.0  # no "-0"
    return f"{int(round(value * scale)):,}" if integer else number_text(value * scale)


def peft_table(df: pd.DataFrame, question: Sequence[str] = ()) -> tuple[list[str], pd.DataFrame]:
    """(its keys, the PEFT-style table): one row per workload and configuration, the question's axes first;
    Pareto-optimal (quality vs step time) rows are marked *."""
    keys, table = configurations(df, question)
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
    for metric in main_metrics(df):  # a sweep of regression and classification workloads: a column for each
        quality = f"test_{metric.name}"
        if quality in table:
            front = _front(df, keys, table, "in_loop_s_per_step", metric)
            out[f"test {metric.title}"] = [_text(v) + (" *" if f else "") for v, f in zip(table[quality], front)]
    if "forgetting" in table:
        out["forgetting"] = [_text(v) for v in table["forgetting"]]
    return keys, pd.DataFrame(out)


def flops_table(df: pd.DataFrame, question: Sequence[str] = ()) -> tuple[list[str], pd.DataFrame]:
    """(its keys, per configuration a step's MFLOP by part (harness.core.cost), and what freezing removed)."""
    keys, table = configurations(df, question)
    out = {k: [key_text(v) for v in table[k]] for k in keys}
    for part, title in (("forward", "forward"), ("gradient", "gradient (needed)"), ("rest", "rest"),
                        ("step", "step")):
        if f"{part}_flops" in table:
            out[f"{title} (MFLOP)"] = [_text(v, 1e-6) for v in table[f"{part}_flops"]]
    if "full_gradient_flops" in table and "gradient_flops" in table:
        out["freezing removed (MFLOP)"] = [_text(full - needed, 1e-6) for full, needed in
                                           zip(table["full_gradient_flops"], table["gradient_flops"])]
    return keys, pd.DataFrame(out)


class RowSamples(NamedTuple):
    """One configuration's runs (mappings), their samples of one column, and those samples seed by seed."""
    runs: list[dict]
    every: list[list[float]]
    by_seed: dict


class Dominance:
    """Which configurations of `table` (one row each, `configurations`) dominate which, by the findings' test.

    `ok` holds the runs the rows summarize (ok, with flagged step times left out of the time). Each row's runs are
    those matching its `keys`; for a cost of the compiled program (step time, memory) a row that ran one program
    stands for every run of that program in its workload, so configurations of one program compare alike.
    """

    def __init__(self, ok: pd.DataFrame, keys: Sequence[str], table: pd.DataFrame, threshold: float = THRESHOLD):
        self.ok, self.keys, self.table, self.threshold = ok, list(keys), table, threshold
        self._runs: dict[int, pd.DataFrame] = {}
        self._program_runs: dict[tuple, pd.DataFrame] = {}
        self._samples: dict[tuple, RowSamples] = {}
        self._records: dict | None = None
        self._spread: dict[str, float | None] = {}
        self._seen: dict[tuple, int] = {}

    def runs(self, i: int) -> pd.DataFrame:
        """The ok runs of row `i`."""
        if i not in self._runs:
            row = self.table.loc[i]
            mask = pd.Series(True, index=self.ok.index)
            for k in self.keys:
                mask &= self.ok[k].isna() if pd.isna(row[k]) else (self.ok[k] == row[k]).fillna(False)
            self._runs[i] = self.ok[mask]
        return self._runs[i]

    def program_runs(self, i: int, column: str) -> pd.DataFrame:
        """Row `i`'s runs, or for a program cost every run of its workload that ran its one program."""
        program = self.table.at[i, "program"] if "program" in self.table else None
        if column not in PROGRAM_COSTS or program is None or pd.isna(program):
            return self.runs(i)
        if (i, program) not in self._program_runs:
            same = self.ok["program_fingerprint"] == program
            for k in (k for k in WORKLOAD if k in self.keys):
                same &= self.ok[k] == self.table.at[i, k]
            self._program_runs[(i, program)] = self.ok[same.fillna(False)]
        return self._program_runs[(i, program)]

    def samples(self, i: int, column: str) -> RowSamples:
        """Row `i`'s runs and samples for `column` (`program_runs`): drawn once per row, not once per pair of rows
        (a front compares every pair; per pair, a 168-run report took ten minutes)."""
        if (i, column) not in self._samples:
            if self._records is None:
                self._records = rows_by_index(self.ok)
            runs = [self._records[j] for j in self.program_runs(i, column).index]
            seeds = dict.fromkeys(r["seed"] for r in runs if pd.notna(r.get("seed")))
            self._samples[(i, column)] = RowSamples(runs, runs_samples(runs, column), {
                seed: runs_samples([r for r in runs if r["seed"] == seed], column) for seed in seeds})
        return self._samples[(i, column)]

    def between(self, column: str) -> float | None:
        if column not in self._spread:
            self._spread[column] = run_to_run(self.ok, column, self.threshold)
        return self._spread[column]

    def compare(self, a: int, b: int, column: str) -> int:
        """Row `a` against row `b` in `column` by the findings' test: BETTER / WORSE when resolved (cheaper, or better
        quality), TIE when tested and not resolved (or one compiled program); LOOKS_BETTER / LOOKS_WORSE when no test
        can be drawn (below the noise floor, no spread between runs, no seed in common): the medians' order only."""
        key = (a, b, column)
        if key not in self._seen:
            self._seen[key] = self._compare(a, b, column)
            self._seen[(b, a, column)] = -self._seen[key]
        return self._seen[key]

    def _compare(self, a: int, b: int, column: str) -> int:
        measure, threshold = _measure(column)
        program = self.table["program"] if "program" in self.table else pd.Series(None, index=self.table.index)
        if column in PROGRAM_COSTS and pd.notna(program[a]) and program[a] == program[b]:
            return TIE  # one compiled program: one cost
        side_a, side_b = self.samples(a, column), self.samples(b, column)
        between = 0.0
        if measure.timed:
            between = self.between(column)
            if between is None or not floor_of([*side_a.runs, *side_b.runs], column, threshold).resolved:
                return self._looks(a, b, column, measure)  # the findings: "not tested" / "too short to resolve"
        if measure.paired:  # quality: the same seed's data and initialization on both sides, the interval the seeds'
            estimate = seed_ratio_ci([(seed, values, side_a.by_seed[seed]) for seed, values in side_b.by_seed.items()
                                      if seed in side_a.by_seed])
        else:
            estimate = ratio_ci([(side_b.every, side_a.every)], exact=measure.exact, between=between,
                                timed=measure.timed)
        if math.isnan(estimate.ratio) or math.isnan(estimate.low):
            return self._looks(a, b, column, measure)  # no seed in common, one sample: no interval
        word = verdict(estimate, threshold, measure)
        return BETTER if word == measure.better else WORSE if word == measure.worse else TIE

    def _looks(self, a: int, b: int, column: str, measure: Measure) -> int:
        """The order of the two rows' medians, where no test can be drawn."""
        x, y = self.table.at[a, column], self.table.at[b, column]
        if pd.isna(x) or pd.isna(y) or x == y:
            return TIE
        return LOOKS_BETTER if (x < y) == measure.higher_is_worse else LOOKS_WORSE

    def front(self, cost: str, quality: str) -> list[bool]:
        """Per row: whether no row of its workload dominates it in (`cost`, `quality`)."""
        flags = pd.Series(False, index=self.table.index)
        usable = self.table[self.table[cost].notna() & self.table[quality].notna()] if cost in self.table \
            else self.table.iloc[:0]
        for _, rows in usable.groupby([k for k in WORKLOAD if k in usable], dropna=False, sort=False):
            for b in rows.index:
                flags[b] = not any(self.dominates(a, b, cost, quality) for a in rows.index if a != b)
        return flags.tolist()

    def dominates(self, a: int, b: int, cost: str, quality: str) -> bool:
        """Row `a` resolved better than row `b` in one of `cost`, `quality`, and worse in neither: not resolved
        worse, nor worse by its medians where no test can be drawn (a step below the noise floor is no tie)."""
        better_quality = self.compare(a, b, quality)
        if better_quality < TIE:
            return False
        cheaper = self.compare(a, b, cost)
        return cheaper >= TIE and BETTER in (cheaper, better_quality)


def _plausible_runs(df: pd.DataFrame) -> pd.DataFrame:
    """The ok runs, with a flagged step time (faster than the machine can compute) left out of the time."""
    ok = df[df["status"] == "ok"]
    if "warning" in ok and "in_loop_s_per_step" in ok:
        flagged = ok["warning"].notna()
        ok = ok.assign(in_loop_s_per_step=ok["in_loop_s_per_step"].mask(flagged),
                       run_s=ok["run_s"].mask(flagged) if "run_s" in ok else None)
    return ok


def _front(df: pd.DataFrame, keys: Sequence[str], table: pd.DataFrame, cost: str, metric,
           dominance: Dominance | None = None) -> list[bool]:
    """Pareto-optimal rows of `table` for quality against `cost`, within each workload (`Dominance`)."""
    if metric is None or cost not in table or f"test_{metric.name}" not in table:
        return [False] * len(table)
    dominance = dominance or Dominance(_plausible_runs(df), keys, table)
    return dominance.front(cost, f"test_{metric.name}")


def pareto_figure(df: pd.DataFrame, question: Sequence[str] = ()) -> Figure | str:
    """Test quality against step time, memory and trainable parameters; Pareto-optimal configurations ringed.

    Configurations of one compiled program sit at its one step time and memory; the step time's whiskers are the
    findings' interval of that program's mean (`side_ci`: runs, repeats, the spread between runs)."""
    metric = main_metric(df)
    keys, table = configurations(df, question)
    if metric is None or not len(table):
        return "no run has a main quality metric (accuracy, MSE)"
    # Workloads measured by another main metric (a sweep of regression and classification tasks) share no
    # quality axis with these: the cost-and-quality table gives them, and the caption says so.
    others = [m.title for m in main_metrics(df)[1:]]
    table = table[table[f"test_{metric.name}"].notna()]
    costs = [c for c in COSTS if c[0] in table and (table[c[0]] > 0).any()]  # log axes: positive costs only
    if not costs:
        return "no run has a positive step time, memory or parameter count"
    dominance = Dominance(_plausible_runs(df), keys, table)
    label_keys = []
    for k in (k for k in keys if k not in WORKLOAD and table[k].nunique(dropna=False) > 1):
        # A key set by one named before it (a strategy's freeze option) adds nothing to a label.
        if not any(follows(table, first, k) for first in label_keys):
            label_keys.append(k)
    workload_keys = [k for k in WORKLOAD if k in table]
    workloads = list(dict.fromkeys(tuple(row) for row in table[workload_keys].itertuples(index=False)))
    # What tells points apart: colour the workload, or with one workload the question's first axis; a marker the
    # next axis with few values; text the rest (only the ringed points' where a panel holds many).
    colour_key = None if len(workloads) > 1 or not label_keys else label_keys[0]
    rest = label_keys[1:] if colour_key else label_keys
    marker_key = next((k for k in rest if table[k].nunique(dropna=False) <= len(MARKERS)), None)
    text_keys = [k for k in rest if k != marker_key]
    colours = list(dict.fromkeys(table[colour_key])) if colour_key else workloads
    markers = list(dict.fromkeys(table[marker_key])) if marker_key else [None]

    def colour_of(row) -> str:
        value = row[colour_key] if colour_key else tuple(row[k] for k in workload_keys)
        return f"C{colours.index(value) % 10}"

    def marker_of(row) -> str:
        return MARKERS[markers.index(row[marker_key])] if marker_key else "o"

    fig = Figure(figsize=(4.6 * len(costs), 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(costs), squeeze=False)[0]
    placed = []
    for ax, (column, title, scale) in zip(axes, costs):
        texts = []
        placed.append((ax, texts))
        front = dominance.front(column, f"test_{metric.name}")
        rows = table[table[column] > 0]
        x = rows[column].to_numpy(float) * scale
        y = rows[f"test_{metric.name}"].to_numpy(float)
        point_colours = [colour_of(row) for _, row in rows.iterrows()]
        if column == "in_loop_s_per_step":
            between = dominance.between(column) or 0.0
            cis = [side_ci(dominance.samples(j, column).every, between=between) for j in rows.index]
            x = np.array([c[0] for c in cis]) * scale  # the program's mean: configurations of one program align
            low = np.array([c[0] - c[1] if math.isfinite(c[1]) else 0.0 for c in cis]) * scale
            high = np.array([c[2] - c[0] if math.isfinite(c[2]) else 0.0 for c in cis]) * scale
            for colour in dict.fromkeys(point_colours):
                mine = np.array([c == colour for c in point_colours])
                ax.errorbar(x[mine], y[mine], xerr=[low[mine], high[mine]], fmt="none", ecolor=colour, elinewidth=0.8,
                            capsize=2, alpha=0.7)
        for xi, yi, colour, (_, row) in zip(x, y, point_colours, rows.iterrows()):
            ax.scatter([xi], [yi], color=colour, marker=marker_of(row), s=22)
        best = np.array([front[table.index.get_loc(j)] for j in rows.index], dtype=bool)
        ax.scatter(x[best], y[best], facecolors="none", edgecolors="k", s=90, linewidths=1.2)
        for workload in workloads:
            mine = best & np.array([tuple(row[k] for k in workload_keys) == workload for _, row in rows.iterrows()])
            if joined := front_line(x[mine], y[mine], metric.better == "higher"):
                ax.plot(*joined, color="0.4", lw=0.8, alpha=0.6)
        labelled = np.ones(len(rows), dtype=bool) if len(rows) <= LABEL_ALL else best if best.sum() <= LABEL_ALL \
            else np.zeros(len(rows), dtype=bool)
        # Points that coincide (one program's configurations, one quality) share one label: apart, their labels
        # covered each other and place_labels hid them all.
        at: dict[tuple[str, str], list[str]] = {}
        for xi, yi, show, (_, row) in zip(x, y, labelled, rows.iterrows()):
            if show and text_keys:
                label = " · ".join(_named(k, row[k]) for k in text_keys)
                at.setdefault((f"{xi:.12g}", f"{yi:.12g}"), []).append(label)
        texts += [ax.text(float(xi), float(yi), ", ".join(dict.fromkeys(labels)), fontsize=6.5, alpha=0.85)
                  for (xi, yi), labels in at.items()]
        ax.set_xscale("log")
        plain_log_labels(ax.xaxis)  # a range inside one decade has no major tick: minor ones labelled then
        ax.set_xlabel(title + (f", {CONFIDENCE:.0%} CI" if column == "in_loop_s_per_step" else ""))
        ax.set_ylabel(f"test {metric.title}")
        ax.grid(True, alpha=0.3)
    labels = any(texts for _, texts in placed)
    handles = [Line2D([], [], color=f"C{i % 10}", marker="o", linestyle="",
                      label=f"{colour_key} {key_text(v)}" if colour_key else " · ".join(map(key_text, v)))
               for i, v in enumerate(colours)]
    if marker_key:
        handles += [Line2D([], [], color="0.3", marker=MARKERS[i], linestyle="", label=f"{marker_key} {key_text(v)}")
                    for i, v in enumerate(markers)]
    # Below the panels: a legend inside would cover points, and place_labels draws before the figure is saved.
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6, 2 * len(costs)),
               fontsize="x-small")  # two entries fit the width of a panel
    runs = sorted(set(table["runs"]))
    timed = any(column == "in_loop_s_per_step" for column, _, _ in costs)
    which = f"labels on the ringed only, in a panel that rings {LABEL_ALL} or fewer" if labels else "no labels"
    lines = (f"Test {metric.title} against cost: each point a configuration, quality its median over "
             f"{runs[0] if len(runs) == 1 else f'{runs[0]}–{runs[-1]}'} runs"
             + (", step time its compiled program's mean" if timed else ""),
             f"(ringed: Pareto-optimal within a workload, joined where quality rises with cost; dominated only "
             f"where the findings resolve the difference at ±{THRESHOLD:.0%}"
             + (f"; {which}: the cost-and-quality table names every point" if len(table) > LABEL_ALL and text_keys
                else "") + ")",
             *([f"Workloads measured by {', '.join(others)} are not drawn: the cost-and-quality table gives them."]
               if others else []))
    # Wrapped to the figure's width: one panel (a sweep with no step times) is narrower than the title.
    fig.suptitle("\n".join(textwrap.fill(line, width=62 * len(costs), break_on_hyphens=False) for line in lines),
                 fontsize="medium")  # "cost-and-quality" stays whole
    place_labels(fig, placed)
    return fig


def front_line(x: np.ndarray, y: np.ndarray, higher_is_better: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """The ringed points of one workload in cost order, to be joined as a front: only where quality gets better
    with every step up in cost. Where the seeds leave quality differences unresolved, ringed points need not trade
    cost for quality, and a line through them would zigzag, drawing a front that is not there: None.

    >>> front_line(np.array([3.0, 1.0, 2.0]), np.array([0.9, 0.5, 0.7]), True)
    (array([1., 2., 3.]), array([0.5, 0.7, 0.9]))
    >>> front_line(np.array([1.0, 2.0, 3.0]), np.array([0.5, 0.9, 0.7]), True) is None
    True
    """
    if len(x) < 2:
        return None
    quality = y if higher_is_better else -y
    order = np.lexsort((quality, x))  # by cost, a tie in cost by quality
    return (x[order], y[order]) if np.all(np.diff(quality[order]) >= 0) else None


def _named(key: str, value) -> str:
    """A point's label for one axis: a name says itself, a number says what it is ("lr 0.003").

    >>> _named("method", "diffstate"), _named("lr", 0.003)
    ('diffstate', 'lr 0.003')
    """
    text = key_text(value)
    return text if isinstance(value, str) else f"{key} {text}"


def place_labels(fig: Figure, placed: list) -> None:
    """Moves each axes' point labels apart (adjustText) once the layout is final, so none overlaps another; labels
    it cannot part are left out rather than drawn as a smear (the table beside the figure names every point)."""
    from adjustText import adjust_text

    fig.canvas.draw()  # the constrained layout settles the axes' sizes that the label boxes are measured in
    for ax, texts in placed:
        if texts:
            # A fixed number of moves, not adjustText's default second of wall time: labels it cannot part stopped
            # wherever that second ended, so the same records drew another figure on another machine or load.
            adjust_text(texts, ax=ax, arrowprops={"arrowstyle": "-", "color": "0.5", "lw": 0.5},
                        ensure_inside_axes=True, iter_lim=LABEL_MOVES)
    renderer = fig.canvas.get_renderer()
    for ax, texts in placed:
        kept = []
        for text in texts:
            box = text.get_window_extent(renderer)
            if any(box.overlaps(other) for other in kept):
                text.set_visible(False)
            else:
                kept.append(box)
