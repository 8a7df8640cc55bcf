"""Every committed reference (results/reference/<experiment>/) still describes what this harness computes: its
cheapest configuration, rerun now, is found by `harness compare` (issue 28).

The test reads only what every reference's runs.parquet holds (a configuration's command line and timings), never a
number of the committed files: it stays true when the references are regenerated with the current code, and fails
when one was made by a harness whose configurations no longer match (another record schema, a config leaf added
or renamed, an experiment changed) until it is regenerated (results/reference/regenerate.sh).
"""

from __future__ import annotations

import math
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness.analysis.frames import RUNS_TABLE

ROOT = Path(__file__).resolve().parents[1]
REFERENCES = sorted(p.parent for p in (ROOT / "results" / "reference").glob(f"*/{RUNS_TABLE}"))
# Overrides of where and how a run is kept or timed, not of what it computes (harness.core.fields.NOT_COMPUTED).
LEFT_OUT = ("results_dir", "tracker", "resume", "report", "train.repeats", "train.warmup", "hydra")


def cheapest_overrides(reference: Path) -> list[str]:
    """The command line of the reference's ok configuration that costs least to run again: compile and its timed
    calls (the committed run's), the job's own overrides less where its results and tracking went."""
    runs = pd.read_parquet(reference / RUNS_TABLE)
    runs = runs[runs["status"] == "ok"]
    assert len(runs), f"{reference}: no ok run to rerun"

    def cost(run: pd.Series) -> float:
        total = sum(v for v in (run.get("compile_s"), run.get("run_s_per_call_median")) if v is not None
                    and not (isinstance(v, float) and math.isnan(v)))
        return total or math.inf

    cheapest = min(runs.itertuples(index=False), key=lambda r: (cost(pd.Series(r._asdict())), r.job_num))
    return [o for o in shlex.split(cheapest.overrides)
            if not o.lstrip("+~").split("=", 1)[0].split("/")[0] in LEFT_OUT]


def rerun_and_compare(reference: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """Runs the cheapest configuration again (one job, two timed repeats) and compares the reference with it."""
    overrides = cheapest_overrides(reference)
    tmp_path.mkdir(parents=True, exist_ok=True)
    results = tmp_path / "rerun"
    run = subprocess.run([sys.executable, "-m", "harness", "-m", *overrides, "tracker=disabled", "report=false",
                          f"results_dir={results}", "train.repeats=2"],
                         capture_output=True, text=True, timeout=900, check=False, cwd=tmp_path)
    assert run.returncode == 0, f"rerun of {overrides}: {run.stderr[-3000:]}"
    (sweep,) = [p.parent for p in results.glob("*/*/sweep.json")]
    return subprocess.run([sys.executable, "-m", "harness", "compare", str(reference), str(sweep)],
                          capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path)


def assert_matched(compared: subprocess.CompletedProcess, reference: Path) -> None:
    assert compared.returncode == 0, f"{reference}: {compared.stderr.strip()}"
    last = compared.stdout.strip().splitlines()[-1]
    assert last.startswith("1 matched, "), (reference, last)


@pytest.mark.slow  # one rerun per reference: a minute or more each on 2 cores
@pytest.mark.parametrize("reference", REFERENCES, ids=[p.name for p in REFERENCES])
def test_each_committed_reference_matches_a_rerun_of_its_cheapest_configuration(reference, tmp_path):
    assert_matched(rerun_and_compare(reference, tmp_path), reference)


def test_there_is_a_reference_per_documented_experiment():
    assert {p.name for p in REFERENCES} == {"digits", "freeze_matrix", "mnist1d", "modular", "scale", "transfer"}


@pytest.mark.slow  # two seed-study sweeps and a report
def test_the_check_holds_for_a_reference_made_as_regenerate_sh_makes_one(tmp_path):
    """The procedure above on a reference written now (the seed study, two learning rates), as regenerate.sh
    writes one: `harness report <sweep> --out <reference>`, whose directory holds no record, only runs.parquet."""
    made = subprocess.run([sys.executable, "-m", "harness", "-m", "optimizer.lr=0.01,0.05", "tracker=disabled",
                           f"results_dir={tmp_path / 'sweeps'}", "report=false", "train.repeats=2"],
                          capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path)
    assert made.returncode == 0, made.stderr[-3000:]
    (sweep,) = [p.parent for p in (tmp_path / "sweeps").glob("*/*/sweep.json")]
    reference = tmp_path / "reference" / "seed"
    reported = subprocess.run([sys.executable, "-m", "harness", "report", str(sweep), "--out", str(reference)],
                              capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path)
    assert reported.returncode == 0, reported.stderr[-3000:]
    assert not list(reference.rglob("result.json"))
    assert len(cheapest_overrides(reference)) == 1  # optimizer.lr=...: the seed study's one swept override
    assert_matched(rerun_and_compare(reference, tmp_path / "check"), reference)
