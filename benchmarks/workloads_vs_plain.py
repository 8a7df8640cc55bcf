"""The workloads' training step, the harness's against flax's own plain loop (nnx.split + jax.jit).

    python benchmarks/workloads_vs_plain.py [--steps 50] [--rounds 7] [--repeats 3]

For the CNN on digits (all training images, batch 64) and the transformer on modular arithmetic
(batch 64), full fine-tuning with Adam:

- harness:   `method=diffstate freeze=none train.batch_size=64` through `harness.core.train.train`,
             compiled ahead of time as the harness compiles it.
- plain JAX: the same model split once with `nnx.split(model, nnx.Param)`, `nnx.merge` inside the loss,
             `jax.value_and_grad` and `optax.adam` under a bare `jax.jit` scan, with the same batches
             (a new permutation of the rows every epoch, rows [pos*B, pos*B+B) of it at each step),
             written here without the harness's code.

Before timing, both are checked to train the same (equal loss per step to float32 tolerance). Calls
are interleaved in a fresh random order within each round and ratios are taken call by call
(benchmarks/loop_vs_reference.py), so load from other tenants cancels. Target: harness / plain
JAX <= 1.10 for each model. About 2 minutes on 2 cores.
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
from harness.core.metrics import cross_entropy
from harness.core.models import build_model
from harness.core.plausibility import machine_peak
from harness.core.tasks import make_task
from harness.core.train import build, train
from harness.jobs.compose import spec_from_overrides

WORKLOADS = {
    "cnn on digits": ("task=digits", "model=cnn", "task.per_class=null", "task.pretrain_steps=0"),
    "transformer on modular": ("task=modular", "model=transformer", "task.pretrain_steps=0"),
}
BATCH = 64


def plain_loop(params, opt_state, x, y, key, *, graphdef, tx, batch: int, steps: int):
    """Full fine-tuning by hand: (params, losses)."""
    rows = x.shape[0]
    per_epoch = rows // batch

    def body(carry, i):
        params, opt_state, order = carry
        epoch, pos = jnp.divmod(i, per_epoch)
        order = jax.lax.cond(pos == 0, lambda: jax.random.permutation(jax.random.fold_in(key, epoch), rows)
                             .astype(jnp.int32), lambda: order)
        idx = jax.lax.dynamic_slice_in_dim(order, pos * batch, batch)

        def loss(params):
            return cross_entropy(nnx.merge(graphdef, params)(x[idx]), y[idx])

        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, order), value

    (params, _, _), losses = jax.lax.scan(body, (params, opt_state, jnp.zeros(rows, jnp.int32)), jnp.arange(steps))
    return params, losses


def one(name: str, overrides: tuple[str, ...], args, cpu) -> float:
    spec = spec_from_overrides(*overrides, "method=diffstate", "freeze=none", "optimizer=adam",
                               f"train.batch_size={BATCH}", f"train.steps={args.steps}")
    task = make_task(spec.task)
    x, y, key = jnp.asarray(task.data.x_train), jnp.asarray(task.data.y_train), order_key(spec.task.seed)
    built = build(spec, task)
    harness = train.lower(built.state, x, y, key, program=built.program, steps=args.steps,
                          batches=Minibatches(BATCH, x.shape[0]), metrics=(task.loss,)).compile()
    model = build_model(spec.model, spec.task.seed, task.in_shape, task.outputs, task.vocab)
    graphdef, params = nnx.split(model, nnx.Param)
    tx = optax.adam(spec.optimizer.lr, b1=spec.optimizer.b1, b2=spec.optimizer.b2, eps=spec.optimizer.eps)
    plain_args = (params, tx.init(params), x, y, key)
    plain = jax.jit(functools.partial(plain_loop, graphdef=graphdef, tx=tx, batch=BATCH,
                                      steps=args.steps)).lower(*plain_args).compile()
    _, history = harness(built.state, x, y, key)
    _, plain_losses = plain(*plain_args)
    np.testing.assert_allclose(np.asarray(history[task.loss]), np.asarray(plain_losses), rtol=1e-4, atol=1e-6)

    calls = {"harness": functools.partial(harness, built.state, x, y, key), "plain": functools.partial(plain, *plain_args)}
    for call in calls.values():
        jax.block_until_ready(call())
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    rounds = [interleaved(calls, args.repeats, rng) for _ in range(args.rounds)]
    elapsed = time.perf_counter() - t0
    ratios = summary([np.median(r["harness"] / r["plain"]) for r in rounds])
    step = {k: np.median([np.median(r[k]) for r in rounds]) / args.steps for k in calls}
    cost = harness.cost_analysis()
    flops = ((cost[0] if isinstance(cost, list) else cost) or {}).get("flops")
    print(f"{name:<24} {step['harness'] * 1e3:>9.3f} {step['plain'] * 1e3:>9.3f} {ratios['median']:>8.3f} "
          f"[{ratios['min']:.3f}, {ratios['max']:.3f}]  {(flops or float('nan')) / step['harness'] / 1e9:>8.1f}"
          f"   ({args.rounds} rounds in {elapsed:.0f}s; losses agree)")
    return ratios["median"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=3, help="calls per variant per round")
    args = parser.parse_args(argv)
    cpu = jax.devices("cpu")[0]
    peak = machine_peak(cpu)
    print(f"jax {jax.__version__}, {os.cpu_count()} cores, {cpu}, load {os.getloadavg()[0]:.2f}; python "
          f"{platform.python_version()}; calibrated peak {peak['matmul_flops_per_s'] / 1e9:.0f} GFLOP/s; "
          f"batch {BATCH}, {args.steps} steps per call, full fine-tuning with Adam")
    print(f"\n{'workload':<24} {'harness ms/step':>9} {'plain ms/step':>9} {'ratio, median [min, max] of rounds':>34}"
          f" {'harness GFLOP/s (scan body once)':>8}")
    with jax.default_device(cpu):
        medians = {name: one(name, overrides, args, cpu) for name, overrides in WORKLOADS.items()}
    for name, median in medians.items():
        print(f"target: {name}: harness / plain JAX <= 1.10: median {median:.3f} -> "
              f"{'ok' if median <= 1.10 else 'MISS'}")


if __name__ == "__main__":
    main()
