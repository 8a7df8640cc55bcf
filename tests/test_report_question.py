"""Issue 28: reports that pool only runs of one compiled program, figures that read true, compare that refuses a
stale reference in one line. Synthetic records (tests/test_report.py's make_record): no JAX run here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_report import _write, make_record

from harness.analysis import frames, report, tables

pytestmark = pytest.mark.filterwarnings("error")

# A strategy sets the freeze option: probe trains the head on a frozen backbone, scratch and full train everything
# (one program: only the initial weights differ). freeze and fine_tuning co-vary, so neither changes the program
# with the other held fixed, yet probe and full are two compiled programs, 13x apart.
STRATEGIES = {"scratch": ("none", 5.2e-6), "full": ("none", 5.2e-6), "probe": ("backbone", 4e-7)}
PROGRAMS = {"scratch": "hlo-all", "full": "hlo-all", "probe": "hlo-head"}


def strategy_sweep(root, seeds=(1, 2)):
    num = 0
    for strategy, (freeze, step_s) in STRATEGIES.items():
        for seed in seeds:
            rec = make_record(num, "diffstate", "adam", 50, seed, per_step_s=step_s)
            rec["config"]["fine_tuning"] = strategy
            rec["config"]["freeze"] = {"name": freeze, "patterns": ["backbone"] if freeze != "none" else []}
            rec["timing"]["program"] = PROGRAMS[strategy]
            rec["job"]["overrides"] = [f"+strategy={strategy}", f"task.seed={seed}"]
            _write(root / str(num) / "result.json", json.dumps(rec))
            num += 1
    return root


def test_a_pooled_table_never_mixes_compiled_programs_when_two_axes_co_vary(tmp_path):
    df, _ = frames.load_records(strategy_sweep(tmp_path / "sweep"))
    keys = frames.group_keys(df)
    assert {"freeze", "fine_tuning"} <= set(keys)
    costs = tables.program_keys(df, keys)
    for _, rows in df.groupby(costs, dropna=False):
        assert rows["program_fingerprint"].nunique() == 1, costs
    assert tables.pooled_axes(df, keys, costs) == ["fine_tuning"]  # scratch and full: one program, pooled
    text = report.build_report(tmp_path / "sweep", tmp_path / "out")["details"].read_text()
    throughput = text.split("## Cost and memory of each compiled program\n")[1].split("\n## ")[0]
    assert "each row pools its runs over fine_tuning: one compiled program per row" in throughput
    rows = [line for line in throughput.splitlines() if "| diffstate |" in line]
    assert len(rows) == 2, throughput  # the probe and the full fine-tune apart, each with its own step time
    assert any("| 0.400 |" in r for r in rows) and any("| 5.20 |" in r for r in rows), rows  # in-loop step (µs)


def test_the_console_time_line_carries_the_plausibility_verdict():
    from harness.jobs.console import run_lines

    hoisted = make_record(0, "diffstate", "adam", 50, 1, peak_fraction=5.7)
    hoisted["plausibility"]["warning"] = ("faster than this machine's measured peak (5.7x its f32 matmul FLOP/s): "
                                          "XLA likely hoisted or removed work; use a per-step batch "
                                          "(train.batch_size)")
    text = "\n".join(run_lines(hoisted))
    time_line = next(line for line in text.splitlines() if line.lstrip().startswith("time"))
    assert "in the loop (NOT PLAUSIBLE, below)" in time_line
    assert "NOT PLAUSIBLE  faster than this machine's measured peak (5.7x" in text
    assert "use a per-step batch (train.batch_size): do not cite this step time" in text
    honest = "\n".join(run_lines(make_record(0, "diffstate", "adam", 50, 1, peak_fraction=0.02)))
    assert "NOT PLAUSIBLE" not in honest and "plausible      0.02x the calibrated peak (flagged above 1.5x)" in honest


def test_compare_refuses_a_reference_of_another_record_schema_in_one_line(tmp_path, capsys):
    from test_report import write_sweep

    report.build_report(write_sweep(tmp_path / "made", steps=(50,), broken=False), tmp_path / "reference")
    runs = pd.read_parquet(tmp_path / "reference" / frames.RUNS_TABLE)
    # A reference written before runs.parquet kept the schema, from schema-1 configs (no task._target_ leaf).
    runs = runs.drop(columns="schema_version")
    runs["config_key"] = [json.dumps({k: v for k, v in json.loads(key).items() if not k.endswith("._target_")})
                          for key in runs["config_key"]]
    runs.to_parquet(tmp_path / "reference" / frames.RUNS_TABLE, index=False)
    rerun = write_sweep(tmp_path / "rerun", steps=(50,), broken=False)
    assert report.main_compare([str(tmp_path / "reference"), str(rerun)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err == (f"harness compare: A ({tmp_path / 'reference'}) holds records of schema 1, this harness writes "
                   "schema 2: their configurations cannot match; regenerate it (results/reference/regenerate.sh)\n")


def test_compare_matching_nothing_is_an_error_naming_the_leaves_that_differ(tmp_path, capsys):
    from test_report import write_sweep

    a = write_sweep(tmp_path / "a", steps=(50,), broken=False)
    b = write_sweep(tmp_path / "b", steps=(200,), broken=False)
    assert report.main_compare([str(a), str(b)]) == 1
    out, err = capsys.readouterr()
    assert "| diffstate" not in out  # no empty table printed as if something was compared
    assert "no configuration is in both sweeps (8 in one only): config leaves with no value in common: " in err
    assert "train.steps: A 50; B 200" in err


def _every_figure(df, histories):
    from harness.analysis import figures
    from harness.analysis.tradeoffs import pareto_figure

    keys = frames.group_keys(df)
    summary = frames.summarize(df, keys)
    drawn = {"step_time": figures.step_time_figure(df), "training_curves": figures.training_curves_figure(df, histories),
             "time_vs_steps": figures.time_vs_steps_figure(summary, keys),
             "frozen_drift": figures.frozen_drift_figure(summary, keys),
             "compile_vs_run": figures.compile_vs_run_figure(summary, keys),
             "cost_vs_params": figures.cost_vs_params_figure(summary, keys), "pareto": pareto_figure(df)}
    return {name: fig for name, fig in drawn.items() if not isinstance(fig, str)}


@pytest.mark.slow  # over 8 s on 2 cores: the everyday suite stays near 5 minutes
def test_no_log_axis_carries_bars_and_point_labels_never_overlap(tmp_path):
    """Bars on a log axis have lengths that mean nothing; labels piled on one another are a smear. Eight
    configurations of two model sizes with close costs and one quality put every label on the same spot."""
    from matplotlib.patches import Rectangle

    from test_report import write_sweep

    for width, frozen in ((16, 256), (64, 4096)):
        write_sweep(tmp_path / "sweep" / str(width), broken=False, width=width, frozen=frozen, test_mse=0.5)
    df, _ = frames.load_records(tmp_path / "sweep")
    records = [json.loads(Path(p).read_text()) for p in df["path"]]
    drawn = _every_figure(df, {p: r["history"] for p, r in zip(df["path"], records)})
    assert {"step_time", "compile_vs_run", "cost_vs_params", "pareto"} <= set(drawn)
    for name, fig in drawn.items():
        fig.canvas.draw()
        for ax in fig.axes:
            bars = [p for p in ax.patches if isinstance(p, Rectangle)]
            assert not (bars and "log" in (ax.get_xscale(), ax.get_yscale())), f"{name}: bars on a log axis"
    renderer = drawn["pareto"].canvas.get_renderer()
    placed = 0
    for ax in drawn["pareto"].axes:
        labels = [t for t in ax.texts if t.get_text()]
        shown = [t.get_window_extent(renderer) for t in labels if t.get_visible()]
        placed += sum(len(t.get_text().split(", ")) for t in labels if t.get_visible())  # coinciding points: one
        for i, box in enumerate(shown):
            assert not any(box.overlaps(other) for other in shown[i + 1:]), f"overlapping labels: {box}"
    assert placed >= 2, "labels hidden rather than placed"
    # 16 configurations, over the 12 a panel labels whole: the caption says which points carry text, and where
    # colours and markers tell them apart instead, the legend keys both.
    caption = drawn["pareto"]._suptitle.get_text().replace("\n", " ")
    assert "labels on the ringed only, in a panel that rings 12 or fewer: the cost-and-quality table names every " \
        "point" in caption, caption
    legend = [t.get_text() for t in drawn["pareto"].legends[0].get_texts()]
    assert "method diffstate" in legend and "optimizer adamw" in legend, legend


def patterns_sweep(root):
    """An own sweep over `freeze.patterns`: one method, one freeze option name, one optimizer."""
    for num, (patterns, step_s) in enumerate([([], 5e-6), (["^backbone/"], 1e-6)] * 2):
        rec = make_record(num, "diffstate", "adam", 50, 1 + num // 2, per_step_s=step_s)
        rec["config"]["freeze"] = {"name": "own", "patterns": patterns}
        rec["timing"]["program"] = f"hlo-{len(patterns)}"
        rec["job"]["overrides"] = [f"freeze.patterns={json.dumps(patterns)}", f"task.seed={1 + num // 2}"]
        _write(root / str(num) / "result.json", json.dumps(rec))
    return root


def test_a_swept_config_leaf_is_an_axis_of_the_findings_and_the_baseline(tmp_path, capsys):
    sweep = patterns_sweep(tmp_path / "sweep")
    df, _ = frames.load_records(sweep)
    assert frames.question_axes(df) == ["freeze.patterns"]
    assert report.main_report([str(sweep), "--baseline", 'freeze.patterns=["^backbone/"]']) == 0
    text = (sweep / "report.md").read_text()
    assert "The sweep compares nothing" not in text
    found = pd.read_csv(sweep / report.FINDINGS_NAME)
    assert set(found["axis"]) == {"freeze.patterns"} and set(found["baseline"]) == {'["^backbone/"]'}
    assert report.main_report([str(sweep), "--baseline", "model.width=3"]) == 2
    assert "no run of this sweep has an axis model.width; the axes it varies: freeze.patterns" in capsys.readouterr().err


def test_flagged_step_times_take_no_part_in_a_verdict(tmp_path):
    from harness.analysis import findings

    sweep = patterns_sweep(tmp_path / "sweep")
    for path in sweep.rglob("result.json"):  # the frozen-backbone runs read faster than the machine can compute
        rec = json.loads(path.read_text())
        if rec["config"]["freeze"]["patterns"]:
            rec["plausibility"]["warning"] = "faster than this machine's measured peak (5.7x ...)"
            path.write_text(json.dumps(rec))
    df, _ = frames.load_records(sweep)
    found = findings.comparisons(df, axes=["freeze.patterns"])
    timed = found[found["metric"].map(lambda m: findings.MEASURES[m].timed)]
    assert len(timed) and (timed["strata"] == 0).all() and timed["verdict"].eq("no data").all()
    assert found.loc[found["metric"] == "memory_bytes", "strata"].item() == 1  # untimed measures still compare


def test_the_dashboard_groups_by_the_swept_axes(tmp_path):
    import warnings

    from harness.analysis import dashboard

    with warnings.catch_warnings():  # wandb_workspaces' own pydantic V1 validators warn on import
        warnings.simplefilter("ignore", DeprecationWarning)
        pytest.importorskip("wandb_workspaces")
        workspace = dashboard.build_workspace(patterns_sweep(tmp_path / "sweep"))
    assert dashboard.swept_axes(dashboard._runs(tmp_path / "sweep")) == ["freeze.patterns"]
    assert [s.name for s in workspace.sections][1] == "Cost, drift and fit per freeze.patterns"
    assert "config:freeze.patterns" in dashboard.panel_metrics(workspace)


@pytest.mark.slow  # over 8 s on 2 cores: the everyday suite stays near 5 minutes
def test_compare_across_two_machines_says_so_and_divides_by_their_calibration(tmp_path, capsys):
    """B ran on a CPU whose calibrated matmul peak is 0.644 of A's: every configuration reads ~1/0.644 slower,
    and seed 1's loss rounds differently there. Raw verdicts gate by default; quality is numerics, not a
    regression; --calibrated gates on the ratio divided by the machines' time ratio."""
    from test_report import write_sweep

    a = write_sweep(tmp_path / "a", steps=(200,), broken=False)
    b = write_sweep(tmp_path / "b", steps=(200,), broken=False)
    for path in b.rglob("result.json"):
        rec = json.loads(path.read_text())
        rec["environment"]["cpu_model"] = "Other CPU"
        rec["environment"]["calibration"]["matmul_flops_per_s"] *= 0.644
        rec["timing"]["in_loop_s_per_step"] /= 0.644
        rec["timing"]["run_s"] = [t / 0.644 for t in rec["timing"]["run_s"]]
        for name in ("run_s_per_call", "run_s_per_step"):
            rec["timing"][name] = {k: v / 0.644 for k, v in rec["timing"][name].items()}
        rec["metrics"]["test"]["mse"] *= 1.24  # seed by seed: the pretraining rounds differently on this CPU
        path.write_text(json.dumps(rec))
    assert report.main_compare([str(a), str(b), "--fail-on-regression"]) == 1  # the raw ratio gates
    out = capsys.readouterr().out
    machine_line = next(line for line in out.splitlines() if line.startswith("**Two machines**"))
    assert "cpu_model A Test CPU, B Other CPU" in machine_line and "×1.55" in machine_line
    assert out.index("**Two machines**") < out.index("Measured alike")
    assert "÷ machine (estimate)" in out and "| in-loop step | ×1.55 [" in out and "(÷ machine: ×1.00 [" in out
    assert "| test MSE | ×1.24 (2 seeds: no CI, add seeds) | not tested: too few seeds |" in out
    assert out.splitlines()[-1] == ("4 matched, 0 with a regression, 0 unmatched; overall regression in in-loop step, "
                                    "run time / step")  # the raw time ratio, not the quality, fails the gate
    assert report.main_compare([str(a), str(b), "--fail-on-regression", "--calibrated"]) == 0
    assert "| in-loop step | ×1.55 [1.14, 2.12] (÷ machine: ×1.00 [0.736, 1.36]) | no significant difference |" \
        in capsys.readouterr().out
    # Two seeds: a quality ratio calls nothing, even when told to call quality (tests/test_seed_statistics.py: 3+)
    assert report.main_compare([str(a), str(b), "--fail-on-regression", "--calibrated", "--exact-quality"]) == 0
    assert "| test MSE | ×1.24 (2 seeds: no CI, add seeds) | not tested: too few seeds |" in capsys.readouterr().out


def test_training_curves_show_the_test_metric_beside_train_and_tell_the_strategies_apart(tmp_path):
    from harness.analysis import figures

    sweep = strategy_sweep(tmp_path / "sweep")
    for path in sweep.rglob("result.json"):
        rec = json.loads(path.read_text())
        rec["target"] = {"metric": "mse", "every": 10, "evaluations": {"step": [10, 20, 30, 40],
                                                                       "value": [3.0, 2.5, 2.2, 2.1]}}
        path.write_text(json.dumps(rec))
    df, _ = frames.load_records(sweep)
    records = {p: json.loads(Path(p).read_text()) for p in df["path"]}
    fig = figures.training_curves_figure(df, {p: r["history"] for p, r in records.items()}, ["fine_tuning"],
                                         {p: {**r["target"]["evaluations"], "metric": "mse"}
                                          for p, r in records.items()})
    train, test = fig.axes
    assert len(train.lines) == len(test.lines) == len(df)  # every run's test curve beside its train curve
    assert "test" in test.get_title() and test.get_ylabel() == "test mse"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == [f"fine_tuning={s}" for s in STRATEGIES]  # freeze follows the strategy: not a second key
    assert "not told apart" not in fig._suptitle.get_text()


def test_a_flagged_step_time_takes_no_part_in_the_cost_table_or_a_pareto_mark():
    from harness.analysis.tradeoffs import configurations

    rows = [{"status": "ok", "task": "t", "model": "m", "method": "a", "freeze": "f", "optimizer": "o", "seed": s,
             "in_loop_s_per_step": step, "warning": warning, "test_accuracy": 0.9}
            for s, (step, warning) in enumerate([(1e-5, "faster than this machine's measured peak"), (6e-4, None)])]
    _, table = configurations(frames.typed(pd.DataFrame(rows)))
    assert table["in_loop_s_per_step"].tolist() == [6e-4]  # the hoisted 10 µs is not a median's half


def test_a_tuned_sweeps_training_curves_get_a_panel_per_strategy_not_per_trial():
    """160 trials, one learning rate each: a panel per question value, never one per trial (a tuned sweep's
    384 runs once made a 384-panel figure that took minutes to draw)."""
    from harness.analysis.figures import training_curves_figure

    rows, histories = [], {}
    for strategy in ("scratch", "finetune", "probe", "lora4"):
        for trial in range(40):
            path = f"/runs/{strategy}/{trial}"
            rows.append({"status": "ok", "path": path, "fine_tuning": strategy, "method": "diffstate", "task": "digits",
                         "model": "cnn", "lr": 10 ** (-4 + 3 * trial / 40), "seed": trial % 3, "experiment": "x"})
            histories[path] = {"step": list(range(10)), "train_cross_entropy": list(np.linspace(2, 0.1, 10))}
    figure = training_curves_figure(pd.DataFrame(rows), histories, ["fine_tuning"])
    assert len([ax for ax in figure.axes if ax.get_visible()]) == 4


def test_the_cost_figure_of_runs_without_their_own_times_is_skipped_with_why():
    from harness.analysis.figures import cost_vs_params_figure

    summary = pd.DataFrame({"ok": [1, 1], "method": ["diffstate"] * 2, "freeze": ["none"] * 2, "model": ["cnn", "vit"],
                            "trainable_params_median": [10, 20], "frozen_params_median": [0, 0],
                            "in_loop_s_per_step_median": [None, None], "memory_bytes_median": [None, None]})
    assert cost_vs_params_figure(summary, ["model", "method", "freeze"]) == "no run recorded its own step time or memory"
