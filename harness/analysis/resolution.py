"""The noise floor of a timed measure: whether a run's timing resolves the work it stands for.

A timed training holds the steps' work and a fixed cost per compiled call (dispatch and
argument handling, ~40 µs on this 2-core CPU). The in-loop step time is a difference of
calls, (N-step training − C 1-step calls) / (N − C), so the fixed cost cancels only to
within its jitter, and that jitter differs between processes a minute apart where the
repeats of one process do not show it: at the seed scale, 123 steps of ~0.3 µs are ~30 µs
of work beside a ~40 µs call, and two identical sweeps read ×0.36 apart. The run's own
1-step calls measure the jitter: their interquartile range, never less than the clock's
resolution. A measure resolves a change of ±threshold when its work is at least
2 / threshold times that jitter (the jitter then moves it by at most half the smallest
change a verdict calls); below that, comparisons say "too short to resolve: use more
steps (at least N)" and never slower, faster or a regression. N is a lower bound: the
work grows at most in proportion to the steps beyond the per-call cost.

Records written before the 1-step calls' spread was recorded are held to the rule they
were judged by then: every timed training must outlast its 1-step calls.

>>> run = {"run_s": "[7.0e-05, 7.1e-05, 6.9e-05]", "one_step_call_s": 4.0e-05, "one_step_call_iqr_s": 1.5e-06,
...        "steps": 123}
>>> floor(run, "in_loop_s_per_step", 0.05), floor(run, "run_s_per_step", 0.05)
(Floor(resolved=False, steps=250), Floor(resolved=True, steps=None))
>>> too_short(Floor(False, 250))
'too short to resolve: use more steps (at least 250)'
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from harness.analysis.frames import nan_to_none

TOO_SHORT = "too short to resolve"
# Measures a noise floor applies to: those read off a clock, with what each one's work is.
IN_LOOP, PER_CALL = "in_loop_s_per_step", "run_s_per_step"


@dataclass(frozen=True)
class Floor:
    """Whether a measure resolves a change of the threshold, and else the step count that would (a lower bound)."""

    resolved: bool
    steps: int | None = None


RESOLVED = Floor(True)


def timed_calls(run: Mapping) -> tuple[list[float], float | None, int]:
    """(every timed training's seconds, the 1-step call's seconds, compiled calls per training) of a run row."""
    repeats = nan_to_none(run.get("run_s"))
    repeats = json.loads(repeats) if isinstance(repeats, str) else []
    return repeats, nan_to_none(run.get("one_step_call_s")), nan_to_none(run.get("timing_chunks")) or 1


def jitter_s(run: Mapping) -> float:
    """The spread of the run's 1-step calls (a call with almost no work), at least its clock's resolution."""
    clock = nan_to_none(run.get("timer_resolution_s")) or time.get_clock_info("perf_counter").resolution
    return max(nan_to_none(run.get("one_step_call_iqr_s")) or 0.0, clock)


def _round_up(steps: float, multiple: int) -> int:
    """`steps` up to two significant digits, then to a multiple of `multiple` (steps per chunk of a chunked run).

    >>> _round_up(244.1, 1), _round_up(1201, 1), _round_up(244.1, 100)
    (250, 1300, 300)
    """
    magnitude = 10 ** max(0, math.floor(math.log10(max(steps, 1))) - 1)
    steps = math.ceil(steps / magnitude) * magnitude
    return math.ceil(steps / multiple) * multiple


def floor(run: Mapping, column: str, threshold: float) -> Floor:
    """Whether `run`'s timing resolves a ±`threshold` change of `column` (IN_LOOP or PER_CALL); any other is."""
    repeats, one_step, chunks = timed_calls(run)
    steps = nan_to_none(run.get("steps"))
    if column not in (IN_LOOP, PER_CALL) or not repeats or not steps:
        return RESOLVED
    if column == IN_LOOP:
        if one_step is None or steps <= chunks:
            return RESOLVED  # no in-loop time to judge
        work, timed_steps, fixed_steps = float(np.median(repeats)) - chunks * one_step, steps - chunks, chunks
    else:
        work, timed_steps, fixed_steps = float(np.median(repeats)), steps, 0
    jitter = jitter_s(run)
    need = 2 * jitter / threshold
    if nan_to_none(run.get("one_step_call_iqr_s")) is None:  # no spread recorded: work in every repeat will do
        if min(repeats) - fixed_steps * (one_step or 0.0) > 0:
            return RESOLVED
    elif work > 0 and work >= need:
        return RESOLVED
    return Floor(False, _round_up(fixed_steps + timed_steps * need / max(work, jitter),
                                   steps // chunks if chunks > 1 else 1))


def floor_of(runs: Iterable[Mapping], column: str, threshold: float) -> Floor:
    """The floor of several runs: resolved when every one is, else the most steps any of them needs."""
    below = [f for run in runs if not (f := floor(run, column, threshold)).resolved]
    return Floor(False, max(f.steps for f in below)) if below else RESOLVED


def too_short(found: Floor) -> str:
    """The verdict of a measure below its noise floor."""
    return f"{TOO_SHORT}: use more steps (at least {found.steps:,})"
