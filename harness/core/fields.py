"""Every field of a run's record, defined once, and the one identity of a run's config.

A `Field` says where a value is in result.json, its report column and dtype, its
W&B summary key and whether the report summarizes it per configuration.
harness/analysis/frames.py (report columns, dtypes, summaries) and harness/jobs/tracking.py
(run names, tags, W&B summary) derive their lists from FIELDS, so a new
measurement is one `Field` here, and a new error metric one entry in
harness.core.metrics.METRICS, which adds its train, test and last-step fields.

>>> record = {"status": "ok", "config": {"method": {"name": "diffstate"}}, "metrics": {"test": {"mse": 0.5}}}
>>> FIELD["test_mse"].get(record), FIELD["method"].get(record), FIELD["slope"].get(record)
(0.5, 'diffstate', None)
>>> wandb_summary(record)
{'status': 'ok', 'test/mse': 0.5}
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from harness.core.components import DEFAULT_SEED
from harness.core.metrics import METRICS


def nested_get(node: Any, *keys: str, default: Any = None) -> Any:
    """node[k1][k2]... or `default` when any level is missing or not a dict, or the value is None."""
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return default if node is None else node


# --- the identity of a config --------------------------------------------------------------------

# Not part of a job at all: the digest resume compares (`config_hash`) holds the rest. `question` (the axes a report
# leads with) is read by the report only: leaving it out keeps every digest written before it existed.
# max_points: how a sweep groups jobs; a run across processes' port and timeout: how its processes meet.
NOT_RESUMED = ("resume", "results_dir", "tracker", "vectorize.max_points", "question", "distributed.port",
               "distributed.timeout_s")
# What a resume may change: `report` too, which the digests already written hold, so resume takes it as written.
CHANGEABLE_ON_RESUME = (*NOT_RESUMED, "report")
# Not part of what a run computes either (its name, how it is timed, which trial a timed rerun repeats): the report
# and compare match on the rest.
NOT_COMPUTED = (*CHANGEABLE_ON_RESUME, "name", "train.warmup", "train.repeats", "train.measure_dispatch",
                "train.persistent_cache_dir", "rerun_of")


def dotted_keys(node: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> {'a.b': leaf}; lists become JSON text so they can be compared and stored."""
    if not isinstance(node, dict):
        return {prefix: json.dumps(node) if isinstance(node, list) else node}
    out = {}
    for key, value in node.items():
        out.update(dotted_keys(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def is_under(path: str, prefixes: Iterable[str]) -> bool:
    """Whether dotted `path` is one of `prefixes` or lies below one."""
    return any(path == p or path.startswith(p + ".") for p in prefixes)


def identity(config: dict[str, Any], leave_out: Iterable[str], prefix: str = "") -> dict[str, Any]:
    """`config` (nested dicts) less the dotted paths in `leave_out`: the one rule for which runs are the same.

    >>> identity({"name": "a", "train": {"steps": 5, "repeats": 3}}, NOT_COMPUTED)
    {'train': {'steps': 5}}
    """
    leave_out = tuple(leave_out)
    out = {}
    for key, value in config.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if is_under(path, leave_out):
            continue
        out[key] = identity(value, leave_out, path) if isinstance(value, dict) else value
    return out


def as_recorded(config: dict[str, Any]) -> dict[str, Any]:
    """`config` (resolved, plain) less the nodes added after records existed, while they hold their defaults: the
    `distributed` node of a one-process run and an unset `rerun_of`. An ordinary run's record, config hash, sweep plan
    digest and report key stay what they were before either existed.

    >>> as_recorded({"name": "a", "rerun_of": None, "distributed": {"processes": 1, "port": None}})
    {'name': 'a'}
    >>> as_recorded({"rerun_of": "3/7", "distributed": {"processes": 2}})
    {'rerun_of': '3/7', 'distributed': {'processes': 2}}
    """
    node = config.get("distributed")
    one_process = isinstance(node, dict) and node.get("processes", 1) == 1
    return {k: v for k, v in config.items()
            if not (k == "distributed" and one_process) and not (k == "rerun_of" and v is None)}


def digest(content: Any) -> str:
    """A short digest of JSON-like content, the same for equal content whatever its key order."""
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]


def config_hash(config: dict[str, Any]) -> str:
    """What resume compares: a digest of the job's resolved config less NOT_RESUMED."""
    return digest(identity(as_recorded(config), NOT_RESUMED))


def config_key(config: dict[str, Any] | None) -> str:
    """What a run computes, as canonical text: its config leaves less names, paths, tracking and timing repeats."""
    return json.dumps(dotted_keys(identity(as_recorded(config or {}), NOT_COMPUTED)),
                      sort_keys=True, default=str)


# --- the fields of a record ----------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """One value of a record: `derive(*values at paths)`, or the value at its one path.

    paths: dotted paths from the record's root; kind: int, float, bool or str (the column's dtype);
    wandb: its W&B summary key, if it has one; spread: summarized per configuration (median, min, max).
    """

    column: str
    paths: tuple[str, ...]
    kind: type
    wandb: str | None = None
    spread: bool = False
    derive: Callable[..., Any] | None = None

    def get(self, record: dict[str, Any]) -> Any:
        values = [nested_get(record, *path.split(".")) for path in self.paths]
        return self.derive(*values) if self.derive else values[0]


def _field(column: str, path: str, kind: type, wandb: str | None = None, spread: bool = False, **kw) -> Field:
    return Field(column, (path,), kind, wandb, spread, **kw)


@dataclass(frozen=True)
class _SeedField(Field):
    """The task's seed; a task config without a `seed` key (an own task YAML) ran with DEFAULT_SEED.

    >>> seed = _SeedField("seed", ("config.task.seed",), int)
    >>> [seed.get({"config": {"task": t}}) for t in ({"seed": 7}, {"_target_": "my_pkg.data.make"}, {"seed": None})]
    [7, 123, None]
    """

    def get(self, record: dict[str, Any]) -> Any:
        task = nested_get(record, "config", "task")
        if isinstance(task, dict) and task and "seed" not in task:
            return DEFAULT_SEED  # what harness.core.components.choose ran it with
        return super().get(record)


def _device(platform: Any, index: Any) -> str:
    return f"{platform}:{index}"


def _error_text(error: Any) -> str | None:
    if not error:
        return None
    if isinstance(error, dict):
        return f"{error.get('type', 'Error')}: {error.get('message', '')}".rstrip(": ")
    return str(error)


def _json_list(value: Any) -> Any:
    """A list (e.g. every timed call) as JSON text: one cell, the same in Parquet and CSV."""
    return json.dumps(value) if isinstance(value, list) else value


def _length(value: Any) -> int | None:
    return len(value) if isinstance(value, list) else None


def _command_line(overrides: Any) -> str:
    if overrides is None:
        overrides = []
    return shlex.join(map(str, overrides)) if isinstance(overrides, list) else str(overrides)


# The swept axes under short flat names: the first report columns, W&B run names and tags.
AXES = (
    _field("experiment", "config.name", str),
    _field("task", "config.task.name", str),
    _field("model", "config.model.name", str),
    _field("freeze", "config.freeze.name", str),
    _field("method", "config.method.name", str),
    _field("optimizer", "config.optimizer.name", str),
    _field("lr", "config.optimizer.lr", float),
    _field("weight_decay", "config.optimizer.weight_decay", float),
    _field("steps", "config.train.steps", int),
    _SeedField("seed", ("config.task.seed",), int),
    Field("device", ("config.device.platform", "config.device.index"), str, derive=_device),
)

# What a run measured. Error metrics come from harness.core.metrics.METRICS: final train and test, and
# the loss of the last step (before its update, as the seed prints it).
MEASURED = (
    _field("status", "status", str, "status"),
    _field("error", "error", str, "error", derive=_error_text),
    _field("diverged_at_step", "divergence.first_nonfinite_step", int),
    *(_field(f"train_{m}", f"metrics.train.{m}", float, f"final/train_{m}", spread=True) for m in METRICS),
    *(_field(f"val_{m}", f"metrics.val.{m}", float, f"val/{m}", spread=True) for m in METRICS),
    *(_field(f"test_{m}", f"metrics.test.{m}", float, f"test/{m}", spread=True) for m in METRICS),
    *(_field(f"last_step_train_{m}", f"metrics.last_step_train_{m}", float) for m in METRICS),
    # Forgetting (tasks with a source task, pretrained): the source task's test metrics under the pretrained
    # head after fine-tuning and before it, and the change of its main metric for the worse.
    _field("forgetting", "forgetting.change", float, "forgetting/change", spread=True),
    *(_field(f"source_test_{m}", f"forgetting.after.{m}", float, f"forgetting/source_test_{m}", spread=True)
      for m in METRICS),
    *(_field(f"source_test_{m}_before", f"forgetting.before.{m}", float) for m in METRICS),
    # Time to a target (harness.core.target): None without train.target, or when it was not reached.
    _field("target_metric", "target.metric", str),
    _field("target_value", "target.value", float),
    _field("target_reached", "target.reached", bool, "target/reached"),
    _field("target_step", "target.step", int, "target/step", spread=True),
    _field("time_to_target_s", "target.time_s", float, "target/time_s", spread=True),
    _field("time_to_target_with_compile_s", "target.time_with_compile_s", float, "target/time_with_compile_s",
           spread=True),
    _field("slope", "metrics.slope", float, "final/slope", spread=True),
    _field("intercept", "metrics.intercept", float, "final/intercept", spread=True),
    _field("drift_l2", "drift.l2", float, "drift/l2", spread=True),
    _field("drift_max_abs", "drift.max_abs", float, "drift/max_abs", spread=True),
    _field("drift_unchanged", "drift.unchanged", bool, "drift/unchanged"),
    _field("grads_cover_frozen", "parameters.grads_cover_frozen", bool),
    _field("opt_state_bytes", "optimizer_state.bytes", int, "optimizer_state/bytes", spread=True),
    _field("opt_state_frozen_bytes", "optimizer_state.frozen_bytes", int),
    _field("trainable_params", "parameters.trainable", int, "parameters/trainable", spread=True),
    _field("frozen_params", "parameters.frozen", int, "parameters/frozen", spread=True),
    _field("compile_s", "timing.compile_s", float, "time/compile_s"),
    # A cache hit's compile_s is no compile time: the source says which it was.
    _field("compile_source", "timing.compile_source", str, "time/compile_source"),
    _field("run_s_per_step_median", "timing.run_s_per_step.median", float, "time/run_s_per_step_median"),
    _field("run_s_per_step_min", "timing.run_s_per_step.min", float),
    _field("run_s_per_step_max", "timing.run_s_per_step.max", float),
    _field("run_s_per_step_iqr", "timing.run_s_per_step.iqr", float),
    _field("run_s_per_call_median", "timing.run_s_per_call.median", float, "time/run_s_per_call_median"),
    _field("run_s_per_call_min", "timing.run_s_per_call.min", float),
    _field("run_s_per_call_max", "timing.run_s_per_call.max", float),
    _field("in_loop_s_per_step", "timing.in_loop_s_per_step", float, "time/in_loop_s_per_step", spread=True),
    # Every timed call, as JSON text: the repeats a confidence interval resamples.
    _field("run_s", "timing.run_s", str, derive=_json_list),
    _field("one_step_call_s", "timing.dispatch.one_step_call_s", float),
    # The jitter of a call that does almost no work, and the clock's tick: the noise floor of a timed measure.
    _field("one_step_call_iqr_s", "timing.dispatch.one_step_call_iqr_s", float),
    _field("timer_resolution_s", "timing.dispatch.timer_resolution_s", float),
    _field("timing_points", "timing.points", int),
    _field("timing_chunks", "timing.chunks", int),  # compiled calls per training (train.log_every)
    _field("dispatch_overhead_s", "timing.dispatch.overhead_s", float, spread=True),
    _field("batch_regime", "batch.regime", str, "batch/regime"),
    _field("batch_size", "batch.size", int, "batch/size"),
    _field("memory_bytes", "timing.memory.total_bytes", int, "memory/bytes", spread=True),
    _field("temp_bytes", "timing.memory.temp_size_in_bytes", int, "memory/temp_bytes", spread=True),
    _field("flops_per_step", "timing.dispatch.flops_per_step", float),
    # Where a step's flops go (harness.core.cost): forward, the gradient the freeze needs, the gradient of a
    # full fine-tune, the step as compiled, and the rest (optimizer update, gradients the freeze does not need).
    *(_field(f"{part}_flops", f"timing.flops_split.{part}", float, f"flops/{part}")
      for part in ("forward", "gradient", "full_gradient", "step", "rest")),
    _field("achieved_flops_per_s", "plausibility.achieved_flops_per_s", float, "perf/achieved_flops_per_s",
           spread=True),
    _field("peak_fraction", "plausibility.peak_fraction", float, "perf/peak_fraction", spread=True),
    _field("matmuls_in_loop", "timing.matmuls.inside", int),
    _field("matmuls_hoisted", "timing.matmuls.outside", int),
    # What a data-parallel step sends (harness.core.hlo.collectives): bytes of the collectives in the training loop,
    # all of them and the all-reduces alone (0 on one device; with a frozen backbone, the trained gradients only).
    _field("collective_bytes_per_step", "timing.collectives.bytes_per_step", int, "comm/collective_bytes_per_step"),
    _field("all_reduce_bytes_per_step", "timing.collectives.all_reduce_bytes_per_step", int,
           "comm/all_reduce_bytes_per_step"),
    # Processes the run spanned (harness.core.distributed): a record without the node ran in one.
    _field("processes", "distributed.processes", int, derive=lambda n: 1 if n is None else n),
    # The compiled program's fingerprint (harness.core.hlo): two runs with one fingerprint ran the same XLA program.
    _field("program_fingerprint", "timing.program", str, "program/fingerprint"),
    _field("warning", "plausibility.warning", str, "warning"),
    _field("hoisting_note", "plausibility.note", str),
)


# The libraries whose versions each record holds (harness.core.environment).
PACKAGES = ("jax", "jaxlib", "flax", "optax", "hydra-core", "wandb", "numpy")
# Where a run was measured: the report's environment table, and what `harness compare` says two sweeps differ in.
ENVIRONMENT = (
    *(_field(f"{package.replace('-', '_')}_version", f"environment.versions.{package}", str) for package in PACKAGES),
    _field("python_version", "environment.python", str),
    _field("platform", "environment.platform", str),
    _field("device_kind", "environment.device_kind", str),
    _field("device_name", "environment.device", str),
    _field("cpu_model", "environment.cpu_model", str),
    _field("cpu_count", "environment.cpu_count", int),
    _field("calibrated_flops_per_s", "environment.calibration.matmul_flops_per_s", float),
    _field("calibrated_copy_bytes_per_s", "environment.calibration.copy_bytes_per_s", float),
)

# Where the job came from and what it is: bookkeeping, last.
BOOKKEEPING = (
    _field("repeats", "timing.run_s", int, derive=_length),
    _field("job_num", "job.num", int),
    _field("rerun_of", "config.rerun_of", str),  # a tuned sweep's chosen trial, trained again alone for its times
    _field("overrides", "job.overrides", str, derive=_command_line),
    _field("git_commit", "environment.git_commit", str),
    _field("started", "started", str),
    _field("config_key", "config", str, derive=config_key),
)

FIELDS = (*AXES, *MEASURED, *ENVIRONMENT, *BOOKKEEPING)
FIELD = {f.column: f for f in FIELDS}
SPREAD = tuple(f.column for f in FIELDS if f.spread)


def axes(record: dict[str, Any]) -> dict[str, Any]:
    """The swept axes under short flat names (AXES), for W&B dashboards and report columns."""
    return {f.column: f.get(record) for f in AXES}


def wandb_summary(record: dict[str, Any]) -> dict[str, Any]:
    """The record's final numbers under their W&B summary keys; missing ones are left out.

    The final train metrics are `final/train_*`: `train/*` are the per-step curves, summarized by W&B.
    """
    return {f.wandb: value for f in FIELDS if f.wandb and (value := f.get(record)) is not None}
