"""Video and animated-image files: probe, stream the frames in, encode frames out atomically.

Videos (MP4, MOV, WebM, and whatever else the bundled FFmpeg demuxes) go through PyAV, whose
wheels ship their own FFmpeg, so no system ffmpeg is needed. Animated GIF, WebP and PNG (APNG)
go through Pillow. Frames stream: a reader holds one decoded frame at a time, and a writer
encodes each frame as it comes, into a temporary file that becomes the output only when the
last frame is in (`jaxstyle.io.files.atomic_path`).

What is kept: the frame count, each frame's timestamp (so variable frame rates stay as they
were), the size, and the audio, copied packet for packet where the output container takes its
codec and re-encoded (AAC, or Opus for WebM) where it does not.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageSequence

from jaxstyle.errors import ImageError, InputNotFoundError, UsageError
from jaxstyle.io.decode import DEFAULT_MAX_PIXELS
from jaxstyle.io.files import PathLike, atomic_path

logger = logging.getLogger(__name__)

Kind = Literal["video", "animation"]

#: Output extension -> (kind, container or Pillow format).
OUTPUT_FORMATS: dict[str, tuple[Kind, str]] = {
    ".mp4": ("video", "mp4"),
    ".mov": ("video", "mov"),
    ".webm": ("video", "webm"),
    ".gif": ("animation", "GIF"),
    ".webp": ("animation", "WEBP"),
    ".png": ("animation", "PNG"),
    ".apng": ("animation", "PNG"),
}

# Video encoders and their settings per container. CRF 18 (x264) is visually lossless for most
# footage; VP9 at CRF 31 in constant-quality mode (b:v 0) is its usual equivalent, with
# cpu-used 4 and row threading so that encoding stays well below the stylization's cost.
_ENCODERS = {
    "mp4": ("libx264", {"crf": "18", "preset": "medium"}),
    "mov": ("libx264", {"crf": "18", "preset": "medium"}),
    "webm": ("libvpx-vp9", {"crf": "31", "b": "0", "cpu-used": "4", "row-mt": "1"}),
}
_AUDIO_ENCODERS = {"mp4": "aac", "mov": "aac", "webm": "libopus"}

# The signatures Pillow's animated formats start with; anything else is handed to FFmpeg.
_PILLOW_SIGNATURES = ((b"GIF87a", "GIF"), (b"GIF89a", "GIF"), (b"\x89PNG\r\n\x1a\n", "PNG"))


@dataclass(frozen=True)
class VideoInfo:
    """What a video or animated image holds, read from its header."""

    path: Path
    kind: Kind
    size: tuple[int, int]  # (H, W)
    frames: int | None  # declared frame count (None when the container does not say)
    rate: Fraction  # average frames per second
    codec: str  # the video codec, or the Pillow format
    audio: str | None  # the audio codec, if there is an audio stream
    loop: int = 0  # animations: 0 = forever, as Pillow's ``loop``


@dataclass(frozen=True)
class Frame:
    """One decoded frame: RGB uint8 (H, W, 3), and when it is shown."""

    index: int
    rgb: np.ndarray
    time: float  # seconds from the start
    duration: float  # seconds until the next frame


def output_kind(path: PathLike) -> tuple[Kind, str]:
    """(kind, format) of an output path from its extension, or UsageError."""
    shown = Path(path)
    suffix = shown.suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        what = f"unsupported file extension '{shown.suffix}'" if suffix else "no file extension"
        raise UsageError(f"cannot write '{shown}': {what}; use one of {', '.join(OUTPUT_FORMATS)}")
    return OUTPUT_FORMATS[suffix]


def _pillow_format(path: Path) -> str | None:
    with open(path, "rb") as stream:
        head = stream.read(16)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return next((fmt for signature, fmt in _PILLOW_SIGNATURES if head.startswith(signature)), None)


def _check_size(path: Path, size: tuple[int, int], max_pixels: int) -> None:
    h, w = size
    if h < 1 or w < 1:
        raise ImageError(f"'{path}' has frames of {w}x{h} px")
    if h * w > max_pixels:
        raise ImageError(
            f"'{path}' has frames of {w}x{h} px ({h * w / 1e6:.0f} Mpx): too large, a frame may have at most "
            f"{max_pixels / 1e6:.0f} Mpx"
        )


def probe(path: PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> VideoInfo:
    """Read a video's or an animated image's header (and a video's first frame, for its display
    rotation), checking the frame size before any frame is decoded.

    Raises:
        InputNotFoundError: no such file, or a directory.
        ImageError: not a video or animated image, a still image, no video stream, a codec the
            bundled FFmpeg cannot decode, or frames larger than ``max_pixels``.
    """
    path = Path(path)
    if not path.exists():
        raise InputNotFoundError(f"'{path}' does not exist")
    if path.is_dir():
        raise InputNotFoundError(f"'{path}' is a directory, not a video")
    if path.stat().st_size == 0:
        raise ImageError(f"'{path}' is empty")
    fmt = _pillow_format(path)
    return _probe_animation(path, fmt, max_pixels) if fmt else _probe_video(path, max_pixels)


def _probe_animation(path: Path, fmt: str, max_pixels: int) -> VideoInfo:
    try:
        with Image.open(path, formats=[fmt]) as image:
            frames = getattr(image, "n_frames", 1)
            durations = []
            if frames > 1:
                _check_size(path, (image.height, image.width), max_pixels)
                for frame in ImageSequence.Iterator(image):
                    frame.load()  # WebP sets a frame's duration only once it is decoded
                    durations.append(frame.info.get("duration", 100) or 100)
            loop = image.info.get("loop", 0)
            size = (image.height, image.width)
    except Image.DecompressionBombError as error:
        raise ImageError(f"'{path}' has frames too large to decode ({error})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageError(f"'{path}' is not a readable {fmt} image ({error})") from None
    if frames < 2:
        raise ImageError(f"'{path}' is a still image, not an animation; use 'jaxstyle stylize' for it")
    mean = sum(durations) / len(durations) / 1000.0
    return VideoInfo(path, "animation", size, frames, Fraction(1 / mean).limit_denominator(1000), fmt, None, loop)


@contextlib.contextmanager
def _open_container(path: Path):
    import av

    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.error.FFmpegError as error:
        raise ImageError(f"'{path}' is not a video or animated image ({_reason(error)})") from None
    try:
        yield container
    finally:
        container.close()


def _reason(error: BaseException) -> str:
    text = getattr(error, "strerror", None) or str(error)
    return " ".join(str(text).split())


def _probe_video(path: Path, max_pixels: int) -> VideoInfo:
    import av

    with _open_container(path) as container:
        if not container.streams.video:
            raise ImageError(f"'{path}' has no video stream: there are no frames to stylize")
        stream = container.streams.video[0]
        name = stream.codec_context.name if stream.codec_context is not None else None
        try:
            av.codec.Codec(name, "r")
        except (av.error.FFmpegError, ValueError, TypeError):
            tag = getattr(stream.codec_context, "codec_tag", None) if stream.codec_context is not None else None
            raise ImageError(f"'{path}' uses a video codec that cannot be decoded here ({name or tag or 'unknown'})")
        size = (stream.height, stream.width)
        _check_size(path, size, max_pixels)  # before a frame of that size is decoded
        if _quarter_turns(_first_rotation(container, stream)) % 2:
            size = size[::-1]  # shown upright, a portrait phone video is taller than it is wide
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
        frames = stream.frames or None
        return VideoInfo(path, "video", size, frames, Fraction(rate), name, audio)


def _first_rotation(container, stream) -> int:
    """The display rotation of the first frame (0 when there is none or it cannot be decoded yet;
    decoding proper reports a broken stream)."""
    import av

    try:
        return next(iter(container.decode(stream))).rotation or 0
    except (StopIteration, av.error.FFmpegError):
        return 0


def _quarter_turns(rotation: int) -> int:
    """Counter-clockwise quarter turns that show a frame upright, from its display rotation."""
    return round(rotation / 90) % 4


def read_frames(info: VideoInfo) -> Iterator[Frame]:
    """The frames of a `probe`-d file, one at a time, as RGB uint8.

    Raises ImageError when the stream cannot be decoded (a broken file); frames already given
    stay valid.
    """
    if info.kind == "animation":
        yield from _animation_frames(info)
    else:
        yield from _video_frames(info)


def _animation_frames(info: VideoInfo) -> Iterator[Frame]:
    time, index = 0.0, 0
    try:
        with Image.open(info.path, formats=[info.codec]) as image:
            for frame in ImageSequence.Iterator(image):
                rgb = np.asarray(frame.convert("RGB"))  # decoded first: WebP sets the duration then
                duration = (frame.info.get("duration", 100) or 100) / 1000.0
                yield Frame(index, rgb, time, duration)
                time, index = time + duration, index + 1
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageError(f"'{info.path}' is broken after frame {index} ({error})") from None


def _video_frames(info: VideoInfo) -> Iterator[Frame]:
    import av

    step = 1.0 / float(info.rate)
    with _open_container(info.path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        decoded = _decoded_frames(container, stream)
        previous: Frame | None = None
        index = 0
        try:
            for picture in decoded:
                time = float(picture.time) if picture.time is not None else index * step
                # Phones store portrait video sideways with a display rotation; players (and
                # FFmpeg's own autorotate) turn it upright, and so does this.
                rgb = np.rot90(picture.to_ndarray(format="rgb24"), _quarter_turns(picture.rotation or 0))
                frame = Frame(index, np.ascontiguousarray(rgb), time, step)
                if previous is not None:
                    yield Frame(previous.index, previous.rgb, previous.time, max(time - previous.time, 0.0) or step)
                previous, index = frame, index + 1
        except av.error.FFmpegError as error:
            if previous is not None:
                yield previous
            raise ImageError(f"'{info.path}' is broken after frame {index} ({_reason(error)})") from None
        if previous is not None:
            yield previous


def _decoded_frames(container, stream):
    """The stream's frames; when the demuxer hits broken data, the frames the decoder still holds
    (it keeps several back for reordering) come out before the error."""
    import av

    try:
        for packet in container.demux(stream):
            yield from packet.decode()  # the last, empty packet flushes the decoder
    except av.error.FFmpegError:
        try:
            yield from stream.codec_context.decode(None)
        except av.error.FFmpegError:
            pass
        raise


def write_frames(
    path: PathLike,
    frames: Iterable[Frame],
    source: VideoInfo,
    *,
    overwrite: bool = False,
    inputs: Sequence[PathLike] = (),
) -> Path:
    """Encode ``frames`` (RGB uint8, all one size) into ``path``, atomically.

    The format follows the extension (`OUTPUT_FORMATS`). From a video into a video container,
    ``source``'s audio comes along. Nothing is left at ``path`` if anything fails.
    """
    kind, fmt = output_kind(path)
    with atomic_path(path, overwrite=overwrite, inputs=inputs) as temporary:
        if kind == "animation":
            _write_animation(temporary, frames, fmt, source)
        else:
            _write_video(temporary, frames, fmt, source)
    return Path(path).resolve()


def _write_animation(path: Path, frames: Iterable[Frame], fmt: str, source: VideoInfo) -> None:
    # Pillow's animated writers need every frame at once (the APNG writer ignores an iterator);
    # animations are small, and GIF's writer keeps palette copies of all frames anyway.
    frames = list(frames)
    if not frames:
        raise ValueError("no frames to write")
    images = [Image.fromarray(frame.rgb) for frame in frames]
    options = {"save_all": True, "loop": source.loop, "duration": [round(f.duration * 1000) for f in frames]}
    if fmt == "WEBP":
        options.update(lossless=False, quality=90, method=4)
    images[0].save(path, format=fmt, append_images=images[1:], **options)


def _write_video(path: Path, frames: Iterable[Frame], fmt: str, source: VideoInfo) -> None:
    import av

    codec, settings = _ENCODERS[fmt]
    time_base = Fraction(1, 90_000)  # MPEG's clock: exact for every common frame rate
    with av.open(str(path), "w", format=fmt) as output:
        stream = audio = None
        try:
            for frame in frames:
                if stream is None:  # the first frame gives the size; video first, then the audio
                    h, w = frame.rgb.shape[:2]
                    stream = output.add_stream(codec, rate=source.rate, options=dict(settings))
                    stream.width, stream.height = w, h
                    # 4:2:0 needs even sides; an odd-sized video keeps its size in 4:4:4 instead.
                    stream.pix_fmt = "yuv420p" if h % 2 == 0 and w % 2 == 0 else "yuv444p"
                    stream.time_base = stream.codec_context.time_base = time_base
                    if source.kind == "video" and source.audio:
                        audio = _AudioCopy(output, source, fmt)
                picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame.rgb), format="rgb24")
                picture.pts = round(frame.time / time_base)
                picture.time_base = time_base
                if audio is not None:
                    audio.until(frame.time)
                output.mux(stream.encode(picture))
            if stream is None:
                raise ValueError("no frames to write")
            output.mux(stream.encode(None))
            if audio is not None:
                audio.until(None)
        finally:
            if audio is not None:
                audio.close()


class _AudioCopy:
    """The source's first audio stream into an output container, interleaved with the video:
    packets copied where the container takes the codec, re-encoded otherwise."""

    def __init__(self, output, source: VideoInfo, fmt: str) -> None:
        import av

        self.container = av.open(str(source.path), metadata_errors="ignore")
        self.input = self.container.streams.audio[0]
        self.output = output
        name = self.input.codec_context.name
        # WebM takes only Opus and Vorbis, whatever FFmpeg's muxer would accept.
        self.copy = name in ("opus", "vorbis") if fmt == "webm" else name in output.supported_codecs
        if self.copy:
            self.stream = output.add_stream_from_template(self.input)
        else:
            rate = self.input.codec_context.sample_rate or 48_000
            self.stream = output.add_stream(_AUDIO_ENCODERS[fmt], rate=48_000 if fmt == "webm" else rate)
            self.stream.layout = "stereo" if self.input.codec_context.channels >= 2 else "mono"
        self.packets = self._packets()
        self.pending = next(self.packets, None)

    def _packets(self):
        for packet in self.container.demux(self.input):
            if packet.dts is None:  # the demuxer's flush packet
                continue
            if self.copy:
                yield float(packet.pts * packet.time_base) if packet.pts is not None else 0.0, [packet]
            else:
                for frame in packet.decode():
                    frame.pts = None
                    yield float(frame.time or 0.0), self.stream.encode(frame)

    def until(self, time: float | None) -> None:
        """Mux the audio that starts before ``time`` (all of it for None)."""
        while self.pending is not None and (time is None or self.pending[0] <= time):
            for packet in self.pending[1]:
                packet.stream = self.stream
                self.output.mux(packet)
            self.pending = next(self.packets, None)
        if time is None and not self.copy:
            self.output.mux(self.stream.encode(None))

    def close(self) -> None:
        self.container.close()
