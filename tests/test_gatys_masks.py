"""Spatial control in the optimisation (issue #26): guides at each VGG layer against a NumPy
pooling, guided targets whole and in windows, and short runs on 40x48 images that check what a
mask means: an all-white mask measures as the plain single-style run, an uncovered part stays
the photo, each region takes its own style. One image size and two optimisations (one plain,
one masked), so each program compiles once for the module."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle import losses, prepare
from jaxstyle.config import StyleConfig
from jaxstyle.errors import MaskError
from jaxstyle.methods.gatys import GatysRunner
from jaxstyle.nets.vgg import prepare_params
from jaxstyle.objective import (
    LossSpec,
    content_targets,
    guided_style_targets,
    image_features,
    layer_guides,
    layer_losses,
    make_targets,
    region_grams,
    region_weights,
    score,
    style_targets,
    whole_norms,
)
from jaxstyle.stylization import stylize
from jaxstyle.weights import load_weights
from jaxstyle.windowed import guided_targets_tiled, layer_losses_tiled

H, W = 40, 48


def smooth_image(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    channels = [np.sin(2 * np.pi * (rng.uniform(1, 3) * x + rng.uniform(1, 3) * y + rng.uniform())) for _ in range(3)]
    return (0.5 + 0.4 * np.stack(channels, axis=-1)).astype(np.float32)


@pytest.fixture(scope="module")
def inputs():
    """A smooth photo, two styles as unlike as possible (fine stripes in two colours; coarse
    grey blobs), and a left-half mask."""
    rng = np.random.default_rng(0)
    content = smooth_image(H, W, 1)
    y, x = np.mgrid[0:48, 0:48]
    stripes = np.where((x + y) % 6 < 3, 1.0, 0.0)[..., None] * np.asarray([0.9, 0.1, 0.1])
    stripes = (stripes + (1 - np.where((x + y) % 6 < 3, 1.0, 0.0))[..., None] * np.asarray([0.1, 0.2, 0.9])).astype(
        np.float32
    )
    blobs = np.repeat(prepare.resize_to(rng.uniform(size=(4, 4)).astype(np.float32)[..., None], 48, 48), 3, -1)
    left = np.zeros((H, W), np.float32)
    left[:, : W // 2] = 1.0
    return content, stripes, np.clip(blobs, 0, 1), left


@pytest.fixture(scope="module")
def vgg():
    weights = load_weights()
    spec = LossSpec.from_config(StyleConfig(style_layers=("relu1_1", "relu2_1", "relu3_1")), weights.mean_bgr)
    return prepare_params(weights.params, spec.layers), spec


def config(**changes) -> StyleConfig:
    return StyleConfig(max_size=W, init="content", optimizer="adam", learning_rate=0.02, **changes)


def np_pool_2x2(guide: np.ndarray) -> np.ndarray:
    """One VALID 2x2 average pooling, as VGG's: odd last rows and columns dropped."""
    h, w = guide.shape[0] // 2 * 2, guide.shape[1] // 2 * 2
    g = guide[:h, :w]
    return (g[0::2, 0::2] + g[1::2, 0::2] + g[0::2, 1::2] + g[1::2, 1::2]) / 4


def test_layer_guides_are_vggs_poolings_and_match_the_feature_shapes(vgg):
    params, spec = vgg
    guides = np.random.default_rng(3).uniform(size=(37, 53, 3)).astype(np.float32)
    layers = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    pooled = layer_guides(guides, layers)
    expected = guides
    for stride, name in zip((1, 2, 4, 8, 16), layers):
        while expected.shape[0] > 37 // stride:
            expected = np_pool_2x2(expected)
        np.testing.assert_allclose(pooled[name], expected, rtol=1e-6, err_msg=name)
    spec = dataclasses.replace(spec, settings=spec.settings.replace(style_layers=layers))
    shapes = jax.eval_shape(lambda: image_features(params, jnp.zeros((37, 53, 3)), layers, spec))
    assert {name: value.shape[:2] for name, value in shapes.items()} == {n: g.shape[:2] for n, g in pooled.items()}


def test_region_weights_fade_tiny_regions():
    guide = np.zeros((10, 20, 3), np.float32)
    guide[:, :19, 0] = 1.0
    guide[:, 19, 1] = 0.5  # a sliver: 2.5 % of the image at half strength
    np.testing.assert_allclose(region_weights(guide), [1.0, 0.5, 0.0], rtol=1e-6)  # 0.025 / 0.05


def test_windowed_guided_grams_and_losses_equal_the_whole_image(vgg):
    """In 64 px windows (32 px cores) a 48x64 image is two windows of two sizes: the guided Grams
    and losses in windows equal the whole image's, the style region's and the photo's included."""
    params, spec = vgg
    spec = dataclasses.replace(spec, settings=spec.settings.replace(style_layers=("relu1_1", "relu2_1")))
    rng = np.random.default_rng(2)
    image, content, style = (rng.uniform(size=(48, 64, 3)).astype(np.float32) for _ in range(3))
    ramp = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (48, 1))
    guides = prepare.masks.guides_at([ramp, np.flipud(ramp > 0.7).astype(np.float32)], (48, 64), 3.0)
    region = np.zeros((48, 64), np.float32)
    region[10:40, 5:40] = 1.0
    styles, regions = [style, style[::-1]], [region, None]
    targets = {
        "content": content_targets(params, jnp.asarray(content), spec),
        "style": guided_style_targets(params, content, styles, regions, guides, spec),
    }
    windowed = guided_targets_tiled(params, content, styles, regions, guides, spec, 64)
    for name, target in targets["style"].items():
        np.testing.assert_allclose(windowed[name]["gram"], target["gram"], rtol=2e-5, atol=1e-7)
        np.testing.assert_array_equal(windowed[name]["weight"], target["weight"])
    whole = layer_losses(params, jnp.asarray(image), targets, spec)
    tiled = layer_losses_tiled(params, image, {"style": windowed}, content, spec, 64, guides)
    for name, value in whole["style"].items():
        assert float(tiled["style"][name]) == pytest.approx(float(value), rel=1e-4), name


def test_an_all_white_mask_measures_as_the_single_style(vgg, inputs):
    """One all-white mask: every loss term equals the unmasked run's, at the photo and elsewhere."""
    params, spec = vgg
    content, stripes, *_ = inputs
    features = content_targets(params, jnp.asarray(content), spec)
    plain = make_targets(features, style_targets(params, jnp.asarray(stripes), spec, (H, W)))
    guides = prepare.masks.guides_at([np.ones((H, W), np.float32)], (H, W))
    assert guides[..., -1].max() < 1e-6
    white = make_targets(features, guided_style_targets(params, content, [stripes], None, guides, spec))
    norms = [whole_norms(params, content, [prepare.resize_to(stripes, H, W)], (1.0,), t, spec) for t in (plain, white)]
    image = np.random.default_rng(4).uniform(size=(H, W, 3)).astype(np.float32)
    for at in (content, image):
        a, b = (
            score(params, jnp.asarray(at), make_targets(*t, n), spec)
            for t, n in zip(((features, plain["style"]), (features, white["style"])), norms)
        )
        for key, value in a.items():
            assert float(b[key]) == pytest.approx(float(value), rel=1e-5, abs=1e-9), key


@pytest.fixture(scope="module")
def runs(inputs):
    """Two 12-step runs: the stripes on the whole photo, and the stripes on the left third, the
    blobs on the middle third and nothing on the right third (two step programs in all)."""
    content, stripes, blobs, _ = inputs
    cfg = config(iterations=12)
    thirds = np.zeros((H, W, 2), np.float32)
    thirds[:, : W // 3, 0] = 1.0
    thirds[:, W // 3 : 2 * W // 3, 1] = 1.0
    plain = stylize(content, [stripes], cfg)
    masked = stylize(content, [stripes, blobs], cfg, style_masks=[thirds[..., 0], thirds[..., 1]])
    return plain, masked, thirds


def test_an_uncovered_part_stays_the_photo(inputs, runs):
    content, *_ = inputs
    plain, masked, _ = runs
    right = np.s_[:, 2 * W // 3 + 4 :]  # beyond the masks' edge
    left = np.s_[:, : W // 3 - 4]
    distance = {
        name: np.abs(image[part] - content[part]).mean()
        for name, image, part in (("plain", plain, right), ("masked", masked, right), ("styled", masked, left))
    }
    # VGG's deep layers see across a 48 px image, so some of the styled thirds reaches it.
    assert distance["masked"] < 0.5 * distance["plain"], distance
    assert distance["styled"] > 2 * distance["masked"], distance


def test_each_region_is_closer_to_its_own_style(vgg, inputs, runs):
    """A tiny version of the quality check: each half's guided style loss against its own style
    is below its loss against the other style."""
    params, spec = vgg
    _, stripes, blobs, _ = inputs
    _, masked, thirds = runs
    guides = {k: jnp.asarray(v) for k, v in layer_guides(thirds, spec.style_layers).items()}
    result = region_grams(params, jnp.asarray(masked), guides, spec)
    own = [
        region_grams(params, jnp.asarray(s), layer_guides(np.ones((48, 48, 1), np.float32), spec.style_layers), spec)
        for s in (stripes, blobs)
    ]

    def loss(region, style):
        return sum(float(losses.style_loss_of_grams(result[n][region], own[style][n][0])) for n in spec.style_layers)

    assert loss(0, 0) < loss(0, 1)
    assert loss(1, 1) < loss(1, 0)


def test_masks_refuse_sliced_wasserstein_before_any_work(inputs):
    _, stripes, _, left = inputs
    styles = prepare.make_style_set([stripes], style_masks=[left])
    with pytest.raises(MaskError, match="Gram") as error:
        GatysRunner(config(style_statistic="sliced_wasserstein"), styles)
    assert "\n" not in str(error.value)


def test_memory_plans_count_the_regions():
    from jaxstyle.methods import gatys_plan

    cfg = StyleConfig(max_size=768)
    plain, masked = (gatys_plan.estimate_memory_bytes((512, 768), cfg, regions) for regions in (0, 3))
    assert masked - plain == 3 * gatys_plan.GUIDED_BYTES_PER_PIXEL * 512 * 768
    budget = (plain + masked) // 2
    assert not gatys_plan.plan_scales((512, 768), cfg, budget)[-1].tiled
    assert gatys_plan.plan_scales((512, 768), cfg, budget, regions=3)[-1].tiled
