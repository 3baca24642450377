"""The jit-compiled optimisation step (Adam or L-BFGS): one image's as a `Stepper`, a batch's
(`batched`), and `run_steps`, which runs several of them in one dispatch.

Design notes (the measurements behind them are in docs/performance.md):

* The step is one jitted function of ``(params, image, opt_state, targets)``, the ``step`` of a
  `Stepper`; a batch vmaps the stepper where it makes the batch (`batched`). Everything that changes
  between runs of the same shape (images, targets, learning rate) is an argument, so there is no
  recompilation across iterations, scales of the same shape, or batches of the same bucket. Loss
  settings are a hashable `LossSpec` passed as a static argument.
* L-BFGS is the two-loop direction with a fixed step (as jcjohnson/neural-style runs torch's
  L-BFGS without line search), guarded against bad curvature pairs (`jaxstyle.lbfgs`).
  ``optax.lbfgs``' zoom line search re-evaluates the VGG inside ``lax.while_loop``, where XLA:CPU
  runs the same forward/backward several times slower than at the top level of a jit; here the one forward/backward per iteration stays at the top level and L-BFGS costs
  about one Adam step. Divergence is caught by the driver
  (`jaxstyle.optimize`) instead of a line search.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxstyle.config import StyleConfig
from jaxstyle.lbfgs import scale_by_guarded_lbfgs
from jaxstyle.objective import LossSpec, make_targets, total_loss


@dataclass(frozen=True)
class OptimizerSpec:
    """The static part of the optimiser; the learning rate lives in its state (injected)."""

    name: str
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    memory: int = 10
    clip: bool = True

    @classmethod
    def from_config(cls, config: StyleConfig) -> OptimizerSpec:
        return cls(
            name=config.optimize.optimizer,
            b1=config.optimize.adam_b1,
            b2=config.optimize.adam_b2,
            eps=config.optimize.adam_eps,
            memory=config.optimize.lbfgs_memory,
            # Clipping L-BFGS iterates too (a projected quasi-Newton step): the pairs are then taken
            # between the clipped points, still true secant pairs, and bad ones are skipped by the
            # curvature guard. Unclipped, L-BFGS images drift to about [-0.6, 1.9] and the final clip
            # throws away much of the progress.
            clip=config.optimize.clip,
        )


def _lbfgs_fixed_step(learning_rate, memory_size: int) -> optax.GradientTransformation:
    return optax.chain(scale_by_guarded_lbfgs(memory_size=memory_size), optax.scale_by_learning_rate(learning_rate))


def make_optimizer(spec: OptimizerSpec, learning_rate: float) -> optax.GradientTransformation:
    """optax transformation with the learning rate injected into its state (changeable without retracing)."""
    if spec.name == "adam":
        return optax.inject_hyperparams(optax.adam, static_args=("b1", "b2", "eps"))(
            learning_rate=learning_rate, b1=spec.b1, b2=spec.b2, eps=spec.eps
        )
    return optax.inject_hyperparams(_lbfgs_fixed_step, static_args=("memory_size",))(
        learning_rate=learning_rate, memory_size=spec.memory
    )


def step_fn(params, image, opt_state, targets, loss_spec: LossSpec, opt_spec: OptimizerSpec):
    """One un-jitted optimisation step of one (H, W, 3) image; returns (image, opt_state, terms)."""
    (total, terms), grad = jax.value_and_grad(total_loss, argnums=1, has_aux=True)(params, image, targets, loss_spec)
    optimizer = make_optimizer(opt_spec, 1.0)  # the real learning rate is read from opt_state
    updates, opt_state = optimizer.update(grad, opt_state, image)
    image = optax.apply_updates(image, updates)
    if opt_spec.clip:
        image = jnp.clip(image, 0.0, 1.0)
    # A finite loss can still come with a non-finite update (e.g. 0/0 in Adam); report it as a NaN
    # total so that the driver's recovery sees it. One reduction, no host sync.
    total = jnp.where(jnp.all(jnp.isfinite(image)), total, jnp.nan)
    return image, opt_state, {**terms, "total": total}


class Stepper(NamedTuple):
    """One problem's optimisation as a pair of pure functions, as optax pairs ``init``/``update``.

    ``init(image, learning_rate) -> opt_state``;
    ``step(params, image, opt_state, targets) -> (image, opt_state, terms)``.
    A batch is the same pair under ``jax.vmap`` (`batched`), applied where the batch is made.
    """

    init: Callable
    step: Callable


@functools.cache
def make_stepper(loss_spec: LossSpec, opt_spec: OptimizerSpec) -> Stepper:
    """The stepper of one (H, W, 3) image. Cached, so equal specs give the same (hashable) pair
    and the jitted `run_steps` compiles once per shape."""

    def init(image, learning_rate):
        return make_optimizer(opt_spec, learning_rate).init(image)

    def step(params, image, opt_state, targets):
        return step_fn(params, image, opt_state, targets, loss_spec, opt_spec)

    return Stepper(init, step)


@functools.cache
def batched(stepper: Stepper, style_axis: int | None = None) -> Stepper:
    """``stepper`` over a leading batch axis of the image, optimiser state and content targets.

    Style targets are shared by the batch (``style_axis=None``), or per image (``0``): the
    colour-preserving modes recolour the style for every content image. The inputs' losses
    (``"norm"``) are per image.
    """
    return Stepper(
        init=jax.vmap(stepper.init, in_axes=(0, None)),
        step=jax.vmap(stepper.step, in_axes=(None, 0, 0, make_targets(0, style_axis, 0))),
    )


def run_steps(params, image, opt_state, targets, *, stepper: Stepper, steps: int = 1):
    """``steps`` optimisation steps in one dispatch; terms come back stacked per step (jit-compiled).

    ``image`` and ``opt_state`` are donated: do not use the arrays passed in after the call.
    """
    return jitted_run_steps()(params, image, opt_state, targets, stepper=stepper, steps=steps)


def jitted_run_steps() -> Callable:
    """The jitted `run_steps` for the default backend, e.g. for ``.lower(...).compile()``."""
    return _RUN_STEPS[jax.default_backend() == "cpu"]


def _run_steps(params, image, opt_state, targets, *, stepper: Stepper, steps: int = 1):
    """The traced body of `run_steps` (see there), jitted once per backend kind in `_RUN_STEPS`."""
    if steps == 1:
        image, opt_state, terms = stepper.step(params, image, opt_state, targets)
        return image, opt_state, jax.tree.map(lambda t: t[None], terms)

    def body(carry, _):
        image, opt_state, terms = stepper.step(params, *carry, targets)
        return (image, opt_state), terms

    (image, opt_state), terms = jax.lax.scan(body, (image, opt_state), length=steps)
    return image, opt_state, terms


# On CPU, LLVM -O1 instead of XLA's default -O3 compiles the step ~25% faster (the Winograd tile
# transforms are many small fusions) and runs it as fast: the time is in library GEMMs, not in
# generated loops (measured, docs/performance.md). Other backends keep their defaults.
_CPU_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}
_JIT_ARGS = {"static_argnames": ("stepper", "steps"), "donate_argnames": ("image", "opt_state")}
_RUN_STEPS = {
    True: jax.jit(_run_steps, **_JIT_ARGS, compiler_options=_CPU_COMPILER_OPTIONS),
    False: jax.jit(_run_steps, **_JIT_ARGS),
}


def init_opt_state(image: jax.Array, stepper: Stepper, learning_rate: float):
    state = stepper.init(image, learning_rate)
    # optax may hand out one zeros buffer for several leaves; donation needs distinct buffers.
    state = jax.tree.map(jnp.copy, state)
    if isinstance(image.sharding, jax.sharding.NamedSharding):
        # A batch split over devices: start with the layout the step returns, or the second call
        # would compile again.
        state = jax.device_put(state, image.sharding)
    return state


def set_learning_rate(opt_state, learning_rate):
    hyper = dict(opt_state.hyperparams)
    hyper["learning_rate"] = jnp.full_like(hyper["learning_rate"], learning_rate)
    return opt_state._replace(hyperparams=hyper)


def learning_rate_of(opt_state) -> float:
    return float(np.asarray(opt_state.hyperparams["learning_rate"]).reshape(-1)[0])
