"""Train / validation / test (issue 27, items 1 and 3): every task has validation rows, time to a target reads them,
the test rows are only reported; evaluations at any train.eval_every; the cold compile charged to every run."""

import jax
import numpy as np
import pytest

from conftest import spec_for
from harness.core import target
from harness.core.checks import ConfigError
from harness.core.run import execute
from harness.core.tasks import DEFAULT_VAL_FRACTION, make_task
from harness.core.tasks.line import data_key, line_task

CPU = jax.devices("cpu")[:1]
FAST = ("tracker=disabled", "train.warmup=1", "train.repeats=1", "train.measure_dispatch=false")
TIMED = FAST[:-1]  # the in-loop step time, which a time to a target needs, comes from the dispatch measurement
SEED_LINE = dict(slope=2.234, intercept=-1.123, n_train=55, n_test=55, x_min=-10.0, x_max=10.0)


def line_with_test(seed: int, test_offset: float = 0.0, own_val: bool = True) -> dict:
    """The seed's line, its test targets shifted by `test_offset` (a poisoned test split)."""
    made = line_task(seed, **SEED_LINE)
    made["y_test"] = np.asarray(made["y_test"]) + test_offset
    if not own_val:
        del made["x_val"], made["y_val"]
    return made


def test_the_seed_task_keeps_its_training_and_test_rows_and_draws_its_validation_rows_apart():
    spec = spec_for()
    task = make_task(spec.task)
    x = jax.random.uniform(data_key(123), (110, 1), minval=-10.0, maxval=10.0)
    np.testing.assert_array_equal(task.data.x_train, x[:55])  # the seed script's draw, untouched
    np.testing.assert_array_equal(task.data.x_test, x[55:])
    assert task.data.x_val.shape == (55, 1) and not np.isin(task.data.x_val, x).any()


def test_a_task_without_validation_rows_holds_out_the_last_share_of_its_training_rows():
    whole = line_with_test(123, own_val=False)
    own = ("task=custom", "task._target_=test_validation.line_with_test")
    task = make_task(spec_for(*own, "+task.own_val=false").task)
    held = round(DEFAULT_VAL_FRACTION * 55)
    np.testing.assert_array_equal(task.data.x_val, np.asarray(whole["x_train"])[55 - held:])
    np.testing.assert_array_equal(task.data.x_train, np.asarray(whole["x_train"])[:55 - held])
    half = make_task(spec_for(*own, "+task.own_val=false", "+task.val_fraction=0.5").task)
    assert half.data.x_val.shape[0] == 28
    with pytest.raises(ConfigError, match="task.val_fraction: task 'line_with_test' returns its own validation rows"):
        make_task(spec_for(*own, "+task.val_fraction=0.5").task)


def test_the_target_reads_validation_so_a_poisoned_test_split_changes_only_the_test_metrics():
    common = (*FAST, "task=custom", "task._target_=test_validation.line_with_test", "train.eval_every=41",
              "train.target=5.0")
    clean = execute(spec_for(*common), CPU)
    poisoned = execute(spec_for(*common, "+task.test_offset=1000.0"), CPU)
    assert clean["target"]["evaluations"] == poisoned["target"]["evaluations"]
    assert clean["target"]["step"] == poisoned["target"]["step"] and clean["target"]["split"] == "val"
    assert clean["metrics"]["val"] == poisoned["metrics"]["val"]
    assert poisoned["metrics"]["test"]["mse"] > 1e5 > clean["metrics"]["test"]["mse"]


def test_evaluations_at_an_eval_every_that_does_not_divide_the_steps_and_the_cold_compile_is_charged():
    first = execute(spec_for(*TIMED, "train.eval_every=50", "train.target=1e9"), CPU)["target"]
    assert first["evaluations"]["step"] == [0, 50, 100, 123] and first["resolution_steps"] == 50
    assert first["step"] == 0  # any value reaches a target of 1e9 (MSE, lower is better)
    again = execute(spec_for(*TIMED, "train.eval_every=50", "train.target=1e9"), CPU)
    assert again["timing"]["compile_source"] != "compiled"  # served from the in-process cache
    assert again["target"]["cold_compile_s"] == first["cold_compile_s"] > again["timing"]["compile_s"]
    target._COLD.clear()  # a cache hit with no cold compile seen in this process: compiled again, caches off
    measured = execute(spec_for(*TIMED, "train.eval_every=50", "train.target=1e9"), CPU)
    assert measured["timing"]["compile_source"] != "compiled"
    assert measured["target"]["cold_compile_s"] > 10 * measured["timing"]["compile_s"]
    ten = execute(spec_for(*FAST, "train.eval_every=10"), CPU)["target"]["evaluations"]["step"]
    assert ten == [0, *range(10, 121, 10), 123]  # 12 chunks of 10 steps and one of 3
