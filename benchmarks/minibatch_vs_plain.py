"""Frozen-backbone fine-tuning with a new batch every step: the harness's step against plain JAX.

    python benchmarks/minibatch_vs_plain.py [--width 1024] [--depth 4] [--batch 512] [--steps 20] [--rounds 7]

Variants, all a linear probe on a frozen tanh MLP backbone (AdamW, seed task, `--rows` training rows):

- harness:      `method=diffstate freeze=backbone train.batch_size=B` through `harness.core.train.train`,
                compiled ahead of time as the harness compiles it.
- plain JAX:    the same training written by hand: a dict of arrays, a jnp forward, `jax.value_and_grad`
                over the head only, `optax.adamw`, and the same batches (a new permutation of the rows
                every epoch, rows [pos*B, pos*B+B) of it at each step), under a bare `jax.jit`.
- plain JAX, sequential: the plain loop taking rows [(i*B) mod N, +B) of the unshuffled set (no
                permutation, no gather): what shuffling costs.
- harness, full batch: the harness with the seed's full batch, for contrast: XLA hoists the frozen
                backbone out of the loop, so this step time is the head's alone.

Before timing, the harness and plain JAX runs are checked to train the same (equal loss per step to
float32 tolerance), and the compiled programs are checked for matmuls hoisted out of the loop
(`harness.core.hlo.loop_ops`). Calls are interleaved in a fresh random order within each round and ratios
are taken call by call (see benchmarks/loop_vs_reference.py), so load from other tenants cancels.
Target: harness / plain JAX <= 1.10 at width 1024, depth 4, batch 512 (about 3M parameters).
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from loop_vs_reference import interleaved, summary

from harness.core.batching import Minibatches, order_key
from harness.core.hlo import loop_ops
from harness.core.models import build_model
from harness.core.plausibility import machine_peak
from harness.core.tasks import make_task
from harness.core.train import build, train
from harness.jobs.compose import spec_from_overrides

HARNESS, PLAIN, SEQUENTIAL, FULL = "harness", "plain JAX", "plain JAX, sequential", "harness, full batch"


def forward(params, x):
    layers = params["backbone"]["layers"]
    for index in sorted(layers):
        x = jnp.tanh(x @ layers[index]["kernel"] + layers[index]["bias"])
    return x @ params["head"]["kernel"] + params["head"]["bias"]


def plain_loop(head, opt_state, frozen, x, y, key, *, tx, batch: int, steps: int, shuffle: bool):
    """The probe's training by hand: returns (head, losses)."""
    rows = x.shape[0]
    per_epoch = rows // batch

    def body(carry, i):
        head, opt_state, order = carry
        if shuffle:
            epoch, pos = jnp.divmod(i, per_epoch)
            order = jax.lax.cond(pos == 0, lambda: jax.random.permutation(jax.random.fold_in(key, epoch), rows)
                                 .astype(jnp.int32), lambda: order)
            idx = jax.lax.dynamic_slice_in_dim(order, pos * batch, batch)
            xb, yb = x[idx], y[idx]
        else:
            start = (i * batch) % (per_epoch * batch)
            xb, yb = jax.lax.dynamic_slice_in_dim(x, start, batch), jax.lax.dynamic_slice_in_dim(y, start, batch)

        def loss(head):
            return jnp.mean((forward({"backbone": frozen, "head": head}, xb) - yb) ** 2)

        value, grads = jax.value_and_grad(loss)(head)
        updates, opt_state = tx.update(grads, opt_state, head)
        return (optax.apply_updates(head, updates), opt_state, order), value

    (head, _, _), losses = jax.lax.scan(body, (head, opt_state, jnp.zeros(rows, jnp.int32)), jnp.arange(steps))
    return head, losses


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=3, help="calls per variant per round")
    args = parser.parse_args(argv)

    cpu = jax.devices("cpu")[0]
    overrides = ("model=mlp", f"model.width={args.width}", f"model.depth={args.depth}", "freeze=backbone",
                 "method=diffstate", "optimizer=adamw", f"task.n_train={args.rows}", f"train.steps={args.steps}")
    spec = spec_from_overrides(*overrides, f"train.batch_size={args.batch}")
    peak = machine_peak(cpu)
    print(f"jax {jax.__version__}, {os.cpu_count()} cores, {cpu}, load {os.getloadavg()[0]:.2f}; python "
          f"{platform.python_version()}; calibrated peak {peak['matmul_flops_per_s'] / 1e9:.0f} GFLOP/s")

    with jax.default_device(cpu):
        task = make_task(spec.task)
        x, y, key = task.data.x_train, task.data.y_train, order_key(spec.task.seed)
        built = build(spec, task)
        batches = Minibatches(args.batch, args.rows)
        harness = train.lower(built.state, x, y, key, program=built.program, steps=args.steps,
                              batches=batches).compile()
        full = train.lower(built.state, x, y, program=built.program, steps=args.steps).compile()

        params = nnx.to_pure_dict(nnx.state(build_model(spec.model, spec.task.seed), nnx.Param))
        head, frozen = params["head"], params["backbone"]["layers"]
        frozen = {"layers": frozen}
        tx = optax.adamw(spec.optimizer.lr, b1=spec.optimizer.b1, b2=spec.optimizer.b2, eps=spec.optimizer.eps,
                         weight_decay=spec.optimizer.weight_decay)
        opt_state = tx.init(head)
        plain_args = (head, opt_state, frozen, x, y, key)
        compiled_plain = {shuffle: jax.jit(functools.partial(plain_loop, tx=tx, batch=args.batch, steps=args.steps,
                                                             shuffle=shuffle)).lower(*plain_args).compile()
                          for shuffle in (True, False)}

        # Same training, same batches: the losses per step agree before anything is timed.
        _, history = harness(built.state, x, y, key)
        _, plain_losses = compiled_plain[True](*plain_args)
        np.testing.assert_allclose(np.asarray(history["mse"]), np.asarray(plain_losses), rtol=1e-4)

        calls = {HARNESS: functools.partial(harness, built.state, x, y, key),
                 PLAIN: functools.partial(compiled_plain[True], *plain_args),
                 SEQUENTIAL: functools.partial(compiled_plain[False], *plain_args),
                 FULL: functools.partial(full, built.state, x, y)}
        compiled = {HARNESS: harness, PLAIN: compiled_plain[True], SEQUENTIAL: compiled_plain[False], FULL: full}
        for call in calls.values():
            jax.block_until_ready(call())
        rng = np.random.default_rng(0)
        t0 = time.perf_counter()
        rounds = [interleaved(calls, args.repeats, rng) for _ in range(args.rounds)]
        elapsed = time.perf_counter() - t0

    n_params, n_frozen = (sum(np.size(v) for v in jax.tree.leaves(tree)) for tree in (params, frozen))
    print(f"width {args.width}, depth {args.depth}: {n_params:,} parameters ({n_frozen:,} frozen), batch {args.batch} of {args.rows} rows, {args.steps} steps per call; {args.rounds} rounds x "
          f"{args.repeats} calls per variant in {elapsed:.0f}s; harness and plain JAX losses agree (rtol 1e-4)")
    print(f"\n{'variant':<24} {'ms/step':>9} {'ratio to plain':>24} {'GFLOP/s':>9} {'of peak':>8} "
          f"{'matmuls in loop / hoisted':>26}")
    for name in calls:
        per_round = [np.median(r[name]) / args.steps for r in rounds]
        ratios = [np.median(r[name] / r[PLAIN]) for r in rounds]
        s = summary(ratios)
        cost = compiled[name].cost_analysis()
        flops = ((cost[0] if isinstance(cost, list) else cost) or {}).get("flops")
        rate = flops / np.median(per_round) if flops else float("nan")
        ops = loop_ops(compiled[name].as_text())
        print(f"{name:<24} {np.median(per_round) * 1e3:>9.2f} {s['median']:>8.3f} [{s['min']:.3f}, {s['max']:.3f}]"
              f" {rate / 1e9:>9.0f} {rate / peak['matmul_flops_per_s']:>8.2f} "
              f"{ops['inside']:>15} / {ops['outside']}")
    s = summary([np.median(r[HARNESS] / r[PLAIN]) for r in rounds])
    print(f"\ntarget: harness / plain JAX <= 1.10: median {s['median']:.3f} -> {'ok' if s['median'] <= 1.10 else 'MISS'}")
    print("GFLOP/s: XLA's flop count of the program (the scan body counted once, plus anything hoisted out of "
          "it) over the step time; a rate above the calibrated peak is work XLA removed (the full-batch row).")


if __name__ == "__main__":
    main()
