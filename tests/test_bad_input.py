"""Bad input, through the real command line: one clear message naming the field, non-zero exit, no traceback."""

from pathlib import Path

import pytest

from conftest import run_cli

CASES = {
    "unknown optimizer": (["optimizer=sgd"], ["Could not find 'optimizer/sgd'", "adamw"]),
    "unknown method": (["method=magic"], ["Could not find 'method/magic'", "diffstate"]),
    "unknown freeze": (["freeze=gills"], ["Could not find 'freeze/gills'", "backbone"]),
    "unknown device": (["device=abacus"], ["Could not find 'device/abacus'", "cpu"]),
    "unknown model": (["model=resnet"], ["Could not find 'model/resnet'", "mlp"]),
    "unknown experiment": (["experiment=nope"], ["Could not find 'experiment/nope'", "freeze_matrix"]),
    "key typo": (["optimizer.lrr=0.1"], ["Key 'lrr' not in 'OptimizerConfig'"]),
    "wrong type": (["train.steps=many"], ["train.steps", "could not be converted to Integer"]),
    "lr zero": (["optimizer.lr=0"], ["optimizer.lr: must be a finite number > 0, got 0.0"]),
    "lr negative": (["optimizer.lr=-0.1"], ["optimizer.lr: must be a finite number > 0"]),
    "lr nan": (["optimizer.lr=nan"], ["optimizer.lr: must be a finite number > 0, got nan"]),
    "lr inf": (["optimizer.lr=inf"], ["optimizer.lr: must be a finite number > 0, got inf"]),
    "steps": (["train.steps=0"], ["train.steps: must be >= 1, got 0"]),
    "repeats": (["train.repeats=0"], ["train.repeats: must be >= 1, got 0"]),
    "negative size": (["task.n_train=-5"], ["task.n_train: must be >= 1, got -5"]),
    "empty test split": (["task.n_test=0"], ["task.n_test: must be >= 1, got 0"]),
    "width": (["model=mlp", "model.width=0"], ["model.width: must be >= 1, got 0"]),
    "depth": (["model=mlp", "model.depth=-1"], ["model.depth: must be >= 1, got -1"]),
    "mask matches nothing": (["freeze=backbone"], ["freeze: mask 'backbone'", "matches no parameter",
                                                   "['bias', 'kernel']"]),
    "mask freezes everything": (["freeze=paths", "freeze.patterns=[kernel,bias]"], ["freezes every parameter"]),
    "mask missing": (["freeze=paths"], ["freeze.patterns: is required"]),
    "bad regex": (["freeze=paths", "freeze.patterns=['(']"], ["freeze.patterns: '(' is not a valid regex"]),
    "device index": (["device.index=7"], ["device.index", "out of range", "available: {'cpu': 1}"]),
    "device platform": (["device=gpu"], ["device.platform: no 'gpu' devices", "available: {'cpu': 1}"]),
    "uneven data-parallel split": (["device.count=2"], ["device.count: 2 devices cannot split task.n_train=55"]),
    "batch size zero": (["train.batch_size=0"], ["train.batch_size: must be >= 1", "got 0"]),
    "batch size negative": (["train.batch_size=-8"], ["train.batch_size: must be >= 1", "got -8"]),
    "batch larger than the training set": (["train.batch_size=56"],
                                           ["train.batch_size: must be <= task.n_train=55", "got 56"]),
    "batch uneven over devices": (["train.batch_size=11", "device.count=2"],
                                  ["device.count: 2 devices cannot split train.batch_size=11"]),
    "chunks that do not divide the steps": (["train.steps=100", "train.log_every=30"],
                                            ["train.log_every: must be >= 1 and divide train.steps=100", "got 30"]),
    "chunks of a vectorized run": (["vectorize.lr=[0.1,0.2]", "train.log_every=41"],
                                   ["train.log_every: vectorized points train in one call"]),
    "unknown step metric": (["train.step_metrics=[mse,r2]"], ["train.step_metrics: got 'r2', allowed: mse, mae"]),
    "lora rank zero": (["model=mlp", "model.lora_rank=0"], ["model.lora_rank: must be in [1, model.width=16], got 0"]),
    "lora rank over the width": (["model=mlp", "model.lora_rank=17"], ["model.lora_rank: must be in [1, model.width=16]"]),
    "lora without a rank": (["model=mlp", "freeze=lora"], ["freeze: lora freezes the base weights", "model.lora_rank"]),
    "results dir": (["results_dir=/proc/not-writable"], ["results_dir: cannot write results to /proc/not-writable"]),
    "steps past int32": (["train.steps=10000000000"], ["train.steps: must be <= 2,147,483,647", "int32"]),
    "seed past int64": (["task.seed=100000000000000000000"], ["task.seed: must be a 64-bit integer"]),
    "rows past int32": (["task.n_train=10000000000"], ["task.n_train: must be <= 2,147,483,647"]),
    "vectorized seed past int64": (["vectorize.seed=[1,100000000000000000000]"], ["vectorize.seed: must be a 64-bit"]),
    "unknown key added with +": (["+train.stepz=5"], ["train.stepz: not a setting", "steps, batch_size"]),
    "unknown top-level key": (["+colour=red"], ["colour: not a setting", "the top level has: name"]),
    "name removed": (["~name"], ["name: cannot be removed (~name)"]),
    "report removed": (["~report"], ["report: cannot be removed (~report)"]),
    "name with a path": (["name=../../escape"], ["name: must be one directory name", "'../../escape'"]),
    "empty name": (["name="], ["name: must be one directory name", "got ''"]),
    "empty results dir": (["results_dir="], ["results_dir: must name a directory"]),
    "resume of nothing": (["resume=/nonexistent/sweep"], ["resume: /nonexistent/sweep does not exist"]),
    "resume of a file": (["resume=/etc/hostname"], ["resume: /etc/hostname is a file, not a sweep"]),
    "resume of a foreign dir": (["resume=/tmp"], ["resume: /tmp is not a directory this harness wrote"]),
    "W&B project": (["tracker=offline", "tracker.wandb.project=team/bench"],
                    ["tracker.wandb.project: W&B accepts", "'team/bench' (contains /)"]),
    "W&B entity": (["tracker=offline", "tracker.wandb.entity=a:b"], ["tracker.wandb.entity: W&B accepts"]),
    "W&B tag": (["tracker=offline", f"tracker.wandb.tags=[ok,{'t' * 65}]"],
                ["tracker.wandb.tags: each tag must have 1 to 64 characters"]),
    "W&B timeout": (["tracker=offline", "tracker.wandb.init_timeout=-1"], ["tracker.wandb.init_timeout: must be"]),
}
# Refused before anything is written: no run directory anywhere.
AT_START_UP = {"unknown key added with +", "unknown top-level key", "name removed", "report removed",
               "name with a path", "empty name", "empty results dir", "resume of nothing", "resume of a file",
               "resume of a foreign dir", "W&B project", "W&B entity", "W&B tag", "W&B timeout"}


@pytest.mark.parametrize("case", CASES.keys())
def test_bad_input_gets_one_clear_message_and_a_nonzero_exit(tmp_path, case):
    args, expected = CASES[case]
    work = tmp_path / "work" / "here"  # name=../../escape would land in tmp_path/escape
    work.mkdir(parents=True)
    results = [] if any(a.startswith("results_dir=") for a in args) else [f"results_dir={work / 'results'}"]
    proc = run_cli("tracker=disabled", *results, *args, cwd=work, timeout=60)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    for text in expected:
        assert text in output, output
    assert "Traceback" not in output and "Warning" not in output, output
    if case in AT_START_UP:
        written = [p for p in tmp_path.rglob("*") if p.is_file()]
        assert written == [], written
        assert not Path("/default").exists()


def test_bad_input_inside_a_multirun_is_a_failed_record_and_the_sweep_goes_on(cli):
    proc, recs = cli("-m", "tracker=disabled", "report=false", "train.repeats=1", "optimizer.lr=1e-3,-1,nan")
    assert proc.returncode == 1
    assert sorted(r["status"] for r in recs) == ["failed", "failed", "ok"]
    failed = [r for r in recs if r["status"] == "failed"]
    assert all(r["error"]["type"] == "ConfigError" and "optimizer.lr" in r["error"]["message"] for r in failed)


def test_the_names_the_config_accepts_are_the_registries_names():
    """config.py checks names without importing JAX; each list must match the registry that builds the thing."""
    from harness.core import config, metrics, models, task

    assert config.TASKS == tuple(task.TASKS)
    assert config.MODELS == tuple(models.MODELS)
    assert config.STEP_METRICS == tuple(metrics.METRICS)
