"""Style masks and regions (`jaxstyle.masks`, `prepare.make_style_set`): reading, checks, guides.

No JAX: the methods' use of the guides is tested with each method.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from jaxstyle import masks, prepare
from jaxstyle.config import StyleConfig
from jaxstyle.errors import MaskError, UsageError


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels and holds none (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))


def test_as_mask_reads_grey_rgb_and_alpha():
    grey = np.array([[0, 255], [128, 64]], np.uint8)
    np.testing.assert_allclose(masks.as_mask(grey), grey / 255.0, atol=1e-7)
    rgb = np.zeros((2, 2, 3), np.float32)
    rgb[0, 0] = 1.0
    assert masks.as_mask(rgb)[0, 0] == pytest.approx(1.0) and masks.as_mask(rgb)[1, 1] == 0.0
    rgba = np.zeros((2, 2, 4), np.float32)
    rgba[..., 3] = [[1.0, 0.5], [0.0, 0.0]]  # black colour, the alpha says where
    np.testing.assert_allclose(masks.as_mask(rgba), rgba[..., 3])


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((4, 4)), "all black"),
        (np.full((4, 4), np.nan), "NaN"),
        (np.ones((2, 2, 2, 2)), "greyscale image"),
    ],
)
def test_as_mask_refuses(array, message):
    with pytest.raises(MaskError, match=message):
        masks.as_mask(array)


def test_load_mask_uses_alpha_and_refuses_bad_files(tmp_path):
    rgba = np.zeros((8, 12, 4), np.uint8)
    rgba[:, :6, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    loaded = masks.load_mask(tmp_path / "alpha.png")
    assert loaded.shape == (8, 12) and loaded[:, :6].min() == 1.0 and loaded[:, 6:].max() == 0.0
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    (tmp_path / "bomb.png").write_bytes(_png_header_only(20_000, 20_000))
    Image.new("L", (8, 8), 0).save(tmp_path / "black.png")
    for name, message in [
        ("empty.png", "empty"),
        ("text.png", "not .*image|cannot"),
        ("bomb.png", "limit"),
        ("black.png", "all black"),
        ("missing.png", "does not exist"),
    ]:
        with pytest.raises(MaskError, match=message) as caught:
            masks.load_mask(tmp_path / name)
        assert "\n" not in str(caught.value) and name in str(caught.value)


def test_guides_sum_to_one_with_the_photo_last():
    left = np.zeros((8, 16), np.float32)
    left[:, :8] = 1.0
    half = np.full((8, 16), 0.5, np.float32)
    guides = masks.guides_at([left, half], (8, 16), feather=0)
    assert guides.shape == (8, 16, 3)
    np.testing.assert_allclose(guides.sum(-1), 1.0, atol=1e-6)
    # Left: 1 + 0.5 overlap, scaled to 2/3 and 1/3, nothing for the photo; right: half the
    # second style, half the photo.
    np.testing.assert_allclose(guides[:, :8], np.broadcast_to([2 / 3, 1 / 3, 0.0], (8, 8, 3)), atol=1e-6)
    np.testing.assert_allclose(guides[:, 8:], np.broadcast_to([0.0, 0.5, 0.5], (8, 8, 3)), atol=1e-6)


def test_feather_softens_the_edge_and_scales_with_the_output():
    mask = np.zeros((64, 64), np.float32)
    mask[:, :32] = 1.0
    sharp = masks.guides_at([mask], (64, 64), feather=0)[32, :, 0]
    soft = masks.guides_at([mask], (64, 64), feather=8)[32, :, 0]
    assert set(np.unique(sharp)) <= {0.0, 1.0}
    assert 0.2 < soft[31] < 0.8 and soft[20] > 0.99 and soft[44] < 0.01
    assert masks.feather_px((512, 384), None) == 4.0 and masks.feather_px((4096, 100), None) == 32.0


def test_downsample_matches_block_means():
    rng = np.random.default_rng(0)
    guide = rng.uniform(size=(9, 14, 2)).astype(np.float32)
    out = masks.downsample(guide, 4)
    assert out.shape == (2, 3, 2)
    for i in range(2):
        for j in range(3):
            np.testing.assert_allclose(
                out[i, j], guide[4 * i : 4 * i + 4, 4 * j : 4 * j + 4].mean(axis=(0, 1)), rtol=1e-6
            )


def test_aspect_ratio_is_checked_unless_stretched():
    mask = np.ones((30, 40), np.float32)
    masks.check_masks([mask], 1, (300, 401))  # within 1 %
    with pytest.raises(MaskError, match=r"40x30 \(1.33:1\) but the image is 300x300.*--mask-fit stretch"):
        masks.check_masks([mask], 1, (300, 300), names=None)
    masks.check_masks([mask], 1, (300, 300), fit="stretch")


def test_make_style_set_checks_masks_against_styles():
    style = np.zeros((8, 8, 3), np.float32)
    mask = np.ones((8, 8), np.float32)
    styles = prepare.make_style_set([style, style], style_masks=[mask, mask])
    assert len(styles.masks) == 2 and styles.regions is None
    with pytest.raises(MaskError, match="2 styles but 1 style masks"):
        prepare.make_style_set([style, style], style_masks=[mask])
    with pytest.raises(UsageError, match="do not combine"):
        prepare.make_style_set([style, style], [1, 2], style_masks=[mask, mask])
    builtin = StyleConfig(method="fast", builtin_style="3,7")
    assert len(prepare.make_style_set(None, config=builtin, style_masks=[mask, mask]).masks) == 2
    with pytest.raises(MaskError, match="2 built-in styles but 3"):
        prepare.make_style_set(None, config=builtin, style_masks=[mask] * 3)
    with pytest.raises(UsageError, match="built-in styles have none"):
        prepare.make_style_set(None, config=builtin, style_masks=[mask, mask], style_regions=[mask, mask])
    with pytest.raises(MaskError, match="style region 1 is 16x8"):
        prepare.make_style_set([style], style_regions=[np.ones((8, 16))])


def test_content_masks_and_guides_in_the_prepared_inputs():
    style = np.zeros((8, 8, 3), np.float32)
    config = StyleConfig(max_size=32, mask_feather=0, init="content")
    styles = prepare.make_style_set([style], style_masks=[np.ones((12, 16))])
    with pytest.raises(MaskError, match="16x12"):
        prepare.check_content_masks(styles, (16, 16), config)
    content = np.zeros((24, 32, 3), np.float32)
    prepare.check_content_masks(styles, content.shape[:2], config)
    image = prepare.prepare_batch_image(0, content, styles, config)
    assert image.guides.shape == (24, 32, 2) and np.all(image.guides[..., 0] == 1.0)
    scale = prepare.batch_scale_input(image, styles, (28, 36), config)
    assert scale.guides.shape == (28, 36, 2)
    whole = prepare.scale_input(content, styles, (24, 32), config)
    np.testing.assert_array_equal(whole.guides, image.guides)
    assert (
        whole.regions is None
        and prepare.prepare_batch_image(0, content, prepare.make_style_set([style]), config).guides is None
    )


def test_guides_are_computed_once_per_output_size():
    """A video's frames and a folder's images of one size share their guides (read-only)."""
    config = StyleConfig(max_size=32, mask_feather=2)
    styles = prepare.make_style_set([np.zeros((8, 8, 3), np.float32)], style_masks=[np.ones((24, 32))])
    first = prepare.guides_for(styles, (24, 32), config)
    assert prepare.guides_for(styles, (24, 32), config) is first and not first.flags.writeable
    np.testing.assert_array_equal(first, masks.guides_at(styles.masks, (24, 32), 2))
    assert prepare.guides_for(styles, (24, 32), config.replace(mask_feather=0)) is not first
    for side in range(33, 33 + prepare.KEPT_GUIDES):  # only the last few sizes are kept
        prepare.guides_for(styles, (24, side), config)
    assert len(styles._guides) == prepare.KEPT_GUIDES


def test_the_cli_passes_masks_to_the_method_and_records_them(tmp_path):
    """`jaxstyle stylize --style-mask` end to end: the CLI's picture is the library's masked one
    (not the unmasked one), and the output's metadata names the mask, so the command can be rebuilt."""
    import json

    from jaxstyle.cli.app import app
    from typer.testing import CliRunner

    from jaxstyle import stylize
    from jaxstyle.io.decode import load_image, read_image_metadata

    rng = np.random.default_rng(0)
    photo, style = tmp_path / "photo.png", tmp_path / "style.png"
    Image.fromarray(rng.integers(0, 256, (43, 64, 3), dtype=np.uint8)).save(photo)
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(style)
    left = np.zeros((43, 64), np.uint8)
    left[:, :32] = 255
    Image.fromarray(left).save(tmp_path / "left.png")
    args = ["stylize", str(photo), str(style), "--method", "fast", "--max-size", "64", "--mask-feather", "0"]
    result = CliRunner().invoke(
        app, [*args, "-o", str(tmp_path / "out.png"), "--style-mask", str(tmp_path / "left.png")]
    )
    assert result.exit_code == 0, result.output
    config = StyleConfig(method="fast", max_size=64, mask_feather=0)
    content, painting = load_image(photo).rgb, load_image(style).rgb
    masked = stylize(content, [painting], config, style_masks=[left / 255.0])
    plain = stylize(content, [painting], config)
    written = load_image(tmp_path / "out.png").rgb
    assert np.abs(written - masked).max() <= 1 / 255 + 1e-6  # 8-bit rounding only
    assert np.abs(written - plain).mean() > 0.02
    inputs = json.loads(read_image_metadata(tmp_path / "out.png")["jaxstyle.inputs"])
    assert inputs["masks"] == [str(tmp_path / "left.png")]
