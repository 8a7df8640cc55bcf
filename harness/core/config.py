"""Typed config schemas: the one place where run settings are validated.

Hydra composes YAML from conf/ over the `Config` schema registered here, so a
key typo or a value of the wrong type fails at start-up with Hydra's own
message. Range checks live in `__post_init__` and run once, when `to_spec`
turns the composed config into a `Config` object.

The `task` and `model` nodes are open: each option of those groups is a component
with settings of its own (harness/core/components.py), so `to_spec` checks their
keys, types and ranges against the chosen component, and a setting another
component has (`task=transfer task.slope=3`) is one line naming it.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from harness.core.checks import (
    INT32_MAX,
    ConfigError,
    at_most,
    check,
    one_of,
    positive,
    seed_in_range,
)
from harness.core.components import GROUPS, choose, target_name
from harness.core.fields import AXES, dotted_keys
from harness.core.metrics import METRICS


def _check_paths(name: str, results_dir: str) -> None:
    """Results go to results_dir/name/<timestamp>/: `name` is one directory inside a non-empty results_dir."""
    check(bool(name.strip()) and not any(c in name for c in "/\\\0") and name not in (".", ".."), "name",
           f"must be one directory name (results go to results_dir/<name>/): not empty, no '/', "
           f"not '.' or '..'; got {name!r}")
    check(len(name) <= WANDB_TAG_MAX, "name", f"must have at most {WANDB_TAG_MAX} characters: it is a tag of every "
                                              f"W&B run of the study (W&B's limit); got {len(name)}")
    check(bool(results_dir.strip()), "results_dir",
           "must name a directory (empty would write to the filesystem root); e.g. results_dir=results")


# What W&B itself accepts (wandb.Settings' validators for project and run_tags, wandb 0.31; the
# entity is held to the project's rule, both form the runs' URL path); checked here so that a
# bad name stops the command at start-up, not once per job after training.
# tests/test_faults.py checks these rules against wandb.Settings.
WANDB_FORBIDDEN = "/\\#?%:"
WANDB_NAME_MAX = 128
WANDB_TAG_MAX = 64


OPTIMIZERS = ("adam", "adamw")
PLATFORMS = ("cpu", "gpu", "tpu", "auto")
WANDB_MODES = ("offline", "online", "disabled")
STEP_METRICS = tuple(METRICS)
FROZEN_DTYPES = ("bfloat16", "float16", "float32")


@dataclass
class FreezeConfig:
    """Which parameters are frozen: regexes searched in paths like `backbone/layers/0/kernel`."""

    name: str = MISSING
    patterns: list[str] = MISSING  # every conf/freeze/*.yaml sets it; freeze=paths asks you to
    adapters: bool = False  # the mask freezes the base weights and LoRA adapters (nnx.LoRAParam) train
    # Frozen parameters cast to this dtype before training (bfloat16: half the memory of a frozen backbone, as
    # real nnx fine-tuning code does); drift is measured against the cast values. null: as the model made them.
    frozen_dtype: Optional[str] = None

    def __post_init__(self) -> None:
        if self.frozen_dtype is not None:
            one_of(self.frozen_dtype, FROZEN_DTYPES, "freeze.frozen_dtype")


@dataclass
class MethodConfig:
    """How frozen parameters are kept out of training: a freeze method class of harness/core/freezing.py, or a
    builder of another kind of program (harness/core/reference.py), named by `_target_` in conf/method/."""

    name: str = MISSING
    _target_: str = MISSING


@dataclass
class OptimizerConfig:
    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4  # optimizers that decay weights only (adamw); 0 for the others
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self) -> None:
        one_of(self.name, OPTIMIZERS, "optimizer.name")
        check(positive(self.lr), "optimizer.lr", f"must be a finite number > 0, got {self.lr}")
        check(
            math.isfinite(self.weight_decay) and self.weight_decay >= 0,
            "optimizer.weight_decay",
            f"must be a finite number >= 0, got {self.weight_decay}",
        )
        check(0 <= self.b1 < 1, "optimizer.b1", f"must be in [0, 1), got {self.b1}")
        check(0 <= self.b2 < 1, "optimizer.b2", f"must be in [0, 1), got {self.b2}")
        check(positive(self.eps), "optimizer.eps", f"must be > 0, got {self.eps}")


@dataclass
class TrainConfig:
    steps: int = 123
    batch_size: Optional[int] = None  # rows per step, a new batch each step (harness/core/batching.py); null: full batch
    # Per-step metrics the timed loop emits besides the task's loss (alone by default, as a user's loop emits it).
    step_metrics: list[str] = field(default_factory=list)
    log_every: Optional[int] = None  # steps per compiled call, with a progress bar; null: all steps in one call
    # Time to a target (MLCommons AlgoPerf's rule): the VALIDATION metric is evaluated every `eval_every` steps (and
    # after the last) of the untimed warm-up call; the record states the first evaluated step that reached
    # `target` (resolution: eval_every steps) and the time to it, with and without the cold compile.
    eval_every: Optional[int] = None
    target: Optional[float] = None  # a value of `target_metric`; null: no target, only the evaluations
    target_metric: Optional[str] = None  # default: the task's main metric (accuracy, MSE)
    warmup: int = 1  # untimed calls after compiling
    repeats: int = 5  # timed calls, each from the same initial state
    measure_dispatch: bool = True  # also compile a 1-step program and time its call alone
    persistent_cache_dir: Optional[str] = None  # JAX's on-disk compilation cache; off for benchmarks

    def __post_init__(self) -> None:
        check(self.steps >= 1, "train.steps", f"must be >= 1, got {self.steps}")
        for name in self.step_metrics:
            one_of(name, STEP_METRICS, "train.step_metrics")
        at_most(self.steps, INT32_MAX, "train.steps", "the scan's step counter is int32")
        check(self.batch_size is None or self.batch_size >= 1, "train.batch_size",
               f"must be >= 1 (or null for the full training set every step), got {self.batch_size}")
        check(self.log_every is None or (self.log_every >= 1 and self.steps % self.log_every == 0),
               "train.log_every", f"must be >= 1 and divide train.steps={self.steps} (every chunk shares one "
                                  f"program), got {self.log_every}")
        check(self.warmup >= 0, "train.warmup", f"must be >= 0, got {self.warmup}")
        if self.eval_every is not None:
            check(1 <= self.eval_every <= self.steps, "train.eval_every",
                  f"must be in [1, train.steps={self.steps}], got {self.eval_every}")
            check(self.log_every in (None, self.eval_every), "train.log_every",
                  f"trains in chunks that fall on every train.eval_every={self.eval_every} steps; leave it unset "
                  f"or equal, got {self.log_every}")
            check(self.warmup >= 1, "train.warmup", "must be >= 1 with train.eval_every: the evaluations run in the "
                                                    "untimed warm-up call")
        check(self.target is None or (self.eval_every is not None and math.isfinite(self.target)), "train.target",
              f"needs train.eval_every (how often the validation metric is evaluated) and a finite value, "
              f"got {self.target}")
        if self.target_metric is not None:
            one_of(self.target_metric, STEP_METRICS, "train.target_metric")
        check(self.repeats >= 1, "train.repeats", f"must be >= 1, got {self.repeats}")


@dataclass
class DeviceConfig:
    platform: str = "cpu"
    index: int = 0  # the first device used
    count: int = 1  # > 1: data-parallel, the training batch sharded over devices index..index+count-1

    def __post_init__(self) -> None:
        one_of(self.platform, PLATFORMS, "device.platform")
        check(self.index >= 0, "device.index", f"must be >= 0, got {self.index}")
        check(self.count >= 1, "device.count", f"must be >= 1, got {self.count}")
        at_most(self.index + self.count, INT32_MAX, "device.index", "with device.count: a device number")


@dataclass
class DistributedConfig:
    """One run across `processes` processes (data-parallel): each has `device.count` devices, one global mesh spans
    them all, and the batch is sharded over every device (harness/core/distributed.py, harness/jobs/processes.py).

    Locally the job spawns the processes on 127.0.0.1 and picks a free coordinator port (or `port`). `timeout_s`:
    how long the processes wait for each other (start-up, a barrier, a dead peer) before the run ends as crashed.
    """

    processes: int = 1
    port: Optional[int] = None  # the coordinator's port on 127.0.0.1; null: a free one (Slurm: from the job id)
    timeout_s: int = 60

    def __post_init__(self) -> None:
        check(self.processes >= 1, "distributed.processes", f"must be >= 1, got {self.processes}")
        check(self.port is None or 1 <= self.port <= 65535, "distributed.port",
              f"must be a TCP port in [1, 65535] (or null: a free one), got {self.port}")
        check(self.timeout_s >= 1, "distributed.timeout_s", f"must be >= 1 second, got {self.timeout_s}")


@dataclass
class WandbConfig:
    mode: str = "offline"
    project: str = "nnx-freeze-bench"
    entity: Optional[str] = None
    group: Optional[str] = None  # defaults to the experiment name
    job_type: str = "train"
    tags: list[str] = field(default_factory=list)
    # Seconds wandb.init may take to reach the server (W&B's own default is 90). After the first
    # online failure, the sweep's remaining runs are logged offline (files for `wandb sync`).
    init_timeout: float = 15.0

    def __post_init__(self) -> None:
        one_of(self.mode, WANDB_MODES, "tracker.wandb.mode")
        check(positive(self.init_timeout), "tracker.wandb.init_timeout",
               f"must be a finite number of seconds > 0, got {self.init_timeout}")
        for name in ("project", "entity"):  # the entity/project path of every run's URL
            value = getattr(self, name)
            if value is None and name == "entity":
                continue
            key = f"tracker.wandb.{name}"
            bad = sorted({c for c in WANDB_FORBIDDEN if c in value})
            check(bool(value.strip()) and len(value) <= WANDB_NAME_MAX and not bad, key,
                   f"W&B accepts 1 to {WANDB_NAME_MAX} characters without any of {' '.join(WANDB_FORBIDDEN)}; "
                   f"got {value!r}" + (f" (contains {' '.join(bad)})" if bad else ""))
        for tag in self.tags:
            check(1 <= len(tag) <= WANDB_TAG_MAX, "tracker.wandb.tags",
                   f"each tag must have 1 to {WANDB_TAG_MAX} characters (W&B's limit), got {tag!r}")


@dataclass
class TrackerConfig:
    wandb: WandbConfig = field(default_factory=WandbConfig)
    history_points: int = 1000  # per-step history (record and W&B) subsampled to at most this many

    def __post_init__(self) -> None:
        check(self.history_points >= 2, "tracker.history_points", f"must be >= 2, got {self.history_points}")


# Values the compiled training program takes as arguments, not as constants: the optimizer's
# `inject_hyperparams` leaves (harness/core/program.py) and the seed of the data and the initial state.
# Runs that differ in these alone share one program: they can train as one vmapped call.
TRACED = ("optimizer.lr", "optimizer.weight_decay", "optimizer.b1", "optimizer.b2", "optimizer.eps", "task.seed")


@dataclass
class VectorizeConfig:
    """Runs trained as ONE vmapped program; each point is still its own run and record.

    `lr` and `seed`: every (lr, seed) pair, as one job. `points`: the runs of a job the vectorized
    sweeper grouped (hydra_plugins/harness_vectorized_sweeper), each as its TRACED overrides
    ("optimizer.lr=0.01 task.seed=2"). `max_points`: the most points that sweeper puts in one job.
    """

    lr: list[float] = field(default_factory=list)
    seed: list[int] = field(default_factory=list)
    points: list[str] = field(default_factory=list)
    max_points: int = 256

    def __post_init__(self) -> None:
        for lr in self.lr:
            check(positive(lr), "vectorize.lr", f"every value must be a finite number > 0, got {lr}")
        for seed in self.seed:
            seed_in_range(seed, "vectorize.seed")
        check(self.max_points >= 1, "vectorize.max_points",
              f"must be >= 1 (the most sweep points one vectorized job trains), got {self.max_points}")
        check(not (self.points and self.enabled), "vectorize.points",
              "a job of the vectorized sweeper lists its own points; do not combine it with vectorize.lr / "
              "vectorize.seed")

    @property
    def enabled(self) -> bool:
        return bool(self.lr or self.seed)


# Tuning (hydra/sweeper=tuned, MLCommons AlgoPerf's external tuning ruleset): per optimizer, a search space of
# the TRACED optimizer values, each drawn log- or linearly uniform in [low, high]. `one_minus_b1` draws 1 - b1
# (Adam's b1 near 1 is searched as its distance from 1, as AlgoPerf's baselines search it).
TUNABLE = {"lr": "optimizer.lr", "weight_decay": "optimizer.weight_decay", "one_minus_b1": "optimizer.b1",
           "one_minus_b2": "optimizer.b2", "eps": "optimizer.eps"}
SAMPLERS = ("halton", "sobol")
SCALES = ("log", "linear")


@dataclass(frozen=True)
class Dimension:
    """One searched value: uniform in [low, high] on a log or a linear scale."""

    low: float
    high: float
    scale: str = "log"


def _dimension(node: Any, at: str) -> Dimension:
    """A space's entry as a Dimension, each key and value checked (a typo is named, not ignored)."""
    check(isinstance(node, dict), at, f"must be a mapping with low, high and scale (log or linear), got {node!r}")
    for key in node:
        check(key in ("low", "high", "scale"), f"{at}.{key}", "not a setting of a searched value; it has: low, high, "
                                                              "scale")
    for key in ("low", "high"):
        value = node.get(key)
        check(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value), f"{at}.{key}",
              f"must be a finite number, got {value!r}")
    d = Dimension(float(node["low"]), float(node["high"]), node.get("scale", "log"))
    one_of(d.scale, SCALES, f"{at}.scale")
    check(d.low < d.high, at, f"needs low < high, got low={d.low:g} high={d.high:g}")
    check(d.scale != "log" or d.low > 0, f"{at}.low", f"must be > 0 on a log scale, got {d.low:g} (or scale: linear)")
    return d


@dataclass
class TuneConfig:
    """`hydra.sweeper.tune` of conf/hydra/sweeper/tuned.yaml: `trials` quasi-random draws (`sampler`, seeded) from
    the chosen optimizer's `space`, shared by every method of the sweep so that their trials pair, `studies` times
    (study k: the draws of seed `seed + k`, and task.seed + k). `space` once checked: {optimizer: {name: Dimension}}."""

    trials: int = 16
    studies: int = 1
    sampler: str = "halton"
    seed: int = 0
    space: Any = field(default_factory=dict)

    def __post_init__(self) -> None:
        key = "hydra.sweeper.tune"
        check(self.trials >= 1, f"{key}.trials", f"must be >= 1 (quasi-random draws per study), got {self.trials}")
        check(self.studies >= 1, f"{key}.studies", f"must be >= 1 (repeats of the whole search), got {self.studies}")
        one_of(self.sampler, SAMPLERS, f"{key}.sampler")
        seed_in_range(self.seed, f"{key}.seed")
        space = OmegaConf.to_container(self.space) if OmegaConf.is_config(self.space) else self.space
        check(isinstance(space, dict) and bool(space), f"{key}.space",
              f"needs a search space per optimizer ({', '.join(OPTIMIZERS)})")
        checked = {}
        for optimizer, dimensions in space.items():
            one_of(optimizer, OPTIMIZERS, f"{key}.space")
            at = f"{key}.space.{optimizer}"
            check(isinstance(dimensions, dict) and bool(dimensions), at,
                  f"searches nothing; it may search: {', '.join(TUNABLE)}")
            for name in dimensions:
                check(name in TUNABLE, f"{at}.{name}", f"is not a value tuning may search; those are: "
                                                       f"{', '.join(TUNABLE)}")
                check(optimizer != "adam" or name != "weight_decay", f"{at}.{name}",
                      "optimizer=adam does not decay weights")
            checked[optimizer] = {name: _dimension(d, f"{at}.{name}") for name, d in dimensions.items()}
        self.space = checked


def tune_config(node: Any) -> TuneConfig:
    """`hydra.sweeper.tune` checked: a TuneConfig, or one ConfigError naming the field and what is allowed."""
    def make():
        merged = OmegaConf.merge(OmegaConf.structured(TuneConfig), node)
        return OmegaConf.to_object(merged)

    try:
        return _converted(make)
    except ConfigError as err:
        field_name = err.field if err.field.startswith("hydra.") else f"hydra.sweeper.tune.{err.field}"
        raise ConfigError(field_name, err.message) from None


def with_traced(spec: Config, values: dict[str, Any]) -> Config:
    """`spec` with TRACED values set, each checked as the schema and the task check it.

    >>> with_traced(Config(), {"optimizer.lr": 1}).optimizer.lr
    1.0
    """
    changes: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        check(key in TRACED, key, f"is not a value a vectorized point may change; those are: {', '.join(TRACED)}")
        section, name = key.split(".")
        if key == "task.seed":
            check(isinstance(value, int) and not isinstance(value, bool), key, f"must be an integer, got {value!r}")
            seed_in_range(value, key)
        else:
            check(isinstance(value, (int, float)) and not isinstance(value, bool), key,
                  f"must be a number, got {value!r}")
            value = float(value)
        changes.setdefault(section, {})[name] = value
    return dataclasses.replace(spec, vectorize=dataclasses.replace(spec.vectorize, points=[]),
                               **{section: dataclasses.replace(getattr(spec, section), **fields)
                                  for section, fields in changes.items()})


@dataclass
class Config:
    name: str = "default"  # the study: results/<name>/<timestamp>/ and the W&B group
    results_dir: str = "results"
    resume: Optional[str] = None
    report: bool = True  # after a multirun: report.md, figures and Parquet in the sweep dir (and W&B when on)
    fine_tuning: Optional[str] = None  # the strategy's name, set by conf/strategy/*.yaml (a report axis)
    # The axes the study asks about, first (e.g. [fine_tuning, model]): what its report's findings, first figure and
    # tables lead with. Read by the report only: no part of what a run computes or of what resume compares.
    question: Optional[list[str]] = None
    # Set by hydra/sweeper=tuned only: this run is the chosen trial `<job>/<point>` of its sweep, trained again alone
    # so that its timed figures are its own (a trial trained in a vectorized group reports the group's times).
    rerun_of: Optional[str] = None
    task: Any = field(default_factory=dict)  # a components.TaskSpec once validated (open node: see register)
    model: Any = field(default_factory=dict)  # a components.ModelSpec once validated
    freeze: FreezeConfig = field(default_factory=FreezeConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    vectorize: VectorizeConfig = field(default_factory=VectorizeConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)

    def __post_init__(self) -> None:
        _check_paths(self.name, self.results_dir)
        self._check_distributed()
        check(not (self.vectorize.enabled and self.device.count > 1), "vectorize",
               "runs on one device; use device.count=1 with vectorize.lr / vectorize.seed")
        check(not (self.vectorize.enabled and self.train.log_every), "train.log_every",
               "vectorized points train in one call; unset train.log_every with vectorize.lr / vectorize.seed")
        check(not (self.vectorize.enabled and self.train.eval_every), "train.eval_every",
              "vectorized points train in one call; unset train.eval_every with vectorize.lr / vectorize.seed")
        # What needs the task's data or the built model (batch size against the rows, a mask against the
        # parameters) is checked when the job makes them, before anything is compiled.

    def _check_distributed(self) -> None:
        """A run across processes: what it cannot combine with, and a train.batch_size every device can split."""
        processes = self.distributed.processes
        if processes == 1:
            return
        check(self.device.index == 0, "device.index",
              f"must be 0 in a run across processes (each process numbers its own devices from 0), got "
              f"{self.device.index}")
        check(self.device.platform == "cpu", "distributed.processes",
              f"spawns CPU processes on this machine (gloo collectives); use device=cpu, got "
              f"device.platform={self.device.platform!r}")
        check(not self.vectorize.enabled and not self.vectorize.points, "distributed.processes",
              "trains one run across processes; vectorized points train on one device (unset vectorize.*)")
        for name in ("log_every", "eval_every"):
            check(getattr(self.train, name) is None, f"train.{name}",
                  f"a run across processes (distributed.processes={processes}) trains in one call; unset it")
        devices = processes * self.device.count
        size = self.train.batch_size
        check(size is None or size % devices == 0, "distributed.processes",
              f"{processes} processes x device.count={self.device.count} = {devices} devices cannot split "
              f"train.batch_size={size} rows per step evenly; use counts whose product divides it")


OPEN = GROUPS  # nodes whose keys the chosen component checks, not the schema


def register() -> None:
    """Registers the schema conf/config.yaml names first, and the resolvers the configs use.

    The task and model nodes are stored with Hydra's struct flag off, so `task.slope=3`
    reaches `to_spec`, which names the setting and the component that lacks it, instead
    of failing inside Hydra with advice to add it with '+'.
    """
    schema = OmegaConf.structured(Config)
    for group in OPEN:
        schema[group] = {}
        OmegaConf.set_struct(schema[group], False)
    ConfigStore.instance().store(name="schema", node=schema)
    if not OmegaConf.has_resolver("first"):
        OmegaConf.register_new_resolver("first", lambda *values: next((v for v in values if v), None))
    if not OmegaConf.has_resolver("target_name"):
        OmegaConf.register_new_resolver("target_name", target_name)


def _schema_keys(cfg: dict, schema: dict, prefix: str = "") -> tuple[list[str], list[str]]:
    """(keys in `cfg` the schema does not have, schema keys missing from `cfg`), dotted, recursively."""
    unknown, removed = [], []
    for key, value in cfg.items():
        path = f"{prefix}{key}"
        if key not in schema:
            unknown.append(path)
        elif isinstance(value, dict) and isinstance(schema[key], dict):
            more_unknown, more_removed = _schema_keys(value, schema[key], f"{path}.")
            unknown += more_unknown
            removed += more_removed
    removed += [f"{prefix}{key}" for key in schema if key not in cfg]
    return unknown, removed


@functools.cache
def _schema() -> dict[str, Any]:
    """The schema's keys as plain nested dicts (read only): made once, not once per job (~60 ms each)."""
    return OmegaConf.to_container(OmegaConf.structured(Config), resolve=False)


def check_keys(cfg: DictConfig) -> None:
    """Every key is a setting of the schema and none was removed: `+train.stepz=5` and `~name` are errors.

    Hydra lets `+key=value` add a key the schema does not have (silently ignored
    afterwards) and `~key` remove a top-level one (then a path built from it fails).
    """
    plain = OmegaConf.to_container(cfg, resolve=False)
    plain.pop("hydra", None)
    schema = dict(_schema())  # a copy of the top level: the open groups are replaced below, nothing else changes
    for group in OPEN:  # checked against the chosen component by `to_spec`
        if isinstance(plain.get(group), dict):
            schema[group] = plain[group]
    unknown, removed = _schema_keys(plain, schema)
    if unknown:
        key = unknown[0]
        parent, _, _ = key.rpartition(".")
        node = schema
        for part in filter(None, parent.split(".")):
            node = node[part]
        raise ConfigError(key, f"not a setting (added with '+'?); {parent or 'the top level'} has: "
                               f"{', '.join(node)}")
    if removed:
        raise ConfigError(removed[0], f"cannot be removed (~{removed[0]}); set it instead, "
                                      f"e.g. {removed[0]}=<value>")


def check_startup(cfg: DictConfig, swept: tuple[str, ...] = ()) -> None:
    """What must hold before a command writes anything: known keys, the result paths, the tracker.

    Run once per command by harness.jobs.callbacks, before any directory is made; the full
    check (`to_spec`) runs again in each job, where a swept value can still be wrong. A sweep's
    config holds no value yet for its `swept` keys (`task._target_=a,b`): what follows from one of
    them is checked by each job.
    """
    check_keys(cfg)
    try:
        resolved(cfg)  # `train.steps=${oops}`: one line naming the key, before anything is written
    except ConfigError as err:
        if not any(key in f"{err.field} {err.message}" for key in swept):
            raise
    _check_paths(str(cfg.name), str(cfg.results_dir))
    check_question(cfg, swept)
    _converted(lambda: OmegaConf.to_object(cfg.tracker))
    _converted(lambda: OmegaConf.to_object(cfg.vectorize))  # vectorize.max_points: the sweeper groups by it
    _check_target_reachable(cfg)
    tune = OmegaConf.select(cfg, "hydra.sweeper.tune", default=None)
    if tune is not None:  # hydra/sweeper=tuned: its search space, before a trial is planned
        tune_config(tune)


# The report's short names of config leaves: `method` for method.name, `lr` for optimizer.lr.
QUESTION_COLUMNS = tuple(f.column for f in AXES)


def check_question(cfg: DictConfig, swept: tuple[str, ...] = ()) -> None:
    """Each `question` entry names a swept axis (the experiment's sweeper params or the command line's), a config
    leaf (`model.width`, `fine_tuning`) or a report column (QUESTION_COLUMNS); else one line naming what is allowed.

    >>> cfg = OmegaConf.create({"question": ["model.width", "method"], "model": {"width": 64}})
    >>> check_question(cfg)
    >>> check_question(OmegaConf.create({"question": ["model.widht"], "model": {"width": 64}}))
    Traceback (most recent call last):
    ...
    harness.core.checks.ConfigError: question: 'model.widht' is neither a swept axis nor a config leaf; did you mean \
model.width? allowed: a report column (experiment, task, model, freeze, method, optimizer, lr, weight_decay, steps, \
seed, device), a config leaf (e.g. model.width, fine_tuning) or a swept axis
    """
    question = OmegaConf.select(cfg, "question", default=None)
    if question is None:
        return
    check(OmegaConf.is_list(question) or isinstance(question, list), "question",
          f"must be a list of axes, e.g. question: [fine_tuning, model]; got {question!r}")
    params = OmegaConf.select(cfg, "hydra.sweeper.params", default=None)
    axes = [str(k).lstrip("+~") for k in [*(params.keys() if OmegaConf.is_dict(params) else ()), *swept]]
    leaves = [k for k in dotted_keys(OmegaConf.to_container(_without_hydra(cfg), resolve=False)) if k]
    known = dict.fromkeys([*QUESTION_COLUMNS, *axes, *leaves])
    for entry in question:
        if isinstance(entry, str) and entry in known:
            continue
        close = difflib.get_close_matches(str(entry), list(known), n=1)
        check(False, "question",
              f"{entry!r} is neither a swept axis nor a config leaf; " + (f"did you mean {close[0]}? " if close else "")
              + f"allowed: a report column ({', '.join(QUESTION_COLUMNS)}), a config leaf (e.g. model.width, "
              f"fine_tuning) or a swept axis" + (f" ({', '.join(dict.fromkeys(axes))})" if axes else ""))


def _check_target_reachable(cfg: DictConfig) -> None:
    """A train.target outside the bounds of every metric it may be a value of (train.target_metric, else the main
    metric of either kind of task) is refused before anything is written; the task's own metric is known, and
    checked (harness.core.target.target_metric), once the job makes the task."""
    target, name = OmegaConf.select(cfg, "train.target"), OmegaConf.select(cfg, "train.target_metric")
    if not isinstance(target, (int, float)) or isinstance(target, bool) or not math.isfinite(target):
        return  # no target, or one the schema refuses with its own message
    candidates = [name] if name in METRICS else [m for m, metric in METRICS.items() if metric.main]
    bounds = {m: METRICS[m].bounds for m in candidates}
    check(any(low <= target <= high for low, high in bounds.values()), "train.target",
          " and ".join(f"{m} lies in [{low:g}, {high:g}]" for m, (low, high) in bounds.items())
          + f"; the validation metric cannot reach {target:g}")


def resolved(cfg: DictConfig) -> dict[str, Any]:
    """The config as plain data with every interpolation resolved (Hydra's own node left out); a ConfigError
    naming the key whose interpolation does not resolve."""
    return _converted(lambda: OmegaConf.to_container(_without_hydra(cfg), resolve=True))


def resolved_or_null(cfg: DictConfig) -> dict[str, Any]:
    """`resolved`, with null for each value whose interpolation does not resolve: the config of a job that
    failed for it (its error names the key), readable as any record's.

    >>> resolved_or_null(OmegaConf.create({"train": {"steps": "${oops}", "warmup": 1}, "n": "${train.warmup}"}))
    {'train': {'steps': None, 'warmup': 1}, 'n': 1}
    """
    node = _without_hydra(cfg)

    def walk(value: Any, path: str) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, str) and "${" in value:
            found = OmegaConf.select(node, path, throw_on_resolution_failure=False)
            return OmegaConf.to_container(found, resolve=False) if OmegaConf.is_config(found) else found
        return value

    return walk(OmegaConf.to_container(node, resolve=False), "")


def _without_hydra(cfg: DictConfig) -> DictConfig:
    return OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]) if "hydra" in cfg else cfg


def to_spec(cfg: DictConfig) -> Config:
    """Validated `Config` from a composed config; raises ConfigError naming the field.

    Its task and model are the chosen components with checked settings: this imports their
    modules (a built-in's imports JAX), so it runs in the job, not at the command's start.
    """
    check_keys(cfg)
    spec = _converted(lambda: OmegaConf.to_object(cfg))
    spec.task, spec.model = choose("task", spec.task), choose("model", spec.model)
    return spec


def _converted(make):
    """`make()`, with OmegaConf's errors (and ConfigErrors raised inside them) as one ConfigError."""
    try:
        return make()
    except OmegaConfBaseException as err:
        cause = err.__cause__ or err.__context__
        if isinstance(cause, ConfigError):
            raise cause from None
        if isinstance(err, MissingMandatoryValue):
            raise ConfigError(err.full_key, f"is required; set it, e.g. {err.full_key}=...") from None
        raise ConfigError(getattr(err, "full_key", None) or "config", str(err).splitlines()[0]) from None
