"""What an extra job of a sweep costs beyond its training: Hydra, the harness's own work, W&B.

    python benchmarks/sweep_overhead.py [--jobs 16] [--rounds 3]

1. Whole commands, as a user runs them: `harness -m optimizer.lr=<1 value>` against
   `harness -m optimizer.lr=<N values>` (the seed study, 123 steps), with W&B disabled and
   offline, alternated per round; per extra job = (wall of N jobs - wall of 1 job) / (N - 1).
   Every job after the first is a compile-cache hit: the learning rate is a traced value.
2. The same per-job cost split in one process, for cache-hit jobs:
   - Hydra: the launcher's `load_sweep_config` of the job, as the harness patches it
     (harness/jobs/sweep_compose.py: one whole compose per choice of config groups, then the job's values
     applied to a copy);
   - harness: `harness.jobs.job.start` and `harness.jobs.app.run_job` with W&B disabled, less the time
     spent in the training program's own calls (warm-up, timed repeats, the 1-step dispatch probe),
     which is the training the job exists to do;
   - W&B: one offline run logged from the finished record (`harness.jobs.tracking.WandbSink`).
Targets: each extra cache-hit job of the whole command <= 250 ms with W&B disabled (issue 29);
harness <= 50 ms per cache-hit job, W&B offline <= 100 ms per run (issue 13).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def command_wall(lrs: list[float], tracker: str, results: Path) -> float:
    args = [sys.executable, "-m", "harness", "-m", "optimizer.lr=" + ",".join(map(str, lrs)), f"tracker={tracker}",
            "report=false", f"results_dir={results}"]
    start = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True)
    return time.perf_counter() - start


def training_calls_s(record: dict) -> float:
    """Seconds the job spent calling its compiled training programs (timed repeats, warm-up, dispatch probe)."""
    timing = record["timing"]
    call = timing["run_s_per_call"]["median"]
    dispatch = timing.get("dispatch") or {}
    return sum(timing["run_s"]) + timing["warmup"] * call + dispatch.get("calls", 0) * dispatch.get("one_step_call_s", 0)


def in_process_split(jobs: int, out: Path) -> dict[str, list[float]]:
    import jax
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode
    from omegaconf import open_dict

    from harness.core.config import WandbConfig
    from harness.jobs.app import run_job  # importing the app patches Hydra's load_sweep_config, as the CLI does
    from harness.jobs.compose import CONF_DIR
    from harness.jobs.job import start
    from harness.jobs.tracking import WandbSink

    split = {"hydra": [], "harness": [], "wandb": []}
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration("config", ["tracker=disabled"], run_mode=RunMode.MULTIRUN)
        for i in range(jobs + 1):
            began = time.perf_counter()
            cfg = loader.load_sweep_config(master, [f"optimizer.lr={1e-3 * (i + 1)}"])  # the launcher's compose
            hydra_s = time.perf_counter() - began
            hc = cfg.hydra  # as @hydra.main hands a job its config: Hydra's node apart
            with open_dict(cfg):
                del cfg["hydra"]
            with open_dict(hc):
                hc.runtime.output_dir = str(out / str(i))
            began = time.perf_counter()
            (record,) = run_job(start(cfg, hc, multirun=False))
            job_s = time.perf_counter() - began
            began = time.perf_counter()
            WandbSink(WandbConfig(mode="offline"))(record, out / str(i))
            wandb_s = time.perf_counter() - began
            if i == 0:
                continue  # the first job compiles and starts W&B's service: not a cache-hit job
            split["hydra"].append(hydra_s)
            split["harness"].append(job_s - training_calls_s(record))
            split["wandb"].append(wandb_s)
    jax.clear_caches()
    return split


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    os.environ.setdefault("WANDB_SILENT", "true")
    lrs = [round(1e-3 * (i + 1), 6) for i in range(args.jobs)]
    print(f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; {args.jobs}-job learning-rate sweeps of the seed "
          f"study, {args.rounds} rounds")
    with tempfile.TemporaryDirectory() as tmp:
        walls = {(tracker, n): [] for tracker in ("disabled", "offline") for n in (1, args.jobs)}
        for _ in range(args.rounds):
            for tracker in ("disabled", "offline"):
                for n in (1, args.jobs):
                    walls[tracker, n].append(command_wall(lrs[:n], tracker, Path(tmp) / "cli"))
        print("\nwhole commands (median over rounds)")
        for tracker in ("disabled", "offline"):
            one, many = (float(np.median(walls[tracker, n])) for n in (1, args.jobs))
            extra = (many - one) / (args.jobs - 1)
            verdict = f"  target <= 250 ms: {'ok' if extra <= 0.250 else 'MISS'}" if tracker == "disabled" else ""
            print(f"  W&B {tracker:<8}: 1 job {one:5.2f} s, {args.jobs} jobs {many:5.2f} s, "
                  f"per extra job {extra * 1e3:6.0f} ms{verdict}")
        split = in_process_split(args.jobs, Path(tmp) / "split")
    print(f"\nper cache-hit job, in one process (median [min, max] over {args.jobs} jobs)")
    targets = {"hydra": None, "harness": 0.050, "wandb": 0.100}
    for name, values in split.items():
        median = float(np.median(values))
        target = targets[name]
        verdict = "" if target is None else f"  target <= {target * 1e3:.0f} ms: {'ok' if median <= target else 'MISS'}"
        print(f"  {name:<8} {median * 1e3:6.1f} ms [{min(values) * 1e3:.1f}, {max(values) * 1e3:.1f}]{verdict}")


if __name__ == "__main__":
    main()
