"""A sweep's plan, `sweep.json`: the jobs it launches (number and overrides), written before the first one runs.

Records say what happened; the plan says what should have. `harness report`
lists planned jobs that left no record, and `resume` refuses a command that would
launch other jobs into the sweep's directories. Plain JSON, no Hydra and
no JAX: the reporting side reads it too.

    {"planned_jobs": 3, "jobs": [{"num": 0, "overrides": ["optimizer.lr=0.001"]}, ...], "base": "<hash>"}

`base` hashes the sweep's config before the swept values (conf/ files and fixed
overrides), less what a resume may change: an edited experiment file is noticed too.

Sweeps written before the plan listed its jobs hold `planned_jobs` only. A tuned sweep adds `reruns` once its
trials have ended: the chosen trials it trains again alone ({"num", "overrides", "rerun_of"}), which depend on the
trials' results, so a resume compares `jobs` only.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from harness.core.fields import CHANGEABLE_ON_RESUME, as_recorded, digest, identity
from harness.jobs.grouping import singles

SWEEP_FILE = "sweep.json"


def read_plan(sweep_dir: Path) -> dict[str, Any] | None:
    """The sweep's plan, or None when it has none (a single run, a copied directory) or it does not read."""
    try:
        plan = json.loads((Path(sweep_dir) / SWEEP_FILE).read_text())
    except (OSError, ValueError):
        return None
    return plan if isinstance(plan, dict) else None


def plan_problem(sweep_dir: Path) -> str | None:
    """Why the sweep's plan cannot be read (sweep.json cut short by a full disk, edited by hand), or None when it
    reads or there is none: a plan that does not read hides which jobs are missing."""
    path = Path(sweep_dir) / SWEEP_FILE
    try:
        plan = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except OSError as err:
        return f"cannot read the sweep's plan {path}: {err.strerror or err}"
    except ValueError as err:
        return f"the sweep's plan {path} is not JSON ({err}): which planned jobs are missing is unknown"
    if not isinstance(plan, dict) or (planned_count(plan) is None and not isinstance(plan.get("jobs"), list)):
        return f"the sweep's plan {path} lists no jobs: which planned jobs are missing is unknown"
    return None


def plan_dirs(directory: Path) -> list[Path]:
    """The sweeps at or under `directory`: every directory holding a sweep.json, in order."""
    return sorted(path.parent for path in Path(directory).rglob(SWEEP_FILE))


def duplicates(jobs: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """(job, the earlier job it repeats) for every planned job that computes what an earlier one does.

    >>> duplicates([{"num": 0, "overrides": ["optimizer.lr=0.001"]}, {"num": 1, "overrides": ["optimizer.lr=0.01"]},
    ...             {"num": 2, "overrides": ["optimizer.lr=0.001"]}])
    [(2, 0)]
    """
    first: dict[tuple[str, ...], int] = {}
    out = []
    for job in jobs:
        key = tuple(_computed(job.get("overrides") or []))
        if key in first:
            out.append((job["num"], first[key]))
        else:
            first[key] = job["num"]
    return out


def reruns(plan: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The timed reruns a tuned sweep added to its plan, [] for any other."""
    listed = (plan or {}).get("reruns")
    return [job for job in listed if isinstance(job, dict)] if isinstance(listed, list) else []


def planned_count(plan: dict[str, Any] | None) -> int | None:
    """Every job the sweep launches: its planned jobs and the reruns it has added."""
    count = (plan or {}).get("planned_jobs")
    return count + len(reruns(plan)) if isinstance(count, int) and not isinstance(count, bool) else None


def base_hash(config: dict[str, Any]) -> str:
    """The sweep's unswept config (resolved, without `hydra`), less what a resume may change."""
    return digest(identity(as_recorded(config), (*CHANGEABLE_ON_RESUME, "hydra")))


def _key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]


def _computed(overrides: list[str]) -> list[str]:
    """The overrides that change what a job computes (sorted: Hydra may list them in another order)."""
    return sorted(o for o in overrides
                  if not any(_key(o) == k or _key(o).startswith(k + ".") for k in CHANGEABLE_ON_RESUME))


def plan_difference(old: dict[str, Any], new: list[dict[str, Any]], base: str | None = None,
                    max_points: int | None = None) -> str | None:
    """Why the jobs `new` (from a config hashing to `base`, grouped by `vectorize.max_points`) would not be those
    planned in `old`, or None."""
    if base is not None and old.get("base") not in (None, base):
        return "the sweep's config differs from this command's (its conf/ or experiment files, or fixed overrides)"
    old_jobs = old.get("jobs")
    if isinstance(old_jobs, list) and (why := _grouping_difference(old, [j.get("overrides") or [] for j in old_jobs],
                                                                   [j["overrides"] for j in new], max_points)):
        return why
    if not isinstance(old_jobs, list):
        count = planned_count(old)
        if count is not None and count != len(new):
            return f"the sweep planned {count} jobs, this command plans {len(new)}"
        return None  # an older plan without its jobs: each job's config is still checked when it starts
    if len(old_jobs) != len(new):
        return f"the sweep planned {len(old_jobs)} jobs, this command plans {len(new)}"
    before_jobs = [_computed(job.get("overrides", [])) for job in old_jobs]
    now_jobs = [_computed(job["overrides"]) for job in new]
    if before_jobs != now_jobs and sorted(before_jobs) == sorted(now_jobs):
        return ("the sweep ran the same jobs in another order: resume it with the sweeper it was started with "
                "(hydra/sweeper=basic for a sweep started before its experiment used hydra/sweeper=shuffled)")
    for before, now in zip(old_jobs, new):
        if _computed(before.get("overrides", [])) != _computed(now["overrides"]):
            return (f"job #{now['num']} was {' '.join(_computed(before.get('overrides', []))) or '(no overrides)'}, "
                    f"this command makes it {' '.join(_computed(now['overrides'])) or '(no overrides)'}")
    return None


def _grouping_difference(old: dict[str, Any], before: list[list[str]], now: list[list[str]],
                         max_points: int | None) -> str | None:
    """Why a resume would group the sweep's points into other jobs (harness/jobs/grouping.py), or None."""
    grouped_before, grouped_now = (any(singles([job]) == 0 for job in jobs) for jobs in (before, now))
    if grouped_before != grouped_now:
        grouped, alone = "vectorized jobs (hydra/sweeper=vectorized)", "a job per point"
        return (f"the sweep ran its points in {grouped if grouped_before else alone}, this command in "
                f"{grouped if grouped_now else alone}: resume it with the sweeper it was started with")
    written = old.get("vectorize_max_points")
    if grouped_before and written not in (None, max_points) and before != now:
        return (f"the sweep grouped its points in jobs of up to {written} (vectorize.max_points={written}), this "
                f"command in jobs of up to {max_points}: resume with vectorize.max_points={written}")
    return None


def missing_jobs(plan: dict[str, Any] | None, recorded_nums: set[int]) -> list[dict[str, Any]]:
    """The planned jobs ({"num", "overrides"}) with no record at all, in job order."""
    if not plan:
        return []
    jobs = plan.get("jobs")
    if not isinstance(jobs, list):  # an older plan: numbers only
        count = planned_count(plan) or 0
        jobs = [{"num": n, "overrides": None} for n in range(count)]
    return [job for job in [*jobs, *reruns(plan)] if isinstance(job, dict) and job.get("num") not in recorded_nums]


def recorded_runs(records: list[dict[str, Any]]) -> dict[Any, dict[int | None, int | None]]:
    """{job number: {point: how many points its job has}} of `records`: None for a job's own record (one run, or
    a vectorized job that failed before its points)."""
    runs: dict[Any, dict[int | None, int | None]] = {}
    for record in records:
        job = record.get("job") if isinstance(record.get("job"), dict) else {}
        vectorized = job.get("vectorized") if isinstance(job.get("vectorized"), dict) else {}
        runs.setdefault(job.get("num"), {})[vectorized.get("point")] = vectorized.get("points")
    return runs


def missing_runs(plan: dict[str, Any] | None, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The planned runs with no record, in job order: a job with none ({"num", "overrides"}), and each point of a
    vectorized job that has records for some of its points only ({"num": "<job>/<point>", "overrides"}).

    >>> plan = {"jobs": [{"num": 0, "overrides": ["a=1", "vectorize.points=['optimizer.lr=1','optimizer.lr=2']"]},
    ...                  {"num": 1, "overrides": ["a=2"]}]}
    >>> [run["num"] for run in missing_runs(plan, [{"job": {"num": 0, "vectorized": {"point": 1, "points": 2}}}])]
    ['0/0', 1]
    """
    from harness.jobs.grouping import points_of

    runs = recorded_runs(records)
    out = []
    for job in missing_jobs(plan, set()):
        num, overrides = job.get("num"), job.get("overrides")
        if num not in runs:
            out.append(job)
            continue
        if None in runs[num]:  # the job's own record stands for all of it
            continue
        points = points_of(overrides) if isinstance(overrides, list) else []
        count = max([len(points), *(n for n in runs[num].values() if isinstance(n, int))])
        out += [{"num": f"{num}/{i}", "overrides": points[i] if i < len(points) else overrides}
                for i in range(count) if i not in runs[num]]
    return out


def launch_order(jobs: list[Any], seed: int | None) -> list[Any]:
    """`jobs` in the order a sweeper with `seed` launches them: as given for None, else a seeded shuffle.

    >>> launch_order(["a", "b", "c", "d"], 0), launch_order(["a", "b", "c", "d"], None)
    (['c', 'a', 'b', 'd'], ['a', 'b', 'c', 'd'])
    """
    if seed is None:
        return list(jobs)
    order = list(jobs)
    random.Random(seed).shuffle(order)
    return order
