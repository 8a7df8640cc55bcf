"""`hydra/sweeper=grid`, the default: Hydra's basic sweeper, checking a batch with one compose per choice of groups.

Before it launches a batch, Hydra's basic sweeper composes every job's config to catch a bad
override before any job runs. This sweeper composes one job per distinct choice of config groups
(`method=`, `freeze=`, `experiment=`, `hydra/...`) and applies each other override (`optimizer.lr=0.01`)
to that config, once per distinct override: the same checks (an unknown option, a key typo, a value of
the wrong type) at the cost of one compose per group choice. The launcher then builds each job's config
the same way (harness.jobs.sweep_compose, which this check's composes fill); an override that cannot be
applied on its own (`+key=...` repeated) gets Hydra's whole compose of its job, and Hydra's message.
A new sweep refused here (`method=diffstate,difstate`) leaves no sweep directory behind.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Sequence
from pathlib import Path

from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from harness.jobs.sweep_compose import chooses_group

# What a new sweep's directory holds before its first job runs (harness.jobs.callbacks, Hydra's multirun.yaml).
BEFORE_ANY_JOB = {".harness-claim", ".harness.lock", "sweep.json", "multirun.yaml"}


class GridSweeper(BasicSweeper):
    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        try:
            self._check(batch)
        except Exception:
            self._discard_unused_directory()
            raise

    def _discard_unused_directory(self) -> None:
        """A new sweep refused before any job ran leaves no directory behind (a resume's is never touched)."""
        directory = Path(str(self.config.hydra.sweep.dir))
        if self.batch_index == 1 and not self.config.get("resume") and directory.is_dir() and {
                p.name for p in directory.iterdir()} <= BEFORE_ANY_JOB:
            shutil.rmtree(directory, ignore_errors=True)

    def _check(self, batch: Sequence[Sequence[str]]) -> None:
        loader = self.hydra_context.config_loader
        parser = OverridesParser.create()
        checked: dict[tuple[str, ...], tuple[DictConfig, set[str]]] = {}
        for overrides in batch:
            parsed = parser.parse_overrides(list(overrides))
            choice = tuple(o.input_line for o in parsed if chooses_group(o, loader))
            values = [o for o in parsed if not chooses_group(o, loader)]
            if choice not in checked:  # the first job of this choice: composed whole, as Hydra checks it
                composed = loader.load_sweep_config(master_config=self.config, sweep_overrides=list(overrides))
                checked[choice] = (composed, {o.input_line for o in values})
                continue
            composed, seen = checked[choice]
            new = [o for o in values if o.input_line not in seen]
            if not new:
                continue
            scratch = copy.deepcopy(composed)
            try:
                ConfigLoaderImpl._apply_overrides_to_config(new, scratch)
            except (ConfigCompositionException, OmegaConfBaseException):
                # Hydra's own answer for this job (an override that cannot apply on top of another is checked whole).
                loader.load_sweep_config(master_config=self.config, sweep_overrides=list(overrides))
            seen.update(o.input_line for o in new)

