"""Harness loop vs plain JAX: is the nnx program as fast as the same training written by hand?

    python benchmarks/loop_vs_reference.py [--steps 123 10000 100000] [--rounds N] [--budget S]

Variants, all training the seed task (nnx.Linear(1, 1), kernel frozen, AdamW, 55 points):

- harness:           `method=diffstate` via `harness.core.train.build` + `harness.core.train.train`,
                     compiled ahead of time as `harness.core.timing.compile_and_time` does.
- reference:         `method=reference` (harness/core/reference.py: a dict of arrays, a jnp
                     forward, optax), its scan under a bare `jax.jit`, called the normal way.
- harness(ref body): the reference step through the harness's AOT `train`. It splits a
                     gap in two: harness / harness(ref body) is the nnx step body, and
                     harness(ref body) / reference is the call path (AOT vs jit).
- reference again:   a second bare `jax.jit` of the reference: an A/A control, showing how
                     far from 1 a ratio of two identical programs lands on this machine.

One process. Everything is compiled and warmed up before any clock starts (compile is
never timed). Each round times every variant at every step count (and at 1 step, and
two empty jitted functions); within a round each repeat calls every variant once, in
a fresh random order, each call `block_until_ready`. Ratios are taken side by side:
per round, the median over its repeats of (harness call / reference call) from the
same repeat, so load from other tenants of a shared machine cancels. The summary is
the median over rounds, with min/max and IQR. Per-step times are median call / steps.

Per call: the whole call at the shortest step count, the harness's compiled call vs
the bare jit call (target: within 2x); a 1-step call of each (dispatch plus one step);
and the floor, a jitted function computing nothing over the same arguments.

Last, the compiled HLO: the ops XLA runs per scan step in each program, and those
only one of them has. Targets (from the issue): median ratio <= 1.05 at 10k and 100k
steps; per-call time within 2x of a bare jax.jit call at 123 steps. The default run
takes ~2-3 minutes on 2 busy cores; `--rounds` and `--budget` (seconds per variant,
round and step count) trade time for resolution.
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import platform
import re
import time
from typing import Callable

import jax
import numpy as np

from harness.core.program import Built
from harness.core.tasks import make_task
from harness.core.train import build, train
from harness.jobs.compose import spec_from_overrides as seed_spec

HARNESS, REFERENCE, HARNESS_REF, AGAIN = "harness", "reference", "harness(ref body)", "reference again"


def scan_loop(state, x, y, *, program, steps: int):
    """The training loop written the plain way: lax.scan over `program.step`, emitting the loss only."""

    def body(state, _):
        state, metrics = program.step(state, x, y)
        return state, metrics["mse"]

    return jax.lax.scan(body, state, length=steps)


def harness_call(built: Built, x, y, steps: int) -> tuple[Callable, object]:
    """(call, compiled): `harness.core.train.train` compiled ahead of time, called as the harness calls it."""
    compiled = train.lower(built.state, x, y, program=built.program, steps=steps).compile()
    return functools.partial(compiled, built.state, x, y), compiled


def bare_jit_call(built: Built, x, y, steps: int) -> Callable:
    """The reference's scan under a plain jax.jit: compiled by a first call, dispatched by jit's C++ path."""
    jitted = jax.jit(functools.partial(scan_loop, program=built.program, steps=steps))
    jax.block_until_ready(jitted(built.state, x, y))
    return functools.partial(jitted, built.state, x, y)


def timed(call: Callable) -> float:
    """Seconds for one call, until its outputs are ready."""
    t = time.perf_counter()
    jax.block_until_ready(call())
    return time.perf_counter() - t


def interleaved(calls: dict[str, Callable], repeats: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Seconds per call of each: every repeat calls all of them once, in a fresh random order.

    Side by side, so load from other tenants hits them alike; shuffled, so no variant
    always runs first, or always right after itself (warm caches).
    """
    samples = collections.defaultdict(list)
    names = list(calls)
    for _ in range(repeats):
        for i in rng.permutation(len(names)):
            samples[names[i]].append(timed(calls[names[i]]))
    return {name: np.asarray(s) for name, s in samples.items()}


def repeats_for(call: Callable, budget_s: float, lo: int, hi: int) -> int:
    """How many calls fit in `budget_s` (per variant per round), within [lo, hi]."""
    return int(np.clip(budget_s / min(timed(call) for _ in range(3)), lo, hi))


def summary(values: list[float]) -> dict[str, float]:
    """Median, min, max and IQR of per-round values."""
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return {"median": median, "min": min(values), "max": max(values), "iqr": q3 - q1}


def body_ops(compiled) -> collections.Counter:
    """Ops in the compiled scan (while) body, by kind and output type: what XLA runs per step."""
    text = compiled.as_text()
    bodies = re.findall(r"while\(.*?body=(%[\w.\-]+)", text)
    ops = collections.Counter()
    for body in bodies:
        block = re.search(re.escape(body) + r" \(.*?\n(.*?)\n}", text, re.S).group(1)
        for line in block.splitlines():
            m = re.match(r"\s*(?:ROOT )?%\S+ = (\S+?)(?:\{[^}]*\})? ([\w\-]+)\(", line)
            if m and m.group(2) not in ("parameter", "get-tuple-element", "constant", "tuple", "bitcast"):
                kind = m.group(2)
                if kind == "fusion":
                    kind += ":" + re.search(r"calls=%([A-Za-z_\-]+)", line).group(1).rstrip("_")
                ops[f"{kind} -> {m.group(1)}"] += 1
    return ops


def compile_all(harness: Built, reference: Built, x, y, steps_list: list[int]):
    """{steps: {variant: call}} and {(steps, variant): compiled}, everything compiled before any clock starts."""
    calls, compiled = {}, {}
    for n in sorted({1, *steps_list}):
        calls[n] = {}
        calls[n][HARNESS], compiled[n, HARNESS] = harness_call(harness, x, y, n)
        calls[n][REFERENCE] = bare_jit_call(reference, x, y, n)
        calls[n][HARNESS_REF], compiled[n, HARNESS_REF] = harness_call(reference, x, y, n)
        calls[n][AGAIN] = bare_jit_call(reference, x, y, n)  # A/A control: the resolution of this measurement
    # Floors: the cost of a call that computes nothing, returning every state array or one.
    floors = {"empty jit -> state": jax.jit(lambda s, x, y: s), "empty jit -> 1 array": jax.jit(lambda s, x, y: s[0])}
    calls[0] = {name: functools.partial(f, reference.state, x, y) for name, f in floors.items()}
    return calls, compiled


def measure(calls: dict[int, dict[str, Callable]], rounds: int, budget_s: float):
    """{(steps, variant): [per round: seconds of each call]} and the calls per round used."""
    for per_n in calls.values():  # warm-up
        for call in per_n.values():
            for _ in range(3):
                timed(call)
    repeats = {n: repeats_for(next(iter(per_n.values())), budget_s, 5, 400) for n, per_n in calls.items()}
    samples = collections.defaultdict(list)
    rng = np.random.default_rng(0)
    for _ in range(rounds):
        for n, per_n in calls.items():
            for name, seconds in interleaved(per_n, repeats[n], rng).items():
                samples[n, name].append(seconds)
    return samples, repeats


def round_medians(samples: dict, key) -> np.ndarray:
    """Median seconds per call, one per round."""
    return np.asarray([np.median(s) for s in samples[key]])


def round_ratios(samples: dict, a, b) -> np.ndarray:
    """a/b per round: the median over that round's side-by-side call pairs (load shared within a pair)."""
    return np.asarray([np.median(sa / sb) for sa, sb in zip(samples[a], samples[b])])


def report_steps(samples: dict, steps_list: list[int], rounds: int) -> None:
    ratio = {n: round_ratios(samples, (n, HARNESS), (n, REFERENCE)) for n in steps_list}
    print("\nharness/reference ratio per round (median of the round's side-by-side call pairs)")
    print("round " + "".join(f"{n:>12,}" for n in steps_list))
    for r in range(rounds):
        print(f"{r:>5} " + "".join(f"{ratio[n][r]:>12.3f}" for n in steps_list))

    print("\nper-step time, us (median over rounds)  |  harness/reference over rounds       |  split of the gap  | A/A")
    print(f"{'steps':>8} {'harness':>9} {'reference':>9} {'h(ref)':>9}  |  {'median':>6} {'min':>6} {'max':>6} "
          f"{'IQR':>6} target  |  {'body':>6} {'path':>6}     | {'ref/ref':>7}")
    for n in steps_list:
        us = {name: np.median(round_medians(samples, (n, name))) / n * 1e6
              for name in (HARNESS, REFERENCE, HARNESS_REF)}
        s = summary(list(ratio[n]))
        target = "  -  " if n < 10_000 else ("ok" if s["median"] <= 1.05 else "MISS")
        body, path, again = (np.median(round_ratios(samples, (n, a), (n, b)))
                             for a, b in ((HARNESS, HARNESS_REF), (HARNESS_REF, REFERENCE), (REFERENCE, AGAIN)))
        print(f"{n:>8,} {us[HARNESS]:>9.3f} {us[REFERENCE]:>9.3f} {us[HARNESS_REF]:>9.3f}  |  {s['median']:>6.3f} "
              f"{s['min']:>6.3f} {s['max']:>6.3f} {s['iqr']:>6.3f} {target:>6}  |  {body:>6.3f} {path:>6.3f}     | "
              f"{again:>7.3f}")
    print("  target: median ratio <= 1.05 at >= 10,000 steps")
    print("  body = harness / harness(ref body): nnx step vs plain step, same AOT call (median over rounds)")
    print("  path = harness(ref body) / reference: AOT compiled call vs bare jax.jit, same step")
    print("  A/A = reference / reference again (a second jax.jit of the same scan): ratios this far from 1 are noise")


def report_calls(samples: dict, short: int, n_state: int) -> None:
    us = {key: np.median(round_medians(samples, key)) * 1e6 for key in samples}
    ratio = np.median(round_ratios(samples, (short, HARNESS), (short, REFERENCE)))
    print("\nper call, us (median over rounds)")
    print(f"  {short:,}-step call: harness compiled {us[short, HARNESS]:.1f}, bare jax.jit {us[short, REFERENCE]:.1f}, "
          f"ratio {ratio:.3f} (target <= 2: {'ok' if ratio <= 2 else 'MISS'}); harness(ref body) "
          f"{us[short, HARNESS_REF]:.1f}")
    one = np.median(round_ratios(samples, (1, HARNESS), (1, REFERENCE)))
    print(f"  1-step call (dispatch + one step): harness compiled {us[1, HARNESS]:.1f}, bare jax.jit "
          f"{us[1, REFERENCE]:.1f}, ratio {one:.3f}; harness(ref body) {us[1, HARNESS_REF]:.1f}")
    if short > 1:
        loop = {name: (us[short, name] - us[1, name]) / (short - 1) for name in (HARNESS, REFERENCE)}
        print(f"  in-loop time per step of the {short}-step call, (call - 1-step call) / {short - 1}: "
              f"harness {loop[HARNESS]:.3f}, reference {loop[REFERENCE]:.3f}")
    print(f"  floor, a jitted function computing nothing over the same {n_state} + 2 arguments: "
          f"{us[0, 'empty jit -> state']:.1f} returning the {n_state} state arrays, "
          f"{us[0, 'empty jit -> 1 array']:.1f} returning one")


def report_hlo(compiled: dict, short: int) -> None:
    ops = {name: body_ops(compiled[short, name]) for name in (HARNESS, HARNESS_REF)}
    print("\nops per step in the compiled scan body: " + ", ".join(f"{k} {sum(v.values())}" for k, v in ops.items()))
    print(f"  only in harness:   {dict(ops[HARNESS] - ops[HARNESS_REF]) or 'none'}")
    print(f"  only in reference: {dict(ops[HARNESS_REF] - ops[HARNESS]) or 'none'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[123, 10_000, 100_000])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--budget", type=float, default=0.7, help="seconds per variant, round and step count")
    args = parser.parse_args(argv)
    steps_list = sorted(set(args.steps))

    cpu = jax.devices("cpu")[0]
    print(f"jax {jax.__version__}, {os.cpu_count()} cores, {cpu}, load {os.getloadavg()[0]:.2f}; "
          f"python {platform.python_version()}")
    with jax.default_device(cpu):
        task = make_task(seed_spec().task)
        x, y = jax.device_put((task.data.x_train, task.data.y_train), cpu)
        harness = build(seed_spec("method=diffstate"), task)
        reference = build(seed_spec("method=reference"), task)
        t0 = time.perf_counter()
        calls, compiled = compile_all(harness, reference, x, y, steps_list)
        t1 = time.perf_counter()
        samples, repeats = measure(calls, args.rounds, args.budget)
        t2 = time.perf_counter()
    print(f"compiled {sum(map(len, calls.values()))} programs in {t1 - t0:.1f}s (untimed); {args.rounds} rounds in "
          f"{t2 - t1:.0f}s, calls per variant per round: " + ", ".join(f"{repeats[n]} at {n:,}" for n in steps_list))
    report_steps(samples, steps_list, args.rounds)
    report_calls(samples, steps_list[0], len(reference.state))
    report_hlo(compiled, steps_list[0])


if __name__ == "__main__":
    main()
