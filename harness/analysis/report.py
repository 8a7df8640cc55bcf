"""`harness report`: a finished sweep as runs.parquet, runs.csv, report.md with tables and figures, and W&B.

Reads only the sweep's result.json records (see `harness.analysis.frames`), so it needs
no training run and no W&B account. `write_report` writes the files,
`log_report_to_wandb` logs them as one W&B run, `main_report` is the command
line. `python -m harness.analysis.report report|compare ...` runs either command.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from harness.analysis import findings, profiles, tuning
from harness.analysis.compare import main_compare, parse_threshold, with_option_values
from harness.analysis.figures import FIGURE_TITLES, write_figures
from harness.analysis.frames import (
    RUNS_TABLE,
    declared_question,
    distinct_runs,
    extra_axes,
    frame,
    group_keys,
    key_text,
    lead_with,
    markdown_table,
    nan_to_none,
    natural_order,
    number_text,
    question_axes,
    splitting_keys,
    status_counts,
    summarize,
    sweep_order,
)
from harness.analysis.tables import compact, pooled_axes, program_keys
from harness.analysis.tradeoffs import flops_table, main_metric, peft_table
from harness.core.fields import PACKAGES, nested_get
from harness.core.files import atomic_path
from harness.core.metrics import METRICS
from harness.jobs.store import RECORD_NAME, read_record, read_records
from harness.jobs.sweep_plan import SWEEP_FILE, missing_runs, plan_dirs, plan_problem, planned_count, read_plan
from harness.jobs.tracking import quiet_settings, run_group
from harness.jobs.wandb_file import is_complete, job_type, run_file

FINDINGS_NAME = "findings.csv"
TABLES_NAME = "tables.md"  # the detail tables, beside report.md

# --- tables --------------------------------------------------------------------------------------


def _int_text(value: Any) -> str:
    value = nan_to_none(value)
    return "—" if value is None else f"{int(round(value)):,}"


def _cell(median: Any, low: Any, high: Any, fmt=number_text, scale: float = 1.0) -> str:
    """'median [min, max]', or just the median when the spread does not show at this precision."""
    if nan_to_none(median) is None:
        return "—"
    text, low_text, high_text = fmt(median * scale), fmt(low * scale), fmt(high * scale)
    if nan_to_none(low) is None or nan_to_none(high) is None or low_text == high_text:
        return text
    return f"{text} [{low_text}, {high_text}]"


def _spread(summary: pd.DataFrame, name: str, fmt=number_text, scale: float = 1.0) -> list[str]:
    """The `_cell` of each summary row for the metric `name`."""
    return [_cell(*v, fmt=fmt, scale=scale)
            for v in zip(summary[f"{name}_median"], summary[f"{name}_min"], summary[f"{name}_max"])]


def _unchanged(summary: pd.DataFrame) -> list[str]:
    """Whether the frozen parameters stayed bitwise identical: 'yes', 'no', 'n/m' of the runs, or '—'."""
    return ["—" if not of else "yes" if n == of else "no" if n == 0 else f"{n}/{of}"
            for n, of in zip(summary["unchanged_runs"], summary["unchanged_of"])]


def _yes_no(value: Any) -> str:
    value = nan_to_none(value)
    return "—" if value is None else "yes" if value else "no"


def _with_keys(summary: pd.DataFrame, keys: list[str], columns: dict[str, Any]) -> pd.DataFrame:
    """The configuration's keys, its ok runs out of all, then `columns`."""
    ok_runs = [f"{ok}/{n}" for ok, n in zip(summary["ok"], summary["runs"])]
    return pd.DataFrame({**{k: summary[k] for k in keys}, "ok runs": ok_runs, **columns})


def _has(summary: pd.DataFrame, name: str) -> bool:
    return f"{name}_median" in summary and summary[f"{name}_median"].notna().any()


def fit_table(summary: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Train and test value of each metric (harness.core.metrics) the runs have, and the fitted line if any."""
    columns = {f"{split} {m.title}": _spread(summary, f"{split}_{m.name}") for m in METRICS.values()
               for split in ("train", "test") if _has(summary, f"{split}_{m.name}")}
    columns.update({name: _spread(summary, name) for name in ("slope", "intercept") if _has(summary, name)})
    return _with_keys(summary, keys, columns)


def cost_table(summary: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return _with_keys(summary, keys, {"compile (s)": _spread(summary, "compile_s"),
                                      "compile source": summary["compile_sources"],
                                      "call / steps (µs)": _spread(summary, "run_s_per_step", scale=1e6),
                                      "in-loop step (µs)": _spread(summary, "in_loop_s_per_step", scale=1e6),
                                      "per-call overhead (µs)": _spread(summary, "dispatch_overhead_s", scale=1e6),
                                      "run time / call (ms)": _spread(summary, "run_s_per_call", scale=1e3),
                                      "achieved GFLOP/s": _spread(summary, "achieved_flops_per_s", scale=1e-9),
                                      "fraction of peak": _spread(summary, "peak_fraction")})


def _mb(value: Any) -> str:
    value = nan_to_none(value)
    return "—" if value is None else number_text(value / 2**20)


def memory_table(summary: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return _with_keys(summary, keys, {"trainable params": _spread(summary, "trainable_params", _int_text),
                                      "frozen params": _spread(summary, "frozen_params", _int_text),
                                      "memory (MiB)": _spread(summary, "memory_bytes", _mb),
                                      "temp memory (MiB)": _spread(summary, "temp_bytes", _mb)})


def cost_and_memory_table(summary: pd.DataFrame, keys: list[str], stated: Iterable[str] = ()) -> pd.DataFrame:
    """`cost_table` and `memory_table`'s own columns side by side (one row per compiled program), less the `stated`
    columns another table of the report already holds."""
    memory = memory_table(summary, keys).drop(columns=[*keys, "ok runs"])
    return pd.concat([cost_table(summary, keys), memory], axis=1).drop(columns=list(stated), errors="ignore")


def methods_table(df: pd.DataFrame) -> pd.DataFrame:
    """method x optimizer (and whatever else splits them) -> what happens to the frozen parameters."""
    keys = splitting_keys(df, ("method", "optimizer"), ("freeze", "model", *extra_axes(df)))
    summary = summarize(df, keys)
    return pd.DataFrame({
        **{k: summary[k] for k in keys},
        "frozen drift L2 (max)": [number_text(v) for v in summary["drift_l2_max"]],
        "frozen bitwise unchanged": _unchanged(summary),
        "optimizer state (bytes)": _spread(summary, "opt_state_bytes", _int_text),
        "grads cover frozen": [_yes_no(v) for v in summary["grads_cover_frozen"]],
    })


def _distinct(values: Iterable[Any]) -> str:
    """The values, each once and sorted (the same text whatever the runs' order); '—' when there are none."""
    seen = sorted({key_text(v) for v in values if nan_to_none(v) not in (None, "")})
    return ", ".join(seen) if seen else "—"


def _span(stamps: Iterable[Any]) -> list[str]:
    stamps = sorted(s for s in stamps if isinstance(s, str))
    return [] if not stamps else [stamps[0] if stamps[0] == stamps[-1] else f"{stamps[0]} … {stamps[-1]}"]


def environment_table(df: pd.DataFrame, date: str) -> pd.DataFrame:
    """Where the numbers were measured (harness.core.fields.ENVIRONMENT); a field that differs between runs lists
    every value."""
    def column(name: str) -> pd.Series:
        return df[name] if name in df else pd.Series([None] * len(df), dtype=object)

    # One row for the versions: the table is the report's last detail, not a page of its own.
    rows = [("versions", " · ".join(f"{package} {_distinct(column(package.replace('-', '_') + '_version'))}"
                                    for package in (*PACKAGES, "python")))]
    rows += [
        ("platform / device kind", _distinct(f"{p} / {k}" for p, k in zip(column("platform"), column("device_kind"))
                                             if nan_to_none(p) is not None)),
        ("device", _distinct(column("device_name"))),
        ("CPU", _distinct(f"{m} ({key_text(n)} cores)" for m, n in zip(column("cpu_model"), column("cpu_count"))
                          if nan_to_none(m) is not None)),
        ("git commit", _distinct(column("git_commit"))),
        ("runs started", _distinct(_span(column("started")))),
        ("report date", date),
    ]
    return pd.DataFrame(rows, columns=["", ""])


def _problem_text(run: pd.Series) -> str | None:
    """A run's error, or the step its loss went non-finite."""
    if nan_to_none(run["error"]) is not None:
        return run["error"]
    step = nan_to_none(run["diverged_at_step"])
    return None if step is None else f"non-finite loss from step {step}"


def not_ok_table(df: pd.DataFrame) -> pd.DataFrame:
    """The runs that did not finish ok: job number, status, overrides, error or first non-finite step."""
    bad = df[df["status"] != "ok"]
    return pd.DataFrame({"job": bad["job_num"], "status": bad["status"], "overrides": bad["overrides"],
                         "error": [_problem_text(run) for _, run in bad.iterrows()]})


def _range_text(values: list[float], scale: float) -> str:
    low, high = number_text(min(values) * scale), number_text(max(values) * scale)
    return low if low == high else f"{low}–{high}"


def plausibility_lines(df: pd.DataFrame, records: list[dict]) -> list[str]:
    """The machine's calibrated peak, every run flagged as faster than it, and the full-batch hoisting note."""
    peaks = [nested_get(r, "environment", "calibration") for r in records]
    peaks = [p for p in peaks if p]
    limit = next((v for r in records if (v := nested_get(r, "plausibility", "limit"))), None)
    lines = []
    if peaks:
        flops = [p["matmul_flops_per_s"] for p in peaks]
        copy = [p["copy_bytes_per_s"] for p in peaks]
        lines.append(f"Calibrated peak of this machine (once per process, best of {peaks[0].get('matmul_size')}² "
                     f"f32 matmuls and {peaks[0].get('copy_bytes', 0) // 2**20} MiB copies): "
                     f"{_range_text(flops, 1e-9)} GFLOP/s, {_range_text(copy, 1e-9)} GB/s. A run is flagged when its "
                     f"XLA flop count per step over its in-loop step time exceeds {limit}x that peak.\n")
    flagged = df[df["warning"].notna()] if "warning" in df else df.iloc[:0]
    if len(flagged):
        lines.append(f"**{len(flagged)} runs report step times faster than this machine can compute them** "
                     "(XLA hoisted or removed work; their step times are not the training's cost):\n")
        lines.append(markdown_table(pd.DataFrame({
            "job": flagged["job_num"], "overrides": flagged["overrides"],
            "fraction of peak": [number_text(v) for v in flagged["peak_fraction"]],
            "matmuls hoisted out of the loop": flagged["matmuls_hoisted"]})))
    else:
        lines.append("No run is faster than the calibrated peak.\n")
    full = df[df["hoisting_note"].notna()] if "hoisting_note" in df else df.iloc[:0]
    if len(full):
        lines.append(f"Note: {len(full)} runs train on the full batch with frozen parameters: their step time "
                     "excludes work XLA can hoist out of the loop; `train.batch_size` gives a new batch every step.\n")
    return lines


def _counts_text(df: pd.DataFrame) -> str:
    """'a ok, b diverged, c failed, d skipped'."""
    return ", ".join(f"{n} {status}" for status, n in status_counts(df).items())


# --- report.md -----------------------------------------------------------------------------------

METHOD_NOTES = (
    "Per method and optimizer, over every run of the sweep: how far the frozen parameters moved "
    "(L2 norm of final − initial), whether they stayed bitwise identical, how large the optimizer state is, "
    "and whether gradients were computed for frozen parameters at all."
)


# Verdict words the findings can print beyond their legend's, and what each means: every word is defined.
MORE_VERDICTS = {"no data": "no setting has runs of both sides with this measure (e.g. no run reached the target)",
                 findings.ZERO_SIDE: "a seed's value is 0 on one side (an accuracy of 0): neither its ratio nor a "
                                     "geometric mean over the seeds has a meaning; the cost-and-quality table gives "
                                     "each side's median"}


def undefined_verdicts(found: pd.DataFrame, text: str) -> list[str]:
    """A legend line for each verdict word `found` uses that the findings' `text` does not define.

    >>> [line.strip() for line in undefined_verdicts(pd.DataFrame({"verdict": ["no data"]}), "**faster**: ...")]
    ['Also: **no data**: no setting has runs of both sides with this measure (e.g. no run reached the target).']
    """
    used = set(found["verdict"].dropna()) if "verdict" in found else set()
    return [f"Also: **{word}**: {meaning}.\n" for word, meaning in MORE_VERDICTS.items()
            if word in used and f"**{word}**" not in text]


def missing(sweep_dir: Path, df: pd.DataFrame) -> list[dict[str, Any]]:
    """The runs each sweep at or under `sweep_dir` planned (its sweep.json) that left no readable record: a job
    with none, or a point of a vectorized job ({"num": "<job>/<point>"}): [{"num", "overrides", "sweep"}],
    "sweep" being the sweep's directory."""
    out = []
    for plan_dir in plan_dirs(sweep_dir):
        readable = {str(path) for path in df["path"] if Path(path).is_relative_to(plan_dir)}
        records = [record for path, record in read_records(plan_dir)[0] if str(path) in readable]
        out += [{**job, "sweep": str(plan_dir)} for job in missing_runs(read_plan(plan_dir), records)]
    return out


def missing_table(jobs: list[dict[str, Any]]) -> pd.DataFrame:
    sweeps = {job["sweep"] for job in jobs}
    return pd.DataFrame({**({"sweep": [job["sweep"] for job in jobs]} if len(sweeps) > 1 else {}),
                         "job": [job["num"] for job in jobs],
                         "overrides": [" ".join(job["overrides"]) if job.get("overrides") is not None else "?"
                                       for job in jobs]})


def shown_path(sweep_dir: Path, df: pd.DataFrame) -> str:
    """The sweep's directory from its results root, `<experiment>/<timestamp>`, else its own name: never the
    absolute path of the machine that made it (a committed reference's was a temporary directory)."""
    sweep_dir = Path(sweep_dir).resolve()
    names = set(df["experiment"].dropna()) if "experiment" in df else set()
    return f"{sweep_dir.parent.name}/{sweep_dir.name}" if sweep_dir.parent.name in names else sweep_dir.name


def _relative(path: Path | str, sweep_dir: Path) -> str:
    """`path` from the sweep's directory when it lies inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path(sweep_dir).resolve()))
    except ValueError:
        return str(path)


def render_report(sweep_dir: Path, df: pd.DataFrame, records: list[dict], problems: list[tuple[Path, str]],
                  figures: Mapping[str, Path | str], date: str, found: pd.DataFrame | None = None,
                  threshold: float = findings.THRESHOLD, missing_jobs: list[dict[str, Any]] = (),
                  question: Sequence[str] = (), protocol: str = findings.UNTUNED,
                  sections: Iterable[str] = (), compared: pd.DataFrame | None = None) -> str:
    """report.md as text: findings (under `protocol`), cost and quality, `sections` (tuning, performance profiles),
    figures, whether the timed work is real, a link to the detail tables (`render_tables`), environment, runs not
    ok, missing jobs; every table's first columns are the `question`'s axes. The tables hold the `compared` runs
    (a tuned sweep's best trials), else every run."""
    parts = [
        f"# Sweep report: {_distinct(df['experiment'])}\n",
        f"`{shown_path(sweep_dir, df)}`: {len(df)} runs, {_counts_text(df)}"
        + (f"; {len(problems)} unreadable records" if problems else "")
        + (f"; **{len(missing_jobs)} planned jobs with no record**" if missing_jobs else "") + ".\n",
    ]
    if found is not None and (df["status"] == "ok").any():
        parts.append(findings.render_findings(distinct_runs(df), found, threshold, protocol))
        parts += undefined_verdicts(found, parts[-1])
    # The study's own sections (tuning, performance profiles) follow the cost-and-quality table: findings, that
    # table, then figures lead every report.
    sections = list(sections) if found is not None else []
    # What did not run, or not well, comes after the figures and detail tables: the counts above say it first.
    status = ["## Environment\n", markdown_table(environment_table(df, date)),
              "## Runs that did not finish ok\n",
              markdown_table(not_ok_table(df)) if (df["status"] != "ok").any() else "None.\n"]
    if problems:
        status += ["Unreadable records (skipped):\n",
                   "\n".join(f"- `{_relative(p, sweep_dir)}`: {why}" for p, why in sorted(problems)) + "\n"]
    if missing_jobs:
        status += ["## Planned jobs with no record\n",
                   "In the sweep's plan (sweep.json) but without a readable result.json: never run, or lost. "
                   "`resume=<sweep dir>` with the sweep's overrides runs them.\n",
                   markdown_table(missing_table(list(missing_jobs)))]
    if not (df["status"] == "ok").any():
        return "\n".join([*parts, *status, "No run finished ok: no tables or figures.\n"])
    if compared is not None and not compared.empty:
        df = compared  # the counts and run status above are every run's
    if _cost_and_quality_shown(df):
        peft_keys, peft = peft_table(df, question)
        parts += ["## Cost and quality\n",
                  "Per workload and configuration, medians over its ok runs (Hugging Face PEFT's comparison): "
                  "trainable parameters, optimizer state, memory of one call, in-loop step time, time to the "
                  "target (train.target; runs that reached it of all), test quality (* Pareto-optimal against "
                  "the step time within its workload: no other configuration is better in step time or quality "
                  "by the findings' test, their interval beyond "
                  f"±{findings.THRESHOLD:.0%}, and worse in neither; configurations of one compiled program "
                  "share its step time) and forgetting (the source task's main metric lost under "
                  "the pretrained head). A step time the plausibility check flags (faster than the machine can "
                  "compute) is left out: —.\n", *_table(lambda *_: peft, df, peft_keys)]
    parts += sections
    parts.append("## Figures\n")
    for key, title in FIGURE_TITLES.items():
        where = figures.get(key, "not drawn")
        if isinstance(where, Path):  # a figure with nothing to draw is named once below; each names itself
            parts.append(f"![{title}]({Path(where).name})\n")
    skipped = [f"{FIGURE_TITLES[k]} ({why})" for k, why in figures.items() if not isinstance(why, Path)]
    parts += [f"_Not drawn: {'; '.join(skipped)}._\n"] if skipped else []
    parts += [
        # Every verdict above rests on the step times being real: said here, not only among the detail tables.
        "## Is the timed work real?\n", *plausibility_lines(df, records),
        "## Detail tables\n",
        f"[{TABLES_NAME}]({TABLES_NAME}), per configuration: where the flops go, what each method does to the "
        "frozen parameters, the fit, and the cost and memory of each compiled program. Every run is in "
        "`runs.parquet` and `runs.csv`; the findings with their intervals in `findings.csv`.\n",
        *status,
    ]
    return "\n".join(parts)


def _table(make, rows: pd.DataFrame, by: list[str], pool: Sequence[str] = ()) -> list[str]:
    """`make(rows, by)` as markdown, split and merged by `compact` (a note first when it pools or splits)."""
    parts, note = compact(make(rows, by), by, pool)
    out = [note] if note else []
    for title, part in parts:
        out += [f"**{title}**\n"] if title else []
        out.append(markdown_table(part))
    return out


def _cost_and_quality_shown(df: pd.DataFrame) -> bool:
    """Whether report.md has a cost-and-quality table (a main quality metric, parameter counts)."""
    return main_metric(df) is not None and df["trainable_params"].notna().any()


def render_tables(sweep_dir: Path, df: pd.DataFrame, question: Sequence[str] = (),
                  compared: pd.DataFrame | None = None) -> str:
    """tables.md as text: the detail tables behind report.md (where the flops go, what each method does to the
    frozen parameters, fit, cost and memory of each compiled program), less the columns report.md's
    cost-and-quality table states. Holds the `compared` runs (a tuned sweep's best trials), else every run."""
    parts = [f"# Detail tables: {_distinct(df['experiment'])}\n",
             f"`{shown_path(sweep_dir, df)}`: the tables behind [report.md](report.md), whose findings carry the "
             "confidence intervals.\n"]
    if not (df["status"] == "ok").any():
        return "\n".join([*parts, "No run finished ok: no tables.\n"])
    if compared is not None and not compared.empty:
        df = compared
    keys = lead_with(group_keys(df), question)
    # Step time, memory, FLOP/s: pooled only over runs of one compiled program. Which axes pool is decided in the
    # sweep's own key order (a strategy's freeze option, put back first, lets scratch and finetune pool), then the
    # question's axes lead the columns.
    costs = lead_with(program_keys(df, group_keys(df)), question)
    pooled = pooled_axes(df, keys, costs)
    method_keys = lead_with(splitting_keys(df, ("method", "optimizer"), ("freeze", "model", *extra_axes(df))),
                            question)
    # One table per fact: what the cost-and-quality table states is left out of these.
    stated = ("trainable params", "memory (MiB)", "optimizer state (bytes)") if _cost_and_quality_shown(df) else ()
    parts.append("Numbers are medians over the ok runs of each configuration (seeds, identical repeats), "
                 "with [min, max] when they differ: the observed spread, not a confidence interval. Rows that "
                 "read the same merge; every run is in `runs.parquet`, `runs.csv`; the findings with their "
                 "intervals in `findings.csv`.\n")
    if "step_flops" in df and df["step_flops"].notna().any():
        flops_keys, flops = flops_table(df, question)
        parts += ["## Where the flops go\n",
                  "XLA's flops of one step's parts on one batch (harness/core/cost.py): the forward pass, the "
                  "gradient the freeze needs, the rest of the compiled step (optimizer update, and gradients the "
                  "method computes that the freeze does not need), the step itself; and the backward work that "
                  "freezing removed against a full fine-tune.\n",
                  *_table(lambda *_: flops, df, flops_keys)]
    parts += [
        "## Frozen parameters: what each method does\n", METHOD_NOTES + "\n",
        *_table(lambda rows, _: methods_table(rows).drop(columns=list(stated), errors="ignore"), df, method_keys),
        "## Fit\n", "Final train / test value of each quality metric over the task's data and, for 1-D "
                     "inputs, the line fitted through the test predictions.\n",
        *_table(fit_table, summarize(df, keys), keys),
        "## Cost and memory of each compiled program\n",
        "Compile: ahead-of-time XLA compile of the whole training program, cold compiles only (runs "
        "served from a compile cache have none). Run: one jitted call (all steps), after warm-up. "
        "In-loop step: (call − 1-step call) / (steps − 1); per-call overhead: 1-step call − one "
        "in-loop step; XLA's flop count per step over the in-loop step, and that rate as a fraction "
        "of the machine's calibrated f32 matmul peak. Memory: XLA's memory analysis of the compiled training "
        "program, what one call holds at most (arguments + outputs + temporaries − aliased buffers), temp the "
        "temporaries alone.\n",
        *_table(lambda rows, by: cost_and_memory_table(rows, by, stated), summarize(df, costs), costs, pooled),
    ]
    return "\n".join(parts)


def write_report(sweep_dir: str | Path, df: pd.DataFrame, out_dir: str | Path | None = None, *,
                 records: list[dict] | None = None, problems: list[tuple[Path, str]] = (),
                 baselines: Mapping[str, str] | None = None,
                 threshold: float = findings.THRESHOLD) -> dict[str, Path | str]:
    """Writes runs.parquet, runs.csv, findings.csv, figures, report.md and tables.md for `df` into `out_dir`
    (default: the sweep).

    Returns {figure name: PNG path, or why it was skipped}, ready for
    `log_report_to_wandb`. Without `records`, histories and environments are
    re-read from the files in `df["path"]`; one that no longer reads counts as empty.
    """
    sweep_dir = Path(sweep_dir)
    out_dir = Path(out_dir) if out_dir is not None else sweep_dir
    if records is None:
        records = [read_record(Path(path))[0] or {} for path in df["path"]]
    by_path = dict(zip(df["path"], records))
    order = sweep_order(sweep_dir)
    question = question_axes(df, order, declared_question(records))
    # The same records give the same report whatever the job order; rows read in the question's order.
    df = natural_order(df, order, lead=question)
    records = [by_path[path] for path in df["path"]]
    out_dir.mkdir(parents=True, exist_ok=True)
    table = df.assign(path=[_relative(path, sweep_dir) for path in df["path"]])  # no machine's directories
    # Each file whole or not at all (harness.core.files): a full disk leaves the previous report, never half of one.
    with atomic_path(out_dir / RUNS_TABLE) as tmp:
        table.to_parquet(tmp, index=False)
    with atomic_path(out_dir / "runs.csv") as tmp:
        table.to_csv(tmp, index=False)
    histories = {path: record.get("history") for path, record in zip(df["path"], records)}
    # The test metric each run evaluated during training (train.eval_every), drawn beside its train loss.
    evaluations = {path: {**((record.get("target") or {}).get("evaluations") or {}),
                          "metric": (record.get("target") or {}).get("metric")}
                   for path, record in zip(df["path"], records)}
    # A tuned sweep (hydra/sweeper=tuned) compares each method at its best trial per study, chosen on validation:
    # its findings, figures and tables hold those trials (the Tuning section holds every trial's choice).
    tune = tuning.tune_of(sweep_dir)
    best = None if tune is None else tuning.best_runs(df, tune)
    shown = df if best is None or best.empty else best
    figures = write_figures(shown, histories, out_dir, question, evaluations)
    compared = distinct_runs(shown)
    found = findings.comparisons(compared, baselines, threshold=threshold, axes=question)
    with atomic_path(out_dir / FINDINGS_NAME) as tmp:
        found.to_csv(tmp, index=False)
    sections = []
    if tune is not None:
        with atomic_path(out_dir / tuning.TUNE_FILE) as tmp:  # a report of runs.parquet alone stays tuned
            tmp.write_text(json.dumps(tune, indent=1))
        sections.append(tuning.tuning_section(df, tune))
    profile = profiles.report_section(df, out_dir, tune)
    if profile is not None:
        section, drawn = profile
        sections.append(section)
        if isinstance(drawn, Path):  # logged to W&B with the others; drawn in its own section, not under Figures
            figures = {**figures, "profile": drawn}
    date = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    chosen = None if shown is df else shown
    with atomic_path(out_dir / TABLES_NAME) as tmp:
        tmp.write_text(render_tables(sweep_dir, df, question, chosen))
    with atomic_path(out_dir / "report.md") as tmp:
        tmp.write_text(render_report(sweep_dir, df, records, list(problems), figures, date, found, threshold,
                                     missing(sweep_dir, df), question,
                                     findings.UNTUNED if tune is None else findings.tuned_protocol(tune["trials"]),
                                     sections, chosen))
    return figures


def headline_lines(df: pd.DataFrame, out_dir: str | Path) -> list[str]:
    """The findings' headline of a report already written to `out_dir` (read back, not bootstrapped again)."""
    path = Path(out_dir) / FINDINGS_NAME
    if not (df["status"] == "ok").any() or not path.is_file() or not path.stat().st_size:
        return []
    try:
        found = pd.read_csv(path, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        return []
    return findings.headline(distinct_runs(df), found)


class NoRecords(ValueError):
    """A directory with nothing to report on: no result.json that reads."""


class UnknownBaseline(ValueError):
    """A `--baseline AXIS=VALUE` whose value no run of the sweep has."""


def check_baselines(df: pd.DataFrame, baselines: Mapping[str, str]) -> None:
    """UnknownBaseline, naming the values that exist, when a `--baseline AXIS=VALUE` names none of the sweep's."""
    for axis, value in baselines.items():
        if axis not in df:
            swept = [c for c in question_axes(df) if c in df]
            raise UnknownBaseline(f"--baseline {axis}={value}: no run of this sweep has an axis {axis}; the axes it varies: "
                                  f"{', '.join(swept) or 'none'}")
        values = [key_text(v) for v in dict.fromkeys(df[axis]) if nan_to_none(v) is not None]
        if value not in values:
            raise UnknownBaseline(f"--baseline {axis}={value}: no run of this sweep has {axis}={value}; its {axis} "
                                  f"values: {', '.join(values) or 'none'}")


def build_report(sweep_dir: str | Path, out_dir: str | Path | None = None, *,
                 baselines: Mapping[str, str] | None = None, threshold: float = findings.THRESHOLD) -> dict[str, Any]:
    """Reads a sweep and writes runs.parquet, runs.csv, findings.csv, report.md and figures; returns what it made.

    `sweep_dir` may hold several sweeps (e.g. results/<name>/): each one's plan is checked for missing jobs.
    """
    read, problems = read_records(sweep_dir)
    plans = [(plan_dir / SWEEP_FILE, why) for plan_dir in plan_dirs(Path(sweep_dir)) if (why := plan_problem(plan_dir))]
    if not read:
        raise NoRecords(f"no readable record under {sweep_dir}" + (f" ({len(problems)} unreadable: "
                                                                    f"{problems[0][0]}: {problems[0][1]})"
                                                                    if problems else ""))
    df = frame(read)
    check_baselines(df, baselines or {})
    records = [record for _, record in read]
    figures = write_report(sweep_dir, df, out_dir, records=records, problems=[*problems, *plans],
                           baselines=baselines, threshold=threshold)
    out = Path(out_dir) if out_dir is not None else Path(sweep_dir)
    return {"df": df, "problems": problems, "records": records, "figures": figures,
            "tables": [out / RUNS_TABLE, out / "runs.csv", out / "findings.csv", out / TABLES_NAME],
            "report": out / "report.md", "details": out / TABLES_NAME,
            "missing": missing(Path(sweep_dir), df), "plan_problems": plans,
            "sweeps": plan_dirs(Path(sweep_dir))}


# --- W&B -----------------------------------------------------------------------------------------


def _plain(df: pd.DataFrame) -> pd.DataFrame:
    """Object columns of Python scalars and None: what wandb.Table takes without surprises."""
    return df.astype(object).where(df.notna(), None)


def report_runs(sweep_dir: str | Path) -> list[Path]:
    """The sweep's local W&B report runs: the run directories in `<sweep_dir>/wandb/` of job type "report" (a
    single run's directory holds its own run there too)."""
    return sorted(d for d in (Path(sweep_dir) / "wandb").glob("*run-*")
                  if d.name.startswith(("offline-run-", "run-")) and d.is_dir() and not d.is_symlink()
                  and job_type(run_file(d)) == "report")


def current_report_run(sweep_dir: str | Path) -> Path | None:
    """The sweep's complete W&B report run when no record changed after it was logged (a resume that ran
    nothing), else None."""
    complete = [(run_file(d), d) for d in report_runs(sweep_dir)]
    complete = [(file, d) for file, d in complete if is_complete(file)]
    if len(complete) != 1:
        return None
    logged = complete[0][0].stat().st_mtime_ns
    records = [path.stat().st_mtime_ns for path in Path(sweep_dir).rglob(RECORD_NAME)]
    return complete[0][1] if records and max(records) <= logged else None


def log_report_to_wandb(sweep_dir: str | Path, df: pd.DataFrame, figures: Mapping[str, Path | str], *, mode: str,
                        project: str, group: str | None, entity: str | None = None,
                        init_timeout: float = 15.0) -> str | None:
    """One W&B run (job type "report") in the sweep's group: summary tables and the drawn figures.

    `figures` is what `write_report` returns. W&B is an observer: any failure
    comes back as an error string, never raised. The run is written under
    `<sweep_dir>/wandb/`, in place of any earlier report run there.
    """
    if mode == "disabled":
        return None
    try:
        import wandb

        for old in report_runs(sweep_dir):  # one report run per sweep: this one replaces the earlier ones
            shutil.rmtree(old, ignore_errors=True)

        pngs = {name: Path(p) for name, p in figures.items() if isinstance(p, (str, Path)) and Path(p).is_file()}
        counts = status_counts(df)
        run = wandb.init(
            project=project, entity=entity, group=group, job_type="report", name=f"report-{Path(sweep_dir).name}",
            tags=["report", *dict.fromkeys(str(e) for e in df["experiment"].dropna())],
            dir=str(sweep_dir), mode=mode, config={"sweep_dir": str(sweep_dir), "runs": len(df), **counts},
            settings=quiet_settings(init_timeout),
            reinit="finish_previous",
        )
        try:
            logged: dict[str, Any] = {f"figures/{name}": wandb.Image(str(p)) for name, p in pngs.items()}
            if (df["status"] == "ok").any():
                logged["report/summary"] = wandb.Table(dataframe=_plain(summarize(df)))
                logged["report/methods"] = wandb.Table(dataframe=_plain(methods_table(df)))
                logged["report/findings"] = wandb.Table(dataframe=_plain(findings.comparisons(distinct_runs(df))))
            logged["report/runs"] = wandb.Table(dataframe=_plain(df.drop(columns=["config_key"])))
            run.log(logged)
            run.summary.update({f"runs/{k}": v for k, v in counts.items()})
        except Exception:
            run.finish(exit_code=1)
            raise
        run.finish()
    except Exception as err:  # noqa: BLE001 - W&B is an observer, never a point of failure
        return f"{type(err).__name__}: {err}"
    return None


def _wandb_target(records: list[dict]) -> tuple[str, str | None, str | None]:
    """(project, entity, group) the sweep's own runs were logged to."""
    configs = [nested_get(r, "config", "tracker", "wandb", default={}) for r in records]
    wandb_cfg = next((c for c in configs if c), {})
    group = next((run_group(r) for r in records if r.get("config")), None)
    return wandb_cfg.get("project") or "nnx-freeze-bench", wandb_cfg.get("entity"), wandb_cfg.get("group") or group


# --- command line --------------------------------------------------------------------------------


def _report_lines(made: dict[str, Any]) -> list[str]:
    """What `harness report` prints: counts, where things went, runs that were not ok, unreadable files."""
    df, problems = made["df"], made["problems"]
    lines = [f"{len(df)} runs: {_counts_text(df)}"
             + (f"; {len(problems)} unreadable records skipped" if problems else ""),
             *(f"  {line}" for line in headline_lines(df, made["report"].parent)),
             "  tables:  " + ", ".join(map(str, made["tables"])),
             f"  report:  {made['report']}"]
    drawn = [p for p in made["figures"].values() if isinstance(p, Path)]
    lines.append(f"  figures: {len(drawn)} in {made['report'].parent}"
                 + "".join(f"\n    skipped {name}: {why}" for name, why in made["figures"].items()
                           if not isinstance(why, Path)))
    bad = df[df["status"] != "ok"]
    if len(bad):
        lines.append("not ok:")
        for _, run in bad.iterrows():
            lines.append(f"  #{key_text(run['job_num'])} {run['status']}: {run['overrides'] or '(no overrides)'}")
            if problem := _problem_text(run):
                lines.append(f"      {problem}")
    if problems:
        lines.append("unreadable records:")
        lines += [f"  {path}: {why}" for path, why in problems]
    if made["plan_problems"]:
        lines.append("unreadable sweep plans:")
        lines += [f"  {why}" for _, why in made["plan_problems"]]
    if len(made["sweeps"]) > 1:
        lines.append(f"sweeps: {len(made['sweeps'])}, each against its plan (sweep.json):")
        for plan_dir in made["sweeps"]:
            gone = sum(job["sweep"] == str(plan_dir) for job in made["missing"])
            planned = planned_count(read_plan(plan_dir))
            lines.append(f"  {plan_dir}: " + (f"{planned - gone}/{planned} planned jobs recorded" if planned is not None
                                             else "its plan does not read"))
    if made["missing"]:
        lines.append(f"missing: {len(made['missing'])} planned jobs have no record (sweep.json):")
        several = len(made["sweeps"]) > 1
        lines += [f"  {job['sweep'] + ' ' if several else ''}#{job['num']}: "
                  f"{' '.join(job['overrides']) if job.get('overrides') is not None else '?'}"
                  for job in made["missing"]]
    return lines


def _axis_value(text: str) -> tuple[str, str]:
    """'method=reference' -> ('method', 'reference'): any axis the sweep varies (a report column: method, lr,
    fine_tuning, or a swept config leaf such as freeze.patterns); `check_baselines` checks it against the runs."""
    axis, sep, value = text.partition("=")
    if not sep or not axis or not value or axis == "seed":
        raise ValueError(f"--baseline {text!r}: give AXIS=VALUE with AXIS a swept axis other than the seed, e.g. "
                         f"{', '.join(findings.COMPARED_AXES)}, lr or a config leaf such as freeze.patterns")
    return axis, value


def main_report(argv: list[str] | None = None) -> int:
    """`harness report SWEEP_DIR [--out DIR] [--wandb MODE]`; returns the exit code."""
    parser = argparse.ArgumentParser(prog="harness report",
                                     description="Tables, figures and report.md for a finished sweep.")
    parser.add_argument("sweep_dir", type=Path, help="a sweep (or run) directory holding result.json files")
    parser.add_argument("--out", type=Path, help="where to write (default: the sweep directory)")
    parser.add_argument("--wandb", choices=("offline", "online", "disabled"), default="disabled",
                        help="also log the report as a W&B run of job type 'report' (default: disabled)")
    parser.add_argument("--project", help="W&B project (default: the sweep's)")
    parser.add_argument("--entity", help="W&B entity (default: the sweep's)")
    parser.add_argument("--group", help="W&B group (default: the sweep's)")
    parser.add_argument("--baseline", action="append", default=[], metavar="AXIS=VALUE",
                        help="what the findings compare an axis against, e.g. method=reference "
                             "(default: method=diffstate, else the sweep's first value); repeatable")
    parser.add_argument("--threshold", default="5%", help="smallest change the findings call (default 5%%)")
    parser.add_argument("--allow-missing", action="store_true",
                        help="exit 0 even when planned jobs have no record or crashed (default: exit 1)")
    args = parser.parse_args(with_option_values(sys.argv[1:] if argv is None else argv, ("--threshold",)))
    try:
        threshold = parse_threshold(args.threshold)
        baselines = dict(_axis_value(text) for text in args.baseline)
    except ValueError as err:
        parser.error(str(err))
    if not args.sweep_dir.is_dir():
        print(f"harness report: not a directory: {args.sweep_dir}", file=sys.stderr)
        return 2
    try:
        made = build_report(args.sweep_dir, args.out, baselines=baselines, threshold=threshold)
    except NoRecords as err:
        print(f"harness report: {err}", file=sys.stderr)
        return 1
    except UnknownBaseline as err:
        print(f"harness report: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"harness report: cannot write {err.filename or args.out or args.sweep_dir}: {err.strerror or err}; "
              "the report is not complete (no file is left half-written)", file=sys.stderr)
        return 1
    lines = _report_lines(made)
    if args.wandb != "disabled":
        project, entity, group = _wandb_target(made["records"])
        error = log_report_to_wandb(args.sweep_dir, made["df"], made["figures"], mode=args.wandb,
                                    project=args.project or project, group=args.group or group,
                                    entity=args.entity or entity)
        latest = args.sweep_dir / "wandb" / "latest-run"
        where = latest.resolve() if latest.exists() else args.sweep_dir / "wandb"
        after = next(i for i, line in enumerate(lines) if line.startswith("  report:")) + 1
        lines.insert(after, f"  W&B ({args.wandb}): " + (f"not logged, {error}" if error else str(where)))
    print("\n".join(lines), flush=True)
    crashed = int((made["df"]["status"] == "crashed").sum())
    if (made["missing"] or crashed or made["plan_problems"]) and not args.allow_missing:
        print(f"harness report: incomplete sweep: {len(made['missing'])} planned jobs with no record, {crashed} "
              f"crashed" + (f", {len(made['plan_problems'])} sweep plans that do not read"
                            if made["plan_problems"] else "") + " (exit 1; --allow-missing to accept)",
              file=sys.stderr, flush=True)
        return 1
    return 0


def _main(argv: list[str]) -> int:
    """`python -m harness.analysis.report report|compare ARGS`."""
    commands = {"report": main_report, "compare": main_compare}
    if len(argv) < 2 or argv[1] not in commands:
        print("usage: python -m harness.analysis.report {report,compare} ...", file=sys.stderr)
        return 2
    return commands[argv[1]](argv[2:])


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
