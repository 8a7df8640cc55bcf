"""One run, as data: a validated Config in, a dict of plain measurements out."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from harness import metrics
from harness.config import Config
from harness.devices import data_parallel
from harness.task import make_data
from harness.timing import compile_and_time
from harness.train import build, model_arrays, optimizer_arrays, train


def divergence(mse: np.ndarray, mae: np.ndarray) -> dict[str, Any] | None:
    """First step with a non-finite loss and the last finite values before it, or None."""
    bad = ~(np.isfinite(mse) & np.isfinite(mae))
    if not bad.any():
        return None
    first = int(np.argmax(bad))
    last = first - 1
    return {
        "first_nonfinite_step": first,
        "last_finite_step": last if last >= 0 else None,
        "last_finite_train_mse": float(mse[last]) if last >= 0 else None,
        "last_finite_train_mae": float(mae[last]) if last >= 0 else None,
    }


def execute(spec: Config, devices: list[jax.Device] | jax.Device) -> dict[str, Any]:
    """Builds, compiles, times and evaluates one run; the training batch is sharded over `devices`."""
    devices = [devices] if isinstance(devices, jax.Device) else list(devices)
    batch, replicated = data_parallel(devices)
    with jax.default_device(devices[0]):
        data = make_data(spec.task)
        data = data._replace(x_train=jax.device_put(data.x_train, batch), y_train=jax.device_put(data.y_train, batch),
                             x_test=jax.device_put(data.x_test, replicated),
                             y_test=jax.device_put(data.y_test, replicated))
        built = build(spec, data)
        state0 = jax.device_put(built.state, replicated)
        (state, (mse, mae)), timing = compile_and_time(
            train, (state0, data.x_train, data.y_train), {"program": built.program, "steps": spec.train.steps},
            steps=spec.train.steps, warmup=spec.train.warmup, repeats=spec.train.repeats,
        )
        pred_train = built.program.predict(state, data.x_train)
        pred_test = built.program.predict(state, data.x_test)
    mse, mae = np.asarray(mse), np.asarray(mae)
    initial, final = model_arrays(built, built.state), model_arrays(built, state)
    steps = metrics.subsample(spec.train.steps, spec.tracker.history_points)
    diverged = divergence(mse, mae)
    return {
        "status": "diverged" if diverged else "ok",
        "divergence": diverged,
        "metrics": {
            "train": metrics.errors(pred_train, data.y_train),
            "test": metrics.errors(pred_test, data.y_test),
            "last_step_train_mse": float(mse[-1]),  # the loss the seed prints: before the last update
            "last_step_train_mae": float(mae[-1]),
            **metrics.fit_line(data.x_test, pred_test),
        },
        "drift": metrics.drift(initial, final, built.frozen_paths),
        "trained_drift": metrics.drift(initial, final, built.trainable_paths),
        "parameters": {
            "trainable": metrics.count(initial, built.trainable_paths),
            "frozen": metrics.count(initial, built.frozen_paths),
            "trainable_paths": built.trainable_paths,
            "frozen_paths": built.frozen_paths,
            "grad_paths": built.grad_paths,
            "grads_cover_frozen": any(p in built.grad_paths for p in built.frozen_paths),
            "final": {path: value.ravel().tolist() for path, value in final.items() if value.size <= 16},
        },
        "optimizer_state": metrics.optimizer_state(optimizer_arrays(built, state), built.frozen_paths),
        "timing": timing.summary(),
        "placement": {
            "state": sorted({str(d) for leaf in state for d in leaf.devices()}),
            "train_batch": sorted(str(d) for d in data.x_train.devices()),
        },
        "history": {
            "step": steps.tolist(),
            "train_mse": mse[steps].tolist(),
            "train_mae": mae[steps].tolist(),
        },
    }
