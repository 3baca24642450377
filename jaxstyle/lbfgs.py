"""L-BFGS direction for a fixed step size, with the curvature safeguard a line search would give.

optax's ``scale_by_lbfgs`` stores every (s, y) pair and relies on a line search (Wolfe
conditions) to guarantee ``s.y > 0``. We run L-BFGS with a fixed step (see step.py for why), so
a pair with non-positive curvature can enter the memory and turn every later direction uphill;
measured: from a noise start with average pooling, the style loss *rose* under optax's transform.
This transformation is the same two-loop recursion (Nocedal & Wright, Algorithm 7.4) with the
safeguard of torch.optim.LBFGS and Nocedal & Wright section 7.2: a pair is stored only if
``s.y > eps * y.y``, and the initial Hessian scale gamma = s.y / y.y is kept from the last accepted
pair. The first step is scaled by ``min(1, 1 / |g|)`` like optax's.

Works on a single array (the image). The memory is a circular buffer; the loops are unrolled at
trace time (``memory_size`` is static and small), which keeps them out of ``lax.while_loop``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class GuardedLBFGSState(NamedTuple):
    count: jax.Array  # steps taken
    params: jax.Array  # x at the previous step
    grad: jax.Array  # gradient at the previous step
    s_memory: jax.Array  # (m, *shape) accepted parameter differences
    y_memory: jax.Array  # (m, *shape) accepted gradient differences
    rho: jax.Array  # (m,) 1 / s.y of each slot, 0 for an empty slot
    next_slot: jax.Array  # where the next accepted pair goes
    gamma: jax.Array  # initial inverse-Hessian scale


def scale_by_guarded_lbfgs(memory_size: int = 10, eps: float = 1e-10) -> optax.GradientTransformation:
    """The L-BFGS direction ``H g`` (to be scaled by ``-learning_rate``), skipping bad curvature pairs."""
    if memory_size < 1:
        raise ValueError("memory_size must be >= 1")

    def init_fn(params: jax.Array) -> GuardedLBFGSState:
        zeros = jnp.zeros((memory_size, *params.shape), params.dtype)
        return GuardedLBFGSState(
            count=jnp.zeros((), jnp.int32),
            params=jnp.zeros_like(params),
            grad=jnp.zeros_like(params),
            s_memory=zeros,
            y_memory=jnp.copy(zeros),
            rho=jnp.zeros((memory_size,), params.dtype),
            next_slot=jnp.zeros((), jnp.int32),
            gamma=jnp.ones((), params.dtype),
        )

    def update_fn(grad: jax.Array, state: GuardedLBFGSState, params: jax.Array | None = None):
        if params is None:
            raise ValueError("scale_by_guarded_lbfgs needs the params")
        s, y = params - state.params, grad - state.grad
        sy, yy = jnp.vdot(s, y), jnp.vdot(y, y)
        accept = (state.count > 0) & (sy > eps * yy) & jnp.isfinite(sy)
        slot = state.next_slot
        # Touch only the one slot (in place under donation) instead of selecting whole buffers.
        s_memory = state.s_memory.at[slot].set(jnp.where(accept, s, state.s_memory[slot]))
        y_memory = state.y_memory.at[slot].set(jnp.where(accept, y, state.y_memory[slot]))
        rho = state.rho.at[slot].set(jnp.where(accept, 1.0 / jnp.where(accept, sy, 1.0), state.rho[slot]))
        next_slot = jnp.where(accept, (slot + 1) % memory_size, slot)
        first_scale = jnp.minimum(1.0, 1.0 / jnp.maximum(jnp.linalg.norm(grad), 1e-30))
        gamma = jnp.where(
            accept, sy / jnp.where(accept, yy, 1.0), jnp.where(state.count == 0, first_scale, state.gamma)
        )

        # Two-loop recursion, newest pair first; empty slots have rho = 0 and change nothing.
        order = [(next_slot - 1 - i) % memory_size for i in range(memory_size)]
        q, alphas = grad, []
        for index in order:
            alpha = rho[index] * jnp.vdot(s_memory[index], q)
            q = q - alpha * y_memory[index]
            alphas.append(alpha)
        r = gamma * q
        for index, alpha in zip(reversed(order), reversed(alphas)):
            beta = rho[index] * jnp.vdot(y_memory[index], r)
            r = r + (alpha - beta) * s_memory[index]
        new_state = GuardedLBFGSState(
            count=state.count + 1,
            params=params,
            grad=grad,
            s_memory=s_memory,
            y_memory=y_memory,
            rho=rho,
            next_slot=next_slot,
            gamma=gamma.astype(params.dtype),
        )
        return r, new_state

    return optax.GradientTransformation(init_fn, update_fn)
