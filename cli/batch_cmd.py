"""`jaxstyle batch`: stylize a folder (or glob) of images with one style set, resumably."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from jaxstyle.config import StyleConfig
from jaxstyle.errors import UsageError

from .common import EXIT_INTERRUPTED, VERBOSITY, float_list, say, stderr, user_errors
from .stylize_cmd import (
    ContentWeightOption,
    LearningRateOption,
    OptimizerOption,
    PresetOption,
    PreserveColorOption,
    QualityOption,
    SeedOption,
    StyleBlendOption,
    StyleScaleOption,
    TVWeightOption,
    WeightsOption,
    build_config,
    load_weights_option,
)

D = StyleConfig()
#: Exit code when the run finished but some images failed (all others are done; see the manifest).
EXIT_SOME_FAILED = 8
FAILURES_SHOWN = 5

EXAMPLES = """

Examples:

  jaxstyle batch starry_night.jpg --input photos/ --output styled/

  jaxstyle batch wave.jpg --input 'photos/**/*.jpg' --output styled/ --batch-size 8 --max-size 384

  jaxstyle batch a.jpg b.jpg --style-weights 0.7,0.3 --input photos/ --output styled/ --format jpg

  # 4 workers (SLURM array 0-3, Kubernetes indexed job, ...) splitting one folder:
  jaxstyle batch wave.jpg --input photos/ --output styled/ --shard $SLURM_ARRAY_TASK_ID/4

Run the same command again to resume: finished images are skipped.

Exit codes: 0 all done; 8 some images failed (listed, and recorded in OUTPUT/manifest*.jsonl);
2 bad options; 3 missing input; 6 output problem; 130 interrupted.
"""


def _format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-:--:--"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("images  {task.fields[rate]}  ETA {task.fields[eta]}"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        console=stderr,
        disable=VERBOSITY.quiet,
    )


class _Display:
    """Turns the library's reports into one progress bar: images done/total, images/s, ETA."""

    def __init__(self, bar: Progress) -> None:
        self.bar = bar
        self.task = bar.add_task("batch", total=None, rate="- img/s", eta=_format_seconds(None), status="planning")
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
                self.task, total=event.total, completed=self.base, description=f"batch{shards}",
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
                eta=_format_seconds(event.eta),
                status=f"{event.input}{failed}"[-60:],
            )


def batch_command(
    styles: Annotated[list[Path], typer.Argument(help="One or more style images.", show_default=False)],
    input_: Annotated[
        str, typer.Option("--input", "-i", help="Folder of images, or a glob such as 'photos/**/*.jpg' (quote it).")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder (created; holds the manifest).")],
    batch_size: Annotated[
        int, typer.Option(help="Images optimised together (rounded up to a multiple of the devices).")
    ] = 4,
    bucket_multiple: Annotated[
        int,
        typer.Option(help="Round bucket sides up to N px (reflect-pad, crop back) to share batches across aspect ratios."),
    ] = 1,
    output_format: Annotated[str, typer.Option("--format", help="Output format: png, jpg, webp, tif or bmp.")] = "png",
    quality: QualityOption = 95,
    shard: Annotated[
        str | None,
        typer.Option(help="Take only shard i of n (0-based, e.g. 0/4) of the inputs; no coordination needed."),
    ] = None,
    distributed: Annotated[
        bool, typer.Option(help="Join jax.distributed and take shard process_index/process_count.")
    ] = False,
    coordinator: Annotated[
        str | None, typer.Option(help="With --distributed: coordinator host:port. [default: detected]")
    ] = None,
    num_processes: Annotated[int | None, typer.Option(help="With --distributed. [default: detected]")] = None,
    process_id: Annotated[int | None, typer.Option(help="With --distributed. [default: detected]")] = None,
    preset_name: PresetOption = None,
    max_size: Annotated[
        int | None, typer.Option(help=f"Long side of the outputs in px. [default: {D.max_size}]")
    ] = None,
    iterations: Annotated[int | None, typer.Option(help=f"Iterations per image. [default: {D.iterations}]")] = None,
    optimizer: OptimizerOption = None,
    learning_rate: LearningRateOption = None,
    content_weight: ContentWeightOption = None,
    style_weight: Annotated[float | None, typer.Option(help=f"[default: {D.resolved_style_weight:g}]")] = None,
    tv_weight: TVWeightOption = None,
    style_weights: StyleBlendOption = None,
    style_scale: StyleScaleOption = None,
    init: Annotated[str | None, typer.Option(help=f"content, noise, blend or gray. [default: {D.init}]")] = None,
    seed: SeedOption = None,
    preserve_color: PreserveColorOption = None,
    weights: WeightsOption = None,
    overwrite: Annotated[
        bool, typer.Option(help="Redo images finished with other settings and replace unknown files of the same name.")
    ] = False,
) -> None:
    """Stylize many images with the same style(s): same-shape batches, resumable, shardable."""
    with user_errors():
        if distributed and shard is not None:
            raise UsageError("--shard and --distributed both choose the shard; give one of them")
        if not distributed and (coordinator or num_processes is not None or process_id is not None):
            raise UsageError("--coordinator, --num-processes and --process-id need --distributed")
        if batch_size < 1:
            raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
        if bucket_multiple < 1:
            raise UsageError(f"--bucket-multiple must be at least 1, got {bucket_multiple}")
        if not 1 <= quality <= 100:
            raise UsageError(f"--quality must be between 1 and 100, got {quality}")
        config = build_config(
            preset_name,
            max_size=max_size,
            iterations=iterations,
            optimizer=optimizer,
            learning_rate=learning_rate,
            content_weight=content_weight,
            style_weight=style_weight,
            tv_weight=tv_weight,
            style_scale=style_scale,
            init=init,
            seed=seed,
            preserve_color=preserve_color,
        )
        if config.init == "image":
            raise UsageError("batch does not support --init image; use content, noise, blend or gray")
        blend = float_list(style_weights, "--style-weights")
        if blend is not None and len(blend) != len(styles):
            raise UsageError(f"{len(styles)} style images but {len(blend)} style weights")

        from jaxstyle.batch import initialize_distributed, parse_shard, run_batch

        shard_ = parse_shard(shard) if shard is not None else (0, 1)
        if distributed:
            shard_ = initialize_distributed(coordinator, num_processes, process_id)
        weights_ = load_weights_option(weights)
        with _bar() as bar:
            display = _Display(bar)
            try:
                summary = run_batch(
                    input_,
                    output,
                    styles,
                    config,
                    style_blend=blend,
                    weights=weights_,
                    batch_size=batch_size,
                    bucket_multiple=bucket_multiple,
                    shard=shard_,
                    output_format=output_format,
                    overwrite=overwrite,
                    jpeg_quality=quality,
                    callback=display,
                )
            except KeyboardInterrupt:
                bar.stop()
                say(
                    f"interrupted: {display.done} image(s) finished in this run"
                    + (f", {display.base} earlier" if display.base else "")
                    + "; no file is half-written. Run the same command again to resume."
                )
                raise typer.Exit(EXIT_INTERRUPTED) from None
        where = os.fspath(output)
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
