"""jaxstyle: artistic style transfer as pure, jit-compiled JAX functions.

    import jaxstyle
    image = jaxstyle.stylize(content, style, jaxstyle.StyleConfig(max_size=512))

Heavy modules (JAX, the weights) load on first use, not at import.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

try:
    __version__ = version("jaxstyle")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

_EXPORTS = {
    "stylize": "jaxstyle.stylization",
    "Progress": "jaxstyle.stylization",
    "stylize_batch": "jaxstyle.batch",
    "StyleConfig": "jaxstyle.config",
    "preset": "jaxstyle.config_sources",
    "PRESETS": "jaxstyle.config_sources",
    "load_weights": "jaxstyle.weights",
    "VGGWeights": "jaxstyle.weights",
    "load_image": "jaxstyle.io.decode",
    "save_image": "jaxstyle.io.encode",
    "knn_color_transfer": "jaxstyle.color_knn",
    "KNNColorTransfer": "jaxstyle.color_knn",
}

__all__ = [
    "PRESETS",
    "KNNColorTransfer",
    "Progress",
    "StyleConfig",
    "VGGWeights",
    "__version__",
    "knn_color_transfer",
    "load_image",
    "load_weights",
    "preset",
    "save_image",
    "stylize",
    "stylize_batch",
]

if TYPE_CHECKING:
    from jaxstyle.batch import stylize_batch
    from jaxstyle.color_knn import KNNColorTransfer, knn_color_transfer
    from jaxstyle.config import StyleConfig
    from jaxstyle.config_sources import PRESETS, preset
    from jaxstyle.io.decode import load_image
    from jaxstyle.io.encode import save_image
    from jaxstyle.stylization import Progress, stylize
    from jaxstyle.weights import VGGWeights, load_weights


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'jaxstyle' has no attribute {name!r}")
