"""Seeds in the statistics (issue 27, item 4): a ratio that varies with the seed (quality, time to target) takes its
interval from the seeds, calls nothing from fewer than three, and is never "(exact)"; bytes and counts still are."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from harness.analysis import compare, findings, frames

VERDICT_WORDS = ("higher", "lower", "identical", "slower", "faster", "more", "less", findings.NO_DIFFERENCE,
                 "within ±", "inconclusive")


def _sweep(accuracy: dict[str, list[float]], memory: dict[str, int] | None = None) -> pd.DataFrame:
    """Runs of two strategies, one per seed: their test accuracy seed by seed, and an optional memory."""
    rows = []
    for strategy, values in accuracy.items():
        for seed, value in enumerate(values):
            rows.append({"status": "ok", "fine_tuning": strategy, "method": "diffstate", "freeze": "none",
                         "optimizer": "adam", "seed": seed, "test_accuracy": value,
                         "memory_bytes": (memory or {}).get(strategy), "timing_points": 1})
    return pd.DataFrame(rows)


def _cell(found: pd.DataFrame, metric: str) -> str:
    table = findings.findings_table(found, "fine_tuning")
    return table.iloc[0][findings.MEASURES[metric].title]


def test_a_two_seed_quality_ratio_prints_no_verdict():
    df = _sweep({"scratch": [0.90, 0.80], "probe": [0.70, 0.64]})
    found = findings.comparisons(df)
    row = found[found["metric"] == "test_accuracy"].iloc[0]
    assert row["ratio"] == pytest.approx(math.sqrt(0.70 / 0.90 * 0.64 / 0.80))
    assert math.isnan(row["low"]) and math.isnan(row["high"]) and row["verdict"] == findings.FEW_SEEDS
    cell = _cell(found, "test_accuracy")
    assert cell == "×0.789 (2 seeds: no CI, add seeds)"
    assert not any(word in cell for word in VERDICT_WORDS) and "(exact)" not in cell
    # Two seeds that agree exactly say no more: still no "identical", still no "(exact)".
    same = findings.comparisons(_sweep({"scratch": [0.9, 0.8], "probe": [0.9, 0.8]}))
    assert _cell(same, "test_accuracy") == "×1.00 (2 seeds: no CI, add seeds)"
    one = findings.seed_ratio_ci([(0, [1.0], [0.5])])
    assert one.text() == "×0.500 (1 seed: no CI, add seeds)" and findings.verdict(one) == findings.FEW_SEEDS


def test_a_five_seed_ratio_whose_seeds_disagree_prints_an_interval_drawn_from_the_seeds():
    df = _sweep({"scratch": [0.90, 0.80, 0.85, 0.95, 0.88], "probe": [0.60, 0.76, 0.70, 0.62, 0.80]})
    found = findings.comparisons(df)
    row = found[found["metric"] == "test_accuracy"].iloc[0]
    ratios = [p / s for s, p in zip([0.90, 0.80, 0.85, 0.95, 0.88], [0.60, 0.76, 0.70, 0.62, 0.80])]
    assert row["ratio"] == pytest.approx(math.exp(sum(map(math.log, ratios)) / 5))
    # The interval spans the seeds' spread, inside the range of their ratios: it is the seeds', not zero-width.
    assert min(ratios) <= row["low"] < row["ratio"] < row["high"] <= max(ratios)
    cell = _cell(found, "test_accuracy")
    assert "(exact)" not in cell and cell.startswith(f"×{row['ratio']:.3f} [") and cell.endswith(row["verdict"])
    assert row["verdict"] == "lower"  # every resample of these seeds lies below 1 / 1.05
    # Seeded: the same records give the same interval; a seed that disagrees more widens it.
    again = findings.comparisons(df)
    assert again.loc[again["metric"] == "test_accuracy", "low"].iloc[0] == row["low"]
    wider = df.copy()
    wider.loc[(wider["fine_tuning"] == "probe") & (wider["seed"] == 4), "test_accuracy"] = 0.95
    wide = findings.comparisons(wider)
    wide = wide[wide["metric"] == "test_accuracy"].iloc[0]
    assert wide["high"] - wide["low"] > row["high"] - row["low"]


def test_a_seed_with_an_accuracy_of_0_gives_no_ratio_rather_than_a_vanishing_geometric_mean():
    # The modular reference's probe read "×7.39e-75": one seed's 0 made the log ratio -690 before this.
    for values in ([0.0, 0.0075, 0.004], [0.009, 0.0, 0.004]):
        df = _sweep({"scratch": [0.009, 0.0094, 0.01], "probe": values})
        found = findings.comparisons(df)
        row = found[found["metric"] == "test_accuracy"].iloc[0]
        assert math.isnan(row["ratio"]) and row["verdict"] == findings.ZERO_SIDE
        assert _cell(found, "test_accuracy") == "— (1 of 3 seeds 0 on a side: no ratio)"
    baseline_zero = findings.seed_ratio_ci([(0, [0.0], [0.5]), (1, [0.2], [0.5])])
    assert baseline_zero.zeros == 1 and findings.verdict(baseline_zero) == findings.ZERO_SIDE


def test_an_exact_measure_still_prints_exact_beside_a_seed_ratio():
    df = _sweep({"scratch": [0.9, 0.8], "probe": [0.7, 0.64]}, memory={"scratch": 4000, "probe": 1000})
    found = findings.comparisons(df)
    assert _cell(found, "memory_bytes") == "×0.250 (exact) less"
    assert "no CI, add seeds" in _cell(found, "test_accuracy")


def test_seeds_are_resampled_as_clusters_across_settings():
    """Two settings run with the same seeds: a seed's ratios are drawn together; the interval uses 3 clusters."""
    pairs = [(seed, [1.0], [r]) for setting in (0, 1) for seed, r in enumerate([0.8, 0.9, 1.0])]
    est = findings.seed_ratio_ci(pairs)
    assert est.seeds == 3 and est.strata == 6
    assert est.low < est.ratio < est.high


def _two_sweeps(seeds: int, factor: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A and B: one configuration, `seeds` seeds whose test MSE B holds `factor` times (varying a little)."""
    def side(scale: float) -> pd.DataFrame:
        return frames.typed(pd.DataFrame(columns=frames.frame([]).columns)).pipe(lambda empty: pd.concat([empty, pd.DataFrame([{"status": "ok", "method": "diffstate", "freeze": "kernel", "optimizer": "adam",
                              "seed": s, "test_mse": (1.0 + 0.1 * s) * scale * (1 + 0.01 * (s % 2)),
                              "config_key": f'{{"method.name": "diffstate", "task.seed": {s}}}',
                              "overrides": f"task.seed={s}", "experiment": "x", "schema_version": 2}
                             for s in range(seeds)])]))
    a, b = side(1.0), side(factor)
    b["test_mse"] = [v * (1 + 0.02 * (i % 3 - 1)) for i, v in enumerate(b["test_mse"])]
    return a, b


@pytest.mark.parametrize("seeds", [2, 5])
def test_compare_draws_a_quality_interval_from_the_seeds(seeds):
    a, b = _two_sweeps(seeds, 1.3)
    table, _ = compare.compare(a, b)
    (row,) = table.to_dict("records")
    if seeds == 2:
        assert row["test_mse_text"] == "×1.29 (2 seeds: no CI, add seeds)" and row["test_mse_verdict"] == \
            findings.FEW_SEEDS and not row["regression"]
    else:
        assert row["test_mse_low"] < row["test_mse_ratio"] < row["test_mse_high"]
        assert "(exact)" not in row["test_mse_text"] and row["test_mse_verdict"] == "higher" and row["regression"]


def test_findings_state_the_protocol_their_ratios_hold_under():
    df = pd.concat([frames.frame([]), _sweep({"scratch": [0.9, 0.8, 0.85], "probe": [0.7, 0.64, 0.7]})],
                   ignore_index=True)  # every column a sweep's frame has
    found = findings.comparisons(df)
    assert "**Protocol**: at one rate, not tuned." in findings.render_findings(df, found)
    tuned = findings.render_findings(df, found, protocol=findings.tuned_protocol(16))
    assert "**Protocol**: at each method's best of 16 trials (validation)." in tuned
