"""The guarded L-BFGS direction (`jaxstyle.lbfgs`) against a dense inverse-Hessian reference.

The reference is written from the textbook, not from jaxstyle/lbfgs.py: it keeps the accepted
curvature pairs in a Python list and builds the inverse Hessian as a dense float64 matrix with the
BFGS update (Nocedal & Wright, eq. 6.17), oldest pair first,

    H <- (I - rho s y^T) H (I - rho y s^T) + rho s s^T,    rho = 1 / s.y,

over the newest ``m`` accepted pairs, starting from ``H0 = gamma I`` with gamma = s.y / y.y of the
newest accepted pair (N&W eq. 7.20). A pair is accepted only if s.y and y.y are finite and
s.y > eps * y.y; gamma is kept from the last accepted pair, and before any pair it is the first
step's scale ``min(1, 1 / |g_0|)``. The direction is then ``H g``; the two-loop recursion must give the same
vector without ever forming H.

The (x, g) sequences are fed to ``update`` directly, so they need not come from one function: that
is how the tests below plant negative, zero and barely positive curvature at chosen steps.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.optimize

from jaxstyle.lbfgs import scale_by_guarded_lbfgs

N = 6
EPS = 1e-10  # the library's default guard

pytestmark = pytest.mark.usefixtures("x64")


# --------------------------------------------------------------------------- dense reference


def dense_inverse_hessian(pairs: list[tuple[np.ndarray, np.ndarray]], gamma: float, n: int) -> np.ndarray:
    """BFGS inverse-Hessian approximation from ``gamma I`` and ``pairs`` (oldest first), as a dense matrix."""
    identity = np.eye(n)
    h = gamma * identity
    for s, y in pairs:
        rho = 1.0 / (s @ y)
        h = (identity - rho * np.outer(s, y)) @ h @ (identity - rho * np.outer(y, s)) + rho * np.outer(s, s)
    return h


def reference_run(xs, gs, memory: int, eps: float = EPS):
    """Directions H_k g_k for the iterates ``xs`` and gradients ``gs``, plus which steps stored a pair."""
    accepted: list[tuple[np.ndarray, np.ndarray]] = []
    directions, stored, gammas = [], [], []
    gamma = None
    for k, (x, g) in enumerate(zip(xs, gs)):
        took = False
        if k == 0:
            gamma = min(1.0, 1.0 / np.linalg.norm(g))
        else:
            s, y = x - xs[k - 1], g - gs[k - 1]
            with np.errstate(over="ignore", invalid="ignore"):  # inf - inf, 1e200 * 1e110: not finite
                sy, yy = s @ y, y @ y
            if np.isfinite(sy) and np.isfinite(yy) and sy > eps * yy:
                accepted.append((s, y))
                gamma = sy / yy
                took = True
        stored.append(took)
        gammas.append(gamma)
        if np.all(np.isfinite(g)):
            directions.append(dense_inverse_hessian(accepted[-memory:], gamma, x.size) @ g)
        else:  # no direction to compare with; H @ inf would only warn
            directions.append(np.full_like(g, np.nan))
    return directions, stored, gammas


@functools.cache
def jitted_transform(memory: int, eps: float):
    """One transformation and its jitted update per (memory, eps), so the tests share compilations."""
    transform = scale_by_guarded_lbfgs(memory_size=memory, eps=eps)
    return transform, jax.jit(transform.update)


def transform_run(xs, gs, memory: int, eps: float = EPS):
    """Feed the sequence to the transformation; return its directions and the state after every step."""
    transform, update = jitted_transform(memory, eps)
    state = transform.init(jnp.asarray(xs[0]))
    directions, states = [], []
    for x, g in zip(xs, gs):
        direction, state = update(jnp.asarray(g), state, jnp.asarray(x))
        assert direction.dtype == jnp.float64
        directions.append(np.asarray(direction))
        states.append(jax.tree.map(np.asarray, state))
    return directions, states


def assert_direction(got, expected, step):
    scale = np.linalg.norm(expected)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10 * scale, err_msg=f"direction at step {step}")


def spd_quadratic(seed: int = 0, n: int = N):
    """A (SPD, eigenvalues 0.5..5) and b of f(x) = x^T A x / 2 - b^T x."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    a = q @ np.diag(np.linspace(0.5, 5.0, n)) @ q.T
    return (a + a.T) / 2.0, rng.normal(size=n)


# --------------------------------------------------------------------------- a. two-loop == dense BFGS


@pytest.mark.parametrize("memory", [1, 3, 12])
def test_direction_matches_dense_bfgs_inverse_hessian(memory):
    """Arbitrary points on an SPD quadratic (so every pair has s.y = s^T A s > 0 and is stored);
    10 steps, so memory 1 and 3 wrap around the circular buffer several times and 12 never fills."""
    a, b = spd_quadratic()
    rng = np.random.default_rng(1)
    xs = [3.0 * rng.normal(size=N) for _ in range(10)]
    gs = [a @ x - b for x in xs]
    expected, stored, _ = reference_run(xs, gs, memory)
    assert stored == [False] + [True] * 9
    got, states = transform_run(xs, gs, memory)
    for k in range(len(xs)):
        assert_direction(got[k], expected[k], k)
    # H g with memory m differs from memory m' once more than min(m, m') pairs exist: the memory
    # size really matters, so a transformation that ignored it would fail the comparison above.
    full, _, _ = reference_run(xs, gs, 12)
    if memory < 9:
        assert np.linalg.norm(expected[-1] - full[-1]) > 1e-3 * np.linalg.norm(full[-1])
    final = states[-1]
    assert int(final.count) == 10
    assert int(final.next_slot) == 9 % memory
    s, y = xs[-1] - xs[-2], gs[-1] - gs[-2]
    np.testing.assert_allclose(final.gamma, s @ y / (y @ y), rtol=1e-12)


@pytest.mark.parametrize("gradient_scale", [0.3, 5.0])
def test_first_step_is_gradient_scaled_by_min_one_inverse_norm(gradient_scale):
    g = gradient_scale * np.array([1.0, -2.0, 0.5, 0.0, 3.0, -1.0]) / np.sqrt(15.25)  # |g| = gradient_scale
    got, states = transform_run([np.ones(N)], [g], memory=4)
    np.testing.assert_allclose(got[0], min(1.0, 1.0 / gradient_scale) * g, rtol=1e-12)
    assert not np.any(states[0].rho)  # nothing to store at the first step


def test_conjugate_steps_on_a_quadratic_recover_the_exact_inverse_hessian():
    """Textbook property, independent of the dense reference: BFGS pairs along A-conjugate steps keep
    the secant conditions H y_j = s_j for all of them (N&W section 6.1, hereditary property), so after
    n pairs H = A^-1 and the direction is the Newton step H g = x - x*. With fewer than n pairs in
    memory it is not."""
    a, b = spd_quadratic(seed=3)
    _, eigenvectors = np.linalg.eigh(a)  # orthogonal and A-conjugate
    steps = [eigenvectors[:, i] * (1.0 + 0.5 * i) for i in (3, 0, 5, 1, 4, 2)]
    xs = list(np.cumsum([np.full(N, 0.3)] + steps, axis=0))
    gs = [a @ x - b for x in xs]
    newton = xs[-1] - np.linalg.solve(a, b)
    got, _ = transform_run(xs, gs, memory=N)
    np.testing.assert_allclose(got[-1], newton, rtol=0, atol=1e-10 * np.linalg.norm(newton))
    short, _ = transform_run(xs, gs, memory=N - 1)
    assert np.linalg.norm(short[-1] - newton) > 1e-3 * np.linalg.norm(newton)


# --------------------------------------------------------------------------- b. the curvature guard


def planted_sequence(kind: str):
    """Six steps of a quadratic's gradients, with the pair of step 4 replaced by one of curvature ``kind``.

    Step 4's point is x_3 + s and its gradient g_3 + y with s, y chosen so that s.y is negative,
    exactly zero, positive but below eps * y.y (here eps = 1e-2), or s = y = 0 (a repeated point, as
    when a fixed-step run stalls). Step 5 goes on from step 4's point with the quadratic's gradient,
    so its pair (relative to step 4) is an ordinary one.
    """
    a, b = spd_quadratic(seed=2)
    rng = np.random.default_rng(5)
    xs = [2.0 * rng.normal(size=N) for _ in range(4)]
    gs = [a @ x - b for x in xs]
    s = np.zeros(N) if kind == "stalled" else np.array([0.5, -1.0, 0.25, 0.0, 0.0, 0.0])
    y = {
        "negative": -a @ s,  # s.y = -s^T A s < 0
        "zero": np.array([0.0, 0.0, 0.0, 2.0, -1.0, 0.5]),  # orthogonal to s: s.y == 0 exactly
        "below_eps": np.array([0.5, -1.0, 0.25, 0.0, 0.0, 0.0]) * 0.5 + np.array([0.0, 0.0, 0.0, 30.0, 0.0, 0.0]),
        "stalled": np.zeros(N),
    }[kind]
    xs.append(xs[-1] + s)
    gs.append(gs[-1] + y)
    x5 = xs[-1] + 0.7 * rng.normal(size=N)
    xs.append(x5)
    gs.append(a @ x5 - b)
    return xs, gs


@pytest.mark.parametrize("kind", ["negative", "zero", "below_eps", "stalled"])
@pytest.mark.parametrize("memory", [2, 8])
def test_pair_without_enough_curvature_is_never_stored(kind, memory):
    eps = 1e-2
    xs, gs = planted_sequence(kind)
    s, y = xs[4] - xs[3], gs[4] - gs[3]
    sy, yy = s @ y, y @ y
    assert {"negative": sy < 0, "zero": sy == 0, "below_eps": 0 < sy <= eps * yy, "stalled": sy == yy == 0}[kind]
    expected, stored, gammas = reference_run(xs, gs, memory, eps)
    assert stored == [False, True, True, True, False, True]
    got, states = transform_run(xs, gs, memory, eps)

    before, after = states[3], states[4]
    for field in ("s_memory", "y_memory", "rho", "next_slot", "gamma"):
        np.testing.assert_array_equal(getattr(after, field), getattr(before, field), err_msg=field)
    assert int(after.count) == 5
    np.testing.assert_array_equal(after.params, xs[4])  # the rejected point is still the next pair's base
    np.testing.assert_array_equal(after.grad, gs[4])
    # gamma comes from step 3's pair, the last accepted one.
    s3, y3 = xs[3] - xs[2], gs[3] - gs[2]
    np.testing.assert_allclose(after.gamma, s3 @ y3 / (y3 @ y3), rtol=1e-12)
    assert gammas[4] == gammas[3]

    for k in range(len(xs)):
        assert_direction(got[k], expected[k], k)
    # Had the bad pair been stored (as an unguarded L-BFGS does), the direction would differ.
    pairs = [(xs[k] - xs[k - 1], gs[k] - gs[k - 1]) for k in range(1, 5)]
    if kind in ("negative", "below_eps"):  # with s.y == 0 an unguarded update divides by zero
        unguarded = dense_inverse_hessian(pairs[-memory:], sy / yy, N) @ gs[4]
        assert np.linalg.norm(unguarded - expected[4]) > 1e-3 * np.linalg.norm(expected[4])


@pytest.mark.parametrize(("step", "stored"), [(1.0 - 2.0**-20, False), (1.0, False), (1.0 + 2.0**-20, True)])
def test_guard_threshold_is_strict(step, stored):
    """s.y == eps * y.y exactly is rejected and 2^-20 above it is stored: eps = 0.5, s = step e_1
    and y = e_1 + e_2, so s.y = step and eps * y.y = 1 are computed exactly."""
    eps = 0.5
    xs = [np.zeros(N), step * np.eye(N)[0]]
    gs = [np.full(N, 0.25), np.full(N, 0.25) + np.eye(N)[0] + np.eye(N)[1]]
    expected, reference_stored, _ = reference_run(xs, gs, memory=3, eps=eps)
    assert reference_stored == [False, stored]
    got, states = transform_run(xs, gs, memory=3, eps=eps)
    assert int(states[1].next_slot) == int(stored)
    np.testing.assert_array_equal(states[1].rho, [1.0 / step if stored else 0.0, 0.0, 0.0])
    assert_direction(got[1], expected[1], 1)


def test_non_finite_gradient_stores_nothing_and_the_run_continues():
    """A step with an infinite gradient (an overflowing loss) must not poison the memory: neither its
    pair nor the next one (whose y is infinite too) is stored, and later directions are finite."""
    a, b = spd_quadratic(seed=4)
    rng = np.random.default_rng(6)
    xs = [rng.normal(size=N) for _ in range(6)]
    gs = [a @ x - b for x in xs]
    gs[3] = np.full(N, np.inf)
    got, states = transform_run(xs, gs, memory=5)
    for field in ("s_memory", "y_memory", "rho", "next_slot", "gamma"):
        np.testing.assert_array_equal(getattr(states[4], field), getattr(states[2], field), err_msg=field)
    expected, stored, _ = reference_run(xs, gs, memory=5)
    assert stored == [False, True, True, False, False, True]
    for k in (0, 1, 2, 4, 5):
        assert np.all(np.isfinite(got[k]))
        assert_direction(got[k], expected[k], k)


def test_overflowing_curvature_is_not_stored():
    """s.y overflowing to inf (a huge step, say) is not a usable pair even though inf > eps * y.y."""
    a, b = spd_quadratic(seed=4)
    rng = np.random.default_rng(7)
    xs = [rng.normal(size=N) for _ in range(4)]
    gs = [a @ x - b for x in xs]
    xs.append(xs[-1] + 1e200 * np.eye(N)[0])
    gs.append(gs[-1] + 1e110 * np.eye(N)[0])  # s.y = 1e310 = inf, y.y = 1e220 is finite
    expected, stored, _ = reference_run(xs, gs, memory=5)
    assert stored == [False, True, True, True, False]
    got, states = transform_run(xs, gs, memory=5)
    for field in ("s_memory", "y_memory", "rho", "next_slot", "gamma"):
        np.testing.assert_array_equal(getattr(states[4], field), getattr(states[3], field), err_msg=field)
    assert np.all(np.isfinite(got[4]))
    assert_direction(got[4], expected[4], 4)


def test_guard_in_a_fixed_step_run_on_a_nonconvex_function():
    """Fixed steps (0.5) on a non-convex function, driven by the transformation's own directions:
    the run meets pairs with s.y <= 0 on its own, and every direction still matches the reference."""

    def value_and_grad(x):
        # Separable double wells plus a coupling: curvature changes sign along the way.
        coupling = np.roll(x, 1)
        value = np.sum(x**4 / 4.0 - x**2) + 0.3 * np.sum(x * coupling)
        return value, x**3 - 2.0 * x + 0.3 * (coupling + np.roll(x, -1))

    transform = scale_by_guarded_lbfgs(memory_size=4)
    update = jax.jit(transform.update)
    x = np.array([0.1, -0.2, 0.05, 0.3, -0.1, 0.15])
    state = transform.init(jnp.asarray(x))
    xs, gs, got = [], [], []
    for _ in range(25):
        _, g = value_and_grad(x)
        direction, state = update(jnp.asarray(g), state, jnp.asarray(x))
        xs.append(x)
        gs.append(g)
        got.append(np.asarray(direction))
        x = x - 0.5 * got[-1]
    expected, stored, _ = reference_run(xs, gs, memory=4)
    assert not all(stored[1:]), "the run was meant to meet at least one pair with too little curvature"
    for k in range(len(xs)):
        assert_direction(got[k], expected[k], k)


def test_memory_size_must_be_positive():
    with pytest.raises(ValueError, match="memory_size"):
        scale_by_guarded_lbfgs(memory_size=0)


def test_params_are_required():
    transform = scale_by_guarded_lbfgs()
    with pytest.raises(ValueError, match="params"):
        transform.update(jnp.ones(N), transform.init(jnp.ones(N)))


# --------------------------------------------------------------------------- c. against scipy.optimize


def fixed_step_minimise(value_and_grad, x0, steps: int, memory: int = 10, learning_rate: float = 1.0):
    optimizer = optax.chain(scale_by_guarded_lbfgs(memory_size=memory), optax.scale(-learning_rate))

    @jax.jit
    def step(x, state):
        value, grad = value_and_grad(x)
        updates, state = optimizer.update(grad, state, x)
        return optax.apply_updates(x, updates), state, value

    x = jnp.asarray(x0)
    state = optimizer.init(x)
    values = []
    for _ in range(steps):
        x, state, value = step(x, state)
        values.append(float(value))
    return np.asarray(x), np.asarray(values)


@pytest.mark.parametrize("memory", [3, 10])
def test_fixed_step_lbfgs_reaches_scipy_minimum_of_a_quadratic(memory):
    a, b = spd_quadratic(seed=7)
    expected = scipy.optimize.minimize(
        lambda x: (0.5 * x @ a @ x - b @ x, a @ x - b),
        np.zeros(N),
        jac=True,
        method="L-BFGS-B",
        options={"gtol": 1e-12, "ftol": 1e-15},
    ).x
    np.testing.assert_allclose(a @ expected, b, atol=1e-6)
    aj, bj = jnp.asarray(a), jnp.asarray(b)
    got, values = fixed_step_minimise(jax.value_and_grad(lambda x: 0.5 * x @ aj @ x - bj @ x), np.zeros(N), 60, memory)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert values[-1] == pytest.approx(-0.5 * b @ np.linalg.solve(a, b), rel=1e-10)


def test_fixed_step_lbfgs_reaches_scipy_minimum_of_rosenbrock():
    x0 = np.array([-1.2, 1.0, -0.5, 0.8])
    expected = scipy.optimize.minimize(
        scipy.optimize.rosen,
        x0,
        jac=scipy.optimize.rosen_der,
        method="L-BFGS-B",
        options={"gtol": 1e-10},
    ).x
    np.testing.assert_allclose(expected, np.ones(4), atol=1e-5)

    def rosen(x):
        return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

    got, values = fixed_step_minimise(jax.value_and_grad(rosen), x0, 300)
    assert np.all(np.isfinite(values))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert values[-1] < 1e-10
