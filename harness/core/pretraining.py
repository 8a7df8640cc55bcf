"""A run's starting model: fresh, or with a backbone pretrained on the task's source task.

With `task.pretrain_steps` > 0, the whole model (without LoRA adapters, with one output per
source target) trains full-batch with AdamW (`task.pretrain_lr`, `task.pretrain_weight_decay`) on the task's `source`, and the run starts from
its `backbone` and a fresh head. The task must have a source and the model a `backbone`
submodule: else one line says which is missing.

Pretraining is done once per (task, model, seed) and cached on disk under
`<results_dir>/.pretrained/`, keyed by a hash of everything it depends on. The
cache file holds its own key; a file that does not load, holds another key or
does not fit the model is rebuilt, never trusted. Pretraining happens while the
run is built, before its program is compiled: no part of it is timed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from harness.core.checks import ConfigError
from harness.core.components import ModelSpec
from harness.core.config import Config
from harness.core.files import atomic_path
from harness.core.freezing import path_str
from harness.core.metrics import METRICS
from harness.core.metrics import evaluate as evaluate_metrics
from harness.core.models import build_model, check_outputs
from harness.core.tasks import Task

# Model settings the pretrained base model is built without: adapters start fresh on the pretrained base.
ADAPTER_SETTINGS = ("lora_rank",)


class Pretrained(NamedTuple):
    """A run's pretraining: how it went (the record's `pretraining`) and the pretrained model's arrays by path."""

    info: dict[str, Any]
    arrays: dict[str, np.ndarray]


def initial_model(spec: Config, task: Task) -> tuple[nnx.Module, Pretrained | None]:
    """(the run's model before training, its pretraining or None)."""
    model = build_model(spec.model, spec.task.seed, task.in_shape, task.outputs, task.vocab)
    check_outputs(model, spec.model.name, task.name, task.data.x_train, task.outputs)
    if spec.task.pretrain_steps == 0:
        return model, None
    if task.source is None:
        raise ConfigError("task.pretrain_steps", f"task {task.name!r} has no source task to pretrain on; "
                                                 "set task.pretrain_steps=0")
    if not isinstance(getattr(model, "backbone", None), nnx.Module):
        raise ConfigError("task.pretrain_steps", f"pretraining trains a `backbone` and model {spec.model.name!r} has "
                                                 "none; set task.pretrain_steps=0, or give the model a backbone")
    if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(nnx.state(model.backbone, nnx.Param))):
        return model, None  # traced for its shapes (harness.core.abstract): pretraining changes values only
    arrays, info = pretrained(spec, task.source)
    for path, variable in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        name = path_str(path)
        if name.startswith("backbone/") and name in arrays:  # the base kernels and biases; adapters start fresh
            variable[...] = jnp.asarray(arrays[name])
    return model, Pretrained(info, arrays)


def forgetting(spec: Config, source: Task, pretrained: Pretrained, initial: dict[str, np.ndarray],
               final: dict[str, np.ndarray]) -> dict[str, Any]:
    """What fine-tuning did to the source task (Hugging Face PEFT's forgetting): its test metrics under the
    pretrained head, with the run's backbone before and after training; `change` of its main metric, positive
    for the worse (an accuracy lost, an MSE gained).

    The backbone is the run's whole backbone (adapters included, wherever a method keeps a frozen array),
    so a frozen backbone forgets nothing.
    """
    model = build_model(spec.model, spec.task.seed, source.in_shape, source.outputs, source.vocab)
    graphdef, state = nnx.split(model)
    apply = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x))

    def evaluate(arrays: dict[str, np.ndarray]) -> dict[str, float]:
        for path, variable in nnx.to_flat_state(state):
            name = path_str(path)
            value = arrays.get(name) if name.startswith("backbone/") else pretrained.arrays.get(name)
            if value is not None:
                variable.set_value(jnp.asarray(value, variable.get_value().dtype))
        return evaluate_metrics(apply(state, source.data.x_test), source.data.y_test, source.kind)

    before, after = evaluate(initial), evaluate(final)
    main = next(m for m in METRICS.values() if m.kind == source.kind and m.main)
    change = after[main.name] - before[main.name]
    return {"before": before, "after": after, "metric": main.name,
            "change": -change if main.better == "higher" else change}


def base_model(spec: Config) -> ModelSpec:
    """The run's model less its adapters: what is pretrained."""
    return dataclasses.replace(spec.model, settings={k: v for k, v in spec.model.settings.items()
                                                     if k not in ADAPTER_SETTINGS})


def cache_key(spec: Config) -> str:
    """Everything the pretrained model depends on, hashed."""
    task, model = spec.task, base_model(spec)
    content = {"task": {"target": task.target, "settings": task.settings, "seed": task.seed,
                        "steps": task.pretrain_steps, "lr": task.pretrain_lr, "weight_decay": task.pretrain_weight_decay},
               "model": {"target": model.target, "settings": model.settings}, "jax": jax.__version__}
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:20]


def pretrained(spec: Config, source: Task) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The pretrained model's arrays by path, from the cache or trained now (and cached)."""
    key = cache_key(spec)
    path = Path(spec.results_dir) / ".pretrained" / f"{key}.npz"
    expected = {path_str(p): tuple(v.shape) for p, v in nnx.to_flat_state(nnx.state(
        build_model(base_model(spec), spec.task.seed, source.in_shape, source.outputs, source.vocab), nnx.Param))}
    info = {"steps": spec.task.pretrain_steps, "loss": source.loss, "path": str(path)}
    problem = "no cache file"
    if path.exists():
        try:
            with np.load(path) as stored:
                arrays = {name: stored[name] for name in stored.files}
            source_loss = float(arrays.pop("__source_loss__"))
            if str(arrays.pop("__key__")) != key:
                problem = "cache file of another configuration"
            elif {n: a.shape for n, a in arrays.items()} != expected:
                problem = "cache file does not fit the model"
            else:
                return arrays, {**info, "source_loss": source_loss, "cache": "hit"}
        except Exception as err:  # noqa: BLE001 - any unreadable cache is rebuilt
            problem = f"unreadable cache file ({type(err).__name__})"
    arrays, source_loss = pretrain(spec, source)
    _save(path, {**arrays, "__key__": np.asarray(key), "__source_loss__": np.asarray(source_loss)})
    return arrays, {**info, "source_loss": source_loss,
                    "cache": "built" if problem == "no cache file" else f"rebuilt: {problem}"}


def pretrain(spec: Config, source: Task) -> tuple[dict[str, np.ndarray], float]:
    """Trains the base model, with the source task's outputs, on the source task: (its arrays, its last loss)."""
    model = build_model(base_model(spec), spec.task.seed, source.in_shape, source.outputs, source.vocab)
    graphdef, params = nnx.split(model, nnx.Param)
    x, y = source.data.x_train, source.data.y_train
    tx = optax.adamw(spec.task.pretrain_lr, weight_decay=spec.task.pretrain_weight_decay)

    def loss(params):
        return METRICS[source.loss].fn(nnx.merge(graphdef, params)(x), y)

    @jax.jit
    def run(params):
        def step(carry, _):
            params, opt_state = carry
            value, grads = jax.value_and_grad(loss)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), value

        (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), length=spec.task.pretrain_steps)
        return params, losses[-1]

    params, source_loss = run(params)
    return {path_str(p): np.asarray(v) for p, v in nnx.to_flat_state(params)}, float(source_loss)


def _save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Written whole or not at all (harness.core.files): concurrent runs never read half a file."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
