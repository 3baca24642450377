"""jaxstyle: neural style transfer (Gatys et al.) as pure, jit-compiled JAX functions.

    import jaxstyle
    image = jaxstyle.stylize(content, style, jaxstyle.StyleConfig(max_size=512))

Heavy modules (JAX, the weights) load on first use, not at import.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "stylize": "jaxstyle.stylize",
    "Progress": "jaxstyle.stylize",
    "StyleConfig": "jaxstyle.config",
    "preset": "jaxstyle.config",
    "PRESETS": "jaxstyle.config",
    "load_weights": "jaxstyle.weights",
    "VGGWeights": "jaxstyle.weights",
    "load_image": "jaxstyle.image",
    "save_image": "jaxstyle.image",
    "knn_color_transfer": "jaxstyle.color_knn",
    "KNNColorTransfer": "jaxstyle.color_knn",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from jaxstyle.color_knn import KNNColorTransfer, knn_color_transfer
    from jaxstyle.config import PRESETS, StyleConfig, preset
    from jaxstyle.image import load_image, save_image
    from jaxstyle.stylize import Progress, stylize
    from jaxstyle.weights import VGGWeights, load_weights


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'jaxstyle' has no attribute {name!r}")
