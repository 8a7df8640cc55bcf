"""`harness options [GROUP ...]`: what each config group offers, one line per option; and the optional extras.

The config groups are the registry (conf/<group>/<name>.yaml, and the options Hydra's plugins register), so
the listing asks Hydra's own config repository, with the same search path a run has: the harness's configs
(conf/ in a clone, harness/conf installed), `--config-dir DIR` and `hydra.searchpath=[...]` (your own options).
An option's line is its YAML's first comment sentence; without one, the first docstring line of its `_target_`
(read from the source, never imported: no JAX), else its values. Nothing here imports JAX.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

# The groups a user picks from, in the order a run is described; then Hydra's own two that the harness extends.
GROUPS = ("task", "model", "freeze", "strategy", "method", "optimizer", "device", "tracker", "experiment",
          "hydra/launcher", "hydra/sweeper")

# Options that come from an optional extra: (extra, the module that must import, the pip package).
EXTRAS = {
    "hydra/launcher=joblib": ("joblib", "hydra_plugins.hydra_joblib_launcher", "hydra-joblib-launcher"),
    "hydra/launcher=slurm": ("slurm", "hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher"),
    "hydra/launcher=submitit_slurm": ("slurm", "hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher"),
    "hydra/launcher=submitit_local": ("slurm", "hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher"),
    "dashboard": ("dashboard", "wandb_workspaces", "wandb-workspaces"),
}

# Hydra's and its plugins' options carry no comment of ours: a line each.
_HYDRA_OPTIONS = {
    "hydra/launcher/basic": "Hydra's default: the jobs one after another in this process (JAX imported once)",
    "hydra/launcher/joblib": "parallel jobs on this machine, one process each (hydra.launcher.n_jobs)",
    "hydra/launcher/submitit_local": "submitit on this machine: the cluster path, tried locally",
    "hydra/launcher/submitit_slurm": "hydra-submitit-launcher's plain Slurm launcher (prefer slurm)",
    "hydra/sweeper/basic": "Hydra's default: the product of the swept values, in order",
}

WIDTH = 118  # characters of one option's line


def install_hint(key: str) -> str:
    """What installs the extra an option (EXTRAS' key) needs, for an installed package and for a clone.

    >>> install_hint("hydra/launcher=joblib")
    "needs the joblib extra (hydra-joblib-launcher): pip install 'harness[joblib]' (from a clone: pip install '.[joblib]')"
    """
    extra, _, package = EXTRAS[key]
    return (f"needs the {extra} extra ({package}): pip install 'harness[{extra}]' "
            f"(from a clone: pip install '.[{extra}]')")


def installed(module: str) -> bool:
    """Whether `module` imports (a plugin's package: cheap to import)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def missing_extra(overrides: list[str]) -> str | None:
    """One line for the first override that chooses an option of an extra that is not installed, or None."""
    for override in overrides:
        key, sep, value = override.lstrip("+").partition("=")
        if not sep or key != "hydra/launcher":
            continue
        for choice in value.split(","):  # a swept launcher is odd, but each must be there
            name = f"{key}={choice.strip()}"
            if name in EXTRAS and not installed(EXTRAS[name][1]):
                return f"error: {name} {install_hint(name)}"
    return None


def _repository(config_dir: str | None, overrides: list[str]):
    """Hydra's config repository as a run would search it, with Hydra's plugins' options registered."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path
    from hydra.core.config_search_path import SearchPathQuery
    from hydra.core.plugins import Plugins

    from harness.core.config import register
    from harness.jobs.compose import CONF_DIR

    register()  # the schema: a config, not an option

    Plugins.instance()  # imports hydra_plugins.*: the launchers and sweepers they register
    search_path = create_config_search_path(str(CONF_DIR))
    if config_dir is not None:  # as Hydra adds --config-dir
        search_path.prepend(provider="command-line", path=f"file://{Path(config_dir).resolve()}",
                            anchor=SearchPathQuery(provider="schema"))
    loader = ConfigLoaderImpl(config_search_path=search_path)
    searchpath = [o for o in overrides if o.startswith("hydra.searchpath=")]
    return loader._parse_overrides_and_create_caching_repo("config", searchpath)[1]


def _defaults(repo) -> dict[str, str]:
    """group -> the option config.yaml chooses."""
    loaded = repo.load_config("config")
    return {d.group: d.value for d in (loaded.defaults_list or []) if getattr(d, "group", None)
            and isinstance(getattr(d, "value", None), str)} if loaded is not None else {}


def _shorten(text: str, width: int = WIDTH) -> str:
    """`text` cut at a word to fit `width`, with " ..." where it was cut."""
    if len(text) <= width:
        return text
    return text[:width - 4].rsplit(" ", 1)[0].rstrip(",;:") + " ..."


def _comment(text: str) -> str | None:
    """The first sentence of a YAML's leading comment (an example line `#   harness ...` ends it)."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        body = line[1:]
        if body.strip().startswith("@package"):
            continue
        if body.startswith("   ") or not body.strip():  # an indented example, or a blank comment line
            break
        lines.append(body.strip())
    if not lines:
        return None
    joined = " ".join(lines)
    return re.split(r"(?<=[.!?])\s|:\s+`", joined, maxsplit=1)[0].rstrip(".:")


def _docstring(target: str) -> str | None:
    """The first line of the docstring of `target` (package.module.attribute), read from its source."""
    module, _, name = target.rpartition(".")
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    try:
        tree = ast.parse(Path(spec.origin).read_text())
    except (OSError, SyntaxError, ValueError):
        return None
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and node.name == name:
            doc = ast.get_docstring(node)
            return doc.strip().splitlines()[0].rstrip(".") if doc else None
    return None


def _values(node: Any) -> str:
    """A config's values, flattened to one line: `platform=cpu index=0`."""
    from omegaconf import OmegaConf

    plain = OmegaConf.to_container(node, resolve=False) if OmegaConf.is_config(node) else node
    if not isinstance(plain, dict):
        return ""

    def flat(value: Any, prefix: str) -> list[str]:
        if isinstance(value, dict):
            return [item for k, v in value.items() if k not in ("defaults", "name") for item in flat(v, f"{prefix}{k}.")]
        return [f"{prefix.rstrip('.')}={value}"]

    return " ".join(flat(plain, ""))


def _source_text(source, path: str) -> str | None:
    """The text of config `path` (group/name) in a file or package source; None for a structured one."""
    kind = type(source).__name__
    try:
        if kind == "FileConfigSource":
            return Path(source.path, f"{path}.yaml").read_text()
        if kind == "ImportlibResourcesConfigSource":
            from importlib.resources import files

            return files(source.path).joinpath(f"{path}.yaml").read_text()
    except (OSError, ModuleNotFoundError):
        return None
    return None


def describe(repo, group: str, option: str) -> tuple[str, str | None]:
    """(the option's line, the directory it comes from when that is not the harness's or Hydra's)."""
    path = f"{group}/{option}"
    source = next((s for s in repo.get_sources() if s.is_config(path)), None)
    origin = source.path if source is not None and source.provider not in ("main", "hydra", "schema") else None
    text = _source_text(source, path) if source is not None else None
    line = _comment(text) if text else None
    loaded = None
    if line is None and path in _HYDRA_OPTIONS:
        line = _HYDRA_OPTIONS[path]
    if line is None:
        loaded = repo.load_config(path)
        target = loaded.config.get("_target_") if loaded is not None else None
        if isinstance(target, str) and target != "???":
            line = _docstring(target)
    if line is None:
        loaded = loaded or repo.load_config(path)
        line = _values(loaded.config) if loaded is not None else ""
    return line, origin


def listing(groups: list[str], config_dir: str | None = None, overrides: list[str] | None = None) -> list[str]:
    """The lines `harness options` prints for `groups` (all of GROUPS, and any group of yours, when empty)."""
    from hydra.core.object_type import ObjectType

    repo = _repository(config_dir, overrides or [])
    available = {g for g in repo.get_group_options("", ObjectType.GROUP) if g != "hydra"}
    available |= {f"hydra/{g}" for g in ("launcher", "sweeper")}
    wanted = list(groups) or [*GROUPS, *sorted(available - set(GROUPS))]
    unknown = [g for g in wanted if g not in available]
    if unknown:
        allowed = ", ".join([*GROUPS, *sorted(available - set(GROUPS))])
        raise ValueError(f"options: no config group {', '.join(map(repr, unknown))}; groups: {allowed}")
    chosen = _defaults(repo)
    lines = []
    for group in wanted:
        options = repo.get_group_options(group, ObjectType.CONFIG)
        missing = {option: name for name, (_, module, _) in EXTRAS.items() for key, _, option in [name.partition("=")]
                   if key == group and not installed(module)}
        default = chosen.get(group)
        lines.append(f"{group}" + (f" (default: {default})" if default and default != "null" else "") + ":")
        width = max((len(o) for o in [*options, *missing]), default=0) + 2
        for option in [*options, *sorted(set(missing) - set(options))]:
            if option in missing:  # the plugin is not there: what installs it, whatever its YAML says
                lines.append(f"  {option.ljust(width)}not installed: {install_hint(missing[option])}")
                continue
            line, origin = describe(repo, group, option)
            room = max(WIDTH - len(origin) - 3, 60) if origin else WIDTH  # a long directory: a longer line
            line = _shorten(f"  {option.ljust(width)}{line}".rstrip(), room)
            lines.append(f"{line} [{origin}]" if origin else line)  # where it comes from, never cut
    return lines


def main_options(argv: list[str] | None = None) -> int:
    """`harness options [GROUP ...] [--config-dir DIR] [hydra.searchpath=[...]]`; returns the exit code."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="harness options",
        description="What each config group offers, one line per option; choose one with GROUP=OPTION.")
    parser.add_argument("groups", nargs="*", metavar="GROUP",
                        help=f"a config group ({', '.join(GROUPS)}, or one of yours); default: all")
    parser.add_argument("--config-dir", "-cd", help="a directory of your own options (as for a run)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    overrides = [g for g in args.groups if "=" in g]
    groups = [g.rstrip("/") for g in args.groups if "=" not in g]
    if args.config_dir is not None and not Path(args.config_dir).is_dir():
        print(f"error: --config-dir: {args.config_dir} is not a directory", file=sys.stderr)
        return 2
    try:
        lines = listing(groups, args.config_dir, overrides)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0
