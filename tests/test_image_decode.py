"""Tests for jaxstyle.io.decode: reading any image file a user throws at it, or refusing it
with one clear line.

Every image is generated here, in tmp_path or in memory; expected values are computed
independently (NumPy, hand-crafted PNG headers), not with the code under test.
"""

from __future__ import annotations

import errno
import os
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from image_files import assert_valid, block_rgb, encode_image, random_rgb, write_image
from PIL import Image

from jaxstyle.errors import ImageError, InputNotFoundError, JaxstyleError, UsageError
from jaxstyle.io import decode as decode_module
from jaxstyle.io.decode import DEFAULT_MAX_PIXELS, decode_image_bytes, load_image
from jaxstyle.io.resize import resize_to

# ----------------------------------------------------------------------------- loading


LOSSLESS_OPTIONS = {"PNG": {}, "TIFF": {}, "BMP": {}, "WEBP": {"lossless": True}}


@pytest.mark.parametrize("fmt", sorted(LOSSLESS_OPTIONS))
def test_lossless_formats_decode_exactly(tmp_path, fmt):
    pixels = random_rgb()
    path = write_image(tmp_path / f"in.{fmt.lower()}", Image.fromarray(pixels), format=fmt, **LOSSLESS_OPTIONS[fmt])
    loaded = load_image(path)
    assert_valid(loaded)
    assert loaded.path == path and loaded.size == (24, 32) and loaded.alpha is None
    np.testing.assert_array_equal(loaded.rgb, pixels.astype(np.float32) / 255)


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_lossy_formats_decode_approximately(tmp_path, fmt):
    pixels = block_rgb()
    path = write_image(tmp_path / f"in.{fmt.lower()}", Image.fromarray(pixels), format=fmt, quality=95)
    loaded = load_image(path)
    assert_valid(loaded)
    assert loaded.size == (48, 64)
    assert np.mean(np.abs(loaded.rgb - pixels / 255)) < 0.02


def test_gif_first_frame(tmp_path):
    first = Image.fromarray(block_rgb()).quantize(16)
    second = Image.new("RGB", first.size, (255, 0, 0)).quantize(4)
    path = tmp_path / "anim.gif"
    first.save(path, save_all=True, append_images=[second])
    expected = np.asarray(first.convert("RGB"), dtype=np.float32) / 255
    np.testing.assert_array_equal(load_image(path).rgb, expected)


def test_shrink_to_decodes_a_large_jpeg_at_a_reduced_scale(tmp_path):
    """libjpeg's DCT scaling: the smallest of 1/2, 1/4, 1/8 that keeps the long side asked for,
    after which the caller's resize gives nearly the same picture as from the full decode; the
    EXIF rotation is still applied; PNGs and small JPEGs decode whole."""
    yy, xx = np.mgrid[0:240, 0:320]
    smooth = np.stack([xx / 320, yy / 240, (xx + yy) / 560], axis=2)
    pixels = (smooth * 255).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = write_image(tmp_path / "big.jpg", Image.fromarray(pixels), quality=95, exif=exif)
    full = load_image(path)
    small = load_image(path, shrink_to=70)
    assert full.size == (320, 240) and small.size == (80, 60)  # 1/4 keeps 80 >= 70; 1/8 (40) would not
    difference = np.abs(resize_to(small.rgb, 70, 52) - resize_to(full.rgb, 70, 52))
    assert difference.mean() < 1 / 255
    assert load_image(path, shrink_to=400).size == (320, 240)  # already small enough: whole
    png = write_image(tmp_path / "big.png", Image.fromarray(pixels))
    assert load_image(png, shrink_to=70).size == (240, 320)


# ----------------------------------------------------------------------------- load errors


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height RGB pixels, with no pixel data at all."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr
    chunk += struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    iend = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return b"\x89PNG\r\n\x1a\n" + chunk + iend


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
    path = write_image(tmp_path / "secret.png", Image.fromarray(random_rgb()))
    path.chmod(0)
    with pytest.raises(InputNotFoundError, match="permission denied"):
        load_image(path)


def test_unreadable_file_simulated(tmp_path, monkeypatch):
    # Runs as root too, where chmod cannot make a file unreadable.
    path = write_image(tmp_path / "secret.png", Image.fromarray(random_rgb()))

    def deny(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(decode_module, "open", deny, raising=False)  # shadows the builtin open
    message = r"^cannot open '.*secret\.png': permission denied$"
    with pytest.raises(InputNotFoundError, match=message):
        load_image(path)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file(tmp_path, fmt):
    data = encode_image(Image.fromarray(random_rgb(64, 64)), fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ImageError, match=r"^cannot read '.*cut\..*': the file is truncated"):
        load_image(path)


def test_too_small(tmp_path):
    path = write_image(tmp_path / "tiny.png", Image.new("RGB", (1, 1)))
    message = r"^'.*tiny\.png' is 1x1 px; each side must be at least 16 px$"
    with pytest.raises(ImageError, match=message):
        load_image(path)
    assert load_image(path, min_side=1).size == (1, 1)


def test_too_many_pixels(tmp_path):
    path = write_image(tmp_path / "big.png", Image.new("RGB", (40, 30)))
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


# ----------------------------------------------------------------------------- fuzzing


def _samples() -> list[bytes]:
    pixels = random_rgb(20, 24)
    rgba = Image.fromarray(np.dstack([pixels, pixels[:, :, 0]]))
    rgb = Image.fromarray(pixels)
    rotated = Image.Exif()
    rotated[0x0112] = 6
    return [
        encode_image(rgb, "PNG"),
        encode_image(rgba, "PNG"),
        encode_image(rgb.quantize(8), "PNG", transparency=0),
        encode_image(Image.fromarray(pixels[:, :, 0].astype(np.uint16) * 257), "PNG"),
        encode_image(rgb, "JPEG", quality=80),
        encode_image(rgb, "JPEG", progressive=True, exif=rotated),
        encode_image(rgb.convert("CMYK"), "JPEG"),
        encode_image(rgb.quantize(16), "GIF"),
        encode_image(rgb, "BMP"),
        encode_image(rgba, "TIFF"),
        encode_image(rgb, "WEBP", quality=50),
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
    assert_valid(loaded)


def test_fuzz_samples_are_valid():
    for data in SAMPLES:
        assert_valid(decode_image_bytes(data, min_side=1))


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
    load_image(write_image(tmp_path / "x.png", Image.fromarray(random_rgb()), icc_profile=b"bad"))
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
