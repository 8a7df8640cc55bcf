"""Every committed reference (results/reference/<experiment>/) still describes what this harness computes (issue 28).

Each configuration a reference holds is composed again from its command line, as a sweep's launcher composes it,
and must give the same `config_key` the reference recorded: the key `harness compare` matches runs by. A reference
made by a harness whose configurations no longer match (another record schema, a config leaf added or renamed, an
experiment changed) fails here until it is regenerated (results/reference/regenerate.sh); it would otherwise match
nothing in `harness compare`, silently. The test reads only the command lines and keys, never a measured number:
it stays true when the references are regenerated with the current code. The end-to-end form (rerun a
configuration, compare it with its reference) runs on the freeze_matrix reference, whose configurations are the
cheapest to rerun, and on a reference made as regenerate.sh makes one (both slow).
"""

from __future__ import annotations

import json
import math
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import open_dict

from harness.analysis.frames import RUNS_TABLE
from harness.core.config import register, resolved
from harness.core.fields import config_key
from harness.jobs.compose import CONF_DIR
from harness.jobs.sweep_compose import _load_sweep_config

ROOT = Path(__file__).resolve().parents[1]
REFERENCES = sorted(p.parent for p in (ROOT / "results" / "reference").glob(f"*/{RUNS_TABLE}"))
# Overrides of where and how a run is kept or timed, not of what it computes (harness.core.fields.NOT_COMPUTED).
LEFT_OUT = ("results_dir", "tracker", "resume", "report", "train.repeats", "train.warmup", "hydra")


def job_overrides(overrides: str) -> list[str]:
    """A job's command line less where its results and tracking went and how it was timed."""
    return [o for o in shlex.split(overrides) if o.lstrip("+~").split("=", 1)[0].split("/")[0] not in LEFT_OUT]


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
    return job_overrides(cheapest.overrides)


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


@pytest.fixture(scope="module")
def launcher():
    """Hydra's config loader and the sweep's primary config, as a launcher holds them."""
    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        yield loader, loader.load_configuration("config", [], run_mode=RunMode.MULTIRUN)


@pytest.mark.parametrize("reference", REFERENCES, ids=[p.name for p in REFERENCES])
def test_every_configuration_of_a_reference_composes_to_the_key_it_recorded(reference, launcher):
    loader, primary = launcher
    runs = pd.read_parquet(reference / RUNS_TABLE)
    runs = runs[runs["status"] == "ok"][["overrides", "config_key"]].drop_duplicates()
    assert len(runs), f"{reference}: no ok run"
    for overrides, recorded in runs.itertuples(index=False):
        cfg = _load_sweep_config(loader, primary, job_overrides(overrides))  # a launcher's compose of the job
        with open_dict(cfg):
            del cfg["hydra"]
        now, then = json.loads(config_key(resolved(cfg))), json.loads(recorded)
        differ = {k: (then.get(k), now.get(k)) for k in sorted(set(now) | set(then)) if now.get(k) != then.get(k)}
        assert not differ, (f"{reference.name}: `{overrides}` composes to another configuration now (recorded, now): "
                            f"{differ}; regenerate it: bash results/reference/regenerate.sh {reference.name}")


@pytest.mark.slow  # a sweep of one job and a compare: the procedure a user follows, on the committed reference
def test_the_freeze_matrix_reference_matches_a_rerun_of_its_cheapest_configuration(tmp_path):
    reference = ROOT / "results" / "reference" / "freeze_matrix"
    assert_matched(rerun_and_compare(reference, tmp_path), reference)


def test_there_is_a_reference_per_experiment_regenerate_sh_makes():
    script = (ROOT / "results" / "reference" / "regenerate.sh").read_text()
    (listed,) = re.findall(r'for experiment in "\$\{@:-([^}]*)\}"', script)
    assert {p.name for p in REFERENCES} == set(listed.split())
    assert {"digits", "digits_tuned", "modular", "modular_tuned", "freeze_matrix"} <= set(listed.split())


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


@pytest.mark.parametrize("reference", REFERENCES, ids=[p.name for p in REFERENCES])
def test_a_reference_report_reads_in_about_120_lines_and_links_its_detail_tables(reference):
    """Issue 28, item 4: findings, cost and quality, figures and the plausibility check in report.md; the detail
    tables in tables.md beside it. Every figure report.md embeds is there."""
    report = (reference / "report.md").read_text()
    assert len(report.splitlines()) <= 130, f"{reference.name}: report.md has {len(report.splitlines())} lines"
    assert "[tables.md](tables.md)" in report and "## Is the timed work real?" in report
    assert "[report.md](report.md)" in (reference / "tables.md").read_text()
    for figure in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report):
        assert (reference / figure).is_file(), f"{reference.name}: {figure}"
