"""`run_video`: stream a video's frames through a method, keep each finished frame, encode as they finish.

Every finished frame is written at once, atomically, as ``NNNNNN.png`` into a parts folder
beside the output (``OUTPUT.parts/``), with the settings that made it in ``settings.json``. A
re-run with the same input and settings after Ctrl-C, a crash or kill -9 decodes the video again,
skips the frames it finds there and carries on from the last one. The output is encoded on a
thread of its own as frames finish (`_LiveEncoder`), into a temporary file that takes the
output's name only when every frame is in; then the parts folder is removed. Frames stream: at any time the driver holds one batch of decoded frames,
their results, and the frame before them.

Temporal consistency: for each frame, the optical flow to and from the previous input frame
(`jaxstyle.video.flow`) warps the previous result onto it, with Ruder et al.'s occlusion mask;
the method decides what to do with it (`jaxstyle.methods.Runner.stylize_frames`). The previous
result is taken as its 8-bit PNG, so that a resumed run continues exactly as an uninterrupted one.

Silent: it reports through a callback (`VideoStarted`, `FrameDone`, the method's own progress).
"""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jaxstyle import methods, prepare
from jaxstyle.config import BatchConfig, StyleConfig
from jaxstyle.errors import ImageError, OutputError
from jaxstyle.io.behind import Behind
from jaxstyle.io.decode import load_image
from jaxstyle.io.encode import save_image, to_8bit
from jaxstyle.io.files import check_output_path, file_sha256
from jaxstyle.io.parts import PartsFolder, parts_folder
from jaxstyle.io.resize import resize_to
from jaxstyle.io.video import Frame, VideoInfo, output_kind, probe, read_frames, write_frames
from jaxstyle.masks import load_masks
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


@dataclass(frozen=True)
class FrameLink:
    """What carries a result from one input frame onto the next: it depends on the inputs only,
    so it is computed ahead, while the network works on the frames before (`run_video`)."""

    backward: np.ndarray  # (H, W, 2): the flow from the current input frame to the previous one
    mask: np.ndarray  # (H, W): where the warp can be trusted (`flow.consistency_mask`)


def frame_link(current: np.ndarray, previous: np.ndarray) -> FrameLink:
    """The flows both ways between two input frames (at the result's size) and the occlusion mask."""
    backward = flow.estimate_flow(current, previous)
    forward = flow.estimate_flow(previous, current)
    return FrameLink(backward, flow.consistency_mask(backward, forward))


def follow_link(link: FrameLink, result: np.ndarray) -> Previous:
    """The previous frame's ``result`` warped onto the current frame along ``link``."""
    warped, _ = flow.warp(_quantised(result), link.backward)
    return Previous(warped, link.mask)


class _Pipeline:
    """The host work around the method, on two threads of its own: the optical flow of the next
    frames while the network (or the optimisation) works on these, and the finished frames'
    PNGs written behind it. Measured on the 512x288 clip, these were most of the time per frame
    (docs/performance.md). At most `AHEAD` frames' flows and as many writes are in flight; on any
    exit, Ctrl-C included, the frames handed to the writer are written first."""

    AHEAD = 8

    def __init__(self, parts: _Parts) -> None:
        self.parts = parts
        # Two frames' flows at once: they were the longest chain of work (DIS both ways and the
        # occlusion mask, about 60 ms a frame on one core against 40 ms of network).
        self.flows = ThreadPoolExecutor(2, thread_name_prefix="jaxstyle-flow")
        self.writer = Behind(self.AHEAD, "jaxstyle-write")
        self.links: dict[int, Future] = {}

    def __enter__(self) -> _Pipeline:  # noqa: PYI034
        return self

    def __exit__(self, *exc) -> None:
        self.flows.shutdown(wait=True, cancel_futures=True)
        self.writer.close(check=exc[0] is None)

    def link_ahead(self, index: int, current: np.ndarray, previous: np.ndarray) -> None:
        self.links[index] = self.flows.submit(frame_link, current, previous)

    def link(self, index: int, current: np.ndarray, previous: np.ndarray) -> FrameLink:
        future = self.links.pop(index, None)
        return future.result() if future is not None else frame_link(current, previous)

    def save(self, index: int, result: np.ndarray) -> None:
        self.writer.submit(self.parts.save, index, result)


class _Abort(Exception):
    """Stops the live encoder: the temporary output is removed (`write_frames` is atomic)."""


class _LiveEncoder:
    """The output encoded on a thread of its own while the frames are stylized, in order: each
    finished frame as it comes (8-bit, as its PNG part holds it), each frame an earlier run
    finished read back from the parts folder. The output appears only when `finish` has every
    frame; `abort` leaves nothing. At most `QUEUE` frames wait for the encoder."""

    QUEUE = 16

    def __init__(self, output: Path, info: VideoInfo, parts: _Parts, *, overwrite: bool, inputs) -> None:
        self.info, self.parts = info, parts
        self.queue: queue.Queue = queue.Queue(self.QUEUE)
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="jaxstyle-encode")
        self.done = self.thread.submit(write_frames, output, self._frames(), info, overwrite=overwrite, inputs=inputs)

    def _frames(self) -> Iterator[Frame]:
        while True:
            item = self.queue.get()
            if item is None:
                return
            if isinstance(item, _Abort):
                raise item
            index, (start, duration), result = item
            rgb = load_image(self.parts.frame(index)).rgb if result is None else _quantised(result)
            if rgb.shape[:2] != tuple(self.info.size):
                rgb = resize_to(rgb, *self.info.size)
            yield Frame(index, to_8bit(rgb), start, duration)

    def _put(self, item) -> None:
        while True:
            if self.done.done():  # the encoder stopped early: its error, not a hang
                self.done.result()
                raise OutputError("the video encoder stopped before the last frame")
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def put(self, index: int, timing: tuple[float, float], result: np.ndarray | None) -> None:
        """Frame ``index`` (None: read it from the parts folder)."""
        self._put((index, timing, result))

    def finish(self) -> None:
        self._put(None)
        self.done.result()
        self.thread.shutdown()

    def abort(self) -> None:
        with contextlib.suppress(queue.Empty):
            while True:  # make room, then tell it to stop
                self.queue.get_nowait()
        with contextlib.suppress(queue.Empty, queue.Full):
            self.queue.put_nowait(_Abort())
        with contextlib.suppress(_Abort, Exception):
            self.done.result()
        self.thread.shutdown()


def run_video(
    input_path: str | Path,
    style_paths: Sequence[str | Path],
    output: str | Path,
    config: StyleConfig,
    *,
    style_blend: Sequence[float] | None = None,
    mask_paths: Sequence[str | Path] | None = None,
    weights=None,
    batch: BatchConfig | None = None,
    overwrite: bool = False,
    callback: Callable[[object], None] | None = None,
) -> VideoSummary:
    """Stylize every frame of a video or animated image into ``output`` (format by extension).

    The output keeps the input's size, frame count and timing, and its audio where the output
    container can hold it; frames are stylized at ``config.max_size`` on the long side.
    ``batch.batch_size`` frames go through the network at once where the method allows.
    ``mask_paths``: where each style goes (`jaxstyle.masks`), one greyscale mask file per style
    (per built-in style named), the same for every frame (a static mask), stretched over the
    frame; read and checked before any work, and part of the settings the kept frames are for.

    Raises:
        InputNotFoundError, ImageError: a missing, unreadable, broken or oversized input.
        UsageError, OutputError: bad settings, an output that is an input or exists without
            ``overwrite``, or a parts folder of other settings.
        MaskError: a mask file that cannot be used, or not one per style.
        KeyboardInterrupt: passed on; every finished frame is kept in `parts_folder`.
    """
    emit = callback or (lambda event: None)
    batch = batch or BatchConfig()
    input_path, output = Path(input_path), Path(output)
    style_paths = [Path(path) for path in style_paths]
    info = probe(input_path)
    output_kind(output)
    mask_paths = None if mask_paths is None else [Path(path) for path in mask_paths]
    inputs = [input_path, *style_paths, *(mask_paths or ())]
    output = check_output_path(output, overwrite=overwrite, inputs=inputs)
    if style_paths:
        prepare.check_style_blend(style_blend, len(style_paths))
    style_masks = None
    if mask_paths is not None:  # the count before any file is read
        count, what = prepare.mask_count(len(style_paths), config)
        style_masks = load_masks(mask_paths, count, what=what)
    style_set = prepare.make_style_set(
        [load_image(path).rgb for path in style_paths], style_blend, config, style_masks=style_masks
    )
    size = prepare.fit_long_side(info.size, config.max_size)
    runner = methods.setup(config, style_set, weights=weights)
    # A run without masks records nothing for them: its hash, and the frames it kept, stay valid.
    extra = {} if mask_paths is None else {"masks": [file_sha256(path) for path in mask_paths]}
    record = prepare.settings_record(config, [input_path, *style_paths], style_blend, runner.weights_id, **extra)
    parts = _Parts(parts_folder(output), record, overwrite=overwrite)
    done = parts.done
    emit(VideoStarted(info, size, parts.folder, len(done)))

    chunk_size = runner.frame_batch or batch.batch_size
    timing: list[tuple[float, float]] = []
    pending: list[prepare.BatchImage] = []
    before: prepare.BatchImage | None = None  # the frame before `pending`
    last: np.ndarray | None = None  # its result
    stylized, started = 0, time.perf_counter()

    def flush(keep: int = 0) -> None:
        """Stylize the pending frames, a chunk at a time, until at most ``keep`` are left (decoded
        ahead, their flows in flight while the network works on the chunk before)."""
        nonlocal before, last, stylized
        while len(pending) > keep:
            chunk = pending[:chunk_size]
            del pending[:chunk_size]
            contents = [before.original if before is not None else None, *(image.original for image in chunk)]
            keys = [image.key for image in chunk]

            def warp(index: int, result: np.ndarray, contents=contents, keys=keys) -> Previous:
                return follow_link(pipeline.link(keys[index], contents[index + 1], contents[index]), result)

            results = runner.stylize_frames(chunk, last if before is not None else None, warp, emit)
            for image, result in zip(chunk, results):
                pipeline.save(image.key, result)
                encoder.put(image.key, timing[image.key], result)
                stylized += 1
                report(image.key)
            before, last = chunk[-1], _quantised(results[-1])

    def add(image: prepare.BatchImage) -> None:
        """A frame to stylize; its link to the frame before is computed from here on."""
        previous = pending[-1] if pending else before
        if previous is not None:
            pipeline.link_ahead(image.key, image.original, previous.original)
        pending.append(image)

    def report(index: int) -> None:
        elapsed = time.perf_counter() - started
        fps = stylized / elapsed if elapsed > 0 and stylized else 0.0
        finished = index + 1
        left = info.frames - finished if info.frames else None
        eta = left / fps if left is not None and fps > 0 else None
        emit(FrameDone(index, finished, info.frames, stylized, elapsed, fps, eta))

    skipped: Frame | None = None  # the last frame an earlier run finished, prepared only if needed
    encoder = _LiveEncoder(output, info, parts, overwrite=overwrite, inputs=inputs)
    try:
        with _Pipeline(parts) as pipeline:
            try:
                for frame in read_frames(info):
                    timing.append((frame.time, frame.duration))
                    if frame.index in done:
                        flush()
                        encoder.put(frame.index, timing[frame.index], None)
                        skipped = frame
                        report(frame.index)
                        continue
                    if skipped is not None:  # carry on from a frame an earlier run finished
                        before = prepare.prepare_batch_image(skipped.index, skipped.rgb, style_set, config)
                        last, skipped = load_image(parts.frame(skipped.index)).rgb, None
                    add(prepare.prepare_batch_image(frame.index, frame.rgb, style_set, config))
                    if len(pending) == 2 * chunk_size:
                        flush(keep=chunk_size)
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
        encoder.finish()
    except BaseException:
        encoder.abort()
        raise
    parts.remove()
    return VideoSummary(output, count, stylized, time.perf_counter() - started)
