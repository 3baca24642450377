"""`jaxstyle video`: stylize a video or an animated image, temporally consistent and resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Self

import typer

from jaxstyle.config import BatchConfig, StyleConfig, default

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
    user_errors,
)

VIDEO_METHOD = "fast"  # one pass per frame; the optimisation takes minutes per frame

EXAMPLES = """

Examples:

\b
  jaxstyle video clip.mp4 starry_night.jpg -o styled.mp4
  jaxstyle video clip.mov wave.jpg -o styled.webm --max-size 720
  jaxstyle video cat.gif --builtin-style 7 -o styled.gif
  jaxstyle video clip.mp4 wave.jpg -o styled.mp4 --method gatys \\
      --iterations 100 --max-size 256

Inputs: MP4, MOV, WebM (and most other videos), animated GIF, WebP and
PNG. Outputs: .mp4 .mov .webm .gif .webp .png (APNG). Size, frame count
and timing are kept, and the audio where the output container can hold it.

Finished frames are kept in OUTPUT.parts/ as they are made; after Ctrl-C
or a crash, run the same command again to resume. The output is written
only when every frame is done.
"""


class _Display:
    """The library's reports as one bar: frames done/total, frames per second, ETA.

    The bar appears with the first report, which comes after every check of the inputs, so a
    refused run prints its one error line and nothing else."""

    def __init__(self) -> None:
        self.bar = self.task = None
        self.done = 0
        self.parts: Path | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def __call__(self, event) -> None:
        from jaxstyle.video.driver import Encoding, FrameDone, VideoStarted

        if isinstance(event, VideoStarted):
            self.bar = rate_bar("frames")
            self.bar.start()
            self.parts, (h, w) = event.parts, event.size
            earlier = f", {event.already_done} done earlier" if event.already_done else ""
            self.task = self.bar.add_task(
                "video",
                total=event.info.frames,
                rate="- fps",
                eta=format_seconds(None),
                status=f"stylized at {w}x{h}{earlier}",
            )
        elif self.bar is None:
            return
        elif isinstance(event, FrameDone):
            self.done = event.done
            self.bar.update(
                self.task,
                completed=event.done,
                rate=f"{event.fps:.3g} fps" if event.stylized else "- fps",
                eta=format_seconds(event.eta),
            )
        elif isinstance(event, Encoding):
            self.bar.update(
                self.task, total=event.frames, completed=event.frames, status=f"encoding {event.output.name}"
            )
        elif getattr(event, "total", 0) > 1:  # an optimisation's progress within a frame
            self.bar.update(self.task, status=f"{event.done}/{event.total}: {event.status}"[:60])


@opt.with_config(
    "method",
    "temporal_weight",
    "builtin_style",
    "model",
    "max_size",
    "style_strength",
    "iterations",
    "preserve_color",
    "mask_feather",
    defaults={"method": VIDEO_METHOD},
    helps={
        "method": f"fast (one pass per frame) or gatys (optimised). [default: {VIDEO_METHOD}]",
        "max_size": "Long side at which frames are stylized (the output keeps the input's size). "
        f"[default: {default('max_size')}]",
        "iterations": "--method gatys: iterations per frame.",
    },
)
def video_command(
    video: Annotated[Path, typer.Argument(help="A video or animated image.", show_default=False)],
    styles: opt.Styles = None,
    *,
    output: Annotated[Path, typer.Option("--output", "-o", help="Output (.mp4 .mov .webm .gif .webp .png).")],
    config: StyleConfig,
    style_weights: opt.StyleBlend = None,
    style_mask: opt.BatchStyleMasks = None,
    batch_size: Annotated[
        int,
        typer.Option(
            help="--method fast: frames through the network at once.", callback=opt.at_least_one("--batch-size")
        ),
    ] = BatchConfig.batch_size,
    weights: opt.Weights = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite", help="Replace an existing output; start over when kept frames have other settings."
        ),
    ] = False,
) -> None:
    """Stylize a video or animated image, frame by frame along the optical flow."""
    with user_errors():
        styles = require_styles(styles, config)
        blend = float_list(style_weights, "--style-weights")

        from jaxstyle.video.driver import run_video

        check_model_option(config, weights)
        weights_ = load_weights_option(weights, config.method)
        with _Display() as display:
            try:
                summary = run_video(
                    video,
                    styles,
                    output,
                    config,
                    style_blend=blend,
                    mask_paths=style_mask,
                    weights=weights_,
                    batch=BatchConfig(batch_size=batch_size),
                    overwrite=overwrite,
                    callback=display,
                )
            except KeyboardInterrupt:
                display.stop()
                where = f" are kept in {display.parts}" if display.parts else ""
                say(
                    f"interrupted after {display.done} frame(s); the finished frames{where}. "
                    "Run the same command again to resume."
                )
                raise typer.Exit(EXIT_INTERRUPTED) from None
        rate = f" ({summary.stylized / summary.seconds:.3g} fps)" if summary.stylized and summary.seconds > 0 else ""
        earlier = (
            f", {summary.frames - summary.stylized} from an earlier run" if summary.frames > summary.stylized else ""
        )
        say(f"wrote {output}: {summary.frames} frames in {summary.seconds:.0f} s{rate}{earlier}")


video_command.__doc__ += EXAMPLES
