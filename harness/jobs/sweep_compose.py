"""A sweep's jobs composed once per choice of config groups, each job's other overrides applied to a copy.

Every launcher (basic, joblib, Slurm) asks Hydra's `load_sweep_config` for each job's config, and Hydra
composes it whole: the defaults tree, every YAML read and merged (~0.2 s a job on 2 cores, most of a
cache-hit run's overhead). Jobs of a sweep mostly differ in values (`optimizer.lr=0.01`, `task.seed=1`)
on one choice of groups (`method=`, `model=`, `experiment=`, `hydra/...`). Here the choice is composed
once per process and each job's value overrides are applied to a deep copy, as Hydra's own compose
applies them after merging the defaults (`_apply_overrides_to_config`); then the fields Hydra derives
from the overrides (`hydra.overrides.task`, `hydra.job.override_dirname`, the run-time cwd and copied
environment) are set as Hydra sets them. tests/test_sweep_compose.py checks the result equals Hydra's
compose, hydra node included, for group choices, value, `+`, `~` and hydra overrides. An override that
cannot be applied on the copy gets Hydra's own whole compose, and so Hydra's own error.
"""

from __future__ import annotations

import copy
import os
from typing import Any

from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

_hydras_compose = ConfigLoaderImpl.load_sweep_config


def chooses_group(override: Override, loader: Any) -> bool:
    """Whether `override` chooses a config group's option (or is Hydra's own): what only a compose can apply."""
    if override.is_hydra_override() or override.package is not None:
        return True
    try:
        return loader.repository.group_exists(override.key_or_group)
    except Exception:  # noqa: BLE001 - a loader without a repository: compose it whole
        return True


def _load_sweep_config(self: ConfigLoaderImpl, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
    parsed = OverridesParser.create().parse_overrides(list(sweep_overrides))
    values = [o for o in parsed if not chooses_group(o, self)]
    if not values:
        return _hydras_compose(self, master_config, sweep_overrides)
    choice = [o.input_line for o in parsed if chooses_group(o, self)]
    cache = self.__dict__.setdefault("_harness_composed", {})
    key = (id(master_config), tuple(master_config.hydra.overrides.hydra), tuple(choice))
    if key not in cache:
        cache[key] = _hydras_compose(self, master_config, choice)
    cfg = copy.deepcopy(cache[key])
    try:
        ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
    except (ConfigCompositionException, OmegaConfBaseException):
        return _hydras_compose(self, master_config, sweep_overrides)  # Hydra's own answer, its own message
    task = [o for o in parsed if not o.is_hydra_override()]
    with open_dict(cfg.hydra):
        cfg.hydra.overrides.task = [o.input_line for o in task]
        cfg.hydra.job.override_dirname = get_overrides_dirname(
            overrides=task, kv_sep=cfg.hydra.job.config.override_dirname.kv_sep,
            item_sep=cfg.hydra.job.config.override_dirname.item_sep,
            exclude_keys=cfg.hydra.job.config.override_dirname.exclude_keys)
        cfg.hydra.runtime.cwd = os.getcwd()
        for name in cfg.hydra.job.env_copy:
            cfg.hydra.job.env_set[name] = os.environ[name]
    OmegaConf.copy_cache(from_config=master_config, to_config=cfg)
    return cfg


def compose_once_per_choice() -> None:
    """Makes Hydra's `load_sweep_config` compose each choice of groups once (in this process)."""
    ConfigLoaderImpl.load_sweep_config = _load_sweep_config
