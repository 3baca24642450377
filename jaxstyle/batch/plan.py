"""What a batch run will do, decided before any image is stylized; shared by every engine.

`prepare_run` finds the inputs and this worker's share, reads the styles (and masks), sets the
method up (`BucketEngine`), computes the settings hash, and splits the share into work and
already-finished images (`plan_tasks`), refusing to clobber files no manifest knows. The local
driver (`jaxstyle.batch.driver`) and the Ray engine (`jaxstyle.batch.ray_engine`) both start here,
so they agree on names, hashes, metadata and what a re-run skips.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from jaxstyle.batch.engine import BucketEngine
from jaxstyle.batch.inputs import InputItem, discover_inputs, select_shard
from jaxstyle.batch.manifest import manifest_name, params_hash, params_record, read_manifests
from jaxstyle.config import BatchConfig, StyleConfig
from jaxstyle.errors import OutputError, UsageError
from jaxstyle.io import remote
from jaxstyle.io.decode import load_image
from jaxstyle.io.files import file_sha256, temporaries_of
from jaxstyle.masks import load_masks
from jaxstyle.prepare import make_style_set, mask_count, run_metadata


@dataclass
class Task:
    """One image to stylize in this run."""

    item: InputItem
    overwrite: bool  # its output may already exist (ours from a cut-short run, or --overwrite)
    size: tuple[int, int] | None = None  # original (H, W) from the header


@dataclass
class RunPlan:
    """Everything an engine needs to run a batch and record it."""

    items: list[InputItem]  # this shard's inputs
    tasks: list[Task]  # those still to do
    skipped: int  # finished by an earlier run with the same settings
    engine: BucketEngine
    record: dict  # `params_record`
    digest: str  # `params_hash` of the record
    style_paths: list[Path]
    mask_paths: list[Path] | None
    metadata: Callable[[str], dict[str, str]]  # an input's relative path -> its output's metadata
    manifest_path: Path | str  # a URI for an output folder named by one (`jaxstyle.io.remote`)


def prepare_run(
    inputs: str | os.PathLike,
    output_dir: str | os.PathLike,
    style_paths: Sequence[str | os.PathLike],
    config: StyleConfig,
    *,
    batch_config: BatchConfig,
    style_blend: Sequence[float] | None = None,
    mask_paths: Sequence[str | os.PathLike] | None = None,
    weights=None,
    shard: tuple[int, int] = (0, 1),
    overwrite: bool = False,
    jpeg_quality: int,
    devices=None,
) -> RunPlan:
    """Plan a run of `jaxstyle.batch.run_batch` (whose docstring lists what this raises)."""
    if not 1 <= jpeg_quality <= 100:
        raise UsageError(f"the JPEG quality must be between 1 and 100, got {jpeg_quality}")
    output = os.fspath(output_dir) if remote.is_uri(os.fspath(output_dir)) else Path(output_dir)
    style_paths = [Path(p) for p in style_paths]
    all_items = discover_inputs(inputs, output_dir=output, output_format=batch_config.output_format)
    mask_paths = None if mask_paths is None else [Path(p) for p in mask_paths]
    style_masks = None
    if mask_paths is not None:  # the count before any file is read
        count, what = mask_count(len(style_paths), config)
        style_masks = load_masks(mask_paths, count, what=what)
    styles = make_style_set(
        [load_image(path).rgb for path in style_paths], style_blend, config, style_masks=style_masks
    )
    engine = BucketEngine(config, styles, batch_config=batch_config, weights=weights, devices=devices)
    weights_id = engine.runner.weights_id
    record = params_record(
        engine.config,
        [file_sha256(p)[:16] for p in style_paths],
        style_blend,
        weights_id,
        output_format=batch_config.output_format,
        bucket_multiple=batch_config.bucket_multiple,
        jpeg_quality=jpeg_quality,
        mask_digests=None if mask_paths is None else [file_sha256(p)[:16] for p in mask_paths],
    )
    digest = params_hash(record)
    items = select_shard(all_items, shard)
    tasks, skipped = plan_tasks(items, output, digest, overwrite)
    name = manifest_name(shard)
    return RunPlan(
        items=items,
        tasks=tasks,
        skipped=skipped,
        engine=engine,
        record=record,
        digest=digest,
        style_paths=style_paths,
        mask_paths=mask_paths,
        metadata=metadata_factory(engine.config, style_paths, style_blend, weights_id, digest, mask_paths),
        manifest_path=remote.join(output, name) if isinstance(output, str) else output / name,
    )


def plan_tasks(
    items: Sequence[InputItem], output_dir: Path | str, digest: str, overwrite: bool
) -> tuple[list[Task], int]:
    """Split this shard's items into work and already-finished ones; refuse to clobber others' files.
    ``output_dir``: a local folder, or a URI (its files listed once)."""
    if isinstance(output_dir, str):
        records, existing = read_manifests(output_dir), remote.names(output_dir)
        exists = existing.__contains__
    else:
        records = read_manifests(output_dir) if output_dir.is_dir() else {}
        exists = lambda output: (output_dir / output).exists()
    tasks, skipped, changed, foreign = [], 0, [], []
    for item in items:
        record = records.get(item.rel)
        found = exists(item.output)
        status = record.get("status") if record else None
        if status == "done" and found and record.get("output") == item.output:
            if record.get("params_hash") == digest:
                skipped += 1
                continue
            changed.append(item)
        elif record is None and found:
            foreign.append(item)
        # 'started' (cut short, maybe saved) and 'failed' are redone; their outputs are ours.
        tasks.append(Task(item, overwrite=overwrite or record is not None))
        if not isinstance(output_dir, str):
            for stale in temporaries_of(output_dir / item.output):  # left by a killed writer
                with contextlib.suppress(OSError):
                    stale.unlink()
    if changed and not overwrite:
        raise OutputError(
            f"{len(changed)} finished image(s) in '{output_dir}' (e.g. '{changed[0].output}') were made with other "
            "settings; pass --overwrite to redo them, or choose another output folder"
        )
    if foreign and not overwrite:
        where = (
            remote.join(output_dir, foreign[0].output)
            if isinstance(output_dir, str)
            else output_dir / foreign[0].output
        )
        raise OutputError(
            f"'{where}' exists but no manifest in '{output_dir}' knows it "
            f"({len(foreign)} such file(s)); pass --overwrite to replace them, or choose another output folder"
        )
    return tasks, skipped


def metadata_factory(config: StyleConfig, style_paths, style_blend, weights_id: str, digest: str, mask_paths=None):
    """An input's relative path -> the metadata its output carries (`prepare.run_metadata`)."""
    masks = {} if mask_paths is None else {"jaxstyle.masks": json.dumps([str(p) for p in mask_paths])}

    def metadata(rel: str) -> dict[str, str]:
        return run_metadata(
            config,
            content=rel,
            styles=[str(p) for p in style_paths],
            style_weights=style_blend,
            weights=weights_id,
            **{"jaxstyle.params_hash": digest},
            **masks,
        )

    return metadata
