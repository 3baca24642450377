"""The settings of the commands around a stylization: how `jaxstyle batch` cuts a folder
(`BatchConfig`) and the colour transfer's defaults (`ColorConfig`). `jaxstyle.config` imports
them, so ``from jaxstyle.config import BatchConfig`` works as before. Plain Python."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from jaxstyle.errors import UsageError

OutputFormat = Literal["png", "jpg", "webp", "tif", "bmp"]


@dataclass(frozen=True)
class BatchConfig:
    """How `jaxstyle batch` cuts a folder into compiled batches (see `jaxstyle.batch`)."""

    batch_size: int = 4  # images per compiled step, rounded up to a multiple of the devices
    bucket_multiple: int = 1  # round bucket sides up to this many px (reflect-pad, crop back)
    output_format: OutputFormat = "png"

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise UsageError(f"the batch size must be at least 1, got {self.batch_size}")
        if self.bucket_multiple < 1:
            raise UsageError(f"the bucket multiple must be at least 1, got {self.bucket_multiple}")
        if self.output_format not in get_args(OutputFormat):
            raise UsageError(
                f"unknown output format {self.output_format!r}; choose one of {', '.join(get_args(OutputFormat))}"
            )


@dataclass(frozen=True)
class ColorConfig:
    """Defaults of the KNN colour transfer (`jaxstyle.color_knn`, ``jaxstyle color``)."""

    n_neighbors: int = 4
    patch_size: int = 3  # odd side of the luminance patch used as the feature
    max_train: int = 50_000  # training patches sampled from the styles
    seed: int = 0
