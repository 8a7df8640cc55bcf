"""Which points of a sweep share one compiled program, and the jobs that train each such group at once.

Points whose overrides differ only in TRACED values (harness.core.config: the optimizer's
hyperparameters and the seed, which the compiled program takes as arguments) can train as one
vmapped program. `group_jobs` makes one job of up to `max_points` of them: the first point's
overrides plus `vectorize.points`, one text per point with its own TRACED overrides. The job
(harness/jobs/app.py) writes a record per point, in `<job>/<point>/`, with the point's own overrides,
as if it had run alone. Plain text in, plain text out: the sweeper, the plan and the job agree.

    >>> jobs = [["method=a", "optimizer.lr=0.1"], ["method=a", "optimizer.lr=0.2"], ["method=b", "optimizer.lr=0.1"]]
    >>> for job in group_jobs(jobs, 64):
    ...     print(" ".join(job))
    method=a optimizer.lr=0.1 vectorize.points=['optimizer.lr=0.1','optimizer.lr=0.2']
    method=b optimizer.lr=0.1
"""

from __future__ import annotations

import re
from typing import Any

from harness.core.config import TRACED

POINTS = "vectorize.points"
VECTORIZED = ("vectorize.lr", "vectorize.seed", POINTS)  # a job that sets one is vectorized already
# A value as a point's text can carry it: a number or a word, no quotes, lists, spaces or interpolations.
_PLAIN = re.compile(r"[A-Za-z0-9_.+-]+")


def _key(override: str) -> str:
    return override.partition("=")[0]


def traced(override: str) -> bool:
    """Whether `override` sets a TRACED value to a plain value (`optimizer.lr=0.01`, not `+task.seed=...`)."""
    key, sep, value = override.partition("=")
    return bool(sep) and key in TRACED and _PLAIN.fullmatch(value) is not None


def _template(overrides: list[str]) -> tuple[str, ...]:
    """The overrides with each traced value blanked: points with one template share a program."""
    return tuple(f"{_key(o)}=" if traced(o) else o for o in overrides)


def group_jobs(jobs: list[list[str]], max_points: int) -> list[list[str]]:
    """`jobs` (override lists, in launch order) as the jobs to launch: each group of points that differ in TRACED
    values only, in jobs of up to `max_points`, in order of their first point; every other point as it was.

    A job that lists its own vectorized points (`vectorize.lr`, `vectorize.seed`) stays as it is.
    """
    groups: dict[Any, list[list[str]]] = {}
    for i, overrides in enumerate(jobs):
        alone = any(_key(o).lstrip("+~") in VECTORIZED for o in overrides)
        groups.setdefault(i if alone else _template(overrides), []).append(list(overrides))
    out = []
    for points in groups.values():
        for start in range(0, len(points), max_points):
            chunk = points[start : start + max_points]
            if len(chunk) == 1:
                out.append(chunk[0])
            else:
                texts = ",".join(f"'{point_text(point)}'" for point in chunk)
                out.append([*chunk[0], f"{POINTS}=[{texts}]"])
    return out


def point_text(overrides: list[str]) -> str:
    """A point as `vectorize.points` lists it: its traced overrides, space-separated."""
    return " ".join(o for o in overrides if traced(o))


def points_of(job: list[str]) -> list[list[str]]:
    """The points a launched job trains, each as its own overrides: the job's own, or one per `vectorize.points`.

    >>> points_of(["method=a", "optimizer.lr=0.1", "vectorize.points=['optimizer.lr=0.1','optimizer.lr=0.2']"])
    [['method=a', 'optimizer.lr=0.1'], ['method=a', 'optimizer.lr=0.2']]
    """
    texts = [o for o in job if _key(o) == POINTS]
    if not texts:
        return [list(job)]
    from hydra.core.override_parser.overrides_parser import OverridesParser

    values = OverridesParser.create().parse_override(texts[-1]).value()
    base = [o for o in job if _key(o) != POINTS]
    return [point_overrides(base, text) for text in values]


def point_overrides(job: list[str], text: str) -> list[str]:
    """A grouped job's overrides (without `vectorize.points`) as one of its points', whose text is `text`."""
    values = dict(o.partition("=")[::2] for o in text.split())
    return [f"{_key(o)}={values[_key(o)]}" if traced(o) and _key(o) in values else o for o in job]


def singles(jobs: list[list[str]]) -> int:
    """How many points of a grouped sweep's jobs train alone."""
    return sum(all(_key(o) != POINTS for o in job) for job in jobs)
