"""Every default of ``jaxstyle train`` in one frozen, checked config (`TrainConfig`). The loss's
weights, layers and units are not here: they are the optimisation's own (`StyleConfig.loss`), so
the same ``--content-weight`` means the same balance in both. Plain Python: no JAX."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal, get_args

from jaxstyle.errors import UsageError

Schedule = Literal["cosine", "constant"]

# The loss settings (`StyleConfig` fields) whose defaults differ in training, measured in
# docs/train.md on four styles and six held-out photos: VGG's max pooling, as Johnson et al. 2016
# train with (the optimisation's average pooling left the independent judge's style ratios at
# medians of 0.27-0.44 where max pooling gave 0.17-0.27 at the same content), and a content weight
# of 1 (at 0.5 the network, which cannot match both as closely as an optimisation, gave up too much
# of the photo: content ratio medians of 0.31-0.39).
TRAIN_LOSS_DEFAULTS = {"pooling": "max", "content_weight": 1.0}
INIT_CHOICES = ("magenta", "scratch")  # or the path of a trained network file to continue from


@dataclass(frozen=True)
class TrainConfig:
    """How a style network is trained (`jaxstyle.train.train`)."""

    size: int = 256  # side of the square training crops, px
    # Photos are scaled so that their long side is this (times the random scale) before cropping,
    # and the style images so that theirs is this times `StyleConfig.style_scale`: the network
    # learns the texture scale of a run at this --max-size, the size its results are judged at.
    photo_size: int = 512
    scale_range: tuple[float, float] = (0.8, 1.25)  # random rescaling of each photo (augmentation)
    flip: bool = True  # random left-right flips (augmentation)
    batch_size: int = 4
    steps: int = 1000
    learning_rate: float = 2e-4
    schedule: Schedule = "cosine"
    warmup: int = 20  # steps of linear warm-up
    # Adam's default epsilon; fine-tuning moves the Magenta weights a little, so the rate is low.
    held_out: float = 0.1  # share of the photos kept out of training (samples, validation)
    # Magenta's arbitrary transformer, random weights ("scratch"), or a network file trained for
    # the same number of styles (fine-tune it further, e.g. with other photos or weights).
    init: str = "magenta"
    seed: int = 0
    checkpoint_every: int = 100  # steps
    sample_every: int = 100  # steps between sample grids (0: none)

    def __post_init__(self) -> None:
        checks = [
            (
                self.size >= 32 and self.size % 4 == 0,
                f"the crop size must be a multiple of 4 and at least 32, got {self.size}",
            ),
            (
                self.photo_size >= self.size,
                f"the photo size must be at least the crop size {self.size}, got {self.photo_size}",
            ),
            (
                0 < self.scale_range[0] <= self.scale_range[1],
                f"the scale range must be 0 < low <= high, got {self.scale_range}",
            ),
            (self.batch_size >= 1, f"the batch size must be at least 1, got {self.batch_size}"),
            (self.steps >= 1, f"the number of steps must be at least 1, got {self.steps}"),
            (
                math.isfinite(self.learning_rate) and self.learning_rate > 0,
                f"the learning rate must be > 0, got {self.learning_rate}",
            ),
            (self.warmup >= 0, f"the warm-up must be >= 0 steps, got {self.warmup}"),
            (0 <= self.held_out < 1, f"the held-out share must be in [0, 1), got {self.held_out}"),
            (self.checkpoint_every >= 1, f"checkpoints must come every 1 or more steps, got {self.checkpoint_every}"),
            (self.sample_every >= 0, f"samples must come every 0 (never) or more steps, got {self.sample_every}"),
            (
                self.schedule in get_args(Schedule),
                f"unknown schedule {self.schedule!r}; choose one of {', '.join(get_args(Schedule))}",
            ),
            (
                self.init in INIT_CHOICES or self.init.endswith(".safetensors"),
                f"unknown init {self.init!r}; choose magenta, scratch or a trained .safetensors file",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def record(self) -> dict:
        return dataclasses.asdict(self)
