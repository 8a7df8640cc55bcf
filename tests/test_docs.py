"""The documentation: the site builds strictly, getting started runs as written, and every relative link resolves.

docs/getting-started.md is run as a user would follow it: in an empty directory, the files it shows
(a python or yaml block whose first line is `# <path>`) are written to that path, then every command
of its ```bash blocks runs, in order, in one bash with `set -e`. The install block (```sh) is the one
command not run here: tests/test_install.py builds, installs and runs the wheel (marked slow).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
GETTING_STARTED = DOCS / "getting-started.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.M | re.S)
FILE_HEADER = re.compile(r"# ([\w./-]+\.(?:py|yaml))\n")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def blocks(path: Path, *languages: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(path.read_text()) if m.group(1) in languages]


def test_getting_started_shows_commands_and_files():
    commands = blocks(GETTING_STARTED, "bash")
    files = [body for _, body in blocks(GETTING_STARTED, "python", "yaml") if FILE_HEADER.match(body)]
    assert len(commands) >= 5 and len(files) >= 4
    assert any("method=diffstate,jax_split,stop_gradient" in body for _, body in commands)
    assert any("harness report" in body for _, body in commands)


@pytest.mark.slow
def test_getting_started_runs_as_written(tmp_path):
    """About 100 s on 2 shared cores: three single runs' and a 3-job sweep's compiles, and a report."""
    for _, body in blocks(GETTING_STARTED, "python", "yaml"):
        header = FILE_HEADER.match(body)
        if header:
            target = tmp_path / header.group(1)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(body)
    script = "set -euo pipefail\n" + "\n".join(body for _, body in blocks(GETTING_STARTED, "bash"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # this venv's `harness`
    env.pop("PYTHONPATH", None)  # the page sets its own
    proc = subprocess.run(["bash", "-x", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"a getting-started command failed:\n{proc.stderr[-6000:]}\n{proc.stdout[-3000:]}"
    sweeps = list((tmp_path / "results" / "mine").glob("*/sweep.json"))
    assert len(sweeps) == 1
    records = sorted(sweeps[0].parent.glob("*/result.json"))
    assert len(records) == 3 and all('"status": "ok"' in r.read_text() for r in records)
    assert (tmp_path / "results" / "mine" / "report.md").is_file()
    assert "tiny_cnn" in proc.stdout and "[" in proc.stdout  # `harness options` lists the options of conf/


def test_mkdocs_build_is_strict_clean(tmp_path):
    if shutil.which("mkdocs", path=str(Path(sys.executable).parent)) is None and shutil.which("mkdocs") is None:
        pytest.skip("mkdocs is not installed: pip install '.[docs]' (CI installs it)")
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    proc = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-6000:]
    assert (tmp_path / "site" / "getting-started" / "index.html").is_file()


@pytest.mark.parametrize("page", [ROOT / "README.md", *sorted(DOCS.glob("*.md"))], ids=lambda p: p.name)
def test_relative_links_point_to_files(page):
    text = FENCE.sub("", page.read_text())  # links inside code blocks are not links
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = target.split("#", 1)[0]
        if not (page.parent / path).exists():
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: links to nothing: {broken}"


@pytest.mark.parametrize("module", ["store", "tracking", "record"])
def test_architecture_page_holds_neither_store_nor_tracking_reads_the_hydra_config(module):
    """docs/architecture.md: the record is built from plain data; the store and tracking never see Hydra's config."""
    import ast

    tree = ast.parse((ROOT / "harness" / "jobs" / f"{module}.py").read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not {name for name in imported if name.split(".")[0] in ("hydra", "omegaconf")}, imported
