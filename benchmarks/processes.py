"""Step time of one run across 2 processes x 1 device, 1 process x 2 devices and 1 x 1; the time share of the
collectives; and what each method sends.

    python benchmarks/processes.py [--rounds 3] [--steps 30] [--repeats 3] [--width 224]
    python benchmarks/processes.py --workload mlp --workload mlp-all   # these two only; no per-method list

Three workloads: the MLP of the scale study (experiments/scale.yaml, depth 3, a new 256-row batch
every step) with its backbone frozen (`mlp`) and with nothing frozen (`mlp-all`: what the bytes a
frozen backbone does not send cost), and the digits CNN (experiments/digits.yaml, a 10-row batch,
its backbone frozen: `cnn`). Each layout is one `harness` command (W&B off), run `--rounds` times,
the layouts interleaved within each round; printed per workload and layout: the median over rounds
of the run time per step (and its range), and the collectives per step read from the compiled
program (count and bytes of the all-reduces). The default run takes about 20 minutes on 2 cores.

The collectives' time share: layout "2 x 1 alone" is the 2 x 1 run with its collectives removed,
two independent one-process runs started together, each on half the batch, so each process
does the same work per step as in 2 x 1 except the gradient's all-reduce (and the barriers, outside
the timed calls). Its step time is the slower of the two. Share = 1 - alone / (2 x 1), per round.

Then, per freeze method on the MLP with a frozen backbone and on 2 devices, the all-reduce bytes
per step, against full training: which method sends the fewest bytes. The byte counts are exact
(from the program); the times are not, on a shared machine: state command, date and machine with
any figure you quote.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

LAYOUTS = {  # name: (overrides, XLA_FLAGS)
    "1 x 1": ([], ""),
    "1 x 2": (["device.count=2"], "--xla_force_host_platform_device_count=2"),
    "2 x 1": (["distributed.processes=2"], ""),
}
ALONE = "2 x 1 alone"  # the 2 x 1 run without its collectives: two independent processes, half the batch each
METHODS = ("diffstate", "jax_split", "wrt_only", "optax_partition", "stop_gradient", "reference")


def workloads(width: int) -> dict[str, list[str]]:
    """Name: overrides. The MLP twice, its backbone frozen and nothing frozen: what the bytes not sent save."""
    mlp = ["model=mlp", "model.depth=3", f"model.width={width}", "task.n_train=2048", "task.n_test=256",
           "train.batch_size=256"]
    return {
        "mlp": [*mlp, "freeze=backbone"],
        "mlp-all": [*mlp, "freeze=none"],
        "cnn": ["task=digits", "model=cnn", "freeze=backbone", "train.batch_size=10"],
    }


def command(*overrides: str, results: str, multirun: bool = False) -> list[str]:
    return [sys.executable, "-m", "harness", *(["-m"] if multirun else []), "tracker=disabled", "report=false",
            f"results_dir={results}", *overrides]


def harness(*overrides: str, xla_flags: str = "", multirun: bool = False, together: int = 1) -> list[dict]:
    """The records of one `harness` command (W&B off), run in a temporary results dir; `together` copies of it
    started at once, each in its own dir (their records in start order)."""
    with tempfile.TemporaryDirectory() as results:
        env = {**os.environ, "XLA_FLAGS": xla_flags}
        commands = [command(*overrides, results=f"{results}/{i}", multirun=multirun) for i in range(together)]
        procs = [subprocess.Popen(c, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for c in commands]
        found = []
        for i, (c, proc) in enumerate(zip(commands, procs)):
            _, err = proc.communicate()
            records = [json.loads(p.read_text()) for p in sorted(Path(results, str(i)).rglob("result.json"))]
            if proc.returncode != 0 or not records:
                sys.exit(f"failed: {' '.join(c)}\n{err[-2000:]}")
            found += records
        return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--width", type=int, default=224, help="the scale MLP's width (64, 224, 704, 2240)")
    parser.add_argument("--workload", action="append", choices=list(workloads(0)),
                        help="one of the workloads (repeatable; default: all): mlp (the scale MLP, its backbone "
                             "frozen), mlp-all (the same, nothing frozen), cnn (the digits CNN, its backbone frozen)")
    args = parser.parse_args()
    chosen = {name: o for name, o in workloads(args.width).items() if name in (args.workload or workloads(0))}
    common = [f"train.steps={args.steps}", f"train.repeats={args.repeats}"]
    times: dict[tuple[str, str], list[float]] = {}
    sent: dict[tuple[str, str], tuple[int, int]] = {}
    for _ in range(args.rounds):
        for name, overrides in chosen.items():
            for layout, (extra, flags) in LAYOUTS.items():
                (record,) = harness(*common, *overrides, *extra, xla_flags=flags)
                times.setdefault((name, layout), []).append(record["timing"]["run_s_per_step"]["median"])
                per_step = record["timing"]["collectives"]
                sent[name, layout] = (per_step["per_step"]["all-reduce"]["count"], per_step["bytes_per_step"])
            batch = int(next(o for o in overrides if o.startswith("train.batch_size=")).split("=")[1])
            halves = harness(*common, *[o for o in overrides if not o.startswith("train.batch_size=")],
                             f"train.batch_size={batch // 2}", together=2)
            times.setdefault((name, ALONE), []).append(max(r["timing"]["run_s_per_step"]["median"] for r in halves))
            sent[name, ALONE] = (0, 0)
    print(f"{args.rounds} rounds, layouts interleaved; run time per step: median over rounds [min, max]\n")
    print(f"{'workload':8} {'layout':11} {'run s/step':>11} {'range':>22} {'all-reduces':>11} {'bytes/step':>10}")
    for name in chosen:
        for layout in (*LAYOUTS, ALONE):
            t = times[name, layout]
            print(f"{name:8} {layout:11} {statistics.median(t):11.3g} {f'[{min(t):.3g}, {max(t):.3g}]':>22} "
                  f"{sent[name, layout][0]:11d} {sent[name, layout][1]:10d}")
        shares = [1 - alone / across for alone, across in zip(times[name, ALONE], times[name, "2 x 1"])]
        print(f"{name:8} collectives' share of a 2 x 1 step: {statistics.median(shares):.0%} "
              f"[{min(shares):.0%}, {max(shares):.0%}] over rounds\n")
    if args.workload:
        return
    print(f"all-reduce bytes per step, scale MLP (width {args.width}) on 2 devices:")
    mlp = [o for o in workloads(args.width)["mlp"] if not o.startswith("freeze=")]
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
