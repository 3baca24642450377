"""Tests for jaxstyle.color_knn: known answers, a brute-force NumPy KNN, edge cases, errors."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.color import lab2rgb, rgb2lab
from sklearn.base import clone
from sklearn.neighbors import KNeighborsRegressor

from jaxstyle.color_knn import (
    KNNColorTransfer,
    extract_patches,
    idw_mean,
    knn_color_transfer,
    lab_to_rgb,
    pad_L,
)
from jaxstyle.errors import ImageError, UsageError

# ---------------------------------------------------------------------------------------
# A style whose colour is a known function of its luminance
# ---------------------------------------------------------------------------------------


def f_a(L):
    """Known a(L): far from 0 everywhere in L = 20..80, so a grey pixel cannot pass."""
    return 25.0 + 0.3 * (L - 50.0)


def g_b(L):
    """Known b(L): negative everywhere in L = 20..80."""
    return -20.0 + 0.4 * (L - 50.0)


def lab_image(L, a, b):
    """sRGB float image for the Lab planes, checked to be in gamut (round trip exact)."""
    lab = np.stack([L, a, b], axis=-1)
    rgb = lab2rgb(lab)
    np.testing.assert_allclose(rgb2lab(rgb), lab, atol=1e-6)  # guard: the test needs gamut
    return rgb


def style_with_known_colour(h=64, w=64):
    """Textured L in about 20..80 (many gradient directions), a = f_a(L), b = g_b(L)."""
    y, x = np.mgrid[0:h, 0:w].astype(float)
    L = 50 + 14 * np.sin(x / 4.0) + 10 * np.sin(y / 5.0 + x / 9.0) + 6 * np.cos((x - y) / 3.0)
    return lab_image(L, f_a(L), g_b(L))


def content_L(h=40, w=48):
    """A different layout: rings around an off-centre point, L in about 25..75."""
    y, x = np.mgrid[0:h, 0:w].astype(float)
    r = np.hypot(y - 0.3 * h, x - 0.6 * w)
    return 50 + 25 * np.cos(r / 5.0)


def gray_from_L(L):
    """A grey sRGB (H, W, 3) image whose Lab lightness is L."""
    return lab_image(L, np.zeros_like(L), np.zeros_like(L))


@pytest.fixture(scope="module")
def known_case():
    style = style_with_known_colour()
    L = content_L()
    content = gray_from_L(L)
    out = KNNColorTransfer().fit(style).transform(content)
    return L, out, rgb2lab(out.astype(np.float64))


def test_known_function_of_luminance(known_case):
    L, out, lab = known_case
    assert out.shape == (*L.shape, 3) and out.dtype == np.float32
    # The content keeps its own lightness.
    np.testing.assert_allclose(lab[..., 0], L, atol=1e-3)
    err_a = np.abs(lab[..., 1] - f_a(L))
    err_b = np.abs(lab[..., 2] - g_b(L))
    # Predicting the style's mean colour instead would miss by several units on average.
    assert err_a.mean() < 0.3 and err_b.mean() < 0.4
    assert err_a.max() < 1.5 and err_b.max() < 2.0


def test_borders_are_predicted_like_the_interior(known_case):
    L, _, lab = known_case
    border = np.zeros(L.shape, bool)
    border[[0, -1], :] = border[:, [0, -1]] = True
    # No grey frame: a is at least 16 for every L in the content's range.
    assert np.abs(lab[..., 1][border]).min() > 10
    assert np.abs(lab[..., 1] - f_a(L))[border].max() < 1.5
    assert np.abs(lab[..., 2] - g_b(L))[border].max() < 2.0


# ---------------------------------------------------------------------------------------
# Several styles, sizes, channels
# ---------------------------------------------------------------------------------------

DARK_AB, BRIGHT_AB = (30.0, 20.0), (-20.0, -30.0)


def flat_colour_style(h, w, lo, hi, ab, seed):
    """Random L in [lo, hi] with one constant (a, b)."""
    L = np.random.default_rng(seed).uniform(lo, hi, (h, w))
    return lab_image(L, np.full_like(L, ab[0]), np.full_like(L, ab[1]))


def test_styles_of_different_sizes_are_pooled():
    dark = flat_colour_style(23, 31, 25, 40, DARK_AB, seed=1)
    bright = flat_colour_style(40, 17, 62, 78, BRIGHT_AB, seed=2)
    model = KNNColorTransfer(max_train=None).fit([dark, bright])
    assert model.n_train_ == model.n_style_pixels_ == 23 * 31 + 40 * 17
    L = np.where(np.arange(30)[None, :] < 15, 32.0, 70.0) * np.ones((20, 1))
    L = L + np.random.default_rng(3).uniform(-2, 2, L.shape)
    ab = model.predict_ab(L)
    np.testing.assert_allclose(ab[:, :13], np.broadcast_to(DARK_AB, (20, 13, 2)), atol=1e-4)
    np.testing.assert_allclose(ab[:, 17:], np.broadcast_to(BRIGHT_AB, (20, 13, 2)), atol=1e-4)


def test_sampling_is_uniform_over_the_pooled_pixels_and_reproducible():
    dark = flat_colour_style(60, 50, 25, 40, DARK_AB, seed=1)  # 3000 px
    bright = flat_colour_style(30, 33, 62, 78, BRIGHT_AB, seed=2)  # 990 px
    fits = [KNNColorTransfer(max_train=1000, random_state=s).fit([dark, bright]) for s in (7, 7, 8)]
    assert all(m.n_train_ == 1000 and m.n_style_pixels_ == 3990 for m in fits)
    from_dark = np.isclose(fits[0].ab_[:, 0], DARK_AB[0], atol=1e-4).mean()
    assert abs(from_dark - 3000 / 3990) < 0.05  # hypergeometric sd is about 0.012
    np.testing.assert_array_equal(fits[0].tree_.data, fits[1].tree_.data)
    assert not np.array_equal(fits[0].tree_.data, fits[2].tree_.data)
    content = np.random.default_rng(4).uniform(size=(9, 11, 3))
    out = [m.transform(content) for m in fits]
    np.testing.assert_array_equal(out[0], out[1])
    assert not np.array_equal(out[0], out[2])


def test_grayscale_content_is_coloured():
    L = content_L()
    gray = gray_from_L(L)[..., 0]  # (H, W); lab2rgb gives R = G = B up to rounding
    model = KNNColorTransfer().fit(style_with_known_colour())
    out = model.transform(gray)
    assert out.shape == (*L.shape, 3)
    np.testing.assert_array_equal(out, model.transform(np.repeat(gray[..., None], 3, axis=2)))
    lab = rgb2lab(out.astype(np.float64))
    np.testing.assert_allclose(lab[..., 0], L, atol=1e-3)
    assert np.abs(lab[..., 1] - f_a(L)).mean() < 0.3 and np.abs(lab[..., 2] - g_b(L)).mean() < 0.4


def test_grayscale_style_gives_grey_output():
    style = np.random.default_rng(0).uniform(size=(20, 20))
    content = np.random.default_rng(1).uniform(size=(10, 12, 3))
    out = knn_color_transfer(content, style)
    np.testing.assert_allclose(rgb2lab(out.astype(np.float64))[..., 1:], 0.0, atol=1e-3)


def test_rgba_content_passes_alpha_through_unchanged():
    rng = np.random.default_rng(0)
    style = rng.uniform(size=(20, 25, 3))
    model = KNNColorTransfer().fit(style)
    rgba = rng.uniform(size=(9, 13, 4)).astype(np.float32)
    out = model.transform(rgba)
    assert out.shape == (9, 13, 4) and out.dtype == np.float32
    np.testing.assert_array_equal(out[..., 3].view(np.uint32), rgba[..., 3].view(np.uint32))
    np.testing.assert_array_equal(out[..., :3], model.transform(rgba[..., :3]))

    rgba8 = rng.integers(0, 256, size=(9, 13, 4), dtype=np.uint8)
    out8 = model.transform(rgba8)
    np.testing.assert_array_equal(out8[..., 3], rgba8[..., 3].astype(np.float32) / np.float32(255))
    np.testing.assert_allclose(out8[..., :3], model.transform(rgba8[..., :3] / 255.0), atol=1e-6)


def test_transparent_style_pixels_are_not_learned():
    rng = np.random.default_rng(0)
    rgba = np.ones((10, 10, 4))
    rgba[..., :3] = rng.uniform(size=(10, 10, 3))
    rgba[:, :4, 3] = 0.0
    model = KNNColorTransfer(max_train=None).fit(rgba)
    assert model.n_train_ == 60
    expected_ab = rgb2lab(rgba[:, 4:, :3])[..., 1:].reshape(-1, 2)
    np.testing.assert_allclose(np.sort(model.ab_, axis=0), np.sort(expected_ab, axis=0))


@pytest.mark.parametrize("shape", [(1, 1), (1, 2), (2, 1), (2, 3), (5, 1), (3, 40)])
@pytest.mark.parametrize("patch_size", [3, 5])
def test_tiny_images_get_every_pixel(shape, patch_size):
    rng = np.random.default_rng(0)
    # A style needs at least n_neighbors = 4 pixels.
    style_shape = shape if shape[0] * shape[1] >= 4 else (6, 6)
    style = rng.uniform(size=(*style_shape, 3))
    out = knn_color_transfer(rng.uniform(size=(*shape, 3)), style, patch_size=patch_size)
    assert out.shape == (*shape, 3)
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    channels=st.sampled_from([None, 3, 4]),
    seed=st.integers(0, 2**16),
)
def test_any_small_content_gives_valid_output(h, w, channels, seed):
    rng = np.random.default_rng(seed)
    content = rng.uniform(size=(h, w) if channels is None else (h, w, channels))
    out = knn_color_transfer(content, [rng.uniform(size=(7, 5, 3)), rng.uniform(size=(4, 9))])
    assert out.shape == (h, w, 4 if channels == 4 else 3) and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


# ---------------------------------------------------------------------------------------
# Against an independent brute-force KNN
# ---------------------------------------------------------------------------------------


def loop_patches(L, p):
    """Patches by explicit loops and explicit reflect indexing (no np.pad, no views)."""
    h, w = L.shape
    r = p // 2

    def reflect(i, n):
        return -i if i < 0 else (2 * (n - 1) - i if i >= n else i)

    offsets = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)]
    return np.array(
        [[L[reflect(y + dy, h), reflect(x + dx, w)] for dy, dx in offsets] for y in range(h) for x in range(w)]
    )


def brute_force_ab(train_x, train_ab, query_x, k):
    d = np.sqrt(((query_x[:, None, :] - train_x[None, :, :]) ** 2).sum(-1))
    nn = np.argsort(d, axis=1)[:, :k]
    dk = np.take_along_axis(d, nn, axis=1)
    assert dk.min() > 1e-9  # continuous random images: no exact matches, no ties
    w = 1.0 / dk
    return (train_ab[nn] * w[..., None]).sum(1) / w.sum(1, keepdims=True)


@pytest.mark.parametrize(("k", "patch_size", "chunk_rows"), [(4, 3, 65536), (4, 3, 10), (1, 3, 7), (7, 5, 13)])
def test_matches_numpy_brute_force(k, patch_size, chunk_rows):
    rng = np.random.default_rng(42)
    style, content = rng.uniform(size=(9, 10, 3)), rng.uniform(size=(8, 7, 3))
    style_lab = rgb2lab(style)
    content_L_ = rgb2lab(content)[..., 0]
    expected = brute_force_ab(
        loop_patches(style_lab[..., 0], patch_size),
        style_lab[..., 1:].reshape(-1, 2),
        loop_patches(content_L_, patch_size),
        k,
    ).reshape(8, 7, 2)

    model = KNNColorTransfer(n_neighbors=k, patch_size=patch_size, max_train=1000).fit(style)
    assert model.n_train_ == 90
    calls = []
    got = model.predict_ab(content_L_, progress=lambda done, total: calls.append((done, total)))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    got = model.predict_ab(content_L_, chunk_rows=chunk_rows, progress=lambda done, total: calls.append((done, total)))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    steps = [c[0] for c in calls[1:]]
    assert calls[0] == (56, 56) and steps == sorted(steps) and steps[-1] == 56
    assert len(steps) == -(-56 // chunk_rows) and all(t == 56 for _, t in calls)


def test_extract_patches_matches_loops():
    L = np.random.default_rng(0).uniform(0, 100, (6, 5))
    idx = np.arange(30)
    for p in (1, 3, 5):
        np.testing.assert_array_equal(extract_patches(pad_L(L, p), p, 5, idx), loop_patches(L, p))


# ---------------------------------------------------------------------------------------
# Exact matches (distance 0)
# ---------------------------------------------------------------------------------------


def test_idw_mean_exact_matches_follow_sklearn_rule():
    dist = np.array([[0.0, 1.0, 2.0, 4.0], [0.0, 0.0, 1.0, 2.0], [1.0, 2.0, 4.0, 4.0]])
    targets = np.arange(24, dtype=float).reshape(3, 4, 2)
    got = idw_mean(dist, targets)
    w = np.array([1.0, 0.5, 0.25, 0.25])
    np.testing.assert_allclose(got[0], targets[0, 0])
    np.testing.assert_allclose(got[1], targets[1, :2].mean(0))
    np.testing.assert_allclose(got[2], (targets[2] * w[:, None]).sum(0) / w.sum())


def test_exact_duplicates_give_no_nan_and_agree_with_sklearn():
    rng = np.random.default_rng(0)
    style = rng.uniform(size=(12, 14, 3))
    style[:, :6] = (0.8, 0.3, 0.2)  # a flat patch of one colour: many identical patches
    model = KNNColorTransfer(max_train=None).fit(style)
    lab = rgb2lab(style)

    # Content = the style itself: every patch has an exact match (and some have several).
    ab = model.predict_ab(lab[..., 0])
    assert np.isfinite(ab).all()
    np.testing.assert_allclose(ab, lab[..., 1:], atol=1e-9)

    # Same answer as scikit-learn's distance-weighted regressor on the same features. A k-d tree, not
    # "brute": brute force computes |a|^2 - 2ab + |b|^2 with a GEMM, which on some CPUs (measured on
    # an AMD EPYC) leaves ~1e-7 instead of 0 between identical patches and so weights them wrongly.
    x = extract_patches(pad_L(lab[..., 0], 3), 3, 14, np.arange(12 * 14))
    sk = KNeighborsRegressor(n_neighbors=4, weights="distance", algorithm="kd_tree")
    sk_ab = sk.fit(x, lab[..., 1:].reshape(-1, 2)).predict(x)
    np.testing.assert_allclose(ab.reshape(-1, 2), sk_ab, atol=1e-9)

    # A uniform content of the flat colour: all 4 neighbours at distance 0.
    flat = np.broadcast_to(np.array([0.8, 0.3, 0.2]), (5, 6, 3))
    out = model.transform(flat)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, flat, atol=1e-6)


def test_lab_to_rgb_clips_like_skimage_without_its_warning():
    L = np.array([[0.0, 10.0, 3.0, 50.0, 100.0, 130.0, -5.0]])
    b_edge = 200.0 * (L[0, 2] + 16.0) / 116.0  # Z = 0 in theory, -1e-17 after rounding
    ab = np.array([[[0, 127], [200, 300], [4.2, b_edge], [-300, -300], [5, 5], [0, 0], [9, 9]]])
    got = lab_to_rgb(L, ab)  # warnings are errors in this test suite
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # skimage clips Z < 0 and warns
        lab = np.dstack([np.clip(L, 0, 100), np.clip(ab, -128, 127)])
        expected = np.clip(lab2rgb(lab), 0, 1)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-6)


# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------

BAD_PARAMS = [
    {"n_neighbors": 0},
    {"n_neighbors": -1},
    {"n_neighbors": 2.5},
    {"n_neighbors": True},
    {"patch_size": 0},
    {"patch_size": 2},
    {"patch_size": 4},
    {"patch_size": -3},
    {"patch_size": 3.0},
    {"max_train": 3},
    {"max_train": 0},
    {"max_train": 1e5},
    {"n_jobs": 0},
    {"n_jobs": -2},
]


@pytest.mark.parametrize("params", BAD_PARAMS)
def test_bad_parameters_raise_usage_error_in_fit_and_transform(params):
    style = np.random.default_rng(0).uniform(size=(8, 8, 3))
    with pytest.raises(UsageError):
        KNNColorTransfer(**params).fit(style)
    fitted = KNNColorTransfer().fit(style)
    with pytest.raises(UsageError):
        fitted.set_params(**params).transform(style)


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((4, 4, 2)),
        np.zeros((2, 4, 4, 3)),
        np.zeros(5),
        np.zeros((0, 5, 3)),
        np.full((4, 4, 3), np.nan),
        np.full((4, 4, 3), 255.0),
        np.full((4, 4, 3), -0.1),
        np.full((4, 4, 3), 1.01),
        np.zeros((4, 4, 3), dtype=np.int32),
    ],
    ids=["2ch", "4d", "1d", "empty", "nan", "0-255-float", "negative", "above-1", "int32"],
)
def test_bad_images_raise_image_error(image):
    good = np.random.default_rng(0).uniform(size=(8, 8, 3))
    with pytest.raises(ImageError):
        KNNColorTransfer().fit(image)
    with pytest.raises(ImageError):
        KNNColorTransfer().fit([good, image])
    with pytest.raises(ImageError):
        KNNColorTransfer().fit(good).transform(image)


def test_tiny_overshoot_is_clipped_not_rejected():
    style = np.random.default_rng(0).uniform(size=(8, 8, 3))
    content = np.random.default_rng(1).uniform(size=(5, 6, 3))
    expected = knn_color_transfer(content, style)
    over = content.copy()
    over[0, 0] = (1.0005, -0.0005, 1.0)
    clipped = np.clip(over, 0, 1)
    np.testing.assert_array_equal(knn_color_transfer(over, style), knn_color_transfer(clipped, style))
    assert knn_color_transfer(content, over).shape == expected.shape


def test_usage_errors():
    good = np.random.default_rng(0).uniform(size=(8, 8, 3))
    with pytest.raises(UsageError):
        KNNColorTransfer().fit([])
    with pytest.raises(UsageError):
        KNNColorTransfer().transform(good)  # not fitted
    with pytest.raises(UsageError):
        KNNColorTransfer(random_state="x").fit(good)
    with pytest.raises(UsageError):
        KNNColorTransfer(patch_size=3).fit(good).set_params(patch_size=5).transform(good)
    with pytest.raises(ImageError):
        KNNColorTransfer(n_neighbors=4).fit(good[:1, :3])  # 3 pixels < 4 neighbours


def test_scikit_learn_conventions():
    model = KNNColorTransfer(n_neighbors=3, max_train=500)
    assert not any(name.endswith("_") for name in vars(model))  # __init__ only stores
    assert clone(model).get_params() == model.get_params()
    model.fit(np.random.default_rng(0).uniform(size=(8, 8)))
    assert model.n_train_ == 64 and model.tree_.data.shape == (64, 9)


def test_module_does_not_import_jax():
    code = "import sys, jaxstyle.color_knn; sys.exit('jax' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
