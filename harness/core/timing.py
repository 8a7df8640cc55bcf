"""Honest timing: ahead-of-time compile timed alone, then warm-up and blocked repeats.

Whether a compile really happened is read from JAX's own monitoring events, so
a program served from the in-process or persistent cache is reported as such,
never as a cold compile.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import jax
import numpy as np
from jax import monitoring

from harness.core.hlo import collectives, fingerprint, loop_ops
from harness.core.memory import check_fits

_BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"
_PERSISTENT_HIT = "/jax/compilation_cache/cache_hits"


@dataclass
class _Counts:
    backend_compiles: int = 0
    persistent_hits: int = 0


_active: list[_Counts] = []


def _on_duration(event: str, duration: float, **_: Any) -> None:
    if event == _BACKEND_COMPILE:
        for counts in _active:
            counts.backend_compiles += 1


def _on_event(event: str, **_: Any) -> None:
    if event == _PERSISTENT_HIT:
        for counts in _active:
            counts.persistent_hits += 1


monitoring.register_event_duration_secs_listener(_on_duration)
monitoring.register_event_listener(_on_event)


@contextlib.contextmanager
def count_compiles():
    """Counts XLA backend compiles and persistent-cache hits inside the block."""
    counts = _Counts()
    _active.append(counts)
    try:
        yield counts
    finally:
        _active.remove(counts)


def spread(samples: list[float]) -> dict[str, float]:
    """Median, min, max and interquartile range of timing samples."""
    q1, median, q3 = np.percentile(samples, [25, 50, 75])
    return {"median": float(median), "min": float(min(samples)), "max": float(max(samples)), "iqr": float(q3 - q1)}


@dataclass
class Timing:
    lower_s: float
    compile_s: float
    compile_source: str  # "compiled", "in_process_cache" or "persistent_cache"
    backend_compiles: int
    warmup: int
    run_s: list[float] = field(default_factory=list)  # one per repeat: the whole training (every chunk)
    steps: int = 1
    chunks: int = 1  # compiled calls per training (train.log_every)
    flops: float | None = None  # XLA's count for the program, scan body counted once: see dispatch.flops_per_step
    bytes_accessed: float | None = None
    memory: dict[str, int | None] = field(default_factory=dict)
    points: int = 1  # > 1: a vectorized call that trains this many runs at once (run_s: the group's calls)
    dispatch: dict[str, float] | None = None  # see `dispatch_cost`
    flops_split: dict[str, float | None] | None = None  # where a step's flops go: harness.core.cost.split
    matmuls: dict[str, int] | None = None  # dots in the compiled loop body vs hoisted out of it (harness.core.hlo)
    program: str | None = None  # harness.core.hlo.fingerprint: runs with one fingerprint ran the same XLA program
    collectives: dict[str, Any] | None = None  # per step and per call, count and bytes of each kind (harness.core.hlo)

    def summary(self) -> dict[str, Any]:
        call = spread(self.run_s)
        out = {
            **{k: v for k, v in asdict(self).items() if k != "run_s"},
            "run_s": self.run_s,
            "run_s_per_call": call,
            "run_s_per_step": {k: v / self.steps / self.points for k, v in call.items()},  # call time / steps
        }
        if self.dispatch and self.steps > self.chunks:
            # Per step inside the loop, without the per-call cost: (N-step call - 1-step call) / (N - 1);
            # in C chunks a training pays C per-call costs: (N-step training - C 1-step calls) / (N - C).
            in_loop = max(call["median"] - self.chunks * self.dispatch["one_step_call_s"], 0.0) / (
                self.steps - self.chunks)
            out["in_loop_s_per_step"] = in_loop
            if self.points > 1:  # in_loop_s_per_step is the group's step: every point's at once
                out["in_loop_s_per_step_per_point"] = in_loop / self.points
            out["dispatch"] = {**self.dispatch, "overhead_s": max(self.dispatch["one_step_call_s"] - in_loop, 0.0)}
        return out


def _cost(compiled) -> tuple[float | None, float | None]:
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - a backend without cost analysis is a null, not a failure
        return None, None
    if isinstance(cost, list):
        cost = cost[0] if cost else {}
    cost = cost or {}
    return cost.get("flops"), cost.get("bytes accessed")


def _memory(compiled) -> dict[str, int | None]:
    try:
        stats = compiled.memory_analysis()
    except Exception:  # noqa: BLE001
        stats = None
    names = ("argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes", "temp_size_in_bytes",
             "peak_memory_in_bytes")
    memory = {name: getattr(stats, name, None) for name in names}
    # What one call holds at once, at most. XLA:CPU's peak_memory_in_bytes counts arguments and outputs only.
    parts = [memory[n] for n in ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes")]
    memory["total_bytes"] = None if None in parts else sum(parts) - (memory["alias_size_in_bytes"] or 0)
    return memory


def _program(compiled) -> tuple[dict[str, int] | None, str | None, dict[str, Any] | None]:
    """(matrix products inside and hoisted out of the loop, the program's fingerprint, its collectives), from its
    optimized HLO."""
    try:
        text = compiled.as_text()
    except Exception:  # noqa: BLE001 - a backend without HLO text is a null, not a failure
        return None, None, None
    found = collectives(text)
    step = found["per_step"]
    found["bytes_per_step"] = sum(kind["bytes"] for kind in step.values())
    found["all_reduce_bytes_per_step"] = step["all-reduce"]["bytes"]
    return loop_ops(text), fingerprint(text), found


def use_persistent_cache(path: str | None) -> None:
    """Points JAX's on-disk compilation cache at `path` (None: off) for the compiles that follow."""
    from jax.experimental.compilation_cache import compilation_cache

    if jax.config.jax_compilation_cache_dir == path:
        return
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # the seed compiles in < 1 s
    compilation_cache.reset_cache()


def dispatch_cost(jitted: Callable, args: tuple, static: dict, *, calls: int = 50,
                  budget_s: float = 1.0, adaptive: bool = True) -> dict[str, float]:
    """A 1-step program's call time (median of up to `calls`, fewer past `budget_s`) and XLA's cost of one step.

    `adaptive` False: exactly `calls` calls, whatever they take (a run across processes: every process
    must make the same calls, and each process's own clock would pick its own count).

    `Timing.summary` turns it into the per-call overhead and the in-loop time per step.
    The 1-step program is compiled here, apart from the run's own compile.
    """
    compiled = jitted.lower(*args, **{**static, "steps": 1}).compile()
    t = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    if adaptive:
        calls = int(np.clip(budget_s / max(time.perf_counter() - t, 1e-9), 5, calls))  # big models: fewer calls
    samples = []
    for _ in range(calls):
        t = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        samples.append(time.perf_counter() - t)
    # XLA counts a scan body once whatever its trip count, so the 1-step program's count is per step.
    flops, bytes_accessed = _cost(compiled)
    # The spread of a call that does almost no work: how finely a difference of two calls resolves the work
    # inside them (harness.core.resolution).
    return {"one_step_call_s": float(np.median(samples)), "one_step_call_iqr_s": spread(samples)["iqr"],
            "timer_resolution_s": time.get_clock_info("perf_counter").resolution, "calls": calls, "flops_per_step": flops, "bytes_accessed_per_step": bytes_accessed}


def compile_timed(jitted: Callable, args: tuple, static: dict, *, steps: int, warmup: int, points: int = 1,
                  chunks: int = 1):
    """(compiled program, Timing with its compile time, XLA's costs and memory) of `jitted(*args, **static)`.

    `args` may be shapes (jax.ShapeDtypeStruct with the arguments' shardings): the program is
    compiled, and its memory known, before its arguments exist (harness.core.run).
    """
    with count_compiles() as counts:
        t0 = time.perf_counter()
        lowered = jitted.lower(*args, **static)
        t1 = time.perf_counter()
        compiled = lowered.compile()
        t2 = time.perf_counter()
    source = (
        "persistent_cache" if counts.persistent_hits else "compiled" if counts.backend_compiles else "in_process_cache"
    )
    flops, bytes_accessed = _cost(compiled)
    matmuls, program, sent = _program(compiled)
    timing = Timing(t1 - t0, t2 - t1, source, counts.backend_compiles, warmup, steps=steps, flops=flops,
                    bytes_accessed=bytes_accessed, memory=_memory(compiled), points=points, matmuls=matmuls,
                    program=program, chunks=chunks, collectives=sent)
    return compiled, timing


def time_calls(compiled, args: tuple, timing: Timing, *, repeats: int, call: Callable | None = None,
               barrier: Callable[[str], None] | None = None):
    """(output of the last repeat, `timing` with its run times): `timing.warmup` untimed calls, then `repeats` timed.

    `call(compiled)`, when given, is one whole training with the compiled program (e.g. `chunks`
    calls of it in a row); by default it is the one call `compiled(*args)`. `barrier(name)`, when
    given (a run across processes), is waited at before and after each timed call, outside its time:
    every process times the same call, started together.
    """
    barrier = barrier or (lambda name: None)
    run = (lambda: compiled(*args)) if call is None else (lambda: call(compiled))
    with count_compiles() as during:
        for _ in range(timing.warmup):
            jax.block_until_ready(run())
        out = None
        for repeat in range(repeats):
            out = None  # the previous repeat's outputs are freed before the next call allocates its own
            barrier(f"before timed call {repeat}")
            t = time.perf_counter()
            out = jax.block_until_ready(run())
            timing.run_s.append(time.perf_counter() - t)
            barrier(f"after timed call {repeat}")
    if during.backend_compiles:
        raise RuntimeError(f"{during.backend_compiles} compile(s) happened inside the timed calls: run times are invalid")
    return out, timing


def compile_and_time(jitted: Callable, args: tuple, static: dict, *, steps: int, warmup: int, repeats: int,
                     points: int = 1, chunks: int = 1, call: Callable | None = None):
    """(output of the last repeat, Timing) of `jitted(*args, **static)` with `args` that exist already.

    The compiled program is checked against the memory left (harness.core.memory.check_fits) before its
    first call: a run whose shapes could not be traced ahead (harness.core.abstract) is refused here.
    """
    compiled, timing = compile_timed(jitted, args, static, steps=steps, warmup=warmup, points=points, chunks=chunks)
    check_fits(timing.memory)  # a program too big for this machine is refused here, not OOM-killed mid-call
    return time_calls(compiled, args, timing, repeats=repeats, call=call)
