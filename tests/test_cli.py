"""The command line as a new user meets it: help, the options of each group, missing extras, lists on the
command line, and the seed of an own task (issue 29, "Discoverable from the command line")."""

from pathlib import Path

import yaml

from conftest import run_cli, run_injected

NO_PLUGINS = ("sys.modules['hydra_plugins.hydra_joblib_launcher'] = None\n"
              "sys.modules['hydra_plugins.hydra_submitit_launcher'] = None")


def test_help_names_the_commands_and_the_groups_and_where_hydras_help_is(tmp_path):
    proc = run_cli("--help", cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for text in ("harness report SWEEP_DIR", "harness compare DIR_A DIR_B", "harness dashboard SWEEP_DIR",
                 "harness options [GROUP ...]", "harness -m [OVERRIDE ...]", "--hydra-help"):
        assert text in proc.stdout, proc.stdout
    groups = {line.split()[0]: line.split()[1:] for line in proc.stdout.splitlines()[8:] if line.startswith("  ")}
    assert "kernel*" in groups["freeze"] and "diffstate*" in groups["method"] and "basic*" in groups["hydra/launcher"]
    assert "Traceback" not in proc.stderr and list(tmp_path.iterdir()) == []  # nothing ran, nothing written
    assert run_cli("-h", cwd=tmp_path, timeout=60).stdout == proc.stdout


def test_options_lists_each_option_with_one_line_and_your_own_from_config_dir(tmp_path):
    own = tmp_path / "own" / "freeze"
    own.mkdir(parents=True)
    (own / "mine.yaml").write_text("# My mask: the first layer only.\nname: mine\npatterns: ['^backbone/layers/0/']\n")
    proc = run_cli("options", "freeze", "method", "--config-dir", str(tmp_path / "own"), cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "freeze (default: kernel):"
    assert "  kernel       The seed: freeze every kernel, train the biases" in lines
    assert "  bias         patterns=['bias']" in lines  # no comment: its values
    assert f"  mine         My mask: the first layer only [{tmp_path / 'own'}]" in lines
    options = [line.split()[0] for line in lines if line.startswith("  ")]
    conf = Path(__file__).resolve().parents[1] / "conf"
    assert set(options) == {p.stem for g in ("freeze", "method") for p in (conf / g).glob("*.yaml")} | {"mine"}
    assert all(len(line) <= 118 for line in lines if not line.endswith(f"[{tmp_path / 'own'}]"))
    bad = run_cli("options", "gills", cwd=tmp_path, timeout=60)
    assert bad.returncode == 2 and "options: no config group 'gills'; groups: task, model, freeze" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_a_missing_extra_is_answered_with_its_install_command_before_hydra_runs(tmp_path):
    hint = "pip install 'harness[joblib]' (from a clone: pip install '.[joblib]')"
    proc = run_injected(NO_PLUGINS, "-m", "hydra/launcher=joblib", "method=diffstate,jax_split", cwd=tmp_path,
                        timeout=60)
    assert proc.returncode == 1 and "error: hydra/launcher=joblib needs the joblib extra" in proc.stderr
    assert hint in proc.stderr and "-e" not in proc.stderr.split(":", 1)[1] and "Traceback" not in proc.stderr
    assert "Could not find" not in proc.stderr and list(tmp_path.iterdir()) == []
    slurm = run_injected(NO_PLUGINS, "-m", "hydra/launcher=slurm", cwd=tmp_path, timeout=60)
    assert slurm.returncode == 1 and "hydra/launcher=slurm needs the slurm extra" in slurm.stderr
    listed = run_injected(NO_PLUGINS, "options", "hydra/launcher", cwd=tmp_path, timeout=60)
    assert f"  joblib          not installed: needs the joblib extra (hydra-joblib-launcher): {hint}" in listed.stdout
    dashboard = run_injected("sys.modules['wandb_workspaces'] = None", "dashboard", str(tmp_path), cwd=tmp_path,
                             timeout=60)
    assert dashboard.returncode == 2 and "pip install 'harness[dashboard]' (from a clone: pip install " \
                                         "'.[dashboard]')" in dashboard.stderr


def test_a_sweep_over_lists_hydra_cannot_read_is_answered_with_the_form_that_works(tmp_path):
    proc = run_cli("-m", "freeze=paths", "freeze.patterns=[^attn/],[^embed/,^pos$],[]", cwd=tmp_path, timeout=60)
    form = """harness -m 'freeze.patterns=["^attn/"],["^embed/","^pos$"],[]'"""
    assert proc.returncode == 1 and form in proc.stderr, proc.stderr
    assert "error: freeze.patterns: cannot read the value" in proc.stderr and "Traceback" not in proc.stderr
    # The form it shows is a sweep of three lists in Hydra's grammar (the quoting it replaced, the whole value
    # in quotes, read as one string: one job).
    from hydra.core.override_parser.overrides_parser import OverridesParser

    (override,) = OverridesParser.create().parse_overrides([form.split("'")[1]])
    assert [[item.text for item in v] for v in override.sweep_iterator()] == [["^attn/"], ["^embed/", "^pos$"], []]
    one = run_cli("freeze=paths", "freeze.patterns=[^attn/, ^embed/]", cwd=tmp_path, timeout=60)
    assert one.returncode == 1 and """harness 'freeze.patterns=["^attn/","^embed/"]'""" in one.stderr


def test_hydra_modes_that_cannot_go_together_are_one_line_not_a_traceback(tmp_path):
    proc = run_cli("-m", "model=mlp", "--cfg", "job", cwd=tmp_path, timeout=60)
    assert proc.returncode == 1 and "error: --multirun and --cfg cannot go together" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_own_task_without_seed_reports_the_seed_it_ran_with_and_built_in_tasks_all_set_it():
    from harness.core.components import DEFAULT_SEED, TaskSpec, choose
    from harness.core.fields import FIELD
    from harness.jobs.compose import CONF_DIR

    node = {k: v for k, v in yaml.safe_load((CONF_DIR / "task" / "seed.yaml").read_text()).items() if k != "seed"}
    assert choose("task", node).seed == DEFAULT_SEED == TaskSpec("t", "x").seed  # what it runs with
    record = {"status": "ok", "config": {"task": node}}
    assert FIELD["seed"].get(record) == DEFAULT_SEED  # not NA
    assert FIELD["seed"].get({"config": {"task": {**node, "seed": 7}}}) == 7
    assert FIELD["seed"].get({"config": {"task": {**node, "seed": None}}}) is None  # unresolved: unknown
    # Every built-in task sets its seed, so none of their records' configs depends on the default.
    for path in (CONF_DIR / "task").glob("*.yaml"):
        assert isinstance(yaml.safe_load(path.read_text())["seed"], int), path
