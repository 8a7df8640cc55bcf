"""Timing is honest: compile apart from runs, counted once per shape, repeats kept, vectorized runs agree."""

import json

import jax
import numpy as np
import pytest

from harness.core.hlo import loop_ops
from harness.core.run import execute, execute_vectorized, points
from harness.core.tasks import make_task
from harness.core.timing import compile_and_time
from harness.core.train import build, train

from conftest import run_cli, spec_for

CPU = [jax.devices("cpu")[0]]


def test_repeats_dispatch_and_in_loop_time_are_recorded():
    r = execute(spec_for("train.steps=50", "train.warmup=2", "train.repeats=4"), CPU)
    t = r["timing"]
    assert len(t["run_s"]) == 4 and t["warmup"] == 2
    assert t["run_s_per_call"]["min"] <= t["run_s_per_call"]["median"] <= t["run_s_per_call"]["max"]
    np.testing.assert_allclose(t["run_s_per_step"]["median"] * 50, t["run_s_per_call"]["median"])
    assert t["dispatch"]["one_step_call_s"] > 0 and t["dispatch"]["flops_per_step"] > 0
    in_loop = (t["run_s_per_call"]["median"] - t["dispatch"]["one_step_call_s"]) / 49
    np.testing.assert_allclose(t["in_loop_s_per_step"], max(in_loop, 0.0))
    np.testing.assert_allclose(t["dispatch"]["overhead_s"],
                               max(t["dispatch"]["one_step_call_s"] - t["in_loop_s_per_step"], 0.0))
    assert t["memory"]["argument_size_in_bytes"] > 0


class _CompilesWhenCalled:
    """A stand-in for a jitted function whose compiled program triggers a new compile at each call."""

    def lower(self, *args, **static):
        return self

    def compile(self):
        return lambda x: jax.jit(lambda y: y + np.random.rand())(x)  # a new function: a new compile


def test_a_compile_inside_the_timed_calls_fails_the_run_instead_of_skewing_it():
    with pytest.raises(RuntimeError, match="inside the timed calls"):
        compile_and_time(_CompilesWhenCalled(), (jax.numpy.ones(3),), {}, steps=1, warmup=0, repeats=2)


@pytest.mark.slow
def test_persistent_cache_hit_is_reported_as_such(tmp_path):
    cache = tmp_path / "jax-cache"
    args = ("tracker=disabled", "train.repeats=1", "train.measure_dispatch=false", f"train.persistent_cache_dir={cache}",
            f"results_dir={tmp_path / 'results'}")
    sources = []
    for _ in range(2):
        proc = run_cli(*args, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    for path in sorted((tmp_path / "results").rglob("result.json")):
        sources.append(json.loads(path.read_text())["timing"]["compile_source"])
    assert sources == ["compiled", "persistent_cache"]


@pytest.mark.slow
def test_vectorized_points_match_single_runs_with_one_compile():
    spec = spec_for("train.steps=60", "train.repeats=2", "vectorize.lr=[0.001,0.03]", "vectorize.seed=[5,6]",
                    "model=mlp", "freeze=backbone")
    results = list(zip(points(spec), execute_vectorized(points(spec), CPU)))
    assert len(results) == 4
    assert [(p.optimizer.lr, p.task.seed) for p, _ in results] == [(0.001, 5), (0.03, 5), (0.001, 6), (0.03, 6)]
    assert {r["timing"]["backend_compiles"] for _, r in results} == {1}
    assert results[0][1]["timing"]["points"] == 4
    for point, vectorized in results:
        single = execute(spec_for("train.steps=60", "train.repeats=1", "model=mlp", "freeze=backbone",
                                  f"optimizer.lr={point.optimizer.lr}", f"task.seed={point.task.seed}"), CPU)
        np.testing.assert_allclose(vectorized["history"]["train_mse"], single["history"]["train_mse"], rtol=2e-5)
        np.testing.assert_allclose(vectorized["metrics"]["test"]["mse"], single["metrics"]["test"]["mse"], rtol=2e-5)
        assert vectorized["drift"]["unchanged"] is True


def test_vectorized_cli_run_writes_one_record_per_point(cli):
    proc, recs = cli("tracker=disabled", "train.repeats=1", "vectorize.lr=[0.001,0.01,0.1]")
    assert proc.returncode == 0, proc.stderr
    assert [r["config"]["optimizer"]["lr"] for r in recs] == [0.001, 0.01, 0.1]
    assert [r["job"]["vectorized"]["point"] for r in recs] == [0, 1, 2]
    assert len({r["metrics"]["test"]["mse"] for r in recs}) == 3


def test_the_timed_loop_emits_the_loss_only_unless_asked():
    spec = spec_for("model=mlp", "freeze=backbone")
    task = make_task(spec.task)
    data = task.data
    built = build(spec, task)
    args = (built.state, data.x_train, data.y_train)
    outputs, abs_ops = {}, {}
    for metrics in (("mse",), ("mse", "mae")):
        compiled = train.lower(*args, program=built.program, steps=20, metrics=metrics).compile()
        outputs[metrics] = compiled.out_info[1]
        abs_ops[metrics] = loop_ops(compiled.as_text(), kinds=("abs",))["inside"]
    assert list(outputs["mse",]) == ["mse"] and outputs["mse",]["mse"].shape == (20,)
    assert sorted(outputs["mse", "mae"]) == ["mae", "mse"]
    assert abs_ops["mse",] == 0 and abs_ops["mse", "mae"] >= 1  # the MAE is not computed in the loop at all
    record = execute(spec_for("train.repeats=1"), CPU)
    assert set(record["history"]) == {"step", "train_mse"}
    assert set(record["metrics"]["test"]) == {"mse", "mae"}  # final metrics, computed after the timed calls


@pytest.mark.parametrize("extra", [(), ("train.batch_size=11",)], ids=["full batch", "minibatches"])
def test_training_in_chunks_equals_one_call_bitwise_and_is_timed_as_a_whole(extra):
    one = execute(spec_for("train.steps=120", "train.repeats=2", *extra), CPU)
    chunked = execute(spec_for("train.steps=120", "train.repeats=2", "train.log_every=40", *extra), CPU)
    assert chunked["parameters"]["final"] == one["parameters"]["final"]  # every seed parameter, bit for bit
    assert chunked["history"] == one["history"] and chunked["history"]["step"] == list(range(120))
    assert chunked["metrics"] == one["metrics"]
    t = chunked["timing"]
    assert t["chunks"] == 3 and one["timing"]["chunks"] == 1
    in_loop = (t["run_s_per_call"]["median"] - 3 * t["dispatch"]["one_step_call_s"]) / (120 - 3)
    np.testing.assert_allclose(t["in_loop_s_per_step"], max(in_loop, 0.0))
    whole = execute(spec_for("train.steps=120", "train.repeats=1", "train.log_every=120", *extra), CPU)  # one chunk
    assert whole["parameters"]["final"] == one["parameters"]["final"] and whole["timing"]["chunks"] == 1


@pytest.mark.parametrize("overrides", [
    (), ("method=reference",), ("method=attribute",), ("method=optax_partition",),
    ("model=mlp", "freeze=lora", "model.lora_rank=2", "train.batch_size=11"),
    ("task=transfer", "model=mlp", "freeze=backbone"),  # pretrained: traced without pretraining, same shapes
])
def test_a_run_is_traced_from_shapes_into_the_program_it_then_builds(overrides):
    """What the memory check and the compile use before the data and state exist (harness.core.abstract) is the
    run's own program and state: no built-in silently falls back to building first."""
    from harness.core import abstract

    spec = spec_for(*overrides)
    shapes = abstract.shapes(spec)
    assert shapes is not None, "not traceable: checked only once built"
    task = make_task(spec.task)
    built = build(spec, task) if not spec.task.pretrain_steps else abstract._built_shapes(spec, task)
    assert shapes.built.program == built.program
    assert [(a.shape, a.dtype) for a in shapes.built.state] == [(a.shape, a.dtype) for a in built.state]
    assert shapes.data_bytes == abstract.nbytes(task.data) + (abstract.nbytes(task.source.data) if task.source else 0)
