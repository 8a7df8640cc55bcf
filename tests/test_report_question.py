"""Issue 28: reports that pool only runs of one compiled program, figures that read true, compare that refuses a
stale reference in one line. Synthetic records (tests/test_report.py's make_record): no JAX run here."""

from __future__ import annotations

import json

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
    text = report.build_report(tmp_path / "sweep", tmp_path / "out")["report"].read_text()
    throughput = text.split("## Throughput")[1].split("\n## ")[0]
    assert "each row pools its runs over fine_tuning: one compiled program per row" in throughput
    rows = [line for line in throughput.splitlines() if line.startswith("| diffstate")]
    assert len(rows) == 2, throughput  # the probe and the full fine-tune apart, each with its own step time
    assert any("4.00e-04" in r for r in rows) and any("0.00520" in r for r in rows), rows


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
