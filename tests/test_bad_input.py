"""Bad input, through the real command line: one clear message naming the field, non-zero exit, no traceback."""

from pathlib import Path

import pytest
import yaml

from conftest import run_cli

TUNED = ("hydra.mode=MULTIRUN", "hydra/sweeper=tuned")  # a sweep (-m must come first; the CLI adds overrides first)
CASES = {
    "unknown optimizer": (["optimizer=sgd"], ["Could not find 'optimizer/sgd'", "adamw"]),
    "unknown method": (["method=magic"], ["Could not find 'method/magic'", "diffstate"]),
    "unknown freeze": (["freeze=gills"], ["Could not find 'freeze/gills'", "backbone"]),
    "unknown device": (["device=abacus"], ["Could not find 'device/abacus'", "cpu"]),
    "unknown model": (["model=resnet"], ["Could not find 'model/resnet'", "mlp"]),
    "unknown experiment": (["experiment=nope"], ["Could not find 'experiment/nope'", "freeze_matrix"]),
    "key typo": (["optimizer.lrr=0.1"], ["Key 'lrr' not in 'OptimizerConfig'"]),
    "wrong type": (["train.steps=many"], ["train.steps", "could not be converted to Integer"]),
    "weight decay without decay": (["optimizer=adam", "optimizer.weight_decay=0.1"],
                                   ["optimizer.weight_decay: optimizer=adam does not decay weights"]),
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
    "uneven data-parallel split": (["device.count=2"], ["device.count: 2 devices cannot split the 55 training rows"]),
    "batch size zero": (["train.batch_size=0"], ["train.batch_size: must be >= 1", "got 0"]),
    "batch size negative": (["train.batch_size=-8"], ["train.batch_size: must be >= 1", "got -8"]),
    "batch larger than the training set": (["train.batch_size=56"],
                                           ["train.batch_size: must be <= the 55 training rows of task 'seed'",
                                            "got 56"]),
    "batch uneven over devices": (["train.batch_size=11", "device.count=2"],
                                  ["device.count: 2 devices cannot split train.batch_size=11 rows"]),
    "chunks that do not divide the steps": (["train.steps=100", "train.log_every=30"],
                                            ["train.log_every: must be >= 1 and divide train.steps=100", "got 30"]),
    "chunks of a vectorized run": (["vectorize.lr=[0.1,0.2]", "train.log_every=41"],
                                   ["train.log_every: vectorized points train in one call"]),
    "unknown step metric": (["train.step_metrics=[mse,r2]"], ["train.step_metrics: got 'r2', allowed: mse, mae"]),
    # The workloads' own settings (issue 20): at start-up, or at job start where the data decides.
    "modulus not a prime": (["task=modular", "model=transformer", "task.modulus=24"],
                            ["task.modulus: must be a prime >= 3, got 24"]),
    "operation not allowed": (["task=modular", "model=transformer", "task.operation=add"],
                              ["task.operation: got 'add', allowed: sub, mul"]),
    "a setting digits does not have": (["task=digits", "model=cnn", "task.modulus=23"],
                                       ["task.modulus: not a setting of task 'digits'"]),
    "evaluations every 0 steps": (["train.eval_every=0", "train.target=0.5"],
                                  ["train.eval_every: must be in [1, train.steps=123]", "got 0"]),
    "evaluations beyond the steps": (["train.steps=100", "train.eval_every=200"],
                                     ["train.eval_every: must be in [1, train.steps=100]", "got 200"]),
    "a target with no evaluations": (["train.target=0.9"], ["train.target: needs train.eval_every"]),
    "a target on a metric the task does not have": (
        ["train.eval_every=41", "train.target=0.5", "train.target_metric=accuracy"],
        ["train.target_metric: 'accuracy' is no metric of task 'seed'"]),
    "batch larger than the few-shot digits": (["task=digits", "model=cnn", "train.batch_size=51"],
                                              ["train.batch_size: must be <= the 50 training rows of task 'digits'"]),
    "a setting of another task": (["task=transfer", "model=mlp", "task.slope=3"],
                                  ["task.slope: not a setting of task 'transfer'", "has: dim, teacher_width"]),
    "a setting of another model": (["model=mlp", "model.pretrained_kernel=5"],
                                   ["model.pretrained_kernel: not a setting of model 'mlp'", "has: depth, width"]),
    "a task setting's type": (["task.n_train=many"], ["task.n_train", "could not be converted to Integer"]),
    "a component that is not callable": (["model._target_=math.pi"],
                                         ["model._target_: 'math.pi' is a float, not a class or function"]),
    "a component that does not import": (["model._target_=no_such_pkg.Net"],
                                         ["model._target_: cannot import 'no_such_pkg.Net'"]),
    "your own model without its required setting": (["model._target_=harness.core.models.mlp.MLP"],
                                                     ["model.depth: is required by model 'MLP'"]),
    "pretraining without a source task": (["task.pretrain_steps=10"],
                                          ["task.pretrain_steps: task 'seed' has no source task to pretrain on"]),
    "pretraining without a backbone": (["task=transfer", "task.pretrain_steps=10", "model=linear"],
                                       ["task.pretrain_steps: pretraining trains a `backbone` and model 'linear'"]),
    "lora rank zero": (["model=mlp", "model.lora_rank=0"], ["model.lora_rank: must be in [1, model.width=16], got 0"]),
    "lora rank over the width": (["model=mlp", "model.lora_rank=17"], ["model.lora_rank: must be in [1, model.width=16]"]),
    "lora rank over the layer it adapts": (["task=digits", "model=cnn", "model.lora_rank=100000"],
                                           ["model.lora_rank: must be in [1, ", "got 100000"]),
    "lora without a rank": (["model=mlp", "freeze=lora"], ["freeze: lora freezes the base weights", "model.lora_rank"]),
    "reference without a plain-JAX forward": (["model._target_=flax.nnx.Linear", "+model.in_features=1",
                                               "+model.out_features=1", "method=reference"],
                                              ["method: reference trains a plain-JAX forward", "has none"]),
    "results dir": (["results_dir=/proc/not-writable"], ["results_dir: cannot write results to /proc/not-writable"]),
    "steps past int32": (["train.steps=10000000000"], ["train.steps: must be <= 2,147,483,647", "int32"]),
    "seed past int64": (["task.seed=100000000000000000000"], ["task.seed: must be a 64-bit integer"]),
    "rows past int32": (["task.n_train=10000000000"], ["task.n_train: must be <= 2,147,483,647"]),
    "vectorized seed past int64": (["vectorize.seed=[1,100000000000000000000]"], ["vectorize.seed: must be a 64-bit"]),
    "unknown key added with +": (["+train.stepz=5"], ["train.stepz: not a setting", "steps, batch_size"]),
    "unknown top-level key": (["+colour=red"], ["colour: not a setting", "the top level has: name"]),
    "name removed": (["~name"], ["name: cannot be removed (~name)"]),
    "report removed": (["~report"], ["report: cannot be removed (~report)"]),
    "a required group removed": (["~optimizer"], ["optimizer: a group every run needs cannot be removed",
                                                  "optimizer=<option>"]),
    "name with a path": (["name=../../escape"], ["name: must be one directory name", "'../../escape'"]),
    "empty name": (["name="], ["name: must be one directory name", "got ''"]),
    "name longer than a W&B tag": ([f"name={'a' * 65}"], ["name: must have at most 64 characters", "got 65"]),
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
    "bad interpolation": (["train.steps=${oops}"], ["train.steps: Interpolation key 'oops' not found"]),
    "unquoted space and a special character": (["name=my run!"], ["name: cannot read the value 'my run!'",
                                                                   "quote a value", "harness \"name='my run!'\""]),
    "a value split by the shell": (["name=my", "run"], ["'run' is not an override (key=value)",
                                                        "harness \"name='my run'\""]),
    # Tuning (issue 27): the search space and the budget, at start-up; a target the validation metric cannot reach.
    "a search space with low >= high": ([*TUNED, "hydra.sweeper.tune.space.adamw.lr.low=0.5",
                                         "hydra.sweeper.tune.space.adamw.lr.high=0.1"],
                                        ["hydra.sweeper.tune.space.adamw.lr: needs low < high, got low=0.5 high=0.1"]),
    "a negative bound under log scale": ([*TUNED, "hydra.sweeper.tune.space.adam.lr.low=-1"],
                                         ["hydra.sweeper.tune.space.adam.lr.low: must be > 0 on a log scale, got -1"]),
    "no trials": ([*TUNED, "hydra.sweeper.tune.trials=0"],
                  ["hydra.sweeper.tune.trials: must be >= 1", "got 0"]),
    "an unknown key in the space": ([*TUNED, "+hydra.sweeper.tune.space.adamw.momentum.low=0.1",
                                     "+hydra.sweeper.tune.space.adamw.momentum.high=0.9"],
                                    ["hydra.sweeper.tune.space.adamw.momentum: is not a value tuning may search",
                                     "lr, weight_decay, one_minus_b1"]),
    "an unknown sampler": ([*TUNED, "hydra.sweeper.tune.sampler=grid"],
                           ["hydra.sweeper.tune.sampler: got 'grid', allowed: halton, sobol"]),
    "an accuracy target above 1": (["task=digits", "model=cnn", "train.eval_every=10", "train.target=1.5"],
                                   ["train.target: accuracy lies in [0, 1]; the validation metric cannot reach 1.5"]),
    "a negative MSE target": (["train.eval_every=10", "train.target=-0.1"],
                              ["train.target: mse lies in [0, inf] and accuracy lies in [0, 1]; the validation "
                               "metric cannot reach -0.1"]),
    "an accuracy target above 1, said": (["train.eval_every=10", "train.target=1.5", "train.target_metric=accuracy"],
                                         ["train.target: accuracy lies in [0, 1]; the validation metric cannot "
                                          "reach 1.5"]),
}
# Run on a machine of two CPU devices (XLA's host platform split in two): device.count=2 exists.
TWO_DEVICES = {"uneven data-parallel split", "batch uneven over devices"}
# Refused before anything is written: no run directory anywhere.
AT_START_UP = {"unknown key added with +", "unknown top-level key", "name removed", "report removed",
               "a required group removed",
               "name with a path", "empty name", "name longer than a W&B tag", "empty results dir", "resume of nothing",
               "resume of a file",
               "resume of a foreign dir", "W&B project", "W&B entity", "W&B tag", "W&B timeout", "bad interpolation",
               "unquoted space and a special character", "a value split by the shell",
               "a search space with low >= high", "a negative bound under log scale", "no trials",
               "an unknown key in the space", "an unknown sampler", "a negative MSE target",
               "an accuracy target above 1, said"}


@pytest.mark.parametrize("case", CASES.keys())
def test_bad_input_gets_one_clear_message_and_a_nonzero_exit(tmp_path, case):
    args, expected = CASES[case]
    work = tmp_path / "work" / "here"  # name=../../escape would land in tmp_path/escape
    work.mkdir(parents=True)
    results = [] if any(a.startswith("results_dir=") for a in args) else [f"results_dir={work / 'results'}"]
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"} if case in TWO_DEVICES else None
    proc = run_cli("tracker=disabled", *results, *args, cwd=work, env=env, timeout=60)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    for text in expected:
        assert text in output, output
    assert "Traceback" not in output and "Warning" not in output, output
    if case in AT_START_UP:
        written = [p for p in tmp_path.rglob("*") if p.is_file()]
        assert written == [], written
        assert not Path("/default").exists()


@pytest.mark.slow  # over 8 s on 2 cores: the everyday suite stays near 5 minutes
def test_bad_input_inside_a_multirun_is_a_failed_record_and_the_sweep_goes_on(cli):
    """Also a swept value whose interpolation does not resolve: its job's record says so, the sweep goes on."""
    proc, recs = cli("-m", "tracker=disabled", "report=false", "train.repeats=1", "optimizer.lr=1e-3,-1,${oops},nan")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert sorted(r["status"] for r in recs) == ["failed", "failed", "failed", "ok"]
    failed = [r for r in recs if r["status"] == "failed"]
    assert all(r["error"]["type"] == "ConfigError" and "optimizer.lr" in r["error"]["message"] for r in failed)
    (unresolved,) = [r for r in failed if "Interpolation key 'oops' not found" in r["error"]["message"]]
    assert unresolved["config"]["optimizer"]["lr"] is None and unresolved["job"]["num"] == 2
    assert "sweep: 4/4 done (1 ok, 0 diverged, 3 failed" in proc.stdout and "failed #2" in proc.stdout
    assert "unreadable record" not in proc.stdout + proc.stderr  # the failed record validates like any other


def test_every_option_of_a_component_group_names_an_importable_component_under_its_own_name():
    """The config groups are the registry: each option's `_target_` imports, and its `name` is its file's."""
    from harness.core.components import load
    from harness.jobs.compose import CONF_DIR

    for group in ("task", "model", "method"):
        for path in sorted((CONF_DIR / group).glob("*.yaml")):
            node = yaml.safe_load(path.read_text())
            if node["_target_"] == "???":  # custom: the user's own
                continue
            assert callable(load(node["_target_"])), path
            assert node["name"] == path.stem, path


def test_a_sweep_with_a_bad_option_or_value_is_refused_before_any_job_and_leaves_no_sweep_directory(tmp_path):
    """Checked with one compose per choice of config groups (hydra/sweeper=grid, the default), not one per job."""
    for args, said in ((["method=diffstate,difstate"], "Could not find 'method/difstate'"),
                       (["optimizer.lr=0.1,abc", "task.seed=1,2"], "optimizer.lr")):
        proc = run_cli("-m", "tracker=disabled", f"results_dir={tmp_path / 'results'}", *args, cwd=tmp_path,
                       timeout=60)
        assert proc.returncode == 1 and said in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
