"""Every way to freeze: correct methods leave frozen leaves bitwise unchanged and agree on the rest."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from harness import frozen_kernel_unchanged
from harness.core.checks import ConfigError
from harness.core.models import build_model
from harness.core.run import execute
from harness.core.tasks import make_task
from harness.core.train import build, train

from conftest import spec_for

CORRECT = ["diffstate", "jax_split", "wrt_only", "attribute", "variable", "optax_partition"]
MASKS = [("linear", "kernel"), ("linear", "bias"), ("mlp", "backbone"), ("mlp", "head")]
FAST = ("train.steps=30", "train.warmup=0", "train.repeats=1", "train.measure_dispatch=false", "tracker=disabled")


@functools.cache
def run(model, freeze, method, optimizer, *extra):
    spec = spec_for(f"model={model}", f"freeze={freeze}", f"method={method}", f"optimizer={optimizer}", *FAST, *extra)
    return execute(spec, jax.devices("cpu")[:1])


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
@pytest.mark.parametrize("model,freeze", MASKS)
@pytest.mark.parametrize("method", CORRECT)
def test_correct_methods_leave_frozen_leaves_bitwise_unchanged(method, model, freeze, optimizer):
    r = run(model, freeze, method, optimizer)
    assert r["status"] == "ok"
    assert r["parameters"]["frozen"] > 0
    assert r["drift"]["unchanged"] is True and r["drift"]["l2"] == 0.0
    assert all(leaf["unchanged"] for leaf in r["drift"]["leaves"].values())
    assert r["trained_drift"]["l2"] > 0, "the trainable set did not move"
    assert r["optimizer_state"]["frozen_leaves"] == 0, "frozen parameters carry optimizer moments"


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
@pytest.mark.parametrize("model,freeze", MASKS)
def test_correct_methods_end_at_the_same_trainable_values(model, freeze, optimizer):
    finals = {m: run(model, freeze, m, optimizer) for m in CORRECT}
    base = finals["diffstate"]
    for method, r in finals.items():
        np.testing.assert_allclose(r["history"]["train_mse"], base["history"]["train_mse"], rtol=2e-5, err_msg=method)
        np.testing.assert_allclose(r["metrics"]["test"]["mse"], base["metrics"]["test"]["mse"], rtol=2e-5,
                                   err_msg=method)
        assert r["parameters"]["trainable_paths"] == base["parameters"]["trainable_paths"]


@pytest.mark.parametrize("lr,wd,steps", [(1e-2, 0.1, 100), (1e-3, 1e-2, 50)])
def test_stop_gradient_with_adamw_drifts_exactly_by_weight_decay(lr, wd, steps):
    r = run("linear", "kernel", "stop_gradient", "adamw", f"optimizer.lr={lr}", f"optimizer.weight_decay={wd}",
            f"train.steps={steps}")
    k0 = 2.0
    closed_form = abs(k0) * (1 - (1 - lr * wd) ** steps)
    # The same decay in float32, as optax applies it: p + (-lr * (0 + wd * p)).
    p, lr32, wd32 = np.float32(k0), np.float32(lr), np.float32(wd)
    for _ in range(steps):
        p = p + (-lr32 * (wd32 * p))
    assert r["drift"]["unchanged"] is False
    np.testing.assert_allclose(r["drift"]["l2"], abs(k0 - p), rtol=1e-6)
    np.testing.assert_allclose(r["drift"]["l2"], closed_form, rtol=1e-2)
    assert r["optimizer_state"]["frozen_leaves"] > 0  # Adam moments for the frozen kernel


def test_stop_gradient_with_adam_does_not_drift():
    r = run("linear", "kernel", "stop_gradient", "adam")
    assert r["drift"]["unchanged"] is True


def test_only_the_seeds_fix_keeps_frozen_params_out_of_the_gradient():
    cover = {m: run("mlp", "backbone", m, "adamw")["parameters"]["grads_cover_frozen"] for m in CORRECT}
    assert cover == {"diffstate": False, "jax_split": False, "wrt_only": True, "attribute": False, "variable": False,
                     "optax_partition": True}
    split = run("mlp", "backbone", "jax_split", "adamw")["parameters"]
    assert split["grad_paths"] == split["trainable_paths"] == ["head/bias", "head/kernel"]


def test_diffstate_optimizer_state_is_smaller_than_stop_gradient_on_a_frozen_backbone():
    diffstate = run("mlp", "backbone", "diffstate", "adamw")["optimizer_state"]
    naive = run("mlp", "backbone", "stop_gradient", "adamw")["optimizer_state"]
    assert diffstate["bytes"] < naive["bytes"]
    # The difference is exactly Adam's two moments for every frozen backbone parameter.
    frozen = run("mlp", "backbone", "diffstate", "adamw")["parameters"]["frozen"]
    assert naive["bytes"] - diffstate["bytes"] == 2 * 4 * frozen


def test_fitted_line_of_a_linear_model_is_its_kernel_and_bias():
    r = run("linear", "bias", "diffstate", "adamw")
    final = r["parameters"]["final"]
    np.testing.assert_allclose(r["metrics"]["slope"], final["kernel"][0], rtol=1e-5)
    np.testing.assert_allclose(r["metrics"]["intercept"], final["bias"][0], rtol=1e-5, atol=1e-6)


def test_fitted_line_of_the_mlp_is_the_least_squares_line_of_its_predictions():
    r = run("mlp", "head", "diffstate", "adamw")
    # Train the same run again by hand and fit a line through its test predictions.
    spec = spec_for("model=mlp", "freeze=head", "method=diffstate", "optimizer=adamw", *FAST)
    task = make_task(spec.task)
    data = task.data
    built = build(spec, task)
    state, _ = train(built.state, data.x_train, data.y_train, program=built.program, steps=spec.train.steps)
    slope, intercept = np.polyfit(np.ravel(data.x_test), np.ravel(built.program.predict(state, data.x_test)), 1)
    np.testing.assert_allclose([r["metrics"]["slope"], r["metrics"]["intercept"]], [slope, intercept], rtol=1e-5)


def test_general_path_mask_freezes_what_it_names():
    r = run("mlp", "paths", "diffstate", "adam", "freeze.patterns=[layers/0/, head/bias]")
    assert r["parameters"]["frozen_paths"] == ["backbone/layers/0/bias", "backbone/layers/0/kernel", "head/bias"]
    assert r["drift"]["unchanged"] is True


@pytest.mark.parametrize("patterns,expected", [("[nothing_here]", "matches no parameter"),
                                               ("[.]", "freezes every parameter")])
def test_a_mask_that_freezes_nothing_or_everything_is_a_config_error(patterns, expected):
    spec = spec_for("model=mlp", "freeze=paths", f"freeze.patterns={patterns}", *FAST)
    with pytest.raises(ConfigError, match=expected) as err:
        execute(spec, jax.devices("cpu")[:1])
    assert "backbone/layers/0/kernel" in str(err.value) and "paths" in str(err.value)


@pytest.mark.parametrize("seed,x,features,value", [(0, jnp.array([1.0, 2.0, 3.0]), 4, 2.0), (7, jnp.ones(5), 1, -3.0)])
def test_frozen_kernel_unchanged_matches_the_second_seed(seed, x, features, value):
    out = frozen_kernel_unchanged(float(seed), x, float(features), value)
    key = nnx.Rngs(seed).params()
    kernel = jax.random.normal(key, (x.shape[-1], features)) / jnp.sqrt(x.shape[-1])
    np.testing.assert_allclose(out, [1.0, float(jnp.linalg.norm(kernel)), abs(value) * np.sqrt(features)], rtol=1e-6)


@pytest.mark.parametrize("method", [*CORRECT, "reference"])
def test_lora_trains_only_the_adapters_and_leaves_the_base_bitwise_unchanged(method):
    r = run("mlp", "lora", method, "adamw", "model.lora_rank=4")
    base = [p for p in r["parameters"]["frozen_paths"]]
    assert base and all(p.endswith(("kernel", "bias")) and "lora" not in p for p in base)
    assert all("lora/" in p for p in r["parameters"]["trainable_paths"])
    assert r["drift"]["unchanged"] is True and r["trained_drift"]["l2"] > 0
    # depth 2, width 16, rank 4: 1->16 (1x4 + 4x16), 16->16 (16x4 + 4x16), head 16->1 (16x4 + 4x1)
    assert r["parameters"]["adapters"] == r["parameters"]["trainable"] == 68 + 128 + 68
    assert r["parameters"]["lora_rank"] == 4


def test_lora_starts_from_the_same_base_model_and_agrees_with_plain_jax():
    plain = nnx.to_flat_state(nnx.state(build_model(spec_for("model=mlp").model, 123), nnx.Param))
    lora = dict(nnx.to_flat_state(nnx.state(build_model(spec_for("model=mlp", "model.lora_rank=4").model, 123),
                                            nnx.Param)))
    for path, value in plain:
        np.testing.assert_array_equal(lora[path][...], value[...], err_msg=str(path))
    assert all(np.all(v[...] == 0) for p, v in lora.items() if p[-1] == "lora_b")  # adapters start as a no-op
    nnx_run, reference = (run("mlp", "lora", m, "adamw", "model.lora_rank=4") for m in ("diffstate", "reference"))
    np.testing.assert_allclose(reference["history"]["train_mse"], nnx_run["history"]["train_mse"], rtol=2e-5)


@pytest.mark.slow  # over 8 s on 2 cores: the everyday suite stays near 5 minutes
def test_methods_that_compile_to_one_xla_program_share_its_fingerprint():
    """attribute, variable, jax_split and wrt_only differ from diffstate in nnx code only: XLA runs one program.
    stop_gradient under AdamW decays the frozen kernels, and optax_partition keeps their (zero) optimizer
    state: different programs. The fingerprint is what the findings call "same compiled program" on."""
    prints = {m: run("mlp", "backbone", m, "adamw", "train.batch_size=11")["timing"]["program"]
              for m in [*CORRECT, "stop_gradient"]}
    assert {prints[m] for m in ("diffstate", "jax_split", "wrt_only", "attribute", "variable")} == {
        prints["diffstate"]}
    assert len({prints["diffstate"], prints["optax_partition"], prints["stop_gradient"]}) == 3
    other_lr = run("mlp", "backbone", "diffstate", "adamw", "train.batch_size=11", "optimizer.lr=0.05")
    assert other_lr["timing"]["program"] == prints["diffstate"]  # hyperparameters are data, not program
