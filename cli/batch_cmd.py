"""`jaxstyle batch`: stylize a folder (or glob) of images with one style set, resumably."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from jaxstyle.config import JPEG_QUALITY, BatchConfig, StyleConfig
from jaxstyle.errors import UsageError

from . import options as opt
from .common import (
    EXIT_INTERRUPTED,
    check_model_option,
    float_list,
    format_seconds,
    load_weights_option,
    rate_bar,
    require_styles,
    say,
    stderr,
    user_errors,
)

#: Where the work runs (`jaxstyle.batch.driver.run_batch` or `jaxstyle.batch.ray_engine.run_ray_batch`).
Engine = Literal["local", "ray"]
#: Exit code when the run finished but some images failed (all others are done; see the manifest).
EXIT_SOME_FAILED = 8
FAILURES_SHOWN = 5

EXAMPLES = """

Examples:

\b
  jaxstyle batch starry_night.jpg --input photos/ --output styled/
  jaxstyle batch wave.jpg --input 'photos/**/*.jpg' --output styled/ \\
      --batch-size 8 --max-size 384
  jaxstyle batch a.jpg b.jpg --style-weights 0.7,0.3 --input photos/ \\
      --output styled/ --format jpg

4 workers (a SLURM array 0-3, a Kubernetes indexed job, ...) splitting one
folder, with nothing to coordinate them but --shard:

\b
  jaxstyle batch wave.jpg --input photos/ --output styled/ \\
      --shard $SLURM_ARRAY_TASK_ID/4

On Ray Data, here or on a cluster (docs/batch.md), reading and writing
object storage:

\b
  jaxstyle batch wave.jpg --input s3://bucket/photos/ \\
      --output s3://bucket/styled/ --engine ray --address head-node:6379

Run the same command again to resume: finished images are skipped.

Exit codes: 0 all done; 8 some images failed (listed, and recorded in
OUTPUT/manifest*.jsonl); 2 bad options; 3 missing input; 6 output problem;
130 interrupted.
"""


class _Display:
    """Turns the library's reports into one progress bar: images done/total, images/s, ETA."""

    def __init__(self, bar) -> None:
        self.bar = bar
        self.task = bar.add_task("batch", total=None, rate="- img/s", eta=format_seconds(None), status="planning")
        self.base = 0  # images finished before this run
        self.finished = 0  # done + failed in this run
        self.done = 0
        self.failed = 0
        self.started = None

    def __call__(self, event) -> None:
        from jaxstyle.batch import BatchStarted, BatchStep, ImageFinished

        if isinstance(event, BatchStarted):
            self.started = event
            self.base = event.already_done
            shards = f" shard {event.shard[0]}/{event.shard[1]}" if event.shard[1] > 1 else ""
            buckets = ", ".join(f"{w}x{h}:{n}" for (h, w), n in event.buckets.items())
            self.bar.update(
                self.task,
                total=event.total,
                completed=self.base,
                description=f"batch{shards}",
                status=f"{len(event.buckets)} bucket(s) {buckets}"[:80],
            )
        elif isinstance(event, BatchStep):
            fraction = event.iteration / event.iterations
            h, w = event.shape
            self.bar.update(
                self.task,
                completed=self.base + self.finished + fraction * event.images,
                status=f"{w}x{h} x{event.batch_size}: it {event.iteration}/{event.iterations}",
            )
        elif isinstance(event, ImageFinished):
            self.finished = event.done + event.failed
            self.done, self.failed = event.done, event.failed
            failed = f" ({event.failed} failed)" if event.failed else ""
            self.bar.update(
                self.task,
                completed=self.base + self.finished,
                rate=f"{event.images_per_second:.3g} img/s",
                eta=format_seconds(event.eta),
                status=f"{event.input}{failed}"[-60:],
            )


@opt.with_config(
    "method",
    "builtin_style",
    "model",
    "max_size",
    "style_strength",
    "iterations",
    "stop_tolerance",
    "optimizer",
    "learning_rate",
    "content_weight",
    "style_weight",
    "tv_weight",
    "style_scale",
    "init",
    "seed",
    "preserve_color",
    "mask_feather",
)
def batch_command(
    styles: opt.Styles = None,
    *,
    input_: Annotated[
        str,
        typer.Option(
            "--input", "-i", help="Folder of images, or a glob such as 'photos/**/*.jpg' (quote it), or a URI."
        ),
    ],
    output: Annotated[
        str, typer.Option("--output", "-o", help="Output folder (created; holds the manifest), or a URI.")
    ],
    batch_size: opt.BatchSize = BatchConfig.batch_size,
    bucket_multiple: opt.BucketMultiple = BatchConfig.bucket_multiple,
    output_format: opt.OutputFormat = BatchConfig.output_format,
    quality: opt.Quality = JPEG_QUALITY,
    shard: Annotated[
        str | None,
        typer.Option(help="Take only shard i of n (0-based, e.g. 0/4) of the inputs; no coordination needed."),
    ] = None,
    config: StyleConfig,
    style_weights: opt.StyleBlend = None,
    style_mask: opt.BatchStyleMasks = None,
    weights: opt.Weights = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite", help="Redo images finished with other settings; replace unknown files of the same name."
        ),
    ] = False,
    engine: Annotated[
        Engine,
        typer.Option(
            help="local: this process. ray: Ray Data actors, on this machine or a cluster (pip install 'jaxstyle[ray]'); "
            "--input/--output may then be s3:// or gs:// URIs."
        ),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            help="With --engine ray: the Ray cluster to join (e.g. head-node:6379) [default: $RAY_ADDRESS, "
            "else start Ray here]."
        ),
    ] = None,
    actors: Annotated[
        int | None,
        typer.Option(
            help="With --engine ray: how many actors [default: one per GPU, else one per 4 CPU cores].",
            callback=lambda value: value if value is None else opt.at_least_one("--actors")(value),
        ),
    ] = None,
) -> None:
    """Stylize a folder with the same style(s): batched, resumable, shardable."""
    with user_errors():
        batch_config = BatchConfig(
            batch_size=batch_size, bucket_multiple=bucket_multiple, output_format=output_format.lower().lstrip(".")
        )
        styles = require_styles(styles, config)
        if config.optimize.init == "image":
            raise UsageError("batch does not support --init image; use content, noise, blend or gray")
        blend = float_list(style_weights, "--style-weights")
        if blend is not None and len(blend) != len(styles):
            raise UsageError(f"{len(styles)} style images but {len(blend)} style weights")

        if engine == "local" and (address is not None or actors is not None):
            raise UsageError("--address and --actors need --engine ray")
        from jaxstyle.batch import parse_shard, run_batch

        shard_ = parse_shard(shard) if shard is not None else (0, 1)
        run, engine_options = run_batch, {}
        if engine == "ray":
            from jaxstyle.batch.ray_engine import import_ray, run_ray_batch

            import_ray()  # one line naming the extra, before any work, where Ray is missing
            run, engine_options = run_ray_batch, {"address": address, "actors": actors}

        check_model_option(config, weights)
        weights_ = load_weights_option(weights, config.method)
        with rate_bar("images") as bar:
            display = _Display(bar)
            try:
                summary = run(
                    input_,
                    output,
                    styles,
                    config,
                    style_blend=blend,
                    mask_paths=style_mask,
                    weights=weights_,
                    batch=batch_config,
                    shard=shard_,
                    overwrite=overwrite,
                    jpeg_quality=quality,
                    callback=display,
                    **engine_options,
                )
            except KeyboardInterrupt:
                bar.stop()
                say(
                    f"interrupted: {display.done} image(s) finished in this run"
                    + (f", {display.base} earlier" if display.base else "")
                    + "; no file is half-written. Run the same command again to resume."
                )
                raise typer.Exit(EXIT_INTERRUPTED) from None
        where = str(output)
        parts = [f"{summary.done} done"]
        if summary.skipped:
            parts.append(f"{summary.skipped} already done (skipped)")
        if summary.failed:
            parts.append(f"{summary.failed} failed")
        rate = f" ({summary.done / summary.seconds:.3g} img/s)" if summary.done and summary.seconds > 0 else ""
        say(
            f"{', '.join(parts)} of {summary.total} in {summary.seconds:.0f} s{rate} -> {where}; "
            f"manifest {summary.manifest}"
        )
        if summary.failed:
            for name, error in summary.failures[:FAILURES_SHOWN]:
                stderr.print(f"failed: {name}: {error}", markup=False, soft_wrap=True)
            if summary.failed > FAILURES_SHOWN:
                stderr.print(f"... and {summary.failed - FAILURES_SHOWN} more (see the manifest)", markup=False)
            raise typer.Exit(EXIT_SOME_FAILED)


batch_command.__doc__ += EXAMPLES
