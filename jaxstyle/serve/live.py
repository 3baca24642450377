"""The interactive lane: fast previews as a slider moves, and the webcam's frames.

Both need answers in a fraction of a second, which a fresh `jaxstyle.stylization.stylize` call
cannot give: it sets its method up again and loads its compiled programs each time (0.7 s at
384 px, against 0.07-0.26 s for a runner that is kept). So this lane keeps the fast method's
`Runner` (`jaxstyle.methods.setup`, the seam `stylize`, the batch and the video driver all use)
for the style in use, and runs it the way those do: ``runner.stylize`` for a preview (what
`stylize` calls, so the preview is the job's picture), ``runner.stylize_frames`` for webcam
frames with the video path's temporal blending (`jaxstyle.video.driver.frame_link` and
`follow_link`: each frame blended with the previous result warped along the optical flow, where
the flow can be trusted). A runner's config follows the sliders (size, strength) the way
`GatysRunner.fast_start` resizes its own; a new style or colour mode sets up a new runner. Painted
masks travel with each preview and replace the kept runner's (a new count of masks sets up a new
runner: it changes the network's regions), so the preview shows them as the job will.

Everything here runs on one thread, one request at a time (`Lane`), beside the job queue.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from jaxstyle.config import StyleConfig
from jaxstyle.serve.forms import Request
from jaxstyle.serve.results import jpeg
from jaxstyle.serve.uploads import Newest

LIVE_MAX_PIXELS = 4_000_000  # a webcam frame
KEEP_RUNNERS = 2
KEEP_SESSIONS = 4


@dataclass(eq=False)
class LiveSession:
    """One webcam stream: its settings, and the frame before with its result (for the blend)."""

    id: str
    request: Request
    before: object = None  # the previous frame as `prepare.BatchImage`
    last: np.ndarray | None = None  # its result
    frames: int = 0


class Lane:
    """One thread for previews and webcam frames, with the kept runners and sessions."""

    def __init__(self) -> None:
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="jaxstyle-live")
        self._runners: OrderedDict[tuple, object] = OrderedDict()
        self._sessions = Newest(KEEP_SESSIONS, "that webcam session has ended; start it again")
        self._lock = threading.Lock()

    async def run(self, function, *args):
        """``function(*args)`` on the lane's thread, awaited without blocking the event loop."""
        return await asyncio.wrap_future(self._thread.submit(function, *args))

    def close(self) -> None:
        self._thread.shutdown(wait=True, cancel_futures=True)

    def runner(self, request: Request, config: StyleConfig):
        """The kept fast runner for the request's style, set to ``config`` (lane thread only)."""
        from jaxstyle import methods, prepare

        key = (*request.style_key, config.resources.precision)
        runner = self._runners.get(key)
        if runner is None:
            styles = [style.image.rgb for style in request.styles] or None
            style_set = prepare.make_style_set(styles, None, config, style_masks=request.mask_arrays)
            runner = methods.setup(config, style_set)
            self._runners[key] = runner
            while len(self._runners) > KEEP_RUNNERS:
                self._runners.popitem(last=False)
        self._runners.move_to_end(key)
        runner.config = config
        if request.masks is not None:
            # New strokes, same runner: the masks are read per image (its guides), and the key
            # holds their count, which sets the compiled programs' regions.
            runner.styles = dataclasses.replace(runner.styles, masks=tuple(request.mask_arrays))
        return runner

    def preview(self, request: Request) -> bytes:
        """The fast method's picture of the request as JPEG (lane thread only)."""
        runner = self.runner(request, request.config)
        content = request.content.at(request.config.max_size)
        return jpeg(runner.stylize(content))

    # --------------------------------------------------------------------------------- webcam

    def start(self, request: Request) -> LiveSession:
        session = LiveSession(secrets.token_hex(8), request)
        return self._sessions.add(session.id, session)

    def session(self, session_id: str) -> LiveSession:
        return self._sessions.get(session_id)

    def stop(self, session_id: str) -> None:
        self._sessions.drop(session_id)

    def frame(self, session: LiveSession, data: bytes) -> bytes:
        """One webcam frame (encoded image bytes) stylized and blended with the one before, as
        JPEG (lane thread only)."""
        from jaxstyle import prepare
        from jaxstyle.io.decode import decode_image_bytes
        from jaxstyle.video.driver import follow_link, frame_link

        config = session.request.config
        rgb = decode_image_bytes(data, name="webcam frame", max_pixels=LIVE_MAX_PIXELS).rgb
        runner = self.runner(session.request, config)
        image = prepare.prepare_batch_image(session.frames, rgb, runner.styles, config)
        before = session.before if session.before is not None and session.before.size == image.size else None
        link = frame_link(image.original, before.original) if before is not None else None
        last = session.last if before is not None else None
        result = runner.stylize_frames([image], last, lambda index, previous: follow_link(link, previous))[0]
        session.before, session.last, session.frames = image, result, session.frames + 1
        return jpeg(result, quality=85)
