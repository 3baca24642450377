"""Optimisers against scipy.optimize, and the jit-compiled step / driver on tiny images.

The optimiser tests use jaxstyle's optax transformations exactly as `step_fn` does (value_and_grad,
update, apply_updates) on problems whose minimiser SciPy finds independently. The driver tests use
the real embedded VGG19 weights on 16-24 px images, which keeps a step in the millisecond range.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.optimize

import jaxstyle.optimize as opt
from jaxstyle import objective
from jaxstyle.config import StyleConfig
from jaxstyle.config_sources import PRESETS, preset
from jaxstyle.errors import NumericalError, UsageError
from jaxstyle.io.resize import resize_to
from jaxstyle.nets.vgg import prepare_params
from jaxstyle.objective import TERMS, LossSpec, content_targets, loss_terms, style_targets, whole_norms
from jaxstyle.optimize import optimize
from jaxstyle.step import (
    OptimizerSpec,
    Stepper,
    batched,
    init_opt_state,
    learning_rate_of,
    make_optimizer,
    make_stepper,
    run_steps,
    set_learning_rate,
)
from jaxstyle.weights import load_weights

SHAPE = (16, 16, 3)

# --------------------------------------------------------------------------- test problems


@functools.cache
def quadratic_problem():
    """0.5 x^T A x - b^T x over a (16, 16, 3) array; A = diag(d) + V V^T is SPD, not diagonal, and
    its eigenvalues lie in [0.5, ~8] (every coordinate is coupled to every other through V)."""
    rng = np.random.default_rng(0)
    n = int(np.prod(SHAPE))
    d = rng.uniform(0.5, 5.0, n)
    v = rng.normal(size=(n, 6)) / np.sqrt(n) * 1.2
    a = np.diag(d) + v @ v.T  # dense, for the NumPy/SciPy side
    b = rng.normal(size=n)

    def np_value_and_grad(x):
        return 0.5 * x @ a @ x - b @ x, a @ x - b

    d32, v32, b32 = (jnp.asarray(t, jnp.float32) for t in (d, v, b))

    def jax_fun(x):  # the same function through the low-rank form
        x = x.reshape(-1)
        return 0.5 * (jnp.sum(d32 * x * x) + jnp.sum((v32.T @ x) ** 2)) - b32 @ x

    return np_value_and_grad, jax_fun


@functools.cache
def logistic_problem():
    """L2-regularised logistic regression with a (16, 16, 3) weight array."""
    rng = np.random.default_rng(1)
    n = int(np.prod(SHAPE))
    x = rng.normal(size=(200, n)) * 3 / np.sqrt(n)
    y = np.sign(rng.normal(size=200))
    lam = 0.1

    def np_value_and_grad(w):
        margin = y * (x @ w)
        value = np.mean(np.logaddexp(0.0, -margin)) + lam / 2 * w @ w
        grad = -x.T @ (y * scipy.special.expit(-margin)) / len(y) + lam * w
        return value, grad

    x32, y32 = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)

    def jax_fun(w):
        return jnp.mean(jnp.logaddexp(0.0, -y32 * (x32 @ w.reshape(-1)))) + lam / 2 * jnp.sum(w * w)

    return np_value_and_grad, jax_fun


def scipy_minimiser(np_value_and_grad, x0):
    result = scipy.optimize.minimize(
        np_value_and_grad,
        x0.ravel().astype(np.float64),
        jac=True,
        method="L-BFGS-B",
        options={"gtol": 1e-12, "ftol": 1e-16, "maxiter": 5000},
    )
    assert np.linalg.norm(np_value_and_grad(result.x)[1]) < 1e-6
    return result.x.reshape(x0.shape)


def run_optimizer(fun, x0, spec: OptimizerSpec, learning_rate: float, steps: int):
    """The plain loop: value_and_grad, update (with params, as step_fn passes them), apply_updates."""
    optimizer = make_optimizer(spec, learning_rate)

    @jax.jit
    def step(x, state):
        value, grad = jax.value_and_grad(fun)(x)
        updates, state = optimizer.update(grad, state, x)
        return optax.apply_updates(x, updates), state, value

    x, state, values = jnp.asarray(x0), optimizer.init(jnp.asarray(x0)), []
    for _ in range(steps):
        x, state, value = step(x, state)
        values.append(float(value))
    return np.asarray(x), np.asarray(values)


PROBLEMS = {"quadratic": quadratic_problem, "logistic": logistic_problem}


@pytest.mark.parametrize("problem", PROBLEMS)
def test_lbfgs_matches_scipy(problem):
    np_value_and_grad, jax_fun = PROBLEMS[problem]()
    x0 = np.zeros(SHAPE, np.float32)
    expected = scipy_minimiser(np_value_and_grad, x0)
    got, values = run_optimizer(jax_fun, x0, OptimizerSpec("lbfgs"), 1.0, 100)
    assert got.shape == SHAPE and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    assert values[-1] == pytest.approx(np_value_and_grad(expected.ravel())[0], rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("problem", PROBLEMS)
def test_adam_reaches_scipy_minimiser(problem):
    np_value_and_grad, jax_fun = PROBLEMS[problem]()
    x0 = np.zeros(SHAPE, np.float32)
    expected = scipy_minimiser(np_value_and_grad, x0)
    got, values = run_optimizer(jax_fun, x0, OptimizerSpec("adam"), 0.05, 1000)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-2 * max(1.0, np.abs(expected).max()))
    assert values[-1] == pytest.approx(np_value_and_grad(expected.ravel())[0], rel=1e-4, abs=1e-5)


def test_lbfgs_without_line_search_on_rosenbrock():
    """Our L-BFGS takes fixed unit steps. From the classic start it is not monotone (the loss jumps
    from 24 to ~1e4 on the way) but it still reaches SciPy's minimiser (1, 1) in 150 steps."""

    def rosenbrock(x):
        return (1.0 - x[0]) ** 2 + 100.0 * (x[1] - x[0] ** 2) ** 2

    x0 = np.array([-1.2, 1.0], np.float32)
    expected = scipy.optimize.minimize(
        scipy.optimize.rosen,
        x0.astype(np.float64),
        jac=scipy.optimize.rosen_der,
        method="L-BFGS-B",
        options={"gtol": 1e-10},
    ).x
    np.testing.assert_allclose(expected, [1.0, 1.0], atol=1e-5)
    got, values = run_optimizer(rosenbrock, x0, OptimizerSpec("lbfgs"), 1.0, 150)
    assert values[0] == pytest.approx(scipy.optimize.rosen(x0.astype(np.float64)), rel=1e-6)
    assert np.all(np.isfinite(values))
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert values[-1] < 1e-8


@pytest.mark.parametrize("name", ["adam", "lbfgs"])
def test_learning_rate_lives_in_the_state(name):
    """set_learning_rate changes the step size: Adam's first step is lr * sign(g), L-BFGS' first
    step is -lr * g / max(1, |g|)."""
    spec = OptimizerSpec(name)
    optimizer = make_optimizer(spec, 1.0)
    x = jnp.zeros(SHAPE)
    grad = jnp.asarray(np.random.default_rng(2).normal(size=SHAPE), jnp.float32)
    state = set_learning_rate(optimizer.init(x), 0.01)
    assert learning_rate_of(state) == pytest.approx(0.01)
    updates, _ = jax.jit(optimizer.update)(grad, state, x)
    if name == "adam":
        expected = -0.01 * np.sign(grad)
    else:
        expected = -0.01 * grad / max(1.0, float(jnp.linalg.norm(grad)))
    np.testing.assert_allclose(np.asarray(updates), expected, rtol=1e-4, atol=1e-7)


# --------------------------------------------------------------------------- the style-transfer driver


@pytest.fixture(scope="module")
def weights():
    return load_weights()


@pytest.fixture(scope="module")
def params(weights):
    return jax.device_put(weights.params)


def structured_content(h, w):
    yy, xx = np.mgrid[:h, :w] / max(h, w)
    disc = ((xx - 0.5) ** 2 + (yy - 0.5) ** 2 < 0.1).astype(float)
    return np.stack([xx, yy, disc], -1).astype(np.float32)


def structured_style(h, w):
    yy, xx = np.mgrid[:h, :w].astype(float)
    return (np.stack([np.sin(xx / 2.0), np.cos(yy / 3.0), np.sin((xx + yy) / 1.5)], -1) * 0.5 + 0.5).astype(np.float32)


def noise_image(h, w, seed=1):
    return np.random.default_rng(seed).uniform(0.0, 1.0, (h, w, 3)).astype(np.float32)


def make_targets(params, spec, content, style, shape):
    targets = {
        "content": content_targets(params, jnp.asarray(content), spec),
        "style": style_targets(params, jnp.asarray(style), spec, shape),
    }
    targets["norm"] = whole_norms(params, content, [resize_to(style, *shape)], (1.0,), targets, spec)
    return targets


# A shallow network keeps compilation short for the tests of the machinery (not of the result).
SHALLOW = {"content_layers": ("relu2_1",), "style_layers": ("relu1_1", "relu2_1")}


def test_target_passes_ignore_the_prepared_kernels(params, weights):
    """Content and style targets run on lax.conv (quicker to compile): zeroing the Winograd and
    flipped kernels of `prepare_params` changes nothing, and the targets equal the unprepared ones."""
    spec = LossSpec.from_config(StyleConfig(**SHALLOW), weights.mean_bgr)
    prepared = prepare_params(params, spec.layers, winograd_convs=True)
    assert any("winograd" in layer for layer in prepared.values())  # block2 has Winograd kernels
    zeroed = {
        name: {key: value if key in ("kernel", "bias") else jnp.zeros_like(value) for key, value in layer.items()}
        for name, layer in prepared.items()
    }
    content, style = structured_content(16, 16), structured_style(20, 20)
    expected = make_targets(params, spec, content, style, (16, 16))
    got = make_targets(zeroed, spec, content, style, (16, 16))
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), got, expected)


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_optimize_end_to_end_reduces_style_loss(params, weights, optimizer):
    """Default losses and layers, 24x24, 60 iterations from noise (Gatys' start; the neural-style
    preset's): the returned image's style loss is at least 10x lower than the start's, and its content
    loss is below that of another noise image (the content is kept, not given up for the style)."""
    h = w = 24
    raw = {"loss_units": "raw", "content_weight": 5.0, "tv_weight": 30.0}  # the balance this was calibrated on
    config = StyleConfig(max_size=24, iterations=60, optimizer=optimizer, report_every=20, **raw)
    spec = LossSpec.from_config(config, weights.mean_bgr)
    targets = make_targets(params, spec, structured_content(h, w), structured_style(h, w), (h, w))
    start = jnp.asarray(noise_image(h, w))
    terms = jax.jit(loss_terms, static_argnames="spec")
    before = terms(params, start, targets, spec)
    at_noise = terms(params, jnp.asarray(noise_image(h, w, seed=7)), targets, spec)

    result = optimize(params, jnp.copy(start), targets, config, spec)

    image = np.asarray(result.image)
    assert image.shape == (h, w, 3) and np.all(np.isfinite(image))
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert set(result.history) == {"content", "style", "tv", "total", "content_ratio", "style_ratio", "tv_ratio"}
    assert all(len(v) == 60 and np.all(np.isfinite(v)) for v in result.history.values())
    assert result.history["total"][0] == pytest.approx(
        float(sum(before[key] for key in TERMS if key in before)), rel=1e-4
    )
    after = terms(params, result.image, targets, spec)
    style_ratio = float(before["style"]) / float(after["style"])
    assert style_ratio > 10, (
        f"style loss only fell {style_ratio:.3g}x ({float(before['style']):.4g} -> {float(after['style']):.4g})"
    )
    assert float(after["content"]) < float(at_noise["content"]), (float(at_noise["content"]), float(after["content"]))


def counting(stepper: Stepper) -> tuple[Stepper, list[int]]:
    """``stepper`` with a counter of how often its step is traced (test instrumentation)."""
    traces = [0]

    def step(*args):
        traces[0] += 1
        return stepper.step(*args)

    return Stepper(stepper.init, step), traces


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_run_steps_does_not_retrace(params, weights, optimizer):
    config = StyleConfig(optimizer=optimizer, **SHALLOW)
    spec, opt_spec = LossSpec.from_config(config, weights.mean_bgr), OptimizerSpec.from_config(config)
    stepper, traces = counting(make_stepper(spec, opt_spec))
    kwargs = {"stepper": stepper}

    def fresh(h, w, seed, lr=0.5):
        image = jnp.asarray(noise_image(h, w, seed))
        targets = make_targets(params, spec, noise_image(h, w, seed + 1), noise_image(h, w, seed + 2), (h, w))
        return image, init_opt_state(image, stepper, lr), targets

    image, state, targets = fresh(16, 16, 0)
    count = traces[0]
    image, state, _ = run_steps(params, image, state, targets, **kwargs)
    assert traces[0] == count + 1  # a new stepper: the first call traces, proving the counter works

    # New image and targets of the same shapes, the returned state with another learning rate.
    new_image, _, new_targets = fresh(16, 16, 10)
    state = set_learning_rate(state, 0.125)
    _, state, _ = run_steps(params, new_image, state, new_targets, **kwargs)
    assert learning_rate_of(state) == pytest.approx(0.125)
    # A fresh run of the same shape (another scale, another image), and other parameter values.
    image, state, targets = fresh(16, 16, 20, lr=0.03)
    other_params = jax.tree.map(lambda a: a * 1.01, params)
    run_steps(other_params, image, state, targets, **kwargs)
    assert traces[0] == count + 1

    image, state, targets = fresh(16, 24, 30)
    run_steps(params, image, state, targets, **kwargs)
    assert traces[0] == count + 2


def test_equal_specs_share_one_stepper():
    """make_stepper is cached, so every run with equal settings hits the same compiled step."""
    config = StyleConfig(**SHALLOW)
    specs = LossSpec.from_config(config), OptimizerSpec.from_config(config)
    assert make_stepper(*specs) is make_stepper(*specs)
    assert batched(make_stepper(*specs), None) is batched(make_stepper(*specs), None)
    assert make_stepper(*specs) is not make_stepper(LossSpec.from_config(config.replace(tv_weight=1.5)), specs[1])


def test_scan_of_steps_equals_single_steps(params, weights):
    config = StyleConfig(optimizer="lbfgs", **SHALLOW)
    spec, opt_spec = LossSpec.from_config(config, weights.mean_bgr), OptimizerSpec.from_config(config)
    targets = make_targets(params, spec, structured_content(16, 16), structured_style(16, 16), (16, 16))
    start = noise_image(16, 16)

    stepper = make_stepper(spec, opt_spec)
    image, state = jnp.asarray(start), init_opt_state(jnp.asarray(start), stepper, 1.0)
    image, state, scanned = run_steps(params, image, state, targets, stepper=stepper, steps=3)
    one_by_one = []
    single, state = jnp.asarray(start), init_opt_state(jnp.asarray(start), stepper, 1.0)
    for _ in range(3):
        single, state, terms = run_steps(params, single, state, targets, stepper=stepper)
        one_by_one.append(np.asarray(terms["total"]))
    assert scanned["total"].shape == (3,)
    np.testing.assert_allclose(np.asarray(scanned["total"]), np.concatenate(one_by_one), rtol=1e-4)
    np.testing.assert_allclose(np.asarray(image), np.asarray(single), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("optimizer", "per_image_style"), [("lbfgs", False), ("adam", False), ("lbfgs", True)])
def test_batched_steps_equal_single_image_steps(params, weights, optimizer, per_image_style):
    """vmap over a batch of 2 == each image alone: content targets stacked on axis 0; style targets
    shared (style_axis None) or one per image (style_axis 0, stacked)."""
    h = w = 16
    config = StyleConfig(optimizer=optimizer, **SHALLOW)
    spec, opt_spec = LossSpec.from_config(config, weights.mean_bgr), OptimizerSpec.from_config(config)
    lr = config.optimize.resolved_learning_rate
    contents = [structured_content(h, w), noise_image(h, w, 3)]
    styles = [structured_style(h, w), structured_style(h, w)[::-1, ::-1] if per_image_style else structured_style(h, w)]
    singles = [make_targets(params, spec, c, s, (h, w)) for c, s in zip(contents, styles)]
    stack = lambda trees: jax.tree.map(lambda *t: jnp.stack(t), *trees)
    batched_targets = {"content": stack([t["content"] for t in singles]), "norm": stack([t["norm"] for t in singles])}
    if per_image_style:
        batched_targets["style"] = stack([t["style"] for t in singles])
    else:
        batched_targets["style"] = singles[0]["style"]
    starts = np.stack([noise_image(h, w, 4), noise_image(h, w, 5)])

    one = make_stepper(spec, opt_spec)
    stepper = batched(one, 0 if per_image_style else None)
    image = jnp.asarray(starts)
    state = init_opt_state(image, stepper, lr)
    batched_totals = []
    for _ in range(3):
        image, state, terms = run_steps(params, image, state, batched_targets, stepper=stepper)
        assert terms["total"].shape == (1, 2)
        batched_totals.append(np.asarray(terms["total"][0]))

    for i in range(2):
        single = jnp.asarray(starts[i])
        single_state = init_opt_state(single, one, lr)
        totals = []
        for _ in range(3):
            single, single_state, terms = run_steps(params, single, single_state, singles[i], stepper=one)
            totals.append(float(terms["total"][0]))
        np.testing.assert_allclose([t[i] for t in batched_totals], totals, rtol=1e-4)
        np.testing.assert_allclose(np.asarray(image[i]), np.asarray(single), rtol=1e-4, atol=1e-5)
    # and the images did move: the comparison is not between two copies of the start
    assert np.abs(np.asarray(image) - starts).max() > 1e-3


def test_optimize_batched_history_shapes(params, weights):
    h = w = 16
    config = StyleConfig(optimizer="adam", iterations=4, report_every=2, **SHALLOW)
    spec = LossSpec.from_config(config, weights.mean_bgr)
    singles = [make_targets(params, spec, noise_image(h, w, s), structured_style(h, w), (h, w)) for s in (6, 7)]
    targets = {
        "content": jax.tree.map(lambda *t: jnp.stack(t), *[t["content"] for t in singles]),
        "style": singles[0]["style"],
        "norm": jax.tree.map(lambda *t: jnp.stack(t), *[t["norm"] for t in singles]),
    }
    stepper = batched(make_stepper(spec, OptimizerSpec.from_config(config)))
    result = optimize(params, jnp.asarray(np.stack([noise_image(h, w, 8)] * 2)), targets, config, spec, stepper=stepper)
    assert result.image.shape == (2, h, w, 3)
    assert result.history["total"].shape == (4, 2)
    assert np.all(np.isfinite(np.asarray(result.image)))


# --------------------------------------------------------------------------- NaN / inf handling


def shallow_setup(params, weights, **changes):
    # raw units: the NaN cases below are sized in them
    config = StyleConfig(**{**SHALLOW, "iterations": 6, "report_every": 2, "loss_units": "raw", **changes})
    spec = LossSpec.from_config(config, weights.mean_bgr)
    targets = make_targets(params, spec, structured_content(16, 16), structured_style(16, 16), (16, 16))
    return config, spec, targets


def test_optimize_recovers_from_a_non_finite_loss(params, weights, monkeypatch):
    """A NaN in the second of four dispatches (reports, and dispatches, every 2 iterations): the
    driver steps back to the last good state (iteration 2), halves the learning rate, says so in its
    report, and finishes with a finite image and a complete, finite history."""
    config, spec, targets = shallow_setup(params, weights, optimizer="adam")
    real_run_steps = opt.run_steps
    calls = []

    def flaky_run_steps(*args, **kwargs):
        image, state, terms = real_run_steps(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            image = jnp.full_like(image, jnp.nan)
            terms = {**terms, "total": jnp.full_like(terms["total"], jnp.nan)}
        return image, state, terms

    monkeypatch.setattr(opt, "run_steps", flaky_run_steps)
    reports = []
    result = optimize(params, jnp.asarray(noise_image(16, 16)), targets, config, spec, callback=reports.append)

    assert len(calls) == 4
    assert [r.recovered for r in reports] == [False, True, False, False]
    assert [r.iteration for r in reports] == [2, 2, 4, 6]
    np.testing.assert_allclose([r.learning_rate for r in reports], [0.02, 0.01, 0.01, 0.01])
    assert np.all(np.isfinite(np.asarray(result.image)))
    assert all(len(v) == 6 and np.all(np.isfinite(v)) for v in result.history.values())
    assert np.all(np.isfinite(reports[1].image()))  # the snapshot offered after a recovery is the good one


def test_optimize_dispatches_the_steps_between_two_reports_at_once(params, weights, monkeypatch):
    """5 iterations reported every 2: dispatches of 2, 2 and the remaining 1 step, a report after each,
    and a history of every iteration, equal to single steps' (the scan changes nothing but speed)."""
    config, spec, targets = shallow_setup(params, weights, optimizer="lbfgs", iterations=5, report_every=2)
    real_run_steps, steps = opt.run_steps, []

    def counting_run_steps(*args, **kwargs):
        steps.append(kwargs["steps"])
        return real_run_steps(*args, **kwargs)

    monkeypatch.setattr(opt, "run_steps", counting_run_steps)
    reports = []
    start = jnp.asarray(noise_image(16, 16))
    result = optimize(params, jnp.copy(start), targets, config, spec, callback=reports.append)
    assert steps == [2, 2, 1]
    assert [r.iteration for r in reports] == [2, 4, 5]
    assert [len(r.losses["total"]) for r in reports] == [2, 2, 1]

    one_by_one = optimize(params, jnp.copy(start), targets, config.replace(report_every=1), spec)
    assert steps[3:] == [1] * 5
    np.testing.assert_allclose(result.history["total"], one_by_one.history["total"], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(result.image), np.asarray(one_by_one.image), atol=1e-5)


def test_optimize_gives_up_with_numerical_error(params, weights):
    """With a style weight of 1e38 the loss is inf at the start itself: no learning rate helps."""
    config, spec, targets = shallow_setup(params, weights, optimizer="adam", style_weight=1e38)
    reports = []
    with pytest.raises(NumericalError):
        optimize(params, jnp.asarray(structured_content(16, 16)), targets, config, spec, callback=reports.append)
    assert len(reports) == opt.MAX_RECOVERIES and all(r.recovered for r in reports)
    rates = [r.learning_rate for r in reports]
    np.testing.assert_allclose(rates, [0.02 / 2 ** (i + 1) for i in range(len(rates))])


@pytest.mark.parametrize(
    "changes",
    [
        {"optimizer": "adam", "learning_rate": 1e30, "clip": False},
        {"optimizer": "lbfgs", "learning_rate": 1e30},
        {"optimizer": "adam", "learning_rate": 1e4, "clip": False, "iterations": 1, "report_every": 1},
        # A valid config whose very first update is 0/0: zero gradient (content init, content loss
        # only) with Adam's epsilon 0. The loss itself stays finite.
        {
            "optimizer": "adam",
            "adam_eps": 0.0,
            "style_weight": 0.0,
            "tv_weight": 0.0,
            "iterations": 1,
            "report_every": 1,
        },
        {
            "optimizer": "adam",
            "adam_eps": 0.0,
            "style_weight": 0.0,
            "tv_weight": 0.0,
            "iterations": 3,
            "report_every": 3,
        },
    ],
    ids=["adam-lr1e30", "lbfgs-lr1e30", "adam-lr1e4-1-step", "adam-eps0-1-step", "adam-eps0-3-steps"],
)
def test_optimize_never_returns_a_non_finite_image(params, weights, changes):
    try:
        config, spec, targets = shallow_setup(params, weights, **changes)
    except UsageError:
        return  # refusing the settings up front (a config checks itself when built) is also an acceptable answer
    try:
        result = optimize(params, jnp.asarray(structured_content(16, 16)), targets, config, spec)
    except NumericalError:
        return
    image = np.asarray(result.image)
    assert np.isfinite(image).all(), f"optimize returned an image with {np.sum(~np.isfinite(image))} non-finite values"
    assert all(np.all(np.isfinite(v)) for v in result.history.values())


# --------------------------------------------------------------------------- ratio units, stopping rule


def test_ratios_are_measured_against_the_other_input(params, weights):
    """At the content image the style ratio is 1 (every layer's loss equals its norm) and the content
    ratio 0; at the style image resized to the output, the content ratio is 1; in ratio units the
    weighted terms are the weights times the ratios, and in raw units the plain loss sums."""
    shape = (16, 16)
    content, style = structured_content(*shape), structured_style(20, 20)
    config = StyleConfig(content_weight=2.0, style_weight=3.0, tv_weight=0.5, **SHALLOW)
    spec = LossSpec.from_config(config, weights.mean_bgr)
    targets = make_targets(params, spec, content, style, shape)
    at_content = objective.score(params, jnp.asarray(content), targets, spec)
    assert float(at_content["style_ratio"]) == pytest.approx(1.0, rel=1e-5)
    assert float(at_content["content_ratio"]) == pytest.approx(0.0, abs=1e-6)
    reference = jnp.asarray(resize_to(style, *shape))
    at_style = objective.score(params, reference, targets, spec)
    assert float(at_style["content_ratio"]) == pytest.approx(1.0, rel=1e-5)
    assert float(at_style["tv_ratio"]) == pytest.approx(1.0, rel=1e-5)
    for name, weight in (("content", 2.0), ("style", 3.0), ("tv", 0.5)):
        assert float(at_style[name]) == pytest.approx(weight * float(at_style[f"{name}_ratio"]), rel=1e-6)
    assert float(at_style["total"]) == pytest.approx(sum(float(at_style[k]) for k in ("content", "style", "tv")))

    raw_spec = LossSpec.from_config(config.replace(loss_units="raw"), weights.mean_bgr)
    raw = objective.score(params, reference, targets, raw_spec)
    layers = objective.layer_losses(params, reference, targets, raw_spec)
    assert float(raw["style"]) == pytest.approx(3.0 * sum(float(v) for v in layers["style"].values()), rel=1e-5)
    assert float(raw["content_ratio"]) == pytest.approx(float(at_style["content_ratio"]), rel=1e-6)


def test_style_ratio_is_the_layer_weighted_mean_of_layer_ratios(params, weights):
    shape = (16, 16)
    config = StyleConfig(style_layer_weights=(1.0, 3.0), **SHALLOW)
    spec = LossSpec.from_config(config, weights.mean_bgr)
    targets = make_targets(params, spec, structured_content(*shape), structured_style(*shape), shape)
    image = jnp.asarray(noise_image(*shape))
    layers = objective.layer_losses(params, image, targets, spec)
    per_layer = [float(layers["style"][n]) / float(targets["norm"]["style"][n]) for n in spec.style_layers]
    expected = (1.0 * per_layer[0] + 3.0 * per_layer[1]) / 4.0
    assert float(objective.score(params, image, targets, spec)["style_ratio"]) == pytest.approx(expected, rel=1e-5)


def test_stopping_rule():
    config = StyleConfig(stop_tolerance=0.01, stop_window=3)
    improving = [10.0, 9.0, 8.0, 7.0, 6.0]
    flat = [10.0, 5.0, 4.99, 4.98, 4.97]
    assert not opt.converged(improving, config)
    assert opt.converged(flat, config)  # 5.0 -> 4.97 over the last 3: 0.6 %
    assert not opt.converged(flat[:3], config)  # not yet a window to compare with
    assert not opt.converged(flat, config.replace(stop_tolerance=0.0))  # switched off
    # non-monotone: a spike does not count as progress, the best so far does
    assert opt.converged([10.0, 5.0, 9.0, 5.2, 4.99], config)
    # a batch stops once every image has converged, not on their sum
    batch = [np.array([5.0, 100.0]), *[np.array([5.0 - 0.1 * k, 100.0]) for k in range(1, 4)]]
    assert not opt.converged(batch, config)  # the first image still improves 6 %, the sum only 0.3 %
    assert opt.converged([np.array([a, b]) for a, b in zip(flat, flat)], config)


def test_optimize_stops_early_when_converged_and_says_so(params, weights):
    config, spec, targets = shallow_setup(params, weights, iterations=40, stop_tolerance=0.2, stop_window=4)
    reports = []
    result = optimize(params, jnp.asarray(noise_image(16, 16)), targets, config, spec, callback=reports.append)
    assert len(result.history["total"]) < 40 and reports[-1].converged
    assert not any(report.converged for report in reports[:-1])
    everything = optimize(params, jnp.asarray(noise_image(16, 16)), targets, config.replace(stop_tolerance=0.0), spec)
    assert len(everything.history["total"]) == 40


@pytest.mark.parametrize("name", ["neural-style", "tf-tutorial"])
def test_presets_weigh_the_raw_losses_and_run_every_iteration(params, weights, name):
    """The peers' presets keep their published settings: raw loss units (their weights times the
    plain sums of `jaxstyle.losses`), no stopping rule, their own start."""
    config = preset(name)
    assert (
        config.loss.loss_units == "raw"
        and config.optimize.stop_tolerance == 0.0
        and config.optimize.init == PRESETS[name]["init"]
    )
    spec = LossSpec.from_config(config, weights.mean_bgr)
    shape = (32, 32)
    targets = make_targets(params, spec, structured_content(*shape), structured_style(*shape), shape)
    image = jnp.asarray(noise_image(*shape))
    terms, layers = objective.score(params, image, targets, spec), objective.layer_losses(params, image, targets, spec)
    style = sum(w * float(layers["style"][n]) for n, w in zip(spec.style_layers, spec.style_layer_weights))
    assert float(terms["style"]) == pytest.approx(config.loss.resolved_style_weight * style, rel=1e-5)
    content = sum(float(v) for v in layers["content"].values())
    assert float(terms["content"]) == pytest.approx(config.loss.content_weight * content, rel=1e-5)
    assert float(terms["tv"]) == pytest.approx(config.loss.tv_weight * float(layers["tv"]), rel=1e-5)
