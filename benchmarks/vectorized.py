"""Vectorized sweeps vs one run at a time: the same learning rates, trained both ways in one process.

    python benchmarks/vectorized.py [--points 4 16 64] [--steps 1000] [--rounds 5]

For each sweep size it prints the median of `rounds` interleaved measurements of
- run time: N blocked calls of the compiled single-run program vs one call of the
  vmapped program (compiles excluded: both are compiled before timing);
- wall time: build + compile + run of the whole sweep, each way, from a cold
  in-process cache (a new step count per round keeps the programs distinct).
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from harness.core.batching import order_key
from harness.core.run import _placed, points, stack
from harness.core.train import build, train, train_many
from harness.jobs.compose import spec_from_overrides as spec_for


def one_by_one(specs, devices, steps):
    """Wall time (build + compile + run) and the run-only time of the N single runs."""
    t0 = time.perf_counter()
    run_s = 0.0
    for spec in specs:
        task = _placed(spec, devices)[0]
        data = task.data
        built = build(spec, task)
        compiled = train.lower(built.state, data.x_train, data.y_train, program=built.program, steps=steps).compile()
        t = time.perf_counter()
        jax.block_until_ready(compiled(built.state, data.x_train, data.y_train))
        run_s += time.perf_counter() - t
    return time.perf_counter() - t0, run_s


def vectorized(specs, devices, steps):
    t0 = time.perf_counter()
    tasks = [_placed(s, devices)[0] for s in specs]
    data = [task.data for task in tasks]
    built = [build(s, task) for s, task in zip(specs, tasks)]
    args = (stack([b.state for b in built]), stack([d.x_train for d in data]), stack([d.y_train for d in data]),
            stack([order_key(s.task.seed) for s in specs]))
    compiled = train_many.lower(*args, program=built[0].program, steps=steps).compile()
    t = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    return time.perf_counter() - t0, time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    devices = jax.devices("cpu")[:1]
    print(f"jax {jax.__version__}, {devices[0].device_kind}, {args.steps} steps per run, seed task, diffstate/adamw")
    warmup = points(spec_for("vectorize.lr=[0.001,0.01]", "train.steps=7"))  # JAX's own first-use costs
    one_by_one(warmup, devices, 7), vectorized(warmup, devices, 7)
    print(f"{'runs':>5} | {'run: 1-by-1 s':>13} {'vmapped s':>10} {'ratio':>6} | "
          f"{'wall: 1-by-1 s':>14} {'vmapped s':>10} {'ratio':>6}")
    for n in args.points:
        lrs = np.geomspace(1e-4, 1e-1, n).tolist()
        rows = []
        for r in range(args.rounds):
            steps = args.steps + r  # a fresh program each round: wall time includes a cold compile
            sweep = points(spec_for(f"vectorize.lr=[{','.join(map(str, lrs))}]", f"train.steps={steps}"))
            single_wall, single_run = one_by_one(sweep, devices, steps)
            vmap_wall, vmap_run = vectorized(sweep, devices, steps)
            rows.append((single_run, vmap_run, single_wall, vmap_wall))
        sr, vr, sw, vw = np.median(np.array(rows), axis=0)
        print(f"{n:>5} | {sr:>13.4f} {vr:>10.4f} {sr / vr:>5.1f}x | {sw:>14.3f} {vw:>10.3f} {sw / vw:>5.1f}x")


if __name__ == "__main__":
    main()
