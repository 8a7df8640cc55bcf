"""Typed config schemas: the one place where run settings are validated.

Hydra composes YAML from conf/ over the `Config` schema registered here, so a
key typo or a value of the wrong type fails at start-up with Hydra's own
message. Range checks live in `__post_init__` and run once, when `to_spec`
turns the composed config into a `Config` object.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from harness.core.metrics import METRICS


class ConfigError(ValueError):
    """A bad setting: names the field and what is allowed."""

    def __init__(self, field_name: str, message: str):
        self.field = field_name
        super().__init__(f"{field_name}: {message}")


class DeviceUnavailable(RuntimeError):
    """A valid device setting this machine cannot honor: the run is skipped, not failed."""


def _check(ok: bool, field_name: str, message: str) -> None:
    if not ok:
        raise ConfigError(field_name, message)


def _positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


# Integers that end up in fixed-width types: step counters and sizes are int32 inside the jitted
# program, seeds are int64 for jax.random.key / nnx.Rngs. A value past these fails deep in JAX
# with an OverflowError naming no setting, so they are bounded here.
INT32_MAX = 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _at_most(value: int, bound: int, field_name: str, why: str) -> None:
    _check(value <= bound, field_name, f"must be <= {bound:,} ({why}), got {value:,}")


def _seed(value: int, field_name: str) -> None:
    _check(INT64_MIN <= value <= INT64_MAX, field_name,
           f"must be a 64-bit integer ({INT64_MIN:,} .. {INT64_MAX:,}, what jax.random.key takes), got {value:,}")


def _check_paths(name: str, results_dir: str) -> None:
    """Results go to results_dir/name/<timestamp>/: `name` is one directory inside a non-empty results_dir."""
    _check(bool(name.strip()) and not any(c in name for c in "/\\\0") and name not in (".", ".."), "name",
           f"must be one directory name (results go to results_dir/<name>/): not empty, no '/', "
           f"not '.' or '..'; got {name!r}")
    _check(bool(results_dir.strip()), "results_dir",
           "must name a directory (empty would write to the filesystem root); e.g. results_dir=results")


# What W&B itself accepts (wandb.Settings' validators for project and run_tags, wandb 0.31; the
# entity is held to the project's rule, both form the runs' URL path); checked here so that a
# bad name stops the command at start-up, not once per job after training.
# tests/test_faults.py checks these rules against wandb.Settings.
WANDB_FORBIDDEN = "/\\#?%:"
WANDB_NAME_MAX = 128
WANDB_TAG_MAX = 64


TASKS = ("seed", "transfer")  # harness.core.task.TASKS
OPTIMIZERS = ("adam", "adamw")
MODELS = ("linear", "mlp")  # harness.core.models.MODELS
PLATFORMS = ("cpu", "gpu", "tpu", "auto")
WANDB_MODES = ("offline", "online", "disabled")
STEP_METRICS = tuple(METRICS)


def _one_of(value: str, allowed: tuple[str, ...], field_name: str) -> None:
    _check(value in allowed, field_name, f"got {value!r}, allowed: {', '.join(allowed)}")


@dataclass
class TaskConfig:
    """What is learnt: a name in harness.core.task.TASKS and its settings.

    `seed`: the first seed's line y = slope * x + intercept, x ~ U(x_min, x_max), 1-D.
    `transfer`: x ~ N(0, I) in `dim` dimensions; a teacher's `teacher_width` tanh features of x are
    the source task the backbone is pretrained on (`pretrain_steps`, cached on disk), and one
    random mix of them is the target task a run fine-tunes on.
    """

    name: str = "seed"
    seed: int = 123
    slope: float = 2.234
    intercept: float = -1.123
    n_train: int = 55
    n_test: int = 55
    x_min: float = -10.0
    x_max: float = 10.0
    dim: int = 1  # inputs per example
    teacher_width: int = 16  # transfer: features of the teacher network (the source task's outputs)
    pretrain_steps: int = 0  # transfer: Adam steps on the source task before the run; 0 trains from scratch

    def __post_init__(self) -> None:
        _one_of(self.name, TASKS, "task.name")
        _check(self.dim >= 1, "task.dim", f"must be >= 1, got {self.dim}")
        _check(self.name != "seed" or self.dim == 1, "task.dim", f"the seed task is 1-D, got {self.dim}")
        _check(self.teacher_width >= 1, "task.teacher_width", f"must be >= 1, got {self.teacher_width}")
        _check(self.pretrain_steps >= 0, "task.pretrain_steps", f"must be >= 0, got {self.pretrain_steps}")
        _check(self.name == "transfer" or self.pretrain_steps == 0, "task.pretrain_steps",
               f"only task=transfer has a source task to pretrain on, got {self.pretrain_steps}")
        _seed(self.seed, "task.seed")
        _check(self.n_train >= 1, "task.n_train", f"must be >= 1, got {self.n_train}")
        _check(self.n_test >= 1, "task.n_test", f"must be >= 1, got {self.n_test}")
        _at_most(self.n_train + self.n_test, INT32_MAX, "task.n_train",
                 "with task.n_test: rows are indexed with int32 in the program")
        _check(math.isfinite(self.slope), "task.slope", "must be finite")
        _check(math.isfinite(self.intercept), "task.intercept", "must be finite")
        _check(self.x_min < self.x_max, "task.x_min", f"must be < task.x_max, got {self.x_min} >= {self.x_max}")


@dataclass
class ModelConfig:
    """`linear`: the seed's nnx.Linear(1, 1). `mlp`: a tanh backbone plus a linear head."""

    name: str = "linear"
    pretrained_kernel: Optional[float] = 2.0  # linear only: the seed's "loaded pretrained kernel"
    depth: int = 2  # mlp: hidden layers in the backbone
    width: int = 16  # mlp: hidden units per layer
    lora_rank: Optional[int] = None  # mlp: LoRA adapters of this rank on every Linear (nnx.LoRALinear)

    def __post_init__(self) -> None:
        _one_of(self.name, MODELS, "model.name")
        _check(self.depth >= 1, "model.depth", f"must be >= 1, got {self.depth}")
        _check(self.width >= 1, "model.width", f"must be >= 1, got {self.width}")
        if self.lora_rank is not None:
            _check(self.name == "mlp", "model.lora_rank", f"LoRA adapters go on model=mlp, not {self.name!r}")
            _check(1 <= self.lora_rank <= self.width, "model.lora_rank",
                   f"must be in [1, model.width={self.width}], got {self.lora_rank}")
        _at_most(self.depth, INT32_MAX, "model.depth", "an array dimension")
        _at_most(self.width, INT32_MAX, "model.width", "an array dimension")


@dataclass
class FreezeConfig:
    """Which parameters are frozen: regexes searched in paths like `backbone/layers/0/kernel`."""

    name: str = MISSING
    patterns: list[str] = MISSING  # every conf/freeze/*.yaml sets it; freeze=paths asks you to


@dataclass
class MethodConfig:
    """How frozen parameters are kept out of training: a name in harness.core.freezing.METHODS or `reference`."""

    name: str = "diffstate"


@dataclass
class OptimizerConfig:
    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4  # adamw only
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self) -> None:
        _one_of(self.name, OPTIMIZERS, "optimizer.name")
        _check(_positive(self.lr), "optimizer.lr", f"must be a finite number > 0, got {self.lr}")
        _check(
            math.isfinite(self.weight_decay) and self.weight_decay >= 0,
            "optimizer.weight_decay",
            f"must be a finite number >= 0, got {self.weight_decay}",
        )
        _check(self.name == "adamw" or self.weight_decay == 0, "optimizer.weight_decay",
               f"only optimizer=adamw decays weights; got {self.weight_decay} with optimizer={self.name}")
        _check(0 <= self.b1 < 1, "optimizer.b1", f"must be in [0, 1), got {self.b1}")
        _check(0 <= self.b2 < 1, "optimizer.b2", f"must be in [0, 1), got {self.b2}")
        _check(_positive(self.eps), "optimizer.eps", f"must be > 0, got {self.eps}")


@dataclass
class TrainConfig:
    steps: int = 123
    batch_size: Optional[int] = None  # rows per step, a new batch each step (harness/core/batching.py); null: full batch
    # Per-step metrics the timed loop emits: the loss alone by default, as a user's loop does; add mae to see it.
    step_metrics: list[str] = field(default_factory=lambda: ["mse"])
    log_every: Optional[int] = None  # steps per compiled call, with a progress bar; null: all steps in one call
    warmup: int = 1  # untimed calls after compiling
    repeats: int = 5  # timed calls, each from the same initial state
    measure_dispatch: bool = True  # also compile a 1-step program and time its call alone
    persistent_cache_dir: Optional[str] = None  # JAX's on-disk compilation cache; off for benchmarks

    def __post_init__(self) -> None:
        _check(self.steps >= 1, "train.steps", f"must be >= 1, got {self.steps}")
        for name in self.step_metrics:
            _one_of(name, STEP_METRICS, "train.step_metrics")
        _check("mse" in self.step_metrics, "train.step_metrics",
               f"must include 'mse' (the loss, which divergence is checked on), got {list(self.step_metrics)}")
        _at_most(self.steps, INT32_MAX, "train.steps", "the scan's step counter is int32")
        _check(self.batch_size is None or self.batch_size >= 1, "train.batch_size",
               f"must be >= 1 (or null for the full training set every step), got {self.batch_size}")
        _check(self.log_every is None or (self.log_every >= 1 and self.steps % self.log_every == 0),
               "train.log_every", f"must be >= 1 and divide train.steps={self.steps} (every chunk shares one "
                                  f"program), got {self.log_every}")
        _check(self.warmup >= 0, "train.warmup", f"must be >= 0, got {self.warmup}")
        _check(self.repeats >= 1, "train.repeats", f"must be >= 1, got {self.repeats}")


@dataclass
class DeviceConfig:
    platform: str = "cpu"
    index: int = 0  # the first device used
    count: int = 1  # > 1: data-parallel, the training batch sharded over devices index..index+count-1

    def __post_init__(self) -> None:
        _one_of(self.platform, PLATFORMS, "device.platform")
        _check(self.index >= 0, "device.index", f"must be >= 0, got {self.index}")
        _check(self.count >= 1, "device.count", f"must be >= 1, got {self.count}")
        _at_most(self.index + self.count, INT32_MAX, "device.index", "with device.count: a device number")


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
        _one_of(self.mode, WANDB_MODES, "tracker.wandb.mode")
        _check(_positive(self.init_timeout), "tracker.wandb.init_timeout",
               f"must be a finite number of seconds > 0, got {self.init_timeout}")
        for name in ("project", "entity"):  # the entity/project path of every run's URL
            value = getattr(self, name)
            if value is None and name == "entity":
                continue
            key = f"tracker.wandb.{name}"
            bad = sorted({c for c in WANDB_FORBIDDEN if c in value})
            _check(bool(value.strip()) and len(value) <= WANDB_NAME_MAX and not bad, key,
                   f"W&B accepts 1 to {WANDB_NAME_MAX} characters without any of {' '.join(WANDB_FORBIDDEN)}; "
                   f"got {value!r}" + (f" (contains {' '.join(bad)})" if bad else ""))
        for tag in self.tags:
            _check(1 <= len(tag) <= WANDB_TAG_MAX, "tracker.wandb.tags",
                   f"each tag must have 1 to {WANDB_TAG_MAX} characters (W&B's limit), got {tag!r}")


@dataclass
class TrackerConfig:
    wandb: WandbConfig = field(default_factory=WandbConfig)
    history_points: int = 1000  # per-step history (record and W&B) subsampled to at most this many

    def __post_init__(self) -> None:
        _check(self.history_points >= 2, "tracker.history_points", f"must be >= 2, got {self.history_points}")


@dataclass
class VectorizeConfig:
    """Learning rates and/or seeds run as ONE vmapped program; each point is still its own run."""

    lr: list[float] = field(default_factory=list)
    seed: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        for lr in self.lr:
            _check(_positive(lr), "vectorize.lr", f"every value must be a finite number > 0, got {lr}")
        for seed in self.seed:
            _seed(seed, "vectorize.seed")

    @property
    def enabled(self) -> bool:
        return bool(self.lr or self.seed)


@dataclass
class Config:
    name: str = "default"  # the study: results/<name>/<timestamp>/ and the W&B group
    results_dir: str = "results"
    resume: Optional[str] = None
    report: bool = True  # after a multirun: report.md, figures and Parquet in the sweep dir (and W&B when on)
    fine_tuning: Optional[str] = None  # the strategy's name, set by conf/strategy/*.yaml (a report axis)
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    freeze: FreezeConfig = field(default_factory=FreezeConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    vectorize: VectorizeConfig = field(default_factory=VectorizeConfig)

    def __post_init__(self) -> None:
        _check_paths(self.name, self.results_dir)
        _check(not (self.vectorize.enabled and self.device.count > 1), "vectorize",
               "runs on one device; use device.count=1 with vectorize.lr / vectorize.seed")
        _check(not (self.vectorize.enabled and self.train.log_every), "train.log_every",
               "vectorized points train in one call; unset train.log_every with vectorize.lr / vectorize.seed")
        _check(self.freeze.name != "lora" or self.model.lora_rank is not None, "freeze",
               "lora freezes the base weights and trains adapters: set model.lora_rank (e.g. model.lora_rank=4)")
        batch = self.train.batch_size
        _check(batch is None or batch <= self.task.n_train, "train.batch_size",
               f"must be <= task.n_train={self.task.n_train} (the training rows), got {batch}")
        rows, what = (self.task.n_train, "task.n_train") if batch is None else (batch, "train.batch_size")
        _check(
            rows % self.device.count == 0,
            "device.count",
            f"{self.device.count} devices cannot split {what}={rows} rows per step evenly; "
            f"use a count that divides it",
        )


def register() -> None:
    """Registers the schema conf/config.yaml names first, and the `first` resolver it uses."""
    ConfigStore.instance().store(name="schema", node=Config)
    if not OmegaConf.has_resolver("first"):
        OmegaConf.register_new_resolver("first", lambda *values: next((v for v in values if v), None))


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


def check_keys(cfg: DictConfig) -> None:
    """Every key is a setting of the schema and none was removed: `+train.stepz=5` and `~name` are errors.

    Hydra lets `+key=value` add a key the schema does not have (silently ignored
    afterwards) and `~key` remove a top-level one (then a path built from it fails).
    """
    plain = OmegaConf.to_container(cfg, resolve=False)
    plain.pop("hydra", None)
    schema = OmegaConf.to_container(OmegaConf.structured(Config), resolve=False)
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


def check_startup(cfg: DictConfig) -> None:
    """What must hold before a command writes anything: known keys, the result paths, the tracker.

    Run once per command by harness.jobs.callbacks, before any directory is made; the full
    check (`to_spec`) runs again in each job, where a swept value can still be wrong.
    """
    check_keys(cfg)
    _check_paths(str(cfg.name), str(cfg.results_dir))
    _converted(lambda: OmegaConf.to_object(cfg.tracker))


def to_spec(cfg: DictConfig) -> Config:
    """Validated `Config` from a composed config; raises ConfigError naming the field."""
    check_keys(cfg)
    return _converted(lambda: OmegaConf.to_object(cfg))


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
