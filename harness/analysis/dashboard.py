"""`harness dashboard SWEEP_DIR`: a W&B workspace for one sweep's group, built as code with wandb-workspaces.

The workspace shows the sweep's runs only (a filter on its W&B group):
training curves grouped by method, step time and memory per method, frozen
drift, each test metric (harness.core.metrics), and a parallel-coordinates panel
over the swept axes. Its spec is written as JSON next to the report with no
network; `--save` saves it to W&B when W&B is online and prints its URL. The
metric names come from harness.core.fields (the keys the W&B sink logs), and a
panel names only metrics the runs have. Needs the `dashboard` extra: `pip install 'harness[dashboard]'` (from a clone: `pip install '.[dashboard]'`).
"""

from __future__ import annotations

import argparse
import html
import os
import sys
from pathlib import Path
from typing import Any

from harness.core.fields import axes, nested_get, wandb_summary
from harness.core.files import atomic_path
from harness.core.metrics import METRICS
from harness.jobs.store import read_records
from harness.jobs.tracking import run_group

SPEC_NAME = "dashboard.json"
STEP = "train/step"
CURVES = tuple(f"train/{m}" for m in METRICS)  # per-step, logged against train/step
BY_METHOD = (("time/in_loop_s_per_step", "In-loop step time per method (s)"),
             ("time/run_s_per_step_median", "Run time per step per method (s)"),
             ("memory/bytes", "Memory of one call per method (bytes)"),
             ("drift/l2", "Frozen drift L2 per method (0: bitwise unchanged)"),
             *((f"test/{m.name}", f"Final test {m.title} per method") for m in METRICS.values()))
# The parallel-coordinates panel: the swept axes against step time and each main quality metric.
AGAINST = ("time/in_loop_s_per_step", *(f"test/{m.name}" for m in METRICS.values() if m.main))
AXES = ("method", "freeze", "optimizer", "lr", "model", "steps")  # config keys (fields.axes) for parallel coords


def _runs(sweep_dir: Path) -> list[dict]:
    records, _ = read_records(sweep_dir)
    return [record for _, record in records if record.get("config")]


def logged_metrics(records: list[dict]) -> set[str]:
    """Every metric some run of the sweep logs: summary keys, and per-step curves from the histories."""
    names = set()
    for record in records:
        names |= {k for k, v in wandb_summary(record).items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool)}
        history = record.get("history") or {}
        if history.get("step"):
            names.add(STEP)
            names |= {f"train/{k[len('train_'):]}" for k in history if k.startswith("train_")}
    return names


def swept_axes(records: list[dict]) -> list[str]:
    """The axes the sweep varies, as W&B config keys: the report's question axes (frames.question_axes: what the
    experiment's `question` names first, then any swept config leaf, e.g. freeze.patterns, less those that follow
    from another), else the AXES that vary."""
    from harness.analysis.frames import declared_question, frame, question_axes

    asked = question_axes(frame([(Path(), r) for r in records]), declared=declared_question(records))
    if asked:
        return asked
    values = [axes(r) for r in records]
    return [a for a in AXES if len({str(v.get(a)) for v in values}) > 1]


def build_workspace(sweep_dir: str | Path, *, entity: str | None = None, project: str | None = None):
    """The sweep's workspace (a wandb_workspaces Workspace); no network. Raises ValueError with no runs."""
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws

    records = _runs(Path(sweep_dir))
    if not records:
        raise ValueError(f"no result.json records under {sweep_dir}")
    wandb_cfg = next((c for r in records if (c := nested_get(r, "config", "tracker", "wandb"))), {})
    group = wandb_cfg.get("group") or run_group(records[0])
    entity = entity or os.environ.get("WANDB_ENTITY") or wandb_cfg.get("entity") or ""
    project = project or os.environ.get("WANDB_PROJECT") or wandb_cfg.get("project") or "nnx-freeze-bench"
    metrics = logged_metrics(records)
    swept = swept_axes(records)
    # Panels group by the sweep's first question axis: a sweep of one method grouped by method shows one bar.
    first = swept[0] if swept else "method"
    by_axis = wr.Config(first)
    shown = html.escape(first)  # a title shows a name or value as text, never as HTML; filters keep it as it is
    curves = [wr.LinePlot(title=f"{name} per step, mean and min–max per {shown}", x=STEP, y=[name], log_y=True,
                          groupby=by_axis, groupby_aggfunc="mean", groupby_rangefunc="minmax")
              for name in CURVES if name in metrics]
    bars = [wr.BarPlot(title=title.replace("per method", f"per {shown}"), metrics=[name], groupby=by_axis,
                       groupby_aggfunc="mean", groupby_rangefunc="minmax") for name, title in BY_METHOD
            if name in metrics]
    columns = [wr.ParallelCoordinatesPlotColumn(metric=wr.Config(a)) for a in swept]
    columns += [wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric(name), log=name.startswith("time/"))
                for name in AGAINST if name in metrics]
    sections = [ws.Section(name="Training curves", panels=curves, is_open=True),
                ws.Section(name=f"Cost, drift and fit per {shown}", panels=bars, is_open=True),
                ws.Section(name="Swept axes", panels=[wr.ParallelCoordinatesPlot(
                    title="Swept axes against step time and test quality", columns=columns)], is_open=True)]
    return ws.Workspace(
        entity=entity, project=project, name=f"{html.escape(group)} (harness dashboard)",
        sections=[s for s in sections if s.panels],
        runset_settings=ws.RunsetSettings(filters=ws.And(ws.Metric("Group") == group, ws.Metric("JobType") == "train"),
                                          groupby=[ws.Config(a) for a in swept or ["method"]]),
    )


def spec(workspace) -> dict[str, Any]:
    """The workspace as the JSON-ready dict wandb-workspaces would send (no network)."""
    import json

    return json.loads(workspace._to_model().model_dump_json())


def panel_metrics(workspace) -> set[str]:
    """Every metric a panel of the workspace plots (configs as 'config:<key>')."""
    import wandb_workspaces.reports.v2 as wr

    names = set()

    def name(metric) -> str:
        return f"config:{metric.name}" if isinstance(metric, wr.Config) else getattr(metric, "name", metric)

    for section in workspace.sections:
        for panel in section.panels:
            if isinstance(panel, wr.ParallelCoordinatesPlot):
                names |= {name(c.metric) for c in panel.columns}
            elif isinstance(panel, wr.LinePlot):
                names |= {name(m) for m in [panel.x, *panel.y]}
            elif isinstance(panel, wr.BarPlot):
                names |= {name(m) for m in panel.metrics}
    return names


def main_dashboard(argv: list[str] | None = None) -> int:
    """`harness dashboard SWEEP_DIR [--save] [--entity E] [--project P] [--out FILE]`; returns the exit code."""
    parser = argparse.ArgumentParser(prog="harness dashboard",
                                     description="A W&B workspace for one sweep's group, as code.")
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--save", action="store_true", help="save the workspace to W&B (needs W&B online)")
    parser.add_argument("--entity", help="W&B entity (default: WANDB_ENTITY, else the sweep's)")
    parser.add_argument("--project", help="W&B project (default: WANDB_PROJECT, else the sweep's)")
    parser.add_argument("--out", type=Path, help=f"where to write the spec (default: SWEEP_DIR/{SPEC_NAME})")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        import wandb_workspaces  # noqa: F401
    except ImportError:
        from harness.jobs.options import install_hint

        print(f"harness dashboard {install_hint('dashboard')}", file=sys.stderr)
        return 2
    if not args.sweep_dir.is_dir():
        print(f"harness dashboard: not a directory: {args.sweep_dir}", file=sys.stderr)
        return 2
    try:
        workspace = build_workspace(args.sweep_dir, entity=args.entity, project=args.project)
    except ValueError as err:
        print(f"harness dashboard: {err}", file=sys.stderr)
        return 1
    import json

    out = args.out or args.sweep_dir / SPEC_NAME
    try:  # written whole or not at all (a full disk leaves no cut-off spec)
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp:
            tmp.write_text(json.dumps(spec(workspace), indent=1))
    except OSError as err:
        print(f"harness dashboard: cannot write {out}: {err.strerror or err}; choose another place with --out",
              file=sys.stderr, flush=True)
        return 1
    group = html.unescape(workspace.name.removesuffix(" (harness dashboard)"))
    print(f"dashboard: {len(workspace.sections)} sections for W&B group {group!r} "
          f"(project {workspace.project!r}) -> {out}", flush=True)
    if not args.save:
        print(f"  save it once the runs are synced (wandb sync) and W&B is online: "
              f"harness dashboard {args.sweep_dir} --save --entity <entity>", flush=True)
        return 0
    return _save(workspace)


def _save(workspace) -> int:
    """Saves to W&B and prints the URL, or says in one line why it cannot."""
    mode = (os.environ.get("WANDB_MODE") or "").lower()
    if mode in ("offline", "disabled", "dryrun"):
        print(f"harness dashboard: not saved: WANDB_MODE={mode}; the spec is written, run again with W&B online",
              file=sys.stderr)
        return 1
    if not workspace.entity:
        print("harness dashboard: not saved: no W&B entity; pass --entity or set WANDB_ENTITY", file=sys.stderr)
        return 1
    try:
        saved = workspace.save()
    except Exception as err:  # noqa: BLE001 - no network, no login, no project: one line, not a traceback
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        print(f"harness dashboard: not saved ({type(err).__name__}: {first[:300]}); the spec is written, "
              "run again with W&B online and logged in", file=sys.stderr)
        return 1
    print(f"  saved: {saved.url}", flush=True)
    return 0
