"""Where a finished run's record goes: the local JSON file (ground truth) and W&B (an observer).

The record is written atomically first; `WandbSink` runs after it, and whatever it
raises is reported in the record (harness/jobs/app.py), never costing the local result.

Tracking is given the job's W&B settings (`WandbConfig`, resolved once at the job's
start: harness/jobs/job.py) and finished records (harness/jobs/record.py); it never
reads the job's Hydra config.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from harness.core.config import WandbConfig
from harness.core.fields import NOT_COMPUTED, axes, wandb_summary
from harness.jobs.lifetime import end_with

log = logging.getLogger(__name__)
WANDB_OFFLINE_FLAG = ".harness-wandb-offline"  # in a sweep dir: W&B online was not reached, later jobs go offline


# Override keys that say where or how a run is written, not what it computes: no part of its name or tags.
NOT_SWEPT = (*NOT_COMPUTED, "experiment", "hydra", "vectorize")
NAMED = ("method", "freeze", "optimizer", "optimizer.lr", "task.seed")  # always in the name, in this order


def short_number(value: Any) -> str:
    """1e-3 -> '1e-3', 0.0015 -> '1.5e-3', 0.05 -> '5e-2', 123 -> '123': short and unambiguous in a run name."""
    if isinstance(value, float) and value and not (1 <= abs(value) < 1000 and value == int(value)):
        mantissa, exponent = f"{value:e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return str(int(value) if isinstance(value, float) else value)


def _swept(record: dict[str, Any], skip: Iterable[str] = NAMED) -> list[tuple[str, str]]:
    """(key, value) of the job's overrides that change what it computes, less the keys in `skip`."""
    out = []
    for override in (record.get("job") or {}).get("overrides") or []:
        key, sep, value = str(override).lstrip("+~").partition("=")
        if sep and key not in skip and not any(key == p or key.startswith(p + ".") or key.startswith(p + "/")
                                                 for p in NOT_SWEPT):
            out.append((key, value))
    return out


def run_name(record: dict[str, Any]) -> str:
    """The run's swept values as its W&B name, e.g. 'diffstate-kernel-adamw-lr1e-3-s123' (+ 'steps500', ...).

    >>> run_name({"config": {"method": {"name": "diffstate"}, "freeze": {"name": "kernel"},
    ...           "optimizer": {"name": "adamw", "lr": 0.001}, "task": {"seed": 123}},
    ...           "job": {"overrides": ["train.steps=500", "tracker=offline"]}})
    'diffstate-kernel-adamw-lr1e-3-s123-steps500'
    >>> run_name({"config": {"method": {"name": "diffstate"}, "rerun_of": "3/7"}, "job": {"overrides": ["rerun_of=3/7"]}})
    'diffstate-alone'
    """
    a = axes(record)
    parts = [a["method"], a["freeze"], a["optimizer"],
             None if a["lr"] is None else f"lr{short_number(a['lr'])}",
             None if a["seed"] is None else f"s{a['seed']}"]
    for key, value in _swept(record):
        try:
            value = short_number(float(value))
        except ValueError:
            pass
        parts.append(f"{key.split('.')[-1].split('/')[-1]}{value}")
    if _rerun_of(record):  # a tuned sweep's chosen trial trained again alone: the same values as the trial
        parts.append("alone")
    return "-".join(str(p) for p in parts if p not in (None, ""))


def _rerun_of(record: dict[str, Any]) -> str | None:
    return (record.get("config") or {}).get("rerun_of")


def sweep_group(experiment: str | None, sweep_dir: str | Path | None) -> str:
    """One W&B group per sweep: the experiment's name and the sweep's timestamped directory.

    >>> sweep_group("freeze_matrix", "results/freeze_matrix/2026-11-22_01-09-23-782819")
    'freeze_matrix-2026-11-22_01-09-23-782819'
    """
    experiment = experiment or "default"
    return f"{experiment}-{Path(sweep_dir).name}" if sweep_dir else experiment


def run_group(record: dict[str, Any]) -> str:
    """The group of the sweep a record belongs to (see `sweep_group`)."""
    return sweep_group(axes(record)["experiment"], (record.get("job") or {}).get("sweep_dir"))


WANDB_VARIABLES = {"mode": "WANDB_MODE", "project": "WANDB_PROJECT", "entity": "WANDB_ENTITY"}


def with_environment(cfg: WandbConfig, overrides: Iterable[str], environ: Mapping[str, str] = os.environ
                     ) -> WandbConfig:
    """`cfg` with WANDB_MODE, WANDB_PROJECT and WANDB_ENTITY applied where the command line does not set them.

    The command line wins (`tracker=...` or `tracker.wandb.mode=...` set the mode), then W&B's own
    variables, then the config. WANDB_MODE=dryrun / run mean offline / online, as in wandb.

    >>> with_environment(WandbConfig(), [], {"WANDB_MODE": "disabled"}).mode
    'disabled'
    >>> with_environment(WandbConfig(), ["tracker=offline"], {"WANDB_MODE": "disabled"}).mode
    'offline'
    """
    on_command_line = set()
    for override in overrides:
        key = str(override).lstrip("+~").partition("=")[0]
        if key == "tracker":
            on_command_line.add("mode")
        elif key.startswith("tracker.wandb."):
            on_command_line.add(key.rsplit(".", 1)[-1])
    changes = {}
    for name, variable in WANDB_VARIABLES.items():
        value = (environ.get(variable) or "").strip()
        if value and name not in on_command_line:
            changes[name] = {"dryrun": "offline", "run": "online"}.get(value.lower(), value.lower()) \
                if name == "mode" else value
    try:
        return dataclasses.replace(cfg, **changes)
    except ValueError as err:  # e.g. WANDB_MODE=typo: W&B is an observer, the run goes on with the config's
        log.warning("ignoring W&B environment: %s", err)
        return cfg


def wandb_settings(config: dict[str, Any], overrides: Iterable[str]) -> WandbConfig | None:
    """A run's W&B settings from its resolved config (plain data) and its overrides, W&B's environment variables
    applied (`with_environment`); None when they do not validate (the run's record already says why).

    >>> wandb_settings({"tracker": {"wandb": {"mode": "offline", "project": "p"}}}, ["tracker=offline"]).project
    'p'
    """
    try:
        return with_environment(WandbConfig(**config["tracker"]["wandb"]), overrides)
    except Exception:  # noqa: BLE001
        return None


def run_tags(record: dict[str, Any], extra: list[str] = ()) -> list[str]:
    """The experiment's name, then 'axis:value' for the run's categorical axes and every swept value.

    W&B takes at most 64 characters a tag.
    """
    a = axes(record)
    categorical = ("task", "model", "method", "freeze", "optimizer")
    tags = [a["experiment"] or "default", *(f"{k}:{a[k]}" for k in categorical if a[k]),
            *(f"{key}:{value}" for key, value in _swept(record, skip=categorical)),
            *([f"rerun_of:{_rerun_of(record)}"] if _rerun_of(record) else []), *extra]
    return list(dict.fromkeys(t[:64] for t in tags))


def define_metrics(run) -> None:
    """Per-step curves against `train/step`, each summarized by its minimum and its last value."""
    run.define_metric("train/step")
    run.define_metric("train/*", step_metric="train/step", summary="min,last")


def quiet_settings(init_timeout: float = 15.0):
    """W&B settings for many short runs: no console capture, system stats, requirements or git scan,
    and a short wait for the server (`init_timeout` seconds; W&B's default is 90)."""
    _prepare_wandb()
    import wandb

    _no_wandb_analytics()
    return wandb.Settings(console="off", silent=True, x_disable_stats=True, x_save_requirements=False,
                          disable_git=True, init_timeout=init_timeout)


_PREPARED: list[bool] = []


def _prepare_wandb() -> None:
    """Once per process, before W&B starts: a temporary directory that exists, and a cache directory W&B can write.

    harness.cli points TMPDIR at a directory of its own, which it removes when the command ends (W&B's
    temporary directories go with it, also those of joblib workers killed mid-run); a Slurm job on another
    node inherits the name and makes it. wandb-core writes its internal log under W&B's cache directory
    (WANDB_CACHE_DIR, else ~/.cache/wandb); where it cannot, it writes that log to the terminal instead,
    so this process gives it one it can write to, with one warning.
    """
    if _PREPARED:
        return
    _PREPARED.append(True)
    temp = os.environ.get("TMPDIR")
    if temp and not os.path.isdir(temp):
        try:
            os.makedirs(temp, exist_ok=True)
            atexit.register(shutil.rmtree, temp, True)
        except OSError:
            pass
    if not (os.environ.get("XDG_CACHE_HOME") or os.environ.get("HOME")):
        # wandb-core finds its log's place from these alone; with neither, it logs to the terminal instead.
        os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="wandb-cache-")
    from wandb.env import get_cache_dir

    cache = get_cache_dir()
    try:
        (cache / "logs").mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=cache / "logs").close()
    except OSError as err:
        os.environ["WANDB_CACHE_DIR"] = tempfile.mkdtemp(prefix="wandb-cache-")
        log.warning("W&B's cache directory %s cannot be written (%s); W&B uses %s in this command", cache,
                    err.strerror or err, os.environ["WANDB_CACHE_DIR"])


def unreachable(base_url: str | None = None, timeout: float = 2.0) -> str | None:
    """Why W&B's server cannot be reached at all, found at once: nothing listens on its port (connection refused)
    or its host name has no address; else None. W&B itself retries such a server for its whole init_timeout.

    A server that accepts connections (or a proxy between) is left to wandb.init and its timeout.
    """
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                                             "all_proxy")):
        return None
    if base_url is None:
        _prepare_wandb()
        import wandb

        base_url = wandb.setup().settings.base_url  # the environment's, else W&B's settings files'
    url = urlsplit(base_url)
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    if not host:
        return None
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except ConnectionRefusedError:
        return f"ConnectionRefusedError: nothing listens on {host}:{port} ({base_url})"
    except socket.gaierror as err:
        return f"cannot resolve {host} ({err.strerror})"
    except OSError:
        return None  # slow or filtered: wandb.init decides, within init_timeout
    return None


def _no_wandb_analytics() -> None:
    """Turns off the W&B SDK's own usage telemetry for this process.

    wandb 0.31 probes the server for an OpenTelemetry endpoint from a thread that
    exit waits for: against a server that never answers, every process then hangs
    ~20 s at exit after an online init timed out. The harness sends W&B its runs only.
    """
    try:
        from wandb.analytics.opentelemetry import opentelemetry_proxy

        opentelemetry_proxy.disable()
    except (ImportError, AttributeError):  # another wandb version: nothing to turn off here
        pass


def wandb_copy_complete(info: dict[str, Any] | None) -> bool:
    """Whether a record's W&B copy is whole: none was asked for, or its run finished and its file is complete."""
    from harness.jobs.wandb_file import is_complete

    if not isinstance(info, dict):
        return False
    if info.get("mode") == "disabled":
        return True
    return bool(info.get("finished")) and is_complete(info.get("file"))


class WandbSink:
    """One W&B run per job, written after the local record; offline by default.

    Online, a server that cannot be reached costs one `init_timeout`: the run is
    then logged offline instead, and `offline_flag` (a file in the sweep dir) tells
    the sweep's later jobs, also in other worker processes, to go offline at once.
    """

    def __init__(self, cfg: WandbConfig, offline_flag: Path | None = None):
        self.cfg = cfg
        self.offline_flag = offline_flag

    def _fallen_back(self) -> str | None:
        """Why an earlier job of this sweep could not reach W&B online, or None."""
        if self.offline_flag is None:
            return None
        try:
            return self.offline_flag.read_text().strip() or "unreachable"
        except OSError:  # no flag: W&B online was not tried yet, or it worked
            return None

    def _fall_back(self, why: str) -> str:
        """Says W&B online is not reached and tells the sweep's later jobs (the offline flag); returns `why`."""
        log.warning("W&B online not reached (%s); this run and the sweep's later runs are logged offline, "
                    "for `wandb sync`", why)
        if self.offline_flag is not None:
            try:
                self.offline_flag.write_text(why)
            except OSError:
                pass  # each later job then tries once more; the records are unaffected
        return why

    def _init(self, record: dict[str, Any], out_dir: Path, mode: str):
        import wandb  # imported here: a disabled tracker costs nothing

        return wandb.init(
            project=self.cfg.project,
            entity=self.cfg.entity,
            group=self.cfg.group or run_group(record),
            job_type=self.cfg.job_type,
            tags=run_tags(record, list(self.cfg.tags)),
            name=run_name(record),
            dir=str(out_dir),
            mode=mode,
            config={**axes(record), **record["config"]},  # group names stay the nested config
            settings=quiet_settings(self.cfg.init_timeout),
            reinit="finish_previous",
        )

    def open(self, record: dict[str, Any], out_dir: Path) -> tuple[Any, str, str | None]:
        """(run, mode, why online fell back or None): the job's W&B run, online if it can be reached in time."""
        mode, fallback = self.cfg.mode, None
        if mode == "online" and (fallback := self._fallen_back()):
            mode = "offline"
        if mode == "online" and (why := unreachable()):
            mode, fallback = "offline", self._fall_back(why)
        try:
            run = self._init(record, out_dir, mode)
        except Exception as err:
            if mode != "online":
                raise
            fallback = self._fall_back(f"{type(err).__name__}: "
                                       f"{str(err).strip().splitlines()[0] if str(err).strip() else ''}")
            mode = "offline"
            run = self._init(record, out_dir, mode)
        define_metrics(run)
        return run, mode, fallback

    def __call__(self, record: dict[str, Any], out_dir: Path, live: LiveCurves | None = None) -> dict[str, Any] | None:
        """Logs the finished `record`; with `live`, into the run it opened during training (curves already in)."""
        from harness.jobs.wandb_file import run_file, wait_complete

        if self.cfg.mode == "disabled":
            return {"mode": "disabled"}
        run, mode, fallback = live.opened if live is not None and live.opened else self.open(record, out_dir)
        try:
            history = {} if live is not None and live.opened else record.get("history") or {}
            for i, step in enumerate(history.get("step", [])):
                run.log({"train/step": step, **{f"train/{name[len('train_'):]}": values[i]
                                                for name, values in history.items() if name.startswith("train_")}},
                        step=step)
            run.summary.update(wandb_summary(record))
            info = {"mode": mode, "id": run.id, "dir": run.dir, "live_curves": live is not None and bool(live.opened)}
            if mode == "online":
                info["url"] = run.url
            if fallback:
                info.update(requested_mode="online", fallback=fallback)
        finally:
            run.finish(exit_code=1 if record["status"] in ("failed", "crashed") else 0)
        info["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")  # run.finish() returned
        file = run_file(Path(run.dir).parent)
        info["file"] = str(file) if file else None
        info["file_complete"] = wait_complete(file)  # its exit record is written: `wandb sync` gets it all
        return info


class LiveCurves:
    """Per-step curves of a chunked run (train.log_every) logged to W&B as each chunk arrives.

    The run opens at the first chunk (the job's `running` marker is already on disk), every
    step of the first training call is logged (the warm-up when there is one: untimed), and
    `WandbSink` then finishes the same run from the record.
    """

    def __init__(self, sink: WandbSink, stub: dict[str, Any], out_dir: Path):
        self.sink, self.stub, self.out_dir = sink, stub, out_dir
        self.opened: tuple[Any, str, str | None] | None = None

    def __call__(self, start: int, history: Mapping[str, Any]) -> None:
        try:
            if self.opened is None:
                self.opened = self.sink.open(self.stub, self.out_dir)
            run = self.opened[0]
            for i in range(len(next(iter(history.values())))):
                run.log({"train/step": start + i, **{f"train/{name}": float(values[i])
                                                      for name, values in history.items()}}, step=start + i)
        except Exception as err:  # noqa: BLE001 - W&B is an observer: the curves come from the record instead
            log.warning("W&B live curves stopped: %s: %s", type(err).__name__, err)


def _logged(settings: WandbConfig, record: dict[str, Any], out_dir: Path, offline_flag: Path | None,
            live: LiveCurves | None = None) -> dict[str, Any]:
    """What `WandbSink` says of the record's W&B copy; its failure as an error, never raised."""
    try:
        return WandbSink(settings, offline_flag)(record, out_dir, live)
    except Exception as err:  # noqa: BLE001 - W&B is an observer, never a point of failure
        log.warning("W&B logging failed, the local record is kept: %s: %s", type(err).__name__, err)
        return {"mode": settings.mode, "error": f"{type(err).__name__}: {err}"}


def log_record(settings: WandbConfig | None, record: dict[str, Any], out_dir: Path,
               offline_flag: Path | None = None, live: LiveCurves | None = None) -> dict[str, Any] | None:
    """Logs one record to W&B with the job's `settings` (None: its tracker config is bad, already the record's
    error); what the copy came to, never raised."""
    return None if settings is None else _logged(settings, record, out_dir, offline_flag, live)


# A job with at least this many records logs them from a pool of writer processes: one W&B run costs
# ~40 ms of Python in the process that logs it (a socket message per history row), which threads
# cannot share out. Each writer is a fresh interpreter (spawn: no JAX, no inherited threads).
POOL_FROM = 8
WRITER_PROCESSES = max(1, min(os.cpu_count() or 1, 4))
_WRITERS: list[Any] = []


def writers():
    """This process's pool of W&B writer processes, started on first use and shut down when the process ends."""
    if not _WRITERS:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        _WRITERS.append(ProcessPoolExecutor(WRITER_PROCESSES, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=end_with, initargs=(os.getpid(),)))
        atexit.register(_WRITERS[0].shutdown, cancel_futures=True)
    return _WRITERS[0]


def _ready() -> None:
    """In a writer: W&B imported and its service started, before the first run arrives."""
    _prepare_wandb()
    import wandb

    _no_wandb_analytics()
    wandb.setup()


def start_writers(records: int) -> None:
    """Starts the writer processes (about a second each) while a job that will log `records` runs trains."""
    if records >= POOL_FROM and not _PENDING:
        _PENDING.extend(writers().submit(_ready) for _ in range(WRITER_PROCESSES))


def log_records(settings: WandbConfig | None, records: list[tuple[dict[str, Any], Path]],
                offline_flag: Path | None = None, written=None, wait: bool = True) -> None:
    """Logs each (record, dir) to W&B as `log_record` does, and calls `written(record, dir, W&B info)` for each as
    its copy ends. From POOL_FROM records on, they are logged in writer processes, several at once; without
    `wait`, this returns before they end (`finish_writing` waits for them)."""
    if settings is None or settings.mode == "disabled" or len(records) < POOL_FROM:
        for record, out_dir in records:
            written(record, out_dir, log_record(settings, record, out_dir, offline_flag))
        return
    for record, out_dir in records:
        try:
            future = writers().submit(_logged, settings, record, out_dir, offline_flag)
        except Exception as err:  # noqa: BLE001 - a pool broken by a writer that died: a new one for the rest
            log.warning("W&B writer processes lost (%s: %s); starting new ones", type(err).__name__, err)
            _WRITERS.clear()
            future = writers().submit(_logged, settings, record, out_dir, offline_flag)
        future.add_done_callback(functools.partial(_ended, written, record, out_dir, settings.mode))
        _PENDING.append(future)
    if wait:
        finish_writing()


_PENDING: list[Any] = []  # W&B copies being written in writer processes


def _ended(written, record: dict[str, Any], out_dir: Path, mode: str, future) -> None:
    try:
        info = future.result()
    except BaseException as err:  # noqa: BLE001 - a writer that died: the record stands, resume logs it again
        info = {"mode": mode, "error": f"{type(err).__name__}: {err}"}
    written(record, out_dir, info)


def finish_writing() -> None:
    """Waits until every W&B copy this process handed to its writers has ended (and its record says how)."""
    from concurrent.futures import wait

    while _PENDING:
        wait(list(_PENDING))
        del _PENDING[:]
