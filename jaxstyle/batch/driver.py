"""The file-level batch driver: plan, resume, stylize bucket by bucket, write, record.

`run_batch` finds the inputs (a folder or a glob), keeps this worker's share (``shard=(i, n)``),
skips what a manifest says is finished, writes every output atomically and records each image's
fate in ``OUTPUT/manifest*.jsonl`` (one fsync-ed JSON line per event). Silent: it reports
through a callback.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import jax
import numpy as np

from jaxstyle.batch.engine import BucketEngine
from jaxstyle.batch.events import BatchEvent, BatchStarted, BatchStep, BatchSummary, ImageFinished, Status
from jaxstyle.batch.inputs import probe_size
from jaxstyle.batch.manifest import Manifest
from jaxstyle.batch.plan import Task, prepare_run
from jaxstyle.config import JPEG_QUALITY, BatchConfig, StyleConfig
from jaxstyle.errors import JaxstyleError, UsageError, one_line
from jaxstyle.io import remote
from jaxstyle.io.behind import Behind
from jaxstyle.io.decode import load_image
from jaxstyle.io.encode import save_image
from jaxstyle.io.resize import resize_to

logger = logging.getLogger(__name__)


class _Ledger:
    """This run's bookkeeping: manifest lines, counters, and the reports sent to the callback."""

    def __init__(self, manifest: Manifest, digest: str, total: int, emit: Callable[[BatchEvent], None]) -> None:
        self.manifest, self.digest, self.total, self.emit = manifest, digest, total, emit
        self.done = self.failed = 0
        self.failures: list[tuple[str, str]] = []
        self.started = time.perf_counter()

    def started_batch(self, tasks: Iterable[Task]) -> None:
        now = time.time()
        self.manifest.write(
            {"input": t.item.rel, "output": t.item.output, "status": "started", "params_hash": self.digest, "time": now}
            for t in tasks
        )

    def finish(
        self, task: Task, error: str | None = None, *, seconds: float | None = None, size=None, losses=None
    ) -> None:
        """Record ``task`` as done (no ``error``) or failed, then report it; ``losses``: the
        result's own loss terms and ratios (`BucketProgress.scores`), where the method has them."""
        status: Status = "failed" if error is not None else "done"
        output = task.item.output if error is None else None
        if error is None:
            self.done += 1
        else:
            self.failed += 1
            self.failures.append((task.item.rel, error))
        self.manifest.write(
            [
                {
                    "input": task.item.rel,
                    "output": output,
                    "status": status,
                    "error": error,
                    "params_hash": self.digest,
                    "seconds": None if seconds is None else round(seconds, 3),
                    "size": list(size) if size is not None else None,
                    "losses": losses,
                    "time": time.time(),
                }
            ]
        )
        elapsed = time.perf_counter() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        remaining = self.total - self.done - self.failed
        eta = remaining / rate if rate > 0 else None
        self.emit(
            ImageFinished(task.item.rel, output, status, error, self.done, self.failed, remaining, elapsed, rate, eta)
        )


def run_batch(
    inputs: str | os.PathLike,
    output_dir: str | os.PathLike,
    style_paths: Sequence[str | os.PathLike],
    config: StyleConfig,
    *,
    style_blend: Sequence[float] | None = None,
    mask_paths: Sequence[str | os.PathLike] | None = None,
    weights=None,
    batch: BatchConfig | None = None,
    shard: tuple[int, int] = (0, 1),
    overwrite: bool = False,
    jpeg_quality: int = JPEG_QUALITY,
    devices: Sequence[jax.Device] | None = None,
    callback: Callable[[BatchEvent], None] | None = None,
) -> BatchSummary:
    """Stylize every image of ``inputs`` (folder or glob) into ``output_dir``; resumable.

    This worker takes the inputs of ``shard=(i, n)`` (see `shard_of`). Images whose latest
    manifest record is ``done`` with the same settings (`params_hash`) and whose output exists are
    skipped. Outputs are written atomically (`save_image`), then a ``done`` record is appended and
    fsync-ed, so a crash (even SIGKILL) loses at most the batch in flight. An image that cannot be
    read (or diverges) is recorded as ``failed`` with a one-line reason and the run goes on.

    ``mask_paths``: where each style goes (`jaxstyle.masks`): one greyscale mask file per style
    (per built-in style named), read and checked against the style count before any work. One
    set for the whole folder: each mask is stretched over each image, since a folder mixes
    aspect ratios that no one mask can match. What the masks leave stays the photo. The masks'
    contents are part of the settings hash, so a changed mask redoes the folder.

    Raises:
        InputNotFoundError: no inputs, or a style file is missing.
        MaskError: a mask file that cannot be used, or not one per style.
        OutputError: finished outputs in ``output_dir`` were made with other settings, or an
            output file of this shard exists that no manifest knows (neither is replaced unless
            ``overwrite``); or an output/manifest cannot be written (the run stops; rerun resumes).
        UsageError: bad settings.
    """
    if remote.is_uri(os.fspath(inputs)) or remote.is_uri(os.fspath(output_dir)):
        raise UsageError("the local engine reads and writes local files; use --engine ray for a URI")
    batch_config = batch or BatchConfig()
    plan = prepare_run(
        inputs,
        output_dir,
        style_paths,
        config,
        batch_config=batch_config,
        style_blend=style_blend,
        mask_paths=mask_paths,
        weights=weights,
        shard=shard,
        overwrite=overwrite,
        jpeg_quality=jpeg_quality,
        devices=devices,
    )
    engine, digest, metadata, tasks, items = plan.engine, plan.digest, plan.metadata, plan.tasks, plan.items
    output_dir, style_paths, mask_paths = Path(output_dir), plan.style_paths, plan.mask_paths
    manifest_path, record, skipped = Path(plan.manifest_path), plan.record, plan.skipped
    emit = callback or (lambda event: None)

    with Manifest(manifest_path) as manifest:
        manifest.write(
            [
                {
                    "event": "run",
                    "time": time.time(),
                    "params_hash": digest,
                    "params": record,
                    "shard": f"{shard[0]}/{shard[1]}",
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                    "devices": len(engine.devices),
                    "batch_size": batch_config.batch_size,
                }
            ]
        )
        ledger = _Ledger(manifest, digest, len(tasks), emit)
        # Header sizes place every image in its bucket without decoding pixels.
        buckets: OrderedDict[tuple[int, int], deque[Task]] = OrderedDict()
        unreadable = []
        for task in tasks:
            try:
                task.size = probe_size(task.item.path)
            except JaxstyleError as error:
                unreadable.append((task, one_line(error)))
                continue
            buckets.setdefault(engine.bucket_of(task.size), deque()).append(task)
        emit(
            BatchStarted(
                total=len(items),
                already_done=skipped,
                to_do=len(tasks),
                buckets={shape: len(queue) for shape, queue in buckets.items()},
                devices=len(engine.devices),
                shard=shard,
                manifest=manifest_path,
            )
        )
        for task, error in unreadable:
            ledger.finish(task, error)
        engine.runner.warm_up(list(buckets))  # compiles start while the first images decode

        def save(task: Task, result: np.ndarray, alpha, own, seconds: float) -> None:
            """Encode one result atomically, then record it as done (on the writer thread)."""
            if alpha is not None:
                alpha = resize_to(alpha, *result.shape[:2])
            losses = {} if own is None else {"jaxstyle.losses": json.dumps(own, sort_keys=True)}
            save_image(
                output_dir / task.item.output,
                result,
                alpha=alpha,
                overwrite=task.overwrite,
                inputs=[task.item.path, *style_paths, *(mask_paths or ())],
                metadata=metadata(task.item.rel) | losses,
                jpeg_quality=jpeg_quality,
            )
            ledger.finish(task, seconds=seconds, size=result.shape[:2], losses=own)

        with _Pipeline(engine, ledger) as pipeline:
            batches = list(_batches(buckets, engine.full_batch))
            for index, (shape, chunk) in enumerate(batches):
                pipeline.prefetch(chunk)
                for _, ahead in batches[index + 1 : index + 1 + _Pipeline.LOOKAHEAD]:
                    pipeline.prefetch(ahead)
                loaded, strays = pipeline.loaded(shape, chunk)
                for group_shape, group in [(shape, loaded), *((actual, [item]) for actual, item in strays)]:
                    if group:
                        _run_group(engine, pipeline, ledger, group_shape, group, emit, save)
    return BatchSummary(
        total=len(items),
        skipped=skipped,
        done=ledger.done,
        failed=ledger.failed,
        failures=tuple(ledger.failures),
        seconds=time.perf_counter() - ledger.started,
        manifest=manifest_path,
    )


def _run_group(engine, pipeline, ledger, shape, loaded, emit, save) -> None:
    """One compiled batch: record it as started, stylize, hand the results to the writer."""
    pipeline.record(ledger.started_batch, [task for task, _, _ in loaded])
    started = time.perf_counter()
    scores: dict[int, dict[str, float]] = {}  # id(task) -> the result's own loss terms and ratios

    def collect(event: BatchStep) -> None:
        for task, own in event.scores or ():  # the tasks are the batch images' keys
            scores[id(task)] = own
        emit(event)

    results = engine.run_isolating_failures(shape, [image for _, image, _ in loaded], collect)
    seconds = (time.perf_counter() - started) / len(loaded)
    for (task, _, alpha), result in zip(loaded, results):
        if isinstance(result, str):
            pipeline.record(ledger.finish, task, result)
        else:
            pipeline.record(save, task, result, alpha, scores.get(id(task)), seconds)


def _batches(buckets: OrderedDict[tuple[int, int], deque[Task]], size: int):
    """(bucket, up to ``size`` tasks) in the order they run: bucket by bucket."""
    for shape, waiting in buckets.items():
        tasks = list(waiting)
        for begin in range(0, len(tasks), size):
            yield shape, tasks[begin : begin + size]


class _Pipeline:
    """Decoding ahead and encoding behind the method, on one thread each, so that the cores stay
    busy with the network: the next batches' files are read and prepared while this one runs,
    and the last one's results are written (then recorded, in order) while the next one runs.

    Both queues are bounded (`LOOKAHEAD` batches ahead, as many behind), so memory does not grow
    with the folder. Every manifest record goes through the writer thread, in order; the reports
    it makes reach the callback on the caller's thread (`drain`). On any exit, Ctrl-C included,
    the results already handed to the writer are written and recorded first.
    """

    LOOKAHEAD = 2

    def __init__(self, engine: BucketEngine, ledger: _Ledger) -> None:
        self.engine, self.ledger = engine, ledger
        self.reader = ThreadPoolExecutor(1, thread_name_prefix="jaxstyle-read")
        self.writer = Behind(self.LOOKAHEAD * engine.full_batch + 1, "jaxstyle-write")
        self.reads: dict[int, Future] = {}
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.emit, ledger.emit = ledger.emit, self.events.put

    def __enter__(self) -> _Pipeline:  # noqa: PYI034
        return self

    def __exit__(self, *exc) -> None:
        self.reader.shutdown(wait=True, cancel_futures=True)
        self.writer.close(check=exc[0] is None)
        self.ledger.emit = self.emit
        if exc[0] is None:
            self.drain()

    def drain(self) -> None:
        """Hand the writer's reports to the callback, on this thread."""
        while not self.events.empty():
            self.emit(self.events.get())

    def _read(self, task: Task):
        # A large JPEG decodes at a reduced scale; the output keeps the size its header gives.
        image = load_image(task.item.path, shrink_to=self.engine.config.max_size)
        actual, prepared = self.engine.prepare(task, image.rgb, original=task.size)
        return actual, prepared, image.alpha

    def prefetch(self, tasks: Iterable[Task]) -> None:
        for task in tasks:
            if id(task) not in self.reads:
                self.reads[id(task)] = self.reader.submit(self._read, task)

    def loaded(self, shape: tuple[int, int], tasks: list[Task]):
        """This batch's (task, prepared, alpha) triples, decoded ahead, and the (bucket, triple)
        of images whose header misled their bucket (odd EXIF), to run alone in their own;
        unreadable files are recorded as failed."""
        self.drain()
        self.prefetch(tasks)
        loaded, strays = [], []
        for task in tasks:
            try:
                actual, prepared, alpha = self.reads.pop(id(task)).result()
            except (JaxstyleError, OSError, ValueError) as error:
                self.record(self.ledger.finish, task, one_line(error))
                continue
            if actual != shape:
                logger.info("'%s' belongs to bucket %s, not %s", task.item.rel, actual, shape)
                strays.append((actual, (task, prepared, alpha)))
                continue
            loaded.append((task, prepared, alpha))
        return loaded, strays

    def record(self, function, *args, **kwargs) -> None:
        """A manifest record, or a result to encode and record, in order behind the method."""
        self.writer.submit(function, *args, **kwargs)
