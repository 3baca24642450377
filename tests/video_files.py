"""Small videos and animations that the tests write themselves (PyAV and Pillow, no files shipped)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image


def moving_frames(count: int, size: tuple[int, int] = (48, 64), seed: int = 0) -> list[np.ndarray]:
    """``count`` RGB uint8 frames of a smooth random picture panning 2 px right per frame."""
    h, w = size
    rng = np.random.default_rng(seed)
    big = rng.random((h // 4 + 2, (w + 2 * count) // 4 + 2, 3))
    picture = np.asarray(
        Image.fromarray((big * 255).astype(np.uint8)).resize((big.shape[1] * 4, big.shape[0] * 4), Image.BICUBIC)
    )
    return [np.ascontiguousarray(picture[:h, 2 * (count - t) : 2 * (count - t) + w]) for t in range(count)]


def noise_frames(count: int, size: tuple[int, int] = (48, 64)) -> list[np.ndarray]:
    """Random frames: large packets, so that a cut file breaks between frames, not in the first."""
    return [np.random.default_rng(i).integers(0, 256, (*size, 3), dtype=np.uint8) for i in range(count)]


def write_video(
    path: Path,
    frames: list[np.ndarray],
    *,
    rate: int = 24,
    times: list[float] | None = None,
    audio_seconds: float = 0.0,
    audio_codec: str = "aac",
    faststart: bool = False,
) -> Path:
    """An H.264 (MP4/MOV/MKV) or VP9 (WebM) video of ``frames``, at ``times`` (seconds) or
    ``rate`` fps, with an optional sine tone as audio."""
    webm = path.suffix == ".webm"
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as out:
        stream = out.add_stream("libvpx-vp9" if webm else "libx264", rate=rate)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        time_base = Fraction(1, 1000)
        stream.time_base = stream.codec_context.time_base = time_base
        sound = None
        if audio_seconds:
            sound = out.add_stream(audio_codec, rate=48_000)
            sound.layout = "stereo"
        for index, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = round((times[index] if times else index / rate) * 1000)
            frame.time_base = time_base
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
        if sound is not None:
            samples = np.arange(int(audio_seconds * 48_000)) / 48_000
            tone = (0.2 * np.sin(2 * np.pi * 440 * samples)).astype(np.float32)
            for start in range(0, len(tone), 960):
                chunk = np.ascontiguousarray(np.stack([tone[start : start + 960]] * 2))
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
                frame.sample_rate, frame.pts = 48_000, start
                out.mux(sound.encode(frame))
            out.mux(sound.encode(None))
    return path


def write_animation(path: Path, frames: list[np.ndarray], durations_ms: list[int], fmt: str) -> Path:
    images = [Image.fromarray(f) for f in frames]
    options = {"lossless": True} if fmt == "WEBP" else {}
    images[0].save(path, format=fmt, save_all=True, append_images=images[1:], duration=durations_ms, loop=0, **options)
    return path


def audio_seconds(path: Path) -> float | None:
    """Seconds of audio in a file (decoded), or None without an audio stream."""
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        return sum(frame.samples for frame in container.decode(stream)) / stream.codec_context.sample_rate
