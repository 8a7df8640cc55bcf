"""Tuning (issue 27, item 2): hydra/sweeper=tuned draws the same quasi-random trials for every method, trains a
method's trials as vectorized jobs, and harness.analysis.tuning picks the best trial per method on validation."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, run_cli
from harness.analysis.frames import load_records
from harness.analysis.tuning import best_trials, on_edge
from harness.core.checks import ConfigError
from harness.core.config import Dimension
from hydra_plugins.harness_tuned_sweeper.trials import draws, position

SPACE = {"lr": {"low": 1e-4, "high": 1e-1, "scale": "log"}, "weight_decay": {"low": 1e-5, "high": 1e-1},
         "one_minus_b1": {"low": 1e-2, "high": 0.5}}  # conf/hydra/sweeper/tuned.yaml's adamw space


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Two methods x 3 trials x 2 studies on the seed task: 12 runs."""
    tmp = tmp_path_factory.mktemp("tuned")
    proc = run_cli("-m", "hydra/sweeper=tuned", "method=diffstate,jax_split", "hydra.sweeper.tune.trials=3",
                   "hydra.sweeper.tune.studies=2", "tracker=disabled", "report=false", "train.repeats=1",
                   f"results_dir={tmp}", cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sweep_dir,) = (tmp / "default").iterdir()
    df, problems = load_records(sweep_dir)
    assert not problems
    return proc, sweep_dir, df


@pytest.mark.slow  # over 8 s on 2 cores: the everyday suite stays near 5 minutes
def test_every_method_gets_the_same_trials_per_study_and_they_train_as_vectorized_jobs(sweep):
    proc, sweep_dir, all_runs = sweep
    # One job per method, its studies too: the seed is a traced value.
    assert "tuned sweeper: 2 grid points x 3 trials x 2 studies = 12 runs in 2 jobs" in proc.stdout
    df = all_runs[all_runs["rerun_of"].isna()]
    assert len(df) == 12 and (df["status"] == "ok").all() and (df["timing_points"] == 6).all()
    trials = {method: sorted(zip(g["seed"], g["lr"], g["weight_decay"])) for method, g in df.groupby("method")}
    assert trials["diffstate"] == trials["jax_split"]  # paired: the same draws and seeds
    assert sorted(df["seed"].unique()) == [123, 124]  # study k trains with task.seed + k
    first, second = (set(g["lr"]) for _, g in df[df["method"] == "diffstate"].groupby("seed"))
    assert first.isdisjoint(second)  # study k draws with seed + k


@pytest.mark.slow  # a resume of the sweep: ~10 s
def test_each_chosen_trial_is_trained_again_alone_once_and_resume_retrains_only_a_missing_rerun(sweep, tmp_path):
    proc, sweep_dir, df = sweep
    reruns = df[df["rerun_of"].notna()]
    assert "tuned sweeper: 4 chosen trials trained in vectorized groups; each trains again alone for its timed " \
           "figures (jobs #2-#5)" in proc.stdout and "sweep finished: 6 jobs, 16 runs recorded: 16 ok" in proc.stdout
    assert sorted(reruns["job_num"]) == [2, 3, 4, 5] and (reruns["timing_points"].fillna(1) == 1).all()
    best = best_trials(df, SPACE)
    # Each rerun trains what its chosen trial trained (config and seed) alone, and no choice counts it as a trial.
    assert sorted(zip(reruns["config_key"], reruns["seed"])) == sorted(
        zip(df.set_index("path").loc[best["path"], "config_key"], best["study_seed"]))
    trials = df[df["rerun_of"].isna()]
    for _, rerun in reruns.iterrows():
        trial = trials[trials["path"].str.endswith(f"/{rerun['rerun_of']}/result.json")].iloc[0]
        assert (trial["config_key"], trial["seed"]) == (rerun["config_key"], rerun["seed"])
        assert rerun["program_fingerprint"] != trial["program_fingerprint"]  # one trial's program, not the group's
    plan = json.loads((sweep_dir / "sweep.json").read_text())
    assert [job["num"] for job in plan["reruns"]] == [2, 3, 4, 5] and plan["planned_jobs"] == 2
    # A rerun that left no record: resume trains it alone again, and nothing else.
    copy = tmp_path / "sweep"
    shutil.copytree(sweep_dir, copy)
    shutil.rmtree(copy / "3")
    again = run_cli("-m", "hydra/sweeper=tuned", "method=diffstate,jax_split", "hydra.sweeper.tune.trials=3",
                    "hydra.sweeper.tune.studies=2", "tracker=disabled", "report=false", "train.repeats=1",
                    f"results_dir={sweep_dir.parent.parent}", f"resume={copy}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    # Every trial (12) and every other rerun (3) is skipped.
    assert again.stdout.count("(already recorded, skipped by resume)") == 15 and "sweep: 5/6 done" in again.stdout
    assert f"ok: {copy / '3' / 'result.json'}" in again.stdout
    assert "sweep finished: 6 jobs, 16 runs recorded: 16 ok" in again.stdout


def test_the_best_trial_is_chosen_on_validation_and_a_poisoned_test_split_changes_nothing_chosen(sweep):
    _, _, df = sweep
    best = best_trials(df, SPACE)
    assert len(best) == 4 and (best["trials"] == 3).all()  # per method and study
    for _, row in best.iterrows():
        group = df[(df["method"] == row["method"]) & (df["seed"] == row["study_seed"]) & df["rerun_of"].isna()]
        assert row["val_mse"] == group["val_mse"].min()
        assert row["test_mse"] == group.loc[group["val_mse"].idxmin(), "test_mse"]  # reported, of that trial
    poisoned = df.copy()
    rng = np.random.default_rng(0)
    for column in [c for c in df if c.startswith("test_")]:
        if pd.api.types.is_float_dtype(df[column]):
            poisoned[column] = rng.permutation(df[column].to_numpy()) * -1e6  # the best test is now any trial
    chosen = ["method", "study_seed", "lr", "weight_decay", "one_minus_b1", "val_mse", "rerun"]
    pd.testing.assert_frame_equal(best_trials(poisoned, SPACE)[chosen], best[chosen])
    blind = best_trials(df.drop(columns=[c for c in df if c.startswith("test_")]), SPACE)
    pd.testing.assert_frame_equal(blind[chosen], best[chosen])  # chosen without any test column at all


def test_a_best_value_on_the_edge_of_the_space_is_flagged():
    rows = [{"status": "ok", "method": "m", "seed": 0, "val_accuracy": acc, "test_accuracy": 0.5,
             "overrides": f"optimizer.lr={lr}", "time_to_target_s": None, "target_reached": None,
             "config_key": f'{{"method.name": "m", "optimizer.lr": {lr}, "task.seed": 0}}'}
            for lr, acc in ((1.1e-4, 0.9), (3e-3, 0.8), (5e-2, 0.7))]
    space = {"lr": SPACE["lr"]}
    (edge,) = best_trials(pd.DataFrame(rows), space)["edge"]
    assert edge == "widen lr's range: the best value 0.00011 lies in the lowest 10% of [0.0001, 0.1] (log)"
    rows[1]["val_accuracy"] = 0.95
    assert best_trials(pd.DataFrame(rows), space)["edge"].tolist() == [None]
    assert on_edge(space, {"lr": 0.09})[0].startswith("widen lr's range: the best value 0.09 lies in the highest")


@pytest.mark.parametrize("sampler", ["halton", "sobol"])
def test_draws_are_seeded_quasi_random_and_inside_the_space(sampler):
    space = {name: Dimension(d["low"], d["high"]) for name, d in SPACE.items()}
    trials = draws(space, 16, sampler, seed=3)
    assert trials == draws(space, 16, sampler, seed=3) != draws(space, 16, sampler, seed=4)
    lrs = [float(t[0].partition("=")[2]) for t in trials]
    where = sorted(position(space["lr"], lr) for lr in lrs)
    assert 0 <= where[0] and where[-1] < 1 and len(set(lrs)) == 16
    # Quasi-random: every sixteenth of the (log) range holds about one draw, unlike 16 independent draws.
    assert max(np.histogram(where, bins=4, range=(0, 1))[0]) <= 6
    b1 = [float(t[2].partition("=")[2]) for t in trials]
    assert all(0.5 <= b < 0.99 + 1e-9 for b in b1)  # one_minus_b1 in [0.01, 0.5]


def test_a_tuned_value_set_by_the_command_is_refused_in_one_line(tmp_path):
    proc = run_cli("-m", "hydra/sweeper=tuned", "optimizer.lr=0.1,0.2", "tracker=disabled",
                   f"results_dir={tmp_path / 'r'}", cwd=tmp_path, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "error: optimizer.lr: is set by hydra/sweeper=tuned (trials and studies); remove 'optimizer.lr=0.1'" in \
        proc.stderr and "Traceback" not in proc.stderr


def test_an_experiment_that_sweeps_seeds_is_tuned_with_its_seed_axis_left_to_the_studies():
    """experiment=digits sweeps task.seed 0,1: `hydra/sweeper=tuned experiment=digits` (the tuned sweeper's own
    documented command) was refused, naming a 'task.seed=0' the user never typed. The experiment's seed axis is
    left out and each study sets the seed; typed on the command line, task.seed is still refused."""
    from omegaconf import OmegaConf

    from hydra_plugins.harness_tuned_sweeper.sweeper import trials

    tune = OmegaConf.load(REPO / "conf" / "hydra" / "sweeper" / "tuned.yaml")["tune"]
    tune.update(trials=2, studies=2)
    config = OmegaConf.create({"hydra": {"sweeper": {"params": {"task.seed": "0,1", "method": "a,b"}, "tune": tune}},
                               "task": {"seed": 0}, "optimizer": {"name": "adam"}})
    grid = [[f"task.seed={seed}", f"method={m}"] for seed in (0, 1) for m in ("a", "b")]
    planned = trials(grid, config)
    assert len(planned) == 2 * 2 * 2  # methods x trials x studies, not x the experiment's 2 seeds again
    assert sorted({job[-1] for job in planned}) == ["task.seed=0", "task.seed=1"]
    assert all(sum(o.startswith("task.seed=") for o in job) == 1 for job in planned)
    del config.hydra.sweeper.params["task.seed"]  # typed on the command line: no experiment gave it
    with pytest.raises(ConfigError, match="task.seed: is set by hydra/sweeper=tuned"):
        trials(grid, config)


def test_a_sweep_of_regression_and_classification_tasks_chooses_each_on_its_own_metric():
    """A tuned profile (transfer: MSE; digits, mnist1d, modular: accuracy) chose every trial on the sweep's first
    main metric, validation MSE: the classification tasks had none, so they had no best trial, no Tuning row and
    no findings. Each task is now chosen on its own main metric, and the Tuning section has a column pair for each."""
    from harness.analysis.tuning import tuning_section

    def trial(task, lr, **metrics):
        return {"status": "ok", "task": task, "method": "m", "optimizer": "adam", "seed": 0, "path": f"{task}/{lr}",
                "overrides": f"optimizer.lr={lr}", "time_to_target_s": None, "target_reached": None,
                "config_key": f'{{"task.name": "{task}", "optimizer.lr": {lr}, "task.seed": 0}}', **metrics}

    rows = [trial("transfer", 1e-3, val_mse=0.5, test_mse=0.6), trial("transfer", 1e-2, val_mse=0.1, test_mse=0.2),
            trial("digits", 1e-3, val_accuracy=0.9, test_accuracy=0.8),
            trial("digits", 1e-2, val_accuracy=0.7, test_accuracy=0.95)]
    best = best_trials(pd.DataFrame(rows), {"lr": SPACE["lr"]}).set_index("task")
    assert best.loc["transfer", "lr"] == 1e-2 and best.loc["transfer", "metric"] == "mse"
    assert best.loc["digits", "lr"] == 1e-3 and best.loc["digits", "metric"] == "accuracy"  # not the best test
    tune = {"trials": 2, "studies": 1, "space": {"adam": {"lr": SPACE["lr"]}}}
    section = tuning_section(pd.DataFrame(rows), tune)
    assert "chosen on each task's validation mse or accuracy alone" in section
    assert "| val mse (median) | test mse (mean, 95% CI) | val accuracy (median) |" in section
    assert "| digits | 1 | 2 | 0.00100 | — | — | 0.900 | 0.800 (1 seed" in section  # no MSE for a classification task


def test_by_time_to_target_the_fastest_trial_that_reached_the_validation_target_is_best():
    rows = [{"status": "ok", "method": "m", "seed": 0, "val_accuracy": acc, "test_accuracy": test,
             "overrides": f"optimizer.lr={lr}", "time_to_target_s": t, "target_reached": t is not None,
             "config_key": f'{{"method.name": "m", "optimizer.lr": {lr}, "task.seed": 0}}'}
            for lr, acc, test, t in ((1e-3, 0.99, 0.2, None), (3e-3, 0.9, 0.9, 2.0), (1e-2, 0.8, 0.5, 1.0))]
    (best,) = best_trials(pd.DataFrame(rows), {"lr": SPACE["lr"]}, by="time_to_target").to_dict("records")
    assert best["lr"] == 1e-2 and best["test_accuracy"] == 0.5  # not the best val (not reached), nor the best test
    with pytest.raises(ValueError, match="choose on 'val' or 'time_to_target'"):
        best_trials(pd.DataFrame(rows), {"lr": SPACE["lr"]}, by="test")


def test_the_report_of_a_tuned_sweep_compares_best_trials_and_says_so(sweep, tmp_path):
    from harness.analysis import findings, report, tuning

    _, sweep_dir, df = sweep
    assert tuning.tune_of(sweep_dir)["trials"] == 3  # from Hydra's multirun.yaml: hydra/sweeper=tuned
    made = report.build_report(sweep_dir, tmp_path)
    text = made["report"].read_text()
    assert "**Protocol**: at each method's best of 3 trials (validation)." in text
    assert findings.UNTUNED not in text
    tuned = text.split("## Tuning\n", 1)[1].split("\n## ", 1)[0]
    assert "| diffstate | 2 | 3 |" in tuned and "(2 seeds: no CI, add seeds)" in tuned  # 2 studies: no test CI
    # The findings pair each method's best trial per study (2 studies), never every trial of the sweep.
    found = pd.read_csv(tmp_path / "findings.csv")
    assert found.loc[found["metric"] == "test_mse", "strata"].tolist() == [2]
    assert tuning.tune_of(tmp_path)["space"]["adamw"]["lr"]["high"] == 0.1  # kept beside the report (tune.json)
    best = tuning.best_runs(df, tuning.tune_of(sweep_dir))
    assert len(best) == 4 and best["lr"].isna().all()  # one per method and study; its values no setting to pair on
    # Trials trained as vectorized groups: a group's call time and memory are no trial's own. Each chosen trial's
    # timed figures are its rerun's alone; its quality stays the trial's (what it was chosen on).
    reruns = df[df["rerun_of"].notna()].set_index(["config_key", "seed"])
    timed = ["in_loop_s_per_step", "run_s_per_step_median", "memory_bytes", "compile_s", "program_fingerprint"]
    keys = df.set_index("path").loc[best["path"], "config_key"]
    assert best[timed].to_numpy().tolist() == reruns.loc[list(zip(keys, best["seed"])), timed].to_numpy().tolist()
    assert best["val_mse"].tolist() == df.set_index("path").loc[best["path"], "val_mse"].tolist()
    assert (best["timing_points"] == 1).all()
    assert "- method=diffstate: timed figures from each study's chosen trial trained again alone, jobs #" in tuned
    assert "in-loop step time" in text.split("## Findings\n", 1)[1].split("\n## ", 1)[0]
    # Without its reruns, a chosen trial shows no timed figure, and the Tuning section names the command instead.
    bare = tuning.best_runs(df[df["rerun_of"].isna()], tuning.tune_of(sweep_dir))
    assert bare[["in_loop_s_per_step", "run_s_per_step_median", "memory_bytes", "compile_s"]].isna().all().all()
    section = tuning.tuning_section(df[df["rerun_of"].isna()], tuning.tune_of(sweep_dir))
    assert section.count("timed figures of study 123's chosen trial (run alone): `harness method=") == 2
    assert "results_dir=" not in section and "report=" not in section  # where the sweep kept its results: no rerun's


def test_only_a_chosen_trial_trained_in_a_group_is_trained_again_and_takes_its_reruns_times():
    from harness.analysis.tuning import best_runs, timed_reruns, tuning_section

    def run(method, lr, acc, points, step, rerun_of=None):
        return {"status": "ok", "method": method, "optimizer": "adam", "seed": 0, "val_accuracy": acc,
                "test_accuracy": acc, "overrides": f"method={method} optimizer.lr={lr}", "timing_points": points,
                "in_loop_s_per_step": step, "rerun_of": rerun_of, "job_num": 9 if rerun_of else 0,
                "path": f"/s/{method}/{lr}/{rerun_of}/result.json",
                "config_key": f'{{"method.name": "{method}", "optimizer.lr": {lr}, "task.seed": 0}}'}

    tune = {"trials": 2, "space": {"adam": {"lr": SPACE["lr"]}}}
    rows = [run("alone", 1e-3, 0.9, 1, 5e-3), run("alone", 1e-2, 0.8, 1, 6e-3),  # trials that trained alone
            run("grouped", 1e-3, 0.7, 2, 1e-4), run("grouped", 1e-2, 0.95, 2, 1e-4)]  # a group's shared time
    df = pd.DataFrame(rows)
    assert timed_reruns(df, tune)["path"].tolist() == ["/s/grouped/0.01/None/result.json"]
    section = tuning_section(df, tune)
    assert "method=alone" not in section.split("Edges and reruns:")[1]  # its times are its own: nothing to rerun
    assert "- method=grouped, timed figures of study 0's chosen trial (run alone): `harness method=grouped " \
           "optimizer.lr=0.01`" in section
    best = best_runs(df, tune).set_index("method")
    assert best.loc["alone", "in_loop_s_per_step"] == 5e-3 and pd.isna(best.loc["grouped", "in_loop_s_per_step"])
    with_rerun = pd.DataFrame([*rows, run("grouped", 1e-2, 0.95, 1, 3e-3, rerun_of="1/1")])
    best = best_runs(with_rerun, tune).set_index("method")
    assert best.loc["grouped", "in_loop_s_per_step"] == 3e-3 and best.loc["grouped", "timing_points"] == 1
    assert best.loc["grouped", "val_accuracy"] == 0.95 and len(best) == 2  # the trial's quality; the rerun no trial
    assert "- method=grouped: timed figures from each study's chosen trial trained again alone, job #9" in \
        tuning_section(with_rerun, tune)


def test_a_tie_on_validation_goes_to_the_validation_loss_whatever_the_order_of_the_rows():
    rows = [{"status": "ok", "method": "m", "seed": 0, "val_accuracy": 0.9, "val_cross_entropy": ce,
             "test_accuracy": 0.5, "overrides": f"optimizer.lr={lr}", "time_to_target_s": None,
             "target_reached": None, "config_key": f'{{"method.name": "m", "optimizer.lr": {lr}, "task.seed": 0}}'}
            for lr, ce in ((1e-3, 0.31), (3e-3, 0.30), (1e-2, 0.32))]
    space = {"lr": SPACE["lr"]}
    for order in (rows, rows[::-1], [rows[2], rows[0], rows[1]]):
        assert best_trials(pd.DataFrame(order), space)["lr"].tolist() == [3e-3]


def test_compare_keeps_a_chosen_trial_in_its_group_apart_from_its_rerun_alone(sweep):
    """A chosen trial and its rerun compute one configuration (one config key) in two compiled programs: its group's
    and its own. `harness compare` of two tuned sweeps pooled them, so a trial's memory read x1.00 [0.535, 1.87]
    against itself; it now matches each way of training with the same way."""
    from harness.analysis import compare

    _, _, df = sweep
    table, unmatched = compare.compare(df, df)
    assert unmatched.empty and set(table["trained"]) == {"alone", f"group of {int(df['timing_points'].max())}"}
    alone = table[table["trained"] == "alone"]
    assert len(alone) == df["rerun_of"].notna().sum() == 4
    keys = ["method", "lr"]
    assert alone.set_index(keys).index.isin(table[table["trained"] != "alone"].set_index(keys).index).all()
    assert (table["memory_bytes_verdict"] == "identical").all(), table["memory_bytes_text"].tolist()
    text = compare.compare_markdown(table, unmatched, 0.05, "a", "b")
    header = next(line for line in text.splitlines() if line.startswith("| method"))
    assert "| lr | trained |" in header, header
