"""Tests for jaxstyle.io.image: decoding anything a user throws at it, resizing, safe saving.

Every image is generated here, in tmp_path or in memory; expected values are computed
independently (NumPy, hand-built ICC profile, hand-crafted PNG headers), not with the code
under test.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms, PngImagePlugin

from jaxstyle.errors import (
    ImageError,
    InputNotFoundError,
    JaxstyleError,
    NumericalError,
    OutputError,
    UsageError,
)
from jaxstyle.io import image as jimage
from jaxstyle.io.image import (
    DEFAULT_MAX_PIXELS,
    SUPPORTED_OUTPUT_SUFFIXES,
    LoadedImage,
    check_output_path,
    decode_image_bytes,
    load_image,
    read_image_metadata,
    resize_long_side,
    resize_to,
    save_image,
)

# ----------------------------------------------------------------------------- helpers


def _pixels(height: int = 24, width: int = 32, seed: int = 0) -> np.ndarray:
    """Random uint8 (H, W, 3)."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _blocks(height: int = 48, width: int = 64) -> np.ndarray:
    """uint8 (H, W, 3) made of flat 16x16 colour blocks, so lossy codecs stay close."""
    rng = np.random.default_rng(1)
    colours = rng.integers(0, 256, (height // 16, width // 16, 3), dtype=np.uint8)
    return np.repeat(np.repeat(colours, 16, axis=0), 16, axis=1)


def _encode(img: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    return buffer.getvalue()


def _write(path: Path, img: Image.Image, **options) -> Path:
    img.save(path, **options)
    return path


def _srgb_encode(linear: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 sRGB transfer function."""
    linear = np.asarray(linear, dtype=np.float64)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)


def _matrix_profile(red, green, blue, description: str) -> bytes:
    """A minimal ICC v2 RGB matrix/TRC display profile with linear (gamma 1) tone curves.

    Colorants are PCS (D50) XYZ values. Built by hand (ICC.1:2001-04) because
    ImageCms.createProfile can only make sRGB, Lab and XYZ profiles.
    """
    d50 = (0.9642, 1.0, 0.8249)

    def xyz(values) -> bytes:
        return b"XYZ " + bytes(4) + b"".join(struct.pack(">i", round(v * 65536)) for v in values)

    text = description.encode("ascii") + b"\0"
    desc = b"desc" + bytes(4) + struct.pack(">I", len(text)) + text
    desc += struct.pack(">II", 0, 0) + struct.pack(">HB", 0, 0) + bytes(67)
    linear_curve = b"curv" + bytes(4) + struct.pack(">I", 0)  # 0 entries = identity
    tags = [
        (b"desc", desc),
        (b"wtpt", xyz(d50)),
        (b"rXYZ", xyz(red)),
        (b"gXYZ", xyz(green)),
        (b"bXYZ", xyz(blue)),
        (b"rTRC", linear_curve),
        (b"gTRC", linear_curve),
        (b"bTRC", linear_curve),
    ]
    start = 128 + 4 + 12 * len(tags)
    table, data = struct.pack(">I", len(tags)), b""
    for signature, body in tags:
        body += bytes(-len(body) % 4)
        table += signature + struct.pack(">II", start + len(data), len(body))
        data += body
    header = (
        struct.pack(">I", start + len(data))
        + b"lcms"
        + bytes([2, 0x10, 0, 0])
        + b"mntr"
        + b"RGB "
        + b"XYZ "
        + bytes(12)
        + b"acsp"
        + bytes(4 + 4 + 4 + 4 + 8 + 4)
        + b"".join(struct.pack(">i", round(v * 65536)) for v in d50)
        + bytes(4 + 16 + 28)
    )
    assert len(header) == 128
    return header + table + data


# sRGB colorants adapted to D50 (the values in every sRGB ICC profile).
SRGB_RED_D50 = (0.4361, 0.2225, 0.0139)
SRGB_GREEN_D50 = (0.3851, 0.7169, 0.0971)
SRGB_BLUE_D50 = (0.1431, 0.0606, 0.7141)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height RGB pixels, with no pixel data at all."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr
    chunk += struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    iend = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return b"\x89PNG\r\n\x1a\n" + chunk + iend


def _assert_valid(loaded: LoadedImage) -> None:
    rgb = loaded.rgb
    assert rgb.dtype == np.float32 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert np.all(np.isfinite(rgb)) and rgb.min() >= 0.0 and rgb.max() <= 1.0
    if loaded.alpha is not None:
        alpha = loaded.alpha
        assert alpha.dtype == np.float32 and alpha.shape == rgb.shape[:2]
        assert np.all(np.isfinite(alpha)) and alpha.min() >= 0.0 and alpha.max() <= 1.0
        assert alpha.min() < 1.0  # fully opaque alpha is reported as None


# ----------------------------------------------------------------------------- loading


LOSSLESS_OPTIONS = {"PNG": {}, "TIFF": {}, "BMP": {}, "WEBP": {"lossless": True}}


@pytest.mark.parametrize("fmt", sorted(LOSSLESS_OPTIONS))
def test_lossless_formats_decode_exactly(tmp_path, fmt):
    pixels = _pixels()
    path = _write(tmp_path / f"in.{fmt.lower()}", Image.fromarray(pixels), format=fmt, **LOSSLESS_OPTIONS[fmt])
    loaded = load_image(path)
    _assert_valid(loaded)
    assert loaded.path == path and loaded.size == (24, 32) and loaded.alpha is None
    np.testing.assert_array_equal(loaded.rgb, pixels.astype(np.float32) / 255)


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_lossy_formats_decode_approximately(tmp_path, fmt):
    pixels = _blocks()
    path = _write(tmp_path / f"in.{fmt.lower()}", Image.fromarray(pixels), format=fmt, quality=95)
    loaded = load_image(path)
    _assert_valid(loaded)
    assert loaded.size == (48, 64)
    assert np.mean(np.abs(loaded.rgb - pixels / 255)) < 0.02


def test_gif_first_frame(tmp_path):
    first = Image.fromarray(_blocks()).quantize(16)
    second = Image.new("RGB", first.size, (255, 0, 0)).quantize(4)
    path = tmp_path / "anim.gif"
    first.save(path, save_all=True, append_images=[second])
    expected = np.asarray(first.convert("RGB"), dtype=np.float32) / 255
    np.testing.assert_array_equal(load_image(path).rgb, expected)


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((48, 64, 3), np.uint8)
    pixels[:, :] = (0, 0, 255)
    pixels[:16, :16] = (255, 0, 0)  # marker in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    path = _write(tmp_path / "phone.jpg", Image.fromarray(pixels), quality=100, exif=exif)
    loaded = load_image(path)
    assert loaded.size == (64, 48)
    expected = np.rot90(pixels, k=-1) / 255  # clockwise: top-left goes to top-right
    assert np.mean(np.abs(loaded.rgb - expected)) < 0.01
    assert np.allclose(loaded.rgb[2, -3], (1, 0, 0), atol=0.05)


def test_shrink_to_decodes_a_large_jpeg_at_a_reduced_scale(tmp_path):
    """libjpeg's DCT scaling: the smallest of 1/2, 1/4, 1/8 that keeps the long side asked for,
    after which the caller's resize gives nearly the same picture as from the full decode; the
    EXIF rotation is still applied; PNGs and small JPEGs decode whole."""
    yy, xx = np.mgrid[0:240, 0:320]
    smooth = np.stack([xx / 320, yy / 240, (xx + yy) / 560], axis=2)
    pixels = (smooth * 255).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = _write(tmp_path / "big.jpg", Image.fromarray(pixels), quality=95, exif=exif)
    full = load_image(path)
    small = load_image(path, shrink_to=70)
    assert full.size == (320, 240) and small.size == (80, 60)  # 1/4 keeps 80 >= 70; 1/8 (40) would not
    difference = np.abs(resize_to(small.rgb, 70, 52) - resize_to(full.rgb, 70, 52))
    assert difference.mean() < 1 / 255
    assert load_image(path, shrink_to=400).size == (320, 240)  # already small enough: whole
    png = _write(tmp_path / "big.png", Image.fromarray(pixels))
    assert load_image(png, shrink_to=70).size == (240, 320)


def test_corrupt_exif_does_not_prevent_loading(tmp_path):
    data = _encode(Image.fromarray(_blocks()), "JPEG", exif=b"Exif\x00\x00MM\x00*garbage")
    loaded = decode_image_bytes(data)
    _assert_valid(loaded)
    assert loaded.size == (48, 64)


@pytest.mark.parametrize("mode", ["L", "1"])
def test_grey_is_replicated_to_three_channels(tmp_path, mode):
    grey = np.random.default_rng(2).integers(0, 256, (20, 30), dtype=np.uint8)
    img = Image.fromarray(grey).convert(mode)
    loaded = load_image(_write(tmp_path / "grey.png", img))
    expected = np.asarray(img.convert("L"), dtype=np.float32) / 255
    for channel in range(3):
        np.testing.assert_array_equal(loaded.rgb[:, :, channel], expected)
    assert loaded.alpha is None


def test_grey_with_alpha(tmp_path):
    grey = np.full((20, 30), 100, np.uint8)
    alpha = np.tile(np.arange(30, dtype=np.uint8) * 8, (20, 1))
    img = Image.merge("LA", [Image.fromarray(grey), Image.fromarray(alpha)])
    loaded = load_image(_write(tmp_path / "la.png", img))
    np.testing.assert_array_equal(loaded.rgb, np.full((20, 30, 3), 100 / 255, np.float32))
    np.testing.assert_array_equal(loaded.alpha, alpha / np.float32(255))


def test_palette_with_and_without_transparency(tmp_path):
    indices = np.zeros((20, 20), np.uint8)
    indices[:, 10:] = 1
    img = Image.new("P", (20, 20))
    img.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    img.putdata(indices.ravel().tolist())
    opaque = load_image(_write(tmp_path / "opaque.png", img))
    assert opaque.alpha is None
    np.testing.assert_array_equal(opaque.rgb[0, 0], (1, 0, 0))
    np.testing.assert_array_equal(opaque.rgb[0, 15], (0, 1, 0))

    transparent = load_image(_write(tmp_path / "keyed.png", img, transparency=0))
    assert transparent.alpha is not None
    np.testing.assert_array_equal(transparent.alpha[:, :10], 0.0)
    np.testing.assert_array_equal(transparent.alpha[:, 10:], 1.0)
    np.testing.assert_array_equal(transparent.rgb[0, 15], (0, 1, 0))


@pytest.mark.parametrize("fmt", ["TIFF", "JPEG"])
def test_cmyk_is_converted_to_rgb(tmp_path, fmt):
    cmyk = np.zeros((32, 32, 4), np.uint8)
    cmyk[:16, :16] = (255, 0, 0, 0)  # cyan
    cmyk[:16, 16:] = (0, 255, 0, 0)  # magenta
    cmyk[16:, :16] = (0, 0, 255, 0)  # yellow
    cmyk[16:, 16:] = (0, 0, 0, 255)  # black
    img = Image.frombytes("CMYK", (32, 32), cmyk.tobytes())
    loaded = load_image(_write(tmp_path / f"cmyk.{fmt.lower()}", img, format=fmt, quality=100))
    tolerance = 0 if fmt == "TIFF" else 0.05
    for (y, x), rgb in {(4, 4): (0, 1, 1), (4, 28): (1, 0, 1), (28, 4): (1, 1, 0), (28, 28): (0, 0, 0)}.items():
        np.testing.assert_allclose(loaded.rgb[y, x], rgb, atol=tolerance)


def test_16_bit_png_is_scaled_by_65535_not_clipped(tmp_path):
    values = np.array([[0, 257, 257 * 100, 300, 65535, 65534, 1000, 257 * 255]] * 16, np.uint16)
    values = np.tile(values, (1, 2))
    path = _write(tmp_path / "deep.png", Image.fromarray(values))
    loaded = load_image(path)
    expected = values.astype(np.float64) / 65535
    np.testing.assert_allclose(loaded.rgb[:, :, 0], expected, rtol=0, atol=1e-7)
    assert loaded.rgb.max() == 1.0
    assert loaded.rgb[0, 3, 0] == pytest.approx(300 / 65535)  # not 255/255 after an 8-bit clip


def test_16_bit_big_endian_tiff(tmp_path):
    values = np.tile(np.array([[0, 300, 40000, 65535]], np.uint16), (16, 4))
    img = Image.frombytes("I;16B", (16, 16), values.astype(">u2").tobytes())
    loaded = load_image(_write(tmp_path / "deep.tif", img))
    np.testing.assert_allclose(loaded.rgb[:, :, 1], values / 65535, atol=1e-7)


def test_32_bit_integer_tiff(tmp_path):
    small = np.tile(np.array([[0, 1000, 65535, 7]], np.int32), (16, 4))
    loaded = load_image(_write(tmp_path / "i16.tif", Image.fromarray(small)))
    np.testing.assert_allclose(loaded.rgb[:, :, 2], small / 65535, atol=1e-7)

    big = np.tile(np.array([[0, 1000, 200_000, -5]], np.int32), (16, 4))
    loaded = load_image(_write(tmp_path / "i32.tif", Image.fromarray(big)))
    np.testing.assert_allclose(loaded.rgb[:, :, 0], np.clip(big, 0, None) / 200_000, atol=1e-7)


def test_float_tiff(tmp_path):
    unit = np.tile(np.array([[0.0, 0.25, 0.123456, 1.0]], np.float32), (16, 4))
    loaded = load_image(_write(tmp_path / "unit.tif", Image.fromarray(unit)))
    np.testing.assert_array_equal(loaded.rgb[:, :, 0], unit)

    hdr = unit * 4
    loaded = load_image(_write(tmp_path / "hdr.tif", Image.fromarray(hdr)))
    np.testing.assert_allclose(loaded.rgb[:, :, 0], unit, rtol=1e-6)

    nan = unit.copy()
    nan[0, 0] = np.nan
    with pytest.raises(ImageError, match="NaN"):
        load_image(_write(tmp_path / "nan.tif", Image.fromarray(nan)))


@pytest.mark.parametrize("mode", ["YCbCr", "LAB"])  # no format Pillow writes stores HSV
def test_other_colour_modes_are_converted(tmp_path, mode):
    reference = Image.fromarray(_pixels(16, 16))
    img = reference.convert(mode) if mode != "LAB" else Image.new("LAB", (16, 16), (60, 128, 128))
    path = _write(tmp_path / "odd.tif", img)
    loaded = load_image(path)
    _assert_valid(loaded)
    if mode == "LAB":  # L*=60/255*100, a*=b*=0: neutral grey
        assert np.ptp(loaded.rgb[0, 0]) < 0.02 and 0.2 < loaded.rgb[0, 0, 0] < 0.4
    else:
        expected = np.asarray(img.convert("RGB"), dtype=np.float32) / 255
        np.testing.assert_array_equal(loaded.rgb, expected)


def test_rgba_alpha_is_kept_and_written_back(tmp_path):
    pixels = _pixels(20, 20)
    alpha = np.random.default_rng(3).integers(0, 256, (20, 20), dtype=np.uint8)
    img = Image.fromarray(np.dstack([pixels, alpha]))
    loaded = load_image(_write(tmp_path / "rgba.png", img))
    np.testing.assert_array_equal(loaded.alpha, alpha / np.float32(255))
    np.testing.assert_array_equal(loaded.rgb, pixels / np.float32(255))

    out = save_image(tmp_path / "out.png", loaded.rgb, alpha=loaded.alpha)
    with Image.open(out) as written:
        np.testing.assert_array_equal(np.asarray(written), np.dstack([pixels, alpha]))


def test_opaque_alpha_is_reported_as_none(tmp_path):
    img = Image.fromarray(np.dstack([_pixels(20, 20), np.full((20, 20), 255, np.uint8)]))
    assert load_image(_write(tmp_path / "opaque.png", img)).alpha is None


# ----------------------------------------------------------------------------- ICC profiles


def test_non_srgb_profile_is_converted_to_srgb(tmp_path):
    # Red and blue colorants swapped, linear tone curves: an unambiguous non-sRGB space.
    icc = _matrix_profile(SRGB_BLUE_D50, SRGB_GREEN_D50, SRGB_RED_D50, "swapped linear RGB")
    pixels = np.zeros((16, 64, 3), np.uint8)
    pixels[:, :16] = (255, 0, 0)
    pixels[:, 16:32] = (0, 255, 0)
    pixels[:, 32:48] = (128, 128, 128)
    pixels[:, 48:] = (255, 255, 255)
    loaded = load_image(_write(tmp_path / "wide.png", Image.fromarray(pixels), icc_profile=icc))
    tol = 2.5 / 255
    np.testing.assert_allclose(loaded.rgb[0, 0], (0, 0, 1), atol=tol)  # file "red" is blue
    np.testing.assert_allclose(loaded.rgb[0, 20], (0, 1, 0), atol=tol)
    np.testing.assert_allclose(loaded.rgb[0, 40], [_srgb_encode(128 / 255)] * 3, atol=tol)
    np.testing.assert_allclose(loaded.rgb[0, 60], (1, 1, 1), atol=tol)


def test_srgb_profile_leaves_values_untouched(tmp_path):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    pixels = _pixels()
    loaded = load_image(_write(tmp_path / "srgb.png", Image.fromarray(pixels), icc_profile=icc))
    np.testing.assert_array_equal(loaded.rgb, pixels / np.float32(255))


def test_broken_profile_falls_back_to_raw_values_with_a_warning(tmp_path, caplog):
    pixels = _pixels()
    path = _write(tmp_path / "bad.png", Image.fromarray(pixels), icc_profile=b"not a profile")
    with caplog.at_level(logging.WARNING, logger="jaxstyle.io.image"):
        loaded = load_image(path)
    np.testing.assert_array_equal(loaded.rgb, pixels / np.float32(255))
    assert any("ICC" in record.getMessage() for record in caplog.records)


# ----------------------------------------------------------------------------- load errors


def test_missing_file(tmp_path):
    with pytest.raises(InputNotFoundError, match=r"^'.*nope\.png' does not exist$"):
        load_image(tmp_path / "nope.png")


def test_directory(tmp_path):
    with pytest.raises(InputNotFoundError, match="is a directory"):
        load_image(tmp_path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match="empty file"):
        load_image(path)
    with pytest.raises(ImageError, match="empty file"):
        decode_image_bytes(b"")


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("these are not the pixels you are looking for\n" * 10)
    with pytest.raises(ImageError, match=r"^'.*notes\.png' is not a recognised image format"):
        load_image(path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can read anything")
def test_unreadable_file(tmp_path):
    path = _write(tmp_path / "secret.png", Image.fromarray(_pixels()))
    path.chmod(0)
    with pytest.raises(InputNotFoundError, match="permission denied"):
        load_image(path)


def test_unreadable_file_simulated(tmp_path, monkeypatch):
    # Runs as root too, where chmod cannot make a file unreadable.
    path = _write(tmp_path / "secret.png", Image.fromarray(_pixels()))

    def deny(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(jimage, "open", deny, raising=False)  # shadows the builtin open
    message = r"^cannot open '.*secret\.png': permission denied$"
    with pytest.raises(InputNotFoundError, match=message):
        load_image(path)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file(tmp_path, fmt):
    data = _encode(Image.fromarray(_pixels(64, 64)), fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ImageError, match=r"^cannot read '.*cut\..*': the file is truncated"):
        load_image(path)


def test_too_small(tmp_path):
    path = _write(tmp_path / "tiny.png", Image.new("RGB", (1, 1)))
    message = r"^'.*tiny\.png' is 1x1 px; each side must be at least 16 px$"
    with pytest.raises(ImageError, match=message):
        load_image(path)
    assert load_image(path, min_side=1).size == (1, 1)


def test_too_many_pixels(tmp_path):
    path = _write(tmp_path / "big.png", Image.new("RGB", (40, 30)))
    message = r"^'.*big\.png' is 40x30 px \(1,200 px\); .* 14.1 KiB; the limit is 1,000 px$"
    with pytest.raises(ImageError, match=message):
        load_image(path, max_pixels=1000)


def test_size_message_in_megapixels():
    with pytest.raises(ImageError) as info:
        decode_image_bytes(_png_header_only(12000, 10000), name="big.png", max_pixels=10**8)
    assert str(info.value) == (
        "'big.png' is 12000x10000 px (120 Mpx); decoding it would need about 1.3 GiB; the limit is 100 Mpx"
    )


@pytest.mark.parametrize("side", [100_000, 14_000])
def test_huge_header_fails_without_decoding(side, monkeypatch):
    # 100000^2 trips Pillow's own bomb check inside Image.open, 14000^2 (196 Mpx) our limit.
    from PIL import ImageFile

    def no_decoding(self):
        raise AssertionError("pixel data was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(ImageError, match=r"^'huge\.png' (is|has) .*GiB; the limit is 179 Mpx$"):
        decode_image_bytes(_png_header_only(side, side), name="huge.png")


def test_pillow_bomb_warning_does_not_leak():
    # 10000x9000 = 90 Mpx: over Image.MAX_IMAGE_PIXELS, so Pillow warns; under our limit.
    # With warnings as errors, a leaked DecompressionBombWarning would fail this test.
    with pytest.raises(ImageError, match="truncated"):
        decode_image_bytes(_png_header_only(10_000, 9_000), name="h.png")


def test_bad_limits():
    with pytest.raises(UsageError):
        decode_image_bytes(b"x", min_side=0)
    with pytest.raises(UsageError):
        decode_image_bytes(b"x", max_pixels=0)


def test_default_max_pixels_matches_pillow_hard_limit():
    assert DEFAULT_MAX_PIXELS == 2 * Image.MAX_IMAGE_PIXELS


# ----------------------------------------------------------------------------- resizing


@pytest.mark.parametrize(
    ("shape", "long_side", "expected"),
    [
        ((300, 400, 3), 200, (150, 200, 3)),
        ((400, 300, 3), 200, (200, 150, 3)),
        ((100, 100, 3), 512, (512, 512, 3)),
        ((20, 30, 3), 300, (200, 300, 3)),
        ((1, 1000, 3), 10, (1, 10, 3)),
        ((30, 20), 15, (15, 10)),
    ],
)
def test_resize_long_side_shapes(shape, long_side, expected):
    out = resize_long_side(np.full(shape, 0.5, np.float32), long_side)
    assert out.shape == expected and out.dtype == np.float32
    np.testing.assert_allclose(out, 0.5, atol=1e-6)


def test_resize_keeps_float_precision_and_range():
    rng = np.random.default_rng(4)
    smooth = 0.5 + 1e-3 * rng.standard_normal((64, 64, 3)).astype(np.float32)
    out = resize_to(smooth, 31, 47)
    assert out.shape == (31, 47, 3)
    quantised = np.round(out * 255) / 255
    assert np.max(np.abs(out - quantised)) > 1e-4  # no trip through 8 bits

    checker = (np.indices((64, 64)).sum(axis=0) % 2).astype(np.float32)
    up = resize_to(np.dstack([checker] * 3), 150, 150)
    assert up.min() >= 0.0 and up.max() <= 1.0  # Lanczos ringing clipped


def test_resize_matches_a_linear_ramp():
    # Lanczos reproduces a linear ramp away from the borders.
    ramp = np.tile(np.linspace(0, 1, 200, dtype=np.float32), (20, 1))
    out = resize_to(ramp, 20, 100)
    centres = (np.arange(100) + 0.5) * 2 - 0.5  # output pixel centres in input coordinates
    np.testing.assert_allclose(out[10, 10:-10], centres[10:-10] / 199, atol=2e-3)


def test_resize_bad_sizes():
    with pytest.raises(UsageError):
        resize_long_side(np.zeros((4, 4, 3), np.float32), 0)
    with pytest.raises(UsageError):
        resize_to(np.zeros((4, 4, 3), np.float32), 0, 3)
    with pytest.raises(ValueError):
        resize_to(np.zeros(4, np.float32), 3, 3)


# ----------------------------------------------------------------------------- saving


@pytest.mark.parametrize("suffix", sorted(SUPPORTED_OUTPUT_SUFFIXES))
def test_save_round_trip(tmp_path, suffix):
    pixels = _blocks()
    rgb = pixels / np.float32(255)
    out = save_image(tmp_path / f"out{suffix}", rgb)
    assert out == (tmp_path / f"out{suffix}").resolve()
    with Image.open(out) as written:
        assert written.format == SUPPORTED_OUTPUT_SUFFIXES[suffix]
    loaded = load_image(out)
    if SUPPORTED_OUTPUT_SUFFIXES[suffix] in ("JPEG", "WEBP"):
        assert np.mean(np.abs(loaded.rgb - rgb)) < 0.02
    else:
        np.testing.assert_array_equal(loaded.rgb, rgb)


def test_save_clips_and_rounds(tmp_path):
    rgb = np.full((16, 16, 3), 0.5, np.float64)
    rgb[0, 0] = (-3.0, 7.0, 0.5)
    out = save_image(tmp_path / "c.png", rgb)
    with Image.open(out) as written:
        back = np.asarray(written)
    assert tuple(back[0, 0]) == (0, 255, 128) and back[5, 5, 0] == 128


def test_save_drops_alpha_for_jpeg(tmp_path):
    out = save_image(tmp_path / "a.jpg", np.zeros((16, 16, 3)), alpha=np.zeros((16, 16)))
    with Image.open(out) as written:
        assert written.mode == "RGB"


def test_save_rejects_integer_arrays(tmp_path):
    with pytest.raises(ValueError, match="float"):
        save_image(tmp_path / "x.png", np.zeros((16, 16, 3), np.uint8))
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_save_refuses_non_finite_values(tmp_path, bad):
    rgb = np.zeros((16, 16, 3), np.float32)
    rgb[3, 4, 1] = bad
    target = tmp_path / "new_folder" / "out.png"
    with pytest.raises(NumericalError, match="NaN or infinite"):
        save_image(target, rgb)
    assert not (tmp_path / "new_folder").exists()


def test_unknown_suffix(tmp_path):
    with pytest.raises(UsageError, match=r"unsupported file extension '\.gif'; use one of .*\.png"):
        check_output_path(tmp_path / "out.gif", overwrite=False)
    with pytest.raises(UsageError, match="no file extension"):
        save_image(tmp_path / "out", np.zeros((16, 16, 3)))


def test_refuses_to_overwrite_without_permission(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"precious")
    with pytest.raises(OutputError, match="already exists; pass --overwrite"):
        save_image(target, np.zeros((16, 16, 3)))
    assert target.read_bytes() == b"precious"

    save_image(target, np.ones((16, 16, 3)), overwrite=True)
    assert load_image(target).rgb.min() == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_refuses_to_write_onto_an_input(tmp_path):
    source = _write(tmp_path / "in.png", Image.fromarray(_pixels()))
    before = source.read_bytes()
    (tmp_path / "sub").mkdir()
    for spelling in [source, tmp_path / "sub" / ".." / "in.png", str(source)]:
        with pytest.raises(OutputError, match="is also an input"):
            save_image(spelling, np.zeros((16, 16, 3)), overwrite=True, inputs=[source])
    link = tmp_path / "hardlink.png"
    os.link(source, link)
    with pytest.raises(OutputError, match="is also an input"):
        check_output_path(link, overwrite=True, inputs=[str(source)])
    assert source.read_bytes() == before


def test_refuses_a_directory(tmp_path):
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(OutputError, match="is a directory"):
        check_output_path(tmp_path / "dir.png", overwrite=True)


def test_creates_missing_folders(tmp_path):
    target = tmp_path / "a" / "b" / "out.png"
    assert check_output_path(target, overwrite=False) == target.resolve()
    assert target.parent.is_dir() and not target.exists()
    save_image(target, np.zeros((16, 16, 3)))
    assert target.is_file()


def test_folder_under_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="cannot create the folder"):
        check_output_path(tmp_path / "file" / "out.png", overwrite=False)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can write anywhere")
def test_folder_not_writable(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="not writable"):
            check_output_path(locked / "out.png", overwrite=False)
    finally:
        locked.chmod(0o700)


def test_folder_not_writable_simulated(tmp_path, monkeypatch):
    monkeypatch.setattr(jimage.os, "access", lambda *args, **kwargs: False)
    with pytest.raises(OutputError, match=r"the folder '.*' is not writable$"):
        check_output_path(tmp_path / "out.png", overwrite=False)


@pytest.mark.skipif(os.name != "posix", reason="umask is POSIX")
def test_output_permissions_follow_umask(tmp_path):
    old = os.umask(0o027)
    try:
        out = save_image(tmp_path / "p.png", np.zeros((16, 16, 3)))
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o640


def _failing_save(exception):
    real_save = Image.Image.save

    def save(self, fp, *args, **kwargs):
        real_save(self, fp, *args, **kwargs)
        fp.seek(len(fp.getvalue()) // 2 if hasattr(fp, "getvalue") else 10)
        fp.truncate()  # half an image on disk, then the failure
        raise exception

    return save


@pytest.mark.parametrize(
    ("exception", "expected"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), OutputError),
        (KeyboardInterrupt(), KeyboardInterrupt),
    ],
)
@pytest.mark.parametrize("overwrite", [False, True])
def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch, exception, expected, overwrite):
    target = tmp_path / "out.png"
    if overwrite:
        target.write_bytes(b"old result")
    monkeypatch.setattr(Image.Image, "save", _failing_save(exception))
    with pytest.raises(expected) as info:
        save_image(target, np.zeros((16, 16, 3)), overwrite=overwrite)
    if expected is OutputError:
        assert str(info.value) == f"cannot write '{target}': no space left on device"
    remaining = sorted(p.name for p in tmp_path.iterdir())
    assert remaining == (["out.png"] if overwrite else [])
    if overwrite:
        assert target.read_bytes() == b"old result"


def test_file_appearing_during_the_write_is_not_clobbered(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    real_save = Image.Image.save

    def save(self, fp, *args, **kwargs):
        target.write_bytes(b"another run")  # someone else finishes first
        real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save)
    with pytest.raises(OutputError, match="already exists"):
        save_image(target, np.zeros((16, 16, 3)))
    assert target.read_bytes() == b"another run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_webp_side_limit(tmp_path):
    with pytest.raises(OutputError, match="at most 16383 px"):
        save_image(tmp_path / "wide.webp", np.zeros((1, 16384, 3), np.float32))
    assert list(tmp_path.iterdir()) == []


def test_bad_jpeg_quality(tmp_path):
    with pytest.raises(UsageError, match="quality"):
        save_image(tmp_path / "q.jpg", np.zeros((16, 16, 3)), jpeg_quality=0)


# ----------------------------------------------------------------------------- metadata


def test_png_metadata_round_trip(tmp_path):
    metadata = {
        "jaxstyle:style": "starry night.jpg",
        "jaxstyle:weights": "1e4",
        "note": "Grüße ✓",  # not Latin-1: stored as iTXt
    }
    out = save_image(tmp_path / "m.png", np.zeros((16, 16, 3)), metadata=metadata)
    assert read_image_metadata(out) == metadata
    with Image.open(out) as written:  # really stored as PNG text chunks
        assert written.text["jaxstyle:style"] == "starry night.jpg"


@pytest.mark.parametrize("suffix", [".jpg", ".webp", ".tif"])
def test_exif_metadata_round_trip(tmp_path, suffix):
    metadata = {"style": "wave.png", "note": "Grüße"}
    out = save_image(tmp_path / f"m{suffix}", np.zeros((16, 16, 3)), metadata=metadata)
    assert read_image_metadata(out) == metadata


def test_metadata_absent(tmp_path):
    assert read_image_metadata(save_image(tmp_path / "n.png", np.zeros((16, 16, 3)))) == {}
    assert read_image_metadata(save_image(tmp_path / "n.jpg", np.zeros((16, 16, 3)))) == {}
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "GIMP")
    path = _write(tmp_path / "gimp.png", Image.new("RGB", (16, 16)), pnginfo=info)
    assert read_image_metadata(path) == {"Software": "GIMP"}


def test_metadata_of_missing_file(tmp_path):
    with pytest.raises(InputNotFoundError):
        read_image_metadata(tmp_path / "nope.png")


# ----------------------------------------------------------------------------- fuzzing


def _samples() -> list[bytes]:
    pixels = _pixels(20, 24)
    rgba = Image.fromarray(np.dstack([pixels, pixels[:, :, 0]]))
    rgb = Image.fromarray(pixels)
    rotated = Image.Exif()
    rotated[0x0112] = 6
    return [
        _encode(rgb, "PNG"),
        _encode(rgba, "PNG"),
        _encode(rgb.quantize(8), "PNG", transparency=0),
        _encode(Image.fromarray(pixels[:, :, 0].astype(np.uint16) * 257), "PNG"),
        _encode(rgb, "JPEG", quality=80),
        _encode(rgb, "JPEG", progressive=True, exif=rotated),
        _encode(rgb.convert("CMYK"), "JPEG"),
        _encode(rgb.quantize(16), "GIF"),
        _encode(rgb, "BMP"),
        _encode(rgba, "TIFF"),
        _encode(rgb, "WEBP", quality=50),
    ]


SAMPLES = _samples()
MAGIC_PREFIXES = [
    b"",
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"GIF89a",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
    b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    b"P6\n",
]
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _decodes_cleanly_or_raises_ours(data: bytes) -> None:
    try:
        loaded = decode_image_bytes(data, name="fuzz", min_side=1, max_pixels=1 << 20)
    except JaxstyleError as exc:
        message = str(exc)
        assert message and "\n" not in message and "fuzz" in message
        return
    _assert_valid(loaded)


def test_fuzz_samples_are_valid():
    for data in SAMPLES:
        _assert_valid(decode_image_bytes(data, min_side=1))


@FUZZ
@given(prefix=st.sampled_from(MAGIC_PREFIXES), body=st.binary(max_size=1024))
def test_fuzz_random_bytes(prefix, body):
    _decodes_cleanly_or_raises_ours(prefix + body)


@FUZZ
@given(
    sample=st.sampled_from(SAMPLES),
    edits=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=6),
    cut=st.none() | st.integers(0, 1 << 16),
)
def test_fuzz_mutated_valid_files(sample, edits, cut):
    data = bytearray(sample)
    for position, value in edits:
        data[position % len(data)] = value
    if cut is not None:
        data = data[: cut % len(data)]
    _decodes_cleanly_or_raises_ours(bytes(data))


def test_module_never_prints(capsys, tmp_path):
    load_image(_write(tmp_path / "x.png", Image.fromarray(_pixels()), icc_profile=b"bad"))
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
