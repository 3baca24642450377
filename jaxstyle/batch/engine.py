"""The array engine of a batch: same-shape buckets, a ladder of compiled batch sizes, any method.

Bucket policy (see docs/batch.md): each image is resized so its long side is ``config.max_size``
(`prepare.fit_long_side`, as the single-image command does), which gives its *own size* (h, w).
With ``bucket_multiple=1`` (the default) the bucket is exactly (h, w), so a batch result is the
single-image result. With ``bucket_multiple=m > 1`` the bucket is (h, w) rounded up to multiples
of m: the method reflect-pads the image at the bottom and right, stylizes the bucket shape and
crops back to (h, w). Outputs always have the image's own size and aspect ratio.

Batching: a bucket is cut into batches of ``batch_size`` images (rounded up to a multiple of the
device count). The last, partial batch of a bucket is run at the smallest size of the ladder
devices x (1, 2, 4, ...) that holds it, padded with copies of its last image whose results are
dropped: at most log2(batch_size) + 1 compiled shapes per bucket, and never more than 2x waste.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import jax
import numpy as np

from jaxstyle import methods, prepare
from jaxstyle.batch.events import BatchStep
from jaxstyle.batch.inputs import batch_ladder, bucket_shape, chunk_size
from jaxstyle.config import BatchConfig, StyleConfig
from jaxstyle.errors import NumericalError, UsageError, one_line
from jaxstyle.prepare import BatchImage, StyleSet


class BucketEngine:
    """A method set up for a batch run, and the bucket and batch-size policy around it."""

    def __init__(
        self,
        config: StyleConfig,
        styles: StyleSet,
        *,
        batch_config: BatchConfig | None = None,
        weights=None,
        devices: Sequence[jax.Device] | None = None,
    ) -> None:
        self.batch_config = batch_config or BatchConfig()
        if config.optimize.multiscale_min is not None:
            raise UsageError("batch runs one scale only; leave multiscale_min (--start-size) unset")
        if config.optimize.init == "image":
            raise UsageError("batch does not support init 'image'; use content, noise, blend or gray")
        self.config, self.styles = config, styles
        self.devices = list(devices) if devices is not None else jax.local_devices()
        self.runner = methods.setup(config, styles, weights=weights, devices=self.devices)
        self.ladder = batch_ladder(self.batch_config.batch_size, len(self.devices))

    @property
    def full_batch(self) -> int:
        return self.ladder[-1]

    def bucket_of(self, size: tuple[int, int]) -> tuple[int, int]:
        """Bucket of an image of original (H, W) ``size``."""
        return self._bucket(prepare.fit_long_side(size, self.config.max_size))

    def _bucket(self, own: tuple[int, int]) -> tuple[int, int]:
        """The method's compiled shape for an image of own size ``own`` (`Runner.bucket`), after
        ``bucket_multiple``."""
        return self.runner.bucket(bucket_shape(own, self.batch_config.bucket_multiple))

    def prepare(
        self, key: object, content: np.ndarray, original: tuple[int, int] | None = None
    ) -> tuple[tuple[int, int], BatchImage]:
        """Check, resize and colour-handle one content image; returns (its bucket, the image).
        ``original``: the file's full (H, W) where ``content`` was decoded at a reduced scale."""
        size = None if original is None else prepare.fit_long_side(original, self.config.max_size)
        image = prepare.prepare_batch_image(key, content, self.styles, self.config, size)
        return self._bucket(image.size), image

    def run(
        self, shape: tuple[int, int], images: Sequence[BatchImage], callback: Callable[[BatchStep], None] | None = None
    ) -> list[np.ndarray]:
        """Stylize up to `full_batch` images of bucket ``shape`` as one compiled batch."""
        return self.runner.stylize_bucket(shape, images, chunk_size(len(images), self.ladder), callback)

    def run_isolating_failures(
        self, shape: tuple[int, int], images: Sequence[BatchImage], callback=None
    ) -> list[np.ndarray | str]:
        """`run`; if the batch diverges, its images one by one, so one bad image fails alone
        (its entry is then the one-line reason)."""
        try:
            return self.run(shape, images, callback)
        except NumericalError as error:
            if len(images) == 1:
                return [one_line(error)]
        results: list[np.ndarray | str] = []
        for image in images:
            try:
                results.extend(self.runner.stylize_bucket(shape, [image], self.ladder[0], callback))
            except NumericalError as error:
                results.append(one_line(error))
        return results


def stylize_batch(
    contents: Sequence[np.ndarray],
    styles: np.ndarray | Sequence[np.ndarray],
    config: StyleConfig | None = None,
    *,
    style_blend: Sequence[float] | None = None,
    style_masks: Sequence[np.ndarray] | None = None,
    weights=None,
    batch: BatchConfig | None = None,
    devices: Sequence[jax.Device] | None = None,
    callback: Callable[[BatchStep], None] | None = None,
) -> list[np.ndarray]:
    """Stylize many images with the same styles and settings, in same-shape vmapped batches.

    Args:
      contents: (H, W, 3) RGB images in [0, 1] (uint8 and grey accepted), any sizes.
      styles, config, style_blend, weights: as `jaxstyle.stylization.stylize` (one scale only).
      style_masks: where each style goes (`jaxstyle.masks`), one mask per style (per built-in
        style named), as `stylize` takes them; one set for all the images, each mask stretched
        over each image whatever its aspect ratio (the images may differ in shape). What the
        masks leave stays the photo. Instead of ``style_blend``.
      batch: how the images are cut into compiled batches (`BatchConfig`: images per step,
        rounded up to a multiple of the device count; bucket sides); its defaults if None.
      devices: devices to shard each batch over; all local devices by default.
      callback: gets a `BatchStep` every ``config.optimize.report_every`` iterations of each batch; the
        last one of an optimised batch has each image's index and the result's loss terms and
        ratios (`BucketProgress.scores`; the fast method has none).

    Returns:
      One (h, w, 3) float32 result per content image, in order, with the long side
      ``config.max_size`` and the image's own aspect ratio.

    Raises:
      NumericalError: a batch diverged even after lowering the learning rate.
    """
    engine = BucketEngine(
        config or StyleConfig(),
        prepare.make_style_set(styles, style_blend, config, style_masks=style_masks),
        batch_config=batch or BatchConfig(),
        weights=weights,
        devices=devices,
    )
    buckets: OrderedDict[tuple[int, int], list[BatchImage]] = OrderedDict()
    for index, content in enumerate(contents):
        shape, image = engine.prepare(index, content)
        buckets.setdefault(shape, []).append(image)
    results: list[np.ndarray | None] = [None] * len(contents)
    for shape, images in buckets.items():
        for begin in range(0, len(images), engine.full_batch):
            chunk = images[begin : begin + engine.full_batch]
            for image, result in zip(chunk, engine.run(shape, chunk, callback)):
                results[image.key] = result
    return results  # type: ignore[return-value]
