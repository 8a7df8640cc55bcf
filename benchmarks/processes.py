"""Step time of one run across 2 processes x 1 device, 1 process x 2 devices and 1 x 1, and what each method sends.

    python benchmarks/processes.py [--steps 30] [--repeats 3] [--width 224]

Two workloads: the MLP of the scale study (experiments/scale.yaml, depth 3, a new 256-row batch
every step) and the digits CNN (experiments/digits.yaml, a 10-row batch). Each layout is one
`harness` command (W&B off); printed per workload and layout: the median run time per step, the
in-loop step time, and the collectives per step read from the compiled program (count and bytes of
the all-reduces). Then, per freeze method on the MLP with a frozen backbone and on 2 devices, the
all-reduce bytes per step, against full training: which method sends the fewest bytes.

The time a step spends in collectives is not separated here: compare the 1 x 2 and 2 x 1 rows
with the 1 x 1 row of the same workload (the same work, split, plus the collectives). The byte
counts are exact (from the program); the times are not, on a shared machine: state command,
date and machine with any figure you quote.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

LAYOUTS = {  # name: (overrides, XLA_FLAGS)
    "1 x 1": ([], ""),
    "1 x 2": (["device.count=2"], "--xla_force_host_platform_device_count=2"),
    "2 x 1": (["distributed.processes=2"], ""),
}
METHODS = ("diffstate", "jax_split", "wrt_only", "optax_partition", "stop_gradient", "reference")


def workloads(width: int) -> dict[str, list[str]]:
    return {
        "scale MLP": ["model=mlp", "model.depth=3", f"model.width={width}", "freeze=backbone", "task.n_train=2048",
                      "task.n_test=256", "train.batch_size=256"],
        "digits CNN": ["task=digits", "model=cnn", "freeze=backbone", "train.batch_size=10"],
    }


def harness(*overrides: str, xla_flags: str = "", multirun: bool = False) -> list[dict]:
    """The records of one `harness` command (W&B off), run in a temporary results dir."""
    with tempfile.TemporaryDirectory() as results:
        env = {**os.environ, "XLA_FLAGS": xla_flags}
        command = [sys.executable, "-m", "harness", *(["-m"] if multirun else []), "tracker=disabled", "report=false",
                   f"results_dir={results}", *overrides]
        proc = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        found = [json.loads(p.read_text()) for p in sorted(Path(results).rglob("result.json"))]
        if proc.returncode != 0 or not found:
            sys.exit(f"failed: {' '.join(command)}\n{proc.stderr[-2000:]}")
        return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--width", type=int, default=224, help="the scale MLP's width (64, 224, 704, 2240)")
    args = parser.parse_args()
    common = [f"train.steps={args.steps}", f"train.repeats={args.repeats}"]
    print(f"{'workload':12} {'layout':6} {'run s/step':>11} {'in-loop s/step':>15} {'all-reduces':>11} "
          f"{'bytes/step':>10}")
    for name, overrides in workloads(args.width).items():
        for layout, (extra, flags) in LAYOUTS.items():
            (record,) = harness(*common, *overrides, *extra, xla_flags=flags)
            timing = record["timing"]
            sent = timing["collectives"]["per_step"]["all-reduce"]
            print(f"{name:12} {layout:6} {timing['run_s_per_step']['median']:11.3g} "
                  f"{timing.get('in_loop_s_per_step', float('nan')):15.3g} {sent['count']:11d} "
                  f"{timing['collectives']['bytes_per_step']:10d}")
    print(f"\nall-reduce bytes per step, scale MLP (width {args.width}) on 2 devices:")
    mlp = [o for o in workloads(args.width)["scale MLP"] if not o.startswith("freeze=")]
    for freeze in ("backbone", "none"):
        found = harness("train.steps=2", "train.repeats=1", "train.measure_dispatch=false", *mlp, f"freeze={freeze}",
                        "device.count=2", f"method={','.join(METHODS)}", multirun=True,
                        xla_flags=LAYOUTS["1 x 2"][1])
        for record in sorted(found, key=lambda r: r["timing"]["collectives"]["all_reduce_bytes_per_step"]):
            print(f"  freeze={freeze:8} method={record['config']['method']['name']:16} "
                  f"{record['timing']['collectives']['all_reduce_bytes_per_step']:>10d} bytes, trainable "
                  f"{record['parameters']['trainable']} parameters")


if __name__ == "__main__":
    main()
