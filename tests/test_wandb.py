"""W&B as a dashboard sees it: a real small offline sweep read back from its .wandb files, and its workspace spec."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.analysis import dashboard
from harness.core.fields import FIELDS
from harness.core.metrics import METRICS
from harness.jobs import wandb_file as framing

from conftest import records, run_cli, wandb_file
from wandb_reader import leet_records, read_finished_run, read_run


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """`harness -m method=diffstate,stop_gradient tracker=offline train.steps=20`: two runs and a report run."""
    tmp = tmp_path_factory.mktemp("wb")
    proc = run_cli("-m", f"results_dir={tmp / 'results'}", "name=wbsweep", "tracker=offline", "train.steps=20",
                   "train.repeats=3", "method=diffstate,stop_gradient", cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = records(tmp / "results")
    (sweep_dir,) = (tmp / "results" / "wbsweep").iterdir()
    return {"proc": proc, "records": recs, "dir": sweep_dir, "runs": [read_run(wandb_file(r)) for r in recs]}


@pytest.mark.slow  # over 8 s on 2 cores: the everyday suite stays near 5 minutes
def test_runs_are_named_grouped_and_tagged_by_their_swept_values(sweep):
    group = f"wbsweep-{sweep['dir'].name}"
    for record, run in zip(sweep["records"], sweep["runs"]):
        method = record["config"]["method"]["name"]
        assert run["run"].display_name == f"{method}-kernel-adamw-lr1e-3-s123-steps20"
        assert run["run"].run_group == group and run["run"].job_type == "train"
        assert {"wbsweep", f"method:{method}", "freeze:kernel", "optimizer:adamw", "train.steps:20"} <= set(
            run["run"].tags)
    (report_file,) = sweep["dir"].glob("wandb/offline-run-*/run-*.wandb")
    report_run = read_finished_run(report_file)
    assert report_run["run"].run_group == group and report_run["run"].job_type == "report"
    assert "report/findings/_type" in report_run["summary"]


def test_define_metric_puts_curves_on_train_step_and_summarizes_min_and_last(sweep):
    for record, run in zip(sweep["records"], sweep["runs"]):
        assert run["metrics"]["train/*"] == {"step_metric": "train/step", "summary": ["min", "last"]}
        assert "train/step" in run["metrics"]
        history = record["history"]["train_mse"]
        assert [h["train/step"] for h in run["history"]] == record["history"]["step"]
        assert run["summary"]["train/mse"] == {"min": min(history), "last": history[-1]}
        assert run["summary"]["final/train_mse"] == record["metrics"]["train"]["mse"]  # the final evaluation


def test_the_harness_framing_of_wandb_files_agrees_with_wandb_own_reader(sweep):
    """harness.jobs.wandb_file (is_complete, and read_run here) against `wandb leet inspect`: record for record."""
    (report_file,) = sweep["dir"].glob("wandb/offline-run-*/run-*.wandb")
    read_finished_run(report_file)  # its exit record written
    for path in [*(wandb_file(r) for r in sweep["records"]), report_file]:
        leet = leet_records(path)
        assert [r["type"] for r in leet] == [r.WhichOneof("record_type") for r in framing.records(path)]
        assert leet[-1]["type"] == "exit" and framing.is_complete(path)
        if path != report_file:  # its Tables and images are held under nested keys, which leet joins with "."
            # Training rows: flat keys, finite numbers (these runs converge), as W&B holds them in either reader.
            history = [r["history"]["item"] for r in leet if r["type"] == "history"]
            assert history and history == read_run(path)["history"]


def test_every_record_field_reads_from_a_real_record_and_reaches_the_wandb_summary(sweep):
    """harness/core/fields.py against what runs write: a wrong path reads None, a W&B key not logged is missing."""
    # mae is not a per-step metric by default (train.step_metrics), so there is no last-step mae; a
    # regression task has no classification metrics.
    classification = {f"{prefix}{m}" for m in ("cross_entropy", "accuracy")
                      for prefix in ("train_", "val_", "test_", "last_step_train_")}
    unpretrained = {"forgetting", *(f"source_test_{m}{when}" for m in METRICS for when in ("", "_before"))}
    untargeted = {"target_metric", "target_value", "target_reached", "target_step", "time_to_target_s",
                  "time_to_target_with_compile_s"}
    only_when_it_happens = {"error", "diverged_at_step", "warning", "last_step_train_mae", *classification,
                            *unpretrained, *untargeted, "rerun_of"}  # rerun_of: a tuned sweep's rerun alone
    for record, run in zip(sweep["records"], sweep["runs"]):
        assert {f.column for f in FIELDS if f.get(record) is None} == only_when_it_happens
        logged = {f.wandb: run["summary"].get(f.wandb) for f in FIELDS if f.wandb and f.get(record) is not None}
        assert logged == {f.wandb: f.get(record) for f in FIELDS if f.wandb and f.get(record) is not None}
        assert {"test/mse", "drift/l2", "memory/bytes", "time/in_loop_s_per_step"} <= set(logged)


def test_a_multirun_ends_with_the_findings_headline(sweep):
    out = sweep["proc"].stdout
    assert "sweep: 2/2 done" in out
    tail = out[out.index("report: "):]
    # 20 steps of the seed's model can end within the 1-step call's noise: then call / steps is compared, and
    # that too may be below the noise floor (harness/analysis/resolution.py).
    assert re.search(r"(in-loop step time|run time / step), method / diffstate \(95% CI\): stop_gradient "
                     r"(×|— too short to resolve: use more steps \(at least \d+\))", tail)
    assert "Frozen parameters bitwise unchanged in every run: diffstate (1 run)." in tail
    assert "Frozen parameters moved: stop_gradient in 1 of 1 runs, L2 up to " in tail  # AdamW's weight decay


def test_dashboard_spec_names_the_group_and_only_metrics_the_runs_have(sweep, capsys):
    assert dashboard.main_dashboard([str(sweep["dir"])]) == 0
    out = capsys.readouterr().out
    group = f"wbsweep-{sweep['dir'].name}"
    assert f"W&B group {group!r}" in out and "--save" in out
    spec = json.loads((sweep["dir"] / dashboard.SPEC_NAME).read_text())
    assert group in json.dumps(spec)
    workspace = dashboard.build_workspace(sweep["dir"])
    plotted = dashboard.panel_metrics(workspace)
    assert {"train/mse", "train/step", "time/in_loop_s_per_step", "memory/bytes", "drift/l2",
            "config:method"} <= plotted
    logged = set()
    for run in sweep["runs"]:
        logged |= set(run["summary"]) | {k for h in run["history"] for k in h}
        logged |= {f"config:{k}" for k in run["config"]}
    assert plotted <= logged, plotted - logged
    assert [s.name for s in workspace.sections] == ["Training curves", "Cost, drift and fit per method",
                                                    "Swept axes"]


def test_dashboard_save_offline_says_why_and_exits_non_zero(sweep, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert dashboard.main_dashboard([str(sweep["dir"]), "--save", "--entity", "me"]) == 1
    err = capsys.readouterr().err
    assert "not saved: WANDB_MODE=offline" in err and "Traceback" not in err
    assert dashboard.main_dashboard([str(Path(sweep["dir"]) / "nope")]) == 2


@pytest.mark.slow
def test_wandb_environment_variables_apply_unless_the_command_line_sets_them(cli):
    proc, recs = cli("train.steps=5", "train.repeats=1", env={"WANDB_MODE": "disabled"})
    assert proc.returncode == 0, proc.stderr
    assert recs[0]["wandb"] == {"mode": "disabled"}
    assert not list(Path(recs[0]["job"]["output_dir"]).glob("wandb"))
    proc, recs = cli("tracker=offline", "train.steps=5", "train.repeats=1",
                     env={"WANDB_MODE": "disabled", "WANDB_PROJECT": "from-env"})
    assert proc.returncode == 0, proc.stderr
    (rec,) = [r for r in recs if r["wandb"]["mode"] == "offline"]
    assert read_run(wandb_file(rec))["run"].project == "from-env"


@pytest.mark.slow  # over 8 s on 2 cores: the everyday suite stays near 5 minutes
def test_a_chunked_run_logs_every_step_to_wandb_as_its_chunks_arrive(cli):
    # 1,500 steps: more than tracker.history_points, so the curve can only come from the chunks.
    proc, (rec,) = cli("tracker=offline", "train.steps=1500", "train.log_every=500", "train.repeats=1",
                       "tracker.history_points=100")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert rec["wandb"]["live_curves"] is True and rec["wandb"]["file_complete"] is True
    run = read_finished_run(wandb_file(rec))
    steps = [h["train/step"] for h in run["history"]]
    assert steps == list(range(1500))  # every step, in order, once
    by_step = {h["train/step"]: h["train/mse"] for h in run["history"]}
    assert [by_step[s] for s in rec["history"]["step"]] == pytest.approx(rec["history"]["train_mse"], rel=1e-6)
    assert run["summary"]["test/mse"] == pytest.approx(rec["metrics"]["test"]["mse"])


def test_dashboard_on_a_read_only_sweep_is_one_line_and_leaves_no_file(sweep, tmp_path, capsys):
    """A sweep directory mounted read-only (as root too) or a place that cannot be written: one line, exit 1."""
    import subprocess

    view = tmp_path / "read-only"
    view.mkdir()
    spec = sweep["dir"] / dashboard.SPEC_NAME  # another test may have written one: it must stay as it is
    before = spec.read_bytes() if spec.exists() else None
    mounted = subprocess.run(["mount", "--bind", "-o", "ro", str(sweep["dir"]), str(view)], capture_output=True,
                             text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind-mount read-only ({mounted.stderr.strip() or 'mount failed'}): needs root")
    try:
        assert dashboard.main_dashboard([str(view)]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"harness dashboard: cannot write {view / dashboard.SPEC_NAME}")
        assert "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
        assert (spec.read_bytes() if spec.exists() else None) == before and not list(view.glob("*.tmp*"))
    finally:
        subprocess.run(["umount", str(view)], check=True)
    assert dashboard.main_dashboard([str(sweep["dir"]), "--out", "/proc/no/dashboard.json"]) == 1
    assert "harness dashboard: cannot write /proc/no/dashboard.json" in capsys.readouterr().err
