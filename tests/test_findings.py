"""Findings (ratios, bootstrap CIs, verdicts) and compact tables, on synthetic records: no JAX here."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_report import _write, make_record

from harness.analysis import findings, frames, report, tables

pytestmark = pytest.mark.filterwarnings("error")

METHODS = ("diffstate", "wrt_only", "attribute", "variable", "optax_partition", "stop_gradient", "reference")
FREEZES = ("backbone", "head", "kernel")
LRS = (1e-3, 1e-2)


def matrix_record(num: int, method: str, freeze: str, optimizer: str, lr: float, seed: int, rng, *,
                  slow: dict | None = None, noise: float = 0.02) -> dict:
    """A freeze_matrix-shaped record: cost set by method x freeze x optimizer, fit by lr and seed."""
    frozen = {"backbone": 4096, "head": 64, "kernel": 2048}[freeze]
    factor = (slow or {}).get(method, 1.0) * {"backbone": 1.0, "head": 3.0, "kernel": 1.5}[freeze]
    rec = make_record(num, method, optimizer, 500, seed, per_step_s=1e-4 * factor, frozen=frozen,
                      run_factors=tuple(rng.normal(1.0, noise, 5)),
                      test_mse=(0.5 if lr == 1e-2 else 0.9) + 0.05 * seed)  # the same math in every method
    rec["config"]["freeze"]["name"] = freeze
    rec["config"]["optimizer"]["lr"] = lr
    rec["job"]["overrides"] += [f"freeze={freeze}", f"optimizer.lr={lr}"]
    rec["optimizer_state"]["bytes"] = (2 * frozen if method == "stop_gradient" else 100) + (4 if optimizer == "adamw"
                                                                                            else 0)
    return rec


def write_matrix(root: Path, *, methods=METHODS, freezes=FREEZES, slow=None, noise=0.02, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    num = 0
    for method in methods:
        for freeze in freezes:
            for optimizer in ("adam", "adamw"):
                for lr in LRS:
                    for s in (1, 2):
                        rec = matrix_record(num, method, freeze, optimizer, lr, s, rng, slow=slow, noise=noise)
                        _write(root / str(num) / "result.json", json.dumps(rec))
                        num += 1
    return root


def step_row(found: pd.DataFrame, candidate: str) -> pd.Series:
    rows = found[(found["axis"] == "method") & (found["candidate"] == candidate)
                 & (found["metric"] == "in_loop_s_per_step")]
    return rows.iloc[0]


# --- ratio_ci and verdict ----------------------------------------------------------------------


@pytest.mark.slow  # over 8 s on 2 cores: the everyday suite stays near 5 minutes
def test_twenty_percent_slower_with_small_noise_is_slower_with_a_ci_excluding_1(tmp_path):
    df, _ = frames.load_records(write_matrix(tmp_path, methods=("diffstate", "stop_gradient"),
                                              slow={"stop_gradient": 1.2}))
    found = findings.comparisons(df)
    row = step_row(found, "stop_gradient")
    assert row["baseline"] == "diffstate" and row["strata"] == len(FREEZES) * 2 * len(LRS)
    assert row["ratio"] == pytest.approx(1.2, rel=0.02)
    assert 1.05 < row["low"] < row["ratio"] < row["high"] < 1.3
    assert row["verdict"] == "slower"


@pytest.mark.slow  # over 8 s on 2 cores: the everyday suite stays near 5 minutes
def test_pure_noise_is_no_significant_difference(tmp_path):
    df, _ = frames.load_records(write_matrix(tmp_path, methods=("diffstate", "wrt_only"), noise=0.1))
    row = step_row(findings.comparisons(df), "wrt_only")
    assert row["low"] < 1 < row["high"]
    assert row["verdict"] == "no significant difference"


def test_the_bootstrap_is_seeded_and_deterministic():
    rng = np.random.default_rng(1)
    strata = [(rng.normal(1, 0.1, 10), rng.normal(1.1, 0.1, 10)) for _ in range(3)]
    first, again = findings.ratio_ci(strata), findings.ratio_ci(strata)
    assert first == again
    other = findings.ratio_ci(strata, seed=1)
    assert other.ratio == first.ratio and (other.low, other.high) != (first.low, first.high)


def test_exact_metrics_and_single_samples():
    assert findings.ratio_ci([([100, 100], [104, 104])]).text() == "×1.04 (exact)"
    assert findings.verdict(findings.ratio_ci([([100, 100], [104, 104])])) == "within ±5%"
    assert findings.verdict(findings.ratio_ci([([100, 100], [100, 100])])) == "identical"
    single = findings.ratio_ci([([1.0], [2.0])])
    assert single.ratio == 2.0 and findings.verdict(single) == "one sample: not tested"
    assert findings.verdict(findings.ratio_ci([([], [1.0])])) == "no data"
    # a CI that excludes 1 but straddles the threshold calls nothing
    assert findings.verdict(findings.Estimate(1.08, 1.02, 1.15)) == "inconclusive"


def test_run_samples_are_per_repeat_in_loop_times():
    run = {"run_s": json.dumps([0.0101, 0.0121]), "one_step_call_s": 1e-4, "steps": 101, "status": "ok"}
    assert findings.run_samples(run, "in_loop_s_per_step") == pytest.approx([1e-4, 1.2e-4])
    assert findings.run_samples({**run, "one_step_call_s": 0.02}, "in_loop_s_per_step") == [0.0, 0.0]  # clamped
    assert findings.run_samples({**run, "compile_s": 1.0, "compile_source": "in_process_cache"}, "compile_s") == []


# --- the report --------------------------------------------------------------------------------


def _tables(text: str) -> list[list[str]]:
    """Every markdown table in `text` as its body rows."""
    found, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            found.append(current[2:])
            current = []
    return found


@pytest.fixture(scope="module")
def matrix_report(tmp_path_factory):
    root = write_matrix(tmp_path_factory.mktemp("matrix"), slow={"stop_gradient": 1.3})
    return report.build_report(root)


@pytest.mark.slow
def test_a_168_run_report_opens_with_findings_on_one_screen_and_no_long_table(matrix_report):
    text = matrix_report["report"].read_text()
    assert len(matrix_report["df"]) == 168
    section = text.split("## Findings\n", 1)[1].split("\n## ", 1)[0]
    assert text.index("## Findings") < text.index("## Figures") < text.index("## Detail tables") < text.index("## Environment")
    assert len([line for line in section.splitlines() if line.strip()]) <= 25
    assert "| stop_gradient | ×1.30 [" in section and "slower" in section
    assert "Frozen parameters moved: stop_gradient in 12 of 24 runs (optimizer=adamw)" in section
    for rows in [*_tables(text), *_tables(matrix_report["details"].read_text())]:
        assert len(rows) <= tables.MAX_ROWS, rows[:3]
    # every ratio in the findings carries an interval, says it is exact, or says it has too few seeds for one
    for cell in re.findall(r"×[0-9.e+-]+[^|]*", section):
        assert "[" in cell or "(exact)" in cell or "no CI, add seeds" in cell, cell
    found = pd.read_csv(matrix_report["report"].parent / "findings.csv")
    assert set(found["axis"]) == {"method", "freeze", "optimizer", "lr"}  # every swept leaf is an axis


@pytest.mark.slow
def test_compact_tables_pool_lr_for_costs_and_keep_what_changes_them(matrix_report):
    text = matrix_report["details"].read_text()
    memory = text.split("## Cost and memory of each compiled program\n", 1)[1].split("\n## ", 1)[0]
    assert "each row pools its runs over lr: one compiled program per row" in memory
    header = next(line for line in memory.splitlines() if line.startswith("| "))
    assert "| lr |" not in header and "freeze" in header
    fit = text.split("## Fit\n", 1)[1].split("\n## ", 1)[0]
    assert "| lr |" in next(line for line in fit.splitlines() if line.startswith("| "))  # lr changes the fit


def test_merge_rows_collapses_an_axis_that_does_not_change_a_metric_and_keeps_one_that_does():
    table = pd.DataFrame({"method": ["a", "a", "b", "b"], "lr": [1e-3, 1e-2, 1e-3, 1e-2],
                          "ok runs": ["2/2"] * 4, "optimizer state (bytes)": ["100", "100", "800", "800"]})
    merged, notes = tables.merge_rows(table, ["method", "lr"])
    assert list(merged.columns) == ["method", "ok runs", "optimizer state (bytes)"]
    assert merged.to_dict("list") == {"method": ["a", "b"], "ok runs": ["4/4", "4/4"],
                                      "optimizer state (bytes)": ["100", "800"]}
    assert notes == ["the same for every lr (0.001, 0.01)"]
    partly = table.assign(**{"optimizer state (bytes)": ["100", "100", "800", "900"]})
    merged, notes = tables.merge_rows(partly, ["method", "lr"])
    assert merged["lr"].tolist() == ["0.001, 0.01", "0.001", "0.01"] and notes == []


@pytest.mark.slow
def test_program_keys_drop_an_axis_that_leaves_the_program_unchanged(matrix_report):
    df = matrix_report["df"]
    keys = frames.group_keys(df)
    assert keys == ["method", "freeze", "optimizer", "lr"]
    assert tables.program_keys(df, keys) == ["method", "freeze", "optimizer"]


@pytest.mark.slow
def test_findings_baseline_can_be_overridden(tmp_path):
    df, _ = frames.load_records(write_matrix(tmp_path, methods=("diffstate", "reference")))
    found = findings.comparisons(df, {"method": "reference", "freeze": "head"})
    assert set(found.loc[found["axis"] == "method", "candidate"]) == {"diffstate"}
    assert set(found.loc[found["axis"] == "freeze", "baseline"]) == {"head"}
    assert report.main_report([str(tmp_path), "--baseline", "method=reference"]) == 0
    assert "| method / reference |" in (tmp_path / "report.md").read_text()
    with pytest.raises(SystemExit):
        report.main_report([str(tmp_path), "--baseline", "seed=1"])


@pytest.mark.slow
def test_step_time_figure_has_ci_error_bars_and_short_legends(matrix_report):
    from harness.analysis import figures

    df = matrix_report["df"]
    fig = figures.step_time_figure(df)
    ax = fig.axes[0]
    points = [c for c in ax.containers if c.has_yerr]
    programs = df[df["status"] == "ok"].groupby(["method", "freeze", "optimizer"]).ngroups
    assert len(points) == programs  # one dot per compiled program (lr pooled), each with its whisker
    segments = points[0].lines[2][0].get_segments()
    assert any(abs(seg[1][1] - seg[0][1]) > 0 for seg in segments)  # a real interval, not a zero bar
    assert len(fig.legends[0].get_texts()) <= len(FREEZES) + len(df["method"].unique()) + 2
    histories = {p: r.get("history") for p, r in zip(df["path"], matrix_report["records"])}
    curves = figures.training_curves_figure(df, histories)
    assert len(curves.legends) == 1 and len(curves.legends[0].get_texts()) <= 6  # not 12 over the data
    assert all(ax.get_legend() is None for ax in curves.axes)


def test_a_step_time_at_the_noise_floor_is_compared_as_call_per_step_not_as_a_zero():
    """One timed call no longer than the 1-step call clamps the in-loop time at 0: a ratio against it would
    reach ×1e-295; the comparison falls back to call / steps, which always holds the work."""
    from harness.analysis.findings import comparisons, step_time_column

    rows = []
    for method, calls in (("diffstate", [2.0e-4, 2.2e-4, 2.1e-4]), ("stop_gradient", [1.0e-4, 2.5e-4, 2.4e-4])):
        rows.append({"status": "ok", "method": method, "freeze": "kernel", "optimizer": "adam", "seed": 1,
                     "steps": 20, "one_step_call_s": 1.5e-4, "run_s": json.dumps(calls), "timing_points": 1,
                     "in_loop_s_per_step": 0.0, "memory_bytes": None, "opt_state_bytes": None, "test_mse": None})
    df = pd.DataFrame(rows)
    assert step_time_column(df) == "run_s_per_step"
    found = comparisons(df)
    step = found[found["metric"] == "run_s_per_step"].iloc[0]
    assert 0.3 < step["low"] < step["ratio"] < step["high"] < 3
    assert step_time_column(df[df["method"] == "diffstate"]) == "in_loop_s_per_step"


def test_runs_of_one_compiled_program_are_not_called_slower_and_measure_the_sweeps_drift():
    """Same fingerprint: a ×1.2 step time is drift (verdict "same compiled program", named as the A/A
    control); the same times between different fingerprints are called slower."""
    from harness.analysis.findings import SAME_PROGRAM, comparisons, render_findings

    def sweep(candidate_print):
        rows = []
        for method, scale, fp in (("diffstate", 1.0, "aaaa"), ("attribute", 1.2, candidate_print)):
            for seed in (1, 2):
                rows.append({"status": "ok", "method": method, "freeze": "kernel", "optimizer": "adam", "seed": seed,
                             "steps": 101, "one_step_call_s": 1e-4, "timing_points": 1, "program_fingerprint": fp,
                             "run_s": json.dumps([scale * (0.0101 + 1e-4 * i) for i in range(5)]),
                             "drift_unchanged": True, "frozen_params": 3, "drift_l2": 0.0})
        return pd.DataFrame(rows)

    same = comparisons(sweep("aaaa"))
    step = same[same["metric"] == "in_loop_s_per_step"].iloc[0]
    assert step["verdict"] == f"{SAME_PROGRAM}, drift beyond ±5%" and step["low"] > 1.1
    text = render_findings(sweep("aaaa"), same)
    assert "Same compiled XLA program (one fingerprint in every setting): method attribute as diffstate" in text
    assert "×1.2" in text
    other = comparisons(sweep("bbbb"))
    assert other[other["metric"] == "in_loop_s_per_step"].iloc[0]["verdict"] == "slower"
    assert "Same compiled" not in render_findings(sweep("bbbb"), other)


def test_a_grouped_points_time_is_compared_only_with_times_of_its_group_size():
    """A vectorized point's time is its group's call shared by K points: against a run alone it is another kind of
    number (not compared), against a point of a group of the same size it is compared; quality always is."""
    from harness.analysis.findings import UNLIKE_GROUPS, comparisons

    def sweep(candidate_points):
        rows = []
        for method, scale, points in (("diffstate", 1.0, 1), ("attribute", 1.3, candidate_points)):
            for seed in (1, 2):
                rows.append({"status": "ok", "method": method, "freeze": "kernel", "optimizer": "adam", "seed": seed,
                             "steps": 101, "one_step_call_s": 1e-4, "timing_points": points,
                             "program_fingerprint": method, "test_mse": 0.5 + 0.1 * seed,
                             # a group's program: its compile and memory, as its points' records hold them
                             "compile_s": 0.5 * scale * points, "compile_source": "compiled", "memory_bytes": 1000 * points,
                             "run_s": json.dumps([scale * (0.0101 + 1e-4 * i) * (1 + 0.01 * seed) for i in range(5)])})
        return pd.DataFrame(rows)

    def verdicts(found):
        return dict(zip(found["metric"], found["verdict"]))

    unlike = verdicts(comparisons(sweep(64)))
    assert unlike["in_loop_s_per_step"] == unlike["memory_bytes"] == UNLIKE_GROUPS  # compile: in compare, alike
    assert unlike["test_mse"] == findings.FEW_SEEDS  # compared, seed by seed: two seeds call nothing
    assert verdicts(comparisons(sweep(1)))["in_loop_s_per_step"] == "slower"


# --- the noise floor and the run-to-run spread ---------------------------------------------------


def _seed_scale_run(method: str, *, steps: int = 123, iqr: float = 1.5e-6, seed: int = 1, scale: float = 1.0) -> dict:
    """A run as the seed study times it: ~0.3 µs steps inside a ~40 µs call whose 1-step calls spread by `iqr`."""
    calls = [scale * (40e-6 + (steps - 1) * 0.3e-6) * f for f in (1.0, 1.02, 0.98, 1.01, 0.99)]
    return {"status": "ok", "method": method, "freeze": "kernel", "optimizer": "adam", "seed": seed, "steps": steps,
            "one_step_call_s": 40e-6, "one_step_call_iqr_s": iqr, "timer_resolution_s": 1e-9,
            "run_s": json.dumps(calls), "timing_points": 1, "memory_bytes": None, "opt_state_bytes": None,
            "test_mse": None, "program_fingerprint": f"{method} program"}


def test_a_seed_scale_step_below_the_noise_floor_is_too_short_to_resolve_never_slower():
    """123 steps of 0.3 µs are 37 µs of work; a ±5% change needs 40x the 1.5 µs jitter of a call (60 µs): the
    in-loop time of a run 2x slower is 'too short', with the step count that would resolve it; 1,000 steps are not."""
    df = pd.DataFrame([_seed_scale_run("diffstate"), _seed_scale_run("stop_gradient", scale=2.0)])
    found = findings.comparisons(df)
    step = found[found["metric"] == "in_loop_s_per_step"].iloc[0]
    assert step["verdict"] == "too short to resolve: use more steps (at least 210)"
    assert step["too_short"] == 1 and step["strata"] == 0
    assert "run_s_per_step" in set(found["metric"])  # call / steps stands in, and holds the fixed cost
    longer = pd.DataFrame([_seed_scale_run(method, steps=1000, seed=seed, scale=scale) for seed in (1, 2)
                           for method, scale in (("diffstate", 1.0), ("stop_gradient", 2.0))])
    step = findings.comparisons(longer).query("metric == 'in_loop_s_per_step'").iloc[0]
    assert step["verdict"] == "slower" and step["too_short"] == 0  # two seeds: their spread is measured
    assert findings.step_time_column(longer) == "in_loop_s_per_step"
    one_seed = findings.comparisons(longer[longer["seed"] == 1]).query("metric == 'in_loop_s_per_step'").iloc[0]
    assert one_seed["verdict"] == findings.NO_SPREAD  # one run a side and no control: the interval calls nothing


def test_the_run_to_run_spread_of_one_program_widens_the_interval_of_a_run_with_steady_repeats():
    """Two runs of one program a few percent apart beyond their repeats: an interval of repeats alone would call
    a ×1.08 slower; holding the measured spread, it does not."""
    runs = [{"status": "ok", "program_fingerprint": "p", "run_s_per_step_median": value}
            for value in (1.0, 1.06, 0.95, 1.03)]
    spread = findings.run_to_run(pd.DataFrame(runs), "run_s_per_step")
    assert 0.05 < spread < 0.12  # the standard deviation seen, 0.045, bounded above: four runs are few
    steady = [([[1.0, 1.001, 0.999, 1.0]], [[1.08, 1.081, 1.079, 1.08]])]
    assert findings.verdict(findings.ratio_ci(steady, timed=True)) == "slower"
    assert findings.verdict(findings.ratio_ci(steady, timed=True, between=spread)) != "slower"


def test_a_call_the_os_held_up_does_not_move_a_timed_ratio():
    """One repeat of five held up 20x: the mean of the five would read ×4.8; the ratio leaves it out."""
    held = [([[1.0, 1.01, 0.99, 1.0, 1.0]], [[1.0, 1.01, 0.99, 1.0, 20.0]])]
    assert findings.ratio_ci(held).ratio > 4
    est = findings.ratio_ci(held, timed=True)
    assert 0.98 < est.low < est.ratio < est.high < 1.02


# --- the same report whatever the job order --------------------------------------------------------


@pytest.mark.slow
def test_the_same_records_in_two_job_orders_give_the_same_report_bytes(tmp_path):
    """One sweep's runs, numbered, placed and started in two shuffled orders: report.md (but for its date) and
    findings.csv are byte-identical, tables follow the config's order of names and ascending numbers, and the
    report names no directory of this machine."""
    made = write_matrix(tmp_path / "made", methods=("diffstate", "wrt_only", "stop_gradient"), freezes=("kernel", "head"),
                        slow={"stop_gradient": 1.3})
    records = [json.loads(p.read_text()) for p in made.rglob("result.json")]
    config = "hydra:\n  sweeper:\n    params:\n      method: stop_gradient,diffstate,wrt_only\n      freeze: head,kernel\n"
    texts = []
    for order_seed in (1, 2):
        sweep = tmp_path / f"order{order_seed}" / "study" / "2026-01-01_00-00-00-000000"
        _write(sweep / "multirun.yaml", config)
        for num, i in enumerate(np.random.default_rng(order_seed).permutation(len(records))):
            rec = {**records[i], "job": {**records[i]["job"], "num": num},
                   "started": f"2026-01-01T00:{num // 60:02d}:{num % 60:02d}+0000"}
            _write(sweep / str(num) / "result.json", json.dumps(rec))
        made = report.build_report(sweep)
        text, details = made["report"].read_text(), made["details"].read_text()
        assert str(tmp_path) not in text + details and text.count("`study/2026-01-01_00-00-00-000000`: 48 runs") == 1
        assert pd.read_csv(sweep / "runs.csv")["path"].str.match(r"^\d+/result.json$").all()
        texts.append((re.sub(r"\| report date \| .* \|", "", text), details, (sweep / "findings.csv").read_bytes()))
    assert texts[0] == texts[1]
    text, details = texts[0][:2]
    # names in the config's order (stop_gradient, diffstate, wrt_only; head, kernel), numbers ascending
    assert text.index("| stop_gradient | ×") < text.index("| wrt_only | ×") < text.index("| freeze / head |")
    assert "| diffstate, wrt_only | adam, adamw | 0 | yes | no |" in details  # lists in cells: the same order
    fit = details.split("## Fit\n", 1)[1]
    assert fit.index("| 0.001 |") < fit.index("| 0.01 |")


def test_a_value_on_one_program_is_named_once_though_both_step_times_compare_it():
    from harness.analysis.findings import SAME_PROGRAM, same_program_lines

    found = pd.DataFrame([{"axis": "method", "candidate": "jax_split", "baseline": "diffstate", "metric": metric,
                           "ratio": ratio, "verdict": SAME_PROGRAM}
                          for metric, ratio in (("in_loop_s_per_step", 0.94), ("run_s_per_step", 0.95))])
    (line,) = same_program_lines(found)
    assert "method jax_split as diffstate." in line and "×0.94 to ×0.95" in line
