"""`method=reference` (plain JAX + optax) trains exactly as `method=diffstate` does, and sweeps reuse one program."""

import jax
import numpy as np
import pytest

from harness.core.checks import ConfigError
from harness.core.run import execute, execute_vectorized, points
from harness.core.tasks import make_task
from harness.core.train import build

from conftest import spec_for

CPU = jax.devices("cpu")[:1]
FAST = ("train.warmup=0", "train.repeats=1", "train.measure_dispatch=false")

CASES = {
    "seed-adamw": (),
    "seed-adam": ("optimizer=adam",),
    **{
        f"mlp-{freeze}-{opt}": ("model=mlp", f"freeze={freeze}", f"optimizer={opt}")
        for freeze in ("backbone", "head", "none")
        for opt in ("adam", "adamw")
    },
}


def run(method: str, *overrides: str) -> dict:
    return execute(spec_for(f"method={method}", *FAST, "train.step_metrics=[mse,mae]", *overrides), CPU)


@pytest.mark.parametrize("overrides", CASES.values(), ids=CASES.keys())
def test_reference_matches_diffstate(overrides):
    nnx_run, ref = run("diffstate", *overrides), run("reference", *overrides)
    close = dict(rtol=1e-5, atol=1e-7)
    for split in ("train", "test"):
        for name in ("mse", "mae"):
            np.testing.assert_allclose(ref["metrics"][split][name], nnx_run["metrics"][split][name], **close)
    np.testing.assert_allclose(ref["history"]["train_mse"], nnx_run["history"]["train_mse"], **close)
    np.testing.assert_allclose(ref["history"]["train_mae"], nnx_run["history"]["train_mae"], **close)
    for key in ("trainable_paths", "frozen_paths", "grad_paths", "grads_cover_frozen", "trainable", "frozen"):
        assert ref["parameters"][key] == nnx_run["parameters"][key], key
    assert ref["parameters"]["final"].keys() == nnx_run["parameters"]["final"].keys()
    for path, value in nnx_run["parameters"]["final"].items():
        np.testing.assert_allclose(ref["parameters"]["final"][path], value, **close, err_msg=path)
    # Every trained leaf, the 16x16 kernel too, moved by the same amount; frozen ones not at all.
    for path, leaf in nnx_run["trained_drift"]["leaves"].items():
        np.testing.assert_allclose(ref["trained_drift"]["leaves"][path]["l2"], leaf["l2"], rtol=1e-4, err_msg=path)
    assert ref["drift"]["unchanged"] is True and ref["drift"]["leaves"].keys() == nnx_run["drift"]["leaves"].keys()
    assert ref["optimizer_state"]["frozen_leaves"] == 0


def test_reference_state_paths_are_the_nnx_paths():
    spec = spec_for("method=reference", "model=mlp", "freeze=backbone")
    built = build(spec, make_task(spec.task))
    params = [p for p in built.paths if p[0] == 0]
    assert params == [
        (0, "backbone", "layers", 0, "bias"), (0, "backbone", "layers", 0, "kernel"),
        (0, "backbone", "layers", 2, "bias"), (0, "backbone", "layers", 2, "kernel"),
        (0, "head", "bias"), (0, "head", "kernel"),
    ]
    hyper = {p[-1]: float(v) for p, v in zip(built.paths, built.state) if p[0] == 1 and p[-2] == "hyperparams"}
    assert hyper["learning_rate"] == pytest.approx(spec.optimizer.lr)
    assert hyper["weight_decay"] == pytest.approx(spec.optimizer.weight_decay)
    # The optimizer keeps state for the trainable head only.
    assert all(p[-2:] in {("head", "bias"), ("head", "kernel")} for p in built.paths if p[0] == 1 and len(p) > 4)


def test_reference_rejects_a_bad_mask_exactly_as_nnx_does():
    messages = []
    for method in ("diffstate", "reference"):
        spec = spec_for(f"method={method}", "freeze=paths", "freeze.patterns=[nothing_here]")
        with pytest.raises(ConfigError) as err:
            build(spec, make_task(spec.task))
        messages.append(str(err.value))
    assert messages[0] == messages[1]


@pytest.mark.parametrize("method", ["reference", "diffstate"])
def test_sweeping_the_learning_rate_compiles_once(method):
    # A step count no other test uses, so the first run is the one that compiles.
    first = run(method, "model=mlp", "freeze=head", "train.steps=77", "optimizer.lr=1e-3")
    second = run(method, "model=mlp", "freeze=head", "train.steps=77", "optimizer.lr=3e-2")
    assert second["timing"]["compile_source"] == "in_process_cache", second["timing"]
    assert second["timing"]["backend_compiles"] == 0
    assert second["metrics"]["test"]["mse"] != first["metrics"]["test"]["mse"]  # the new lr was used


def test_reference_program_is_equal_across_hyperparameters():
    specs = [spec_for("method=reference", f"optimizer.lr={lr}", f"optimizer.weight_decay={wd}")
             for lr, wd in ((1e-3, 0.0), (5e-2, 0.1))]
    a, b = (build(spec, make_task(spec.task)).program for spec in specs)
    assert a == b and hash(a) == hash(b)


def test_reference_runs_vectorized_like_diffstate():
    sweep = ("train.steps=60", "vectorize.lr=[0.001,0.05]", "vectorize.seed=[5,6]", *FAST)
    ref, nnx_runs = (list(zip(points(spec), execute_vectorized(points(spec), CPU)))
                     for spec in (spec_for(f"method={m}", *sweep) for m in ("reference", "diffstate")))
    assert {r["timing"]["backend_compiles"] for _, r in ref} == {1}
    for (point, a), (_, b) in zip(ref, nnx_runs):
        np.testing.assert_allclose(a["history"]["train_mse"], b["history"]["train_mse"], rtol=1e-5, err_msg=str(point))
        assert a["drift"]["unchanged"] is True
