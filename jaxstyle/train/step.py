"""The training step: one jitted function over a donated train state (flax's `TrainState`: the
network's parameters, the optax optimiser and its state, the step count)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
from flax.training.train_state import TrainState

from jaxstyle.objective import LossSpec
from jaxstyle.train.loss import StyleTargets, batch_loss
from jaxstyle.train.network import StyleNetwork


def make_optimizer(learning_rate: float, steps: int, schedule: str, warmup: int = 0) -> optax.GradientTransformation:
    """Adam with a ``"constant"`` or ``"cosine"`` (to 0 at ``steps``) learning rate after a linear warm-up."""
    if schedule == "cosine":
        rate = optax.warmup_cosine_decay_schedule(0.0, learning_rate, max(warmup, 1), max(steps, warmup + 1))
    else:
        rate = optax.join_schedules(
            [optax.linear_schedule(0.0, learning_rate, max(warmup, 1)), optax.constant_schedule(learning_rate)],
            [max(warmup, 1)],
        )
    return optax.adam(rate)


def create_state(params, num_styles: int, optimizer: optax.GradientTransformation) -> TrainState:
    return TrainState.create(apply_fn=StyleNetwork(num_styles).apply, params=params, tx=optimizer)


@functools.partial(jax.jit, static_argnames=("spec",), donate_argnums=(0,))
def train_step(state: TrainState, vgg, crops, style_ids, styles: StyleTargets, spec: LossSpec):
    """One Adam step on a batch of (B, H, W, 3) crops, crop b stylized in style ``style_ids[b]``:
    the new state and the batch's mean terms and ratios (``"total"`` included)."""
    weights = jax.nn.one_hot(style_ids, styles.tv.shape[0], dtype=jnp.float32)

    def loss(params):
        outputs = state.apply_fn({"params": params}, crops, weights)
        return batch_loss(vgg, outputs, crops, styles, style_ids, spec)

    (total, terms), grads = jax.value_and_grad(loss, has_aux=True)(state.params)
    return state.apply_gradients(grads=grads), {**terms, "total": total}
