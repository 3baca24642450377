"""The method seam: the registry, the fast method behind it, and its single-image / batch / CLI paths."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from jaxstyle.cli.app import main
from PIL import Image

from jaxstyle import methods, prepare
from jaxstyle.batch import stylize_batch
from jaxstyle.config import BatchConfig, StyleConfig
from jaxstyle.errors import UsageError
from jaxstyle.io.decode import load_image, read_image_metadata
from jaxstyle.io.resize import resize_to
from jaxstyle.methods.fast import fast_stylize
from jaxstyle.nets import magenta, magenta_predictor, magenta_weights
from jaxstyle.stylization import stylize

ASSETS = Path(__file__).resolve().parents[1] / "jaxstyle" / "assets" / "images"


@pytest.fixture(scope="module")
def images():
    return load_image(ASSETS / "chelsea.jpg").rgb, load_image(ASSETS / "starry_night.jpg").rgb


@pytest.fixture(scope="module")
def params():
    return magenta_weights.load_arbitrary()


def test_every_registered_method_is_a_config_choice():
    from typing import get_args

    from jaxstyle.config import MethodName

    assert set(methods.METHODS) == set(get_args(MethodName))


def test_unknown_method_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown method 'magic'; choose one of gatys, fast"):
        StyleConfig(method="magic")


def test_fast_method_is_the_network_on_the_resized_content(images, params):
    """stylize(method="fast") = the shared setup (resize) + the style vector at 256 + the transformer."""
    content, style = images
    config = StyleConfig(method="fast", max_size=96)
    ours = stylize(content, style, config, weights=params)
    shape = prepare.fit_long_side(content.shape[:2], 96)
    vector = magenta_predictor.style_vector(params["predictor"], magenta_predictor.resize_style_image(style)[None])
    direct = np.asarray(magenta.transform(params["transformer"], resize_to(content, *shape)[None], vector))[0]
    assert ours.shape == (*shape, 3)
    np.testing.assert_allclose(ours, direct, atol=2e-6)
    np.testing.assert_allclose(fast_stylize(content, style, StyleConfig(max_size=96), weights=params), ours, atol=0)


def test_fast_style_strength_and_blend(images, params):
    content, style = images
    base = StyleConfig(method="fast", max_size=64)
    full, none = (stylize(content, style, base.replace(style_strength=s), weights=params) for s in (1.0, 0.0))
    half = stylize(content, style, base.replace(style_strength=0.5), weights=params)
    # Strength 0 is the content in its own style: much closer to the content than the full style.
    small = resize_to(content, *full.shape[:2])
    assert np.abs(none - small).mean() < np.abs(full - small).mean()
    assert np.abs(half - full).mean() > 1e-3 and np.abs(half - none).mean() > 1e-3
    # A blend of a style with itself is that style; weights only matter between different styles.
    twice = stylize(content, [style, style], base, style_blend=[0.3, 0.7], weights=params)
    np.testing.assert_allclose(twice, full, atol=1e-5)
    with pytest.raises(UsageError, match="style strength must be in"):
        StyleConfig(method="fast", style_strength=1.5)


@pytest.mark.parametrize("colour", ["none", "luminance", "histogram"])
def test_fast_batch_equals_single_images(images, params, colour):
    content, style = images
    config = StyleConfig(method="fast", max_size=96, preserve_color=colour)
    contents = [content, content[:, :300], content[:200]]
    batch = stylize_batch(contents, style, config, weights=params, batch=BatchConfig(batch_size=2))
    for image, result in zip(contents, batch):
        np.testing.assert_allclose(result, stylize(image, style, config, weights=params), atol=2e-5)


def _png(path: Path, size: tuple[int, int], seed: int) -> Path:
    rng = np.random.default_rng(seed)
    pixels = (rng.uniform(size=(*size, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_cli_stylize_method_fast_records_the_method(tmp_path: Path, capsys):
    content, style = _png(tmp_path / "c.png", (60, 80), 1), _png(tmp_path / "s.png", (50, 50), 2)
    out = tmp_path / "out.png"
    args = ["stylize", str(content), str(style), "-o", str(out), "--method", "fast", "--max-size", "64"]
    assert main([*args, "--style-strength", "0.8"]) == 0, capsys.readouterr().err
    config = json.loads(read_image_metadata(out)["jaxstyle.config"])
    assert config["method"] == "fast" and config["fast"]["style_strength"] == 0.8
    with Image.open(out) as written:
        assert written.size == (64, 48)


def test_cli_batch_method_fast(tmp_path: Path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for index in range(3):
        _png(photos / f"p{index}.png", (40 + 8 * index, 64), index)
    style = _png(tmp_path / "s.png", (50, 50), 9)
    out = tmp_path / "out"
    args = ["batch", str(style), "-i", str(photos), "-o", str(out), "--method", "fast", "--max-size", "64"]
    assert main(args) == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.glob("*.png")) == ["p0.png", "p1.png", "p2.png"]
    assert main(args) == 0 and "3 already done (skipped)" in capsys.readouterr().err


def test_demo_writes_the_fast_picture_first_then_the_optimised_one(tmp_path: Path, capsys):
    out = tmp_path / "demo.png"
    assert main(["demo", "-o", str(out), "--max-size", "64"]) == 0
    err = capsys.readouterr().err
    assert (tmp_path / "demo.fast.png").is_file() and out.is_file()
    assert err.index("fast method") < err.index("optimisation")
    fast_config = json.loads(read_image_metadata(tmp_path / "demo.fast.png")["jaxstyle.config"])
    assert fast_config["method"] == "fast"
    assert json.loads(read_image_metadata(out)["jaxstyle.config"])["method"] == "gatys"


# --------------------------------------------------------------------------------------- built-in styles


def test_builtin_style_weights_parse_and_check():
    from jaxstyle.builtin_styles import builtin_style_weights

    one = builtin_style_weights("7")
    assert len(one) == 26 and one[7] == 1.0 and sum(one) == 1.0
    mix = builtin_style_weights("3:1,12:3")
    assert mix[3] == pytest.approx(0.25) and mix[12] == pytest.approx(0.75)
    for bad in ("26", "-1", "x", "3:-1", "", "0:0"):
        with pytest.raises(UsageError, match="built-in style"):
            builtin_style_weights(bad)
    with pytest.raises(UsageError, match="add --method fast"):
        StyleConfig(builtin_style="7")


def test_builtin_style_is_the_multistyle_network_on_the_resized_content(images):
    content, _ = images
    config = StyleConfig(method="fast", builtin_style="3:0.5,12:0.5", max_size=64)
    ours = stylize(content, None, config)
    params = magenta_weights.load_multistyle()
    shape = prepare.fit_long_side(content.shape[:2], 64)
    weights = np.zeros((1, 26), np.float32)
    weights[0, [3, 12]] = 0.5
    direct = np.asarray(magenta.multistyle_transform(params["multistyle"], resize_to(content, *shape)[None], weights))
    np.testing.assert_allclose(ours, direct[0], atol=2e-6)


def test_cli_builtin_style_and_contact_sheet(tmp_path: Path, capsys):
    content = _png(tmp_path / "c.png", (60, 80), 3)
    out = tmp_path / "out.png"
    assert main(["stylize", str(content), "-o", str(out), "--method", "fast", "--builtin-style", "7"]) == 0
    assert json.loads(read_image_metadata(out)["jaxstyle.config"])["fast"]["builtin_style"] == "7"
    assert main(["stylize", str(content), "-o", str(tmp_path / "x.png")]) == 2  # no styles, no built-in style
    assert "Missing argument" in capsys.readouterr().err
    sheet = tmp_path / "sheet.png"
    assert main(["builtin-styles", str(content), "-o", str(sheet), "--max-size", "64", "--columns", "7"]) == 0
    with Image.open(sheet) as written:
        assert written.size == (7 * 64, 4 * 48)  # 26 tiles of 64x48, 4 rows of 7


def test_fast_buckets_bound_the_compiled_shapes():
    """Every own size at 512 px (either orientation) falls in one of at most seven buckets, none
    padding a side by more than a quarter of the long side."""
    from jaxstyle.methods.fast import bucket_of

    sizes = [(h, 512) for h in range(32, 513)] + [(512, w) for w in range(32, 513)]
    buckets = {bucket_of(size, 512) for size in sizes}
    assert len(buckets) == 7
    for size in sizes:
        bucket = bucket_of(size, 512)
        assert all(0 <= b - s < 128 for b, s in zip(bucket, size))


def test_fast_folder_of_many_sizes_compiles_a_few_programs(images, params):
    """Six sizes, both orientations, two buckets: on the CPU path the portrait photo runs
    transposed through a landscape program (kernels transposed too), so two programs are compiled,
    ahead and side by side; results equal the images' own single-image runs."""
    from jaxstyle.batch import BucketEngine

    content, style = images
    config = StyleConfig(method="fast", max_size=128)
    crops = [content[:, :w] for w in (300, 330, 360, 400, 451)] + [content[:, :160]]  # 5 landscape, 1 portrait
    engine = BucketEngine(config, prepare.make_style_set(style, None, config), weights=params)
    prepared = [engine.prepare(index, crop) for index, crop in enumerate(crops)]
    buckets = sorted({shape for shape, _ in prepared})
    assert len({image.size for _, image in prepared}) == 6
    engine.runner.warm_up(buckets)
    results = {}
    for shape in buckets:
        batch = [image for bucket, image in prepared if bucket == shape]
        for image, result in zip(batch, engine.run(shape, batch)):
            assert result.shape[:2] == image.size
            results[image.key] = result
    for key in (0, 3, 5):  # one of each bucket, and the portrait photo
        single = stylize(crops[key], style, config, weights=params)
        np.testing.assert_allclose(results[key], single, atol=2e-5)
    if engine.runner.compiled:  # the CPU path (two or more cores): landscape buckets only
        assert buckets == [(96, 128), (128, 128)]
        assert {key[0] for key in engine.runner.compiled if not key[2]} == set(buckets)
