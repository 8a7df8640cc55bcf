"""The workloads people fine-tune: digits, mnist1d and modular data; cnn, cnn1d, vit and transformer models;
forgetting, time to a target, cost split, frozen weights in bfloat16."""

import hashlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx

from harness.core import cost
from harness.core.checks import ConfigError
from harness.core.models import build_model
from harness.core.run import execute
from harness.core.tasks import make_task
from harness.core.train import build, train

from conftest import spec_for

CPU = jax.devices("cpu")[:1]
FAST = ("tracker=disabled", "train.warmup=0", "train.repeats=1", "train.measure_dispatch=false")
WORKLOADS = {"digits": ("task=digits",), "mnist1d": ("task=mnist1d", "task.samples=200"),
             "modular": ("task=modular", "task.modulus=7")}
TINY = {"cnn": ("model=cnn", "model.channels=[4,4]"), "cnn1d": ("model=cnn1d", "model.channels=[4]"),
        "vit": ("model=vit", "model.dim=8", "model.depth=1", "model.heads=2", "model.hidden=8"),
        "transformer": ("model=transformer", "model.dim=8", "model.depth=1", "model.heads=2", "model.hidden=8")}


def _digest(task) -> str:
    arrays = [a for a in (*task.data, *(task.source.data if task.source else ())) if a is not None]
    return hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)).hexdigest()


@pytest.mark.parametrize("workload", WORKLOADS)
def test_workload_data_is_deterministic_in_range_and_the_same_in_another_process(workload):
    spec = spec_for(*WORKLOADS[workload])
    task = make_task(spec.task)
    assert _digest(make_task(spec.task)) == _digest(task)
    assert task.kind == "classification" and task.loss == "cross_entropy"
    for part in (task, task.source) if task.source else (task,):
        x_train, y_train, x_test, y_test = part.data[:4]
        assert len(x_train) == len(y_train) and len(x_test) == len(y_test) and len(x_test) > 0
        for y in (y_train, y_test):
            assert y.dtype == np.int32 and 0 <= y.min() and y.max() < part.outputs
        for x in (x_train, x_test):
            assert np.isfinite(x).all() if x.dtype.kind == "f" else (0 <= x.min() and x.max() < part.vocab)
    code = (f"from conftest import spec_for; from harness.core.tasks import make_task; import test_workloads as t; "
            f"print(t._digest(make_task(spec_for(*{WORKLOADS[workload]!r}).task)))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           cwd=__file__.rsplit("/", 1)[0]).stdout.strip()
    assert other == _digest(task)


def test_digits_are_few_shot_targets_with_their_own_source_classes():
    task = make_task(spec_for("task=digits", "task.per_class=3").task)
    assert np.bincount(task.data.y_train).tolist() == [3] * 5 and task.outputs == task.source.outputs == 5
    assert task.data.x_train.shape[1:] == (8, 8, 1) and 0 <= task.data.x_train.min() and task.data.x_train.max() <= 1


@pytest.mark.slow
def test_pretraining_is_cached_and_forgetting_is_the_source_test_accuracy_under_the_pretrained_head(tmp_path):
    """Checked by hand: the pretrained model (from its cache file) on the source test images, argmax by numpy;
    a frozen backbone forgets nothing."""
    common = ("task=digits", *TINY["cnn"], "task.pretrain_steps=20", "train.steps=2", "train.batch_size=10",
              f"results_dir={tmp_path}", *FAST)
    probe = execute(spec_for(*common, "freeze=backbone"), CPU)
    spec = spec_for(*common, "freeze=none", "optimizer.lr=0.05")
    full = execute(spec, CPU)
    assert probe["pretraining"]["cache"] == "built" and full["pretraining"]["cache"] == "hit"
    assert probe["forgetting"]["before"] == probe["forgetting"]["after"] and probe["forgetting"]["change"] == 0
    task = make_task(spec.task)
    pretrained = build_model(spec.model, spec.task.seed, task.in_shape, task.source.outputs)
    with np.load(full["pretraining"]["path"]) as cached:
        for path, variable in nnx.to_flat_state(nnx.state(pretrained, nnx.Param)):
            variable.set_value(cached["/".join(map(str, path))])
    logits = np.asarray(pretrained(task.source.data.x_test), np.float64)
    accuracy = np.mean(np.argmax(logits, axis=1) == task.source.data.y_test)
    assert full["forgetting"]["before"]["accuracy"] == pytest.approx(accuracy, abs=1e-12)
    assert full["forgetting"]["after"] != full["forgetting"]["before"]  # its backbone moved
    assert full["forgetting"]["change"] == pytest.approx(accuracy - full["forgetting"]["after"]["accuracy"])


def test_time_to_target_is_the_first_evaluation_that_reaches_it_and_not_reached_is_an_outcome():
    common = ("train.eval_every=41", "train.warmup=1", "train.repeats=2", "tracker=disabled")
    curve = execute(spec_for(*common), CPU)["target"]["evaluations"]
    assert curve["step"] == [0, 41, 82, 123] and curve["value"][-1] < curve["value"][0]  # validation MSE falls
    goal = curve["value"][2] * 1.000001  # first reached after the second chunk
    hit = execute(spec_for(*common, f"train.target={goal}"), CPU)
    assert hit["target"]["reached"] and hit["target"]["step"] == 82
    assert hit["target"]["time_s"] == pytest.approx(82 * hit["timing"]["in_loop_s_per_step"])
    assert hit["target"]["time_with_compile_s"] == pytest.approx(hit["target"]["time_s"] + hit["target"]["cold_compile_s"])
    assert hit["target"]["evaluations"] == curve  # evaluations do not change the training
    miss = execute(spec_for(*common, "train.target=1e-9"), CPU)
    assert miss["target"]["reached"] is False and miss["target"]["note"] == "not reached in 123 steps"


def test_a_target_on_a_metric_the_task_does_not_have_is_named():
    with pytest.raises(Exception, match="train.target_metric: 'accuracy' is no metric of task 'seed'"):
        execute(spec_for("train.eval_every=41", "train.target=0.5", "train.target_metric=accuracy", *FAST[:1]), CPU)


# Every mask of every new model keeps its frozen leaves bitwise unchanged, for every method that should.
MASKS = {"cnn": ("backbone", "head", "first_block", "lora"), "cnn1d": ("backbone", "first_block"),
         "vit": ("embeddings", "attention", "mlp_blocks", "first_block", "backbone", "lora"),
         "transformer": ("embeddings", "attention", "mlp_blocks", "first_block", "backbone", "lora")}
DATA = {"cnn": "digits", "cnn1d": "mnist1d", "vit": "digits", "transformer": "modular"}
METHODS = ("diffstate", "jax_split", "wrt_only", "attribute", "variable", "optax_partition", "stop_gradient",
           "reference")


# attribute keeps frozen arrays as plain attributes, and nnx.LayerNorm tests its scale's truth value.
CANNOT = {("attribute", mask) for mask in ("backbone", "first_block", "lora")}


def mask_method_pairs(model: str) -> list[tuple[str, str]]:
    """Every method and every mask of a model at least once, each method on another mask (rotating): the full
    cross product compiled 126 programs and took 11 minutes of CI; a method reads only which leaves the mask
    chose, so the pairs keep what can differ (each method's update, each mask's leaves) at one program each."""
    methods = [m for m in METHODS if m != "reference" or hasattr(spec_for(*TINY[model]).model.load(), "reference_forward")]
    masks = MASKS[model]
    layer_norm = model in ("vit", "transformer")
    pairs = []
    for j, method in enumerate(methods):
        rotation = masks[j % len(masks):] + masks[:j % len(masks)]
        pairs.append((next(m for m in rotation if not (layer_norm and (method, m) in CANNOT)), method))
    return pairs + [(mask, "diffstate") for mask in masks if mask not in {m for m, _ in pairs}]


@pytest.mark.slow
@pytest.mark.parametrize("model", MASKS)
def test_every_mask_of_every_new_model_keeps_its_frozen_leaves_bitwise_unchanged(model):
    if model in ("vit", "transformer"):  # refused before anything compiles: every refused pair is checked
        for method, mask in sorted(CANNOT):
            spec = spec_for(*WORKLOADS[DATA[model]], *TINY[model], *(("model.lora_rank=2",) if mask == "lora" else ()),
                            f"freeze={mask}", f"method={method}")
            with pytest.raises(ConfigError, match=f"method: attribute cannot train model '{model}'"):
                build(spec, make_task(spec.task))
    pairs = mask_method_pairs(model)
    assert {mask for mask, _ in pairs} == set(MASKS[model]) and len({method for _, method in pairs}) >= 7
    for mask, method in pairs:
        lora = ("model.lora_rank=2",) if mask == "lora" else ()
        # AdamW decays every parameter it sees: stop_gradient moves frozen ones by design (test_freezing.py).
        spec = spec_for(*WORKLOADS[DATA[model]], *TINY[model], *lora, f"freeze={mask}", f"method={method}",
                        "optimizer=adam", "train.steps=3", "train.batch_size=8")
        task = make_task(spec.task)
        built = build(spec, task)
        state, _ = train(built.state, task.data.x_train[:8], task.data.y_train[:8], program=built.program,
                         steps=3, metrics=(task.loss,))
        frozen = [i for i, p in enumerate(built.paths)
                  if p[0] == 0 and "/".join(map(str, p[1:])) in built.frozen_paths]
        trained = [i for i, p in enumerate(built.paths)
                   if p[0] == 0 and "/".join(map(str, p[1:])) in built.trainable_paths]
        assert frozen and trained, (model, mask, method)
        for i in frozen:
            assert np.asarray(state[i]).tobytes() == np.asarray(built.state[i]).tobytes(), (model, mask, method)
        assert any(not np.array_equal(state[i], built.state[i]) for i in trained), (model, mask, method)


@pytest.mark.slow  # over 8 s on 2 cores: the everyday suite stays near 5 minutes
def test_frozen_weights_in_bfloat16_halve_their_bytes_and_stay_bitwise_unchanged(tmp_path):
    common = ("task=digits", *TINY["cnn"], "freeze=backbone", "train.steps=4", "train.batch_size=10", *FAST)
    plain = execute(spec_for(*common), CPU)
    half = execute(spec_for(*common, "freeze.frozen_dtype=bfloat16"), CPU)
    assert half["drift"]["unchanged"] is True and half["status"] == "ok"
    assert half["timing"]["memory"]["argument_size_in_bytes"] < plain["timing"]["memory"]["argument_size_in_bytes"]
    assert half["parameters"]["frozen"] == plain["parameters"]["frozen"]


@pytest.mark.slow  # over 8 s on 2 cores: the everyday suite stays near 5 minutes
def test_the_cost_split_says_what_freezing_removed_and_lora_added():
    def split(*extra):
        spec = spec_for("task=digits", *TINY["cnn"], *extra)
        task = make_task(spec.task)
        return cost.split(build(spec, task), task.loss, task.data.x_train[:10], task.data.y_train[:10])

    full, probe, lora = split("freeze=none"), split("freeze=backbone"), split("freeze=lora", "model.lora_rank=2")
    assert full["forward"] == probe["forward"] < lora["forward"]  # adapters add forward work
    assert full["gradient"] == full["full_gradient"] == probe["full_gradient"]
    assert probe["gradient"] < full["gradient"] / 10  # a frozen backbone needs no backward through it
    assert all(v > 0 for v in full.values())
