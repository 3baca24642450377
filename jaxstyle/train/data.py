"""Training photos: which files, which are held out, and the augmented crops of each step.

Every step's crops are a pure function of (seed, step): which photo, its random scale, the crop's
corner, the flip, and the style each crop is trained for. So a resumed run sees exactly the crops
an uninterrupted one would, and nothing but the step count needs saving. Photos are decoded when a
crop needs them (a JPEG at libjpeg's reduced scale: a few milliseconds), on a thread ahead of the
step, so a folder of any size costs no memory.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jaxstyle.errors import ImageError, UsageError
from jaxstyle.io.decode import load_image
from jaxstyle.io.resize import resize_long_side
from jaxstyle.train.settings import TrainConfig


@dataclass(frozen=True)
class PhotoSplit:
    train: tuple[Path, ...]
    held_out: tuple[Path, ...]
    unreadable: tuple[Path, ...]  # skipped: not images jaxstyle can read


def split_photos(source: str | Path, held_out: float) -> PhotoSplit:
    """The readable photos of a folder (or glob), split into training and held-out ones.

    The held-out share is ``round(held_out * n)`` photos (at least one when the share is above 0),
    chosen by a hash of each file's name: the same folder always splits the same way, and adding a
    photo does not move the others.

    Raises:
        InputNotFoundError: no image files.
        ImageError: none of them can be read.
        UsageError: too few photos to keep ``held_out`` of them out and still train on one.
    """
    from jaxstyle.batch.inputs import discover_inputs, probe_size

    readable, unreadable = [], []
    for item in discover_inputs(source):
        try:
            probe_size(item.path)
            readable.append(item)
        except Exception:  # noqa: BLE001 - any file that is not a readable image is skipped and counted
            unreadable.append(item.path)
    if not readable:
        raise ImageError(f"none of the {len(unreadable)} image files in {source} can be read")
    count = len(readable)
    held = 0 if held_out == 0 else max(1, round(held_out * count))
    if count - held < 1:
        raise UsageError(
            f"{count} readable photo(s) in {source} are too few to hold out {held_out:.0%} and train on the rest; "
            "add photos or lower --held-out"
        )
    ranked = sorted(readable, key=lambda item: hashlib.sha256(item.rel.encode()).hexdigest())
    held_items = sorted(ranked[:held], key=lambda item: item.rel)
    train_items = sorted(ranked[held:], key=lambda item: item.rel)
    return PhotoSplit(
        tuple(item.path for item in train_items), tuple(item.path for item in held_items), tuple(unreadable)
    )


def step_plan(step: int, count: int, num_styles: int, config: TrainConfig) -> list[dict]:
    """What step ``step`` (0-based) trains on: per crop, the photo index, its scale, the crop's
    corner as fractions of the free room, the flip and the style. Styles take turns, so each gets
    the same number of crops."""
    rng = np.random.default_rng([config.seed, step])
    low, high = config.scale_range
    plan = []
    for b in range(config.batch_size):
        plan.append(
            {
                "photo": int(rng.integers(count)),
                "scale": float(math.exp(rng.uniform(math.log(low), math.log(high)))),
                "corner": (float(rng.random()), float(rng.random())),
                "flip": bool(config.flip and rng.random() < 0.5),
                "style": (step * config.batch_size + b) % num_styles,
            }
        )
    return plan


def crop(path: Path, entry: dict, config: TrainConfig) -> np.ndarray:
    """One (size, size, 3) crop of a photo scaled to ``photo_size * scale`` on its long side
    (further if its short side would be under the crop)."""
    size = config.size
    image = load_image(path, min_side=1, shrink_to=math.ceil(config.photo_size * entry["scale"])).rgb
    h, w = image.shape[:2]
    long_side = config.photo_size * entry["scale"]
    long_side = max(long_side, size * max(h, w) / min(h, w))
    image = resize_long_side(image, max(size, math.ceil(long_side)))
    h, w = image.shape[:2]
    top = int(entry["corner"][0] * (h - size + 1)) if h > size else 0
    left = int(entry["corner"][1] * (w - size + 1)) if w > size else 0
    out = image[top : top + size, left : left + size]
    return np.ascontiguousarray(out[:, ::-1] if entry["flip"] else out, dtype=np.float32)


class Crops:
    """The batches of successive steps, each made on a thread while the previous step runs."""

    def __init__(self, photos: Sequence[Path], num_styles: int, config: TrainConfig) -> None:
        self.photos, self.num_styles, self.config = list(photos), num_styles, config
        self._thread = ThreadPoolExecutor(1)
        self._ahead: dict[int, Future] = {}

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(B, size, size, 3) crops and (B,) style ids of ``step``; starts making the next."""
        future = self._ahead.pop(step, None) or self._thread.submit(self._make, step)
        self._ahead[step + 1] = self._thread.submit(self._make, step + 1)
        return future.result()

    def _make(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        plan = step_plan(step, len(self.photos), self.num_styles, self.config)
        crops = np.stack([crop(self.photos[entry["photo"]], entry, self.config) for entry in plan])
        return crops, np.array([entry["style"] for entry in plan], np.int32)

    def close(self) -> None:
        self._thread.shutdown(wait=True, cancel_futures=True)
