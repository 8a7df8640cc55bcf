"""How often `harness compare` cries wolf on identical code, and how often it catches a real slowdown: measured.

    python benchmarks/false_alarms.py                 # 20 rounds per case: about an hour on 2 idle cores
    python benchmarks/false_alarms.py --quick         # 3 rounds per case, about 8 minutes: checks the script
    python benchmarks/false_alarms.py --keep DIR      # keep the sweeps; --analyze DIR judges them again

Every pair is two real sweeps (`python -m harness -m ...`, W&B disabled, each its own
process) run one after the other on this machine, judged as `harness compare A B
--fail-on-regression` judges them:
- seed: the seed study, `method=diffstate,stop_gradient,reference optimizer=adam,adamw`
  (123 full-batch steps of ~0.3 µs inside a ~40 µs call: the scale of issue 21's false alarms);
- mlp: a depth-3 MLP of width 192 and 256, nothing frozen, `diffstate` and `stop_gradient`
  (one compiled program: a same-program control), seeds 1 and 2, a new batch of 256 rows every
  step (~1 ms steps), 30 steps, 3 timed repeats. Between the two sweeps of each idle A/A pair
  runs a third, B, whose program does ~20% more work per step: a patched `MLP.__call__`
  also computes tanh(h @ K) on each step's hidden activations h (K: `EXTRA` x width columns)
  and adds it to the output times 1e-30, below float32 rounding, so the losses are the same.
  Real work, not a scaled number: its XLA flop ratio and measured time ratio are printed.
  (A, B) is a pair with a real 20% slowdown.
The idle cases run first; the loaded ones run while a second process spins on one core.
Per A/A case: the pairs where --fail-on-regression exited 1, with the one-sided 95% upper
bound that count gives (0 of 20 bounds the rate below 14%), the pairs with any faster/slower
verdict on a timed measure, and the rate of such verdicts per configuration; for the
slowdown, the pairs called a regression (the detection rate).
Targets (issue 21): --fail-on-regression fires on no A/A pair (at most 1 in 100), idle and
loaded; at most 5% of configurations get a faster/slower verdict in A/A pairs; the real
20% slowdown is called a regression in at least 90% of pairs, idle.

Time at the default 20 rounds on this 2-core machine: 180 sweeps, ~7 s per seed sweep and
~15 s per MLP sweep idle, more loaded: about an hour (64 minutes on 2026-11-30).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from harness.analysis import compare, findings
from harness.analysis.frames import load_records

SEED = ["method=diffstate,stop_gradient,reference", "optimizer=adam,adamw"]
MLP = ["model=mlp", "model.depth=3", "model.width=192,256", "freeze=none", "method=diffstate,stop_gradient",
       "task.seed=1,2", "task.n_train=2048", "task.n_test=256", "train.batch_size=256", "train.steps=30",
       "train.repeats=3"]
EXTRA = 1.2  # columns of K per hidden unit: ~20% of a depth-3 MLP's flops per step with nothing frozen
SLOWER = f"""
import jax, jax.numpy as jnp, numpy as np
from harness.core.models import flat, mlp

def slower(self, x):
    hidden = self.backbone(flat(x))
    width = hidden.shape[-1]
    extra = np.random.default_rng(0).normal(0, width ** -0.5, (width, round({EXTRA} * width))).astype(np.float32)
    wasted = jnp.tanh(jax.lax.stop_gradient(hidden) @ extra).mean()
    return self.head(hidden) + 1e-30 * wasted

mlp.MLP.__call__ = slower
"""
TIMED = [name for name, measure in findings.MEASURES.items() if measure.timed]


@dataclass
class Case:
    name: str
    overrides: list[str]
    loaded: bool = False
    power: bool = False  # also a sweep with ~20% more work per step between each A/A pair's two sweeps

    @property
    def tag(self) -> str:
        return self.name + ("_loaded" if self.loaded else "")


CASES = [Case("seed", SEED), Case("mlp", MLP, power=True), Case("seed", SEED, loaded=True),
         Case("mlp", MLP, loaded=True)]


def sweep(overrides: list[str], root: Path, name: str, slower: bool = False) -> None:
    """One real sweep in its own process, into root/name/<timestamp>."""
    args = ["-m", *overrides, "tracker=disabled", "report=false", f"results_dir={root}", f"name={name}"]
    if slower:
        command = [sys.executable, "-c", f"{SLOWER}\nimport sys\nfrom harness.cli import main\n"
                                         "sys.argv[0] = 'harness'\nmain()\n", *args]
    else:
        command = [sys.executable, "-m", "harness", *args]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    subprocess.run(command, check=True, capture_output=True, env=env, cwd=root)


def run_case(case: Case, pairs: int, root: Path) -> None:
    """`pairs` rounds of sweeps, one after another: A then A' (and with `power`, A, B, A')."""
    for i in range(pairs):
        sweep(case.overrides, root, f"{case.tag}_{i}_a")
        if case.power:
            sweep(case.overrides, root, f"{case.tag}_{i}_slower", slower=True)
        sweep(case.overrides, root, f"{case.tag}_{i}_again")
        print(f"  {case.tag}: round {i + 1}/{pairs}", flush=True)


def pairs_on_disk(root: Path, case: Case, second: str) -> list[tuple[Path, Path]]:
    """(A, B) sweep directories of every round on disk: B is the round's `second` sweep ("again", "slower")."""
    out, i = [], 0
    while all((root / f"{case.tag}_{i}_{side}").is_dir() for side in ("a", second)):
        out.append(tuple(next((root / f"{case.tag}_{i}_{side}").iterdir()) for side in ("a", second)))
        i += 1
    return out


def judge(a_dir: Path, b_dir: Path) -> dict:
    """What `harness compare A B --fail-on-regression` says of one pair."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = compare.main_compare([str(a_dir), str(b_dir), "--fail-on-regression"])
    a, b = load_records(a_dir)[0], load_records(b_dir)[0]
    table, _ = compare.compare(a, b)
    calls = [f"{name}_verdict" for name in TIMED if f"{name}_verdict" in table]
    called = table[calls].isin(["slower", "faster"]).any(axis=1) if calls else table.index.isin([])
    overall = table.attrs["overall"]
    timed_overall = overall[overall["column"].isin(TIMED)]
    ratios = timed_overall.set_index("column")["ratio"].dropna()  # in-loop first, unless too short everywhere
    return {"fired": code == 1, "configurations": len(table), "called": int(called.sum()),
            "any": bool(called.any() or timed_overall["verdict"].isin(["slower", "faster"]).any()),
            "ratio": float(ratios.iloc[0]) if len(ratios) else math.nan,
            "flops": float(b["flops_per_step"].median() / a["flops_per_step"].median())}


def upper_bound(count: int, total: int) -> float:
    """The one-sided 95% upper bound of a rate seen `count` times in `total` (Clopper-Pearson)."""
    return stats.binomtest(count, total, alternative="less").proportion_ci(0.95).high


def a_a_lines(label: str, judged: list[dict]) -> list[str]:
    n = len(judged)
    fired = sum(j["fired"] for j in judged)
    configs = sum(j["configurations"] for j in judged)
    called = sum(j["called"] for j in judged)
    ratios = [j["ratio"] for j in judged if math.isfinite(j["ratio"])] or [math.nan]
    return [f"{label}, A/A: --fail-on-regression fired on {fired}/{n} pairs (one-sided 95% upper bound "
            f"{upper_bound(fired, n):.1%}; target: none: {'met' if not fired else 'NOT met'})",
            f"  pairs with any faster/slower verdict: {sum(j['any'] for j in judged)}/{n}; configurations: "
            f"{called}/{configs} ({called / max(configs, 1):.1%}; target <= 5%: "
            f"{'met' if called <= 0.05 * configs else 'NOT met'}); B/A step time over the sweep, median "
            f"x{np.median(ratios):.3f} [min {min(ratios):.3f}, max {max(ratios):.3f}]"]


def power_lines(label: str, judged: list[dict]) -> list[str]:
    n = len(judged)
    caught = sum(j["fired"] for j in judged)
    return [f"{label}, B does ~20% more work: called a regression in {caught}/{n} pairs ({caught / n:.0%}; target "
            f">= 90%: {'met' if caught >= 0.9 * n else 'NOT met'}); B/A step time median "
            f"x{np.nanmedian([j['ratio'] for j in judged]):.3f}, XLA flops per step x"
            f"{np.median([j['flops'] for j in judged]):.3f}"]


def case_lines(root: Path, case: Case) -> list[str]:
    label = f"{case.name}, {'loaded' if case.loaded else 'idle'}"
    lines = a_a_lines(label, [judge(a, b) for a, b in pairs_on_disk(root, case, "again")])
    if case.power:
        lines += power_lines(label, [judge(a, b) for a, b in pairs_on_disk(root, case, "slower")])
    return lines


@contextlib.contextmanager
def one_core_busy(on: bool):
    """A second process spinning on one core for the duration, when `on`."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if on else None
    try:
        yield
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="3 pairs per case: checks the script, not the targets")
    parser.add_argument("--keep", type=Path, help="write the sweeps here and keep them")
    parser.add_argument("--analyze", type=Path, help="judge the sweeps a --keep run left here; run nothing")
    args = parser.parse_args()
    if args.analyze:
        print("\n".join(line for case in CASES for line in case_lines(args.analyze, case)), flush=True)
        return
    with tempfile.TemporaryDirectory() as scratch:
        root = args.keep or Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        lines = []
        for case in CASES:
            start = time.perf_counter()
            with one_core_busy(case.loaded):
                run_case(case, 3 if args.quick else args.pairs, root)
            found = [*case_lines(root, case), f"  ({time.perf_counter() - start:.0f} s)"]
            print("\n".join(found), flush=True)
            lines += found
        print("\n".join(["", "all cases:", *lines]), flush=True)


if __name__ == "__main__":
    main()
