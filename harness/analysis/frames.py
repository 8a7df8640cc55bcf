"""A sweep's runs as one pandas DataFrame: read from its result.json records, summarized, printed.

The records are the ground truth a sweep leaves behind, so everything built on
this module works on a finished, interrupted or copied sweep. A record that
does not read is a problem to report, never a reason to lose the rest. The
report, its figures and `harness compare` all share the summary and the cell
formats defined here.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.core.fields import (
    AXES,
    FIELDS,
    NOT_COMPUTED,
    SPREAD,
    dotted_keys,
    is_under,
)
from harness.jobs.grouping import POINTS, point_overrides
from harness.jobs.record import RUNNING, STATUSES
from harness.jobs.store import read_records

AXIS_COLUMNS = tuple(f.column for f in AXES)
RUNS_TABLE = "runs.parquet"  # a report's table of every run, all that a committed reference keeps
# Config leaves that the axes already name; other leaves that vary in a sweep get their own column.
AXIS_PATHS = tuple(p.removeprefix("config.") for f in AXES for p in f.paths)
_PANDAS = {int: "Int64", bool: "boolean", str: "str", float: "float64"}
# Column -> (pandas dtype, cast): the same dtypes in parquet and CSV whatever is missing.
DTYPES = {**{f.column: (_PANDAS[f.kind], f.kind) for f in FIELDS}, "schema_version": ("Int64", int),
          "path": ("str", str)}
# Always rows of the summary; the others become rows only where they split the sweep further.
ALWAYS_KEYS = ("method", "freeze", "optimizer")
MAYBE_KEYS = ("task", "model", "lr", "weight_decay", "steps", "device", "experiment")


# --- reading -------------------------------------------------------------------------------------


# --- the DataFrame -------------------------------------------------------------------------------


def row(path: Path, record: dict) -> dict[str, Any]:
    """One run as flat columns (harness/core/fields.py): its axes, status, measurements and bookkeeping."""
    return {**{f.column: f.get(record) for f in FIELDS}, "schema_version": record.get("schema_version", 1),
            "path": str(path)}


def _extra_axes(records: list[tuple[Path, dict]]) -> dict[str, list]:
    """Config leaves, other than the named axes, whose value differs between runs (e.g. model.depth)."""
    flat = [dotted_keys(record.get("config") or {}) for _, record in records]
    names = sorted({k for leaves in flat for k in leaves if not is_under(k, NOT_COMPUTED + AXIS_PATHS)})
    varying = {}
    for name in names:
        values = [leaves.get(name) for leaves in flat]
        if len({json.dumps(v, default=str) for v in values}) > 1:
            varying[name] = values
    return varying


def _one_type(values: list[Any]) -> pd.api.extensions.ExtensionArray | np.ndarray:
    """A column of one type (bool, number or text) from config values that may mix them."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pd.array(values, dtype="boolean")
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return np.array([math.nan if v is None else v for v in values], dtype="float64")
    return pd.array([None if v is None else v if isinstance(v, str) else json.dumps(v) for v in values], dtype="str")


def nan_to_none(value: Any) -> Any:
    """None for a missing value (None, pd.NA or NaN), else the value."""
    return None if value is pd.NA or (isinstance(value, float) and math.isnan(value)) else value


def typed(df: pd.DataFrame) -> pd.DataFrame:
    """Nullable ints and bools, floats and strings for the columns in DTYPES; the others as they are."""
    df = df.copy()
    for name in df.columns:
        if name in DTYPES:
            dtype, cast = DTYPES[name]
            df[name] = pd.array([None if (v := nan_to_none(x)) is None else cast(v) for x in df[name]], dtype=dtype)
    return df


def frame(records: list[tuple[Path, dict]]) -> pd.DataFrame:
    """One row per run, axis columns first, then any other varying config leaf, then measurements."""
    if not records:
        return typed(pd.DataFrame(columns=list(row(Path(), {"status": "ok"}))))
    records = [point for path, record in records for point in _points_of_unfinished_group(path, record)]
    df = pd.DataFrame([row(path, record) for path, record in records])
    for i, (name, values) in enumerate(_extra_axes(records).items()):
        df.insert(len(AXIS_COLUMNS) + i, name, _one_type(values))
    return typed(df)


def _points_of_unfinished_group(path: Path, record: dict) -> list[tuple[Path, dict]]:
    """A vectorized job still running (or dead: crashed) holds one marker for all its points: one run per point,
    with the values and overrides its own record will have (at the marker's path). Any other record as it is.

    >>> marker = {"status": "running", "job": {"name": "h-0", "num": 0, "overrides": ["method=a",
    ...           "optimizer.lr=0.1", "vectorize.points=[...]"]}, "config": {"optimizer": {"lr": 0.1},
    ...           "vectorize": {"points": ["optimizer.lr=0.1", "optimizer.lr=0.2"]}}}
    >>> points = _points_of_unfinished_group(Path(), marker)
    >>> [(r["config"]["optimizer"]["lr"], r["job"]["overrides"]) for _, r in points]
    [(0.1, ['method=a', 'optimizer.lr=0.1']), (0.2, ['method=a', 'optimizer.lr=0.2'])]
    """
    config = record.get("config") if isinstance(record.get("config"), dict) else {}
    texts = (config.get("vectorize") or {}).get("points") if isinstance(config.get("vectorize"), dict) else None
    if record.get("status") not in (RUNNING, "crashed") or not isinstance(texts, list) or not texts:
        return [(path, record)]
    job = record.get("job") if isinstance(record.get("job"), dict) else {}
    base = [o for o in job.get("overrides") or [] if not str(o).startswith(f"{POINTS}=")]
    out = []
    for i, text in enumerate(texts):
        point = {**config, "vectorize": {**config["vectorize"], "points": []}}
        for key, value in (o.partition("=")[::2] for o in str(text).split()):
            section, _, name = key.partition(".")
            point[section] = {**(point.get(section) or {}), name: _number(value)}
        out.append((path, {**record, "config": point, "job": {**job, "name": f"{job.get('name')}-{i}",
                                                             "overrides": point_overrides(base, str(text)),
                                                             "vectorized": {"point": i, "points": len(texts)}}}))
    return out


def _number(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def extra_axes(df: pd.DataFrame) -> list[str]:
    """The columns `frame` added for config leaves that vary beyond the named axes (e.g. model.depth)."""
    fixed = set(row(Path(), {"status": "ok"}))
    return [c for c in df.columns if c not in fixed]


def distinct_runs(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with one run per configuration point (`config_key`, the seed included): the first ok run of each.

    A sweep that lists a point twice (`optimizer.lr=1e-3,1e-3`, `vectorize.seed=[1,1]`) runs it twice, but
    the second run is the same computation, not another replicate: findings count it once, so that it does
    not narrow their confidence intervals.
    """
    if "config_key" not in df or df.empty:
        return df
    ranked = df.assign(_not_ok=(df["status"] != "ok").to_numpy()).sort_values("_not_ok", kind="stable")
    keyless = ranked["config_key"].isna() | (ranked["config_key"] == "{}")
    kept = ranked[keyless | ~ranked.duplicated("config_key")]
    return kept.drop(columns="_not_ok").sort_index()


def without_seed(key: str, leaves: Collection[str] | None = None) -> str:
    """A `config_key` less the task's seed (seeds of one configuration are its replicates), and with `leaves`
    given, less every config leaf not among them.

    >>> without_seed('{"task.seed": 1, "train.steps": 5, "report": true}', leaves=["task.seed", "train.steps"])
    '{"train.steps": 5}'
    """
    try:
        values = json.loads(key)
    except (TypeError, ValueError):
        return key
    return json.dumps({k: v for k, v in values.items() if k != "task.seed" and (leaves is None or k in leaves)},
                      sort_keys=True)


def config_leaves(df: pd.DataFrame) -> set[str]:
    """Every config leaf some run's `config_key` names."""
    found = set()
    for key in df["config_key"].dropna():
        try:
            found.update(json.loads(key))
        except (TypeError, ValueError):
            continue
    return found


def load_records(sweep_dir: str | Path) -> tuple[pd.DataFrame, list[tuple[Path, str]]]:
    """(one row per run under `sweep_dir`, [(path, reason) for each record that could not be read])."""
    records, problems = read_records(sweep_dir)
    return frame(records), problems


def schema_from_keys(keys: Iterable[Any]) -> int:
    """The record schema of runs known only by their `config_key`s: schema 2 (harness/jobs/record.py) gave the task
    and the model their components' settings, `_target_` included; a schema-1 config has no `task._target_`.

    >>> schema_from_keys(['{"task._target_": "t", "task.seed": 1}']), schema_from_keys(['{"task.seed": 1}'])
    (2, 1)
    """
    for key in keys:
        try:
            if "task._target_" in json.loads(key):
                return 2
        except (TypeError, ValueError):
            continue
    return 1


def load_runs(sweep_dir: str | Path) -> tuple[pd.DataFrame, list[tuple[Path, str]], str]:
    """`load_records`, or in a directory without records (a committed reference, results/reference/<experiment>/)
    the RUNS_TABLE its report wrote; and what the runs were read from.

    A table written before some field existed gets that column empty.
    """
    df, problems = load_records(sweep_dir)
    table = Path(sweep_dir) / RUNS_TABLE
    if len(df) or problems or not table.is_file():
        return df, problems, f"{len(df)} records"
    runs = pd.read_parquet(table)
    if "schema_version" not in runs:  # a table written before it kept the schema: read it from the config keys
        runs["schema_version"] = schema_from_keys(runs["config_key"])
    runs = runs.assign(**{name: None for name in frame([]).columns if name not in runs})
    return typed(runs), [], f"{RUNS_TABLE} of a report ({len(runs)} runs, no records)"


# --- the order of runs ---------------------------------------------------------------------------

SWEEP_CONFIG = "multirun.yaml"  # Hydra's record of a multirun's config: the swept values in the order given


def sweep_order(sweep_dir: str | Path) -> dict[str, list[str]]:
    """{override key: its values as text} in the order the sweep's config lists them: the experiment's sweeper
    params, then the command line (Hydra's multirun.yaml); or, for a directory without one, the order of each
    column in the RUNS_TABLE a report left there (a committed reference). {} when neither reads.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    sweep_dir = Path(sweep_dir)
    try:
        config = OmegaConf.load(sweep_dir / SWEEP_CONFIG)
        params = OmegaConf.to_container(OmegaConf.select(config, "hydra.sweeper.params") or OmegaConf.create())
        texts = [*(f"{key}={value}" for key, value in params.items()),
                 *OmegaConf.to_container(OmegaConf.select(config, "hydra.overrides.task") or OmegaConf.create([]))]
    except Exception:  # noqa: BLE001 - no config, or one that does not read: the order falls back, nothing more
        texts = None
    if texts is None:
        try:
            table = pd.read_parquet(sweep_dir / RUNS_TABLE)
        except Exception:  # noqa: BLE001 - the same
            return {}
        return {name: list(dict.fromkeys(key_text(v) for v in table[name])) for name in table.columns
                if name in AXIS_COLUMNS or name in extra_axes(table)}
    order = {}
    for text in texts:
        try:
            (override,) = OverridesParser.create().parse_overrides([str(text)])
        except Exception:  # noqa: BLE001 - Hydra's own syntax errors stopped the sweep long before
            continue
        order[override.key_or_group] = (list(override.sweep_string_iterator()) if override.is_sweep_override()
                                        else [override.get_value_element_as_str()])
    return order


def _column_order(df: pd.DataFrame, name: str, order: dict[str, list[str]]) -> list[str]:
    """The config order of the text values of column `name`: from the override whose key is the column's config
    path (`method` for config.method.name, `optimizer.lr`, `model.width`), else from one listing all its values
    (a `strategy` group sets `fine_tuning`)."""
    paths = {f.column: [p.removeprefix("config.").removesuffix(".name") for p in f.paths] for f in AXES}
    for key in paths.get(name, [name]):
        if key in order:
            return order[key]
    values = {key_text(v) for v in df[name] if nan_to_none(v) is not None}
    return next((listed for listed in order.values() if values and values <= set(listed)), [])


def natural_order(df: pd.DataFrame, order: dict[str, list[str]] | None = None,
                  lead: Iterable[str] = ()) -> pd.DataFrame:
    """The runs sorted by their axes, `lead` (the question's axes) first, each in its natural order: numbers
    ascending, names in the order the sweep's config lists them (`sweep_order`; names it does not list after,
    alphabetically), missing last.

    Every table, figure and finding reads its rows in this order, so the same records give the
    same report whatever order the jobs ran in.

    >>> df = pd.DataFrame({"method": ["wrt_only", "diffstate", "diffstate"], "lr": [0.1, 0.01, 0.1]})
    >>> natural_order(df, {"method": ["diffstate", "wrt_only"]})[["method", "lr"]].values.tolist()
    [['diffstate', 0.01], ['diffstate', 0.1], ['wrt_only', 0.1]]
    """
    order = order or {}
    axes = lead_with([c for c in [*AXIS_COLUMNS, *extra_axes(df)] if c in df.columns], lead)
    ranks = {}
    for name in axes:
        listed = {value: i for i, value in enumerate(_column_order(df, name, order))}
        ranks[name] = [(0, v, "") if isinstance(v := nan_to_none(value), (int, float)) and not isinstance(v, bool)
                       else (2, 0, "") if v is None else (1, listed.get(key_text(v), len(listed)), key_text(v))
                       for value in df[name]]
    ties = [c for c in ("config_key", "started", "job_num", "path") if c in df.columns]
    keys = [tuple(ranks[name][i] for name in axes) + tuple(str(df[c].iloc[i]) for c in ties) for i in range(len(df))]
    return df.iloc[sorted(range(len(df)), key=keys.__getitem__)].reset_index(drop=True)


QUESTION_KEY = "question"  # a top-level config list of the axes an experiment asks about, e.g. [fine_tuning, model]
# A swept config group named for the leaf its options set: conf/strategy/*.yaml set `fine_tuning`.
GROUP_LEAVES = {"strategy": "fine_tuning"}


def declared_question(records: Iterable[dict]) -> list[str]:
    """The axes the sweep's config declares it asks about (`question`), as report columns; [] when none does.
    Config paths name their column (`method.name` -> method, `optimizer.lr` -> lr), and the `strategy` group the
    leaf it sets (fine_tuning); any other leaf (`model.width`) is its own column.

    >>> declared_question([{"config": {"question": ["strategy", "optimizer.lr", "model.width", "method"]}}])
    ['fine_tuning', 'lr', 'model.width', 'method']
    """
    declared = next((q for r in records if isinstance(q := (r.get("config") or {}).get(QUESTION_KEY), list)), [])
    columns = {p.removeprefix("config."): f.column for f in AXES for p in f.paths}
    columns.update({p.removesuffix(".name"): c for p, c in list(columns.items())})
    columns.update(GROUP_LEAVES)
    return list(dict.fromkeys(columns.get(str(name), str(name)) for name in declared))


def question_axes(df: pd.DataFrame, order: dict[str, list[str]] | None = None,
                  declared: Iterable[str] = ()) -> list[str]:
    """The axes the sweep asks about, first what its config declares (`question`, a list of columns), then every
    other column that varies across the runs (the swept config leaves), in the order the sweep's overrides name
    them (`sweep_order`), the rest after in column order. The findings, first figure and tables lead with them.

    A column that follows from those before it (the strategy sets the freeze option) is left out.

    >>> df = pd.DataFrame({"method": ["a", "a", "b", "b"], "freeze": ["x", "y", "x", "y"],
    ...                    "fine_tuning": ["p", "f", "p", "f"], "seed": [1, 2, 1, 2]})
    >>> question_axes(df, {"+strategy": ["p", "f"], "method": ["a", "b"]})
    ['fine_tuning', 'method']
    >>> question_axes(df, {}, declared=["method"])
    ['method', 'freeze']
    """
    order = order or {}
    columns = [c for c in [*AXIS_COLUMNS, *extra_axes(df)]
               if c in df and c not in ("seed", "experiment") and df[c].nunique(dropna=False) > 1]
    listed = list(order)

    def rank(name: str) -> int:
        values = _column_order(df, name, order)
        key = next((k for k, v in order.items() if values and v == values), None)
        return listed.index(key) if key in listed else len(listed)

    declared = [c for c in declared if c in df]
    ordered = declared + sorted((c for c in columns if c not in declared), key=lambda c: (rank(c), columns.index(c)))
    # A leaf that follows from those before it (a strategy's freeze patterns, a model's channels) asks nothing new.
    return declared + [c for c in splitting_keys(df, declared, ordered) if c not in declared]


def lead_with(keys: Iterable[str], question: Iterable[str]) -> list[str]:
    """`keys` with those the question asks about first, in the question's order: a table's first columns.

    >>> lead_with(["task", "model", "method", "fine_tuning"], ["fine_tuning", "model"])
    ['fine_tuning', 'model', 'task', 'method']
    """
    keys = list(keys)
    first = [k for k in question if k in keys]
    return first + [k for k in keys if k not in first]


# --- per-configuration summary -------------------------------------------------------------------


def follows(df: pd.DataFrame, axis: Any, key: str) -> bool:
    """Whether column `key` takes one value for each value of `axis` (a column, or a Series to group by): it is set
    by it, as a strategy sets its freeze option and a workload its steps.

    >>> follows(pd.DataFrame({"fine_tuning": ["scratch", "finetune", "probe"], "freeze": ["none", "none", "backbone"]}),
    ...         "fine_tuning", "freeze")
    True
    """
    return key in df and bool((df.groupby(axis, dropna=False)[key].nunique(dropna=False) <= 1).all())


def splitting_keys(df: pd.DataFrame, base: Iterable[str], candidates: Iterable[str]) -> list[str]:
    """`base` plus each candidate that takes several values within the groups formed so far.

    weight_decay varies with the optimizer (adam 0, adamw 1e-4) but adds no rows;
    `optimizer.lr=1e-3,1e-2` does.
    """
    keys = [k for k in base if k in df.columns]
    for name in candidates:
        if name not in df.columns or name in keys:
            continue
        counts = df.groupby(keys, dropna=False, sort=False)[name].nunique(dropna=False) if keys else \
            pd.Series([df[name].nunique(dropna=False)])
        if len(counts) and counts.max() > 1:
            keys.append(name)
    return keys


def group_keys(df: pd.DataFrame) -> list[str]:
    """method x freeze x optimizer, plus lr / steps / model / ... (and other config) where they vary."""
    extra = extra_axes(df)
    return splitting_keys(df, ALWAYS_KEYS, [*MAYBE_KEYS, *extra])


def groups(df: pd.DataFrame, keys: list[str]) -> Iterator[tuple[dict[str, Any], pd.DataFrame]]:
    """(key values as a dict, rows) per group, in the sweep's order."""
    for values, rows in df.groupby(keys, dropna=False, sort=False):
        yield dict(zip(keys, values)), rows


def median_range(values: pd.Series) -> tuple[float, float, float]:
    """(median, min, max) of the numbers in `values`, NaN for each when there are none."""
    values = pd.to_numeric(values, errors="coerce").astype("float64").dropna()
    if values.empty:
        return (math.nan,) * 3
    return float(values.median()), float(values.min()), float(values.max())


def cold_compiles(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs whose compile really ran (none: no compile time to show).

    In a sweep, the second seed of a configuration, or any run that differs only in
    learning rate, is served from JAX's in-process cache in microseconds: that is no compile time.
    """
    return runs[runs["compile_source"] == "compiled"]


def compile_sources(runs: pd.DataFrame) -> str:
    """How the runs got their compiled program, e.g. '1 compiled, 1 in_process_cache'."""
    counts = runs["compile_source"].dropna().value_counts()
    return ", ".join(f"{n} {source}" for source, n in sorted(counts.items()))


def status_counts(df: pd.DataFrame) -> dict[str, int]:
    """Runs per status, every known status included, plus 'running' and 'other' when some runs have them."""
    counts = {status: int((df["status"] == status).sum()) for status in STATUSES}
    if running := int((df["status"] == RUNNING).sum()):
        counts[RUNNING] = running  # a job still going (or on another host, where its process cannot be asked)
    other = len(df) - sum(counts.values())
    return {**counts, "other": other} if other else counts


def summarize(df: pd.DataFrame, keys: list[str] | None = None) -> pd.DataFrame:
    """Per configuration (all but the seed): run counts, and median/min/max over its ok runs.

    Times per step are the median of the runs' medians, and min/max over every
    timed call of every run: the spread covers both repeats and seeds. Compile
    times count cold compiles only (none in the group: no compile time).
    """
    keys = group_keys(df) if keys is None else keys
    read = [*keys, "status", *SPREAD, "compile_s", "compile_source", "drift_unchanged", "grads_cover_frozen",
            *(f"{name}_{part}" for name in ("run_s_per_step", "run_s_per_call") for part in ("median", "min", "max"))]
    df = df[[c for c in dict.fromkeys(read) if c in df]]  # the columns read: selecting rows of a wide frame is slow
    rows = []
    for values, g in groups(df, keys):
        ok = g[g["status"] == "ok"]
        out: dict[str, Any] = {**values, "runs": len(g)}
        out.update({status: int((g["status"] == status).sum()) for status in STATUSES})
        for name in SPREAD:
            out[f"{name}_median"], out[f"{name}_min"], out[f"{name}_max"] = median_range(ok[name])
        out["compile_s_median"], out["compile_s_min"], out["compile_s_max"] = median_range(
            cold_compiles(ok)["compile_s"])
        for name in ("run_s_per_step", "run_s_per_call"):
            out[f"{name}_median"] = median_range(ok[f"{name}_median"])[0]
            out[f"{name}_min"] = median_range(ok[f"{name}_min"])[1]
            out[f"{name}_max"] = median_range(ok[f"{name}_max"])[2]
        unchanged = ok["drift_unchanged"].dropna()
        out["unchanged_runs"] = int(unchanged.sum())
        out["unchanged_of"] = len(unchanged)
        covers = ok["grads_cover_frozen"].dropna()
        out["grads_cover_frozen"] = bool(covers.any()) if len(covers) else None
        out["compile_sources"] = compile_sources(ok)
        rows.append(out)
    return pd.DataFrame(rows)


# --- cells as text -------------------------------------------------------------------------------


def number_text(value: Any) -> str:
    """Three significant digits, without exponents between 0.001 and 100000; '—' when missing."""
    value = nan_to_none(value)
    if value is None:
        return "—"
    value = float(value)
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    if 1e-3 <= abs(value) < 1e5:
        return f"{value:.{max(0, 2 - math.floor(math.log10(abs(value))))}f}"
    return f"{value:.2e}"


def key_text(value: Any) -> str:
    """An axis value as a label or table cell: floats in short form (0.001, 1e-05), '—' when missing or empty."""
    value = nan_to_none(value)
    if value is None or value == "":
        return "—"
    return f"{value:g}" if isinstance(value, float) else str(value)


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub markdown table of `df` as text (no extra dependency).

    >>> print(markdown_table(pd.DataFrame({"name": ["<b>a|b</b>"]})), end="")
    | name |
    |---|
    | &lt;b&gt;a\\|b&lt;/b&gt; |
    """
    if df.empty:
        return "_no rows_\n"

    def cell(value: Any) -> str:  # a name or value as text: HTML in it is shown, never rendered
        return html.escape(key_text(value), quote=False).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in values) + " |" for values in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"
