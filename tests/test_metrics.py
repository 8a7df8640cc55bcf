"""One entry in harness.core.metrics.METRICS is a metric everywhere: the timed loop, the record, W&B keys,
the report, `harness compare` and the W&B dashboard."""

import json

import pytest

from conftest import records, run_injected

# Registered before anything else of the harness is imported, as a user's own entry would be.
MAX_ERROR = """
import harness.core.metrics as metrics

def max_error(predictions, targets):
    return abs(targets - predictions).max()

metrics.METRICS["max_error"] = metrics.Metric("max_error", "max |error|", max_error, "regression")
"""
FAST = ("train.warmup=0", "train.repeats=2", "train.measure_dispatch=false", "tracker=disabled")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("metric")
    proc = run_injected(MAX_ERROR, "-m", f"results_dir={tmp / 'results'}", *FAST, "train.step_metrics=[mse,max_error]",
                        "method=diffstate,stop_gradient", "task.seed=1,2", cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep_dir,) = {p.parent.parent for p in (tmp / "results").rglob("result.json")}
    return tmp, sweep_dir


@pytest.mark.slow  # over 8 s on 2 cores: the everyday suite stays near 5 minutes
def test_a_new_metric_is_measured_every_step_and_at_the_end(sweep):
    _, sweep_dir = sweep
    for record in records(sweep_dir):
        metrics = record["metrics"]
        assert metrics["test"]["max_error"] >= metrics["test"]["mae"] > 0
        assert metrics["train"]["max_error"] >= metrics["train"]["mae"] > 0
        assert len(record["history"]["train_max_error"]) == len(record["history"]["step"])
        assert metrics["last_step_train_max_error"] == record["history"]["train_max_error"][-1]


@pytest.mark.slow  # over 8 s on 2 cores: the everyday suite stays near 5 minutes
def test_a_new_metric_reaches_the_report_compare_and_the_dashboard(sweep):
    tmp, sweep_dir = sweep
    report = (sweep_dir / "tables.md").read_text()  # the fit table: every metric, train and test
    assert "train max \\|error\\|" in report or "train max |error|" in report
    assert "test max" in report

    out = tmp / "compare.md"
    proc = run_injected(MAX_ERROR, "compare", str(sweep_dir), str(sweep_dir), "--out", str(out), cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "test max" in out.read_text()

    proc = run_injected(MAX_ERROR, "dashboard", str(sweep_dir), cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    spec = (sweep_dir / "dashboard.json").read_text()
    assert "train/max_error" in spec and "test/max_error" in spec
    # Without the entry, the same records name no such panel: the metric came from the registry.
    proc = run_injected("", "dashboard", str(sweep_dir), cwd=tmp)
    assert proc.returncode == 0 and "max_error" not in json.dumps(json.loads((sweep_dir / "dashboard.json").read_text()))
