"""Fine-tuning a pretrained backbone: the transfer task, its cached pretraining, and the probe it makes possible."""

import jax
import numpy as np
import pytest

from harness.core.run import execute

from conftest import spec_for

CPU = [jax.devices("cpu")[0]]


def transfer(tmp_path, *overrides):
    common = ("task=transfer", "task.pretrain_steps=1000", "model=mlp", "model.width=64", "model.depth=2",
              "train.batch_size=64", "train.steps=300", "optimizer=adam", "optimizer.lr=3e-3", "train.repeats=1",
              "train.measure_dispatch=false", f"results_dir={tmp_path}")
    return execute(spec_for(*common, *overrides), CPU)


@pytest.mark.slow  # over 8 s on 2 cores: the everyday suite stays near 5 minutes
def test_a_probe_on_the_pretrained_backbone_beats_training_from_scratch(tmp_path):
    scratch = transfer(tmp_path, "freeze=none", "task.pretrain_steps=0")
    probe = transfer(tmp_path, "freeze=backbone")
    assert scratch["pretraining"] is None and probe["pretraining"]["cache"] == "built"
    assert probe["drift"]["unchanged"] is True
    assert probe["metrics"]["test"]["mse"] < scratch["metrics"]["test"]["mse"] / 3
    assert "slope" not in probe["metrics"]  # a fitted line means something for 1-D inputs only


def test_pretraining_is_cached_and_a_corrupt_or_foreign_cache_file_is_rebuilt(tmp_path):
    first = transfer(tmp_path, "freeze=backbone")
    again = transfer(tmp_path, "freeze=backbone", "method=reference")
    assert first["pretraining"]["cache"] == "built" and again["pretraining"]["cache"] == "hit"
    assert again["pretraining"]["source_loss"] == first["pretraining"]["source_loss"]
    np.testing.assert_allclose(again["metrics"]["test"]["mse"], first["metrics"]["test"]["mse"], rtol=2e-5)
    path = first["pretraining"]["path"]
    with open(path, "r+b") as f:
        f.truncate(100)
    broken = transfer(tmp_path, "freeze=backbone")
    assert broken["pretraining"]["cache"].startswith("rebuilt: unreadable cache file")
    assert broken["metrics"]["test"] == first["metrics"]["test"]
    other = transfer(tmp_path, "freeze=backbone", "task.pretrain_steps=50")
    assert other["pretraining"]["cache"] == "built" and other["pretraining"]["path"] != path


@pytest.mark.parametrize("overrides,message", [
    (("task.dim=0",), "task.dim: must be >= 1, got 0"),
    (("task.slope=2",), "task.slope: not a setting of task 'transfer'; task 'transfer' has: dim, teacher_width, "
                        "n_train, n_test"),
    (("task.pretrain_steps=-1",), "task.pretrain_steps: must be an integer >= 0, got -1"),
])
def test_bad_task_settings_name_the_field(overrides, message):
    with pytest.raises(Exception, match=message.replace("(", r"\(")):
        spec_for("task=transfer", *overrides)
