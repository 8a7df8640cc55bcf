"""Reads an offline W&B run file (run-*.wandb) with no server: the test's view of what W&B got.

The framing is harness.jobs.wandb_file's (the harness checks its copies with it); this
turns its records into config, history and summary.

Why not W&B's own reader, `wandb leet inspect --json` (wandb 0.31, one JSON object per record)? Its JSON
loses what the tests read: a key W&B holds nested (a logged Table's summary, ["report/findings", "_type"])
comes joined by "." and so cannot be told from a key with a "." in it; NaN and +-inf come as the strings
"NaN" / "Infinity", which a string value can also be; define_metric's aggregations come as a dict in
alphabetical order. It is also slower (20 files of 123 steps, 2 shared cores, two tries): 1.1-1.5 s a file
through the CLI (which imports wandb to start its wandb-core binary), 0.05-0.09 s calling that binary, against
0.01-0.02 s here. Its record stream does agree record for record with this framing: `leet_records` lets
test_wandb.py check that, so the framing the harness relies on is tested against W&B's own reader.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from harness.jobs.wandb_file import records


def read_run(path: Path) -> dict:
    """{'config': {...}, 'history': [{...}], 'summary': {...}, 'run': Record.run, 'exit_code': int | None,
    'metrics': {name or glob: {'step_metric': str, 'summary': [aggregations]}} from define_metric}."""
    assert Path(path).read_bytes()[:4] == b":W&B", f"not a W&B run file: {path}"
    out = {"config": {}, "history": [], "summary": {}, "run": None, "exit_code": None, "metrics": {}}
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["run"] = record.run
            for item in record.run.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "history":
            out["history"].append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            for item in record.summary.update:
                out["summary"][item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "metric":
            metric = record.metric
            out["metrics"][metric.name or metric.glob_name] = {
                "step_metric": metric.step_metric,
                "summary": [f.name for f, on in metric.summary.ListFields() if on]}
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
    return out


def read_finished_run(path: Path, timeout: float = 30.0) -> dict:
    """`read_run` once the file holds its exit record: in-process, `run.finish()` may return before
    wandb-core has written everything (a finished CLI process has no such gap)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        run = read_run(path)
        if run["exit_code"] is not None or time.monotonic() > deadline:
            return run
        time.sleep(0.1)


def leet_records(path: Path) -> list[dict]:
    """The run file's records as W&B's own reader prints them (`wandb leet inspect --json`, one dict each).

    Runs the wandb-core binary as the CLI does (wandb/cli/leet.py: for a .wandb file, the wandb directory is the
    run directory's parent; --no-observability offline), without the CLI's ~1.4 s import of wandb."""
    import wandb.util

    path = Path(path).resolve()
    proc = subprocess.run([wandb.util.get_core_path(), "leet", "inspect", "--json", "--no-observability",
                           "--run-file", str(path), str(path.parent.parent)],
                          check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"wandb leet inspect {path}: {proc.stderr[-2000:]}"
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
