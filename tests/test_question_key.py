"""The `question:` key (issue 28): an experiment names the axes it asks about; the report leads with them, resume
and compare never see it, and a bad entry is one line naming `question`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from test_report import _write, make_record

from harness.analysis import frames, report
from harness.core.checks import ConfigError
from harness.core.config import check_question, register, resolved
from harness.core.fields import config_hash, config_key
from harness.jobs.compose import CONF_DIR
from harness.jobs.sweep_plan import base_hash

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR.parent / "experiments").glob("*.yaml")) or \
    sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


def composed(*overrides: str, hydra: bool = False):
    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=hydra)


def plain(cfg) -> dict:
    config = resolved(cfg)
    config.pop("hydra", None)
    return config


def test_question_leaves_every_digest_resume_compares_as_it_was():
    """Records and sweep plans written before `question` existed must still resume: the seed study's digests are
    those the commit before it wrote, and an experiment that sets a question hashes as if it did not."""
    seed = plain(composed())
    assert seed["question"] is None
    assert (config_hash(seed), base_hash(seed)) == ("276232cbb520ef79", "7cbc8923478939b6")  # 9f652bc wrote these
    digits = plain(composed("experiment=digits"))
    assert digits["question"] == ["fine_tuning", "model"]
    without = {k: v for k, v in digits.items() if k != "question"}
    assert config_hash(digits) == config_hash(without) and base_hash(digits) == base_hash(without)
    assert config_key(digits) == config_key(without) and "question" not in config_key(digits)
    assert config_hash({**digits, "question": ["model"]}) == config_hash(digits)


@pytest.mark.parametrize("experiment", ["digits", "transfer", "modular", "mnist1d", "scale", "freeze_matrix",
                                        "digits_tuned", "modular_tuned"])
def test_each_experiment_asks_about_axes_it_sweeps(experiment):
    cfg = composed(f"experiment={experiment}", hydra=True)
    question = list(cfg.question)
    assert question, f"{experiment} names no question"
    check_question(cfg)  # every entry a swept axis, a config leaf or a report column
    swept = {str(k) for k in cfg.hydra.sweeper.params}
    named = {frames.GROUP_LEAVES.get(k, k) for k in swept} | {"model" if k == "model" else k for k in swept}
    assert set(frames.declared_question([{"config": {"question": question}}])) <= named, (question, swept)


def test_a_question_entry_that_names_nothing_is_one_line():
    cfg = composed("experiment=scale", "question=[model.widht]", hydra=True)
    with pytest.raises(ConfigError) as err:
        check_question(cfg)
    text = str(err.value)
    assert text.startswith("question: 'model.widht' is neither a swept axis nor a config leaf; did you mean "
                           "model.width?") and "\n" not in text
    assert "a swept axis (model.width, freeze, method)" in text


@pytest.mark.slow  # a CLI start (Hydra and the harness import): ~5 s on 2 cores
def test_a_bad_question_stops_the_command_before_anything_is_written(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "harness", "-m", "experiment=digits", "tracker=disabled",
                           f"results_dir={tmp_path / 'r'}", "question=[fine_tunning]"],
                          capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-2000:]
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert lines == [lines[-1]] and lines[0].startswith("error: question: 'fine_tunning' is neither a swept axis "
                                                        "nor a config leaf; did you mean fine_tuning?"), lines
    assert "Traceback" not in proc.stderr and not (tmp_path / "r").exists()


def question_sweep(root: Path, question: list[str]) -> Path:
    """Two methods (listed first by the sweep's overrides) x three strategies x two seeds, asking `question`."""
    num = 0
    for method in ("diffstate", "stop_gradient"):
        for strategy, (freeze, step_s, program) in {"scratch": ("none", 5.2e-6, "all"), "finetune": ("none", 5.2e-6, "all"),
                                                    "probe": ("backbone", 4e-7, "head")}.items():
            for seed in (1, 2):
                rec = make_record(num, method, "adam", 50, seed, per_step_s=step_s)
                rec["config"].update(fine_tuning=strategy, question=question,
                                     freeze={"name": freeze, "patterns": ["backbone"] if freeze != "none" else []})
                rec["timing"]["program"] = f"{method}-{program}"
                rec["job"]["overrides"] = [f"method={method}", f"+strategy={strategy}", f"task.seed={seed}"]
                _write(root / str(num) / "result.json", json.dumps(rec))
                num += 1
    return root


def test_the_report_leads_with_the_declared_question(tmp_path):
    """Undeclared, the report leads with the axes in column order (freeze, method); the experiment asks about
    fine_tuning: findings, the cost-and-quality table and the first figure lead with fine_tuning."""
    undeclared = question_sweep(tmp_path / "plain", [])
    df, _ = frames.load_records(undeclared)
    assert frames.question_axes(df, frames.sweep_order(undeclared))[0] != "fine_tuning"
    assert frames.question_axes(df, declared=["fine_tuning"]) == ["fine_tuning", "method"]
    sweep = question_sweep(tmp_path / "asked", ["fine_tuning"])
    built = report.build_report(sweep)
    found = pd.read_csv(sweep / report.FINDINGS_NAME)
    assert found["axis"].iloc[0] == "fine_tuning" and list(dict.fromkeys(found["axis"])) == ["fine_tuning", "method"]
    text = built["report"].read_text()
    cost = text.split("## Cost and quality")[1].split("\n## ")[0]
    header = next(line for line in cost.splitlines() if line.startswith("| "))
    assert header.startswith("| fine_tuning | method"), header
    assert text.index("fig_step_time.png") < text.index("fig_training_curves.png")
