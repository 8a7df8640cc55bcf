"""A run's starting model: fresh, or with a backbone pretrained on the task's source task.

Pretraining is done once per (task, model shape, seed) and cached on disk under
`<results_dir>/.pretrained/`, keyed by a hash of everything it depends on. The
cache file holds its own key; a file that does not load, holds another key or
does not fit the model is rebuilt, never trusted. Pretraining happens while the
run is built, before its program is compiled: no part of it is timed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from harness.core.config import Config, ConfigError
from harness.core.freezing import path_str
from harness.core.models import build_model
from harness.core.task import source_data

LEARNING_RATE = 1e-2  # Adam on the source task, full batch


def initial_model(spec: Config) -> tuple[nnx.Module, dict[str, Any] | None]:
    """(the run's model before training, how its backbone was pretrained or None)."""
    model = build_model(spec.model, spec.task.seed, in_dim=spec.task.dim)
    if spec.task.pretrain_steps == 0:
        return model, None
    if spec.model.name != "mlp":
        raise ConfigError("task.pretrain_steps", "pretraining needs a backbone: use model=mlp, or pretrain_steps=0")
    arrays, info = pretrained_backbone(spec)
    for path, variable in nnx.to_flat_state(nnx.state(model.backbone, nnx.Param)):
        if path_str(path) in arrays:  # the base kernel and bias; LoRA adapters start fresh
            variable[...] = jnp.asarray(arrays[path_str(path)])
    return model, info


def cache_key(spec: Config) -> str:
    """Everything the pretrained backbone depends on, hashed."""
    content = {"task": dataclasses.asdict(spec.task), "depth": spec.model.depth, "width": spec.model.width,
               "lr": LEARNING_RATE, "jax": jax.__version__}
    content["task"].pop("n_test")  # the target's test split does not touch pretraining
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:20]


def pretrained_backbone(spec: Config) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The backbone's arrays by path after pretraining, from the cache or trained now (and cached)."""
    key = cache_key(spec)
    path = Path(spec.results_dir) / ".pretrained" / f"{key}.npz"
    expected = {path_str(p): tuple(v.shape) for p, v in nnx.to_flat_state(nnx.state(
        build_model(dataclasses.replace(spec.model, lora_rank=None), spec.task.seed, spec.task.dim).backbone,
        nnx.Param))}
    problem = "no cache file"
    if path.exists():
        try:
            with np.load(path) as stored:
                arrays = {name: stored[name] for name in stored.files}
            source_mse = float(arrays.pop("__source_mse__"))
            if str(arrays.pop("__key__")) != key:
                problem = "cache file of another configuration"
            elif {n: a.shape for n, a in arrays.items()} != expected:
                problem = "cache file does not fit the model"
            else:
                return arrays, {"steps": spec.task.pretrain_steps, "source_mse": source_mse, "cache": "hit",
                                "path": str(path)}
        except Exception as err:  # noqa: BLE001 - any unreadable cache is rebuilt
            problem = f"unreadable cache file ({type(err).__name__})"
    arrays, source_mse = pretrain(spec)
    _save(path, {**arrays, "__key__": np.asarray(key), "__source_mse__": np.asarray(source_mse)})
    return arrays, {"steps": spec.task.pretrain_steps, "source_mse": source_mse,
                    "cache": "built" if problem == "no cache file" else f"rebuilt: {problem}", "path": str(path)}


def pretrain(spec: Config) -> tuple[dict[str, np.ndarray], float]:
    """Trains the whole model, with one output per teacher feature, on the source task; its backbone."""
    model = build_model(dataclasses.replace(spec.model, lora_rank=None), spec.task.seed, spec.task.dim,
                        out_dim=spec.task.teacher_width)
    graphdef, params = nnx.split(model, nnx.Param)
    x, y = source_data(spec.task)
    tx = optax.adam(LEARNING_RATE)

    def loss(params):
        return jnp.mean((nnx.merge(graphdef, params)(x) - y) ** 2)

    @jax.jit
    def run(params):
        def step(carry, _):
            params, opt_state = carry
            value, grads = jax.value_and_grad(loss)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), value

        (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), length=spec.task.pretrain_steps)
        return params, losses[-1]

    params, source_mse = run(params)
    arrays = {path_str(p): np.asarray(v) for p, v in nnx.to_flat_state(params) if p[0] == "backbone"}
    return {name[len("backbone/"):]: a for name, a in arrays.items()}, float(source_mse)


def _save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Written whole or not at all (temp file, rename): concurrent runs never read half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
