"""`hydra/launcher=slurm`: hydra-submitit-launcher's SlurmLauncher, except that a job Slurm kills is a record.

Upstream (hydra-submitit-launcher 1.2.0) waits for the jobs with `job.results()`, which raises
submitit's UncompletedJobError for a job that ended without a result: time limit, out-of-memory
kill, `scancel`, node failure. The sweep then stops with that traceback, before the summary and
the report, and the killed job has no record. Here each job is waited for on its own: a job that
ended without a result gets a `crashed` record in its job dir (harness/jobs/slurm.py: Slurm's state and
the tail of the job's error stream), and the sweep goes on. `resume=<sweep dir>` reruns it.

In the job, submitit's warning signal (USR2, `signal_delay_s` before the time limit, or on
preemption) is ignored until Python runs, then logged and ignored: submitit would raise UncompletedJobError at whatever Python
line runs then (a job that would have finished in time becomes a failure), and the harness does
not checkpoint, so the job runs until it ends or Slurm ends it.

Imports stay light: Hydra imports every module under hydra_plugins at each start-up.
"""

from __future__ import annotations

import logging
import shlex
import signal
import sys
from pathlib import Path
from typing import Any, List, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from omegaconf import OmegaConf, open_dict

try:
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
except ImportError:  # the [slurm] extra is not installed: no launcher (and no warning at every start-up)
    SlurmLauncher = None

log = logging.getLogger(__name__)


def _log_warning_signal(signum: int, frame: Any) -> None:
    log.warning("Slurm's warning signal %s: the time limit is near or the job is preempted; "
                "the job goes on until it ends or Slurm ends it", signal.Signals(signum).name)


if SlurmLauncher is not None:

    class HarnessSlurmLauncher(SlurmLauncher):
        def __call__(self, *args: Any, **kwargs: Any) -> JobReturn:
            import submitit

            signal.signal(getattr(signal, "SIG" + submitit.JobEnvironment.USR_SIG), _log_warning_signal)
            return super().__call__(*args, **kwargs)

        def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
            """Upstream's launch (the executor and the array submission unchanged), then one wait per job."""
            import submitit

            assert self.config is not None and len(job_overrides) > 0
            init_keys = {"submitit_folder", "max_num_timeout"}
            # Slurm sends its warning signal (USR2) up to 60 s before `signal_delay_s` asks: with a short time limit,
            # at once, before Python has a handler, and USR2's default action kills the job. The job's Python
            # starts with USR2 ignored (an ignored signal stays ignored across exec) until submitit's handler and
            # then ours (`__call__`) are installed.
            init = {"folder": self.params["submitit_folder"],
                    f"{self._EXECUTOR}_python": "/bin/sh -c 'trap \"\" USR2; exec \"$@\"' sh "
                                                + shlex.quote(sys.executable)}
            if "max_num_timeout" in self.params:
                init[f"{self._EXECUTOR}_max_num_timeout"] = self.params["max_num_timeout"]
            executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init)
            baseparams = set(OmegaConf.structured(BaseQueueConf).keys())
            executor.update_parameters(**{k if k in baseparams else f"{self._EXECUTOR}_{k}": v
                                          for k, v in self.params.items() if k not in init_keys})
            log.info(f"Submitit '{self._EXECUTOR}' sweep output dir : {self.config.hydra.sweep.dir}")
            sweep_dir = Path(str(self.config.hydra.sweep.dir))
            sweep_dir.mkdir(parents=True, exist_ok=True)
            if "mode" in self.config.hydra.sweep:
                sweep_dir.chmod(int(str(self.config.hydra.sweep.mode), 8))
            job_params: List[Any] = []
            for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
                log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
                job_params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}",
                                   Singleton.get_state()))
            jobs = executor.map_array(self, *zip(*job_params))
            return [self._wait(job, overrides, idx) for job, (overrides, _, idx, _, _) in zip(jobs, job_params)]

        def _wait(self, job: Any, overrides: List[str], idx: int) -> JobReturn:
            """The job's own return, or, for a job that ended without one, a `crashed` record."""
            from submitit.core.utils import UncompletedJobError

            try:
                return job.results()[0]
            except UncompletedJobError as err:
                # Only a job with no result at all: a job that raised past Hydra (FailedJobError,
                # e.g. resume refusing another sweep's dir) still stops the sweep, as upstream.
                from harness.jobs.slurm import record_killed_job

                assert self.hydra_context is not None and self.config is not None
                cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
                with open_dict(cfg.hydra.job):
                    cfg.hydra.job.num = idx
                    cfg.hydra.job.id = job.job_id
                out_dir = record_killed_job(cfg, job, err)
                # COMPLETED for Hydra: the outcome is handled (recorded); the sweep's exit code comes
                # from the records (harness.jobs.callbacks), as for every other job.
                return JobReturn(overrides=overrides, cfg=cfg, hydra_cfg=cfg.hydra, working_dir=str(out_dir),
                                 task_name=cfg.hydra.job.name, status=JobStatus.COMPLETED, _return_value=None)
