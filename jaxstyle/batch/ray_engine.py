"""`jaxstyle batch --engine ray`: the batch on Ray Data, from one machine to a cluster.

`run_ray_batch` plans exactly as the local driver does (`jaxstyle.batch.plan`: the same inputs,
names, settings hash, skips and refusals), records every image it will do as ``started``, and
hands the rest to Ray Data: a dataset of the inputs' paths (no pixels pass through the driver),
``map_batches`` with the callable class `jaxstyle.batch.ray_actor.Stylizer` on a pool of actors,
each of which runs the local `BucketEngine` and writes its outputs itself. The driver writes each
``done``/``failed`` line as the actors' records stream back, once per image: Ray Data retries
the task of an actor that died, and only a finished task's records reach the driver.

Actors (`actor_sizes`): one per GPU (``num_gpus=1``) where the cluster has GPUs, else CPU
actors of up to `CPUS_PER_ACTOR` cores each, pinned to disjoint cores (`ray_actor.claim_cores`).
Ray is imported here only when a run starts; `ray_missing` says how to install it.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import math
import os
import socket
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from jaxstyle.batch.events import BatchEvent, BatchStarted, BatchSummary, ImageFinished
from jaxstyle.batch.inputs import probe_size
from jaxstyle.batch.manifest import ChunkedManifest, Manifest
from jaxstyle.batch.ray_actor import ActorSpec, Stylizer
from jaxstyle.config import JPEG_QUALITY, BatchConfig, StyleConfig
from jaxstyle.errors import JaxstyleError, UsageError, one_line
from jaxstyle.io import remote

logger = logging.getLogger(__name__)

#: CPU cores per actor on a machine without accelerators, unless told: enough for XLA's
#: convolutions to use several cores, few enough that a many-core node runs several actors.
CPUS_PER_ACTOR = 4
#: How many times a batch is retried after its actor died, before the run stops.
RETRIES = 3
#: Environment of GPU actors: JAX allocates what it needs instead of 75 % of the GPU at start
#: (JAX's GPU memory guide, for several processes that may share a device).
GPU_ENV = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}


def ray_missing() -> UsageError:
    return UsageError("--engine ray needs Ray Data: pip install 'jaxstyle[ray]'")


def import_ray():
    """``ray`` and ``ray.data``, or `ray_missing`'s error."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise ray_missing() from None
    return ray


def run_ray_batch(
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
    address: str | None = None,
    actors: int | None = None,
    actor_class: type[Stylizer] = Stylizer,
    callback: Callable[[BatchEvent], None] | None = None,
) -> BatchSummary:
    """`jaxstyle.batch.run_batch` on Ray Data: the same files, manifest and guarantees.

    ``inputs`` and ``output_dir`` may also be URIs that pyarrow reads (``s3://``, ``gs://``;
    `jaxstyle.io.remote`). ``address``: a Ray cluster to join (``ray://`` or ``host:port``);
    None joins ``RAY_ADDRESS`` if set, else starts Ray on this machine (and stops it at the
    end). If Ray is already running in this process it is used as it is. ``actors``: how many
    (default: one per GPU, else one per `CPUS_PER_ACTOR` cores). ``actor_class``: `Stylizer` or a
    subclass of it.

    Raises what `run_batch` raises, and UsageError when Ray is not installed.
    """
    ray = import_ray()
    _driver_on_cpu()
    from jaxstyle.batch.plan import prepare_run

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
    )
    emit = callback or (lambda event: None)
    output = plan.manifest_path.rsplit("/", 1)[0] if isinstance(plan.manifest_path, str) else str(output_dir)
    if isinstance(plan.manifest_path, str):
        manifest = ChunkedManifest(output, f"ray-{int(time.time())}-{os.getpid()}")
    else:
        manifest = Manifest(plan.manifest_path)
    own_ray = not ray.is_initialized()
    started = time.perf_counter()
    done, failed, failures, seen = 0, 0, [], set()
    with manifest:
        # Header sizes order the work by bucket, as the local driver batches it (local files only:
        # a header read per object over the network would cost more than it saves).
        tasks, unreadable, buckets = plan.tasks, [], {}
        if not any(remote.is_uri(t.item.path) for t in tasks):
            sized = []
            for task in tasks:
                try:
                    task.size = probe_size(task.item.path)
                except JaxstyleError as error:
                    unreadable.append((task, one_line(error)))
                    continue
                bucket = plan.engine.bucket_of(task.size)
                buckets[bucket] = buckets.get(bucket, 0) + 1
                sized.append((bucket, task))
            tasks = [task for _, task in sorted(sized, key=lambda pair: pair[0])]
        manifest.write(
            [
                {
                    "event": "run",
                    "time": time.time(),
                    "params_hash": plan.digest,
                    "params": plan.record,
                    "shard": f"{shard[0]}/{shard[1]}",
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                    "engine": "ray",
                    "batch_size": batch_config.batch_size,
                }
            ]
        )
        now = time.time()
        manifest.write(
            {"input": t.item.rel, "output": t.item.output, "status": "started", "params_hash": plan.digest, "time": now}
            for t in tasks
        )
        if isinstance(manifest, ChunkedManifest):
            manifest.flush()  # the started lines go out before any actor writes
        emit(
            BatchStarted(
                total=len(plan.items),
                already_done=plan.skipped,
                to_do=len(plan.tasks),
                buckets=buckets,
                devices=0,
                shard=shard,
                manifest=Path(plan.manifest_path) if not isinstance(plan.manifest_path, str) else None,
            )
        )

        def finish(records: list[dict]) -> None:
            """Record a batch's images (one write, one fsync), then report each."""
            nonlocal done, failed
            fresh = [r for r in records if r["input"] not in seen]  # never twice, whatever arrives
            seen.update(r["input"] for r in fresh)
            now = time.time()
            manifest.write(r | {"time": now} for r in fresh)
            for record in fresh:
                if record["status"] == "done":
                    done += 1
                else:
                    failed += 1
                    failures.append((record["input"], record["error"]))
                elapsed = time.perf_counter() - started
                rate = done / elapsed if elapsed > 0 else 0.0
                remaining = len(plan.tasks) - done - failed
                emit(
                    ImageFinished(
                        record["input"], record["output"], record["status"], record["error"],
                        done, failed, remaining, elapsed, rate, remaining / rate if rate > 0 else None,
                    )
                )  # fmt: skip

        finish([_failed(task.item, error, plan.digest) for task, error in unreadable])
        if tasks:
            try:
                spec = ActorSpec(
                    config=plan.engine.config,
                    styles=plan.engine.styles,
                    batch_config=batch_config,
                    weights=weights,
                    output=output,
                    style_paths=tuple(str(p) for p in plan.style_paths),
                    mask_paths=tuple(str(p) for p in plan.mask_paths or ()),
                    metadata=plan.metadata,
                    jpeg_quality=jpeg_quality,
                    digest=plan.digest,
                    threads=None,  # set by `_run` for the hardware Ray finds
                    buckets=tuple(buckets),
                )
                _run(ray, spec, tasks, plan.engine.full_batch, address, actors, actor_class, finish)
            finally:
                if own_ray:
                    ray.shutdown()  # the actors stop; what they wrote is kept
                    if not remote.is_uri(output):
                        _remove_temporaries(Path(output), tasks)
    return BatchSummary(
        total=len(plan.items),
        skipped=plan.skipped,
        done=done,
        failed=failed,
        failures=tuple(failures),
        seconds=time.perf_counter() - started,
        manifest=Path(plan.manifest_path) if not isinstance(plan.manifest_path, str) else None,
    )


def _run(ray, spec: ActorSpec, tasks, per_call: int, address, actors, actor_class, finish) -> None:
    """Start or join Ray, then stream the tasks through the actors, each batch's records to ``finish``."""
    import json

    quiet = logging.DEBUG if logger.isEnabledFor(logging.DEBUG) else logging.ERROR
    if not ray.is_initialized():
        with warnings.catch_warnings():
            # JAX warns at any fork once its threads run; Ray forks only to exec its own processes.
            warnings.filterwarnings("ignore", r"os\.fork\(\) was called", RuntimeWarning)
            ray.init(address=address, include_dashboard=False, logging_level=quiet, log_to_driver=quiet < logging.INFO)
    elif address is not None:
        logger.info("Ray is already running in this process; --address %s is not used", address)
    with warnings.catch_warnings():  # Ray Data's own deprecation notices when its context is made
        warnings.simplefilter("ignore", DeprecationWarning)
        context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(quiet)  # the library is silent (--verbose shows Ray's logs)
    count, threads, calls = actor_sizes(ray.nodes(), actors, actor_class.CALLS)
    if threads is None:  # the host cores of a GPU's share read and write; the GPU runs the engine
        remote_args = {"num_gpus": 1, "num_cpus": calls, "runtime_env": {"env_vars": {**GPU_ENV}}}
    else:
        remote_args = {"num_cpus": threads, "runtime_env": {"env_vars": {"JAX_PLATFORMS": "cpu"}}}
    for name in ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"):
        if name in os.environ:  # the CLI's compile cache, for actors on this machine
            remote_args["runtime_env"]["env_vars"][name] = os.environ[name]
    spec = dataclasses.replace(spec, threads=threads)
    rows = [{"rel": t.item.rel, "path": str(t.item.path), "output": t.item.output} for t in tasks]
    # The spec travels with the class (a subclass made here) rather than as constructor arguments.
    bound = type(actor_class.__name__, (actor_class,), {"spec": spec, "__module__": __name__})
    items = ray.data.from_items(rows, override_num_blocks=max(1, math.ceil(len(rows) / per_call)))
    # A dead actor is restarted (a lost node, a kill) and its calls retried, but a batch that
    # kills its actor `RETRIES` + 1 times (a file that crashes the decoder, memory) stops the run.
    # Ray Data takes that only among its extra remote arguments, which it deprecates (they go in
    # Ray 2.64; then Ray's own default applies: retry forever).
    extra = inspect.signature(items.map_batches).parameters.values()
    if any(parameter.kind is parameter.VAR_KEYWORD for parameter in extra):
        remote_args["max_task_retries"] = RETRIES
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"`ray_remote_args` is deprecated")
        dataset = items.map_batches(
            bound,
            batch_size=per_call,
            compute=ray.data.ActorPoolStrategy(
                size=count, max_concurrent_calls_per_actor=calls, enable_true_multi_threading=True
            ),
            **remote_args,
        )
    try:
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            finish([json.loads(text) for text in batch["record"]])
    except ray.exceptions.RayError as error:
        cause = getattr(error, "cause", None)
        if isinstance(cause, JaxstyleError):  # e.g. an output that cannot be written: the run stops
            raise cause from None
        raise RuntimeError(
            f"the Ray job failed ({one_line(error, 200)}); finished images are kept, run the same command to resume"
        ) from error


def _driver_on_cpu() -> None:
    """The driver only plans (and hashes the weights): it leaves the accelerators of its machine
    to the actors, unless JAX is already running here or the user chose its platforms."""
    import jax
    from jax._src import xla_bridge

    if not xla_bridge.backends_are_initialized() and not os.environ.get("JAX_PLATFORMS"):
        jax.config.update("jax_platforms", "cpu")


def actor_sizes(nodes: list[dict], actors: int | None, calls: int = 2) -> tuple[int, int | None, int]:
    """(actors, CPU cores per actor, calls at once per actor) for the alive nodes of ``ray.nodes()``.

    Where there are GPUs: one actor per GPU (cores None: not pinned), each with as many calls at
    once as its node has cores per GPU (at least ``calls``), since reading and writing images is
    host work that one GPU's network outruns (docs/batch.md). Else actors of `CPUS_PER_ACTOR`
    cores (fewer on a smaller node), as many as fit on the nodes, or ``actors`` sharing the cores
    out; ``calls`` each."""
    alive = [node.get("Resources", {}) for node in nodes if node.get("Alive", True)]
    gpus = sum(int(r.get("GPU", 0)) for r in alive)
    if gpus:
        shares = [int(r.get("CPU", 0)) // int(r["GPU"]) for r in alive if int(r.get("GPU", 0)) > 0]
        return actors or gpus, None, max(calls, min(shares))
    node_cpus = [int(r.get("CPU", 0)) for r in alive if int(r.get("CPU", 0)) > 0] or [1]
    threads = min(min(node_cpus), CPUS_PER_ACTOR)
    if actors:
        return actors, max(1, min(threads, sum(node_cpus) // actors)), calls
    return max(1, sum(cpus // threads for cpus in node_cpus)), threads, calls


def _failed(item, error: str, digest: str) -> dict:
    return {
        "input": item.rel,
        "output": None,
        "status": "failed",
        "error": error,
        "params_hash": digest,
        "seconds": None,
        "size": None,
        "losses": None,
    }


def _remove_temporaries(output: Path, tasks) -> None:
    """Temporary files of this run's outputs that a stopped actor left ('.NAME.xxxx.tmp')."""
    from jaxstyle.io.files import temporaries_of

    for task in tasks:
        for stale in temporaries_of(output / task.item.output):
            stale.unlink(missing_ok=True)
