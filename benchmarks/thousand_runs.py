"""A thousand runs from the command line: the seed study's 40 x 25 learning-rate x seed grid, grouped and job by job.

    python benchmarks/thousand_runs.py [--lrs 40] [--seeds 25] [--alone-points 1000] [--max-points 256]

Times whole commands as a user runs them, end to end (start-up, Hydra, compiles, training,
records, W&B, the sweep's summary; `report=false`: the report is a separate step):
  - grouped: `harness -m hydra/sweeper=vectorized optimizer.lr=... task.seed=...`, with W&B disabled and
    offline: jobs of up to `vectorize.max_points` points trained as one vmapped program, a record and a
    W&B run per point;
  - alone: the same grid with `hydra/sweeper=shuffled`, a job per point. `--alone-points N` < the grid
    times the first N points and scales the time to the grid (printed as an estimate).
Each command's records are counted (every point ok) and, offline, every W&B run file is complete.
Targets (issue 22): grouped, W&B offline <= 60 s and >= 5x faster than alone; W&B disabled <= 20 s;
<= 50 ms of a point's wall time, amortized.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def command(args: list[str], results: Path) -> tuple[float, list[dict]]:
    """(wall seconds, records) of `harness ARGS` run as a user runs it."""
    results.mkdir(parents=True)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "harness", *args, "report=false", f"results_dir={results}"],
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"failed: harness {' '.join(args)}\n{proc.stderr[-3000:]}")
    return wall, [json.loads(p.read_text()) for p in results.rglob("result.json")]


def checked(recs: list[dict], points: int, tracker: str) -> str:
    ok = sum(r["status"] == "ok" for r in recs)
    complete = sum(bool((r.get("wandb") or {}).get("file_complete")) for r in recs)
    if ok != points or (tracker == "offline" and complete != points):
        sys.exit(f"expected {points} ok records (and W&B runs), got {ok} ok, {complete} complete W&B runs")
    return f"{ok} ok records" + (f", {complete} complete W&B runs" if tracker == "offline" else "")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lrs", type=int, default=40)
    parser.add_argument("--seeds", type=int, default=25)
    parser.add_argument("--alone-points", type=int, default=None, help="points timed job by job (default: all)")
    parser.add_argument("--max-points", type=int, default=None, help="vectorize.max_points (default: the config's)")
    args = parser.parse_args(argv)
    lrs = [round(0.001 * (i + 1), 6) for i in range(args.lrs)]
    seeds = list(range(args.seeds))
    points = len(lrs) * len(seeds)
    alone_lrs = lrs[: max(1, min(args.alone_points or points, points) // len(seeds))]
    alone_points = len(alone_lrs) * len(seeds)
    grid = [f"optimizer.lr={','.join(map(str, lrs))}", f"task.seed={','.join(map(str, seeds))}"]
    grouping = [f"vectorize.max_points={args.max_points}"] if args.max_points else []
    os.environ["WANDB_SILENT"] = "true"
    print(f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; the seed study, {len(lrs)} x {len(seeds)} = "
          f"{points} points (learning rate x seed), 123 steps each")
    walls = {}
    with tempfile.TemporaryDirectory() as tmp:
        for tracker in ("disabled", "offline"):
            wall, recs = command(["-m", "hydra/sweeper=vectorized", *grid, *grouping, f"tracker={tracker}"],
                                 Path(tmp) / f"grouped-{tracker}")
            jobs = len({r["job"]["num"] for r in recs})
            walls["grouped", tracker] = wall
            print(f"  grouped, W&B {tracker:<8}: {wall:6.1f} s, {wall / points * 1e3:5.1f} ms a point "
                  f"({jobs} jobs; {checked(recs, points, tracker)})", flush=True)
        for tracker in ("disabled", "offline"):
            alone_grid = [f"optimizer.lr={','.join(map(str, alone_lrs))}", grid[1]]
            wall, recs = command(["-m", "hydra/sweeper=shuffled", *alone_grid, f"tracker={tracker}"],
                                 Path(tmp) / f"alone-{tracker}")
            scaled = wall * points / alone_points
            walls["alone", tracker] = scaled
            what = f"{wall:6.1f} s for {alone_points} points, scaled" if alone_points < points else ""
            print(f"  alone,   W&B {tracker:<8}: {scaled:6.1f} s{' (estimate: ' + what + ')' if what else ''}, "
                  f"{scaled / points * 1e3:5.1f} ms a point ({checked(recs, alone_points, tracker)})", flush=True)
    print("\ngrouped vs alone (targets: offline <= 60 s and >= 5x; disabled <= 20 s; <= 50 ms a point)")
    for tracker, limit in (("offline", 60.0), ("disabled", 20.0)):
        grouped, alone = walls["grouped", tracker], walls["alone", tracker]
        met = [grouped <= limit, grouped / points <= 0.050] + ([alone / grouped >= 5] if tracker == "offline" else [])
        verdict = "ok" if all(met) else "MISS"
        print(f"  W&B {tracker:<8}: {grouped:6.1f} s vs {alone:6.1f} s, {alone / grouped:5.1f}x faster, "
              f"{grouped / points * 1e3:5.1f} ms a point: {verdict}")


if __name__ == "__main__":
    main()
