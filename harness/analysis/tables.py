"""Compact tables: group by the axes that change a number, collapse the ones that do not.

Two rules, both from the data. A cost of the compiled program (step time,
memory, FLOP/s) depends only on the axes that change the program: an axis
under which no program signature column (parameter counts, bytes, flops,
matmuls, batch) changes, such as the learning rate fed in through
`inject_hyperparams`, pools its runs (`program_keys`). And rows of a rendered
table that read the same in every cell but one axis merge into one row that
lists that axis's values; an axis merged everywhere is dropped and named once
above the table (`merge_rows`). Pure pandas: no JAX.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

from harness.analysis.frames import key_text

# Columns that are the same for two runs of one compiled program and differ between programs.
PROGRAM_SIGNATURE = ("program_fingerprint", "trainable_params", "frozen_params", "opt_state_bytes", "memory_bytes",
                     "temp_bytes", "flops_per_step", "matmuls_in_loop", "matmuls_hoisted", "batch_size", "steps")
MAX_ROWS = 40
COUNT_COLUMN = "ok runs"


def _profile(values: pd.Series) -> tuple:
    return tuple(sorted(key_text(v) for v in set(values.astype(object).where(values.notna(), None))))


def changes(df: pd.DataFrame, key: str, others: Sequence[str], columns: Iterable[str]) -> bool:
    """Whether some column takes other values for another value of `key`, the other keys held fixed.

    >>> df = pd.DataFrame({"lr": [1, 2, 1, 2], "method": ["a", "a", "b", "b"], "bytes": [8, 8, 9, 9]})
    >>> changes(df, "lr", ["method"], ["bytes"]), changes(df, "method", ["lr"], ["bytes"])
    (False, True)
    """
    columns = [c for c in columns if c in df and df[c].notna().any()]
    grouped = df.groupby(list(others), dropna=False, sort=False) if others else [((), df)]
    for _, g in grouped:
        if g[key].nunique(dropna=False) < 2:
            continue
        for column in columns:
            profiles = {_profile(rows[column]) for _, rows in g.groupby(key, dropna=False, sort=False)}
            if len(profiles) > 1:
                return True
    return False


def program_keys(df: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    """`keys` less those that take several values and change no program signature column.

    All of `keys` when the runs hold no signature.
    """
    ok = df[df["status"] == "ok"]
    if not any(c in ok and ok[c].notna().any() for c in PROGRAM_SIGNATURE):
        return list(keys)
    kept = [k for k in keys
            if ok[k].nunique(dropna=False) < 2 or changes(ok, k, [o for o in keys if o != k], PROGRAM_SIGNATURE)]
    # Two axes that co-vary (a strategy sets the freeze option) each look like no change with the other held
    # fixed, so both were dropped though together they change the program: put dropped keys back, in order,
    # until no kept group holds two compiled programs (the records' HLO fingerprints, not the axes' names).
    for key in [k for k in keys if k not in kept]:
        if not mixes_programs(ok, kept):
            break
        kept = [k for k in keys if k in kept or k == key]
    return kept


def mixes_programs(df: pd.DataFrame, keys: Sequence[str]) -> bool:
    """Whether some group of `df` by `keys` holds runs of more than one compiled program (program_fingerprint).

    >>> df = pd.DataFrame({"method": ["a", "a"], "freeze": ["x", "y"], "program_fingerprint": ["p", "q"]})
    >>> mixes_programs(df, ["method"]), mixes_programs(df, ["method", "freeze"])
    (True, False)
    """
    if "program_fingerprint" not in df or df["program_fingerprint"].isna().all():
        return False
    grouped = df.groupby(list(keys), dropna=False, sort=False) if keys else [((), df)]
    return any(g["program_fingerprint"].nunique() > 1 for _, g in grouped)


def pooled_axes(df: pd.DataFrame, keys: Sequence[str], kept: Sequence[str]) -> list[str]:
    """The keys not `kept` that still take several values inside some group by `kept`: what a table pools over."""
    ok = df[df["status"] == "ok"]
    grouped = ok.groupby(list(kept), dropna=False, sort=False) if kept else [((), ok)]
    return [k for k in keys if k not in kept and any(g[k].nunique(dropna=False) > 1 for _, g in grouped)]


def _count(cells: Iterable[str]) -> str:
    """'2/2' + '1/2' -> '3/4'."""
    ok = total = 0
    for cell in cells:
        a, _, b = str(cell).partition("/")
        ok, total = ok + int(a), total + int(b)
    return f"{ok}/{total}"


def merge_rows(table: pd.DataFrame, keys: Sequence[str]) -> tuple[pd.DataFrame, list[str]]:
    """(the table with rows merged along each key where nothing else differs, notes on dropped keys).

    Keys are tried last first (lr before optimizer before method). A merged
    key cell lists its values; the 'ok runs' column adds up.

    >>> t = pd.DataFrame({"method": ["a", "a", "b", "b"], "lr": [0.1, 0.2, 0.1, 0.2], "bytes": ["8", "8", "9", "9"]})
    >>> merged, notes = merge_rows(t, ["method", "lr"])
    >>> merged.to_dict("list"), notes
    ({'method': ['a', 'b'], 'bytes': ['8', '9']}, ['the same for every lr (0.1, 0.2)'])
    """
    table = table.copy()
    notes = []
    for key in reversed([k for k in keys if k in table]):
        values = list(dict.fromkeys(key_text(v) for v in table[key]))
        if len(values) < 2:
            continue
        table[key] = [key_text(v) for v in table[key]]
        rest = [c for c in table.columns if c not in (key, COUNT_COLUMN)]
        aggregations = {key: lambda v: ", ".join(dict.fromkeys(", ".join(v).split(", ")))}
        if COUNT_COLUMN in table:
            aggregations[COUNT_COLUMN] = _count
        merged = (table.astype({c: str for c in rest}).groupby(rest, sort=False, dropna=False)
                  .agg(aggregations).reset_index()[list(table.columns)])
        if len(merged) == len(table):
            continue
        if (merged[key] == ", ".join(values)).all():
            merged = merged.drop(columns=[key])
            notes.append(f"the same for every {key} ({', '.join(values)})")
        table = merged
    return table.reset_index(drop=True), notes


def split(table: pd.DataFrame, keys: Sequence[str], limit: int = MAX_ROWS) -> list[tuple[str, pd.DataFrame]]:
    """[(title, part)]: the table whole if it fits, else one part per value of the key that splits it
    into the fewest parts that each fit (the first key, the table's main one, is never split on);
    if no key does, the first `limit` rows and a title saying where the rest is."""
    if len(table) <= limit:
        return [("", table)]
    for key in sorted([k for k in keys[1:] if k in table], key=lambda k: table[k].nunique()):
        parts = [(f"{key} = {value}", rows.drop(columns=[key]).reset_index(drop=True))
                 for value, rows in table.groupby(key, sort=False)]
        if len(parts) > 1 and max(len(p) for _, p in parts) <= limit:
            return parts
    return [(f"first {limit} of {len(table)} rows; every run is in runs.csv / runs.parquet", table.head(limit))]


def compact(table: pd.DataFrame, keys: Sequence[str],
            pooled: Sequence[str] = ()) -> tuple[list[tuple[str, pd.DataFrame]], str]:
    """([(title, part)] of the merged table, at most MAX_ROWS rows each; a line noting pooled and dropped axes)."""
    table, notes = merge_rows(table, keys)
    pooled_note = [f"each row pools its runs over {', '.join(pooled)}: one compiled program per row (the runs' HLO "
                   "fingerprints)"] if pooled else []
    lines = pooled_note + notes
    return split(table, [k for k in keys if k in table]), ("_" + "; ".join(lines) + "._\n") if lines else ""
