"""What a single run prints: its status and numbers in a few aligned lines, before the paths.

Pure formatting of a finished record (the dict harness.jobs.app writes): no JAX.

>>> record = {"status": "ok", "config": {"name": "default", "method": {"name": "diffstate"}},
...           "metrics": {"train": {"mse": 3.1}, "test": {"mse": 3.2692759}, "slope": 2.0, "intercept": -0.1206},
...           "drift": {"l2": 0.0, "max_abs": 0.0, "unchanged": True}}
>>> print("\\n".join(run_lines(record)))
ok  default · method=diffstate
  MSE            train 3.1  test 3.2692759
  fitted line    slope 2  intercept -0.1206
  frozen drift   L2 0, max |Δ| 0: bitwise unchanged
"""

from __future__ import annotations

from typing import Any

from harness.core.fields import axes
from harness.core.metrics import METRICS

LABEL = 15  # width of the label column


def _g(value: Any) -> str:
    """Eight significant digits: enough to compare with a seed script's printout."""
    return "—" if value is None else f"{value:.8g}" if isinstance(value, (int, float)) else str(value)


def _time(seconds: float | None) -> str:
    """1.6e-06 -> '1.60 µs', 0.21 -> '210 ms', 2.5 -> '2.50 s'."""
    if seconds is None:
        return "—"
    for scale, unit in ((1, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns")):
        if abs(seconds) >= scale or unit == "ns":
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds:g} s"


def _line(label: str, text: str) -> str:
    return f"  {label:<{LABEL}}{text}"


def run_lines(record: dict[str, Any]) -> list[str]:
    """Status and the run's axes, then its loss and main metrics, fitted line, frozen drift and time, one aligned
    line each."""
    values = axes(record)
    shown = " ".join(f"{k}={values[k]}" for k in ("task", "model", "method", "freeze", "optimizer", "lr", "seed")
                     if values.get(k) is not None)
    lines = [f"{record.get('status', '?')}  {values.get('experiment') or ''}" + (f" · {shown}" if shown else "")]
    metrics = record.get("metrics") or {}
    train, test = metrics.get("train") or {}, metrics.get("test") or {}
    for metric in METRICS.values():
        if (metric.loss or metric.main) and (metric.name in train or metric.name in test):
            lines.append(_line(metric.title, f"train {_g(train.get(metric.name))}  test {_g(test.get(metric.name))}"))
    if "slope" in metrics:
        line = f"slope {_g(metrics.get('slope'))}  intercept {_g(metrics.get('intercept'))}"
        lines.append(_line("fitted line", line))
    target = record.get("target") or {}
    if target.get("value") is not None:
        if target.get("reached"):
            text = (f"{target['metric']} {_g(target['value'])} at step {target['step']}: "
                    f"{_time(target.get('time_s'))} training, {_time(target.get('time_with_compile_s'))} with compile")
        else:
            text = f"{target['metric']} {_g(target['value'])} {target.get('note')}"
        lines.append(_line("target", text))
    forgetting = record.get("forgetting") or {}
    if forgetting.get("metric"):
        name = forgetting["metric"]
        lines.append(_line("forgetting", f"source test {name} {_g(forgetting['before'].get(name))} before, "
                                         f"{_g(forgetting['after'].get(name))} after"))
    drift = record.get("drift")
    if drift:
        state = "bitwise unchanged" if drift.get("unchanged") else "MOVED"
        lines.append(_line("frozen drift", f"L2 {_g(drift.get('l2'))}, max |Δ| {_g(drift.get('max_abs'))}: {state}"))
    divergence = record.get("divergence") or {}
    if divergence.get("first_nonfinite_step") is not None:
        lines.append(_line("diverged", f"non-finite loss from step {divergence['first_nonfinite_step']}"))
    timing = record.get("timing") or {}
    if timing:
        repeats = len(timing.get("run_s") or [])
        step = timing.get("in_loop_s_per_step")
        per_call = (timing.get("run_s_per_step") or {}).get("median")
        flagged = bool((record.get("plausibility") or {}).get("warning"))
        lines.append(_line("time", f"compile {_time(timing.get('compile_s'))} ({timing.get('compile_source')}); "
                                   + (f"step {_time(step)} in the loop"
                                      + (" (NOT PLAUSIBLE, below), " if flagged else ", ")
                                      if step is not None else "step ")
                                   + f"{_time(per_call)} per call / steps (median of {repeats})"))
        lines += plausibility_lines(record)
    return lines


def plausibility_lines(record: dict[str, Any]) -> list[str]:
    """The time line's verdict, printed under it: a step time faster than the machine can compute is flagged
    with why and what to change (only result.json said so before, and a newcomer read the hoisted step as
    a saving); a full-batch run with frozen parameters gets the caveat; else how far below the peak it ran.

    >>> print(*plausibility_lines({"plausibility": {"warning": "faster than the peak (5.7x); use a batch"}}))
      NOT PLAUSIBLE  faster than the peak (5.7x); use a batch: do not cite this step time
    >>> plausibility_lines({"plausibility": {"peak_fraction": 0.0123, "limit": 1.5}})
    ['  plausible      0.0123x the calibrated peak (flagged above 1.5x)']
    """
    verdict = record.get("plausibility") or {}
    if verdict.get("warning"):
        return [_line("NOT PLAUSIBLE", f"{verdict['warning']}: do not cite this step time")]
    lines = []
    if verdict.get("peak_fraction") is not None:
        lines.append(_line("plausible", f"{verdict['peak_fraction']:.3g}x the calibrated peak "
                                        f"(flagged above {verdict.get('limit')}x)"))
    if verdict.get("note"):
        lines.append(_line("caveat", verdict["note"]))
    return lines
