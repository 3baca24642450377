"""Stylize many images with one style set: same-shape buckets, vmapped batches, resumable manifest.

One job per module:

* `inputs`: which files (folder or glob), this worker's shard, header sizes, buckets, batch ladders;
* `engine`: arrays in, arrays out: buckets of one shape, each batch through the method's
  ``stylize_bucket`` (`jaxstyle.methods`), so every image gets what `jaxstyle.stylization.stylize`
  would give it (same resize, init, colour handling and targets), up to float rounding;
* `manifest`: the append-only record of every image's fate and the settings hash;
* `plan`: what a run will do (inputs, settings hash, what is left), for both engines;
* `driver`: `run_batch`, the resumable file-level run (the local engine);
* `ray_engine`, `ray_actor`: `run_ray_batch`, the same run on Ray Data actors (Ray imported
  only when it runs);
* `events`: what the run reports to its callback (the library is silent).

Only one scale (``config.optimize.multiscale_min is None``) and no ``init="image"``.
"""

from jaxstyle.batch.driver import run_batch
from jaxstyle.batch.engine import BucketEngine, stylize_batch
from jaxstyle.batch.events import BatchEvent, BatchStarted, BatchStep, BatchSummary, ImageFinished
from jaxstyle.batch.inputs import (
    INPUT_SUFFIXES,
    InputItem,
    batch_ladder,
    bucket_shape,
    discover_inputs,
    parse_shard,
    probe_size,
    select_shard,
    shard_of,
)
from jaxstyle.batch.manifest import MANIFEST_NAME, Manifest, manifest_name, params_hash, params_record, read_manifests
from jaxstyle.batch.ray_engine import run_ray_batch

__all__ = [
    "INPUT_SUFFIXES",
    "MANIFEST_NAME",
    "BatchEvent",
    "BatchStarted",
    "BatchStep",
    "BatchSummary",
    "BucketEngine",
    "ImageFinished",
    "InputItem",
    "Manifest",
    "batch_ladder",
    "bucket_shape",
    "discover_inputs",
    "manifest_name",
    "params_hash",
    "params_record",
    "parse_shard",
    "probe_size",
    "read_manifests",
    "run_batch",
    "run_ray_batch",
    "select_shard",
    "shard_of",
    "stylize_batch",
]
