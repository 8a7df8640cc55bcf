"""`hydra/sweeper=tuned`: every point of the grid tuned on the same quasi-random trials, trained as vectorized groups.

Each job of the grid (a method, a strategy, ...) becomes `tune.trials` trials per study: draws from the
search space of its optimizer (`hydra.sweeper.tune.space.<optimizer>`, harness.core.config.TuneConfig),
each as TRACED overrides (`optimizer.lr=0.0031 task.seed=0`). Draws depend on the study alone, so every
method gets the same trials and they pair. Trials of one job differ only in traced values: the vectorized
sweeper trains them as one vmapped program (harness/jobs/grouping.py), each trial still its own record.
Study k draws with seed `tune.seed + k` and trains with `task.seed` + k.

The best trial per method is chosen on validation by harness.analysis.tuning, never on test. Once every trial
has ended, each chosen trial that trained in a vectorized group is trained again alone (one job each, `rerun_of`
naming the trial), so that its step time and time to target are its own: the sweep's plan lists these reruns, and
a resume trains again only those without a completed record.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from harness.core.checks import ConfigError
from harness.core.config import TUNABLE, tune_config
from harness.jobs.grouping import points_of
from harness.jobs.store import read_records, write_json_atomic
from harness.jobs.sweep_plan import SWEEP_FILE, read_plan
from hydra_plugins.harness_tuned_sweeper.trials import draws
from hydra_plugins.harness_vectorized_sweeper.sweeper import VectorizedSweeper

_TUNED = {*TUNABLE.values(), "task.seed"}  # what the sweeper sets: a job may not set it itself


def _value(job: list[str], key: str) -> str | None:
    found = [o.partition("=")[2] for o in job if o.partition("=")[0].lstrip("+") == key]
    return found[-1] if found else None


def experiment_seeds(jobs: list[list[str]], config) -> list[list[str]]:
    """The grid less the `task.seed` axis an experiment's own sweep params give (experiment=digits sweeps seeds
    0,1): the studies set the seed here. Typed on the command line, task.seed is still refused (`trials`)."""
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    if "task.seed" not in params:
        return jobs
    kept = [[o for o in job if o.partition("=")[0].lstrip("+") != "task.seed"] for job in jobs]
    return [list(job) for job in dict.fromkeys(tuple(job) for job in kept)]


def trials(jobs: list[list[str]], config) -> list[list[str]]:
    """Each job of the grid as its trials, study by study; a ConfigError naming what is wrong."""
    tune = tune_config(config.hydra.sweeper.tune)
    out = []
    for job in experiment_seeds(jobs, config):
        for o in job:
            key = o.partition("=")[0].lstrip("+~")
            if key in _TUNED:
                raise ConfigError(key, f"is set by hydra/sweeper=tuned (trials and studies); remove {o!r}")
        optimizer = _value(job, "optimizer") or str(OmegaConf.select(config, "optimizer.name"))
        if optimizer not in tune.space:
            raise ConfigError("hydra.sweeper.tune.space", f"has no search space for optimizer={optimizer}; it has: "
                                                          f"{', '.join(tune.space)}")
        base_seed = int(OmegaConf.select(config, "task.seed", default=0) or 0)
        for study in range(tune.studies):
            for trial in draws(tune.space[optimizer], tune.trials, tune.sampler, tune.seed + study):
                out.append([*job, *trial, f"task.seed={base_seed + study}"])
    return out


class TunedSweeper(VectorizedSweeper):
    def __init__(self, max_batch_size: int | None = None, params: dict[str, str] | None = None, seed: int = 0,
                 tune=None):
        super().__init__(max_batch_size=max_batch_size, params=params, seed=seed)  # `tune`: read from the config

    @staticmethod
    def planned(jobs: list[list[str]], seed: int | None, config) -> list[list[str]]:
        return VectorizedSweeper.planned(trials(jobs, config), seed, config)

    def split_arguments(self, overrides, max_batch_size):
        try:
            return super().split_arguments(overrides, max_batch_size)
        except ConfigError as err:  # one line, as every bad input (harness.core.checks)
            print(f"error: {err}", file=sys.stderr, flush=True)
            sys.exit(1)

    def said(self, points: int, jobs: list[list[str]]) -> None:
        tune = tune_config(self.config.hydra.sweeper.tune)
        trained = sum(len(points_of(job)) for job in jobs)
        seeds = (OmegaConf.select(self.config, "hydra.sweeper.params") or {}).get("task.seed")
        if seeds is not None:
            print(f"tuned sweeper: the experiment's task.seed sweep ({seeds}) is left out: study k trains with "
                  "task.seed + k (hydra.sweeper.tune.studies)", flush=True)
        train = self.config.train
        how = ("one after another in one job: train.eval_every / log_every evaluate during training, which splits "
               "the one call a vectorized group trains in" if train.eval_every or train.log_every else
               f"as one vectorized job of up to vectorize.max_points={self.config.vectorize.max_points}")
        print(f"tuned sweeper: {trained // (tune.trials * tune.studies)} grid points x {tune.trials} trials x "
              f"{tune.studies} stud{'y' if tune.studies == 1 else 'ies'} = {trained} runs in {len(jobs)} "
              f"job{'' if len(jobs) == 1 else 's'} (trials of one point train {how})", flush=True)

    def sweep(self, arguments: list[str]) -> Any:
        returns = super().sweep(arguments)
        first = sum(len(batch) for batch in self.overrides)  # the job numbers after the trials'
        batch = self.reruns(first)
        if batch:
            self.validate_batch_is_legal(batch)
            returns.append(self.launcher.launch(batch, initial_job_idx=first))
        return returns

    def reruns(self, first: int) -> list[list[str]]:
        """Each chosen trial that trained in a vectorized group, as a job of its own numbered from `first`: the
        trial's overrides and `rerun_of=<job>/<point>`. Added to the sweep's plan before any runs."""
        from harness.analysis.frames import frame
        from harness.analysis.tuning import timed_reruns

        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        read, _ = read_records(sweep_dir)  # unreadable records: their trials are no candidates
        tune = OmegaConf.to_container(self.config.hydra.sweeper.tune, resolve=True)
        chosen = timed_reruns(frame(read), tune) if read else None
        if chosen is None or chosen.empty:
            return []
        # A trial's overrides as this command launched its job (a resume's own `resume=` and all): <job>/<point>.
        launched = [job for batch in self.overrides for job in batch]
        jobs = []
        for path in chosen["path"]:
            trial = Path(path).parent.relative_to(sweep_dir).as_posix()
            num, point = (int(part) for part in trial.split("/"))
            jobs.append([*points_of(launched[num])[point], f"rerun_of={trial}"])
        plan = read_plan(sweep_dir)
        if plan is not None:  # a plan that does not read is said by the sweep's summary and report already
            plan["reruns"] = [{"num": first + i, "overrides": job, "rerun_of": job[-1].partition("=")[2]}
                              for i, job in enumerate(jobs)]
            try:
                write_json_atomic(sweep_dir / SWEEP_FILE, plan)
            except OSError as err:  # the reruns still train; only the plan's count of them is lost
                print(f"warning: the reruns are not in the sweep's plan: {err.strerror or err}", flush=True)
        print(f"tuned sweeper: {len(jobs)} chosen trials trained in vectorized groups; each trains again alone for "
              f"its timed figures (jobs #{first}-#{first + len(jobs) - 1})", flush=True)
        return jobs
