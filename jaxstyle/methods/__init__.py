"""Stylization methods, one module each, behind one small seam.

A method module has a function ``setup(config, styles, *, weights=None, devices=None)`` that
loads what the method needs (networks on the devices, style statistics) and returns a `Runner`.
`jaxstyle.stylization.stylize` calls ``runner.stylize`` for one image; `jaxstyle.batch` calls
``runner.stylize_bucket`` for same-shape batches. Everything else (input checks, resizing,
colours, style sizing and blending, file I/O, progress) is shared (`jaxstyle.prepare`), so a new
method is one new module plus one line in `METHODS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Protocol

from jaxstyle.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

    from jaxstyle.config import StyleConfig
    from jaxstyle.io.parts import PartsFolder
    from jaxstyle.prepare import BatchImage, StyleSet
    from jaxstyle.tiling import ScalePlan

#: Method name (`StyleConfig.method`) -> module implementing it.
METHODS = {"gatys": "jaxstyle.methods.gatys", "fast": "jaxstyle.methods.fast"}


@dataclass(frozen=True)
class BucketProgress:
    """Progress of the batch in flight, sent by ``stylize_bucket`` (`jaxstyle.batch.BatchStep`)."""

    shape: tuple[int, int]  # bucket (H, W)
    images: int  # real images in this batch (without the padding copies)
    batch_size: int  # compiled batch size
    iteration: int
    iterations: int
    report: object  # the method's own report (`optimize.StepReport` for "gatys"), or None
    # The last report of an optimisation (``report`` None): per real image, its key
    # (`BatchImage.key`) and the result's loss terms and ratios to its inputs (`objective.score`),
    # at the bucket's shape.
    scores: tuple[tuple[object, dict[str, float]], ...] | None = None

    # What every progress report has, so that the CLI draws any method's progress alike.
    @property
    def done(self) -> int:
        return self.iteration

    @property
    def total(self) -> int:
        return self.iterations

    @property
    def description(self) -> str:
        return f"{self.shape[1]}x{self.shape[0]} x{self.batch_size}"

    @property
    def status(self) -> str:
        return f"it {self.iteration}/{self.iterations}"


@dataclass(frozen=True)
class Previous:
    """The previous frame's result warped onto the current frame of a video (`jaxstyle.video`)."""

    image: np.ndarray  # (h, w, 3) in the output's colours, at the current frame's output size
    mask: np.ndarray  # (h, w) float32: 1 where the warp can be trusted, 0 at occlusions and edges


#: ``warp(i, result)``: the result of the frame before frame ``i`` of a `Runner.stylize_frames`
#: call, warped onto frame ``i``.
Warp = Callable[[int, "np.ndarray"], Previous]


class Runner(Protocol):
    """A method set up for one config and one style set."""

    config: StyleConfig
    weights_id: str  # a short hash of the weights, recorded with results (batch manifests)
    # How many video frames `stylize_frames` takes at once: 1 when each frame needs the previous
    # frame's result before it starts; None when the frames can be stylized together first.
    frame_batch: int | None
    # Whether `stylize` keeps finished pieces in a ``parts`` folder (a tiled optimisation) that a
    # resumed run picks up; a method that has nothing worth keeping ignores ``parts``.
    keeps_parts: bool

    def bucket(self, shape: tuple[int, int]) -> tuple[int, int]:
        """The compiled (H, W) `stylize_bucket` runs an image of own size ``shape`` (h, w) in, its
        result unchanged by it: ``shape`` itself, or a larger shape shared by many sizes."""
        ...

    def warm_up(self, shapes: Sequence[tuple[int, int]]) -> None:
        """Get ready for images of these own sizes (compile ahead, in the background), or nothing."""
        ...

    def plan(self, content_shape: tuple[int, int]) -> list[ScalePlan]:
        """How `stylize` will run content of ``content_shape`` (H, W): its scales, each whole or in
        tiles that fit the config's memory budget (docs/highres.md)."""
        ...

    def stylize(
        self,
        content: np.ndarray,
        *,
        init_image: np.ndarray | None = None,
        callback: Callable | None = None,
        parts: PartsFolder | None = None,
        plans: Sequence[ScalePlan] | None = None,
    ) -> np.ndarray:
        """One (H, W, 3) content image -> its stylization at the config's size, colours finished.

        ``callback`` gets progress reports with ``done``, ``total``, ``description`` and ``status``
        (and, for an optimisation, ``report.losses`` and ``report.image()``; its last report has
        ``report=None`` and the result's loss terms and ratios in ``scores``). ``parts``: where a
        tiled run keeps what it finished, to resume from after a stop (methods with nothing worth
        keeping ignore it). ``plans``: the `plan` to run (by default computed again: the free memory
        may have changed, so a caller that records the plan for a resume passes it in)."""
        ...

    def stylize_bucket(
        self, shape: tuple[int, int], images: Sequence[BatchImage], size: int, callback: Callable | None = None
    ) -> list[np.ndarray]:
        """Images of one bucket ``shape`` (H, W), as one compiled batch of ``size`` (padded with
        copies); results at each image's own size, colours finished. An optimisation's last
        report to ``callback`` has ``scores``: each image's key and its result's loss terms."""
        ...

    def stylize_frames(
        self, frames: Sequence[BatchImage], last: np.ndarray | None, warp: Warp, callback: Callable | None = None
    ) -> list[np.ndarray]:
        """Consecutive frames of a video, each prepared like a batch image and all one size, made
        temporally consistent with the frame before: ``last`` is the result of the frame before
        ``frames[0]`` (None at the start of the video), and ``warp`` carries each result onto the
        next frame along the optical flow. Results as `stylize_bucket` gives them."""
        ...


def setup(config: StyleConfig, styles: StyleSet, **options) -> Runner:
    """The `Runner` of ``config.method``, from the module `METHODS` names."""
    if config.method not in METHODS:
        raise UsageError(f"unknown method {config.method!r}; choose one of {', '.join(METHODS)}")
    return import_module(METHODS[config.method]).setup(config, styles, **options)
