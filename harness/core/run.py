"""One run, as data: a validated Config in, a dict of plain measurements out."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from harness.core import cost, metrics, plausibility
from harness.core.batching import FullBatch, Minibatches, batching, order_key
from harness.core.checks import ConfigError, check
from harness.core.config import Config
from harness.core.devices import data_parallel
from harness.core.metrics import METRICS
from harness.core.pretraining import forgetting
from harness.core.program import Built, model_arrays, optimizer_arrays
from harness.core.target import Evaluations, outcome, target_metric
from harness.core.tasks import Data, Task, make_task
from harness.core.timing import compile_and_time, dispatch_cost, use_persistent_cache
from harness.core.train import build, train, train_chunk, train_many


def divergence(history: dict[str, np.ndarray]) -> dict[str, Any] | None:
    """First step with a non-finite metric and the last finite values before it, or None."""
    bad = ~np.logical_and.reduce([np.isfinite(values) for values in history.values()])
    if not bad.any():
        return None
    first = int(np.argmax(bad))
    last = first - 1
    return {
        "first_nonfinite_step": first,
        "last_finite_step": last if last >= 0 else None,
        **{f"last_finite_train_{name}": float(values[last]) if last >= 0 else None
           for name, values in history.items()},
    }


def _placed(spec: Config, devices: list[jax.Device]) -> tuple[Task, FullBatch | Minibatches]:
    """The task with its data on `devices`, and where each step's batch comes from.

    Full batch: the training set is the batch, split over the devices. Minibatches: every
    device holds the whole training set and each step's batch is split over them.
    """
    batch, replicated = data_parallel(devices)
    task = make_task(spec.task)
    rows, size, count = task.data.x_train.shape[0], spec.train.batch_size, spec.device.count
    check(size is None or size <= rows, "train.batch_size",
          f"must be <= the {rows} training rows of task {task.name!r}, got {size}")
    per_step, what = (rows, f"the {rows} training rows of task {task.name!r}") if size is None else \
        (size, f"train.batch_size={size} rows")
    check(per_step % count == 0, "device.count",
          f"{count} devices cannot split {what} per step evenly; use a count that divides it")
    train_sharding = replicated if size is not None else batch
    batches = batching(size, rows, batch if len(devices) > 1 else None)
    data = task.data
    placed = Data(jax.device_put(data.x_train, train_sharding), jax.device_put(data.y_train, train_sharding),
                  jax.device_put(data.x_test, replicated), jax.device_put(data.y_test, replicated))
    return dataclasses.replace(task, data=placed), batches


def step_metrics(spec: Config, task: Task) -> tuple[str, ...]:
    """What the timed loop emits per step: the task's loss, then `train.step_metrics` (of the task's kind)."""
    kinds = tuple(name for name, metric in METRICS.items() if metric.kind == task.kind)
    for name in spec.train.step_metrics:
        check(name in kinds, "train.step_metrics", f"{name!r} is no metric of task {task.name!r} ({task.kind}); "
                                                   f"its metrics: {', '.join(kinds)}")
    return tuple(dict.fromkeys((task.loss, *spec.train.step_metrics)))


def execute(spec: Config, devices: list[jax.Device], on_chunk=None) -> dict[str, Any]:
    """Builds, compiles, times and evaluates one run; each step's batch is sharded over `devices`.

    With train.log_every (or train.eval_every), `on_chunk(first step, {metric: values})` sees each chunk
    of the first training call as it arrives (live curves).
    """
    use_persistent_cache(spec.train.persistent_cache_dir)
    peak = plausibility.machine_peak(devices[0])
    with jax.default_device(devices[0]):
        task, batches = _placed(spec, devices)
        data = task.data
        built = build(spec, task)
        key = jax.device_put(order_key(spec.task.seed), data_parallel(devices)[1])
        state = jax.device_put(built.state, data_parallel(devices)[1])
        static = {"program": built.program, "batches": batches, "steps": spec.train.steps,
                  "metrics": step_metrics(spec, task)}
        chunk = spec.train.eval_every or spec.train.log_every
        evaluations = None
        if spec.train.eval_every:
            evaluations = Evaluations(built.program, task, target_metric(spec, task))
            evaluations(0, state)  # compiles the evaluation here, not inside the (warm-up) calls
        if chunk is None:
            jitted, args, call, chunks = train, (state, data.x_train, data.y_train, key), None, 1
        else:
            static["steps"] = chunk
            jitted, chunks = train_chunk, spec.train.steps // chunk
            args = (state, batches.start(key, data.x_train.shape[0]), data.x_train, data.y_train, key, np.int32(0))
            call = in_chunks(args, chunks, chunk, spec.train.warmup + spec.train.repeats, on_chunk, evaluations)
        (state, history), timing = compile_and_time(
            jitted, args, static, steps=spec.train.steps, warmup=spec.train.warmup, repeats=spec.train.repeats,
            chunks=chunks, call=call,
        )
        if spec.train.measure_dispatch:
            timing.dispatch = dispatch_cost(jitted, args, static)
            rows = spec.train.batch_size or data.x_train.shape[0]
            timing.flops_split = cost.split(built, task.loss, data.x_train[:rows], data.y_train[:rows])
        parts = history if isinstance(history, list) else [history]
        history = {name: np.concatenate([np.asarray(part[name]) for part in parts]) for name in parts[0]}
        summary = timing.summary()
        result = measurements(spec, task, built, batches, state, history, summary, peak)
        return {**result, "target": evaluations and outcome(spec, evaluations, summary)}


def in_chunks(args: tuple, chunks: int, steps: int, calls: int, on_chunk=None, evaluate=None):
    """One training as `chunks` calls of a compiled `train_chunk` program, with a progress bar on a terminal.

    Each chunk is waited for before the bar moves, so the bar shows steps done, not steps queued;
    that wait is part of the timed training, as it is of a user's loop that logs as it goes.
    `on_chunk` (its history) and `evaluate` (steps done, state) see the chunks of the first call
    only: the warm-up when there is one, untimed (train.eval_every requires one).
    """
    from rich.console import Console
    from rich.progress import Progress

    state, order, x, y, key, _ = args
    made = []

    def call(compiled):
        made.append(None)
        current, current_order, parts = state, order, []
        with Progress(console=Console(stderr=True), transient=True,
                      disable=not Console(stderr=True).is_terminal) as progress:
            task = progress.add_task(f"training call {len(made)}/{calls}", total=chunks * steps)
            for chunk in range(chunks):
                current, current_order, history = compiled(current, current_order, x, y, key,
                                                           np.int32(chunk * steps))
                parts.append(jax.block_until_ready(history))
                progress.advance(task, steps)
                if on_chunk is not None and len(made) == 1:
                    on_chunk(chunk * steps, {name: np.asarray(values) for name, values in history.items()})
                if evaluate is not None and len(made) == 1:
                    evaluate((chunk + 1) * steps, current)
        return current, parts  # joined on the host, after the timed calls (a device concat would compile)

    return call


def points(spec: Config) -> list[Config]:
    """One Config per (lr, seed) of `spec.vectorize`, each an ordinary single run."""
    lrs = spec.vectorize.lr or [spec.optimizer.lr]
    seeds = spec.vectorize.seed or [spec.task.seed]
    return [
        dataclasses.replace(spec, optimizer=dataclasses.replace(spec.optimizer, lr=lr),
                            task=dataclasses.replace(spec.task, seed=seed), vectorize=type(spec.vectorize)())
        for seed, lr in itertools.product(seeds, lrs)
    ]


def stack(trees: list[Any]) -> Any:
    """Pytrees of one structure as one pytree with a leading axis (on device: no transfer in timed calls)."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def execute_vectorized(spec: Config, devices: list[jax.Device]) -> list[tuple[Config, dict[str, Any]]]:
    """(point spec, result) for every point of `spec.vectorize`, trained as one vmapped program."""
    use_persistent_cache(spec.train.persistent_cache_dir)
    peak = plausibility.machine_peak(devices[0])
    specs = points(spec)
    with jax.default_device(devices[0]):
        placed = [_placed(s, devices[:1]) for s in specs]
        tasks, batches = [task for task, _ in placed], placed[0][1]
        data = [task.data for task in tasks]
        built = [build(s, task) for s, task in zip(specs, tasks)]
        if any(b.program != built[0].program for b in built):
            raise ConfigError("vectorize", "points differ in program structure; vectorize lr and seed only")
        args = (stack([b.state for b in built]), stack([d.x_train for d in data]), stack([d.y_train for d in data]),
                stack([order_key(s.task.seed) for s in specs]))
        static = {"program": built[0].program, "batches": batches, "steps": spec.train.steps,
                  "metrics": step_metrics(spec, tasks[0])}
        (states, history), timing = compile_and_time(
            train_many, args, static, steps=spec.train.steps, warmup=spec.train.warmup,
            repeats=spec.train.repeats, points=len(specs),
        )
        if spec.train.measure_dispatch:
            timing.dispatch = dispatch_cost(train_many, args, static)
        history, timing = jax.tree.map(np.asarray, history), timing.summary()
        return [
            (s, measurements(s, task, b, batches, tuple(leaf[i] for leaf in states),
                             {name: values[i] for name, values in history.items()}, {**timing, "point": i}, peak))
            for i, (s, task, b) in enumerate(zip(specs, tasks, built))
        ]


def measurements(spec: Config, task: Task, built: Built, batches: FullBatch | Minibatches, state,
                 history: dict[str, np.ndarray], timing: dict[str, Any], peak: dict[str, float]) -> dict[str, Any]:
    """The record's measurements for one trained state and its per-step `history` ({metric: values})."""
    data = task.data
    pred_train = built.program.predict(state, data.x_train)
    pred_test = built.program.predict(state, data.x_test)
    initial, final = model_arrays(built, built.state), model_arrays(built, state)
    steps = metrics.subsample(spec.train.steps, spec.tracker.history_points)
    diverged = divergence(history)
    return {
        "status": "diverged" if diverged else "ok",
        "divergence": diverged,
        "metrics": {
            "train": metrics.evaluate(pred_train, data.y_train, task.kind),
            "test": metrics.evaluate(pred_test, data.y_test, task.kind),
            # The loss the seed prints: before the last update.
            **{f"last_step_train_{name}": float(values[-1]) for name, values in history.items()},
            # The line through the test predictions: for 1-D regression only (the seed's slope and intercept).
            **(metrics.fit_line(data.x_test, pred_test) if task.in_shape == (1,) and task.outputs == 1
               and task.kind == "regression" else {}),
        },
        "drift": metrics.drift(initial, final, built.frozen_paths),
        "trained_drift": metrics.drift(initial, final, built.trainable_paths),
        "parameters": {
            "trainable": metrics.count(initial, built.trainable_paths),
            "frozen": metrics.count(initial, built.frozen_paths),
            "lora_rank": spec.model.settings.get("lora_rank"),
            "adapters": metrics.count(initial, [p for p in initial if "lora/" in p]),  # nnx.LoRAParam entries
            "trainable_paths": built.trainable_paths,
            "frozen_paths": built.frozen_paths,
            "grad_paths": built.grad_paths,
            "grads_cover_frozen": any(p in built.grad_paths for p in built.frozen_paths),
            "final": {path: value.ravel().tolist() for path, value in final.items() if value.size <= 16},
        },
        "optimizer_state": metrics.optimizer_state(optimizer_arrays(built, state), built.frozen_paths),
        "pretraining": built.pretraining and built.pretraining.info,
        "forgetting": built.pretraining and forgetting(spec, task.source, built.pretraining, initial, final),
        "batch": batches.describe(data.x_train.shape[0]),
        "timing": timing,
        "plausibility": plausibility.check(timing, peak, full_batch=isinstance(batches, FullBatch),
                                           frozen=bool(built.frozen_paths)),
        "placement": {
            "state": sorted({str(d) for leaf in state for d in leaf.devices()}),
            "train_batch": sorted(str(d) for d in data.x_train.devices()),
        },
        "history": {
            "step": steps.tolist(),
            **{f"train_{name}": values[steps].tolist() for name, values in history.items()},
        },
    }
