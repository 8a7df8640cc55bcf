"""What tuning costs: a 16-trial tuned study against one learning rate, as a user runs both.

    python benchmarks/tuning_cost.py [--rounds 1] [--model cnn]

Whole `harness -m` commands (W&B disabled, no report), with experiment=digits_tuned's settings (digits,
200 steps, batches of 25, one timed repeat, no evaluations during training), 4 strategies x 3 seeds:
- one rate: `strategy=scratch,finetune,probe,lora4 task.seed=0,1,2` at Adam's lr 3e-3, one job each (12 jobs);
- tuned: `experiment=digits_tuned` on `--model` alone, 16 quasi-random trials x 3 studies per strategy
  (192 runs; each strategy's trials of all studies train as one vectorized job), then each chosen trial
  alone for its timed figures (12 runs), as the tuned sweeper does.
The two alternate per round (one rate first in odd rounds, tuned first in even ones). A first command
pretrains the source model of each seed, which both then read from its cache. Target (issue 27): tuned <= 3x one rate.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMON = ["tracker=disabled", "report=false"]
STRATEGIES = "scratch,finetune,probe,lora4"


def one_rate(model: str) -> list[str]:
    return ["-m", "task=digits", f"model={model}", "optimizer=adam", "optimizer.lr=3e-3", "train.batch_size=25",
            "train.steps=200", "train.repeats=1", f"strategy={STRATEGIES}", "method=diffstate", "task.seed=0,1,2"]


def tuned(model: str) -> list[str]:
    return ["-m", "experiment=digits_tuned", f"hydra.sweeper.params.model={model}"]


def wall(args: list[str], results: Path, name: str) -> tuple[float, int]:
    """Seconds the command took, and the ok runs it recorded."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness", *args, f"name={name}", *COMMON, f"results_dir={results}"],
                   check=True, capture_output=True)
    seconds = time.perf_counter() - start
    records = [json.loads(p.read_text()) for p in (results / name).rglob("result.json")]
    return seconds, sum(r["status"] == "ok" for r in records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--model", default="cnn", choices=("cnn", "vit"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # Pretraining is cached per seed under results_dir/.pretrained: neither side pays it.
        wall(["-m", "task=digits", f"model={args.model}", "strategy=finetune", "train.steps=2", "task.seed=0,1,2"],
             root, "pretrain")
        walls: dict[str, list[float]] = {"one rate": [], "tuned": []}
        for r in range(args.rounds):
            order = ("one rate", "tuned") if r % 2 == 0 else ("tuned", "one rate")
            for side in order:
                build = one_rate if side == "one rate" else tuned
                seconds, ok = wall(build(args.model), root, f"{side.replace(' ', '_')}_{r}")
                walls[side].append(seconds)
                print(f"round {r + 1}: {side:8s} {seconds:7.1f} s, {ok} ok runs", flush=True)
    ratios = [t / o for t, o in zip(walls["tuned"], walls["one rate"])]
    print(f"tuned / one rate: {', '.join(f'x{x:.2f}' for x in ratios)} (target: at most x3)")


if __name__ == "__main__":
    main()
