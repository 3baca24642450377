"""Video and animation files (jaxstyle.io.video): probe, read, write, audio, timing, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from video_files import audio_seconds, moving_frames, write_animation, write_video

from jaxstyle.errors import ImageError, InputNotFoundError, OutputError, UsageError
from jaxstyle.io.files import temporaries_of
from jaxstyle.io.video import Frame, output_kind, probe, read_frames, write_frames


@pytest.fixture(scope="module")
def frames():
    return moving_frames(8)


def _decoded(path):
    return list(read_frames(probe(path)))


def _pixels(decoded):
    return np.stack([f.rgb for f in decoded]).astype(np.float64)


@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".webm"])
def test_video_round_trip_keeps_count_size_rate_and_times(tmp_path, frames, suffix):
    source = write_video(tmp_path / f"in{suffix}", frames, rate=12)
    info = probe(source)
    assert info.kind == "video" and info.size == (48, 64) and info.audio is None
    assert float(info.rate) == pytest.approx(12, rel=0.01)
    decoded = _decoded(source)
    assert len(decoded) == 8
    np.testing.assert_allclose([f.time for f in decoded], np.arange(8) / 12, atol=1e-3)
    out = write_frames(tmp_path / f"out{suffix}", decoded, info)
    again = _decoded(out)
    assert len(again) == 8 and probe(out).size == (48, 64)
    np.testing.assert_allclose([f.time for f in again], [f.time for f in decoded], atol=1e-3)
    assert np.mean(np.abs(_pixels(again) - _pixels(decoded))) < 8.0  # lossy 4:2:0, but the same pictures
    assert np.mean(np.abs(_pixels(again) - _pixels(decoded)[::-1])) > 20.0


def test_variable_frame_times_are_kept(tmp_path, frames):
    times = [0.0, 0.04, 0.2, 0.25, 0.6, 0.61, 0.9, 1.5]
    source = write_video(tmp_path / "vfr.mp4", frames, times=times)
    decoded = _decoded(source)
    np.testing.assert_allclose([f.time for f in decoded], times, atol=1e-3)
    np.testing.assert_allclose([f.duration for f in decoded[:-1]], np.diff(times), atol=1e-3)
    again = _decoded(write_frames(tmp_path / "out.mov", decoded, probe(source)))
    np.testing.assert_allclose([f.time for f in again], times, atol=1e-3)


@pytest.mark.parametrize("suffix,codec", [(".mp4", "aac"), (".mov", "aac"), (".webm", "opus")])
def test_audio_passes_through(tmp_path, frames, suffix, codec):
    source = write_video(tmp_path / "in.mp4", frames, rate=8, audio_seconds=1.0)
    info = probe(source)
    assert info.audio == "aac"
    out = write_frames(tmp_path / f"out{suffix}", _decoded(source), info)
    assert probe(out).audio == codec  # copied into MP4/MOV, re-encoded to Opus for WebM
    assert audio_seconds(out) == pytest.approx(audio_seconds(source), abs=0.05)


def test_animation_output_has_no_audio_and_video_keeps_none(tmp_path, frames):
    source = write_video(tmp_path / "in.mp4", frames, rate=8, audio_seconds=1.0)
    out = write_frames(tmp_path / "out.gif", _decoded(source), probe(source))
    assert probe(out).audio is None and len(_decoded(out)) == 8


@pytest.mark.parametrize("suffix,fmt", [(".gif", "GIF"), (".webp", "WEBP"), (".png", "PNG")])
def test_animation_round_trip_keeps_frames_and_durations(tmp_path, frames, suffix, fmt):
    durations = [40, 80, 120, 40, 40, 200, 60, 100]
    source = write_animation(tmp_path / f"in{suffix}", frames, durations, fmt)
    info = probe(source)
    assert info.kind == "animation" and info.codec == fmt and info.frames == 8 and info.size == (48, 64)
    decoded = _decoded(source)
    np.testing.assert_allclose([f.duration for f in decoded], np.array(durations) / 1000, atol=1e-3)
    np.testing.assert_allclose([f.time for f in decoded], np.cumsum([0, *durations[:-1]]) / 1000, atol=1e-3)
    if fmt != "GIF":  # lossless here; GIF's palette is not
        np.testing.assert_array_equal(_pixels(decoded), np.stack(frames))
    again = _decoded(write_frames(tmp_path / f"out{suffix}", decoded, info))
    np.testing.assert_allclose([f.duration for f in again], np.array(durations) / 1000, atol=1e-3)


def test_video_into_animation_and_back(tmp_path, frames):
    source = write_video(tmp_path / "in.mp4", frames, rate=10)
    gif = write_frames(tmp_path / "out.gif", _decoded(source), probe(source))
    decoded = _decoded(gif)
    np.testing.assert_allclose([f.duration for f in decoded], 0.1, atol=1e-3)
    back = _decoded(write_frames(tmp_path / "back.mp4", decoded, probe(gif)))
    np.testing.assert_allclose([f.time for f in back], np.arange(8) / 10, atol=1e-3)


def test_odd_sized_video_keeps_its_size(tmp_path):
    odd = [np.full((33, 47, 3), 30 * i, np.uint8) for i in range(4)]
    info = probe(write_animation(tmp_path / "odd.png", odd, [50] * 4, "PNG"))
    out = write_frames(tmp_path / "odd.mp4", _decoded(tmp_path / "odd.png"), info)
    again = _decoded(out)
    assert probe(out).size == (33, 47) and len(again) == 4
    np.testing.assert_allclose(_pixels(again).mean(axis=(1, 2, 3)), [0, 30, 60, 90], atol=2)


def test_a_failed_write_leaves_nothing(tmp_path, frames):
    source = write_video(tmp_path / "in.mp4", frames)
    decoded = _decoded(source)

    def broken():
        yield from decoded[:3]
        raise RuntimeError("stylization failed")

    target = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError):
        write_frames(target, broken(), probe(source))
    assert not target.exists() and temporaries_of(target) == []
    with pytest.raises(OutputError, match="input"):
        write_frames(source, decoded, probe(source), overwrite=True, inputs=[source])
    target.write_bytes(b"keep me")
    with pytest.raises(OutputError, match="--overwrite"):
        write_frames(target, decoded, probe(source))
    assert target.read_bytes() == b"keep me"


def test_frames_stream_one_at_a_time(tmp_path, frames):
    reader = read_frames(probe(write_video(tmp_path / "in.mp4", frames)))
    first = next(reader)
    assert isinstance(first, Frame) and first.index == 0 and first.rgb.dtype == np.uint8
    assert [f.index for f in reader] == list(range(1, 8))


def test_output_kind_by_extension():
    assert output_kind("a.MP4") == ("video", "mp4")
    assert output_kind("a.apng") == ("animation", "PNG")
    with pytest.raises(UsageError, match=r"\.avi"):
        output_kind("a.avi")
    with pytest.raises(UsageError, match="no file extension"):
        output_kind("a")


def test_bad_inputs_get_one_clear_error(tmp_path, frames):
    with pytest.raises(InputNotFoundError, match="does not exist"):
        probe(tmp_path / "missing.mp4")
    with pytest.raises(InputNotFoundError, match="directory"):
        probe(tmp_path)
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        probe(tmp_path / "empty.mp4")
    (tmp_path / "text.mp4").write_bytes(b"not a video at all\n" * 20)
    with pytest.raises(ImageError, match="not a video"):
        probe(tmp_path / "text.mp4")
    Image.fromarray(frames[0]).save(tmp_path / "still.png")
    with pytest.raises(ImageError, match="still image"):
        probe(tmp_path / "still.png")
    good = write_video(tmp_path / "good.mp4", frames, faststart=True).read_bytes()
    (tmp_path / "unknown.mp4").write_bytes(good.replace(b"avc1", b"zzzz"))
    with pytest.raises(ImageError, match="codec"):
        probe(tmp_path / "unknown.mp4")
    with pytest.raises(ImageError, match="Mpx"):
        probe(tmp_path / "good.mp4", max_pixels=1000)


def test_a_truncated_video_reads_as_broken(tmp_path, frames):
    data = write_video(tmp_path / "good.mp4", frames, faststart=True).read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) * 6 // 10])
    info = probe(tmp_path / "cut.mp4")
    assert info.frames == 8  # the header still promises all of them
    with pytest.raises(ImageError, match="broken after frame"):
        _decoded(tmp_path / "cut.mp4")


@pytest.mark.parametrize("rotation,corner", [(-90, "top-right"), (90, "bottom-left"), (180, "bottom-right")])
def test_a_rotated_phone_video_reads_upright(tmp_path, rotation, corner):
    """The display matrix says how players turn the frame; FFmpeg's autorotate turns a rotation
    of -90 (clockwise in display) with 'transpose=clock', and so on."""
    import av

    picture = np.zeros((48, 64, 3), np.uint8)
    picture[:8, :16] = 255  # a mark in the top-left corner of the stored frame
    path = tmp_path / "phone.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.set_display_rotation(rotation)
        for _ in range(3):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        out.mux(stream.encode(None))
    info = probe(path)
    upright = (64, 48) if rotation != 180 else (48, 64)
    assert info.size == upright
    rgb = _decoded(path)[0].rgb
    assert rgb.shape[:2] == upright
    rows, cols = np.nonzero(rgb[..., 0] > 128)
    h, w = upright
    where = ("top" if rows.max() < h // 2 else "bottom") + "-" + ("left" if cols.max() < w // 2 else "right")
    assert where == corner
    out = write_frames(tmp_path / "out.mp4", _decoded(path), info)
    assert probe(out).size == upright  # written upright, with no rotation left to apply
