"""A sweep's job composed from its group choice's cached compose equals Hydra's own compose of it, hydra node
included (harness.jobs.sweep_compose)."""

import pytest
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException
from hydra.types import RunMode
from omegaconf import OmegaConf

from harness.core.config import register
from harness.jobs.compose import CONF_DIR
from harness.jobs.sweep_compose import _hydras_compose, _load_sweep_config

JOBS = [
    ["optimizer.lr=0.01"],
    ["method=stop_gradient", "optimizer.lr=0.02", "task.seed=3"],
    ["method=stop_gradient", "task.seed=4", "optimizer.lr=0.03"],  # same choice, other values, other order
    ["experiment=digits", "strategy=probe", "train.steps=7", "model.width=8"],
    ["experiment=digits", "strategy=probe", "train.steps=9"],
    ["+extra_key=1", "optimizer.lr=0.1"],
    ["~results_dir", "optimizer.lr=0.1"],
    ["hydra.job.chdir=false", "optimizer.lr=0.5", "freeze=none"],
]


@pytest.fixture(scope="module")
def loader():
    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        loader.master = loader.load_configuration("config", ["hydra.sweep.dir=/tmp/x"], run_mode=RunMode.MULTIRUN)
        yield loader


def test_every_job_equals_hydras_whole_compose_hydra_node_included(loader):
    for job in JOBS + JOBS:  # the second time from the cache
        ours = OmegaConf.to_container(_load_sweep_config(loader, loader.master, job))
        hydras = OmegaConf.to_container(_hydras_compose(loader, loader.master, job))
        assert ours == hydras, job
    assert len(loader._harness_composed) == 4  # one compose per distinct choice of groups (the +, ~ ones add none)


def test_a_copy_is_changed_without_touching_the_cached_compose(loader):
    first = _load_sweep_config(loader, loader.master, ["optimizer.lr=0.25"])
    first.optimizer.lr = 9.0
    assert _load_sweep_config(loader, loader.master, ["optimizer.lr=0.5"]).optimizer.lr == 0.5
    assert _load_sweep_config(loader, loader.master, ["task.seed=1"]).optimizer.lr != 9.0


def test_an_override_that_cannot_apply_gets_hydras_own_error(loader):
    with pytest.raises(ConfigCompositionException) as ours:
        _load_sweep_config(loader, loader.master, ["optimizer.lrr=0.1"])
    with pytest.raises(ConfigCompositionException) as hydras:
        _hydras_compose(loader, loader.master, ["optimizer.lrr=0.1"])
    assert str(ours.value) == str(hydras.value)
