"""The job queue: one job at a time on one worker thread, each a call of
`jaxstyle.stylization.stylize` exactly as ``jaxstyle stylize`` makes it, its progress streamed.

A job's events (queued, started, progress with the current picture and losses, done, failed,
cancelled) are kept in order and sent to every listener (`JobQueue.events`, an async iterator
for the page's server-sent events) from the worker thread through the event loop. Cancelling a
running job raises `Cancelled` from the library's progress callback at its next report, which
ends `stylize` the way Ctrl-C ends the CLI's run; a queued job is simply dropped. `close` (the
server stopping) cancels what is queued and running and waits for the worker, so a result being
written is finished first.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import logging
import secrets
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np

from jaxstyle.errors import JaxstyleError, one_line
from jaxstyle.serve.forms import Request
from jaxstyle.serve.recipe import changed_settings, stylize_command
from jaxstyle.serve.results import ResultStore, jpeg

logger = logging.getLogger(__name__)

ENDS = frozenset({"done", "failed", "cancelled"})
PROGRESS_SIDE = 512  # long side of the progress pictures sent to the page
KEEP_PICTURES = 3  # a job keeps the pictures of its newest progress events only
KEEP_JOBS = 50


class Cancelled(Exception):
    """Raised from the progress callback to stop a running job."""


@dataclass(eq=False)
class Job:
    id: str
    request: Request
    state: str = "queued"  # queued, running, done, failed, cancelled
    events: list[dict] = field(default_factory=list)
    cancel_requested: bool = False
    result_id: str | None = None
    error: str | None = None
    listeners: list = field(default_factory=list)  # (loop, asyncio.Queue)

    def summary(self) -> dict:
        last = next((event for event in reversed(self.events) if event["type"] == "progress"), None)
        return {
            "id": self.id,
            "state": self.state,
            "method": self.request.config.method,
            "done": last["done"] if last else 0,
            "total": last["total"] if last else None,
            "result": self.result_id,
            "error": self.error,
        }


class JobQueue:
    """Jobs run one at a time, in order, on a thread of their own."""

    def __init__(self, store: ResultStore) -> None:
        self.store = store
        self._jobs: collections.OrderedDict[str, Job] = collections.OrderedDict()
        self._pending: collections.deque[Job] = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._closing = False
        self._worker = threading.Thread(target=self._work, name="jaxstyle-jobs")
        self._worker.start()

    # ----------------------------------------------------------------------------- the page's side

    def submit(self, request: Request) -> Job:
        job = Job(secrets.token_hex(6), request)
        with self._lock:
            if self._closing:
                raise JaxstyleError("the server is stopping")
            self._jobs[job.id] = job
            while len(self._jobs) > KEEP_JOBS:
                oldest = next(iter(self._jobs.values()))
                if oldest.state not in ENDS:
                    break
                self._jobs.popitem(last=False)
            self._pending.append(job)
            self._publish(job, {"type": "queued", "position": len(self._pending)})
            self._wake.notify()
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def listed(self) -> list[dict]:
        with self._lock:
            return [job.summary() for job in self._jobs.values()]

    def cancel(self, job: Job) -> None:
        """Drop a queued job now; stop a running one at its next progress report."""
        with self._lock:
            if job.state == "queued":
                self._pending.remove(job)
                job.state = "cancelled"
                self._publish(job, {"type": "cancelled"})
            elif job.state == "running":
                job.cancel_requested = True

    async def events(self, job: Job) -> AsyncIterator[dict]:
        """Every event of ``job`` so far, then each new one, until it ends."""
        loop, inbox = asyncio.get_running_loop(), asyncio.Queue()
        with self._lock:
            past = list(job.events)
            ended = job.state in ENDS
            if not ended:
                job.listeners.append((loop, inbox))
        try:
            for event in past:
                yield event
            while not ended:
                event = await inbox.get()
                yield event
                ended = event["type"] in ENDS
        finally:
            with self._lock:
                if (loop, inbox) in job.listeners:
                    job.listeners.remove((loop, inbox))

    def close(self, timeout: float = 60.0) -> None:
        """Cancel every job and wait for the worker (a result being saved is finished first)."""
        with self._lock:
            self._closing = True
            for job in self._pending:
                job.state = "cancelled"
                self._publish(job, {"type": "cancelled"})
            self._pending.clear()
            for job in self._jobs.values():
                if job.state == "running":
                    job.cancel_requested = True
            self._wake.notify()
        self._worker.join(timeout)

    # --------------------------------------------------------------------------- the worker's side

    def _publish(self, job: Job, event: dict) -> None:
        """Keep ``event`` and hand it to the listeners' loops (the lock is held)."""
        if event.get("image"):
            pictures = [old for old in job.events if old.get("image")]
            for old in pictures[: max(0, len(pictures) - KEEP_PICTURES + 1)]:
                old["image"] = None
        job.events.append(event)
        for loop, inbox in list(job.listeners):
            try:
                loop.call_soon_threadsafe(inbox.put_nowait, event)
            except RuntimeError:  # that loop has closed: its page is gone
                job.listeners.remove((loop, inbox))

    def _set(self, job: Job, state: str, event: dict) -> None:
        with self._lock:
            job.state = state
            self._publish(job, event)

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._closing:
                    self._wake.wait()
                if self._closing and not self._pending:
                    return
                job = self._pending.popleft()
                job.state = "running"
                self._publish(job, {"type": "started"})
                for position, waiting in enumerate(self._pending, 1):
                    self._publish(waiting, {"type": "queued", "position": position})
            try:
                self._run(job)
            except Cancelled:
                self._set(job, "cancelled", {"type": "cancelled"})
            except JaxstyleError as error:
                job.error = one_line(error)
                self._set(job, "failed", {"type": "failed", "error": job.error, "code": error.exit_code})
            except MemoryError:
                job.error = "out of memory; try a smaller size"
                self._set(job, "failed", {"type": "failed", "error": job.error})
            except Exception as error:  # one job's bug must not stop the queue
                logger.exception("job %s failed", job.id)
                job.error = f"internal error ({type(error).__name__}: {one_line(error)})"
                self._set(job, "failed", {"type": "failed", "error": job.error})

    def _run(self, job: Job) -> None:
        from jaxstyle.io.resize import resize_to
        from jaxstyle.prepare import run_metadata, weights_record
        from jaxstyle.stylization import Planned, stylize

        request, config = job.request, job.request.config
        content = request.content
        content_path = self.store.keep_input(content)
        style_paths = [self.store.keep_input(style) for style in request.styles]
        # The painted masks are written beside the inputs, so the shown command runs as it is.
        mask_paths = [self.store.keep_input(mask) for mask in request.masks or ()]
        result_id = self.store.new_id()
        output = self.store.path_for(result_id).relative_to(self.store.folder)
        command = stylize_command(content_path, style_paths, output, config, mask_paths)
        metadata = run_metadata(
            config,
            content=str(content_path),
            styles=[str(path) for path in style_paths],
            style_weights=None,
            weights="embedded" if config.fast.model is None else weights_record(config.fast.model),
            masks=[str(path) for path in mask_paths],
        )
        started, scores = time.perf_counter(), {}

        def on_progress(progress) -> None:
            if job.cancel_requested:
                raise Cancelled
            if isinstance(progress, Planned):
                return
            if getattr(progress, "scores", None) is not None:
                scores.update(progress.scores)
                return
            report = getattr(progress, "report", None)
            event = {"type": "progress", "done": progress.done, "total": progress.total}
            event["description"] = progress.description
            elapsed = time.perf_counter() - started
            event["elapsed"] = round(elapsed, 2)
            if progress.done:
                event["eta"] = round(elapsed / progress.done * max(0, progress.total - progress.done), 1)
            if report is not None and getattr(progress, "tiles", None) is None:
                event["loss"] = {key: float(np.ravel(values)[-1]) for key, values in report.losses.items()}
                picture = jpeg(report.image(), quality=80, long_side=PROGRESS_SIDE)
                event["image"] = "data:image/jpeg;base64," + base64.b64encode(picture).decode()
            with self._lock:
                self._publish(job, event)

        styles = [style.image.rgb for style in request.styles] or None
        result = stylize(content.image.rgb, styles, config, style_masks=request.mask_arrays, callback=on_progress)
        if job.cancel_requested:
            raise Cancelled
        alpha = content.image.alpha
        alpha = resize_to(alpha, *result.shape[:2]) if alpha is not None else None
        if scores:
            metadata["jaxstyle.losses"] = json.dumps(scores, sort_keys=True)
        record = {
            "created": time.strftime("%Y-%m-%d %H:%M:%S"),
            "method": config.method,
            "content": content.name,
            "style": " + ".join(style.name for style in request.styles)
            or f"{'built-in' if config.fast.model is None else 'model'} style {config.fast.builtin_style}",
            "masks": [str(path) for path in mask_paths] or None,
            "settings": {key: value for key, value in changed_settings(config).items()},
            "command": command,
            "scores": scores or None,
            "seconds": round(time.perf_counter() - started, 2),
        }
        before = resize_to(content.image.rgb, *result.shape[:2])
        saved = self.store.save(result_id, result, alpha=alpha, metadata=metadata, record=record, before=before)
        job.result_id = saved.id
        self._set(job, "done", {"type": "done", "result": saved.record})
