"""Tests for jaxstyle.io.pixels, through load_image: orientation, alpha, colour modes, bit depths
and ICC profiles, all turned into float32 sRGB.

Every image is generated here, in tmp_path or in memory; expected values are computed
independently (NumPy, hand-built ICC profile), not with the code under test.
"""

from __future__ import annotations

import logging
import struct

import numpy as np
import pytest
from image_files import assert_valid, block_rgb, encode_image, random_rgb, write_image
from PIL import Image, ImageCms

from jaxstyle.errors import ImageError
from jaxstyle.io.decode import decode_image_bytes, load_image
from jaxstyle.io.encode import save_image

# ----------------------------------------------------------------------------- orientation, colour modes, bit depths, alpha


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((48, 64, 3), np.uint8)
    pixels[:, :] = (0, 0, 255)
    pixels[:16, :16] = (255, 0, 0)  # marker in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    path = write_image(tmp_path / "phone.jpg", Image.fromarray(pixels), quality=100, exif=exif)
    loaded = load_image(path)
    assert loaded.size == (64, 48)
    expected = np.rot90(pixels, k=-1) / 255  # clockwise: top-left goes to top-right
    assert np.mean(np.abs(loaded.rgb - expected)) < 0.01
    assert np.allclose(loaded.rgb[2, -3], (1, 0, 0), atol=0.05)


def test_corrupt_exif_does_not_prevent_loading(tmp_path):
    data = encode_image(Image.fromarray(block_rgb()), "JPEG", exif=b"Exif\x00\x00MM\x00*garbage")
    loaded = decode_image_bytes(data)
    assert_valid(loaded)
    assert loaded.size == (48, 64)


@pytest.mark.parametrize("mode", ["L", "1"])
def test_grey_is_replicated_to_three_channels(tmp_path, mode):
    grey = np.random.default_rng(2).integers(0, 256, (20, 30), dtype=np.uint8)
    img = Image.fromarray(grey).convert(mode)
    loaded = load_image(write_image(tmp_path / "grey.png", img))
    expected = np.asarray(img.convert("L"), dtype=np.float32) / 255
    for channel in range(3):
        np.testing.assert_array_equal(loaded.rgb[:, :, channel], expected)
    assert loaded.alpha is None


def test_grey_with_alpha(tmp_path):
    grey = np.full((20, 30), 100, np.uint8)
    alpha = np.tile(np.arange(30, dtype=np.uint8) * 8, (20, 1))
    img = Image.merge("LA", [Image.fromarray(grey), Image.fromarray(alpha)])
    loaded = load_image(write_image(tmp_path / "la.png", img))
    np.testing.assert_array_equal(loaded.rgb, np.full((20, 30, 3), 100 / 255, np.float32))
    np.testing.assert_array_equal(loaded.alpha, alpha / np.float32(255))


def test_palette_with_and_without_transparency(tmp_path):
    indices = np.zeros((20, 20), np.uint8)
    indices[:, 10:] = 1
    img = Image.new("P", (20, 20))
    img.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    img.putdata(indices.ravel().tolist())
    opaque = load_image(write_image(tmp_path / "opaque.png", img))
    assert opaque.alpha is None
    np.testing.assert_array_equal(opaque.rgb[0, 0], (1, 0, 0))
    np.testing.assert_array_equal(opaque.rgb[0, 15], (0, 1, 0))

    transparent = load_image(write_image(tmp_path / "keyed.png", img, transparency=0))
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
    loaded = load_image(write_image(tmp_path / f"cmyk.{fmt.lower()}", img, format=fmt, quality=100))
    tolerance = 0 if fmt == "TIFF" else 0.05
    for (y, x), rgb in {(4, 4): (0, 1, 1), (4, 28): (1, 0, 1), (28, 4): (1, 1, 0), (28, 28): (0, 0, 0)}.items():
        np.testing.assert_allclose(loaded.rgb[y, x], rgb, atol=tolerance)


def test_16_bit_png_is_scaled_by_65535_not_clipped(tmp_path):
    values = np.array([[0, 257, 257 * 100, 300, 65535, 65534, 1000, 257 * 255]] * 16, np.uint16)
    values = np.tile(values, (1, 2))
    path = write_image(tmp_path / "deep.png", Image.fromarray(values))
    loaded = load_image(path)
    expected = values.astype(np.float64) / 65535
    np.testing.assert_allclose(loaded.rgb[:, :, 0], expected, rtol=0, atol=1e-7)
    assert loaded.rgb.max() == 1.0
    assert loaded.rgb[0, 3, 0] == pytest.approx(300 / 65535)  # not 255/255 after an 8-bit clip


def test_16_bit_big_endian_tiff(tmp_path):
    values = np.tile(np.array([[0, 300, 40000, 65535]], np.uint16), (16, 4))
    img = Image.frombytes("I;16B", (16, 16), values.astype(">u2").tobytes())
    loaded = load_image(write_image(tmp_path / "deep.tif", img))
    np.testing.assert_allclose(loaded.rgb[:, :, 1], values / 65535, atol=1e-7)


def test_32_bit_integer_tiff(tmp_path):
    small = np.tile(np.array([[0, 1000, 65535, 7]], np.int32), (16, 4))
    loaded = load_image(write_image(tmp_path / "i16.tif", Image.fromarray(small)))
    np.testing.assert_allclose(loaded.rgb[:, :, 2], small / 65535, atol=1e-7)

    big = np.tile(np.array([[0, 1000, 200_000, -5]], np.int32), (16, 4))
    loaded = load_image(write_image(tmp_path / "i32.tif", Image.fromarray(big)))
    np.testing.assert_allclose(loaded.rgb[:, :, 0], np.clip(big, 0, None) / 200_000, atol=1e-7)


def test_float_tiff(tmp_path):
    unit = np.tile(np.array([[0.0, 0.25, 0.123456, 1.0]], np.float32), (16, 4))
    loaded = load_image(write_image(tmp_path / "unit.tif", Image.fromarray(unit)))
    np.testing.assert_array_equal(loaded.rgb[:, :, 0], unit)

    hdr = unit * 4
    loaded = load_image(write_image(tmp_path / "hdr.tif", Image.fromarray(hdr)))
    np.testing.assert_allclose(loaded.rgb[:, :, 0], unit, rtol=1e-6)

    nan = unit.copy()
    nan[0, 0] = np.nan
    with pytest.raises(ImageError, match="NaN"):
        load_image(write_image(tmp_path / "nan.tif", Image.fromarray(nan)))


@pytest.mark.parametrize("mode", ["YCbCr", "LAB"])  # no format Pillow writes stores HSV
def test_other_colour_modes_are_converted(tmp_path, mode):
    reference = Image.fromarray(random_rgb(16, 16))
    img = reference.convert(mode) if mode != "LAB" else Image.new("LAB", (16, 16), (60, 128, 128))
    path = write_image(tmp_path / "odd.tif", img)
    loaded = load_image(path)
    assert_valid(loaded)
    if mode == "LAB":  # L*=60/255*100, a*=b*=0: neutral grey
        assert np.ptp(loaded.rgb[0, 0]) < 0.02 and 0.2 < loaded.rgb[0, 0, 0] < 0.4
    else:
        expected = np.asarray(img.convert("RGB"), dtype=np.float32) / 255
        np.testing.assert_array_equal(loaded.rgb, expected)


def test_rgba_alpha_is_kept_and_written_back(tmp_path):
    pixels = random_rgb(20, 20)
    alpha = np.random.default_rng(3).integers(0, 256, (20, 20), dtype=np.uint8)
    img = Image.fromarray(np.dstack([pixels, alpha]))
    loaded = load_image(write_image(tmp_path / "rgba.png", img))
    np.testing.assert_array_equal(loaded.alpha, alpha / np.float32(255))
    np.testing.assert_array_equal(loaded.rgb, pixels / np.float32(255))

    out = save_image(tmp_path / "out.png", loaded.rgb, alpha=loaded.alpha)
    with Image.open(out) as written:
        np.testing.assert_array_equal(np.asarray(written), np.dstack([pixels, alpha]))


def test_opaque_alpha_is_reported_as_none(tmp_path):
    img = Image.fromarray(np.dstack([random_rgb(20, 20), np.full((20, 20), 255, np.uint8)]))
    assert load_image(write_image(tmp_path / "opaque.png", img)).alpha is None


# ----------------------------------------------------------------------------- ICC profiles


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


def test_non_srgb_profile_is_converted_to_srgb(tmp_path):
    # Red and blue colorants swapped, linear tone curves: an unambiguous non-sRGB space.
    icc = _matrix_profile(SRGB_BLUE_D50, SRGB_GREEN_D50, SRGB_RED_D50, "swapped linear RGB")
    pixels = np.zeros((16, 64, 3), np.uint8)
    pixels[:, :16] = (255, 0, 0)
    pixels[:, 16:32] = (0, 255, 0)
    pixels[:, 32:48] = (128, 128, 128)
    pixels[:, 48:] = (255, 255, 255)
    loaded = load_image(write_image(tmp_path / "wide.png", Image.fromarray(pixels), icc_profile=icc))
    tol = 2.5 / 255
    np.testing.assert_allclose(loaded.rgb[0, 0], (0, 0, 1), atol=tol)  # file "red" is blue
    np.testing.assert_allclose(loaded.rgb[0, 20], (0, 1, 0), atol=tol)
    np.testing.assert_allclose(loaded.rgb[0, 40], [_srgb_encode(128 / 255)] * 3, atol=tol)
    np.testing.assert_allclose(loaded.rgb[0, 60], (1, 1, 1), atol=tol)


def test_srgb_profile_leaves_values_untouched(tmp_path):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    pixels = random_rgb()
    loaded = load_image(write_image(tmp_path / "srgb.png", Image.fromarray(pixels), icc_profile=icc))
    np.testing.assert_array_equal(loaded.rgb, pixels / np.float32(255))


def test_broken_profile_falls_back_to_raw_values_with_a_warning(tmp_path, caplog):
    pixels = random_rgb()
    path = write_image(tmp_path / "bad.png", Image.fromarray(pixels), icc_profile=b"not a profile")
    with caplog.at_level(logging.WARNING, logger="jaxstyle.io.pixels"):
        loaded = load_image(path)
    np.testing.assert_array_equal(loaded.rgb, pixels / np.float32(255))
    assert any("ICC" in record.getMessage() for record in caplog.records)
