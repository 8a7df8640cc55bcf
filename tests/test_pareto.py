"""Pareto marks by the findings' intervals (issue 28): a configuration is dominated only where the findings' test
resolves the difference, and configurations of one compiled program share its step time. Synthetic runs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection

from harness.analysis import findings, frames
from harness.analysis.tradeoffs import Dominance, _plausible_runs, configurations, pareto_figure, peft_table

pytestmark = pytest.mark.filterwarnings("error")

STEPS, ONE_STEP = 100, 4e-5


def run(strategy: str, seed: int, step_s: float, program: str, accuracy: float,
        repeats=(1.0, 1.01, 0.99)) -> dict:
    """One ok run of the digits shape: its timed calls hold `step_s` per step (well above the noise floor)."""
    return {"status": "ok", "task": "digits", "model": "cnn", "method": "diffstate", "freeze": "f", "optimizer": "adam",
            "fine_tuning": strategy, "seed": seed, "steps": STEPS, "device": "cpu:0",
            "run_s": json.dumps([ONE_STEP + step_s * (STEPS - 1) * f for f in repeats]),
            "one_step_call_s": ONE_STEP, "one_step_call_iqr_s": 1e-8, "timing_chunks": 1,
            "in_loop_s_per_step": step_s, "program_fingerprint": program, "test_accuracy": accuracy,
            "memory_bytes": 2**20, "trainable_params": 1000, "config_key": json.dumps({"s": strategy, "seed": seed})}


def marks(rows: list[dict]) -> dict[str, bool]:
    df = frames.typed(pd.DataFrame(rows))
    keys, table = configurations(df)
    front = Dominance(_plausible_runs(df), keys, table).front("in_loop_s_per_step", "test_accuracy")
    return dict(zip(table["fine_tuning"], front))


def test_configurations_of_one_program_share_one_mark_whatever_their_clocks_read():
    """scratch and finetune ran one program: finetune's step read 3% faster (drift), at the same accuracy. A probe
    (another program) is 3x faster but resolved worse. Neither of the one program's configurations dominates the
    other: both are marked, as the probe is (fastest)."""
    rows = [run("scratch", s, 100e-6 * (1 + 0.01 * s), "all", 0.90) for s in (0, 1)]
    rows += [run("finetune", s, 97e-6 * (1 + 0.01 * s), "all", 0.90) for s in (0, 1)]
    rows += [run("probe", s, 33e-6 * (1 + 0.01 * s), "head", 0.70) for s in (0, 1)]
    assert marks(rows) == {"scratch": True, "finetune": True, "probe": True}
    # The same clocks on two programs: 3% apart is inside the findings' ±5%, still no domination.
    other = [{**r, "program_fingerprint": "all-2"} if r["fine_tuning"] == "finetune" else r for r in rows]
    assert marks(other) == {"scratch": True, "finetune": True, "probe": True}


def test_a_difference_inside_the_interval_does_not_dominate_and_a_resolved_one_does():
    """B reads 20% faster than A at the same accuracy, but seeds of one program move its time by ±30%: the
    findings' interval holds 1, so B does not dominate A (a fixed 5% tolerance would have dropped A)."""
    noisy = [run("A", s, 100e-6 * f, "a", 0.9) for s, f in enumerate((0.7, 1.3))]
    noisy += [run("B", s, 80e-6 * f, "b", 0.9) for s, f in enumerate((0.7, 1.3))]
    df = frames.typed(pd.DataFrame(noisy))
    found = findings.compare_axis(df, "fine_tuning", "A", ["in_loop_s_per_step"])
    assert found["verdict"].item() == findings.NO_DIFFERENCE and found["low"].item() < 1 < found["high"].item()
    assert marks(noisy) == {"A": True, "B": True}
    steady = [run("A", s, 100e-6 * f, "a", 0.9) for s, f in enumerate((0.99, 1.01))]
    steady += [run("B", s, 80e-6 * f, "b", 0.9) for s, f in enumerate((0.99, 1.01))]
    found = findings.compare_axis(frames.typed(pd.DataFrame(steady)), "fine_tuning", "A", ["in_loop_s_per_step"])
    assert found["verdict"].item() == "faster"
    assert marks(steady) == {"A": False, "B": True}
    # Quality resolved better beats a step time that is not resolved: A dominates B when A is more accurate on each
    # of 3 seeds. From 2 seeds the findings draw no quality interval ("2 seeds: no CI, add seeds"): nothing dominates.
    three = [run(name, s, step * f, name.lower(), 0.9) for name, step in (("A", 100e-6), ("B", 80e-6))
             for s, f in enumerate((0.7, 1.0, 1.3))]
    better = [{**r, "test_accuracy": 0.99} if r["fine_tuning"] == "A" else r for r in three]
    assert marks(better) == {"A": True, "B": False}
    assert marks([{**r, "test_accuracy": 0.99} if r["fine_tuning"] == "A" else r for r in noisy]) == \
        {"A": True, "B": True}


def test_the_cost_table_and_the_figure_read_the_same_marks_and_whiskers():
    rows = [run("scratch", s, 100e-6 * f, "all", 0.90) for s, f in enumerate((0.99, 1.0, 1.01))]
    rows += [run("finetune", s, 96e-6 * f, "all", 0.95) for s, f in enumerate((0.99, 1.0, 1.01))]
    rows += [run("probe", s, 30e-6 * f, "head", 0.60) for s, f in enumerate((0.99, 1.0, 1.01))]
    df = frames.typed(pd.DataFrame(rows))
    _, table = peft_table(df)
    starred = dict(zip(table["fine_tuning"], table["test accuracy"].str.endswith(" *")))
    assert starred == {"scratch": False, "finetune": True, "probe": True}  # finetune: one program, more accurate
    step = dict(zip(table["fine_tuning"], table["in-loop step (ms)"]))  # one program, one step: its runs' median
    assert step["scratch"] == step["finetune"] == "0.0980" and step["probe"] == "0.0300", step
    fig = pareto_figure(df)
    time_panel = fig.axes[0]
    whiskers = [c for c in time_panel.collections if isinstance(c, LineCollection)]  # xerr, one per colour
    spans = {round(seg[0][1], 3): (seg[0][0], seg[1][0]) for w in whiskers for seg in w.get_segments()}
    both = findings.samples(df[df["program_fingerprint"] == "all"], "in_loop_s_per_step")
    between = findings.run_to_run(df, "in_loop_s_per_step")
    _, low, high = findings.side_ci(both, between=between)
    for accuracy in (0.9, 0.95):  # scratch and finetune: at their program's mean, with its interval
        assert np.allclose(spans[accuracy], (low * 1e3, high * 1e3))
    assert "dominated only where the findings resolve the difference" in fig._suptitle.get_text()


def test_a_step_below_the_noise_floor_is_no_tie():
    """The probe's 40 steps of 33 µs are within the jitter of a call (the findings: "too short to resolve"), yet it
    reads 3x faster than scratch: scratch's better accuracy does not dominate it."""
    rows = [run("scratch", s, 100e-6 * f, "all", 0.90) for s, f in enumerate((0.99, 1.01))]
    rows += [{**run("probe", s, 33e-6 * f, "head", 0.60), "one_step_call_iqr_s": 5e-4}
             for s, f in enumerate((0.99, 1.01))]
    df = frames.typed(pd.DataFrame(rows))
    found = findings.compare_axis(df, "fine_tuning", "scratch", ["in_loop_s_per_step"])
    assert found["verdict"].item().startswith("too short to resolve")
    assert marks(rows) == {"scratch": True, "probe": True}


def test_a_sweep_of_regression_and_classification_workloads_reports_each_by_its_own_metric():
    """The profile reference's cost-and-quality table had a test MSE column only: four of its five workloads
    (accuracy) read "—". Each main metric now has its column; the figure draws one and says which it leaves out."""
    digits = [run("scratch", s, 1e-3, "p", 0.9 + s / 100) for s in range(3)]
    transfer = [{**run("scratch", s, 2e-4, "q", 0.0), "task": "transfer", "model": "mlp", "test_accuracy": None,
                 "test_mse": 0.03 + s / 1000} for s in range(3)]
    df = frames.typed(pd.DataFrame(digits + transfer))
    _, table = peft_table(df)
    assert table["test accuracy"].tolist() == ["0.910 *", "—"] and table["test MSE"].tolist() == ["—", "0.0310 *"]
    fig = pareto_figure(df)
    assert "Workloads measured by accuracy are not drawn: the cost-and-quality table gives them." in \
        fig._suptitle.get_text().replace("\n", " ")
    assert fig.axes[0].get_ylabel() == "test MSE"


def test_ringed_points_are_joined_only_where_they_trade_cost_for_quality():
    """The modular reference's step-time panel joined its ringed points into a zigzag: where the seeds leave
    quality unresolved, a cheaper ringed point can read more accurate than a dearer one, and no front runs
    through them. A line joins a workload's ringed points only where quality rises with cost."""
    def front_lines(rows: list[dict]) -> list:
        time_panel = pareto_figure(frames.typed(pd.DataFrame(rows))).axes[0]
        return [line for line in time_panel.get_lines() if line.get_color() == "0.4"]

    trade = [run("finetune", s, 96e-6 * f, "all", 0.95) for s, f in enumerate((0.99, 1.0, 1.01))]
    trade += [run("probe", s, 30e-6 * f, "head", 0.60) for s, f in enumerate((0.99, 1.0, 1.01))]
    (line,) = front_lines(trade)
    assert list(line.get_ydata()) == [0.60, 0.95]
    # Two seeds resolve no quality difference, and seeds of one program move its time ±30%: both are ringed,
    # the cheaper reads more accurate, so no line.
    unresolved = [run("A", s, 100e-6 * f, "a", 0.95) for s, f in enumerate((0.7, 1.3))]
    unresolved += [run("B", s, 80e-6 * f, "b", 0.99) for s, f in enumerate((0.7, 1.3))]
    assert marks(unresolved) == {"A": True, "B": True}
    assert front_lines(unresolved) == []


def test_the_same_rows_draw_the_same_figure_where_labels_will_not_part():
    """adjustText moves labels for a second of wall time by default: where they cannot all part, the figure
    depended on the machine's speed and load (two drawings of the mnist1d reference differed). A fixed number of
    moves draws the same pixels every time."""
    import io

    # Eleven configurations in a tight cluster at the top right, one far below: labels pile into a corner.
    combos = [(ft, m, lr) for ft in ("a", "b") for m in ("m1", "m2") for lr in (1e-3, 3e-3, 1e-2)]
    rows = [{**run(ft, s, (100e-6 * (1 + 0.001 * i) if i else 1e-6) * f, f"p{i}", 0.9 + 1e-4 * i if i else 0.1),
             "method": m, "lr": lr, "config_key": f"{ft}{m}{lr}{s}",
             "memory_bytes": 2**20 * (1 + 1e-3 * i) if i else 1000}
            for i, (ft, m, lr) in enumerate(combos) for s, f in enumerate((0.99, 1.01))]

    def png() -> bytes:
        out = io.BytesIO()
        pareto_figure(frames.typed(pd.DataFrame(rows))).savefig(out, format="png", dpi=60)
        return out.getvalue()

    assert png() == png()


def test_points_that_coincide_share_one_label():
    """Two configurations that run one program to one quality (scratch and a full fine-tune here) sit on one
    point: their two labels covered each other and place_labels hid one (the digits and mnist1d references showed
    one name of two, or none). One label names both."""
    rows = [{**run(strategy, s, step * f, method, accuracy + lr), "method": method, "lr": lr,
             "config_key": f"{strategy}{method}{lr}{s}"}
            for method, step, accuracy in (("diffstate", 100e-6, 0.6), ("stop_gradient", 30e-6, 0.3))
            for strategy in ("scratch", "finetune") for lr in (1e-3, 1e-1)
            for s, f in enumerate((0.99, 1.0, 1.01))]
    fig = pareto_figure(frames.typed(pd.DataFrame(rows)))
    for ax in fig.axes:
        shown = [t.get_text() for t in ax.texts if t.get_visible()]
        assert shown and set(shown) == {"scratch, finetune"}, shown
