"""The contact sheet of a network's own styles: a photo in each of the 26 built-in styles, or of
a trained model's styles (``jaxstyle builtin-styles``)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxstyle import prepare
from jaxstyle.config import StyleConfig
from jaxstyle.methods.fast import FastRunner


def builtin_contact_sheet(content: np.ndarray, config: StyleConfig | None = None, columns: int = 7) -> np.ndarray:
    """The content in each of the network's styles (the 26 built-in ones, or ``config.fast.model``'s),
    row by row from style 0, on one image.

    Every tile is ``config.max_size`` on its long side; tiles are one compiled batch.
    """
    config = (config or StyleConfig()).replace(method="fast", builtin_style="0")
    runner = FastRunner(config, prepare.make_style_set(None, None, config))
    image = prepare.prepare_batch_image(0, content, runner.styles, config)
    h, w = image.size
    network, params, count = runner._network
    contents = jnp.asarray(np.stack([image.content] * count))
    tiles = np.asarray(network(params, contents, jnp.eye(count), compute_dtype=runner.dtype))
    tiles = [prepare.finish(tile, image.original, config) for tile in tiles]
    rows = -(-count // columns)
    sheet = np.ones((rows * h, columns * w, 3), np.float32)
    for index, tile in enumerate(tiles):
        r, c = divmod(index, columns)
        sheet[r * h : (r + 1) * h, c * w : (c + 1) * w] = tile
    return sheet
