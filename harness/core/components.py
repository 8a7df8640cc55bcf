"""Components by name: the task, the model and the freeze method a run is made of.

The registry is the config groups: `conf/task/<name>.yaml`, `conf/model/<name>.yaml` and
`conf/method/<name>.yaml` each name their component with Hydra's `_target_`
("package.module.attribute"), which is imported only when it is chosen, as MLCommons
AlgoPerf's workload registry maps a name to "module:class". Nothing here imports JAX;
choosing a built-in imports its module, which does.

A user's own component is the same thing from the command line:
`harness model._target_=my_pkg.models.TinyCNN task._target_=my_pkg.data.make_task`.
Setting a group's `_target_` without choosing an option of that group picks its `custom`
option (conf/task/custom.yaml, conf/model/custom.yaml: the harness's own keys only), so no
built-in's settings are passed to your callable (`with_custom_options`).

A component's settings are the other keys of its config node. A built-in declares them
as a dataclass, the `settings` attribute of its target: a key it does not have, a value
of the wrong type and a value out of range are one-line errors naming the setting. A
target without `settings` is checked against its signature instead.

>>> with_custom_options(["-m", "model._target_=my.Net", "freeze=paths"])
['-m', 'model=custom', 'model._target_=my.Net', 'freeze=paths']
>>> with_custom_options(["model=mlp", "model._target_=my.Net"])
['model=mlp', 'model._target_=my.Net']
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import re
from dataclasses import dataclass, field
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from harness.core.checks import ConfigError, check, positive, seed_in_range

GROUPS = ("task", "model")  # groups whose options carry their own settings
HARNESS_KEYS = {"task": ("_target_", "name", "seed", "pretrain_steps", "pretrain_lr", "pretrain_weight_decay",
                         "val_fraction"),
                "model": ("_target_", "name")}
# What the harness passes a target itself, besides its settings.
PROVIDED = {"task": ("seed",), "model": ("in_shape", "out_dim", "rngs", "vocab")}
# The seed of a task whose config sets none (an own task YAML without `seed:`); every built-in sets it.
DEFAULT_SEED = 123


def with_custom_options(overrides: list[str]) -> list[str]:
    """`<group>._target_=...` with no `<group>=...` among the overrides chooses `<group>=custom` just before it
    (among the overrides: Hydra's flags such as -m keep their place)."""
    chosen = list(overrides)
    for group in GROUPS:
        sets_target = [i for i, o in enumerate(chosen) if re.match(rf"\+{{0,2}}{group}\._target_=", o)]
        if sets_target and not any(re.match(rf"[+~]{{0,2}}{group}=", o) for o in chosen):
            chosen.insert(sets_target[0], f"{group}=custom")
    return chosen


def target_name(target: str) -> str:
    """The name a user's component goes by unless its `name` is set: the target's last part.

    >>> target_name("my_pkg.models.TinyCNN")
    'TinyCNN'
    """
    return str(target).replace(":", ".").rsplit(".", 1)[-1]


@functools.cache
def load(target: str) -> Any:
    """The object `target` names ("package.module.attribute", or "package.module:attribute")."""
    module_name, sep, attribute = target.partition(":") if ":" in target else target.rpartition(".")
    if not sep or not module_name or not attribute:
        raise ValueError(f"{target!r} is not of the form package.module.attribute")
    obj = importlib.import_module(module_name)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass
class Chosen:
    """A component as the config chose it: its name, target and validated settings (keyword arguments)."""

    name: str
    target: str
    settings: dict[str, Any] = field(default_factory=dict)

    def load(self) -> Any:
        return load(self.target)


@dataclass
class TaskSpec(Chosen):
    """The task: its component, the seed its data is drawn from, and pretraining steps on its source task."""

    seed: int = DEFAULT_SEED
    pretrain_steps: int = 0  # AdamW steps on the task's source task before the run; 0: start from a fresh model
    pretrain_lr: float = 1e-2  # their learning rate (AdamW, full batch)
    pretrain_weight_decay: float = 0.0  # their weight decay
    # The share of the training rows held out for validation (harness.core.tasks); None: the task's own
    # validation rows when it returns them, else DEFAULT_VAL_FRACTION of its training rows.
    val_fraction: float | None = None


@dataclass
class ModelSpec(Chosen):
    """The model: its component and settings; the harness adds in_shape, out_dim and rngs."""


def choose(group: str, node: dict[str, Any]) -> TaskSpec | ModelSpec:
    """The validated component of `group` ("task" or "model") from its config node."""
    node = dict(node)
    target = node.get("_target_")
    check(isinstance(target, str) and bool(target.strip()), f"{group}._target_",
          f"is required: the component's 'package.module.attribute', e.g. {group}._target_=my_pkg.{group}s.Mine")
    name = str(node.get("name") or target_name(target))
    try:
        obj = load(target)
    except (ImportError, AttributeError, ValueError) as err:
        raise ConfigError(f"{group}._target_", f"cannot import {target!r}: {type(err).__name__}: {err}") from None
    check(callable(obj), f"{group}._target_", f"{target!r} is a {type(obj).__name__}, not a class or function "
                                              f"that makes a {group}")
    given = {k: _plain(v) for k, v in node.items() if k not in HARNESS_KEYS[group]}
    settings = _checked(group, name, obj, given)
    if group == "model":
        return ModelSpec(name, target, settings)
    seed, steps = node.get("seed", DEFAULT_SEED), node.get("pretrain_steps", 0)
    lr, decay = node.get("pretrain_lr", 1e-2), node.get("pretrain_weight_decay", 0.0)
    check(isinstance(seed, int) and not isinstance(seed, bool), "task.seed", f"must be an integer, got {seed!r}")
    seed_in_range(seed, "task.seed")
    check(isinstance(steps, int) and not isinstance(steps, bool) and steps >= 0, "task.pretrain_steps",
          f"must be an integer >= 0, got {steps!r}")
    check(isinstance(lr, (int, float)) and not isinstance(lr, bool) and positive(lr), "task.pretrain_lr",
          f"must be a finite number > 0, got {lr!r}")
    check(isinstance(decay, (int, float)) and not isinstance(decay, bool) and (decay == 0 or positive(decay)),
          "task.pretrain_weight_decay", f"must be a finite number >= 0, got {decay!r}")
    val = node.get("val_fraction")
    check(val is None or (isinstance(val, (int, float)) and not isinstance(val, bool) and 0 < val < 1),
          "task.val_fraction", f"must be a number in (0, 1) (the share of training rows held out) or null, got {val!r}")
    return TaskSpec(name, target, settings, seed=seed, pretrain_steps=steps, pretrain_lr=float(lr),
                    pretrain_weight_decay=float(decay), val_fraction=None if val is None else float(val))


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _checked(group: str, name: str, obj: Any, given: dict[str, Any]) -> dict[str, Any]:
    """`given` as the component takes it: checked against its `settings` dataclass, or else its signature."""
    declared = getattr(obj, "settings", None)
    if dataclasses.is_dataclass(declared) and isinstance(declared, type):
        allowed = [f.name for f in dataclasses.fields(declared)]
        _known(group, name, given, allowed)
        try:
            settings = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(declared), given))
        except ConfigError as err:
            raise ConfigError(f"{group}.{err.field}", err.message) from None
        except OmegaConfBaseException as err:
            cause = err.__cause__ or err.__context__
            if isinstance(cause, ConfigError):
                raise ConfigError(f"{group}.{cause.field}", cause.message) from None
            key = f"{group}.{err.full_key or name}"
            if isinstance(err, MissingMandatoryValue):
                raise ConfigError(key, f"is required by {group} {name!r}; set it, e.g. +{key}=...") from None
            raise ConfigError(key, str(err).splitlines()[0]) from None
        return {f: getattr(settings, f) for f in allowed}
    parameters = signature(obj)
    if parameters is None:  # a builtin without a signature: its own error will name the setting
        return given
    if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        _known(group, name, given, [p for p, v in parameters.items() if p not in PROVIDED[group]
                                    and v.kind in (v.POSITIONAL_OR_KEYWORD, v.KEYWORD_ONLY)])
    return given


def signature(obj: Any) -> dict[str, inspect.Parameter] | None:
    """The keyword parameters a callable takes (a class: its __init__'s; nnx's metaclass hides them), or None."""
    try:
        if isinstance(obj, type):
            return dict(list(inspect.signature(obj.__init__).parameters.items())[1:])
        return dict(inspect.signature(obj).parameters)
    except (TypeError, ValueError):
        return None


def _known(group: str, name: str, given: dict[str, Any], allowed: list[str]) -> None:
    for key in given:
        check(key in allowed, f"{group}.{key}", f"not a setting of {group} {name!r}; {group} {name!r} has: "
                                                f"{', '.join(allowed) or 'no settings'}")
