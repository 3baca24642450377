"""The fast method's spatial control (`jaxstyle.masks`): what each region of the one pass is
conditioned on, and the guides the network takes.

Magenta's networks are conditioned on a style through their instance norms; with guides each
norm is guided, every region normalised with its own statistics, gamma and beta and the regions
mixed per pixel (`jaxstyle.nets.magenta.instance_norm`). The guides (`jaxstyle.masks.guides_at`)
give each pixel its shares of the K styles and, last, of the photo.

* The arbitrary network: region r < K is style r's own vector, at the style strength as Magenta
  interpolates it (``s * v_r + (1 - s) * v_photo``, `magenta_predictor.with_strength`), and the
  photo's region is the photo's own vector (the predictor on the content), so a part no mask
  covers is the photo "in its own style", as ``--style-strength 0`` gives all of it.
* The 26-style network (and a trained one, ``--model``, alike) has no vector of the photo. Each mask's region is the one-hot row of the
  built-in style it is named with, the network runs on the styles' shares alone (`builtin_guides`),
  and the photo's share is composited in pixel space with the content the network stylized
  (`composite_photo`): a departure from the arbitrary network's handling, where the photo's share
  goes through the network too.

Plain NumPy: no JAX.
"""

from __future__ import annotations

import numpy as np

from jaxstyle.builtin_styles import BUILTIN_STYLES, builtin_style_parts
from jaxstyle.nets.magenta_predictor import with_strength

# Below this total share of the styles a pixel is all but the photo's, and its styles are mixed
# evenly (`builtin_guides`): the composite shows none of it.
_TINY = 1e-6


def region_vectors(styles: np.ndarray, photos: np.ndarray, strength: float) -> np.ndarray:
    """(N, K + 1, 100) rows for the arbitrary network: the K styles' vectors (``styles`` (K, 100),
    or (N, K, 100) per image in the per-image colour modes) at ``strength`` towards each image's
    own vector (``photos`` (N, 100)), then that vector itself for the photo's region."""
    photos = np.asarray(photos, np.float32)
    styles = np.broadcast_to(np.asarray(styles, np.float32), (photos.shape[0], *np.shape(styles)[-2:]))
    mixed = with_strength(styles, photos[:, None, :], strength)
    return np.concatenate([mixed, photos[:, None, :]], axis=1).astype(np.float32)


def builtin_rows(text: str, count: int = BUILTIN_STYLES) -> np.ndarray:
    """(K, 26): the one-hot row of each built-in style named in ``text``, in order (one per mask;
    weights written in the text are not used: the masks say how much of each style goes where);
    (K, count) for a trained model's ``count`` styles."""
    parts = builtin_style_parts(text, count)
    rows = np.zeros((len(parts), count), np.float32)
    for index, (number, _) in enumerate(parts):
        rows[index, number] = 1.0
    return rows


def builtin_guides(guides: np.ndarray) -> np.ndarray:
    """(h, w, K): the styles' shares of (h, w, K + 1) guides, scaled to sum 1 at every pixel (the
    photo's share is added back by `composite_photo`). Where the masks leave a pixel all to the
    photo the styles are mixed evenly there; a smooth formula, so soft edges stay soft."""
    styles = np.asarray(guides, np.float32)[..., :-1]
    count = styles.shape[-1]
    total = styles.sum(axis=-1, keepdims=True)
    return ((styles + _TINY / count) / (total + _TINY)).astype(np.float32)


def composite_photo(result: np.ndarray, content: np.ndarray, guides: np.ndarray) -> np.ndarray:
    """The 26-style network's ``result`` (h, w, 3) with the photo's share of ``guides`` (h, w, K + 1)
    taken from ``content`` (what the network stylized, in the same colours)."""
    share = np.asarray(guides, np.float32)[..., -1:]
    return (result + share * (content - result)).astype(np.float32)


def region_window(image: np.ndarray, region: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A style image (h, w, 3) and its region (h, w) cut to the square the predictor sees.

    The predictor sees the central square of a style image (`magenta_predictor.resize_style_image`),
    and a region beside it would be cut away. So the square is the one along the long side that
    holds the most of the region; when the central one holds as much (a region of all of the
    image, or of its middle), both are returned as they are, for the usual central crop."""
    h, w = region.shape
    side = min(h, w)
    along = region.sum(axis=0 if h == side else 1)  # the region's mass per column (or row)
    windows = np.convolve(along, np.ones(side), mode="valid")  # mass of each square, by start
    central = (max(h, w) - side) // 2
    best = int(np.argmax(windows))
    if windows[best] <= windows[central] * (1 + 1e-6):
        return image, region
    cut = (slice(None), slice(best, best + side)) if h == side else (slice(best, best + side), slice(None))
    return image[cut], region[cut]
