"""`harness report` / `harness compare` on synthetic sweeps: result.json files written by hand.

No JAX run here: each record is built to look like one `harness -m ...` writes,
plus the records a real sweep can leave behind when things go wrong (corrupt,
half-written, failed, skipped).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.analysis import compare, figures, findings, frames, report

from wandb_reader import read_finished_run

pytestmark = pytest.mark.filterwarnings("error")  # no warnings from pandas or matplotlib

PNG = b"\x89PNG\r\n\x1a\n"
METHODS = ("diffstate", "stop_gradient")
OPTIMIZERS = ("adam", "adamw")
STEPS = (50, 200)
SEEDS = (1, 2)


def make_record(num: int, method: str, optimizer: str, steps: int, seed: int, *, per_step_s: float = 2e-6,
                status: str = "ok", name: str = "study", results_dir: str = "results", frozen: int = 1,
                resume: str | None = None, width: int = 16, peak_fraction: float = 0.01,
                run_factors=(1.0, 1.1, 0.95), test_mse: float | None = None) -> dict:
    """A record shaped like harness.jobs.app.run_job writes; stop_gradient with adamw moves the frozen kernel."""
    moved = method == "stop_gradient" and optimizer == "adamw"
    overrides = [f"method={method}", f"optimizer={optimizer}", f"train.steps={steps}", f"task.seed={seed}"]
    rec = {
        "schema_version": 2,
        "status": status,
        "error": None,
        "job": {"name": f"harness-{num}", "num": num, "overrides": overrides,
                "override_dirname": ",".join(overrides), "output_dir": f"/sweep/{num}"},
        "config": {
            "name": name, "results_dir": results_dir, "resume": resume,
            "task": {"_target_": "harness.core.tasks.line.line_task", "name": "seed", "seed": seed, "slope": 2.234,
                     "intercept": -1.123, "n_train": 55, "n_test": 55},
            "model": {"_target_": "harness.core.models.linear.linear", "name": "linear", "pretrained_kernel": 2.0,
                      "width": width},
            "freeze": {"name": "kernel", "patterns": ["kernel"]},
            "method": {"name": method},
            "optimizer": {"name": optimizer, "lr": 1e-3, "weight_decay": 1e-4 if optimizer == "adamw" else 0.0},
            "train": {"steps": steps, "warmup": 1, "repeats": 3},
            "device": {"platform": "cpu", "index": 0},
            "tracker": {"wandb": {"mode": "disabled", "project": "nnx-freeze-bench", "entity": None, "group": None,
                                  "job_type": "train", "tags": []}, "history_points": 1000},
        },
        "started": f"2026-01-01T00:00:{num:02d}+0000",
        "environment": {
            "versions": {"jax": "0.10.2", "jaxlib": "0.10.2", "flax": "0.12.8", "optax": "0.2.8",
                         "hydra-core": "1.3.8", "wandb": "0.31.0", "numpy": "2.4.6"},
            "python": "3.11.7", "cpu_model": "Test CPU", "cpu_count": 2, "git_commit": "abc123",
            "platform": "cpu", "device_kind": "cpu", "device": "cpu:0", "device_count": 1,
            "calibration": {"matmul_flops_per_s": 2.5e11, "copy_bytes_per_s": 8e9, "matmul_size": 1536,
                            "copy_bytes": 2**26},
        },
    }
    if status in ("failed", "skipped"):
        rec["error"] = {"type": "ValueError" if status == "failed" else "DeviceUnavailable",
                        "message": f"planted {status} run"}
        return rec
    mse = 3.0 - 0.002 * steps + 0.1 * seed
    drift = 1e-5 * steps / 50 if moved else 0.0
    runs = [per_step_s * steps * f for f in run_factors]
    rec.update({
        "metrics": {"train": {"mse": mse, "mae": mse / 2},
                    "test": {"mse": mse * 1.1 if test_mse is None else test_mse, "mae": mse / 2},
                    "last_step_train_mse": mse, "slope": 2.0 - drift, "intercept": -0.001 * steps},
        "drift": {"l2": drift, "max_abs": drift, "unchanged": not moved,
                  "leaves": {"kernel": {"l2": drift, "max_abs": drift, "unchanged": not moved}}},
        "parameters": {"trainable": 1, "frozen": frozen, "trainable_paths": ["bias"], "frozen_paths": ["kernel"],
                       "grad_paths": ["bias", "kernel"] if method == "stop_gradient" else ["bias"],
                       "grads_cover_frozen": method == "stop_gradient"},
        "optimizer_state": {"bytes": 48 if method == "stop_gradient" else 40, "leaves": 10, "frozen_leaves": 0,
                            "frozen_bytes": 0},
        "timing": {
            "compile_s": 0.3 if seed == SEEDS[0] else 2e-5,
            "compile_source": "compiled" if seed == SEEDS[0] else "in_process_cache",
            "steps": steps, "run_s": runs,
            "run_s_per_call": {"median": sorted(runs)[1], "min": min(runs), "max": max(runs), "iqr": 0.0},
            "run_s_per_step": {"median": sorted(runs)[1] / steps, "min": min(runs) / steps,
                               "max": max(runs) / steps, "iqr": 0.0},
            "in_loop_s_per_step": per_step_s * frozen ** 0.5,
            "dispatch": {"one_step_call_s": 1e-6, "overhead_s": 5e-7},
            "memory": {"total_bytes": 1000 * frozen, "temp_size_in_bytes": 100 * frozen},
            "matmuls": {"inside": 2, "outside": 3 if peak_fraction > 1.5 else 0},
        },
        "batch": {"regime": "full_batch", "size": 55, "per_step": False},
        "plausibility": {"achieved_flops_per_s": peak_fraction * 2.5e11, "peak_fraction": peak_fraction,
                         "limit": 1.5, "warning": "faster than this machine's measured peak" if peak_fraction > 1.5
                         else None, "note": None},
        "history": {"step": list(range(0, steps, 10)),
                    "train_mse": [mse + 1.0 / (1 + s) for s in range(0, steps, 10)],
                    "train_mae": [mse / 2 for _ in range(0, steps, 10)]},
        "wandb": {"mode": "disabled"},
    })
    return rec


def write_sweep(root: Path, *, steps=STEPS, slow: dict | None = None, broken: bool = True, **kw) -> Path:
    """A multirun directory: <root>/<num>/result.json per job, plus failed/skipped/corrupt ones."""
    slow = slow or {}
    num = 0
    for method in METHODS:
        for optimizer in OPTIMIZERS:
            for n in steps:
                for seed in SEEDS:
                    factor = slow.get((method, optimizer, n, seed), 1.0)
                    # Seeds of one configuration run minutes apart: their times differ a little (±2%).
                    factor *= 1.0 + 0.02 * (SEEDS.index(seed) - (len(SEEDS) - 1) / 2)
                    rec = make_record(num, method, optimizer, n, seed, per_step_s=2e-6 * factor, **kw)
                    _write(root / str(num) / "result.json", json.dumps(rec))
                    num += 1
    if broken:
        _write(root / str(num) / "result.json", json.dumps(make_record(num, "diffstate", "adam", 999, 1,
                                                                       status="failed")))
        _write(root / str(num + 1) / "result.json", json.dumps(make_record(num + 1, "diffstate", "adam", 999, 2,
                                                                           status="skipped")))
        _write(root / "corrupt" / "result.json", "{not json at all")
        _write(root / "half" / "result.json", json.dumps(make_record(99, "diffstate", "adam", 50, 1))[:300])
        _write(root / "list" / "result.json", "[1, 2, 3]")
    return root


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


N_OK = len(METHODS) * len(OPTIMIZERS) * len(STEPS) * len(SEEDS)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    return write_sweep(tmp_path_factory.mktemp("sweep"))


@pytest.fixture(scope="module")
def built(sweep, tmp_path_factory):
    return report.build_report(sweep, tmp_path_factory.mktemp("report"))


# --- load_records ------------------------------------------------------------------------------


def test_load_records_one_row_per_run_with_flat_columns(sweep):
    df, problems = frames.load_records(sweep)
    assert len(df) == N_OK + 2
    expected = {
        *frames.AXIS_COLUMNS, "train_mse", "test_mse", "train_mae", "test_mae", "slope", "intercept", "drift_l2",
        "drift_max_abs", "drift_unchanged", "opt_state_bytes", "trainable_params", "frozen_params", "compile_s",
        "compile_source", "run_s_per_step_median", "run_s_per_step_iqr", "run_s_per_call_median", "status",
        "error", "job_num", "overrides", "path",
    }
    assert expected <= set(df.columns), expected - set(df.columns)
    assert df["status"].value_counts().to_dict() == {"ok": N_OK, "failed": 1, "skipped": 1}
    assert list(df["job_num"]) == list(range(N_OK + 2))  # job 10 after job 9, not after job 1
    assert set(df["method"]) == set(METHODS) and set(df["steps"]) == {*STEPS, 999}


def test_corrupt_and_half_written_records_are_reported_not_fatal(sweep):
    _, problems = frames.load_records(sweep)
    assert sorted(p.parent.name for p, _ in problems) == ["corrupt", "half", "list"]
    assert all(reason for _, reason in problems)


def test_missing_metric_keys_become_nulls(sweep):
    df, _ = frames.load_records(sweep)
    failed = df[df["status"] == "failed"].iloc[0]
    assert pd.isna(failed["train_mse"]) and pd.isna(failed["compile_s"]) and pd.isna(failed["drift_unchanged"])
    assert failed["error"] == "ValueError: planted failed run"
    assert "method=diffstate" in failed["overrides"]


def test_axis_columns_agree_with_tracking_axes(sweep):
    from harness.core.fields import axes

    df, _ = frames.load_records(sweep)
    first = json.loads((sweep / "0" / "result.json").read_text())
    assert {k: df.iloc[0][k] for k in frames.AXIS_COLUMNS} == pytest.approx(axes(first))


def test_other_varying_config_gets_a_column(tmp_path):
    for num, depth in enumerate((1, 2)):
        rec = make_record(num, "diffstate", "adam", 50, 1)
        rec["config"]["model"]["depth"] = depth
        _write(tmp_path / str(num) / "result.json", json.dumps(rec))
    df, _ = frames.load_records(tmp_path)
    assert list(df["model.depth"]) == [1, 2]
    assert "model.depth" in frames.group_keys(df)


# --- harness report ----------------------------------------------------------------------------


@pytest.mark.slow  # over 8 s on 2 cores: the everyday suite stays near 5 minutes
def test_report_writes_tables_markdown_and_png_figures(built):
    out = built["report"].parent
    assert len(pd.read_parquet(out / "runs.parquet")) == N_OK + 2
    assert len(pd.read_csv(out / "runs.csv")) == N_OK + 2
    text = built["report"].read_text()
    sections = ("## Findings", "## Figures", "## Is the timed work real?", "## Detail tables", "## Environment",
                "## Runs that did not finish ok")
    assert [text.index(section) for section in sections] == sorted(text.index(section) for section in sections)
    assert "| versions | jax 0.10.2 · jaxlib" in text and "Test CPU (2 cores)" in text and "abc123" in text
    assert "planted failed run" in text and "planted skipped run" in text
    assert "corrupt" in text and "half" in text
    assert "No run is faster than the calibrated peak" in text and "[tables.md](tables.md)" in text
    # The detail tables live beside report.md, one table per fact, and link back.
    assert built["details"] == out / "tables.md" and built["details"] in built["tables"]
    details = built["details"].read_text()
    sections = ("## Frozen parameters: what each method does", "## Fit", "## Cost and memory of each compiled program")
    assert [details.index(section) for section in sections] == sorted(details.index(section) for section in sections)
    assert "[report.md](report.md)" in details and "achieved GFLOP/s" in details
    assert "## Throughput" not in details  # its columns are the Cost table's: one table per fact
    assert not any(section in text for section in sections)
    for name, file in figures.FIGURES.items():
        if name == "cost_vs_params":
            assert built["figures"][name].startswith("the sweep has a single model size")
            assert f"]({file})" not in text and "the sweep has a single model size" in text
            continue
        assert built["figures"][name] == out / file
        data = (out / file).read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000, name
        assert f"]({file})" in text


def test_tables_group_by_method_freeze_optimizer_and_steps(built):
    summary = frames.summarize(built["df"])
    assert list(summary.columns[:4]) == ["method", "freeze", "optimizer", "steps"]  # weight_decay adds no rows
    row = summary[(summary["method"] == "diffstate") & (summary["optimizer"] == "adam") & (summary["steps"] == 50)]
    assert row["ok"].item() == 2
    assert row["train_mse_min"].item() < row["train_mse_median"].item() < row["train_mse_max"].item()
    assert row["compile_s_median"].item() == 0.3  # the second seed's cache hit is not a compile time


def test_methods_table_shows_the_naive_method_drifting_with_adamw(built):
    table = report.methods_table(built["df"]).set_index(["method", "optimizer"])
    naive = table.loc[("stop_gradient", "adamw")]
    assert naive["frozen bitwise unchanged"] == "no" and float(naive["frozen drift L2 (max)"]) > 0
    assert naive["grads cover frozen"] == "yes"
    fixed = table.loc[("diffstate", "adamw")]
    assert fixed["frozen bitwise unchanged"] == "yes" and fixed["frozen drift L2 (max)"] == "0"
    assert fixed["grads cover frozen"] == "no" and fixed["optimizer state (bytes)"] == "40"
    assert "| stop_gradient | adamw |" in built["details"].read_text()


@pytest.mark.slow  # over 8 s on 2 cores: the everyday suite stays near 5 minutes
def test_model_sizes_get_a_cost_figure_and_implausible_runs_are_listed(tmp_path):
    for num, (width, frozen) in enumerate([(16, 256), (64, 4096), (256, 65536)]):
        for method, fraction in (("diffstate", 40.0), ("stop_gradient", 0.5)):
            rec = make_record(num * 2 + (method == "stop_gradient"), method, "adamw", 50, 1, width=width,
                              frozen=frozen, peak_fraction=fraction)
            _write(tmp_path / "sweep" / str(rec["job"]["num"]) / "result.json", json.dumps(rec))
    made = report.build_report(tmp_path / "sweep")
    assert made["figures"]["cost_vs_params"] == tmp_path / "sweep" / figures.FIGURES["cost_vs_params"]
    text = made["report"].read_text()
    assert "**3 runs report step times faster than this machine can compute them**" in text
    assert "250 GFLOP/s" in text  # the calibrated peak, from the records' environment
    df = made["df"]
    assert df["memory_bytes"].tolist() == [256_000, 256_000, 4_096_000, 4_096_000, 65_536_000, 65_536_000]
    assert df["warning"].notna().sum() == 3 and (df.loc[df["warning"].notna(), "method"] == "diffstate").all()


def test_figure_without_data_is_skipped_with_a_line(tmp_path):
    write_sweep(tmp_path / "sweep", steps=(50,), broken=False, frozen=0)  # one step count, nothing frozen
    made = report.build_report(tmp_path / "sweep")
    for name in ("time_vs_steps", "frozen_drift"):
        assert isinstance(made["figures"][name], str)
        assert not (tmp_path / "sweep" / figures.FIGURES[name]).exists()
    text = made["report"].read_text()
    not_drawn = next(line for line in text.splitlines() if line.startswith("_Not drawn: "))
    assert "(the sweep has a single step count" in not_drawn and "(no ok run has frozen" in not_drawn
    assert made["figures"]["training_curves"].is_file()


def test_report_of_a_sweep_with_no_ok_run(tmp_path):
    _write(tmp_path / "0" / "result.json", json.dumps(make_record(0, "diffstate", "adam", 50, 1, status="failed")))
    made = report.build_report(tmp_path)
    assert all(isinstance(why, str) for why in made["figures"].values())
    assert "No run finished ok" in made["report"].read_text()


def test_report_command_prints_counts_and_problem_runs(tmp_path, capsys):
    sweep = write_sweep(tmp_path / "sweep", steps=(50,))
    assert report.main_report([str(sweep), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    n_ok = N_OK // len(STEPS)
    assert f"{n_ok + 2} runs: {n_ok} ok, 0 diverged, 1 failed, 1 skipped, 0 crashed; 3 unreadable records" in out
    assert str(tmp_path / "out" / "report.md") in out and "skipped time_vs_steps" in out
    assert "ValueError: planted failed run" in out and "DeviceUnavailable" in out
    assert str(sweep / "corrupt" / "result.json") in out
    assert report.main_report([str(tmp_path / "missing")]) == 2


def test_cli_report_in_a_subprocess(tmp_path):
    _write(tmp_path / "0" / "result.json", json.dumps(make_record(0, "diffstate", "adamw", 50, 1)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    proc = subprocess.run([sys.executable, "-m", "harness", "report", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "1 runs: 1 ok" in proc.stdout
    assert (tmp_path / "report.md").is_file() and (tmp_path / "runs.parquet").is_file()


# --- harness compare ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_sweeps(tmp_path_factory):
    """B = A with one configuration 20% slower and every other one 1% slower; other name, dirs, resumed."""
    root = tmp_path_factory.mktemp("compare")
    slow = {key: 1.01 for key in [(m, o, n, s) for m in METHODS for o in OPTIMIZERS for n in STEPS for s in SEEDS]}
    for seed in SEEDS:
        slow[("stop_gradient", "adamw", 200, seed)] = 1.2
    a = write_sweep(root / "a", broken=False)
    b = write_sweep(root / "b", slow=slow, broken=False, name="other_name", results_dir="/elsewhere",
                    resume="/elsewhere/other_name/then")
    return a, b


N_CONFIGS = N_OK // len(SEEDS)  # seeds are a configuration's replicates


def test_compare_flags_a_20_percent_slowdown_and_not_a_1_percent_change(two_sweeps):
    (a, _), (b, _) = frames.load_records(two_sweeps[0]), frames.load_records(two_sweeps[1])
    table, unmatched = compare.compare(a, b, threshold=0.05)
    assert len(table) == N_CONFIGS and unmatched.empty and (table["seeds"] == 2).all()
    flagged = table[table["regression"]]
    assert len(flagged) == 1
    row = flagged.iloc[0]
    assert (row["method"], row["optimizer"], row["steps"]) == ("stop_gradient", "adamw", 200)
    assert row["run_s_per_step_ratio"] == pytest.approx(1.2)
    assert 1.05 < row["run_s_per_step_low"] < 1.2 < row["run_s_per_step_high"]  # the CI excludes 1 and +5%
    assert row["run_s_per_step_verdict"] == "slower" and row["in_loop_s_per_step_verdict"] == "slower"
    assert "run time / step ×1.20 [" in row["flags"]
    others = table[~table["regression"]]
    assert (others["run_s_per_step_ratio"] - 1.01).abs().max() < 1e-9
    assert set(others["run_s_per_step_verdict"]) == {"no significant difference"}  # 1% is within the noise
    # paired by seed, and two seeds give no interval: nothing is called, not even "identical"
    assert set(table["train_mse_verdict"]) == {findings.FEW_SEEDS}
    overall = table.attrs["overall"].set_index("column")
    assert overall.at["run_s_per_step", "configurations"] == N_CONFIGS
    assert overall.at["run_s_per_step", "low"] < 1.05  # one slow configuration of 8 does not move the whole sweep
    assert table.attrs["overall"]["regression"].sum() == 0


@pytest.mark.slow  # over 8 s on 2 cores: the everyday suite stays near 5 minutes
def test_an_a_a_comparison_with_noise_flags_nothing(tmp_path):
    """Two sweeps of the same code: every timed call drawn from the same noise (10% spread), seeded;
    then the same with one configuration's test MSE 10% higher for every seed, which is a real change."""
    rng = np.random.default_rng(7)
    runs = [(m, o, s) for m in METHODS for o in OPTIMIZERS for s in (*SEEDS, 3)]  # 3 seeds: a quality CI
    test_mse = {run: float(rng.normal(3.0, 0.3)) for run in runs}  # what a seed computes, on both sides
    sweeps = []
    for side in ("a", "b", "worse"):
        root = tmp_path / side
        for num, run in enumerate(runs):
            worse = 1.1 if side == "worse" and run[:2] == ("diffstate", "adam") else 1.0
            rec = make_record(num, *run[:2], 50, run[2], run_factors=tuple(rng.normal(1.0, 0.1, 5)),
                              test_mse=test_mse[run] * worse)
            _write(root / str(num) / "result.json", json.dumps(rec))
        sweeps.append(str(root))
    table, _ = compare.compare(frames.load_records(sweeps[0])[0], frames.load_records(sweeps[1])[0])
    assert not table["regression"].any(), table["flags"].tolist()
    assert set(table["test_mse_verdict"]) == {"identical"}
    assert report.main_compare([*sweeps[:2], "--fail-on-regression"]) == 0
    table, _ = compare.compare(frames.load_records(sweeps[0])[0], frames.load_records(sweeps[2])[0])
    # every seed 10% worse: the seeds agree, so their interval is ×1.10 wide 0, drawn from them (never "exact")
    assert table["regression"].sum() == 1 and "test MSE ×1.10 [1.10, 1.10] higher (regression)" in \
        table["flags"].sum()


@pytest.mark.slow
def test_fail_on_regression_sets_the_exit_code(two_sweeps, tmp_path, capsys):
    a, b = map(str, two_sweeps)
    assert report.main_compare([a, b]) == 0
    assert report.main_compare([a, b, "--fail-on-regression", "--out", str(tmp_path / "cmp.csv")]) == 1
    assert report.main_compare([a, b, "--fail-on-regression", "--threshold", "50%"]) == 0
    assert report.main_compare([b, a, "--fail-on-regression"]) == 0  # faster is an improvement
    assert report.main_compare([a, a, "--fail-on-regression"]) == 0  # A/A
    out = capsys.readouterr().out
    assert "**×1.20 [" in out and "slower**" in out and "1 with a regression" in out
    assert "Over all 8 matched configurations" in out
    assert len(pd.read_csv(tmp_path / "cmp.csv")) == N_CONFIGS
    assert report.main_compare([a, b, "--out", str(tmp_path / "cmp.md")]) == 0
    assert (tmp_path / "cmp.md").read_text().startswith("# Compare")
    assert report._main(["harness/analysis/report.py", "compare", a, b, "--fail-on-regression"]) == 1  # python -m harness.analysis.report


def test_compare_lists_unmatched_runs_and_status_regressions(tmp_path):
    a = write_sweep(tmp_path / "a", steps=(50,), broken=False)
    b = write_sweep(tmp_path / "b", steps=(50, 200), broken=False)
    rec = json.loads((b / "0" / "result.json").read_text())
    _write(b / "0" / "result.json", json.dumps({**rec, "status": "diverged"}))
    table, unmatched = compare.compare(frames.load_records(a)[0], frames.load_records(b)[0])
    assert len(table) == 4 and len(unmatched) == 4 and set(unmatched["only in"]) == {"B"}
    assert table["regression"].sum() == 1 and "status diverged,ok" in table[table["regression"]]["flags"].item()


def test_threshold_parsing():
    assert compare.parse_threshold("5%") == pytest.approx(0.05)
    assert compare.parse_threshold("0.1") == pytest.approx(0.1)
    with pytest.raises(ValueError):
        compare.parse_threshold("5")


# --- W&B ---------------------------------------------------------------------------------------


@pytest.mark.slow  # over 8 s on 2 cores: the everyday suite stays near 5 minutes
def test_report_is_logged_as_an_offline_wandb_run(tmp_path, monkeypatch):
    for name in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb-home"))
    sweep = write_sweep(tmp_path / "sweep", steps=(50,), broken=False)
    df, _ = frames.load_records(sweep)  # what harness.analysis.report_callback does after a multirun
    figures = report.write_report(sweep, df)
    assert (sweep / "report.md").is_file() and figures["training_curves"].is_file()
    error = report.log_report_to_wandb(sweep, df, figures, mode="offline", project="nnx-freeze-bench", group="study")
    assert error is None
    run_files = list((sweep / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(run_files) == 1
    run = read_finished_run(run_files[0])
    assert run["run"].job_type == "report" and run["run"].run_group == "study" and run["exit_code"] == 0
    logged = set(run["summary"])
    assert {"figures/training_curves/_type", "report/summary/_type", "report/methods/_type"} <= logged
    assert run["summary"]["runs/ok"] == N_OK // len(STEPS)


def test_wandb_failure_is_returned_not_raised(tmp_path):
    df, _ = frames.load_records(write_sweep(tmp_path, steps=(50,), broken=False))
    assert report.log_report_to_wandb(tmp_path, df, {}, mode="disabled", project="p", group="g") is None
    error = report.log_report_to_wandb(tmp_path / "no" / "such" / "\0dir", df, {}, mode="no-such-mode",
                                       project="p", group="g")
    assert isinstance(error, str) and error


# --- completeness and malformed records ----------------------------------------------------------


def _planned_sweep(root: Path, recorded: tuple[int, ...], planned: int = 3) -> Path:
    """A sweep whose sweep.json plans `planned` jobs (steps 50, 51, ...) and has records for `recorded` only."""
    jobs = [{"num": n, "overrides": [f"train.steps={50 + n}", "method=diffstate"]} for n in range(planned)]
    _write(root / "sweep.json", json.dumps({"planned_jobs": planned, "jobs": jobs}))
    for n in recorded:
        _write(root / str(n) / "result.json", json.dumps(make_record(n, "diffstate", "adam", 50 + n, 1)))
    return root


@pytest.mark.slow  # over 8 s on 2 cores: the everyday suite stays near 5 minutes
def test_report_lists_planned_jobs_without_a_record_and_exits_1_unless_allowed(tmp_path):
    sweep = _planned_sweep(tmp_path / "sweep", recorded=(0,))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    proc = subprocess.run([sys.executable, "-m", "harness", "report", str(sweep)], capture_output=True, text=True,
                          timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 runs: 1 ok" in proc.stdout and "missing: 2 planned jobs have no record (sweep.json):" in proc.stdout
    assert "  #1: train.steps=51 method=diffstate" in proc.stdout and "  #2: train.steps=52" in proc.stdout
    assert "incomplete sweep: 2 planned jobs with no record" in proc.stderr and "Traceback" not in proc.stderr
    text = (sweep / "report.md").read_text()
    assert "**2 planned jobs with no record**" in text and "## Planned jobs with no record" in text
    assert report.main_report([str(sweep), "--allow-missing"]) == 0
    assert report.main_report([str(_planned_sweep(tmp_path / "whole", recorded=(0, 1, 2)))]) == 0


@pytest.mark.slow  # over 8 s on 2 cores: the everyday suite stays near 5 minutes
def test_a_crashed_job_fails_the_report_and_a_live_one_is_shown_running(tmp_path, capsys):
    sweep = _planned_sweep(tmp_path, recorded=(0, 1))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    marker = {**make_record(2, "diffstate", "adam", 52, 1), "status": "running",
              "process": {"host": socket.gethostname(), "pid": int(dead.stdout)}}
    for key in ("metrics", "drift", "timing", "parameters", "optimizer_state"):
        marker.pop(key)
    _write(sweep / "2" / "result.json", json.dumps(marker))
    assert report.main_report([str(sweep)]) == 1
    out = capsys.readouterr().out
    assert "3 runs: 2 ok, 0 diverged, 0 failed, 0 skipped, 1 crashed" in out
    assert "#2 crashed" in out and f"pid {int(dead.stdout)}" in out
    _write(sweep / "2" / "result.json", json.dumps({**marker, "process": {"host": socket.gethostname(),
                                                                          "pid": os.getpid()}}))
    assert report.main_report([str(sweep)]) == 0  # still running: not a failure, shown as such
    assert "0 crashed, 1 running" in capsys.readouterr().out


@pytest.mark.slow  # over 8 s on 2 cores: the everyday suite stays near 5 minutes
def test_compare_counts_a_configuration_gone_from_b_as_a_regression_and_fails_when_nothing_matches(tmp_path,
                                                                                                   capsys):
    a = write_sweep(tmp_path / "a", steps=(50,), broken=False)
    b = write_sweep(tmp_path / "b", steps=(50,), broken=False)
    for seed_job in ("0", "1"):  # both seeds of diffstate/adam: seeds are replicates, the configuration is gone
        (b / seed_job / "result.json").unlink()
    assert report.main_compare([str(a), str(b)]) == 0
    assert report.main_compare([str(a), str(b), "--fail-on-regression"]) == 1
    assert "(1 only in A: a regression)" in capsys.readouterr().out
    assert report.main_compare([str(b), str(a), "--fail-on-regression"]) == 0  # new in B: not a regression
    (tmp_path / "empty").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    proc = subprocess.run([sys.executable, "-m", "harness", "compare", str(a), str(tmp_path / "empty")],
                          capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == 1 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert f"harness compare: B ({tmp_path / 'empty'}) holds no readable record" in proc.stderr
    assert report.main_compare([str(tmp_path / "empty"), str(b)]) == 1
    assert f"harness compare: A ({tmp_path / 'empty'}) holds no readable record" in capsys.readouterr().err


@pytest.mark.slow  # over 8 s on 2 cores: the everyday suite stays near 5 minutes
def test_a_string_where_a_number_belongs_is_a_reported_problem_not_a_traceback(tmp_path):
    sweep = write_sweep(tmp_path / "sweep", steps=(50,), broken=False)
    for num, (where, value) in enumerate([(("config", "optimizer", "lr"), "fast"), (("job", "num"), "x"),
                                          (("metrics", "test", "mse"), "low"), (("config",), "nope")]):
        rec = json.loads((sweep / str(num) / "result.json").read_text())
        node = rec
        for key in where[:-1]:
            node = node[key]
        node[where[-1]] = value
        _write(sweep / str(num) / "result.json", json.dumps(rec))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    for args in (["report", str(sweep), "--out", str(tmp_path / "out")], ["compare", str(sweep), str(sweep)]):
        proc = subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=120,
                              env=env, cwd=tmp_path)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        output = proc.stdout + proc.stderr
        assert "malformed record: lr is 'fast', expected a number" in output
        assert "malformed record: job_num is 'x', expected an integer" in output
        assert "malformed record: test_mse is 'low', expected a number" in output
        assert "malformed record: config is 'nope', expected an object" in output
        assert ("4 unreadable records skipped" if args[0] == "report" else "2 matched") in output  # the rest, seeds pooled


# --- what a sweep directory can hold: several sweeps, a broken plan, nothing readable -----------------------------


def test_report_on_a_directory_of_several_sweeps_checks_each_against_its_own_plan(tmp_path, capsys):
    _planned_sweep(tmp_path / "2026-01-01", recorded=(0, 1, 2))
    _planned_sweep(tmp_path / "2026-01-02", recorded=(0,))  # half missing: job numbers overlap the first sweep's
    assert report.main_report([str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"{tmp_path / '2026-01-01'}: 3/3 planned jobs recorded" in out
    assert f"{tmp_path / '2026-01-02'}: 1/3 planned jobs recorded" in out
    assert f"  {tmp_path / '2026-01-02'} #1: train.steps=51 method=diffstate" in out


def test_a_plan_that_does_not_parse_or_a_sweep_with_nothing_readable_exits_1(tmp_path, capsys):
    sweep = _planned_sweep(tmp_path / "cut", recorded=(0,))
    (sweep / "sweep.json").write_text((sweep / "sweep.json").read_text()[:40])  # a full disk cut it short
    assert report.main_report([str(sweep)]) == 1
    captured = capsys.readouterr()
    assert f"the sweep's plan {sweep / 'sweep.json'} is not JSON" in captured.out
    assert "1 sweep plans that do not read" in captured.err
    assert "sweep.json" in (sweep / "report.md").read_text()
    _write(tmp_path / "unreadable" / "0" / "result.json", "{not json")
    (tmp_path / "unreadable" / "sweep.json").write_text("{")
    assert report.main_report([str(tmp_path / "unreadable")]) == 1
    assert "harness report: no readable record under" in capsys.readouterr().err
    assert not (tmp_path / "unreadable" / "report.md").exists()


def test_report_and_compare_arguments_they_cannot_use_are_one_line_each(tmp_path, capsys):
    sweep = write_sweep(tmp_path / "sweep", steps=(50,), broken=False)
    assert report.main_report([str(sweep), "--baseline", "method=nonexistent"]) == 2
    assert ("--baseline method=nonexistent: no run of this sweep has method=nonexistent; its method values: "
            "diffstate, stop_gradient") in capsys.readouterr().err
    for main, args in ((report.main_report, [str(sweep)]), (report.main_compare, [str(sweep), str(sweep)])):
        with pytest.raises(SystemExit) as stop:
            main([*args, "--threshold", "-5%"])
        assert stop.value.code == 2 and "threshold '-5%': give a percentage like 5%" in capsys.readouterr().err
    assert report.main_report([str(sweep), "--out", "/proc/harness-report"]) == 1
    assert "harness report: cannot write /proc/harness-report" in capsys.readouterr().err
    assert report.main_compare([str(sweep), str(sweep), "--out", "/proc/harness-compare.md"]) == 1
    assert "harness compare: cannot write /proc/harness-compare.md" in capsys.readouterr().err


def test_report_files_are_written_whole_with_the_umask_mode_like_records(tmp_path):
    from harness.jobs.store import write_json_atomic

    sweep = write_sweep(tmp_path / "sweep", steps=(50,), broken=False)
    old = os.umask(0o027)
    try:
        made = report.build_report(sweep, tmp_path / "out")
        write_json_atomic(tmp_path / "record" / "result.json", {"status": "ok"})
    finally:
        os.umask(old)
    written = [*made["tables"], made["report"], *(p for p in made["figures"].values() if isinstance(p, Path)),
               tmp_path / "record" / "result.json"]
    assert {oct(path.stat().st_mode & 0o777) for path in written} == {"0o640"}
    assert not [p for p in (tmp_path / "out").iterdir() if ".tmp" in p.name]


@pytest.mark.slow  # over 8 s on 2 cores: the everyday suite stays near 5 minutes
def test_a_point_run_twice_counts_once_in_the_findings(tmp_path):
    sweep = write_sweep(tmp_path / "sweep", steps=(50,), broken=False)
    df, _ = frames.load_records(sweep)
    once = report.findings.comparisons(df)
    twice = json.loads((sweep / "0" / "result.json").read_text())  # `optimizer.lr=1e-3,1e-3`: the same point again
    twice["job"]["num"] = 99
    for i, factor in enumerate((0.5, 0.6, 0.55)):
        twice["timing"]["run_s"][i] *= factor
    _write(sweep / "99" / "result.json", json.dumps(twice))
    df, _ = frames.load_records(sweep)
    assert len(df) == len(frames.distinct_runs(df)) + 1
    pd.testing.assert_frame_equal(report.findings.comparisons(frames.distinct_runs(df)), once)
    assert not report.findings.comparisons(df).equals(once)  # counted twice, the duplicate would move them
    report.write_report(sweep, df, tmp_path / "out")
    written = pd.read_csv(tmp_path / "out" / "findings.csv")
    np.testing.assert_allclose(written["ratio"], once["ratio"])


@pytest.mark.slow
def test_compare_reads_a_reference_directory_that_keeps_a_reports_table_and_no_records(tmp_path, capsys):
    """results/reference/<experiment>/ keeps a report's runs.parquet, not its records: compare reads it, matches
    the configurations by the records' identity across a config leaf a later version added, says where the two
    sweeps were measured differently, and still flags a real slowdown."""
    report.build_report(write_sweep(tmp_path / "made", broken=False), tmp_path / "reference")
    assert not list((tmp_path / "reference").rglob("result.json"))
    newer = write_sweep(tmp_path / "newer", broken=False)
    slower = write_sweep(tmp_path / "slower", broken=False, slow={(m, o, n, s): 1.3 for m in METHODS
                                                                 for o in OPTIMIZERS for n in STEPS for s in SEEDS})
    for path in [*newer.rglob("result.json"), *slower.rglob("result.json")]:
        rec = json.loads(path.read_text())
        rec["config"]["train"]["new_setting"] = 1
        rec["environment"]["versions"]["jax"] = "0.10.3"
        path.write_text(json.dumps(rec))
    assert report.main_compare([str(tmp_path / "reference"), str(newer), "--fail-on-regression"]) == 0
    out = capsys.readouterr().out
    assert f"Read: A runs.parquet of a report ({N_OK} runs, no records), B {N_OK} records." in out
    assert f"{N_CONFIGS} matched, 0 with a regression, 0 unmatched" in out
    assert "jax_version: A 0.10.2, B 0.10.3" in out and "left out of the match: B: train.new_setting." in out
    assert report.main_compare([str(tmp_path / "reference"), str(slower), "--fail-on-regression"]) == 1
    assert f"{N_CONFIGS} matched, {N_CONFIGS} with a regression" in capsys.readouterr().out


def test_compare_says_when_no_spread_between_runs_could_be_measured(tmp_path, capsys):
    """One configuration, one run a side, compiled to two programs (the code changed): nothing measures how far two
    processes differ, and the header says so."""
    for side in ("a", "b"):
        rec = make_record(0, "diffstate", "adam", 50, 1)
        rec["timing"]["program"] = f"program of {side}"
        _write(tmp_path / side / "0" / "result.json", json.dumps(rec))
    assert report.main_compare([str(tmp_path / "a"), str(tmp_path / "b"), "--fail-on-regression"]) == 0
    assert "**No spread between runs could be measured**" in capsys.readouterr().out
    assert report.main_compare([str(tmp_path / "a"), str(write_sweep(tmp_path / "sweep", broken=False))]) == 0
    assert "No spread between runs" not in capsys.readouterr().out  # seeds of one configuration measure it
