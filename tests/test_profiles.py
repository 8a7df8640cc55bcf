"""Performance profiles (issue 27, item 5): rho(tau), the score and P(A before B) against hand-computed cases, a
missed target counted as infinite, ties, seed bands, and the report's section."""

from __future__ import annotations

import json
import math
from itertools import product

import numpy as np
import pandas as pd
import pytest

from harness.analysis import frames, profiles

INF = math.inf


def _hand_case() -> pd.DataFrame:
    """Three problems: a tie (a = b), a missed target (b), and one no method reached."""
    index = pd.MultiIndex.from_tuples([("w1", 0), ("w2", 0), ("w3", 0)], names=["workload", "seed"])
    return pd.DataFrame({"a": [1.0, 2.0, INF], "b": [1.0, INF, INF], "c": [2.0, 1.0, INF]}, index=index)


def test_ratios_rho_and_score_match_the_hand_computed_case():
    t = _hand_case()
    r = profiles.ratios(t)
    assert r.to_dict("list") == {"a": [1.0, 2.0, INF], "b": [1.0, INF, INF], "c": [2.0, 1.0, INF]}
    rho = profiles.rho(r, [1.0, 1.5, 2.0, 4.0])
    # A tie puts both methods at 1 on that problem; a missed target never counts, at any tau.
    assert rho["a"].tolist() == pytest.approx([1 / 3, 1 / 3, 2 / 3, 2 / 3])
    assert rho["b"].tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 3, 1 / 3])
    assert rho["c"].tolist() == pytest.approx([1 / 3, 1 / 3, 2 / 3, 2 / 3])
    # score = mean over problems of (4 - ratio) / 3 within tau_max: a = (1 + 2/3 + 0) / 3, b = 1/3
    assert profiles.score(r).to_dict() == pytest.approx({"a": 5 / 9, "b": 1 / 3, "c": 5 / 9})
    assert profiles.score(r, tau_max=2.0).to_dict() == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})
    # The exact score is the area under the step function rho over [1, 4] / 3.
    grid = np.linspace(1, 4, 30001)
    area = profiles.rho(r, grid).mean()  # the mean over a fine uniform grid approximates the integral / 3
    assert area.to_dict() == pytest.approx(profiles.score(r).to_dict(), abs=1e-3)


def test_p_before_counts_ties_and_double_misses_half():
    t = _hand_case()
    assert profiles.before(t, "a", "b") == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert profiles.before(t, "b", "a") == pytest.approx((0.5 + 0 + 0.5) / 3)
    assert profiles.before(t, "a", "c") + profiles.before(t, "c", "a") == pytest.approx(1.0)


def _records(seeds=(0, 1, 2), missed=()) -> pd.DataFrame:
    """Two workloads (each with its own rate), two strategies; `missed`: (workload task, seed, strategy) that
    did not reach the target. probe is twice as fast on 'digits', scratch 1.5x as fast on 'modular'."""
    rows = []
    for task, model, lr, speed in (("digits", "cnn", 3e-3, {"scratch": 2.0, "probe": 1.0}),
                                   ("modular", "transformer", 1e-3, {"scratch": 1.0, "probe": 1.5})):
        for seed in seeds:
            for strategy, time in speed.items():
                reached = (task, seed, strategy) not in missed
                rows.append({"status": "ok", "task": task, "model": model, "fine_tuning": strategy,
                             "method": "diffstate", "freeze": "none", "optimizer": "adam", "lr": lr, "seed": seed,
                             "time_to_target_s": time * (1 + 0.1 * seed) if reached else None,
                             "target_reached": reached, "path": f"{task}/{seed}/{strategy}"})
    return pd.concat([frames.frame([]), pd.DataFrame(rows)], ignore_index=True)  # every column a sweep's frame has


def test_times_per_problem_from_records_count_a_miss_as_infinite_and_the_rate_as_the_workloads():
    df = _records(missed={("modular", 1, "scratch")})
    df.loc[(df["task"] == "digits") & (df["seed"] == 2) & (df["fine_tuning"] == "probe"), "status"] = "failed"
    t = profiles.times(df)
    assert list(t.columns) == ["scratch", "probe"]  # lr follows the workload: no method of its own
    assert len(t) == 6
    modular, digits = "modular/transformer", "digits/cnn"  # a workload is its task and model
    assert t.loc[(modular, 1), "scratch"] == INF and t.loc[(digits, 2), "probe"] == INF
    assert t.loc[(digits, 0), "probe"] == 1.0 and t.loc[(digits, 0), "scratch"] == 2.0
    r = profiles.ratios(t)
    assert r.loc[(digits, 0)].tolist() == [2.0, 1.0] and r.loc[(modular, 1), "scratch"] == INF


def test_bands_come_from_three_seeds_or_none():
    assert profiles.bands(profiles.times(_records(seeds=(0, 1))), profiles.taus()) is None
    t = profiles.times(_records(seeds=(0, 1, 2, 3), missed={("modular", 3, "scratch")}))
    low, high, scores = profiles.bands(t, profiles.taus())
    curve = profiles.rho(profiles.ratios(t), profiles.taus())
    assert (low <= curve + 1e-12).all().all() and (curve <= high + 1e-12).all().all()
    s = profiles.score(profiles.ratios(t))
    assert ((scores["low"] <= s + 1e-12) & (s <= scores["high"] + 1e-12)).all()
    assert scores.at["scratch", "high"] > scores.at["scratch", "low"]  # the missed seed varies between draws


def test_the_report_section_is_shown_for_several_workloads_with_its_figure(tmp_path):
    section, figure = profiles.report_section(_records(), tmp_path)
    assert figure == tmp_path / profiles.FIGURE and figure.stat().st_size > 0
    assert "6 problems (2 workloads x their seeds), each method as run, at one rate, not tuned" in section
    assert "| 1 | scratch | 0.833 [" in section  # fastest on 3 of 6, 1.5x on the others: (3 + 3 * 2.5 / 3) / 6
    assert "| fastest on | P(before 1) | P(before 2) |" in section  # methods by number: a table as wide as needed
    one = _records().query("task == 'digits'").drop(columns=["time_to_target_s"])
    assert profiles.report_section(one, tmp_path) is None  # one workload, no time to a target: nothing to profile


def test_a_sweep_whose_runs_had_no_target_has_no_profile_section(tmp_path):
    df = _records().assign(target_reached=None, time_to_target_s=None)
    assert profiles.report_section(df, tmp_path) is None


def test_a_tuned_profile_of_workloads_with_their_own_steps_names_each_strategy_once():
    """experiment=profile under hydra/sweeper=tuned: each workload trains its own number of steps, and the tuned
    methods were labelled with every axis that varied, steps included, so no method ran on two workloads and the
    profile had no problem at all (no section). Two trials per strategy; the faster one to the target counts. A
    strategy's freeze option follows from it: "probe", not "backbone, probe"."""
    rows = []
    for (task, steps), (strategy, freeze), (lr, time) in product((("digits", 200), ("transfer", 500)),
                                                                (("scratch", "none"), ("probe", "backbone")),
                                                                ((1e-3, 2.0), (1e-2, 1.0))):
        rows.append({"status": "ok", "task": task, "model": "m", "steps": steps, "fine_tuning": strategy,
                     "freeze": freeze, "method": "diffstate", "optimizer": "adam", "lr": lr, "seed": 0,
                     "time_to_target_s": time * (2 if strategy == "scratch" else 1), "target_reached": True,
                     "val_mse": 0.1, "overrides": f"optimizer.lr={lr}", "path": f"{task}/{strategy}/{lr}",
                     "config_key": json.dumps({"task.name": task, "strategy": strategy, "optimizer.lr": lr,
                                               "task.seed": 0})})
    df = pd.concat([frames.frame([]), pd.DataFrame(rows)], ignore_index=True)
    tune = {"space": {"adam": {"lr": {"low": 1e-4, "high": 1e-1, "scale": "log"}}}, "trials": 2, "studies": 1}
    t = profiles.times(df, tune)
    assert list(t.columns) == ["scratch", "probe"] and len(t) == 2
    assert t["probe"].tolist() == [1.0, 1.0] and t["scratch"].tolist() == [2.0, 2.0]  # each one's faster trial
