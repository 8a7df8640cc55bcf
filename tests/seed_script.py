"""The first seed's fixed script, ported to the current Flax API and nothing else.

Changes from the seed: `layer.kernel.value = ...` -> `layer.kernel[...] = ...`;
`nnx.Optimizer` no longer holds the model, so the scan carries (model, optimizer)
and `update(model, grads)`; the scan runs inside `nnx.jit` as the harness does.
"""

import optax
from flax import nnx
from jax import numpy as jnp
from jax import random


def glinear(x, slope=2.234, intercept=-1.123):
    return slope * x + intercept


def loss_eval(module, feats, targets):
    preds = module(feats)
    diffs = targets - preds
    mse = jnp.mean(diffs**2)
    mae = jnp.mean(jnp.abs(diffs))
    return mse, mae


def run_seed(steps: int = 123) -> dict:
    dims = (2, 55, 1)
    seeds = nnx.Rngs(123)
    layer = nnx.Linear(1, 1, rngs=seeds)
    layer.kernel[...] = jnp.array([[2.0]])  # pretend this is a loaded pretrained kernel
    pkey = seeds.params()
    xfull = random.uniform(pkey, dims, minval=-10, maxval=10)
    tgt1, tgt2 = glinear(xfull)
    x1, x2 = xfull
    mask = nnx.All(nnx.PathContains("bias"))
    diff = nnx.DiffState(0, mask)
    vg = nnx.value_and_grad(loss_eval, argnums=diff, has_aux=True)

    @nnx.jit
    def train(model, optimizer, xb, yb):
        @nnx.scan(in_axes=(nnx.Carry, None, None), out_axes=(nnx.Carry, 0), length=steps)
        def train_loop(carry, xb, yb):
            model, optimizer = carry
            (mse, mae), grad_tree = vg(model, xb, yb)
            optimizer.update(model, grad_tree)
            return (model, optimizer), (mse, mae)

        return train_loop((model, optimizer), xb, yb)[1]

    trainer = nnx.Optimizer(layer, optax.adamw(learning_rate=1e-3), wrt=mask)
    mse_hist, mae_hist = train(layer, trainer, x1, tgt1)
    yhat1, yhat2 = layer(xfull)
    err2 = tgt2 - yhat2
    return {
        "training_loss": float(mse_hist[-1]),
        "test_loss": float(jnp.mean(err2 * err2)),
        "m": float(layer.kernel[...][0, 0]),
        "b": float(layer.bias[...][0]),
        "mse_hist": mse_hist,
    }
