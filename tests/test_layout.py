"""The package's three wings import only downward (core <- jobs <- analysis), and analysis never imports JAX."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "harness"
ORDER = {"core": 0, "jobs": 1, "analysis": 2}  # a wing may import its own modules and those of lower wings


def _imports(path: Path) -> set[str]:
    """Every `harness.*` name a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("harness"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("harness"))
    return found


def _modules() -> dict[str, Path]:
    return {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
            for p in PACKAGE.rglob("*.py")}


def test_each_wing_imports_only_itself_and_the_wings_below():
    upward = []
    for name, path in _modules().items():
        wing = name.split(".")[1] if name.count(".") >= 1 else None
        if wing not in ORDER:
            continue
        for module in _imports(path):
            parts = module.split(".")
            if len(parts) > 1 and parts[1] in ORDER and ORDER[parts[1]] > ORDER[wing]:
                upward.append(f"{name} imports {module}")
    assert upward == []


def test_no_module_imports_one_that_imports_it_back():
    modules = _modules()
    graph = {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}
    cycles, done = [], set()

    def visit(name, stack):
        for dep in sorted(graph[name]):
            if dep in stack:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in done:
                visit(dep, stack + [dep])
        done.add(name)

    for name in sorted(graph):
        if name not in done:
            visit(name, [name])
    assert cycles == []


def test_the_analysis_wing_imports_no_jax():
    modules = sorted(f"harness.analysis.{p.stem}" for p in (PACKAGE / "analysis").glob("*.py") if p.stem != "__init__")
    code = (f"import sys\nfor m in {modules!r}: __import__(m)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'jaxlib', 'flax', 'optax')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
