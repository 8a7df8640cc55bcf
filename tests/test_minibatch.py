"""Per-step minibatches keep a step's work inside the loop; the plausibility guard catches work XLA removed."""

import jax
import numpy as np
import pytest

from harness.core.batching import Minibatches, order_key
from harness.core.plausibility import HOISTING_NOTE
from harness.core.run import execute, execute_vectorized, points

from conftest import spec_for

CPU = [jax.devices("cpu")[0]]
MLP = ("model=mlp", "model.depth=3", "freeze=backbone", "task.n_train=256", "train.steps=50", "train.repeats=3")


@pytest.mark.slow  # over 8 s on 2 cores: the everyday suite stays near 5 minutes
def test_a_new_batch_each_step_keeps_the_frozen_backbone_inside_the_loop():
    full = execute(spec_for(*MLP, "model.width=32"), CPU)
    mini = execute(spec_for(*MLP, "model.width=32", "train.batch_size=32"), CPU)
    # Full batch: the frozen layers' matmuls on the fixed batch are hoisted out of the compiled while loop.
    assert full["timing"]["matmuls"]["outside"] >= 2
    assert full["plausibility"]["note"] == HOISTING_NOTE
    # A batch chosen by step index: nothing is hoisted, and the loop holds every layer's matmul.
    assert mini["timing"]["matmuls"]["outside"] == 0
    assert mini["timing"]["matmuls"]["inside"] == full["timing"]["matmuls"]["inside"] + 2
    assert mini["plausibility"]["note"] is None
    assert mini["batch"] == {"regime": "minibatch", "size": 32, "per_step": True, "batches_per_epoch": 8,
                             "rows_skipped_per_epoch": 0, "order": mini["batch"]["order"]}
    assert full["batch"] == {"regime": "full_batch", "size": 256, "per_step": False}


@pytest.mark.slow  # over 8 s on 2 cores: the everyday suite stays near 5 minutes
def test_the_guard_flags_a_hoisted_run_and_not_a_minibatched_one():
    hoisted = execute(spec_for(*MLP, "model.width=256"), CPU)["plausibility"]
    honest = execute(spec_for(*MLP, "model.width=64", "train.batch_size=16"), CPU)["plausibility"]
    # Ratios against this process's calibrated matmul peak, not wall-clock thresholds.
    assert hoisted["peak_fraction"] > hoisted["limit"] and "faster than this machine's measured peak" in \
        hoisted["warning"]
    assert honest["peak_fraction"] < honest["limit"] and honest["warning"] is None


def test_minibatches_are_deterministic_differ_from_full_batch_and_converge():
    args = ("method=diffstate", "freeze=none", "optimizer.lr=0.05", "train.steps=400", "train.repeats=1",
            "train.measure_dispatch=false")
    a = execute(spec_for(*args, "train.batch_size=10"), CPU)
    b = execute(spec_for(*args, "train.batch_size=10"), CPU)
    full = execute(spec_for(*args), CPU)
    assert a["history"]["train_mse"] == b["history"]["train_mse"]
    assert a["metrics"]["test"] == b["metrics"]["test"]
    assert a["history"]["train_mse"] != full["history"]["train_mse"]
    assert a["batch"]["rows_skipped_per_epoch"] == 5  # 55 rows, 5 batches of 10 per epoch
    first = a["history"]["train_mse"][0]
    assert a["metrics"]["test"]["mse"] < 1e-2 * first  # y = 2.234 x - 1.123 is learnt from minibatches too
    other_seed = execute(spec_for(*args, "train.batch_size=10", "task.seed=7"), CPU)
    assert other_seed["history"]["train_mse"] != a["history"]["train_mse"]


def test_each_epoch_visits_the_kept_rows_once_in_a_new_order():
    batches = Minibatches(size=4, rows=10)
    x = jax.numpy.arange(10.0)[:, None]
    key, order, seen = order_key(3), batches.start(order_key(3), 10), []
    for i in range(6):  # 3 epochs of 2 batches; 2 rows skipped each epoch
        order, xb, _ = batches.take(order, i, key, x, x)
        seen.append(xb[:, 0].astype(int).tolist())
    epochs = [seen[0] + seen[1], seen[2] + seen[3], seen[4] + seen[5]]
    assert all(len(set(e)) == 8 for e in epochs)
    assert len({tuple(e) for e in epochs}) == 3


@pytest.mark.parametrize("method", ["reference", "stop_gradient"])
def test_vectorized_minibatched_points_match_their_single_runs(method):
    common = ("model=mlp", "freeze=backbone", "train.steps=40", "train.batch_size=11", f"method={method}",
              "train.measure_dispatch=false")
    spec = spec_for(*common, "train.repeats=1", "vectorize.lr=[0.001,0.03]", "vectorize.seed=[5,6]")
    for point, vectorized in zip(points(spec), execute_vectorized(points(spec), CPU)):
        single = execute(spec_for(*common, "train.repeats=1", f"optimizer.lr={point.optimizer.lr}",
                                  f"task.seed={point.task.seed}"), CPU)
        np.testing.assert_allclose(vectorized["history"]["train_mse"], single["history"]["train_mse"], rtol=2e-5)
        assert vectorized["batch"] == single["batch"]
