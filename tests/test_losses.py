"""Loss terms against float64 NumPy references, hand-worked values and finite differences.

Also checks numerically the conversion table in the docstring of jaxstyle/losses.py and the
tf-tutorial / neural-style presets that are derived from it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle import losses
from jaxstyle.config_sources import PRESETS

# --------------------------------------------------------------------------- NumPy references


def np_gram(features):
    h, w, c = features.shape
    flat = features.reshape(h * w, c).astype(np.float64)
    return flat.T @ flat / (h * w * c)


def np_content(features, target):
    return np.mean((np.float64(features) - target) ** 2)


def np_style(features, target_gram):
    return np.mean((np_gram(features) - target_gram) ** 2)


def np_tv(image, kind):
    image = np.asarray(image, np.float64)
    total = 0.0
    for y in range(image.shape[0]):
        for x in range(image.shape[1]):
            for c in range(image.shape[2]):
                for dy, dx in ((1, 0), (0, 1)):
                    if y + dy < image.shape[0] and x + dx < image.shape[1]:
                        d = image[y + dy, x + dx, c] - image[y, x, c]
                        total += abs(d) if kind == "l1" else d * d
    return total


def np_sorted_projections(features, directions, length):
    h, w, c = features.shape
    projected = np.sort(features.reshape(h * w, c).astype(np.float64) @ directions, axis=0)
    source = (np.arange(h * w) + 0.5) / (h * w)
    wanted = (np.arange(length) + 0.5) / length
    return np.stack([np.interp(wanted, source, projected[:, k]) for k in range(projected.shape[1])], axis=1)


def np_sliced_wasserstein(features, directions, target_sorted):
    h, w, c = features.shape
    projected = np.sort(features.reshape(h * w, c).astype(np.float64) @ directions, axis=0)
    return np.mean((projected - target_sorted) ** 2) / c


def rand(rng, *shape):
    return rng.normal(size=shape).astype(np.float32)


# --------------------------------------------------------------------------- hand-worked values


def test_gram_hand_computed_2x2x2():
    # positions (0,0): [1, 2], (0,1): [3, 0], (1,0): [0, 1], (1,1): [2, 2]
    features = jnp.array([[[1.0, 2.0], [3.0, 0.0]], [[0.0, 1.0], [2.0, 2.0]]])
    # F^T F = [[1+9+0+4, 2+0+0+4], [6, 4+0+1+4]] = [[14, 6], [6, 9]], divided by H W C = 8.
    np.testing.assert_allclose(np.asarray(losses.gram_matrix(features)), [[1.75, 0.75], [0.75, 1.125]], rtol=1e-6)


def test_tv_hand_computed():
    image = np.zeros((2, 3, 3), np.float32)
    image[..., 0] = [[0.0, 1.0, 3.0], [2.0, 2.0, 2.0]]
    # vertical diffs [2, 1, -1]; horizontal [1, 2] and [0, 0]
    assert float(losses.tv_loss(jnp.asarray(image), "l1")) == pytest.approx(4.0 + 3.0)
    assert float(losses.tv_loss(jnp.asarray(image), "l2")) == pytest.approx(6.0 + 5.0)
    assert float(losses.tv_loss(jnp.asarray(image))) == pytest.approx(11.0)  # default is l2


def test_content_and_style_hand_computed():
    features = jnp.array([[[1.0, 2.0], [3.0, 0.0]], [[0.0, 1.0], [2.0, 2.0]]])
    assert float(losses.content_loss(features, jnp.zeros_like(features))) == pytest.approx(23.0 / 8)
    # gram - 0 = [[1.75, .75], [.75, 1.125]]: mean of squares = (3.0625 + 2 * .5625 + 1.265625) / 4
    assert float(losses.style_loss(features, jnp.zeros((2, 2)))) == pytest.approx(5.453125 / 4)


def test_sorted_projections_hand_computed():
    features = jnp.array([[[3.0], [1.0]], [[2.0], [0.0]]])  # sorted: 0 1 2 3 at quantiles 1/8 3/8 5/8 7/8
    directions = jnp.ones((1, 1))
    np.testing.assert_allclose(np.asarray(losses.sorted_projections(features, directions, 4))[:, 0], [0, 1, 2, 3])
    np.testing.assert_allclose(np.asarray(losses.sorted_projections(features, directions, 2))[:, 0], [0.5, 2.5])
    np.testing.assert_allclose(np.asarray(losses.sorted_projections(features, directions, 1))[:, 0], [1.5])
    np.testing.assert_allclose(
        np.asarray(losses.sorted_projections(features, directions, 8))[:, 0],
        [0.0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0],  # ends are held flat, as np.interp does
    )


def test_sliced_wasserstein_hand_computed():
    features = jnp.array([[[3.0], [1.0]], [[2.0], [0.0]]])
    # projections on direction 2: sorted 0 2 4 6; against 1 1 1 1: diffs -1 1 3 5 -> mean square 9; C = 1
    got = losses.sliced_wasserstein_loss(features, jnp.full((1, 1), 2.0), jnp.ones((4, 1)))
    assert float(got) == pytest.approx(9.0)


# --------------------------------------------------------------------------- NumPy references


@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 5, 4), (4, 4, 7)])
def test_gram_content_style_match_numpy(shape):
    rng = np.random.default_rng(sum(shape))
    f, p, s = rand(rng, *shape), rand(rng, *shape), rand(rng, 2, 3, shape[-1])
    gram = np.asarray(losses.gram_matrix(jnp.asarray(f)))
    assert gram.shape == (shape[-1], shape[-1])
    np.testing.assert_allclose(gram, np_gram(f), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(gram, gram.T, rtol=0, atol=1e-7)
    assert float(losses.content_loss(jnp.asarray(f), jnp.asarray(p))) == pytest.approx(np_content(f, p), rel=1e-5)
    target = np_gram(s)
    assert float(losses.style_loss(jnp.asarray(f), jnp.asarray(target, jnp.float32))) == pytest.approx(
        np_style(f, target), rel=1e-5
    )


def test_style_loss_is_zero_at_own_gram_and_invariant_to_position_shuffles():
    rng = np.random.default_rng(1)
    f = rand(rng, 4, 5, 6)
    target = losses.gram_matrix(jnp.asarray(f))
    assert float(losses.style_loss(jnp.asarray(f), target)) == pytest.approx(0.0, abs=1e-12)
    shuffled = rng.permutation(f.reshape(20, 6)).reshape(5, 4, 6)  # other shape, same positions
    np.testing.assert_allclose(
        np.asarray(losses.gram_matrix(jnp.asarray(shuffled))), np.asarray(target), rtol=1e-5, atol=1e-7
    )


@pytest.mark.parametrize("kind", ["l1", "l2"])
@pytest.mark.parametrize("shape", [(1, 1, 3), (2, 2, 3), (5, 7, 3), (6, 1, 3)])
def test_tv_matches_numpy(kind, shape):
    image = np.random.default_rng(sum(shape)).uniform(0.0, 1.0, shape).astype(np.float32)
    assert float(losses.tv_loss(jnp.asarray(image), kind)) == pytest.approx(np_tv(image, kind), rel=1e-5, abs=1e-7)


def test_tv_is_a_sum_not_a_mean():
    """Doubling the image size (by tiling) roughly doubles TV; a constant image has none."""
    assert float(losses.tv_loss(jnp.full((8, 8, 3), 0.3), "l1")) == 0.0
    stripes = np.tile(np.array([0.0, 1.0], np.float32), (4, 4))[..., None].repeat(3, axis=-1)  # (4, 8, 3)
    assert float(losses.tv_loss(jnp.asarray(stripes), "l1")) == pytest.approx(4 * 7 * 3)
    assert float(losses.tv_loss(jnp.asarray(np.concatenate([stripes, stripes])), "l1")) == pytest.approx(8 * 7 * 3)


@pytest.mark.parametrize(
    ("shape", "k", "length"), [((3, 4, 5), 5, 12), ((3, 4, 5), 3, 7), ((2, 3, 4), 4, 20), ((4, 4, 2), 2, 1)]
)
def test_sorted_projections_match_numpy(shape, k, length):
    rng = np.random.default_rng(sum(shape) + k + length)
    f, d = rand(rng, *shape), rand(rng, shape[-1], k)
    got = np.asarray(losses.sorted_projections(jnp.asarray(f), jnp.asarray(d), length))
    assert got.shape == (length, k)
    np.testing.assert_allclose(got, np_sorted_projections(f, d.astype(np.float64), length), rtol=1e-5, atol=1e-5)
    assert np.all(np.diff(got, axis=0) >= -1e-6)  # each column is a quantile function


def test_sliced_wasserstein_matches_numpy_and_vanishes_on_itself():
    rng = np.random.default_rng(2)
    f, s, d = rand(rng, 3, 4, 5), rand(rng, 6, 5, 5), rand(rng, 5, 5)
    target = np.asarray(losses.sorted_projections(jnp.asarray(s), jnp.asarray(d), 12))
    got = float(losses.sliced_wasserstein_loss(jnp.asarray(f), jnp.asarray(d), jnp.asarray(target)))
    assert got == pytest.approx(np_sliced_wasserstein(f, d.astype(np.float64), target), rel=1e-5)
    own = losses.sorted_projections(jnp.asarray(f), jnp.asarray(d), 12)
    assert float(losses.sliced_wasserstein_loss(jnp.asarray(f), jnp.asarray(d), own)) == pytest.approx(0.0, abs=1e-10)
    shuffled = rng.permutation(f.reshape(12, 5)).reshape(4, 3, 5)
    assert float(
        losses.sliced_wasserstein_loss(jnp.asarray(shuffled), jnp.asarray(d), jnp.asarray(target))
    ) == pytest.approx(got, rel=1e-6)


# --------------------------------------------------------------------------- gradients (float64)


def central_difference_check(fun, x, rng, count=8, h=1e-6, rtol=1e-6):
    """Compare jax.grad(fun) with central differences at ``count`` random coordinates of ``x``."""
    grad = np.asarray(jax.grad(fun)(x))
    assert grad.dtype == np.float64
    scale = np.abs(grad).max()
    for _ in range(count):
        index = tuple(int(rng.integers(0, s)) for s in x.shape)
        bump = np.zeros(x.shape)
        bump[index] = h
        numeric = (float(fun(x + bump)) - float(fun(x - bump))) / (2 * h)
        assert grad[index] == pytest.approx(numeric, rel=rtol, abs=rtol * scale)


def test_gradients_match_finite_differences(x64):
    rng = np.random.default_rng(3)
    f = jnp.asarray(rng.normal(size=(3, 4, 5)))
    p = jnp.asarray(rng.normal(size=(3, 4, 5)))
    a = jnp.asarray(np_gram(rng.normal(size=(2, 2, 5))))
    probe = jnp.asarray(rng.normal(size=(5, 5)))
    image = jnp.asarray(rng.uniform(0.0, 1.0, (4, 5, 3)))
    d = jnp.asarray(rng.normal(size=(5, 4)))
    target = jnp.asarray(np_sorted_projections(rng.normal(size=(2, 3, 5)), np.asarray(d), 12))
    proj_probe = jnp.asarray(rng.normal(size=(9, 4)))
    assert losses.gram_matrix(f).dtype == jnp.float64
    checks = {
        "gram": (lambda x: jnp.sum(probe * losses.gram_matrix(x)), f),
        "content": (lambda x: losses.content_loss(x, p), f),
        "content_target": (lambda t: losses.content_loss(f, t), p),
        "style": (lambda x: losses.style_loss(x, a), f),
        "tv_l1": (lambda x: losses.tv_loss(x, "l1"), image),
        "tv_l2": (lambda x: losses.tv_loss(x, "l2"), image),
        "sorted_projections": (lambda x: jnp.sum(proj_probe * losses.sorted_projections(x, d, 9)), f),
        "sliced_wasserstein": (lambda x: losses.sliced_wasserstein_loss(x, d, target), f),
    }
    for name, (fun, x) in checks.items():
        try:
            central_difference_check(jax.jit(fun), x, rng)
        except AssertionError as error:
            raise AssertionError(f"{name}: {error}") from None


def test_closed_form_gradients(x64):
    """d content / dF = 2 (F - P) / (HWC); d gram-style / dF = 4 F (G - A) / (HWC) / C^2 (A symmetric)."""
    rng = np.random.default_rng(4)
    f, p = rng.normal(size=(3, 4, 5)), rng.normal(size=(3, 4, 5))
    a = np_gram(rng.normal(size=(2, 2, 5)))
    n = f.size
    np.testing.assert_allclose(
        np.asarray(jax.grad(losses.content_loss)(jnp.asarray(f), jnp.asarray(p))), 2 * (f - p) / n, rtol=1e-12
    )
    flat = f.reshape(12, 5)
    expected = (4 * flat @ (np_gram(f) - a) / n / 25).reshape(f.shape)
    np.testing.assert_allclose(
        np.asarray(jax.grad(losses.style_loss)(jnp.asarray(f), jnp.asarray(a))), expected, rtol=1e-10
    )


# --------------------------------------------------------------------------- conversion table


@pytest.mark.parametrize(("h", "w", "c"), [(3, 4, 5), (2, 2, 64), (5, 3, 1)])
def test_style_loss_conversion_table(h, w, c):
    rng = np.random.default_rng(h * w * c)
    f, s = rng.normal(size=(h, w, c)), rng.normal(size=(6, 2, c))
    m = h * w
    ours = float(losses.style_loss(jnp.asarray(f, jnp.float32), jnp.asarray(np_gram(s), jnp.float32)))
    flat, style_flat = f.reshape(m, c), s.reshape(-1, c)
    # TensorFlow tutorial: gram = einsum('bijc,bijd->bcd') / num_locations, loss = reduce_mean((G - A)^2).
    tf_loss = np.mean((flat.T @ flat / m - style_flat.T @ style_flat / len(style_flat)) ** 2)
    # Gatys et al. 2015, eq. 4: E_l = 1 / (4 N^2 M^2) sum (G - A)^2 with raw Grams; the target's Gram is
    # rescaled to this layer's M so that it stays comparable (it is the target's second moment x M).
    raw_target = style_flat.T @ style_flat / len(style_flat) * m
    gatys = np.sum((flat.T @ flat - raw_target) ** 2) / (4 * c**2 * m**2)
    raw = np.mean((flat.T @ flat - raw_target) ** 2)
    assert tf_loss == pytest.approx(c**2 * ours, rel=1e-4)
    assert gatys == pytest.approx(c**2 / 4 * ours, rel=1e-4)
    assert raw == pytest.approx(c**2 * m**2 * ours, rel=1e-4)


def test_content_loss_conversion_to_gatys():
    rng = np.random.default_rng(5)
    f, p = rng.normal(size=(3, 4, 6)), rng.normal(size=(3, 4, 6))
    ours = float(losses.content_loss(jnp.asarray(f, jnp.float32), jnp.asarray(p, jnp.float32)))
    gatys = 0.5 * np.sum((f - p) ** 2)  # Gatys et al. 2015, eq. 1
    assert gatys == pytest.approx(ours * f.size / 2, rel=1e-5)  # M C / 2


def test_tv_conversion_to_tf_and_jcjohnson():
    image = np.random.default_rng(6).uniform(0.0, 1.0, (5, 6, 3))
    ours_l1 = float(losses.tv_loss(jnp.asarray(image, jnp.float32), "l1"))
    ours_l2 = float(losses.tv_loss(jnp.asarray(image, jnp.float32), "l2"))
    # tf.image.total_variation: sum |x[1:, :] - x[:-1, :]| + sum |x[:, 1:] - x[:, :-1]|
    tf_tv = np.abs(np.diff(image, axis=0)).sum() + np.abs(np.diff(image, axis=1)).sum()
    assert tf_tv == pytest.approx(ours_l1, rel=1e-5)
    # half the sum of squares on 0..255 pixels
    pixels = image * 255.0
    half_squares = 0.5 * ((np.diff(pixels, axis=0) ** 2).sum() + (np.diff(pixels, axis=1) ** 2).sum())
    assert half_squares == pytest.approx(255.0**2 / 2 * ours_l2, rel=1e-5)
    # so the neural-style preset's TV weight reproduces its 1e-3 strength
    assert PRESETS["neural-style"]["tv_weight"] * ours_l2 == pytest.approx(1e-3 * half_squares, rel=1e-5)


def test_tf_tutorial_preset_reproduces_the_tutorial_style_loss():
    """style_weight=1e-2 / num_layers x sum of TF-normalised layer losses == ours with the preset's weights."""
    rng = np.random.default_rng(7)
    preset = PRESETS["tf-tutorial"]
    ours, tf_total = 0.0, 0.0
    channels = (64, 128, 256, 512, 512)
    assert len(preset["style_layers"]) == len(channels) == len(preset["style_layer_weights"])
    for c, weight in zip(channels, preset["style_layer_weights"]):
        f, s = rng.normal(size=(2, 3, c)), rng.normal(size=(3, 3, c))
        ours += weight * float(losses.style_loss(jnp.asarray(f, jnp.float32), jnp.asarray(np_gram(s), jnp.float32)))
        gram_tf = lambda x, c=c: x.reshape(-1, c).T @ x.reshape(-1, c) / (x.shape[0] * x.shape[1])
        tf_total += np.mean((gram_tf(f) - gram_tf(s)) ** 2)
    tf_total *= 1e-2 / len(channels)
    assert preset["style_weight"] * ours == pytest.approx(tf_total, rel=1e-4)


def test_temporal_loss_hand_computed_and_against_numpy():
    image = jnp.zeros((1, 2, 3)).at[0, 1].set(1.0)
    previous = jnp.zeros((1, 2, 3))
    mask = jnp.array([[[1.0], [0.5]]])
    # Ruder et al.'s 1/D sum of c (x - w)^2 over D = 1 * 2 * 3 values: 0.5 * 3 / 6.
    assert float(losses.temporal_loss(image, previous, mask)) == pytest.approx(0.25)
    rng = np.random.default_rng(5)
    x, w = rng.random((5, 7, 3)), rng.random((5, 7, 3))
    c = (rng.random((5, 7, 1)) > 0.3).astype(float)
    expected = np.sum(c * (x - w) ** 2) / x.size
    got = losses.temporal_loss(jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.float32), jnp.asarray(c, jnp.float32))
    assert float(got) == pytest.approx(expected, rel=1e-5)
    assert float(losses.temporal_loss(jnp.asarray(x), jnp.asarray(x) + 0.3, jnp.zeros((5, 7, 1)))) == 0.0


# --------------------------------------------------------------------------- guided Gram (spatial control)


def np_guided_gram(features, guide):
    """Gatys et al. 2017's guided Gram, one region at a time, normalised by sum(T^2) C."""
    h, w, c = features.shape
    flat = features.reshape(h * w, c).astype(np.float64)
    out = []
    for region in np.moveaxis(guide.reshape(h * w, -1).astype(np.float64), 1, 0):
        weighted = flat * region[:, None]
        total = np.sum(region**2)
        out.append(weighted.T @ weighted / (total * c) if total > 0 else np.zeros((c, c)))
    return np.stack(out)


def test_guided_gram_matches_numpy_and_a_guide_of_ones_is_the_gram():
    rng = np.random.default_rng(11)
    features = rand(rng, 5, 7, 6)
    guide = rng.uniform(size=(5, 7, 3)).astype(np.float32)
    guide[..., 2] = 0.0  # an empty region: 0, not 0 / 0
    np.testing.assert_allclose(
        losses.guided_gram(features, guide), np_guided_gram(features, guide), rtol=1e-5, atol=1e-7
    )
    assert not np.any(np.asarray(losses.guided_gram(features, guide))[2])
    ones = np.ones((5, 7, 1), np.float32)
    np.testing.assert_allclose(losses.guided_gram(features, ones)[0], losses.gram_matrix(features), rtol=1e-6)
    # A region's statistics do not depend on its area: the same texture tiled twice as wide.
    wide, wide_guide = np.concatenate([features, features], 1), np.concatenate([guide, guide], 1)
    np.testing.assert_allclose(losses.guided_gram(wide, wide_guide), losses.guided_gram(features, guide), rtol=1e-5)
    a = np_guided_gram(rand(rng, 4, 4, 6), guide[:4, :4])
    weights = np.asarray([1.0, 0.5, 0.0], np.float32)
    expected = sum(weights[r] * np.mean((np_guided_gram(features, guide)[r] - a[r]) ** 2) for r in range(3))
    got = losses.guided_style_loss(losses.guided_gram(features, guide), jnp.asarray(a, jnp.float32), weights)
    assert float(got) == pytest.approx(expected, rel=1e-4)


def test_guided_gram_gradients_match_finite_differences(x64):
    """The custom VJP of the guided sums, for the features and (unused in a run, but exact) the guide."""
    rng = np.random.default_rng(12)
    f = jnp.asarray(rng.normal(size=(3, 4, 5)))
    guide = jnp.asarray(rng.uniform(size=(3, 4, 2)))
    probe = jnp.asarray(rng.normal(size=(2, 5, 5)))
    for name, (fun, x) in {
        "features": (lambda x: jnp.sum(probe * losses.guided_gram(x, guide)), f),
        "guide": (lambda t: jnp.sum(probe * losses.guided_gram_sums(f, t)), guide),
    }.items():
        try:
            central_difference_check(jax.jit(fun), x, rng)
        except AssertionError as error:
            raise AssertionError(f"{name}: {error}") from None
