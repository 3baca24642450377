"""Print-size tiling on tiny sizes: plans cover every pixel, blends sum to 1, windowed statistics
equal the whole image's, and a tiled optimisation stopped in the middle resumes."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle import prepare
from jaxstyle.config import StyleConfig
from jaxstyle.errors import UsageError
from jaxstyle.io.parts import PartsFolder
from jaxstyle.methods.fast import FastRunner, plan_windows
from jaxstyle.methods.gatys import GatysRunner
from jaxstyle.methods.gatys_plan import plan_scales
from jaxstyle.nets.vgg import prepare_params, vgg19_features
from jaxstyle.objective import LossSpec, content_targets, layer_losses, style_targets
from jaxstyle.tiling import Moments, TilePlan, halo_windows
from jaxstyle.weights import load_weights
from jaxstyle.windowed import gram_targets_tiled, layer_losses_tiled

# (64, 113): three tiles of 64 so close (starts 0, 24, 49) that the first and the last meet
SHAPES = [(64, 64), (100, 64), (97, 203), (256, 130), (500, 333), (64, 113)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("tile", "overlap"), [(64, 16), (48, 20), (96, 32)])
def test_tile_plan_covers_every_pixel_and_weights_sum_to_one(shape, tile, overlap):
    plan = TilePlan.cover(shape, tile, overlap)
    coverage = np.zeros(shape)
    total = np.zeros(shape)
    for window in plan.windows:
        th, tw = plan.tile
        assert 0 <= window.top <= shape[0] - th and 0 <= window.left <= shape[1] - tw
        coverage[window.top : window.top + th, window.left : window.left + tw] += 1
        weights = plan.weights(window)
        assert weights.shape == plan.tile and np.all(weights > 0)
        total[window.top : window.top + th, window.left : window.left + tw] += weights
    assert coverage.min() >= 1
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    # neighbours share at least the overlap asked for, and windows of one group never meet
    for starts, side in ((plan.rows, plan.tile[0]), (plan.cols, plan.tile[1])):
        assert all(b - a <= side - overlap for a, b in itertools.pairwise(starts))
    for group in plan.groups():
        taken = np.zeros(shape, bool)
        for window in group:
            region = taken[window.top : window.top + plan.tile[0], window.left : window.left + plan.tile[1]]
            assert not region.any()
            region[:] = True


def test_feathered_weights_keep_the_border_and_ramp_inside():
    plan = TilePlan.cover((64, 200), 64, 16)
    first = plan.weights(plan.windows[0])
    assert first[:, 0].min() == pytest.approx(1.0)  # the image border is never down-weighted
    assert first[0, -1] < 0.1  # the far side fades out into the neighbour
    assert np.all(np.diff(first[0, -20:]) <= 0)


@pytest.mark.parametrize(
    ("length", "core", "halo", "fixed"), [(100, 16, 8, False), (96, 32, 12, True), (7, 4, 4, True)]
)
def test_halo_windows_partition_the_axis(length, core, halo, fixed):
    windows = halo_windows(length, core, halo, fixed=fixed)
    covered = np.zeros(length, int)
    for lo, hi, core_lo, core_hi in windows:
        covered[core_lo:core_hi] += 1
        assert lo <= core_lo and core_hi <= hi
        # a halo on every side that has image beyond the core
        assert core_lo - lo >= min(halo, core_lo) and hi - core_hi >= min(halo, length - core_hi)
        if fixed:
            assert hi - lo == min(length, core + 2 * halo)
    assert np.all(covered == 1)


def test_moments_merge_like_numpy():
    rng = np.random.default_rng(0)
    values = rng.normal(1e3, 2.0, (1000, 3))
    moments = Moments.empty(3)
    for part in np.array_split(values, 7):
        mean = part.mean(axis=0)
        moments = moments.merge(len(part), mean, ((part - mean) ** 2).sum(axis=0))
    np.testing.assert_allclose(moments.mean, values.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(moments.variance, values.var(axis=0), rtol=1e-9)


@pytest.fixture(scope="module")
def vgg():
    weights = load_weights()
    spec = LossSpec.from_config(StyleConfig(style_layers=("relu1_1", "relu2_1")), weights.mean_bgr)
    return prepare_params(weights.params, spec.layers), spec


def test_windowed_gram_targets_equal_the_whole_image(vgg):
    params, spec = vgg
    image = np.random.default_rng(1).uniform(size=(90, 131, 3)).astype(np.float32)
    whole = style_targets(params, jnp.asarray(image), spec, image.shape[:2])
    # relu2_1 sees 10 px: a 16 px halo; 48 px windows leave 16 px cores, 6 x 9 windows
    tiled = gram_targets_tiled(params, image, spec, 48)
    for name in whole:
        np.testing.assert_allclose(np.asarray(tiled[name]), np.asarray(whole[name]), rtol=2e-5, atol=1e-7)


def test_windowed_layer_losses_equal_the_whole_image(vgg):
    """What a tiled scale's ratios are measured with: content and style losses in windows equal the
    whole image's (`objective.layer_losses`), TV too."""
    import dataclasses

    params, spec = vgg
    spec = dataclasses.replace(spec, settings=spec.settings.replace(content_layers=("relu2_1",)))
    rng = np.random.default_rng(2)
    image, content, style = (rng.uniform(size=(90, 131, 3)).astype(np.float32) for _ in range(3))
    targets = {
        "content": content_targets(params, jnp.asarray(content), spec),
        "style": style_targets(params, jnp.asarray(style), spec, image.shape[:2]),
    }
    whole = layer_losses(params, jnp.asarray(image), targets, spec)
    tiled = layer_losses_tiled(params, image, {"style": targets["style"]}, content, spec, 48)
    for kind in ("content", "style"):
        for name, value in whole[kind].items():
            assert float(tiled[kind][name]) == pytest.approx(float(value), rel=1e-4), (kind, name)
    assert float(tiled["tv"]) == pytest.approx(float(whole["tv"]), rel=1e-5)


def test_tiled_gram_refuses_sliced_wasserstein(vgg):
    params, spec = vgg
    import dataclasses

    with pytest.raises(UsageError, match="Gram"):
        gram_targets_tiled(
            params,
            np.zeros((64, 64, 3), np.float32),
            dataclasses.replace(spec, settings=spec.settings.replace(style_statistic="sliced_wasserstein")),
            48,
        )


def test_tiles_of_a_group_never_meet_at_awkward_sizes():
    plan = TilePlan.cover((100, 2000), 1024, 256)  # starts 0, 488, 976: windows 0 and 2 share 48 px
    for group in plan.groups():
        lefts = sorted(window.left for window in group)
        assert all(b - a >= plan.tile[1] for a, b in itertools.pairwise(lefts))


def test_plan_edge_cases():
    # The style image at 4x the output does not fit whole, the tiles cover the output in one.
    plans = plan_scales((480, 480), StyleConfig(max_size=480, style_scale=4.0), 4 * 2**30)
    assert plans[-1].tiled and plans[-1].tiles().count == 1
    with pytest.raises(UsageError, match="style-statistic gram"):
        plan_scales((300, 400), StyleConfig(max_size=512, tile_size=128, style_statistic="sliced_wasserstein"), None)
    # a forced tile size never goes above the budget
    forced = plan_scales((3000, 4000), StyleConfig(max_size=4096, tile_size=4096), 8 * 2**30)
    assert max(forced[-1].tile) <= 1600
    with pytest.raises(UsageError, match="--tile-size 208"):
        plan_windows((1000, 1000), StyleConfig(method="fast", tile_size=100), None)


def test_parts_ignore_pieces_of_another_shape(tmp_path):
    parts = PartsFolder(tmp_path / "p", {"settings_hash": "x"}, overwrite=False, what="tiles")
    parts.save_array("a.npy", np.zeros((4, 5, 3), np.float32))
    assert parts.load_array("a.npy", (4, 5, 3)).shape == (4, 5, 3)
    assert parts.load_array("a.npy", (5, 4, 3)) is None and parts.load_array("b.npy", (1,)) is None
    (tmp_path / "q").mkdir()  # a run killed before it wrote its settings: taken over, not refused
    PartsFolder(tmp_path / "q", {"settings_hash": "y"}, overwrite=False, what="tiles")


def _planned_bytes(plan, config) -> int:
    """What a scale of a plan holds at once, by the estimates the plan is made from."""
    from jaxstyle.methods import gatys_plan

    if not plan.tiled:
        return gatys_plan.estimate_memory_bytes(plan.shape, config)
    per_pixel = gatys_plan.TILE_BYTES_PER_PIXEL[config.resources.precision]
    host = gatys_plan.HOST_BYTES_PER_PIXEL * plan.shape[0] * plan.shape[1]
    planned = gatys_plan.TILED_BASE_BYTES + plan.batch * per_pixel * plan.side**2 + host
    assert planned == gatys_plan.planned_peak_bytes(plan, config)
    return planned


def test_plans_tile_what_does_not_fit():
    config = StyleConfig(max_size=4096)
    budget = 8 * 2**30
    plans = plan_scales((3000, 4000), config, budget)
    assert not plans[0].tiled and plans[-1].tiled  # a whole-image scale first: the composition
    assert max(plans[0].shape) <= 2048 and plans[-1].shape == (3072, 4096)
    # every scale within the budget by the plan's own estimates, and not far below it
    assert all(_planned_bytes(plan, config) <= budget for plan in plans)
    assert max(_planned_bytes(plan, config) for plan in plans if plan.tiled) > 0.5 * budget
    assert not any(plan.tiled for plan in plan_scales((300, 400), StyleConfig(max_size=512), 8 * 2**30))
    forced = plan_scales((300, 400), StyleConfig(max_size=512, tile_size=128), None)
    assert [p.tiled for p in forced] == [False, True] and forced[-1].tile == (128, 128)
    with pytest.raises(UsageError, match="memory budget"):
        plan_scales((300, 400), config, int(0.905 * 2**30))
    from jaxstyle.methods import fast_plan as fast_method

    fast = plan_windows((8192, 8192), config.replace(method="fast"), 6 * 2**30)
    held = (
        fast_method.BASE_BYTES
        + fast_method.WINDOW_BYTES_PER_PIXEL * fast.tile[0] * fast.tile[1]
        + fast_method.HOST_BYTES_PER_PIXEL * 8192 * 8192
    )
    assert fast.tiled and fast.core % 4 == 0 and held == fast_method.planned_peak_bytes(fast) <= 6 * 2**30
    assert held > 0.9 * 6 * 2**30  # the largest window that fits, not far below the budget
    # the runtime and the image's full-size arrays alone are more than the budget
    assert fast_method.BASE_BYTES + fast_method.HOST_BYTES_PER_PIXEL * 8192 * 8192 > 4 * 2**30
    with pytest.raises(UsageError, match="memory budget"):
        plan_windows((8192, 8192), config.replace(method="fast"), 4 * 2**30)


def _tiny_run(parts=None, stop_after=None):
    rng = np.random.default_rng(3)
    content = prepare.resize_to(rng.uniform(size=(12, 20, 3)).astype(np.float32), 96, 160)
    style = rng.uniform(size=(64, 64, 3)).astype(np.float32)
    config = StyleConfig(max_size=160, tile_size=64, iterations=4, report_every=2, init="content")
    runner = GatysRunner(config, prepare.make_style_set(style))
    calls = []

    def callback(progress):
        calls.append(progress)
        if stop_after is not None and progress.tiles is not None and progress.tiles[0] >= stop_after:
            raise KeyboardInterrupt

    return runner.stylize(content, callback=callback, parts=parts), calls, (runner, content)


def _untiled_score(runner, content, image):
    """`score` of ``image`` against the whole image's inputs, computed as an untiled run does."""
    from jaxstyle.objective import content_targets, score, whole_norms

    shape = image.shape[:2]
    assert content.shape[:2] == shape
    styles = prepare.styles_for(runner.styles, content, shape, runner.config)
    targets = {
        "content": content_targets(runner.params, jnp.asarray(content), runner.spec),
        "style": runner.style_targets(styles, shape),
    }
    targets["norm"] = whole_norms(
        runner.params, content, prepare.references_at(styles, shape), runner.styles.weights, targets, runner.spec
    )
    return {key: float(value) for key, value in score(runner.params, jnp.asarray(image), targets, runner.spec).items()}


def test_tiled_optimisation_stopped_in_the_middle_resumes(tmp_path):
    plain, calls, (runner, content) = _tiny_run()
    # the whole 64 px scale, then 2 x 3 tiles; tiles 1 and 3 of the top row run as one batch
    assert calls[-2].done == calls[-2].total == 4 + 6 * 4
    assert calls[-2].description.endswith("tile 6/6")
    reports = [c.report for c in calls[:-1]]
    assert any(np.ndim(values) == 2 and np.shape(values)[1] == 2 for r in reports for values in r.losses.values())
    # the last call has the result's scores, measured in windows against the whole image's inputs
    scores = calls[-1].scores
    assert calls[-1].report is None and 0 < scores["style_ratio"] < 1 and 0 < scores["content_ratio"] < 1
    assert scores["total"] == pytest.approx(scores["content"] + scores["style"] + scores["tv"], rel=1e-5)
    # ... and they are the whole image's: the same final image scored untiled, key by key
    whole = _untiled_score(runner, content, plain)
    assert set(scores) == set(whole)
    for key, value in whole.items():
        assert scores[key] == pytest.approx(value, rel=1e-3, abs=1e-7), key
    folder = tmp_path / "out.png.parts"
    record = {"settings_hash": "abc"}
    with pytest.raises(KeyboardInterrupt):
        _tiny_run(PartsFolder(folder, record, overwrite=False, what="tiles"), stop_after=2)
    kept = PartsFolder(folder, record, overwrite=False, what="tiles").names("*.npy")
    assert kept == ["scale0.npy", "scale1_tile0000.npy", "scale1_tile0002.npy"]
    resumed, calls, _ = _tiny_run(PartsFolder(folder, record, overwrite=False, what="tiles"))
    assert calls[0].tiles == (2, 6)  # the two kept tiles were not run again
    np.testing.assert_allclose(resumed, plain, atol=1e-5)
    with pytest.raises(UsageError, match="other settings"):
        PartsFolder(folder, {"settings_hash": "def"}, overwrite=False, what="tiles")


def test_fast_runner_tiles_give_the_untiled_result():
    rng = np.random.default_rng(4)
    content = prepare.resize_to(rng.uniform(size=(10, 14, 3)).astype(np.float32), 180, 250)
    style = rng.uniform(size=(64, 64, 3)).astype(np.float32)
    config = StyleConfig(method="fast", max_size=250)
    whole = FastRunner(config, prepare.make_style_set(style)).stylize(content)
    tiled_runner = FastRunner(config.replace(tile_size=208), prepare.make_style_set(style))
    assert tiled_runner.plan(content.shape[:2])[0].tiled
    seen = []
    tiled = tiled_runner.stylize(content, callback=seen.append)
    # The windows' instance-norm statistics are the whole image's: the same output up to rounding.
    assert np.abs(tiled - whole).mean() < 1e-5 and np.abs(tiled - whole).max() < 1e-4
    # Over 3 x 4 windows of 208 px around 64 px cores: the contract stage's output; per residual
    # block two CIN statistics passes and its output; three for the expand stage and the output.
    assert seen[-1].done == seen[-1].total == (1 + 5 * 3 + 4) * 3 * 4 and seen[-1].status.startswith("pass 20/20")


def _judge():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "judge.py"
    spec = importlib.util.spec_from_file_location("judge", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_independent_judge_agrees_with_the_jax_vgg_on_max_pooling():
    """Two implementations written apart (NumPy im2col, JAX/XLA) of the same network."""
    judge = _judge()
    image = np.random.default_rng(5).uniform(size=(40, 56, 3)).astype(np.float32)
    weights = load_weights()
    from jaxstyle.nets.vgg import preprocess

    used = [judge.CONTENT_LAYER, *judge.STYLE_LAYERS]  # every layer the judge scores with
    ours = vgg19_features(weights.params, preprocess(jnp.asarray(image), weights.mean_bgr)[None], used, pooling="max")
    theirs = judge.features(judge.load_vgg(), image)
    assert set(used) <= set(theirs)
    for name in used:
        np.testing.assert_allclose(theirs[name], np.asarray(ours[name][0]), rtol=1e-3, atol=1e-2, err_msg=name)
    ratios = judge.ratios(image, image, np.flipud(image).copy())
    assert ratios["content_ratio"] == 0.0 and ratios["style_ratio"] == pytest.approx(1.0)


def test_init_fast_starts_from_the_fast_method():
    from jaxstyle.methods.fast import fast_stylize

    rng = np.random.default_rng(6)
    content = prepare.resize_to(rng.uniform(size=(8, 10, 3)).astype(np.float32), 48, 64)
    style = rng.uniform(size=(64, 64, 3)).astype(np.float32)
    config = StyleConfig(max_size=64, iterations=1, init="fast", learning_rate=1e-9)
    result = GatysRunner(config, prepare.make_style_set(style)).stylize(content)
    np.testing.assert_allclose(result, fast_stylize(content, style, config), atol=1e-4)
    assert np.abs(result - content).mean() > 0.02  # not the photo: the style is there from the start
    # A first scale below the network's 32 px (21x64) starts from a larger fast picture, resized.
    wide = prepare.resize_to(content, 21, 64)
    assert GatysRunner(config, prepare.make_style_set(style)).stylize(wide).shape == (21, 64, 3)
