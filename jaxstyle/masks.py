"""Spatial control (Gatys et al. 2017, "Controlling Perceptual Factors in Neural Style Transfer"):
where each style goes in the output, and which part of each style image it is taken from.

A *mask* says where a style goes: one greyscale image per style, white for "this style here",
soft values for a partial share; an image with transparency gives its alpha. A *region* says
which part of a style image its statistics come from (Gatys et al.'s guidance on the style side).
Both are checked here, once, before any work (`as_mask`, `check_masks`), and turned into the
*guides* the methods read (`guides_at`): one map per style and, last, the photo's own, summing to
1 at every pixel. Where the masks sum to less than 1 the rest is the photo's: the optimisation
matches the photo's own statistics there and the fast network uses the photo's own style vector,
so a region no mask covers stays the photo (as ``--style-strength 0`` keeps all of it). Where
they sum to more than 1 they are scaled down to 1, so overlapping masks blend their styles.

Plain NumPy and SciPy: no JAX. How each method carries the guides to its layers' resolutions is
the method's own (`jaxstyle.methods.gatys`, `jaxstyle.nets.magenta`); `downsample` is the pooling
both use on the host.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxstyle.errors import MaskError
from jaxstyle.io.resize import resize_to

# A mask whose every pixel is below this puts its style nowhere: refused rather than ignored.
BLACK = 1.0 / 255.0
# Masks and photos whose width/height ratios differ by more than this are not the same frame.
ASPECT_TOLERANCE = 0.01
# The default feather: this share of the output's long side (4 px at 512 px, 32 px at 4096 px),
# so that a print and its preview have the same transitions.
FEATHER_SHARE = 1 / 128


def as_mask(image: np.ndarray, alpha: np.ndarray | None = None, *, what: str = "mask") -> np.ndarray:
    """A mask as float32 (H, W) in [0, 1] from any image array: its ``alpha`` if given, else an
    (H, W, 4) array's alpha, else its luminance ((H, W) and (H, W, 1) arrays as they are; uint8
    scaled by 1/255). `MaskError` for an array that is not an image, not finite, or all black."""
    array = np.asarray(image)
    if alpha is not None:
        array = np.asarray(alpha)
    elif array.ndim == 3 and array.shape[-1] in (2, 4):
        array = array[..., -1]  # grey + alpha or RGBA: the alpha
    if array.dtype == np.uint8:
        array = array / 255.0
    array = np.asarray(array, np.float32)
    if array.ndim == 3 and array.shape[-1] == 3:
        array = array @ np.asarray([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601 luma
    elif array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2 or min(array.shape) < 1:
        raise MaskError(f"{what} must be an (H, W) greyscale image, got shape {np.shape(image)}")
    if not np.all(np.isfinite(array)):
        raise MaskError(f"{what} contains NaN or inf")
    array = np.clip(array, 0.0, 1.0)
    if float(array.max()) < BLACK:
        raise MaskError(f"{what} is all black: it puts its style nowhere (white marks where a style goes)")
    return array


def load_mask(path: str | Path, *, what: str | None = None) -> np.ndarray:
    """A mask file as `as_mask` gives it. The file is read with the image loader's size,
    format and decompression-bomb checks; any problem with it is a `MaskError`."""
    from jaxstyle.errors import ImageError, InputNotFoundError
    from jaxstyle.io.decode import load_image

    what = what or f"mask '{path}'"
    try:
        loaded = load_image(path, min_side=1)
    except (ImageError, InputNotFoundError) as error:
        raise MaskError(f"{what}: {error}") from None
    return as_mask(loaded.rgb, loaded.alpha, what=what)


def check_count(given: int, styles: int, *, kind: str = "mask", what: str = "style") -> None:
    """One mask (``kind`` "mask" or "region") per style (``what``: "style" or "built-in style")."""
    if given != styles:
        raise MaskError(f"{styles} {what}{'s' if styles != 1 else ''} but {given} style {kind}s: give one per {what}")


def load_masks(
    paths: Sequence[str | Path], styles: int, *, kind: str = "mask", what: str = "style"
) -> list[np.ndarray]:
    """One mask file per style (`check_count`), the count checked before any file is read, each
    read with `load_mask`."""
    check_count(len(paths), styles, kind=kind, what=what)
    return [load_mask(path, what=f"style {kind} '{path}'") for path in paths]


def check_aspect(mask: np.ndarray, shape: tuple[int, int], *, fit: str = "exact", name: str = "mask") -> None:
    """``mask`` has the aspect ratio of an image of ``shape`` (H, W), unless ``fit`` is "stretch"."""
    if fit == "stretch":
        return
    (h, w), (mh, mw) = shape, mask.shape[:2]
    if abs((mw / mh) / (w / h) - 1) > ASPECT_TOLERANCE:
        raise MaskError(
            f"{name} is {mw}x{mh} ({_ratio(mw, mh)}) but the image is {w}x{h} ({_ratio(w, h)}); "
            "make it the same shape, or pass --mask-fit stretch to stretch it over the image"
        )


def check_masks(
    masks: Sequence[np.ndarray],
    styles: int,
    content_shape: tuple[int, int],
    *,
    fit: str = "exact",
    names: Sequence[str] | None = None,
    kind: str = "mask",
) -> None:
    """One mask per style (`check_count`), each of the content's aspect ratio (`check_aspect`):
    `MaskError` naming the first that is not. ``kind``: "mask" (the output's) or "region"."""
    check_count(len(masks), styles, kind=kind)
    for index, mask in enumerate(masks):
        check_aspect(mask, content_shape, fit=fit, name=names[index] if names else f"{kind} {index + 1}")


def _ratio(w: int, h: int) -> str:
    return f"{w / h:.3g}:1"


def feather_px(shape: tuple[int, int], feather: float | None) -> float:
    """The feather in output pixels: ``feather``, or by default `FEATHER_SHARE` of the long side."""
    return max(shape) * FEATHER_SHARE if feather is None else float(feather)


def fitted(mask: np.ndarray, shape: tuple[int, int], feather: float = 0.0) -> np.ndarray:
    """One mask resized to ``shape`` (H, W) and feathered: a Gaussian blur of standard deviation
    ``feather / 2``, so that an edge goes from 10 % to 90 % over about 1.3 x ``feather`` pixels."""
    out = resize_to(mask, *shape)
    if feather > 0:
        from scipy.ndimage import gaussian_filter

        out = gaussian_filter(out, sigma=feather / 2, mode="nearest")
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def guides_at(masks: Sequence[np.ndarray], shape: tuple[int, int], feather: float | None = None) -> np.ndarray:
    """The guides of an output of ``shape`` (H, W): (H, W, K + 1) float32, the K masks resized and
    feathered (`fitted`), scaled down to sum 1 where they sum to more, and last the photo's share,
    what the masks leave. Every pixel's guides sum to 1."""
    amount = feather_px(shape, feather)
    stack = np.stack([fitted(mask, shape, amount) for mask in masks], axis=-1)
    total = stack.sum(axis=-1, keepdims=True)
    stack = stack / np.maximum(total, 1.0)
    photo = np.clip(1.0 - stack.sum(axis=-1, keepdims=True), 0.0, 1.0)
    return np.concatenate([stack, photo], axis=-1).astype(np.float32)


def region_at(region: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray | None:
    """A style region resized to its style image's ``shape`` (H, W), unfeathered (None: all of it)."""
    return None if region is None else fitted(region, shape)


def downsample(guide: np.ndarray, factor: int) -> np.ndarray:
    """(H, W, ...) guides averaged over ``factor`` x ``factor`` blocks: (H // factor, W // factor,
    ...), the rows and columns past the last whole block dropped (as a VALID pooling drops them)."""
    h, w = guide.shape[0] // factor * factor, guide.shape[1] // factor * factor
    blocks = guide[:h, :w].reshape(h // factor, factor, w // factor, factor, *guide.shape[2:])
    return blocks.mean(axis=(1, 3)).astype(np.float32)
