"""Slurm in the records: which Slurm job ran a job, and the record of a job Slurm ended without a result.

Every record written inside a Slurm job carries `job.slurm` ({job_id, node, partition}; harness/jobs/app.py).
A job Slurm ends before it writes its own result (time limit, memory, scancel, node failure) gets a
record from the sweep's process (hydra_plugins/harness_slurm_launcher), in the job's dir, in the
shape of `harness.jobs.app.run_job`'s records: status `crashed`, the job's resolved config and config
hash (so `resume` reruns it and reports group it), and Slurm's side of the story:

    "status": "crashed",
    "error": {"type": "SlurmJobEnded", "message": "Slurm job 7_2 ended TIMEOUT before ...", "stderr_tail": "..."},
    "job": {"name", "num", "overrides", "override_dirname", "output_dir",
            "slurm": {"job_id": "7_2", "state": "TIMEOUT", "exit_code": "0:0", "elapsed": "00:01:05",
                      "start", "end", "node", "time_limit", "req_mem",
                      "steps": {"batch": {"state", "exit_code", "max_rss"}, "0": {...}}, "stdout", "stderr"}},
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from harness.jobs import record as records
from harness.jobs.store import RECORD_NAME, already_done, write_json_atomic
from harness.jobs.tracking import log_record, wandb_settings

STDERR_LINES = 40
_SACCT_FIELDS = {"State": "state", "ExitCode": "exit_code", "Elapsed": "elapsed", "Start": "start", "End": "end",
                 "NodeList": "node", "Timelimit": "time_limit", "ReqMem": "req_mem"}


def slurm_job() -> dict[str, str | None] | None:
    """The Slurm job this process runs in, None outside Slurm: which job of a cluster sweep made a record."""
    if "SLURM_JOB_ID" not in os.environ:
        return None
    array_job, array_task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return {"job_id": f"{array_job}_{array_task}" if array_job and array_task else os.environ["SLURM_JOB_ID"],
            "node": os.environ.get("SLURMD_NODENAME"), "partition": os.environ.get("SLURM_JOB_PARTITION")}


def sacct(job_id: str) -> dict[str, Any]:
    """What Slurm's accounting says of one job, and of its steps; {} when sacct cannot tell.

    The steps matter: a job whose step the cgroup killed for memory ends FAILED, and only the
    step says OUT_OF_MEMORY.
    """
    try:
        out = subprocess.run(["sacct", "-j", job_id, "-n", "-P", "-o", ",".join(["JobID", *_SACCT_FIELDS, "MaxRSS"])],
                             capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    info: dict[str, Any] = {}
    steps = {}
    for line in out.splitlines():
        step_id, *values = line.split("|")
        if step_id == job_id:
            info.update(zip(_SACCT_FIELDS.values(), values))
        elif step_id.startswith(job_id + "."):  # 7_2.batch, 7_2.0 (srun's step: the harness itself)
            steps[step_id.removeprefix(job_id + ".")] = {"state": values[0], "exit_code": values[1],
                                                         "max_rss": values[-1]}
    return {**info, "steps": steps} if info else {}


def tail(path: Path, lines: int = STDERR_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def record_killed_job(cfg: DictConfig, job: Any, err: BaseException) -> Path:
    """Writes the `crashed` record of a job with no result (submitit's `job` and its error); returns the job dir.

    `cfg` is the job's full config (Hydra's node included), composed again in the sweep's process.
    """
    out_dir = Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)
    task_cfg = copy.deepcopy(cfg)
    with read_write(task_cfg), open_dict(task_cfg):
        del task_cfg["hydra"]
    config = OmegaConf.to_container(task_cfg, resolve=True)
    hc = cfg.hydra
    if already_done(out_dir, config):
        # It wrote every record and was ended afterwards (e.g. during W&B logging): the results stand.
        print(f"note: Slurm job {job.job_id} ended ({job.state}) after writing its records: {out_dir}", flush=True)
        return out_dir
    slurm = {"job_id": str(job.job_id), "state": job.state, **sacct(str(job.job_id)),
             "stdout": str(job.paths.stdout), "stderr": str(job.paths.stderr)}
    state = slurm["state"].split()[0] if slurm["state"] else "UNKNOWN"  # "CANCELLED by 0" -> CANCELLED
    # What a step says beyond the job's own state, e.g. "FAILED (step 0: OUT_OF_MEMORY)"; steps of a
    # timed-out or cancelled job say CANCELLED, which adds nothing.
    telling = [f"step {name}: {step['state']}" for name, step in slurm.get("steps", {}).items()
               if step["state"].split()[0] not in (state, "CANCELLED", "COMPLETED")]
    if telling:
        state += f" ({', '.join(telling)})"
    job_info = {"name": f"{hc.job.name}-{hc.job.num}", "num": hc.job.num,
                "overrides": OmegaConf.to_container(hc.overrides.task, resolve=False),
                "override_dirname": hc.job.override_dirname, "output_dir": str(out_dir), "slurm": slurm}
    record = records.ended(job_info, config, {
        "type": "SlurmJobEnded", **({"out_of_memory": True} if "OUT_OF_MEMORY" in state else {}),
        "message": f"Slurm job {job.job_id} ended {state} before the job wrote its result ({type(err).__name__}); "
                   f"its log: {slurm['stderr']}",
        "stderr_tail": tail(job.paths.stderr)}, slurm.get("start"))
    path = out_dir / RECORD_NAME
    write_json_atomic(path, record)
    settings = wandb_settings(config, job_info["overrides"])
    record["wandb"] = log_record(settings, record, out_dir)  # a crashed W&B run (offline: synced with the rest)
    write_json_atomic(path, record)
    print(f"crashed: {path}", flush=True)
    print(f"error: {record['error']['type']}: {record['error']['message']}", file=sys.stderr, flush=True)
    return out_dir
