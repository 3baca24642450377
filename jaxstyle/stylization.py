"""`stylize`: one image, any method (`jaxstyle.methods`), with the shared per-image setup.

Arrays in and out are numpy float32 RGB in [0, 1], shape (H, W, 3). The function is silent: it
reports through ``callback`` and never prints.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from jaxstyle import methods, prepare
from jaxstyle.config import StyleConfig
from jaxstyle.methods.gatys import Progress

__all__ = ["Progress", "stylize"]


def stylize(
    content: np.ndarray,
    styles: np.ndarray | Sequence[np.ndarray] | None,
    config: StyleConfig | None = None,
    *,
    style_blend: Sequence[float] | None = None,
    init_image: np.ndarray | None = None,
    weights=None,
    callback: Callable[[Progress], None] | None = None,
) -> np.ndarray:
    """Stylize ``content`` with one or several ``styles``.

    Args:
      content: (H, W, 3) RGB in [0, 1] (uint8 and grey (H, W) are accepted).
      styles: one style image or a list; each may have its own size and aspect ratio (None or
        empty with ``config.fast.builtin_style``).
      config: all settings, the method included; `StyleConfig()` by default.
      style_blend: one non-negative weight per style (normalised to sum 1); equal by default.
      init_image: the starting image when ``config.optimize.init == "image"``.
      weights: the method's weights (`VGGWeights` for "gatys"); the embedded default if None.
      callback: called with the method's progress reports (a `Progress` for "gatys").

    Returns:
      (h, w, 3) float32 in [0, 1], with the long side ``config.max_size``.
    """
    config = config or StyleConfig()
    style_set = prepare.make_style_set(styles, style_blend, config)
    runner = methods.setup(config, style_set, weights=weights)
    return runner.stylize(content, init_image=init_image, callback=callback)
