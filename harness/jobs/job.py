"""A Hydra job, resolved once at its start: everything after it reads this, never the Hydra config again.

`start` turns the composed config into plain data and typed settings, each once:

    config    the resolved config (plain dicts; null where an interpolation does not resolve)
    spec      the validated `Config` (harness/core/config.py), or the error that says why there is none
    wandb     the W&B settings with W&B's environment variables applied, or None (they do not validate)
    info      who runs it: name, number, overrides, output and sweep dirs, Slurm (the record's `job`)
    points    a vectorized job's points, each its own run: values, config and overrides as if run alone

Then harness/core/run.py trains from `spec`, harness/jobs/record.py builds each record from `info`,
`config` and the result, and harness/jobs/store.py and harness/jobs/tracking.py write it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from harness.core.checks import ConfigError
from harness.core.config import (
    Config,
    WandbConfig,
    resolved,
    resolved_or_null,
    to_spec,
    with_traced,
)
from harness.core.fields import as_recorded
from harness.jobs.grouping import POINTS, point_overrides
from harness.jobs.record import now
from harness.jobs.slurm import slurm_job
from harness.jobs.store import point_count
from harness.jobs.tracking import WANDB_OFFLINE_FLAG, wandb_settings


@dataclass(frozen=True)
class Point:
    """One run of a job: the job itself, or one of its vectorized points (trained in one program with the others)."""

    index: int | None  # its place among the job's points; None: the job is one run
    spec: Config | Exception  # its validated config, or why it has none (its failed record)
    config: dict[str, Any]  # as its record holds it: the job's, with the point's own values
    info: dict[str, Any]  # its record's `job`: its name, output dir and overrides as if it had run alone


@dataclass(frozen=True)
class Job:
    """One Hydra job as plain data and typed settings (see the module's docstring); made by `start`."""

    config: dict[str, Any]
    spec: Config | Exception  # an Exception: the job's failed record says it
    wandb: WandbConfig | None
    info: dict[str, Any]
    out_dir: Path
    offline_flag: Path | None  # a sweep's: W&B online was not reached, later jobs go offline
    started: str
    resolved: bool = True  # False: an interpolation does not resolve (its value is null in `config`)
    _points: tuple[tuple[dict[str, Any], list[str]], ...] = ()  # a vectorized job's (values, overrides) per point

    @property
    def vectorized(self) -> bool:
        """Whether the job trains vectorized points (its records in <job>/<point>/), however many."""
        vectorize = self.config.get("vectorize") or {}
        return bool(vectorize.get("lr") or vectorize.get("seed") or vectorize.get("points"))

    @property
    def runs(self) -> int:
        """How many records the job writes: 1, or one per vectorized point."""
        return point_count(self.config)

    def points(self, only: set[int] | None = None) -> list[Point]:
        """The job's runs: itself, or its vectorized points (those in `only`), each with its own config and info.

        A vectorized job whose config does not validate is one run: its failed record, in the job's dir.
        """
        if not self._points:
            return [Point(None, self.spec, self.config, self.info)]
        out = []
        for i, (values, overrides) in enumerate(self._points):
            if only is not None and i not in only:
                continue
            try:
                point = with_traced(self.spec, values)
            except ConfigError as err:
                point = err
            # The job's config with the point's own values: new dicts where they differ, the rest shared (read only).
            config = {**self.config, "vectorize": {**self.config["vectorize"], "lr": [], "seed": [], "points": []}}
            for key, value in values.items():
                section, name = key.split(".")
                config[section] = {**config[section],
                                   name: getattr(getattr(point, section), name) if isinstance(point, Config) else value}
            out.append(Point(i, point, config, {**self.info, "name": f"{self.info['name']}-{i}",
                                                "output_dir": str(self.out_dir / str(i)), "overrides": overrides,
                                                "vectorized": {"point": i, "points": len(self._points)}}))
        return out


def job_info(hc: DictConfig, multirun: bool) -> dict[str, Any]:
    """The record's `job`: who ran it, from Hydra's node of the job's config."""
    output_dir = hc.runtime.output_dir
    return {
        "name": f"{hc.job.name}-{hc.job.num}" if multirun else hc.job.name,
        "num": hc.job.get("num"),
        "overrides": OmegaConf.to_container(hc.overrides.task, resolve=False),
        "override_dirname": hc.job.override_dirname,
        "output_dir": output_dir,
        # the sweep's (or the single run's) directory: its name is the W&B group's timestamp
        "sweep_dir": str(Path(output_dir).parent) if multirun else output_dir,
        "slurm": slurm_job(),  # None outside Slurm
    }


def start(cfg: DictConfig, hc: DictConfig, multirun: bool) -> Job:
    """The job of `cfg` (its Hydra node `hc`), resolved once: its config, spec, W&B settings and points."""
    info = job_info(hc, multirun)
    spec: Config | Exception
    try:
        config, whole = as_recorded(resolved(cfg)), True
    except ConfigError as err:  # a swept value `${oops}`: this job's failed record, and the sweep goes on
        config, spec, whole = as_recorded(resolved_or_null(cfg)), err, False
    else:
        try:
            spec = to_spec(cfg)
        except Exception as err:  # noqa: BLE001 - a value out of range, a component that fails to load: the same
            spec = err
        if isinstance(spec, Config) and isinstance(config.get("task"), dict) and "seed" not in config["task"]:
            config["task"]["seed"] = spec.task.seed  # an own task YAML without one: the record says what it ran with
    out_dir = Path(hc.runtime.output_dir)
    job = Job(config, spec, wandb_settings(config, info["overrides"]), info, out_dir,
              Path(hc.sweep.dir) / WANDB_OFFLINE_FLAG if multirun else None, now(), whole)
    return dataclasses.replace(job, _points=tuple(_point_values(job)))


def _point_values(job: Job) -> list[tuple[dict[str, Any], list[str]]]:
    """(values, overrides as if run alone) of each point of a vectorized job, read once from its config."""
    if not job.vectorized or not isinstance(job.spec, Config):
        return []
    vectorize = job.spec.vectorize
    if vectorize.enabled:  # every (lr, seed) pair
        from harness.core.run import points

        return [({"optimizer.lr": p.optimizer.lr, "task.seed": p.task.seed},
                 [*job.info["overrides"], f"optimizer.lr={p.optimizer.lr}", f"task.seed={p.task.seed}"])
                for p in points(job.spec)]
    # The points the vectorized sweeper grouped, each as its TRACED overrides' text.
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    base = [o for o in job.info["overrides"] if not o.startswith(f"{POINTS}=")]
    return [({o.key_or_group: o.value() for o in parser.parse_overrides(text.split())}, point_overrides(base, text))
            for text in vectorize.points]
