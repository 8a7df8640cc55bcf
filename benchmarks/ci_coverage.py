"""How often the findings' 95% CI holds the true ratio, on simulated sweeps where the truth is known.

    python benchmarks/ci_coverage.py [--trials 200]

Each simulated comparison has `settings` strata; each side of a stratum holds `runs` runs
(seeds, jobs minutes apart) of `repeats` timed repeats. Every run is shifted by its own
drift (normal, sd `drift`) and every repeat by noise (sd 5%); both sides have the same
true time, so the true ratio is 1. Printed per case: the fraction of trials whose CI
holds 1, and the mean CI width, for `harness.analysis.findings.ratio_ci` and for a two-stage
bootstrap (runs, then each drawn run's repeats) computed the same way otherwise.
No JAX, no timing: the machine's load does not matter.
"""

from __future__ import annotations

import argparse

import numpy as np

from harness.analysis.findings import CONFIDENCE, ratio_ci

CASES = [  # (runs per side, repeats per run, drift between runs, settings)
    (2, 5, 0.00, 6), (2, 5, 0.05, 6), (2, 5, 0.05, 24), (10, 5, 0.00, 6), (1, 5, 0.00, 6), (2, 5, 0.00, 1)]


def two_stage_ci(strata, seed: int, resamples: int = 999) -> tuple[float, float]:
    rng = np.random.default_rng(seed)

    def side_means(runs):
        k = len(runs)
        picks, values = rng.integers(0, k, (resamples, k)), np.empty((resamples, k))
        for j, run in enumerate(runs):
            chosen = picks == j
            values[chosen] = run[rng.integers(0, len(run), (int(chosen.sum()), len(run)))].mean(axis=1)
        return values.mean(axis=1)

    logs = [np.log(side_means(c)) - np.log(side_means(b)) for b, c in strata]
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(np.exp(np.mean(logs, axis=0)), [tail, 100 - tail])
    return float(low), float(high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    args = parser.parse_args()
    print("runs repeats drift settings | ratio_ci: holds 1, mean width | two-stage: holds 1, mean width")
    for runs, repeats, drift, settings in CASES:
        rng = np.random.default_rng(7)
        held, widths = {"ratio_ci": 0, "two-stage": 0}, {"ratio_ci": [], "two-stage": []}
        for trial in range(args.trials):
            def side():
                return [(1 + rng.normal(0, drift)) * (1 + rng.normal(0, 0.05, repeats)) for _ in range(runs)]

            strata = [(side(), side()) for _ in range(settings)]
            est = ratio_ci(strata, seed=trial, resamples=999)
            for name, (low, high) in (("ratio_ci", (est.low, est.high)), ("two-stage", two_stage_ci(strata, trial))):
                held[name] += low <= 1 <= high
                widths[name].append(high - low)
        print(f"{runs:4d} {repeats:7d} {drift:5.2f} {settings:8d} | "
              + " | ".join(f"{held[n] / args.trials:.3f}, {np.mean(widths[n]):.4f}" for n in held))


if __name__ == "__main__":
    main()
