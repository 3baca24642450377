"""Tests for jaxstyle.io.encode: safe, atomic saving with metadata, and the output checks before it.

Every image is generated here, in tmp_path or in memory; expected values are computed
independently (NumPy, Pillow reading the files back), not with the code under test.
"""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
from image_files import block_rgb, random_rgb, write_image
from PIL import Image, PngImagePlugin

from jaxstyle.errors import InputNotFoundError, NumericalError, OutputError, UsageError
from jaxstyle.io import files
from jaxstyle.io.decode import load_image, read_image_metadata
from jaxstyle.io.encode import SUPPORTED_OUTPUT_SUFFIXES, check_image_suffix, save_image
from jaxstyle.io.files import check_output_path

# ----------------------------------------------------------------------------- saving


@pytest.mark.parametrize("suffix", sorted(SUPPORTED_OUTPUT_SUFFIXES))
def test_save_round_trip(tmp_path, suffix):
    pixels = block_rgb()
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
        check_image_suffix(tmp_path / "out.gif")
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
    source = write_image(tmp_path / "in.png", Image.fromarray(random_rgb()))
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
    monkeypatch.setattr(files.os, "access", lambda *args, **kwargs: False)
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
    path = write_image(tmp_path / "gimp.png", Image.new("RGB", (16, 16)), pnginfo=info)
    assert read_image_metadata(path) == {"Software": "GIMP"}


def test_metadata_of_missing_file(tmp_path):
    with pytest.raises(InputNotFoundError):
        read_image_metadata(tmp_path / "nope.png")
