"""The Ray actor of `jaxstyle batch --engine ray`: the local batch engine, in a Ray Data worker.

`Stylizer` is the callable class that `jaxstyle.batch.ray_engine` hands to Ray Data's
``map_batches``. Each actor sets the method up once (`BucketEngine`: weights loaded, programs
compiled at their first use, exactly as the local driver does) and then, for every batch of rows
it is given: reads and prepares each image, runs each bucket through
`BucketEngine.run_isolating_failures`, writes each result atomically with its metadata, and
returns one manifest record per image. The actor never touches the manifest: the driver writes
what the actor returns, so a task that Ray retries after a crash is recorded once.

This module imports no JAX at import time: an actor first claims its CPU cores (`claim_cores`),
then JAX starts with only those.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from jaxstyle.batch.inputs import InputItem
from jaxstyle.config import BatchConfig, StyleConfig
from jaxstyle.errors import JaxstyleError, one_line
from jaxstyle.io import remote
from jaxstyle.prepare import StyleSet


@dataclass(frozen=True)
class ActorSpec:
    """What every actor needs, sent once from the driver."""

    config: StyleConfig
    styles: StyleSet
    batch_config: BatchConfig
    weights: object  # the method's weights, or None for its embedded default
    output: str  # the output folder: a local path or a URI
    style_paths: tuple[str, ...]  # files an output may never replace
    mask_paths: tuple[str, ...]
    metadata: object  # rel -> its output's metadata (`plan.metadata_factory`)
    jpeg_quality: int
    digest: str
    threads: int | None  # CPU cores this actor uses (None: an accelerator's actor, no pinning)
    buckets: tuple[tuple[int, int], ...] = ()  # the run's buckets, where the driver knows them


def claim_cores(threads: int) -> list[int] | None:
    """Pin this process to ``threads`` CPU cores that no other jaxstyle actor of this node holds.

    XLA's CPU thread pool and the fast method's threads are sized from the process's affinity,
    so actors pinned to disjoint cores do not oversubscribe them. Slots are advisory file locks
    in the temporary folder, released when the process dies (a restarted actor takes the slot
    back). Returns the cores, or None where every slot is taken or pinning is not supported.
    """
    if not hasattr(os, "sched_setaffinity"):
        return None
    import fcntl

    cores = sorted(os.sched_getaffinity(0))
    for slot in range(len(cores) // threads):
        handle = open(Path(tempfile.gettempdir()) / f"jaxstyle-ray-cores-{slot}.lock", "a")  # noqa: SIM115
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        mine = cores[slot * threads : (slot + 1) * threads]
        os.sched_setaffinity(0, mine)
        claim_cores.held = handle  # kept open (locked) for the life of the process
        return mine
    return None


class Stylizer:
    """Ray Data's callable class: one `BucketEngine` per actor, many batches of rows through it.

    `CALLS` calls (more on a GPU actor: `ray_engine.actor_sizes`) run at once in an actor; only
    the engine is taken in turn (``engine_lock``), so the next batch's files are read and the
    last one's written while one batch runs.

    A row is one input: ``rel`` (its manifest key), ``path`` (a local path or a URI) and
    ``output`` (relative to the output folder). The result has one column, ``record``: each
    image's manifest record (JSON, without ``time``, which the driver stamps when it writes it).
    """

    CALLS = 2
    spec: ActorSpec  # set on the subclass that `ray_engine` hands to Ray Data

    def __init__(self) -> None:
        spec = self.spec
        if spec.threads is not None:
            claim_cores(spec.threads)
        from jaxstyle.batch.engine import BucketEngine

        self.engine = BucketEngine(spec.config, spec.styles, batch_config=spec.batch_config, weights=spec.weights)
        # Ray Data runs several calls at once on each actor (threads): some decode or write while
        # one holds the engine, as the local driver's reader and writer threads do.
        self.engine_lock = threading.Lock()
        self.engine.runner.warm_up(list(spec.buckets))  # compiles start while the first images decode

    def __call__(self, batch: dict) -> dict:
        items = [
            InputItem(path, rel, output) for rel, path, output in zip(batch["rel"], batch["path"], batch["output"])
        ]
        records: list[dict] = []
        groups: dict[tuple[int, int], list] = {}
        for item in items:
            try:
                self.before(item)
                shape, image, alpha = self.read(item)
            except (JaxstyleError, OSError, ValueError) as error:
                records.append(self.record(item, one_line(error)))
                continue
            groups.setdefault(shape, []).append((item, image, alpha))
        for shape, group in groups.items():
            for begin in range(0, len(group), self.engine.full_batch):
                records.extend(self.run(shape, group[begin : begin + self.engine.full_batch]))
        return {"record": [json.dumps(r, sort_keys=True) for r in records]}

    def before(self, item: InputItem) -> None:
        """Called before each image is read: nothing here (a test's subclass crashes in it)."""

    def read(self, item: InputItem):
        """(bucket, prepared image, alpha) of one input, decoded as the local driver decodes it."""
        from jaxstyle.io.decode import decode_image_bytes, load_image

        if remote.is_uri(item.path):
            import io

            from jaxstyle.batch.inputs import probe_size

            data = remote.read_bytes(item.path)
            image = decode_image_bytes(data, name=item.path, shrink_to=self.spec.config.max_size)
            original = probe_size(io.BytesIO(data))  # the header's size (the decode may be reduced)
        else:
            from jaxstyle.batch.inputs import probe_size

            original = probe_size(item.path)  # the header's size, as the local driver plans with
            image = load_image(item.path, shrink_to=self.spec.config.max_size)
        shape, prepared = self.engine.prepare(item, image.rgb, original=original)
        return shape, prepared, image.alpha

    def run(self, shape, group) -> list[dict]:
        """One compiled batch, then each result written and its record made."""
        scores: dict[int, dict] = {}

        def collect(event) -> None:
            for key, own in event.scores or ():
                scores[id(key)] = own

        with self.engine_lock:
            started = time.perf_counter()
            results = self.engine.run_isolating_failures(shape, [image for _, image, _ in group], collect)
            seconds = (time.perf_counter() - started) / len(group)
        records = []
        for (item, _, alpha), result in zip(group, results):
            if isinstance(result, str):
                records.append(self.record(item, result))
                continue
            own = scores.get(id(item))
            self.write(item, result, alpha, own)
            records.append(self.record(item, None, seconds=seconds, size=result.shape[:2], losses=own))
        return records

    def write(self, item: InputItem, result, alpha, own) -> None:
        """The output, atomically, with the local driver's metadata. Its manifest line says
        ``started`` (the driver writes that before any actor starts), so a file already there is
        a crashed attempt's of this run or of a run cut short, and is replaced."""
        from jaxstyle.io.encode import save_image
        from jaxstyle.io.files import temporaries_of
        from jaxstyle.io.resize import resize_to

        spec = self.spec
        if alpha is not None:
            alpha = resize_to(alpha, *result.shape[:2])
        losses = {} if own is None else {"jaxstyle.losses": json.dumps(own, sort_keys=True)}
        options = {
            "alpha": alpha,
            "overwrite": True,
            "metadata": spec.metadata(item.rel) | losses,
            "jpeg_quality": spec.jpeg_quality,
        }
        if not remote.is_uri(spec.output):
            target = Path(spec.output) / item.output
            for stale in temporaries_of(target):  # left by a crashed attempt
                with contextlib.suppress(OSError):
                    stale.unlink()
            save_image(target, result, inputs=[item.path, *spec.style_paths, *spec.mask_paths], **options)
            return
        with tempfile.TemporaryDirectory(prefix="jaxstyle-") as folder:
            local = Path(folder) / Path(item.output).name
            save_image(local, result, **options)
            remote.write_bytes(remote.join(spec.output, item.output), local.read_bytes(), overwrite=True)

    def record(self, item: InputItem, error: str | None, *, seconds=None, size=None, losses=None) -> dict:
        """The manifest record of a done or failed image, as the local driver writes it."""
        return {
            "input": item.rel,
            "output": item.output if error is None else None,
            "status": "failed" if error is not None else "done",
            "error": error,
            "params_hash": self.spec.digest,
            "seconds": None if seconds is None else round(seconds, 3),
            "size": list(size) if size is not None else None,
            "losses": losses,
        }
