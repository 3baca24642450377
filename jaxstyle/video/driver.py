"""`run_video`: stream a video's frames through a method, keep each finished frame, encode at the end.

Every finished frame is written at once, atomically, as ``NNNNNN.png`` into a parts folder
beside the output (``OUTPUT.parts/``), with the settings that made it in ``settings.json``. A
re-run with the same input and settings after Ctrl-C, a crash or kill -9 decodes the video again,
skips the frames it finds there and carries on from the last one; the output itself is encoded
only when every frame is in, into a temporary file that then takes its name, and the parts
folder is removed. Frames stream: at any time the driver holds one batch of decoded frames,
their results, and the frame before them.

Temporal consistency: for each frame, the optical flow to and from the previous input frame
(`jaxstyle.video.flow`) warps the previous result onto it, with Ruder et al.'s occlusion mask;
the method decides what to do with it (`jaxstyle.methods.Runner.stylize_frames`). The previous
result is taken as its 8-bit PNG, so that a resumed run continues exactly as an uninterrupted one.

Silent: it reports through a callback (`VideoStarted`, `FrameDone`, the method's own progress).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jaxstyle import methods, problem
from jaxstyle.config import BatchConfig, StyleConfig
from jaxstyle.errors import ImageError
from jaxstyle.io.files import check_output_path
from jaxstyle.io.image import load_image, resize_to, save_image, to_8bit
from jaxstyle.io.parts import PartsFolder, parts_folder
from jaxstyle.io.video import Frame, VideoInfo, output_kind, probe, read_frames, write_frames
from jaxstyle.methods import Previous
from jaxstyle.video import flow


@dataclass(frozen=True)
class VideoStarted:
    """Sent once, after the checks and before the first frame."""

    info: VideoInfo
    size: tuple[int, int]  # (h, w) at which frames are stylized
    parts: Path  # where finished frames are kept
    already_done: int  # frames finished by an earlier run


@dataclass(frozen=True)
class FrameDone:
    """One frame finished (stylized now, or found from an earlier run)."""

    index: int
    done: int  # frames finished so far, earlier runs' included
    total: int | None  # frames in the video, where the container says
    stylized: int  # frames stylized by this run
    elapsed: float  # seconds since this run's first frame
    fps: float  # frames stylized by this run per second
    eta: float | None  # seconds left at that rate


@dataclass(frozen=True)
class Encoding:
    """Every frame is in; the output file is being encoded."""

    frames: int
    output: Path


@dataclass(frozen=True)
class VideoSummary:
    output: Path
    frames: int
    stylized: int  # by this run (the rest came from the parts folder)
    seconds: float


class _Parts(PartsFolder):
    """The parts folder of a video: ``NNNNNN.png``, one per finished frame."""

    def __init__(self, folder: Path, record: dict, *, overwrite: bool) -> None:
        super().__init__(folder, record, overwrite=overwrite, what="frames")
        self.done: set[int] = {int(name[:6]) for name in self.names("[0-9]" * 6 + ".png")}

    def frame(self, index: int) -> Path:
        return self.path(f"{index:06d}.png")

    def save(self, index: int, image: np.ndarray) -> None:
        self.write(f"{index:06d}.png", lambda path: save_image(path, image, overwrite=True))


def _quantised(image: np.ndarray) -> np.ndarray:
    """``image`` as its 8-bit PNG holds it (see the module docstring)."""
    return to_8bit(image).astype(np.float32) / 255.0


def link_frames(current: np.ndarray, previous: np.ndarray, result: np.ndarray) -> Previous:
    """The previous frame's ``result`` warped onto the ``current`` input frame (both inputs at the
    result's size), with the mask of the pixels the warp can be trusted at."""
    backward = flow.estimate_flow(current, previous)
    forward = flow.estimate_flow(previous, current)
    warped, _ = flow.warp(_quantised(result), backward)
    return Previous(warped, flow.consistency_mask(backward, forward))


def run_video(
    input_path: str | Path,
    style_paths: Sequence[str | Path],
    output: str | Path,
    config: StyleConfig,
    *,
    style_blend: Sequence[float] | None = None,
    weights=None,
    batch: BatchConfig | None = None,
    overwrite: bool = False,
    callback: Callable[[object], None] | None = None,
) -> VideoSummary:
    """Stylize every frame of a video or animated image into ``output`` (format by extension).

    The output keeps the input's size, frame count and timing, and its audio where the output
    container can hold it; frames are stylized at ``config.max_size`` on the long side.
    ``batch.batch_size`` frames go through the network at once where the method allows.

    Raises:
        InputNotFoundError, ImageError: a missing, unreadable, broken or oversized input.
        UsageError, OutputError: bad settings, an output that is an input or exists without
            ``overwrite``, or a parts folder of other settings.
        KeyboardInterrupt: passed on; every finished frame is kept in `parts_folder`.
    """
    emit = callback or (lambda event: None)
    config = config.validate()
    batch = (batch or BatchConfig()).validate()
    input_path, output = Path(input_path), Path(output)
    style_paths = [Path(path) for path in style_paths]
    info = probe(input_path)
    output_kind(output)
    inputs = [input_path, *style_paths]
    output = check_output_path(output, overwrite=overwrite, inputs=inputs)
    if style_paths:
        problem.check_style_blend(style_blend, len(style_paths))
    style_set = problem.make_style_set([load_image(path).rgb for path in style_paths], style_blend, config)
    size = problem.fit_long_side(info.size, config.max_size)
    runner = methods.setup(config, style_set, weights=weights)
    record = problem.settings_record(config, [input_path, *style_paths], style_blend, runner.weights_id)
    parts = _Parts(parts_folder(output), record, overwrite=overwrite)
    done = parts.done
    emit(VideoStarted(info, size, parts.folder, len(done)))

    chunk_size = runner.frame_batch or batch.batch_size
    timing: list[tuple[float, float]] = []
    pending: list[problem.BatchImage] = []
    before: problem.BatchImage | None = None  # the frame before `pending`
    last: np.ndarray | None = None  # its result
    stylized, started = 0, time.perf_counter()

    def flush() -> None:
        nonlocal before, last, stylized
        if not pending:
            return
        contents = [before.content if before is not None else None, *(image.content for image in pending)]

        def warp(index: int, result: np.ndarray) -> Previous:
            return link_frames(contents[index + 1], contents[index], result)

        results = runner.stylize_frames(pending, last if before is not None else None, warp, emit)
        for image, result in zip(pending, results):
            parts.save(image.key, result)
            stylized += 1
            report(image.key)
        before, last = pending[-1], _quantised(results[-1])
        pending.clear()

    def report(index: int) -> None:
        elapsed = time.perf_counter() - started
        fps = stylized / elapsed if elapsed > 0 and stylized else 0.0
        finished = index + 1
        left = info.frames - finished if info.frames else None
        eta = left / fps if left is not None and fps > 0 else None
        emit(FrameDone(index, finished, info.frames, stylized, elapsed, fps, eta))

    skipped: Frame | None = None  # the last frame an earlier run finished, prepared only if needed
    try:
        for frame in read_frames(info):
            timing.append((frame.time, frame.duration))
            if frame.index in done:
                flush()
                skipped = frame
                report(frame.index)
                continue
            if skipped is not None:  # carry on from a frame an earlier run finished
                before = problem.prepare_batch_image(skipped.index, skipped.rgb, style_set, config)
                last, skipped = load_image(parts.frame(skipped.index)).rgb, None
            pending.append(problem.prepare_batch_image(frame.index, frame.rgb, style_set, config))
            if len(pending) == chunk_size:
                flush()
    except ImageError as error:  # the stream broke: keep what it gave
        flush()
        kept = f"; the stylized frames are kept in '{parts.folder}'" if parts.folder.is_dir() else ""
        raise ImageError(f"{error}{kept}, and no video is written") from None
    flush()

    count = len(timing)
    if count == 0:
        raise ImageError(f"'{input_path}' has no frames")
    # An MP4's edit list can hide a frame or two that its header still counts; more missing
    # frames than that mean the file ends early.
    if info.frames and info.frames - count > max(2, info.frames // 100):
        raise ImageError(
            f"'{input_path}' ends after {count} of its {info.frames} frames: the file is truncated or broken; "
            f"the stylized frames are kept in '{parts.folder}', and no video is written"
        )
    emit(Encoding(count, output))
    write_frames(output, _finished_frames(parts, timing, info.size), info, overwrite=overwrite, inputs=inputs)
    parts.remove()
    return VideoSummary(output, count, stylized, time.perf_counter() - started)


def _finished_frames(parts: _Parts, timing: Sequence[tuple[float, float]], size: tuple[int, int]) -> Iterator[Frame]:
    """The kept frames, back at the input's size, one at a time."""
    for index, (start, duration) in enumerate(timing):
        rgb = load_image(parts.frame(index)).rgb
        if rgb.shape[:2] != tuple(size):
            rgb = resize_to(rgb, *size)
        yield Frame(index, to_8bit(rgb), start, duration)
