"""What a sweep found: ratios between settings, each with a seeded bootstrap 95% CI and a verdict.

One comparison is candidate / baseline for one metric, e.g. the in-loop step
time of `stop_gradient` over `diffstate`. Runs are matched into strata, the
same setting of every other axis (freeze, optimizer, lr, ...); each stratum
gives the ratio of its means, and the estimate is the geometric mean of those
ratios. The confidence interval is a stratified percentile bootstrap
(`ratio_ci`) that resamples each side's runs, or the repeats of a side's only
run, so the interval covers the drift between runs (seeds, jobs minutes apart)
and not only the spread of one run's repeats. Percentile, as criterion.rs
uses, because BCa is undefined for the many exactly repeatable metrics (bytes).
Runs of one compiled program (one `program_fingerprint`) are called "same
compiled program", never slower or faster: their ratio is the sweep's drift, and
their spread (`run_to_run`) is held by every other timed interval. A timed setting
below its noise floor (harness.analysis.resolution) is left out, and a comparison
with none left is "too short to resolve: use more steps (at least N)".

The verdict follows criterion.rs and `asv compare`: a change is called only
when the whole interval lies beyond the threshold; an interval that holds 1 is
"no significant difference". Pure pandas / numpy / scipy: no JAX.

>>> est = ratio_ci([([1.0, 1.1, 0.9, 1.0], [1.2, 1.3, 1.1, 1.2])])
>>> round(est.ratio, 3), verdict(est, 0.05)
(1.2, 'slower')
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from harness.analysis.frames import (
    follows,
    group_keys,
    key_text,
    markdown_table,
    nan_to_none,
    number_text,
    without_seed,
)
from harness.analysis.resolution import IN_LOOP, PER_CALL, TOO_SHORT, Floor, floor, floor_of, timed_calls, too_short
from harness.core.metrics import METRICS, Metric

THRESHOLD = 0.05
CONFIDENCE = 0.95
SEED = 0  # the bootstrap's: the same records always give the same report
RESAMPLES = 4999
# A spread between runs is measured on few of them: intervals hold its upper bound at this confidence (`spread_bound`).
SPREAD_CONFIDENCE = 0.8
# Axes whose values are compared with each other; method against diffstate unless told otherwise.
COMPARED_AXES = ("fine_tuning", "method", "freeze", "optimizer")
DEFAULT_BASELINES = {"method": "diffstate", "fine_tuning": "scratch"}


@dataclass(frozen=True)
class Measure:
    """A per-run quantity a finding or a comparison states as a ratio: its title, the words for a higher
    and a lower value, and which of them is worse."""

    column: str
    title: str
    higher: str
    lower: str
    exact: bool = False  # the same configuration always gives the same value (bytes, parameter counts)
    # Computed, not timed: one seed's value is exact, so runs pair by seed (same data and init on both sides).
    paired: bool = False
    timed: bool = False  # a clock's reading of the compiled program: between runs of one program, drift alone
    higher_is_worse: bool = True
    group_level: bool = False  # a vectorized point's value is its whole group's (one program's compile, memory)

    @property
    def of_group(self) -> bool:
        """Whether a grouped point's value is its group's: compared only between groups of one size."""
        return self.timed or self.group_level

    @property
    def worse(self) -> str:
        return self.higher if self.higher_is_worse else self.lower

    @property
    def better(self) -> str:
        return self.lower if self.higher_is_worse else self.higher


def _quality(split: str, metric: Metric) -> Measure:
    return Measure(f"{split}_{metric.name}", f"{split} {metric.title}", "higher", "lower", paired=True,
                   higher_is_worse=metric.better == "lower")


# Costs, then every quality metric of harness.core.metrics (train and test).
MEASURES = {m.column: m for m in (
    Measure("in_loop_s_per_step", "in-loop step time", "slower", "faster", timed=True),
    Measure("run_s_per_step", "run time / step", "slower", "faster", timed=True),
    # Steps to the target (set by the seed's data and initialization) times the step time: paired by seed like
    # quality, and not drift between runs of one program (a pretrained start reaches it in other steps).
    Measure("time_to_target_s", "time to target", "slower", "faster", paired=True),
    Measure("memory_bytes", "memory", "more", "less", exact=True, group_level=True),
    Measure("opt_state_bytes", "optimizer state", "more", "less", exact=True),
    Measure("all_reduce_bytes_per_step", "all-reduce bytes / step", "more", "less", exact=True),
    *(_quality(split, metric) for metric in METRICS.values() for split in ("test", "train")),
    # XLA's work on the input program: not `timed` here
    Measure("compile_s", "compile", "slower", "faster", group_level=True),
)}
NO_DIFFERENCE = "no significant difference"
# Quality and time to target vary with the seed: their interval is drawn from the seeds, and from fewer than this
# many seeds none is (nothing can be said about seed-to-seed variation from two).
MIN_SEEDS = 3
FEW_SEEDS = "not tested: too few seeds"  # the verdict of such a ratio: no word for a direction, nor "identical"
# A seed with 0 on a side (an accuracy of 0) has no log ratio: its cell says so, with no geometric mean at all.
ZERO_SIDE = "not tested: a side is 0"
SAME_PROGRAM = "same compiled program"
# A timed interval without a measured spread between runs holds one process's repeats only: no verdict.
NO_SPREAD = "not tested: no spread between runs measured (add a seed)"
# A vectorized point's time is its group's call shared by K points: the same kind of number only for equal K.
UNLIKE_GROUPS = "not compared: trained in vectorized groups of other sizes (timing_points)"  # also compile, memory


@dataclass(frozen=True)
class Estimate:
    """candidate / baseline, its confidence interval, and over how many strata and samples."""

    ratio: float
    low: float
    high: float
    strata: int = 0
    samples: int = 0  # the smallest sample in any stratum, either side
    seeds: int | None = None  # a seed-paired estimate (`seed_ratio_ci`): the seeds its interval resamples
    zeros: int = 0  # seeds with a value of 0 on a side (an accuracy of 0): no ratio has a meaning

    def text(self) -> str:
        """'×1.20 [1.18, 1.22]', '×1.00 (exact)' for a zero-width interval of a value no seed moves, '—' with no
        data; a seed-paired ratio from fewer than MIN_SEEDS seeds says so, and is never "(exact)".

        >>> Estimate(1.2, 1.18, 1.22).text()
        '×1.20 [1.18, 1.22]'
        >>> Estimate(0.791, math.nan, math.nan, seeds=2).text()
        '×0.791 (2 seeds: no CI, add seeds)'
        >>> Estimate(1.0, 1.0, 1.0, seeds=5).text()
        '×1.00 [1.00, 1.00]'
        >>> Estimate(math.nan, math.nan, math.nan, seeds=2, zeros=1).text()
        '— (1 of 2 seeds 0 on a side: no ratio)'
        """
        if self.zeros:
            return f"— ({self.zeros} of {self.seeds} seed{'' if self.seeds == 1 else 's'} 0 on a side: no ratio)"
        if math.isnan(self.ratio):
            return "—"
        ratio = f"×{number_text(self.ratio)}"
        if self.seeds is not None and math.isnan(self.low):
            return f"{ratio} ({self.seeds} seed{'' if self.seeds == 1 else 's'}: no CI, add seeds)"
        if self.low == self.high and self.seeds is None:
            return f"{ratio} (exact)"
        if math.isnan(self.low):
            return f"{ratio} (one sample: no CI)"
        return f"{ratio} [{number_text(self.low)}, {number_text(self.high)}]"


MISSING = Estimate(math.nan, math.nan, math.nan)


Side = Sequence[Any]  # one side of a stratum: runs, each a sequence of samples (its timed repeats) or one number


def held_up(values: Sequence[float]) -> np.ndarray:
    """Which timed samples are calls something else held up: above Q3 + 3 IQR of the run's samples (criterion.rs's
    severe outliers, on the slow side only: no call runs faster than its work).

    A clock's readings have a long right tail: a call the OS preempts on a busy machine reads 20x the
    others, and one such call in five moves their mean 4x.

    >>> held_up([1.0, 1.01, 0.99, 1.0, 20.0]).tolist()
    [False, False, False, False, True]
    """
    values = np.asarray(values, dtype=float)
    if len(values) < 4:
        return np.zeros(len(values), dtype=bool)
    q1, q3 = np.percentile(values, [25, 75])
    return values > q3 + 3 * (q3 - q1)


def _runs(side: Side, timed: bool = False) -> list[np.ndarray]:
    """A side's runs as arrays of their finite samples (less those `held_up`, for `timed` ones); a bare number is a
    run of one sample."""
    out = []
    for run in side:
        values = [run] if np.isscalar(run) else list(run)
        values = np.asarray([v for v in values if nan_to_none(v) is not None], dtype=float)
        if timed:
            values = values[~held_up(values)]
        if len(values):
            out.append(values)
    return out


def _side_mean(runs: list[np.ndarray]) -> float:
    """Each run weighs the same: the mean of its runs' means."""
    return float(np.mean([r.mean() for r in runs]))


def _logs(values: Any) -> np.ndarray:
    """Natural logs of times, a time of 0 (an in-loop time clamped at 0) read as the smallest positive float."""
    return np.log(np.maximum(np.asarray(values, dtype=float), np.finfo(float).tiny))


def mean_variance(run: Sequence[float]) -> float:
    """The variance of the log of a run's mean that its repeats account for.

    >>> round(mean_variance([1.0, 1.1, 0.9, 1.0]), 5)
    0.00168
    """
    return float(np.var(_logs(run), ddof=1) / len(run)) if len(run) > 1 else 0.0


def _resampled_means(runs: list[np.ndarray], rng: np.random.Generator, resamples: int,
                     between: float = 0.0) -> np.ndarray:
    """The side's mean under `resamples` bootstrap resamples, at the highest level that varies.

    Two or more runs: their means are drawn with replacement (a cluster bootstrap: the spread
    between runs already holds the spread of their repeats, so drawing the repeats again would
    count it twice). One run: its repeats are drawn. The values are first spread about their
    mean by sqrt(k / (k - 1)): the plain bootstrap's variance of a mean of k values is
    (k - 1) / k of the unbiased one, half of it for the two seeds of a typical sweep.

    `between` is the spread of a run's mean between runs beyond its repeats (log scale, measured
    elsewhere: `run_to_run`, harness.analysis.compare's spread between sweeps). A side whose own runs
    vary less than that is spread by a log-normal factor that tops its variance up to it.
    """
    values = runs[0] if len(runs) == 1 else np.array([r.mean() for r in runs])
    k = len(values)
    if k < 2:
        means = np.full(resamples, float(values.mean()))
    else:
        values = values.mean() + (values - values.mean()) * math.sqrt(k / (k - 1))
        means = values[rng.integers(0, k, (resamples, k))].mean(axis=1)
    if between > 0:
        clusters = len(runs)
        seen = float(np.var(_logs([r.mean() for r in runs]), ddof=1)) if clusters > 1 else 0.0
        repeats = float(np.mean([mean_variance(r) for r in runs]))
        extra = max(0.0, between ** 2 + repeats - seen) / clusters if clusters > 1 else between ** 2
        means = means * np.exp(rng.normal(0.0, math.sqrt(extra), resamples))
    return means


def ratio_ci(strata: Iterable[tuple[Side, Side]], *, exact: bool = False, between: float = 0.0,
             timed: bool = False, confidence: float = CONFIDENCE, seed: int = SEED,
             resamples: int = RESAMPLES) -> Estimate:
    """Geometric mean over strata of mean(candidate) / mean(baseline), with a stratified bootstrap CI.

    `strata` holds (baseline, candidate) pairs; each side lists runs, and each run is a
    sequence of samples (one per timed repeat) or a single number. Each stratum's sides are
    resampled independently: their runs when there are several, so the interval covers drift
    between runs (seeds, jobs run minutes apart) and not only the spread of one run's
    repeats; the repeats of a side's only run otherwise (`_resampled_means`), topped up to the
    spread `between` runs measured elsewhere (log scale; 0: none). A `timed` measure leaves out
    the calls something else held up (`held_up`). Written here
    because `scipy.stats.bootstrap` draws independent observations only. Percentile interval,
    seeded. A pair with an empty side, or a mean of 0 on the baseline side, is left out. A
    zero-width interval means no sample varies (or the metric is `exact`, the same for every
    run of a configuration); NaN bounds mean every side holds one value of a metric that can
    vary, which no interval can be drawn from.

    >>> ratio_ci([([2.0, 2.0], [3.0, 3.0]), ([1.0], [1.5])])
    Estimate(ratio=1.5, low=1.5, high=1.5, strata=2, samples=1, seeds=None, zeros=0)
    >>> ratio_ci([([1.0], [1.5])]).text()
    '×1.50 (one sample: no CI)'
    >>> one_run = ratio_ci([([[1.0, 1.01, 0.99]], [[1.2, 1.21, 1.19]])])
    >>> two_runs_apart = ratio_ci([([[1.0, 1.01, 0.99], [1.3, 1.31, 1.29]], [[1.2, 1.21, 1.19], [1.5, 1.51, 1.49]])])
    >>> one_run.high - one_run.low < 0.05 < two_runs_apart.high - two_runs_apart.low
    True
    >>> preempted = [[1.0, 1.01, 0.99, 1.0, 20.0]]  # one call of five held up by the OS
    >>> ratio_ci([(preempted, [[1.0, 1.01, 0.99, 1.0, 1.0]])], timed=True).text()
    '×0.998 [0.989, 1.01]'
    """
    pairs = []
    for baseline, candidate in strata:
        baseline, candidate = _runs(baseline, timed), _runs(candidate, timed)
        if baseline and candidate and _side_mean(baseline) > 0 and _side_mean(candidate) >= 0:
            pairs.append((baseline, candidate))
    if not pairs:
        return MISSING
    logs = [np.log(max(_side_mean(c), 1e-300)) - np.log(_side_mean(b)) for b, c in pairs]
    point = float(np.exp(np.mean(logs)))
    sides = [side for pair in pairs for side in pair]
    smallest = min(sum(len(r) for r in side) for side in sides)
    if all(len(side) == 1 and len(side[0]) == 1 for side in sides) and not exact:
        return Estimate(point, math.nan, math.nan, len(pairs), smallest)
    if not between and all(np.ptp(np.concatenate(side)) == 0 for side in sides):
        return Estimate(point, point, point, len(pairs), smallest)
    rng = np.random.default_rng(seed)
    resampled = [(_resampled_means(b, rng, resamples, between), _resampled_means(c, rng, resamples, between))
                 for b, c in pairs]
    ratios = np.exp(np.mean([_logs(c) - _logs(b) for b, c in resampled], axis=0))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return Estimate(point, float(low), float(high), len(pairs), smallest)


def seed_ratio_ci(pairs: Iterable[tuple[Any, Side, Side]], *, min_seeds: int = MIN_SEEDS,
                  confidence: float = CONFIDENCE, seed: int = SEED, resamples: int = RESAMPLES) -> Estimate:
    """Geometric mean of candidate / baseline over seed-paired strata, with a CI drawn from the seeds.

    `pairs` holds (seed, baseline, candidate): one setting's runs of that seed on each side (in a
    tuned sweep, a study's best trial: its seed is the study's). A seed's ratio is computed, not
    measured again: the seeds are the variation that matters, so they are what is resampled. One
    seed's strata (every setting run with it: same data, same init) are drawn together, as one
    cluster; each seed's mean log ratio is first spread about the pooled mean by sqrt(k / (k - 1)),
    as `_resampled_means` does. Percentile interval, seeded. Fewer than `min_seeds` seeds: NaN
    bounds (`Estimate.text` says "2 seeds: no CI, add seeds", `verdict` calls nothing). A zero-width
    interval here means every seed gave the same ratio; it is never "(exact)".

    >>> two = seed_ratio_ci([(0, [1.0], [0.8]), (1, [1.0], [0.78])])
    >>> two.text(), verdict(two)
    ('×0.790 (2 seeds: no CI, add seeds)', 'not tested: too few seeds')
    >>> five = seed_ratio_ci([(s, [1.0], [r]) for s, r in enumerate([0.7, 0.9, 0.8, 1.0, 0.75])])
    >>> five.seeds, five.low < five.ratio < five.high
    (5, True)
    """
    logs: dict[str, list[float]] = {}
    zeros: set[str] = set()
    smallest = None
    for seed_value, baseline, candidate in pairs:
        baseline, candidate = _runs(baseline), _runs(candidate)
        if not baseline or not candidate or _side_mean(baseline) < 0 or _side_mean(candidate) < 0:
            continue
        if not _side_mean(baseline) or not _side_mean(candidate):  # 0 on a side: its log ratio is infinite
            zeros.add(key_text(seed_value))
            continue
        logs.setdefault(key_text(seed_value), []).append(math.log(_side_mean(candidate)) - math.log(_side_mean(baseline)))
        size = min(sum(len(r) for r in side) for side in (baseline, candidate))
        smallest = size if smallest is None else min(smallest, size)
    if zeros:  # a geometric mean with a factor 0 (or infinity) says nothing of the other seeds: no ratio at all
        strata = len(zeros) + sum(len(v) for v in logs.values())
        return Estimate(math.nan, math.nan, math.nan, strata, 0, seeds=len(zeros | set(logs)), zeros=len(zeros))
    if not logs:
        return MISSING
    sums = np.array([sum(v) for v in logs.values()])
    counts = np.array([len(v) for v in logs.values()], dtype=float)
    pooled = float(sums.sum() / counts.sum())
    point, k, strata = math.exp(pooled), len(logs), int(counts.sum())
    if k < min_seeds:
        return Estimate(point, math.nan, math.nan, strata, smallest or 0, seeds=k)
    spread = pooled + (sums / counts - pooled) * math.sqrt(k / (k - 1))
    draws = np.random.default_rng(seed).multinomial(k, np.full(k, 1 / k), size=resamples)
    means = draws @ (counts * spread) / (draws @ counts)
    tail = (1 - confidence) / 2 * 100
    low, high = np.exp(np.percentile(means, [tail, 100 - tail]))
    return Estimate(point, float(low), float(high), strata, smallest or 0, seeds=k)


def estimate_cell(text: str, word: str) -> str:
    """A ratio and its verdict as one table cell; a ratio that already says why it calls nothing stands alone.

    >>> estimate_cell("×0.791 (2 seeds: no CI, add seeds)", FEW_SEEDS)
    '×0.791 (2 seeds: no CI, add seeds)'
    """
    return text if word in (FEW_SEEDS, ZERO_SIDE) else f"{text} {word}"


def side_ci(side: Side, *, between: float = 0.0, timed: bool = True, confidence: float = CONFIDENCE,
            seed: int = SEED, resamples: int = RESAMPLES) -> tuple[float, float, float]:
    """(mean, low, high) of one side as `ratio_ci` resamples it: runs drawn when there are several, else one run's
    repeats, topped up to the run-to-run spread `between`, held-up calls left out. What a figure's whisker must
    show so that it agrees with the findings' verdicts. NaN bounds when there is nothing to resample.

    >>> side_ci([[1.0, 1.0, 1.0]])
    (1.0, 1.0, 1.0)
    """
    runs = _runs(side, timed)
    if not runs:
        return math.nan, math.nan, math.nan
    mean = _side_mean(runs)
    if sum(len(r) for r in runs) < 2:
        return mean, math.nan, math.nan
    if not between and np.ptp(np.concatenate(runs)) == 0:
        return mean, mean, mean
    means = _resampled_means(runs, np.random.default_rng(seed), resamples, between)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return mean, float(low), float(high)


def mean_ci(values: Sequence[float], *, confidence: float = CONFIDENCE, seed: int = SEED,
            resamples: int = RESAMPLES) -> tuple[float, float, float]:
    """(mean, low, high): a seeded percentile bootstrap CI of the mean; zero-width for constant values,
    NaN bounds for a single value.

    >>> mean_ci([2.0, 2.0, 2.0])
    (2.0, 2.0, 2.0)
    """
    values = np.asarray([v for v in values if nan_to_none(v) is not None], dtype=float)
    if not len(values):
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if len(values) == 1:
        return mean, math.nan, math.nan
    if np.ptp(values) == 0:
        return mean, mean, mean
    result = stats.bootstrap([values], np.mean, vectorized=True, axis=-1, n_resamples=resamples,
                             confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed))
    return mean, float(result.confidence_interval.low), float(result.confidence_interval.high)


def verdict(estimate: Estimate, threshold: float = THRESHOLD, measure: Measure | None = None) -> str:
    """What the interval says.

    The metric's word for higher ('slower') when the whole interval is above
    1 + threshold, for lower ('faster') when it is below 1 / (1 + threshold);
    'no significant difference' when it holds 1; 'within ±5%' when it excludes 1
    but stays inside the threshold; 'inconclusive' when it straddles the threshold.

    >>> verdict(Estimate(1.01, 0.97, 1.05))
    'no significant difference'
    >>> verdict(Estimate(0.5, 0.45, 0.55), measure=MEASURES["memory_bytes"])
    'less'
    """
    higher, lower = (measure.higher, measure.lower) if measure else ("slower", "faster")
    if estimate.zeros:
        return ZERO_SIDE
    if math.isnan(estimate.ratio):
        return "no data"
    if math.isnan(estimate.low):
        return FEW_SEEDS if estimate.seeds is not None else "one sample: not tested"
    if estimate.low == estimate.high == estimate.ratio == 1:
        return "identical"
    if estimate.low > 1 + threshold:
        return higher
    if estimate.high < 1 / (1 + threshold):
        return lower
    if estimate.low <= 1 <= estimate.high:
        return NO_DIFFERENCE
    if 1 / (1 + threshold) <= estimate.low and estimate.high <= 1 + threshold:
        return f"within ±{threshold:.0%}"
    return "inconclusive"


def is_worse(word: str, measure: Measure) -> bool:
    """Whether a verdict is a significant change for the worse beyond the threshold."""
    return word == measure.worse


# --- samples per run -----------------------------------------------------------------------------


def run_samples(run: Mapping, column: str) -> list[float]:
    """The values a run contributes to a comparison of `column`: one per timed repeat for times, else one.

    In-loop step time per repeat is (training - C 1-step calls) / (steps - C) for a training
    of C calls (`train.log_every` chunks; 1 by default), clamped at 0, as harness.core.timing
    computes the median's.

    >>> run = {"run_s": "[0.0101, 0.0111]", "one_step_call_s": 1e-4, "steps": 101, "timing_points": 1}
    >>> [round(v * 1e6, 1) for v in run_samples(run, "in_loop_s_per_step")]
    [100.0, 110.0]
    """
    value = nan_to_none(run.get(column))
    repeats, one_step, chunks = timed_calls(run)
    steps = nan_to_none(run.get("steps"))
    if column == IN_LOOP:
        if repeats and one_step is not None and steps and steps > chunks:
            return [max(r - chunks * one_step, 0.0) / (steps - chunks) for r in repeats]
    elif column == PER_CALL:
        points = nan_to_none(run.get("timing_points")) or 1
        if repeats and steps:
            return [r / steps / points for r in repeats]
        value = nan_to_none(run.get("run_s_per_step_median"))
    elif column == "compile_s" and run.get("compile_source") != "compiled":
        return []  # a cache hit is no compile time
    return [] if value is None else [float(value)]


def samples(runs: pd.DataFrame, column: str) -> list[list[float]]:
    """The values each ok run in `runs` contributes for `column`, run by run (see `ratio_ci`)."""
    return runs_samples(ok_runs(runs), column)


def runs_samples(runs: Iterable[Mapping], column: str) -> list[list[float]]:
    """`samples` of runs already read into mappings."""
    return [values for run in runs if (values := run_samples(run, column))]


def rows_by_index(runs: pd.DataFrame) -> dict[Any, dict]:
    """Every row of `runs` as a mapping, by its index label: read once, since the rows of a wide frame are slow to
    read one by one (a Series per row cost a 168-run report minutes)."""
    return dict(zip(runs.index, runs.to_dict("records")))


def ok_runs(runs: pd.DataFrame) -> list[dict]:
    """The ok runs of `runs`, one mapping each (not `iterrows`: a Series per row of a wide frame cost a 168-run
    report minutes)."""
    return runs[runs["status"] == "ok"].to_dict("records")


def step_time_column(df: pd.DataFrame, threshold: float = THRESHOLD) -> str:
    """In-loop step time when every ok run resolves it (above its noise floor, harness.analysis.resolution),
    else the whole call over its steps.

    A ratio of in-loop times below the floor measures the jitter of the per-call cost; call / steps,
    which holds that cost as well, is then the step time a comparison can stand on.
    """
    ok = ok_runs(df) if "status" in df else df.to_dict("records")
    measured = ok and "one_step_call_s" in df and floor_of(ok, IN_LOOP, threshold).resolved
    return IN_LOOP if measured else PER_CALL


def spread_bound(variance: float, degrees: float, repeats: float = 0.0) -> float:
    """A spread between runs (log scale) from the variance of their log times over `degrees` of freedom: its
    one-sided SPREAD_CONFIDENCE upper bound (chi-square), less the variance `repeats` account for.

    A variance from two runs can read near 0 by chance; the bound does not let a spread measured on a
    few runs read as small (from 2 runs it is 4x the standard deviation seen, from 17 runs 1.2x).

    >>> round(spread_bound(0.01, 1), 3), round(spread_bound(0.01, 16), 3)
    (0.395, 0.12)
    """
    bound = variance * degrees / stats.chi2.ppf(1 - SPREAD_CONFIDENCE, degrees)
    return math.sqrt(max(0.0, bound - repeats))


def run_to_run(runs: pd.DataFrame, column: str, threshold: float = THRESHOLD) -> float | None:
    """How far the time of one compiled program moves from run to run beyond its repeats (log scale).

    Measured on the runs themselves: ok runs that ran one XLA program (one `program_fingerprint`,
    or seeds of one configuration in records without one) on one device and resolve the measure.
    Their pooled variance of log mean time (less calls `held_up`), bounded above (`spread_bound`)
    and less what their repeats account for, is the spread that jobs run minutes apart, or in two
    processes, add and a run's repeats do not show. None when no two such runs exist.

    >>> fast = {"status": "ok", "program_fingerprint": "p", "run_s_per_step_median": 1.0}
    >>> slow = {**fast, "run_s_per_step_median": 1.1}
    >>> round(run_to_run(pd.DataFrame([fast, slow]), "run_s_per_step"), 3)
    0.266
    """
    prints = runs["program_fingerprint"] if "program_fingerprint" in runs else pd.Series(None, index=runs.index)
    configs = runs["config_key"].map(without_seed) if "config_key" in runs else pd.Series(None, index=runs.index)
    programs = [nan_to_none(p) or (None if nan_to_none(c) is None else f"config {c}") for p, c in zip(prints, configs)]
    devices = runs["device"] if "device" in runs else pd.Series("", index=runs.index)
    squares, degrees, repeats = 0.0, 0, []
    records = rows_by_index(runs)
    for _, group in runs[["status"]].groupby([pd.Series(programs, index=runs.index, dtype=object),
                                              devices.fillna("")], dropna=True, sort=False):
        means, variances = [], []
        for run in (records[i] for i in group.index[group["status"] == "ok"]):
            values = run_samples(run, column)
            if values and floor(run, column, threshold).resolved:
                values = np.asarray(values)[~held_up(values)]
                means.append(float(_logs([values.mean()])[0]))
                variances.append(mean_variance(values))
        if len(means) > 1:
            squares += float(np.sum((np.array(means) - np.mean(means)) ** 2))
            degrees += len(means) - 1
            repeats += variances
    return spread_bound(squares / degrees, degrees, float(np.mean(repeats))) if degrees else None


# --- comparisons within a sweep ------------------------------------------------------------------


def baselines_for(df: pd.DataFrame, overrides: Mapping[str, str] | None = None,
                  axes: Sequence[str] = ()) -> dict[str, Any]:
    """{axis: baseline value} for each compared axis with two or more values among the ok runs: the question's
    `axes` first (every swept config leaf: own freeze patterns, `+model.x`), then COMPARED_AXES, then any axis an
    override names.

    The baseline is the override (matched as its text: `lr=0.01`, `freeze.patterns=[]`), else diffstate for
    methods, else the sweep's first value.
    """
    ok = df[df["status"] == "ok"]
    overrides = overrides or {}
    out = {}
    for axis in dict.fromkeys([*axes, *COMPARED_AXES, *overrides]):
        values = [v for v in dict.fromkeys(ok[axis]) if nan_to_none(v) is not None] if axis in ok else []
        if len(values) < 2:
            continue
        wanted = overrides.get(axis, DEFAULT_BASELINES.get(axis))
        out[axis] = next((v for v in values if key_text(v) == wanted), values[0])
    return out


FINDING_COLUMNS = ["axis", "baseline", "candidate", "metric", "ratio", "low", "high", "strata", "estimate", "verdict",
                   "too_short", "steps_needed", "run_to_run"]


def compare_axis(df: pd.DataFrame, axis: str, baseline: str, columns: Sequence[str], *,
                 threshold: float = THRESHOLD, seed: int = SEED) -> pd.DataFrame:
    """Every other value of `axis` against `baseline`: one row per (candidate, metric) with its estimate.

    Strata are the settings of the sweep's other grouping axes (and the seed, for
    a paired metric): only settings run with both values are compared. A timed measure leaves
    out the settings where either side is below its noise floor (harness.analysis.resolution:
    `too_short` counts them, `steps_needed` says what would resolve them) and spreads each side
    by the sweep's own run-to-run spread (`run_to_run`); without one, it calls nothing (NO_SPREAD).
    """
    ok = df[df["status"] == "ok"]
    # A step time faster than the machine can compute (plausibility's warning: XLA hoisted the work) is no cost of
    # the training: such runs take no part in any timed verdict, nor in the spread between runs.
    plausible = ok[ok["warning"].isna()] if "warning" in ok else ok
    # Settings that follow from the compared value (the freeze mask of a fine-tuning strategy) are no strata.
    others = [k for k in group_keys(ok) if k != axis and not follows(ok, axis, k)]
    spread = {column: run_to_run(plausible, column, threshold) for column in columns if MEASURES[column].timed}
    # Groups of the few columns that split the runs; each run's values read once (rows of a wide frame are slow).
    records = rows_by_index(ok)
    narrow = [c for c in dict.fromkeys([*others, "seed", axis, "timing_points", "program_fingerprint"]) if c in ok]
    rows = []
    for candidate in dict.fromkeys(ok[axis]):
        if candidate == baseline or nan_to_none(candidate) is None:
            continue
        for column in columns:
            measure = MEASURES[column]
            by = [*others, "seed"] if measure.paired else others
            strata, short, same, unlike, seeds = [], [], [], 0, []
            runs = (plausible if measure.timed else ok)[narrow]
            for key, g in (runs.groupby(by, dropna=False, sort=False) if by else [((), runs)]):
                base, cand = g[g[axis] == baseline], g[g[axis] == candidate]
                if measure.of_group and len(base) and len(cand) and not like_groups(base, cand):
                    unlike += 1
                    continue
                base_runs, cand_runs = [records[i] for i in base.index], [records[i] for i in cand.index]
                below = floor_of([*base_runs, *cand_runs], column, threshold)
                if not below.resolved and len(base) and len(cand):
                    short.append(below)
                    continue
                strata.append((runs_samples(base_runs, column), runs_samples(cand_runs, column)))
                seeds.append(key[-1] if measure.paired else None)  # `by` ends with the seed
                if len(base) and len(cand):
                    same.append(same_program(base, cand))
            # Two sides of one program differ by the drift the run-to-run spread measures: their interval
            # is their repeats', so that a drift beyond the threshold shows.
            one_program = measure.timed and same and all(same)
            between = 0.0 if one_program else spread.get(column) or 0.0
            if measure.paired:  # quality, time to target: the interval comes from the seeds
                est = seed_ratio_ci([(s, b, c) for s, (b, c) in zip(seeds, strata)], seed=seed)
            else:
                est = ratio_ci(strata, exact=measure.exact, between=between, timed=measure.timed, seed=seed)
            word = verdict(est, threshold, measure)
            if unlike and not est.strata:
                word = UNLIKE_GROUPS
            elif short and not est.strata:
                word = too_short(Floor(False, max(f.steps for f in short)))
            elif measure.timed and not one_program and spread.get(column) is None and est.strata:
                word = NO_SPREAD
            elif one_program:
                # Its ratio is drift; one beyond the threshold is worth a look (denormals, other load).
                word = SAME_PROGRAM + (f", drift beyond ±{threshold:.0%}" if word in (measure.higher, measure.lower)
                                       else "")
            rows.append({"axis": axis, "baseline": baseline, "candidate": candidate, "metric": column,
                         "ratio": est.ratio, "low": est.low, "high": est.high, "strata": est.strata,
                         "estimate": est.text(), "verdict": word, "too_short": len(short),
                         "steps_needed": max((f.steps for f in short), default=None),
                         "run_to_run": spread.get(column)})
    return pd.DataFrame(rows, columns=FINDING_COLUMNS)


def like_groups(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Whether the runs of `a` and `b` trained in vectorized groups of one size (1: alone), whose times compare.

    >>> like_groups(pd.DataFrame({"timing_points": [64, 64]}), pd.DataFrame({"timing_points": [None]}))
    False
    """
    def sizes(runs: pd.DataFrame) -> set[int]:
        return {int(v) for v in runs["timing_points"].fillna(1)} if "timing_points" in runs else {1}

    return sizes(a) == sizes(b)


def same_program(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Whether every run of `a` and `b` ran one compiled XLA program (one `program_fingerprint`, harness.core.hlo)."""
    if "program_fingerprint" not in a or "program_fingerprint" not in b:
        return False
    prints = pd.concat([a["program_fingerprint"], b["program_fingerprint"]])
    return bool(prints.notna().all()) and prints.nunique() == 1


def finding_columns(df: pd.DataFrame, threshold: float = THRESHOLD) -> list[str]:
    """The measures a finding reports: step time, memory, optimizer state and each main test metric the runs have.

    The step time is in-loop when the runs measured it, and call / steps as well when some run's in-loop
    time is below its noise floor (its comparisons say "too short to resolve" there).
    """
    ok = ok_runs(df)
    steps = [IN_LOOP] if "one_step_call_s" in df and any(run_samples(run, IN_LOOP) for run in ok) else []
    if step_time_column(df, threshold) == PER_CALL:
        steps.append(PER_CALL)
    quality = [f"test_{m.name}" for m in METRICS.values() if m.main]
    return [*steps, *(c for c in ("time_to_target_s", "memory_bytes", "opt_state_bytes", *quality)
                      if c in df and df[c].notna().any())]


def comparisons(df: pd.DataFrame, baselines: Mapping[str, str] | None = None, *, threshold: float = THRESHOLD,
                seed: int = SEED, axes: Sequence[str] = ()) -> pd.DataFrame:
    """Every comparison the sweep supports (the question's `axes`, methods, freeze options, optimizers), one row
    per metric."""
    columns = finding_columns(df, threshold)
    parts = [compare_axis(df, axis, base, columns, threshold=threshold, seed=seed)
             for axis, base in baselines_for(df, baselines, axes).items()]
    parts = [p for p in parts if len(p) and (p["strata"] > 0).any()]  # no setting run with both: nothing to say
    return pd.concat(parts, ignore_index=True) if parts else compare_axis(df.iloc[:0], "method", "", columns)


def drift_lines(df: pd.DataFrame) -> list[str]:
    """Which methods left the frozen parameters bitwise unchanged in every run, and which moved them."""
    ok = df[(df["status"] == "ok") & df["drift_unchanged"].notna() & (df["frozen_params"].fillna(0) > 0)]
    if ok.empty:
        return []
    unchanged, moved = [], []
    for method, runs in ok.groupby("method", sort=False):
        n_moved = int((~runs["drift_unchanged"].astype(bool)).sum())
        if not n_moved:
            unchanged.append(f"{method} ({len(runs)} run{'s' if len(runs) > 1 else ''})")
            continue
        where = runs[~runs["drift_unchanged"].astype(bool)]
        settings = ", ".join(f"{k}={'/'.join(map(key_text, dict.fromkeys(where[k])))}"
                             for k in ("optimizer", "freeze") if k in where and where[k].nunique() < runs[k].nunique())
        moved.append(f"{method} in {n_moved} of {len(runs)} runs{f' ({settings})' if settings else ''}, "
                     f"L2 up to {number_text(where['drift_l2'].max())}")
    lines = []
    if unchanged:
        lines.append("Frozen parameters bitwise unchanged in every run: " + ", ".join(unchanged) + ".")
    if moved:
        lines.append("Frozen parameters moved: " + "; ".join(moved) + ".")
    return lines


def same_program_lines(found: pd.DataFrame) -> list[str]:
    """Which compared values ran the same compiled program as their baseline, and how far apart their times read.

    Their step-time ratios measure nothing but the machine's drift between the runs (an A/A control):
    a ratio of that size between two different programs is no evidence of a cost either.
    """
    same = found[found["verdict"].str.startswith(SAME_PROGRAM)]
    same = same[same["metric"].isin(["in_loop_s_per_step", "run_s_per_step"])]
    if same.empty:
        return []
    # Each value once: the two step-time metrics of one comparison name the same pair.
    names = "; ".join(f"{axis} {', '.join(map(key_text, g['candidate'].drop_duplicates()))} as "
                      f"{key_text(g['baseline'].iloc[0])}" for axis, g in same.groupby("axis", sort=False))
    ratios = same["ratio"].dropna()
    if ratios.empty or min(ratios) <= 0:
        return [f"Same compiled XLA program (one fingerprint in every setting): {names}."]
    spread = max(max(ratios), 1 / min(ratios))
    measured = (f"Its step-time ratio, ×{ratios.iloc[0]:.2f}, is" if len(ratios) == 1 else
                f"Their step-time ratios, ×{min(ratios):.2f} to ×{max(ratios):.2f}, are")
    return [f"Same compiled XLA program (one fingerprint in every setting): {names}. {measured} this sweep's "
            f"drift between runs of one program; a difference up to ×{spread:.2f} between other settings is no "
            "evidence of a cost."]


def findings_table(found: pd.DataFrame, axis: str) -> pd.DataFrame:
    """One row per candidate value of `axis`, one column per metric: 'ratio [CI] verdict'."""
    rows = found[found["axis"] == axis]
    if rows.empty:
        return pd.DataFrame()
    baseline = rows["baseline"].iloc[0]
    table = {}
    for candidate, g in rows.groupby("candidate", sort=False):
        cells = {f"{axis} / {baseline}": candidate}
        for _, r in g.iterrows():
            cells[MEASURES[r["metric"]].title] = estimate_cell(r["estimate"], r["verdict"])
        cells["settings"] = int(g["strata"].max())
        table[candidate] = cells
    return pd.DataFrame(list(table.values()))


def floor_lines(found: pd.DataFrame) -> list[str]:
    """Timed comparisons that left settings out because they were below the noise floor."""
    partly = found[(found["too_short"].fillna(0) > 0) & (found["strata"] > 0)]
    if partly.empty:
        return []
    cells = [f"{r['axis']} {key_text(r['candidate'])} ({MEASURES[r['metric']].title}): {int(r['too_short'])} of "
             f"{int(r['too_short'] + r['strata'])} settings, at least {int(r['steps_needed']):,} steps"
             for _, r in partly.iterrows()]
    return [f"Left out as {TOO_SHORT} (their timed work is within the jitter of a call): " + "; ".join(cells) + "."]


def spread_lines(found: pd.DataFrame) -> list[str]:
    """The run-to-run spread of one compiled program that the timed intervals hold, or that there was none."""
    timed = found[found["metric"].map(lambda m: MEASURES[m].timed) & (found["strata"] > 0)]
    if timed.empty:
        return []
    spread = timed["run_to_run"].dropna()
    if spread.empty:
        return [("No two runs of one compiled program resolve a step time (no seeds, no methods that compile "
                 "alike): the step-time intervals hold the repeats of each run, not the spread between runs.")]
    return [(f"Step-time intervals hold this sweep's run-to-run spread of one compiled program, "
             f"±{spread.max():.1%} (the log standard deviation of a run's mean beyond its repeats).")]


def verdict_legend(threshold: float = THRESHOLD) -> str:
    """Every word a verdict can be (`verdict` and `compare_axis`), defined in one line: none is left to guess."""
    words = [
        ("slower / faster, more / less, higher / lower", f"the whole CI lies beyond ±{threshold:.0%}"),
        (NO_DIFFERENCE, "the CI holds 1"),
        (f"within ±{threshold:.0%}", "the CI excludes 1 but lies inside the threshold: a change too small to matter"),
        ("inconclusive", "the CI straddles the threshold: it neither rules a change in nor out (more seeds narrow it)"),
        ("identical", "every run of both sides gave the same value"),
        (SAME_PROGRAM, "both sides ran one XLA program (one HLO fingerprint): their time ratio is drift between runs"),
        (TOO_SHORT, "the timed work is within the jitter of a call: use more steps"),
        ("not tested", "no interval can be drawn (one sample, or no spread between runs measured)"),
        (f"{MIN_SEEDS - 1} seeds: no CI, add seeds", f"a ratio that varies with the seed (quality, time to target) "
                                                     f"from fewer than {MIN_SEEDS} seeds: nothing is called"),
        ("not compared", "the sides trained in vectorized groups of other sizes"),
    ]
    return "Legend: " + "; ".join(f"**{word}**: {meaning}" for word, meaning in words) + "."


UNTUNED = "at one rate, not tuned"


def tuned_protocol(trials: int) -> str:
    """The protocol a tuned sweep's ratios hold under (hydra/sweeper=tuned, harness.analysis.tuning).

    >>> tuned_protocol(16)
    "at each method's best of 16 trials (validation)"
    """
    return f"at each method's best of {trials} trial{'' if trials == 1 else 's'} (validation)"


def render_findings(df: pd.DataFrame, found: pd.DataFrame, threshold: float = THRESHOLD,
                    protocol: str = UNTUNED) -> str:
    """The report's "Findings" section as markdown: one compact table per compared axis, then drift.
    `protocol` says under which tuning the ratios hold (`tuned_protocol`, or UNTUNED)."""
    parts = ["## Findings\n",
             f"**Protocol**: {protocol}. "
             f"Ratios to a baseline, geometric mean over the settings both were run with, and a {CONFIDENCE:.0%} "
             f"bootstrap CI (seeded) that resamples the runs (seeds, jobs run minutes apart), or the timed repeats "
             f"of a side's only run, and holds the sweep's run-to-run spread; quality and time to target pair runs "
             f"by seed and resample the seeds (from fewer than {MIN_SEEDS}: no CI, nothing called). A change is "
             f"called when the whole CI lies beyond ±{threshold:.0%}; \"(exact)\": bytes or counts, the same for "
             f"every seed; "
             f"\"{SAME_PROGRAM}\": both ran one XLA program, so their times differ by drift alone; "
             f"\"{TOO_SHORT}\": the timed work is within the jitter of a call.\n"]
    parts.append(verdict_legend(threshold) + "\n")
    for axis in dict.fromkeys(found["axis"]):
        parts.append(markdown_table(findings_table(found, axis)))
    lines = [*same_program_lines(found), *spread_lines(found), *floor_lines(found), *drift_lines(df)]
    parts += [line + "\n" for line in lines]
    if not len(found):
        parts.append("The sweep compares nothing: no config leaf but the seed takes two values among its ok runs.\n")
    return "\n".join(parts)


def headline(df: pd.DataFrame, found: pd.DataFrame) -> list[str]:
    """A few lines for the end of a multirun: each compared value's step time against its baseline, and drift."""
    step = step_time_column(df)
    lines = []
    for axis, g in found[found["metric"] == step].groupby("axis", sort=False):
        cells = [f"{r['candidate']} {r['estimate']} {r['verdict']}" for _, r in g.iterrows()]
        lines.append(f"{MEASURES[step].title}, {axis} / {g['baseline'].iloc[0]} (95% CI): " + "; ".join(cells))
    return lines + same_program_lines(found) + drift_lines(df)
