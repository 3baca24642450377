"""`stylize`: one image, any method (`jaxstyle.methods`), with the shared per-image setup.

Arrays in and out are numpy float32 RGB in [0, 1], shape (H, W, 3). The function is silent: it
reports through ``callback`` and never prints.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from jaxstyle import methods, prepare
from jaxstyle.config import StyleConfig
from jaxstyle.methods.gatys import Progress
from jaxstyle.placement import memory_budget_bytes
from jaxstyle.tiling import ScalePlan

__all__ = ["Planned", "Progress", "stylize"]


@dataclass(frozen=True)
class Planned:
    """Sent before any work when the image does not fit the memory budget whole: how the run
    fits (scales whole or in tiles, `jaxstyle.tiling.ScalePlan`) within ``budget`` bytes (None:
    no limit was set and none is known)."""

    plans: tuple[ScalePlan, ...]
    budget: int | None


def stylize(
    content: np.ndarray,
    styles: np.ndarray | Sequence[np.ndarray] | None,
    config: StyleConfig | None = None,
    *,
    style_blend: Sequence[float] | None = None,
    style_masks: Sequence[np.ndarray] | None = None,
    style_regions: Sequence[np.ndarray | None] | None = None,
    init_image: np.ndarray | None = None,
    weights=None,
    callback: Callable[[object], None] | None = None,
    keep_parts: Callable[[list[ScalePlan], str], object] | None = None,
) -> np.ndarray:
    """Stylize ``content`` with one or several ``styles``.

    Args:
      content: (H, W, 3) RGB in [0, 1] (uint8 and grey (H, W) are accepted).
      styles: one style image or a list; each may have its own size and aspect ratio (None or
        empty with ``config.fast.builtin_style``).
      config: all settings, the method included; `StyleConfig()` by default.
      style_blend: one non-negative weight per style (normalised to sum 1); equal by default.
      style_masks: where each style goes (`jaxstyle.masks`): one greyscale mask per style (per
        built-in style named), white for "this style here", of the content's aspect ratio (or
        any, with ``config.masks.mask_fit="stretch"``); what the masks leave stays the photo.
        Instead of ``style_blend``.
      style_regions: which part of each style image its style is taken from: one mask or None
        per style image, of that image's aspect ratio.
      init_image: the starting image when ``config.optimize.init == "image"``.
      weights: the method's weights (`VGGWeights` for "gatys"); the embedded default if None.
      callback: called with a `Planned` first when the image runs in tiles, then with the
        method's progress reports (a `Progress` for "gatys").
      keep_parts: for a tiled run of a method whose finished scales and tiles are worth keeping
        (an optimisation), called with the plans and the weights' digest; returns the
        `jaxstyle.io.parts.PartsFolder` to keep them in, so that a rerun resumes (None: kept
        nowhere). The caller removes it once the result is safe.

    Returns:
      (h, w, 3) float32 in [0, 1], with the long side ``config.max_size``.
    """
    config = config or StyleConfig()
    emit = callback or (lambda report: None)
    style_set = prepare.make_style_set(
        styles, style_blend, config, style_masks=style_masks, style_regions=style_regions
    )
    content = prepare.as_rgb(content, "content image")
    prepare.check_content_masks(style_set, content.shape[:2], config)
    runner = methods.setup(config, style_set, weights=weights)
    plans = runner.plan(content.shape[:2])
    parts = None
    if any(plan.tiled for plan in plans):
        emit(Planned(tuple(plans), memory_budget_bytes(config)))
        if keep_parts is not None and runner.keeps_parts:
            parts = keep_parts(plans, runner.weights_id)
    return runner.stylize(content, init_image=init_image, callback=callback, parts=parts, plans=plans)
