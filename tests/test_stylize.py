"""`jaxstyle.stylization` (scales, progress, style blends, seeds, colour modes) and `jaxstyle.color`.

The colour functions are checked against scikit-image's YIQ and NumPy moments; the stylizations
run a few iterations on tiny images, so they check the plumbing, not the look.
"""

from __future__ import annotations

import numpy as np
import pytest
from skimage.color import rgb2yiq

from jaxstyle import color
from jaxstyle.config import StyleConfig
from jaxstyle.errors import UsageError
from jaxstyle.prepare import fit_long_side, scale_sizes
from jaxstyle.stylization import stylize
from jaxstyle.weights import load_weights


@pytest.fixture(scope="module")
def weights():
    return load_weights()


def smooth_image(h: int, w: int, seed: int) -> np.ndarray:
    """A colourful image with structure at several scales, in [0.1, 0.9] (no clipping anywhere)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    channels = [np.sin(2 * np.pi * (rng.uniform(1, 4) * x + rng.uniform(1, 4) * y + rng.uniform())) for _ in range(3)]
    return (0.5 + 0.4 * np.stack(channels, axis=-1)).astype(np.float32)


# --------------------------------------------------------------------------- colour


def test_yiq_matches_scikit_image():
    rgb = np.random.default_rng(0).uniform(size=(7, 5, 3))
    # Gatys et al.'s NTSC matrix is rounded to three decimals; scikit-image keeps more.
    np.testing.assert_allclose(color.rgb_to_yiq(rgb), rgb2yiq(rgb), atol=2e-3)
    np.testing.assert_allclose(color.yiq_to_rgb(color.rgb_to_yiq(rgb)), rgb, atol=1e-12)


def test_restore_chroma_takes_luminance_from_one_image_and_chroma_from_the_other():
    stylized = 0.3 + 0.4 * smooth_image(9, 11, 1) ** 2
    content = 0.25 + 0.5 * smooth_image(9, 11, 2)
    content_yiq = color.rgb_to_yiq(content)
    content_yiq[..., 0] = 0.5  # a content with room for any stylized luminance (no clipping)
    content = color.yiq_to_rgb(content_yiq)
    restored = color.rgb_to_yiq(color.restore_chroma(stylized, content))
    np.testing.assert_allclose(restored[..., 0], color.rgb_to_yiq(stylized)[..., 0], atol=1e-6)
    np.testing.assert_allclose(restored[..., 1:], content_yiq[..., 1:], atol=1e-6)


def test_luminance_image_matches_the_target_luminance_moments():
    style, content = smooth_image(12, 10, 3), 0.2 + 0.6 * smooth_image(8, 9, 4)
    grey = color.luminance_image(style, match_to=0.5 * content + 0.25)
    assert grey.shape == style.shape and np.all(grey[..., 0] == grey[..., 2])
    target = color.rgb_to_yiq(0.5 * content + 0.25)[..., 0]
    assert grey[..., 0].mean() == pytest.approx(target.mean(), abs=1e-6)
    assert grey[..., 0].std() == pytest.approx(target.std(), rel=1e-5)


def test_histogram_matching_moves_mean_and_covariance_to_the_target():
    rng = np.random.default_rng(5)
    # Well-conditioned colour covariances: the function regularises them by 1e-6 I.
    source = (0.5 + 0.06 * rng.standard_normal((40, 30, 3)) @ (np.eye(3) + rng.uniform(0, 0.5, (3, 3)))).astype(
        np.float32
    )
    target = (0.5 + 0.05 * rng.standard_normal((20, 50, 3)) @ (np.eye(3) + rng.uniform(0, 0.5, (3, 3)))).astype(
        np.float32
    )
    assert 0 < source.min() and source.max() < 1 and 0 < target.min() and target.max() < 1
    out = color.match_color_histogram(source, target).reshape(-1, 3).astype(np.float64)
    t = target.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(out.mean(0), t.mean(0), atol=1e-6)
    np.testing.assert_allclose(np.cov(out, rowvar=False), np.cov(t, rowvar=False), atol=2e-5)


# --------------------------------------------------------------------------- scales and progress


def test_scale_sizes_grow_by_sqrt2_and_keep_the_aspect():
    long_sides = [max(s) for s in scale_sizes((300, 451), StyleConfig(max_size=512, multiscale_min=128))]
    assert long_sides == [128, 181, 256, 362, 512]
    for h, w in scale_sizes((300, 451), StyleConfig(max_size=512, multiscale_min=128)):
        assert abs(w / h - 451 / 300) < 0.02
    assert scale_sizes((300, 451), StyleConfig(max_size=512)) == [fit_long_side((300, 451), 512)]


def test_coarse_iterations_must_be_positive():
    with pytest.raises(UsageError, match="coarse iterations"):
        StyleConfig(coarse_iterations=0)


def test_multiscale_progress_counts_coarse_and_final_iterations(weights):
    content, style = smooth_image(24, 36, 6), smooth_image(20, 20, 7)
    config = StyleConfig(
        max_size=32, multiscale_min=16, iterations=3, coarse_iterations=2, report_every=1, optimizer="adam"
    )
    reports = []
    result = stylize(content, style, config, weights=weights, callback=reports.append)
    sizes = scale_sizes(content.shape[:2], config)
    assert len(sizes) == 3
    assert reports[-1].scores is not None and reports[-1].report is None  # the result's own loss terms
    assert [(r.scale, r.shape, r.done, r.total) for r in reports[:-1]] == [
        (0, sizes[0], 1, 7), (0, sizes[0], 2, 7),
        (1, sizes[1], 3, 7), (1, sizes[1], 4, 7),
        (2, sizes[2], 5, 7), (2, sizes[2], 6, 7), (2, sizes[2], 7, 7),
    ]  # fmt: skip
    assert result.shape == (*sizes[-1], 3) and np.all(np.isfinite(result))


# --------------------------------------------------------------------------- styles, seeds, colour modes


def test_style_blend_weights(weights):
    """A zero-weight second style changes nothing; swapping the order with the weights neither."""
    content, first, second = smooth_image(20, 24, 8), smooth_image(16, 16, 9), smooth_image(24, 18, 10)
    config = StyleConfig(max_size=24, iterations=3)
    alone = stylize(content, first, config, weights=weights)
    # (up to float rounding: the fast start mixes the styles' vectors, 1 x a + 0 x b)
    np.testing.assert_allclose(
        stylize(content, [first, second], config, style_blend=[1, 0], weights=weights), alone, rtol=0, atol=1e-5
    )
    mixed = stylize(content, [first, second], config, style_blend=[0.7, 0.3], weights=weights)
    swapped = stylize(content, [second, first], config, style_blend=[0.3, 0.7], weights=weights)
    np.testing.assert_allclose(mixed, swapped, atol=1e-5)
    assert np.abs(mixed - alone).max() > 1e-3


def test_noise_init_is_deterministic_per_seed(weights):
    content, style = smooth_image(20, 20, 11), smooth_image(20, 20, 12)
    config = StyleConfig(max_size=20, iterations=2, init="noise", seed=3)
    a = stylize(content, style, config, weights=weights)
    np.testing.assert_array_equal(stylize(content, style, config, weights=weights), a)
    assert np.abs(stylize(content, style, config.replace(seed=4), weights=weights) - a).max() > 0.05


def test_luminance_mode_keeps_the_content_chroma(weights):
    content, style = 0.25 + 0.5 * smooth_image(20, 24, 13), smooth_image(24, 24, 14)
    config = StyleConfig(max_size=24, iterations=3, preserve_color="luminance")
    result = stylize(content, style, config, weights=weights)
    chroma = color.rgb_to_yiq(result)[..., 1:]
    unclipped = np.all((result > 0.001) & (result < 0.999), axis=-1)
    assert unclipped.mean() > 0.9
    np.testing.assert_allclose(chroma[unclipped], color.rgb_to_yiq(content)[..., 1:][unclipped], atol=1e-5)


def test_init_image_is_required_for_image_init(weights):
    content = smooth_image(20, 20, 15)
    with pytest.raises(UsageError, match="init image"):
        stylize(content, content, StyleConfig(max_size=20, iterations=1, init="image"), weights=weights)
