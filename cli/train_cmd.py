"""`jaxstyle train`: fine-tune a fast style network for one or more styles on your photos."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from jaxstyle.config import StyleConfig
from jaxstyle.train.settings import TRAIN_LOSS_DEFAULTS, TrainConfig

from . import options as opt
from .common import EXIT_INTERRUPTED, format_seconds, rate_bar, say, user_errors

EXAMPLES = """

Starts from Magenta's arbitrary network, each style's norms taken from its
predicted style vector, and fine-tunes it with the optimisation's own losses
(the same --content-weight means the same balance) on random crops, flips and
scales of your photos. Use the file with --method fast --model.

Examples:

\b
  jaxstyle train starry_night.jpg --photos my_photos/ -o starry.safetensors
  jaxstyle train wave.jpg scream.jpg --photos my_photos/ -o two.safetensors \\
      --steps 2000 --held-out 0.2
  jaxstyle stylize photo.jpg --method fast --model two.safetensors \\
      --builtin-style 1 -o out.png

A checkpoint (NET.checkpoint.safetensors) is written every --checkpoint-every
steps and at Ctrl-C; run the same command again to continue. Sample grids of
held-out photos go to NET.samples/.

Exit codes: 0 done; 2 bad options; 3 missing input; 4 unreadable images;
6 output problem; 130 interrupted (the checkpoint is kept).
"""

_DEFAULTS = TrainConfig()


class _Display:
    """The library's reports as one progress bar: steps, losses, steps/s and ETA."""

    def __init__(self, bar) -> None:
        self.bar, self.task, self.first, self.began, self.done = bar, None, 0, time.perf_counter(), 0

    def __call__(self, event) -> None:
        from jaxstyle.train.driver import CheckpointSaved, SampleSaved, TrainStarted, TrainStep

        if isinstance(event, TrainStarted):
            self.first = self.done = event.start_step
            resumed = f", resumed at step {event.start_step}" if event.start_step else ""
            skipped = f", {event.unreadable} unreadable skipped" if event.unreadable else ""
            say(f"training on {event.photos} photos ({event.held_out} held out{skipped}){resumed}")
            self.task = self.bar.add_task(
                "train", total=event.steps, completed=event.start_step, rate="", eta="", status=""
            )
            self.began = time.perf_counter()
        elif isinstance(event, TrainStep):
            self.done = event.step
            rate = (event.step - self.first) / max(time.perf_counter() - self.began, 1e-9)
            terms = event.terms
            self.bar.update(
                self.task,
                completed=event.step,
                rate=f"{rate:.2g} steps/s",
                eta=format_seconds((event.steps - event.step) / rate if rate > 0 else None),
                status=f"loss {terms['total']:.3f} content {terms['content_ratio']:.3f} "
                f"style {terms['style_ratio']:.3f}",
            )
        elif isinstance(event, SampleSaved):
            held = event.held_out_terms
            scores = (
                f" (held out: content {held['content_ratio']:.3f}, style {held['style_ratio']:.3f})" if held else ""
            )
            self.bar.console.print(f"step {event.step}: samples {event.path}{scores}", markup=False, highlight=False)
        elif isinstance(event, CheckpointSaved):
            self.bar.update(self.task, status=f"checkpoint at step {event.step}")


@opt.with_config(
    "content_weight",
    "style_weight",
    "tv_weight",
    "style_scale",
    defaults=TRAIN_LOSS_DEFAULTS,
    helps={"content_weight": "Weight of the content ratio (training default 1; docs/train.md)."},
)
def train_command(
    styles: Annotated[list[Path], typer.Argument(help="One or more style images.", show_default=False)],
    *,
    photos: Annotated[str, typer.Option(help="Folder of training photos, or a quoted glob.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="The network file to write (.safetensors).")],
    size: Annotated[int, typer.Option(help="Side of the square training crops, px.")] = _DEFAULTS.size,
    photo_size: Annotated[
        int,
        typer.Option(help="Long side photos are scaled to before cropping: the --max-size the network is made for."),
    ] = _DEFAULTS.photo_size,
    batch_size: Annotated[int, typer.Option(help="Crops per step.")] = _DEFAULTS.batch_size,
    steps: Annotated[int, typer.Option(help="Training steps.")] = _DEFAULTS.steps,
    lr: Annotated[float, typer.Option("--lr", help="Adam's peak learning rate.")] = _DEFAULTS.learning_rate,
    schedule: Annotated[str, typer.Option(help="Learning-rate schedule after the warm-up: cosine or constant.")] = (
        _DEFAULTS.schedule
    ),
    warmup: Annotated[int, typer.Option(help="Steps of linear learning-rate warm-up.")] = _DEFAULTS.warmup,
    held_out: Annotated[
        float, typer.Option(help="Share of the photos kept out of training, for samples and validation.")
    ] = _DEFAULTS.held_out,
    init: Annotated[
        str,
        typer.Option(
            help="Start from Magenta's arbitrary network (magenta), random weights (scratch), or a network file trained for as many styles (continue it)."
        ),
    ] = _DEFAULTS.init,
    seed: Annotated[int, typer.Option(help="Seed of the crops (and of random weights).")] = _DEFAULTS.seed,
    checkpoint_every: Annotated[int, typer.Option(help="Steps between checkpoints.")] = _DEFAULTS.checkpoint_every,
    sample_every: Annotated[
        int, typer.Option(help="Steps between sample grids of held-out photos (0: none).")
    ] = _DEFAULTS.sample_every,
    config: StyleConfig,
    overwrite: opt.Overwrite = False,
) -> None:
    """Train your own fast style network (flax, optax) for one or more styles."""
    with user_errors():
        train_config = TrainConfig(
            size=size,
            photo_size=photo_size,
            batch_size=batch_size,
            steps=steps,
            learning_rate=lr,
            schedule=schedule,
            warmup=warmup,
            held_out=held_out,
            init=init,
            seed=seed,
            checkpoint_every=checkpoint_every,
            sample_every=sample_every,
        )
        from jaxstyle.train import train

        with rate_bar("steps") as bar:
            display = _Display(bar)
            try:
                written = train(styles, photos, output, train_config, config, overwrite=overwrite, callback=display)
            except KeyboardInterrupt:
                bar.stop()
                say(
                    f"interrupted at step {display.done}; the checkpoint is kept. "
                    "Run the same command again to continue."
                )
                raise typer.Exit(EXIT_INTERRUPTED) from None
        say(f"wrote {written} ({steps} steps in {format_seconds(time.perf_counter() - display.began)})")


train_command.__doc__ += EXAMPLES
