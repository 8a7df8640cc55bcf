"""The memory a run is estimated to need (harness.core.memory.Needs, from shapes) against what it really uses.

Each configuration runs in a fresh process: its peak resident memory (ru_maxrss) grown past what the
process held before the run (JAX imported, the machine calibrated), and the estimate `execute` checked.
A ratio >= 1 means the estimate covers the run; much above 1, it refuses runs that would fit.

    python benchmarks/memory_estimate.py            # ~1 min, about 3 GB of memory at most
"""

from __future__ import annotations

import json
import subprocess
import sys

CASES = {
    "data: the line task, 5e7 training rows": ["task.n_train=50000000"],
    "state: MLP width 3000, depth 4, nothing frozen": ["model=mlp", "model.width=3000", "model.depth=4",
                                                       "freeze=none"],
    "program: same, frozen backbone, stop_gradient": ["model=mlp", "model.width=3000", "model.depth=4",
                                                      "freeze=backbone", "method=stop_gradient"],
    "evaluation: MLP width 2000 over 1e5 rows, batches of 1000": ["model=mlp", "model.width=2000", "model.depth=2",
                                                                  "freeze=none", "task.n_train=100000",
                                                                  "train.batch_size=1000"],
}

ONE = """
import json, resource, sys
from harness.core import memory, run
from harness.core.devices import select
from harness.core.plausibility import machine_peak
from harness.jobs.compose import spec_from_overrides

seen = {}
check = run.check_needs


def spy(needs, *device):
    seen.update(total=needs.total(), parts=needs.parts())
    return check(needs, *device)


run.check_needs = spy
spec = spec_from_overrides(*sys.argv[1:], "train.steps=2")
devices = select(spec.device)
machine_peak(devices[0])  # once per process, before the run, as in a job
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
run.execute(spec, devices)
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
print(json.dumps({"grown": grown, **seen}))
"""


def main() -> None:
    print(f"{'case':<62} {'estimate':>10} {'measured':>10} {'ratio':>6}  parts (MB)")
    for name, overrides in CASES.items():
        out = subprocess.run([sys.executable, "-c", ONE, *overrides], capture_output=True, text=True, check=True)
        got = json.loads(out.stdout.strip().splitlines()[-1])
        parts = ", ".join(f"{k} {v / 1e6:.0f}" for k, v in got["parts"].items())
        print(f"{name:<62} {got['total'] / 1e6:>8.0f}MB {got['grown'] / 1e6:>8.0f}MB {got['total'] / got['grown']:>6.2f}"
              f"  {parts}")


if __name__ == "__main__":
    main()
