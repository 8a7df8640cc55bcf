"""One run, as data: a validated Config in, a dict of plain measurements out."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from harness.core import abstract, cost, distributed, metrics, plausibility
from harness.core.batching import FullBatch, Minibatches, batching, order_key
from harness.core.checks import ConfigError, check
from harness.core.config import Config
from harness.core.devices import data_parallel
from harness.core.memory import Needs, check_fits, check_needs
from harness.core.metrics import METRICS
from harness.core.pretraining import forgetting
from harness.core.program import Built, hyperparams, model_arrays, optimizer_arrays, set_hyperparams
from harness.core.target import Evaluations, cold_compile_s, compile_cold, outcome, target_metric
from harness.core.tasks import Data, Task, make_task
from harness.core.timing import compile_timed, dispatch_cost, time_calls, use_persistent_cache
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


class Layout(NamedTuple):
    """Where a run's arrays go: each step's batch source, and the shardings of the training data and the rest."""

    batches: FullBatch | Minibatches
    train: Any  # x_train, y_train
    replicated: Any  # state, key, test data


def _layout(spec: Config, devices: list[jax.Device], task: Task) -> Layout:
    """The run's layout on `devices` for `task` (its arrays or their shapes); a ConfigError when they do not fit it.

    Full batch: the training set is the batch, split over the devices. Minibatches: every
    device holds the whole training set and each step's batch is split over them.
    """
    batch, replicated = data_parallel(devices)
    check_split(spec, task)
    size = spec.train.batch_size
    rows = task.data.x_train.shape[0]
    return Layout(batching(size, rows, batch if len(devices) > 1 else None), replicated if size is not None else batch,
                  replicated)


def check_split(spec: Config, task: Task) -> None:
    """A ConfigError unless every device of the run (device.count in each of distributed.processes) gets an equal
    share of each step's batch; `task` may be its shapes."""
    rows, size, count = task.data.x_train.shape[0], spec.train.batch_size, spec.device.count
    processes = spec.distributed.processes
    check(size is None or size <= rows, "train.batch_size",
          f"must be <= the {rows} training rows of task {task.name!r}, got {size}")
    per_step, what = (rows, f"the {rows} training rows of task {task.name!r}") if size is None else \
        (size, f"train.batch_size={size} rows")
    if processes == 1:
        check(per_step % count == 0, "device.count",
              f"{count} devices cannot split {what} per step evenly; use a count that divides it")
    check(per_step % (count * processes) == 0, "distributed.processes",
          f"{processes} processes x device.count={count} = {count * processes} devices cannot split {what} per step "
          "evenly; use counts whose product divides it")


def _placed(spec: Config, devices: list[jax.Device], layout: Layout | None = None) -> tuple[Task, Layout]:
    """The task made, with its data on `devices` as `layout` (checked against the made task when not given) says."""
    task = make_task(spec.task)
    layout = layout or _layout(spec, devices, task)
    data = task.data
    placed = Data(jax.device_put(data.x_train, layout.train), jax.device_put(data.y_train, layout.train),
                  *(jax.device_put(a, layout.replicated) for a in (data.x_test, data.y_test, data.x_val, data.y_val)))
    return dataclasses.replace(task, data=placed), layout


def _needs(spec: Config, shapes: abstract.Shapes, memory: dict, points: int = 1) -> Needs:
    """What the run needs, from its shapes and its compiled training program's memory analysis."""
    return Needs(points * shapes.data_bytes, points * shapes.state_bytes, memory, shapes.largest,
                 points * shapes.predictions, spec.train.measure_dispatch)


def step_metrics(spec: Config, task: Task) -> tuple[str, ...]:
    """What the timed loop emits per step: the task's loss, then `train.step_metrics` (of the task's kind)."""
    kinds = tuple(name for name, metric in METRICS.items() if metric.kind == task.kind)
    for name in spec.train.step_metrics:
        check(name in kinds, "train.step_metrics", f"{name!r} is no metric of task {task.name!r} ({task.kind}); "
                                                   f"its metrics: {', '.join(kinds)}")
    return tuple(dict.fromkeys((task.loss, *spec.train.step_metrics)))


def chunk_steps(spec: Config) -> int | None:
    """Steps per call of a chunked training (train.eval_every, else train.log_every), or None: one call.

    train.eval_every need not divide train.steps: the last call trains the remainder (`execute`)."""
    return spec.train.eval_every or spec.train.log_every


def _training(spec: Config, layout: Layout, task: Task, state, key, emitted: tuple[str, ...],
              shapes: bool = False) -> tuple[Any, tuple, dict, int]:
    """(jitted function, its arguments, its static arguments, chunks per training) of one run.

    With `shapes`, `task` and `state` are shapes and so are the arguments, as placed on the devices.
    """
    data, static = task.data, {"program": None, "batches": layout.batches, "steps": spec.train.steps,
                               "metrics": emitted}
    chunk = chunk_steps(spec)
    if chunk is None:
        jitted, args, chunks = train, (state, data.x_train, data.y_train, key), 1
    else:
        static["steps"], jitted, chunks = chunk, train_chunk, -(-spec.train.steps // chunk)  # the last: the rest
        rows = data.x_train.shape[0]
        order = jax.eval_shape(lambda k: layout.batches.start(k, rows), key) if shapes else jax.device_put(
            layout.batches.start(key, rows), layout.replicated)
        args = (state, order, data.x_train, data.y_train, key, jax.ShapeDtypeStruct((), np.int32) if shapes
                else np.int32(0))
    if shapes:
        chunked = chunk is not None  # a batch order follows the state
        shardings = (layout.replicated, *((layout.replicated,) if chunked else ()), layout.train, layout.train,
                     layout.replicated)
        args = (*(abstract.placed(arg, sharding) for arg, sharding in zip(args, shardings)), *args[len(shardings):])
    return jitted, args, static, chunks


def execute(spec: Config, devices: list[jax.Device], on_chunk=None) -> dict[str, Any]:
    """Builds, compiles, times and evaluates one run; each step's batch is sharded over `devices`.

    The training program is compiled from the run's shapes (harness/core/abstract.py) and the whole
    run checked against the memory left (harness/core/memory.py) before its data or state is made.
    With train.log_every (or train.eval_every), `on_chunk(first step, {metric: values})` sees each
    chunk of the first training call as it arrives (live curves).
    """
    use_persistent_cache(spec.train.persistent_cache_dir)
    here = distributed.local(devices)  # devices[0] unless the run spans processes (harness.core.distributed)
    peak = plausibility.machine_peak(here)
    with jax.default_device(here):
        ahead, compiled = abstract.shapes(spec), None
        if ahead is not None:
            if spec.train.eval_every:  # a target the metric cannot reach: refused before compiling or pretraining
                target_metric(spec, ahead.task)
            layout = _layout(spec, devices, ahead.task)
            emitted = step_metrics(spec, ahead.task)
            key = jax.eval_shape(lambda: order_key(spec.task.seed))
            jitted, shaped, static, chunks = _training(spec, layout, ahead.task, ahead.built.state, key, emitted, True)
            static["program"] = ahead.built.program
            compiled, timing = compile_timed(jitted, shaped, static, steps=spec.train.steps, warmup=spec.train.warmup,
                                             chunks=chunks)
            check_needs(_needs(spec, ahead, timing.memory), here)
        task, layout = _placed(spec, devices, layout if ahead is not None else None)
        if spec.train.eval_every:
            target_metric(spec, task)
        built = build(spec, task)
        key = distributed.put(order_key(spec.task.seed), layout.replicated)
        state = distributed.put(built.state, layout.replicated)
        jitted, args, static, chunks = _training(spec, layout, task, state, key, step_metrics(spec, task))
        static["program"] = built.program
        if compiled is None or built.program != ahead.built.program or not abstract.same_shapes(args, shaped):
            # Not traceable ahead (or a task whose shapes follow its seed): compiled and checked now.
            compiled, timing = compile_timed(jitted, args, static, steps=spec.train.steps, warmup=spec.train.warmup,
                                             chunks=chunks)
            check_fits(timing.memory, here)
        evaluations, rest = None, spec.train.steps % (chunk_steps(spec) or spec.train.steps)
        if spec.train.eval_every:
            evaluations = Evaluations(built.program, task, target_metric(spec, task))
            evaluations(0, state)  # compiles the evaluation here, not inside the (warm-up) calls
        tail = None  # the last chunk's program, when train.eval_every does not divide train.steps
        if rest:
            tail, tail_timing = compile_timed(jitted, args, {**static, "steps": rest}, steps=rest, warmup=0)
        call = None if chunk_steps(spec) is None else in_chunks(
            args, chunks, chunk_steps(spec), spec.train.warmup + spec.train.repeats, on_chunk, evaluations,
            tail=tail, total=spec.train.steps)
        (state, history), timing = time_calls(compiled, args, timing, repeats=spec.train.repeats, call=call,
                                              barrier=distributed.barrier if distributed.many() else None)
        data = task.data
        if spec.train.measure_dispatch:
            timing.dispatch = dispatch_cost(jitted, args, static, adaptive=not distributed.many())
            rows = spec.train.batch_size or data.x_train.shape[0]
            timing.flops_split = cost.split_once(abstract.program_key(spec), built, task.loss, data.x_train[:rows],
                                                 data.y_train[:rows])
        parts = history if isinstance(history, list) else [history]
        history = {name: np.concatenate([np.asarray(part[name]) for part in parts]) for name in parts[0]}
        if distributed.many():
            return across_processes(spec, task, built, layout, state, history, timing, peak)
        summary = timing.summary()
        result = measurements(spec, task, built, layout.batches, state, history, summary, peak)

        def cold() -> float:  # every program the run trains with, each at its cold compile time
            programs = [(timing, static)] + ([(tail_timing, {**static, "steps": rest})] if tail else [])
            return sum(cold_compile_s(t.program, t.compile_s, t.compile_source,
                                      lambda s=s: compile_cold(jitted, args, s)) for t, s in programs)

        return {**result, "target": evaluations and outcome(spec, evaluations, summary, cold)}


def across_processes(spec: Config, task: Task, built: Built, layout: Layout, state, history: dict[str, np.ndarray],
                     timing, peak: dict[str, float]) -> dict[str, Any]:
    """The measurements of a run that spans processes, the same on every process.

    Each timed call started and ended at a barrier, so the run's time per call is the slowest
    process's (`timing.run_s`); each process's own times are in `distributed.run_s`. The trained
    state is replicated: every process evaluates it on its own copy of the task's data, one device.
    """
    per_process = distributed.gathered(np.asarray(timing.run_s))
    timing.run_s = per_process.max(axis=0).tolist()
    placement = {"state": sorted({str(d) for leaf in state for d in leaf.sharding.device_set}),
                 "train_batch": sorted(str(d) for d in task.data.x_train.sharding.device_set)}
    here = jax.local_devices()[0]
    state = distributed.localized(state, here)
    data = Data(*distributed.localized(tuple(task.data), here))
    task = dataclasses.replace(task, data=data)
    result = measurements(spec, task, built, layout.batches, state, history, timing.summary(), peak)
    return {**result, "placement": placement, "target": None,
            "distributed": {**distributed.describe(), "run_s": per_process.tolist(),
                            "run_s_per_call_median": np.median(per_process, axis=1).tolist()}}


def in_chunks(args: tuple, chunks: int, steps: int, calls: int, on_chunk=None, evaluate=None, tail=None,
              total: int | None = None):
    """One training as `chunks` calls of a compiled `train_chunk` program, with a progress bar on a terminal.

    `tail`: the program of the last call, for the rest of `total` steps when `steps` does not divide it.

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
            task = progress.add_task(f"training call {len(made)}/{calls}", total=total or chunks * steps)
            for chunk in range(chunks):
                program = tail if tail is not None and chunk == chunks - 1 else compiled
                current, current_order, history = program(current, current_order, x, y, key,
                                                          np.int32(chunk * steps))
                parts.append(jax.block_until_ready(history))
                done = min((chunk + 1) * steps, total or (chunk + 1) * steps)
                progress.advance(task, done - chunk * steps)
                if on_chunk is not None and len(made) == 1:
                    on_chunk(chunk * steps, {name: np.asarray(values) for name, values in history.items()})
                if evaluate is not None and len(made) == 1:
                    evaluate(done, current)
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


def shared_programs(specs: list[Config]) -> list[list[int]]:
    """The indexes of `specs` in groups that can train as one vmapped program, in order of first index.

    Runs share a program when they differ in TRACED values only (`abstract.program_key`) and
    train in one call on one device; a run that shares with none is a group of its own.
    """
    groups: dict[Any, list[int]] = {}
    for i, spec in enumerate(specs):
        alone = spec.device.count > 1 or chunk_steps(spec) is not None
        groups.setdefault(i if alone else abstract.program_key(spec), []).append(i)
    return list(groups.values())


class ProgramsDiffer(ConfigError):
    """Points with one program key built different programs or shapes (a task whose shapes follow its seed)."""

    def __init__(self):
        super().__init__("vectorize", "points differ in program structure or shapes; vectorize lr and seed only")


def stack(trees: list[Any]) -> Any:
    """Pytrees of one structure as one pytree with a leading axis (on device: no transfer in timed calls)."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def execute_vectorized(specs: list[Config], devices: list[jax.Device]) -> list[dict[str, Any]]:
    """The result of every run in `specs` (one program: see `shared_programs`), trained as one vmapped program.

    Compiled from the shapes of the first point (every point has them) and checked against the
    memory left before any point's data or state is made, as `execute` does. Each result's timing
    is the group's: `points` runs per call, `point` this run's place (harness.core.timing).
    """
    spec = specs[0]
    use_persistent_cache(spec.train.persistent_cache_dir)
    peak = plausibility.machine_peak(devices[0])
    common = {"steps": spec.train.steps, "warmup": spec.train.warmup, "points": len(specs)}
    with jax.default_device(devices[0]):
        ahead, compiled, layout = abstract.shapes(spec), None, None
        if ahead is not None:
            layout = _layout(spec, devices[:1], ahead.task)
            data = ahead.task.data
            key = jax.eval_shape(lambda: order_key(spec.task.seed))
            shaped = tuple(abstract.stacked(tree, len(specs)) for tree in (ahead.built.state, data.x_train,
                                                                            data.y_train, key))
            static = {"program": ahead.built.program, "batches": layout.batches, "steps": spec.train.steps,
                      "metrics": step_metrics(spec, ahead.task)}
            compiled, timing = compile_timed(train_many, shaped, static, **common)
            check_needs(_needs(spec, ahead, timing.memory, len(specs)), devices[0])
        placed = _shared(specs, lambda s: repr(s.task), lambda s: _placed(s, devices[:1], layout))
        tasks, batches = [task for task, _ in placed], placed[0][1].batches
        data = [task.data for task in tasks]
        built = _builds(specs, tasks)
        if any(b.program != built[0].program for b in built) or not all(
                abstract.same_shapes((b.state, d.x_train, d.y_train), (built[0].state, data[0].x_train,
                                                                        data[0].y_train))
                for b, d in zip(built, data)):
            raise ProgramsDiffer()
        args = (stack([b.state for b in built]), stack([d.x_train for d in data]), stack([d.y_train for d in data]),
                stack([order_key(s.task.seed) for s in specs]))
        static = {"program": built[0].program, "batches": batches, "steps": spec.train.steps,
                  "metrics": step_metrics(spec, tasks[0])}
        if compiled is None or built[0].program != ahead.built.program or not abstract.same_shapes(args, shaped):
            compiled, timing = compile_timed(train_many, args, static, **common)
            check_fits(timing.memory, devices[0])
        (states, history), timing = time_calls(compiled, args, timing, repeats=spec.train.repeats)
        if spec.train.measure_dispatch:
            timing.dispatch = dispatch_cost(train_many, args, static)
        history, timing = jax.tree.map(np.asarray, history), timing.summary()
        return [  # no target: a target needs evaluations between chunks, and vectorized points train in one call
            {**measurements(s, task, b, batches, tuple(leaf[i] for leaf in states),
                            {name: values[i] for name, values in history.items()}, {**timing, "point": i}, peak),
             "target": None}
            for i, (s, task, b) in enumerate(zip(specs, tasks, built))
        ]


def _shared(specs: list[Config], key, make) -> list[Any]:
    """`make(spec)` for each spec, made once per `key(spec)`: points of one seed share their task's data."""
    made: dict[str, Any] = {}
    return [made[k] if (k := key(spec)) in made else made.setdefault(k, make(spec)) for spec in specs]


def _builds(specs: list[Config], tasks: list[Task]) -> list[Built]:
    """`build(spec, task)` for each point; points that differ in optimizer values alone share one build, with their
    own values written into its `inject_hyperparams` leaves.

    Checked, not assumed: the first shared build is compared with a build of its own, and a builder
    whose state does not carry the values that way (a user's own) builds every point itself.
    """
    bases: dict[str, Built] = {}
    out = []
    for spec, task in zip(specs, tasks):
        key = repr(dataclasses.replace(spec, optimizer=spec.optimizer.name))
        if key not in bases:
            out.append(bases.setdefault(key, build(spec, task)))
            continue
        shared = _with_optimizer(bases[key], spec)
        if len(out) == len(bases):  # the first shared build: the check
            own = build(spec, task)
            if not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(own.state), jax.tree.leaves(shared.state))):
                return [build(s, t) for s, t in zip(specs, tasks)]
        out.append(shared)
    return out


def _with_optimizer(built: Built, spec: Config) -> Built:
    """`built` with `spec.optimizer`'s values in its state's `inject_hyperparams` leaves."""
    return built._replace(state=tuple(set_hyperparams(list(built.state), built.paths, hyperparams(spec.optimizer))))


def measurements(spec: Config, task: Task, built: Built, batches: FullBatch | Minibatches, state,
                 history: dict[str, np.ndarray], timing: dict[str, Any], peak: dict[str, float]) -> dict[str, Any]:
    """The record's measurements for one trained state and its per-step `history` ({metric: values})."""
    data = task.data
    pred_train = built.program.predict(state, data.x_train)
    pred_test = built.program.predict(state, data.x_test)
    pred_val = built.program.predict(state, data.x_val)
    initial, final = model_arrays(built, built.state), model_arrays(built, state)
    steps = metrics.subsample(spec.train.steps, spec.tracker.history_points)
    diverged = divergence(history)
    return {
        "status": "diverged" if diverged else "ok",
        "divergence": diverged,
        "metrics": {
            "train": metrics.evaluate(pred_train, data.y_train, task.kind),
            # Validation: what time to a target and any selection (harness.analysis.tuning) read; test is reported.
            "val": metrics.evaluate(pred_val, data.y_val, task.kind),
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
