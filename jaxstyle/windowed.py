"""The objective's statistics of an image too large to run whole (print-size tiles), summed over
windows with a halo, so that they equal the whole image's up to float rounding; with spatial
control, the guided Grams of `objective.guided_style_targets` the same way."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle import losses
from jaxstyle.errors import UsageError
from jaxstyle.nets.vgg_layers import receptive_field, stride_of
from jaxstyle.objective import LossSpec, direct_params, image_features, layer_guides, region_weights


def _core_mask(value: jax.Array, name: str, box: jax.Array) -> jax.Array:
    """(h, w, 1) 1.0 at the positions of a layer's ``value`` inside ``box`` (top, bottom, left,
    right in window pixels), 0.0 elsewhere."""
    stride = stride_of(name)
    rows, cols = jnp.arange(value.shape[0]) * stride, jnp.arange(value.shape[1]) * stride
    inside = ((rows >= box[0]) & (rows < box[1]))[:, None] & ((cols >= box[2]) & (cols < box[3]))[None, :]
    return inside[..., None].astype(value.dtype)


@functools.partial(jax.jit, static_argnames=("spec",))
def _window_gram_sums(params, window: jax.Array, box: jax.Array, spec: LossSpec):
    """Per style layer, the unnormalised Gram ``F^T F`` and position count of the core ``box``
    (top, bottom, left, right in window pixels) of one window of a style image."""
    features = image_features(direct_params(params), window, spec.style_layers, spec)
    sums = {}
    for name, value in features.items():
        inside = _core_mask(value, name, box)
        flat = (inside * value).reshape(-1, value.shape[-1])
        sums[name] = (jnp.matmul(flat.T, flat, precision=jax.lax.Precision.HIGHEST), jnp.sum(inside))
    return sums


@functools.partial(jax.jit, static_argnames=("spec",))
def window_guided_sums(params, window: jax.Array, guides, box: jax.Array, spec: LossSpec):
    """Per style layer, the unnormalised guided Grams (R, C, C) (`losses.guided_gram_sums`) of the
    core ``box`` of one window under its ``{layer: (h, w, R)}`` guides, and the (R,) sums of squared
    guide values there (what the whole image's guided Grams are divided by). A box of the whole
    window gives a tile's own sums."""
    features = image_features(direct_params(params), window, spec.style_layers, spec)
    sums = {}
    for name, value in features.items():
        guide = _core_mask(value, name, box) * guides[name]
        sums[name] = (losses.guided_gram_sums(value, guide), jnp.sum(jnp.square(guide), axis=(0, 1)))
    return sums


def _crop_layer(guide: np.ndarray, rows: slice, cols: slice, stride: int) -> np.ndarray:
    """The part of a whole image's layer guide (`objective.layer_guides`) that a window of the image
    (``rows``, ``cols``) sees at a layer of ``stride``: the window starts on the layer's grid (its
    corner is a multiple of 16), so its positions are the whole image's, floor(side / stride) of them."""
    if rows.start % stride or cols.start % stride:
        raise ValueError(f"a window at ({rows.start}, {cols.start}) is off the grid of stride {stride}")
    top, left = rows.start // stride, cols.start // stride
    return guide[top : top + (rows.stop - rows.start) // stride, left : left + (cols.stop - cols.start) // stride]


@functools.partial(jax.jit, static_argnames=("spec",))
def _window_content_sums(params, window: jax.Array, reference: jax.Array, box: jax.Array, spec: LossSpec):
    """Per content layer, the sum of squared feature differences between two images' windows in
    the core ``box``, and the number of elements summed."""
    params = direct_params(params)
    ours, theirs = (image_features(params, image, spec.content_layers, spec) for image in (window, reference))
    sums = {}
    for name, value in ours.items():
        inside = _core_mask(value, name, box)
        sums[name] = (jnp.sum(inside * jnp.square(value - theirs[name])), jnp.sum(inside) * value.shape[-1])
    return sums


def _halo_crops(shape: tuple[int, int], layers: tuple[str, ...], window: int):
    """``(rows, cols, box)`` of the windows that cover an image of ``shape`` in disjoint cores, with
    a halo of ``layers``' receptive field (`jaxstyle.tiling.halo_windows`)."""
    from jaxstyle.tiling import halo_windows

    field, _ = receptive_field(layers)
    halo = -(-field // 16) * 16
    core = max(16, max(window - 2 * halo, window // 2) // 16 * 16)
    for top, bottom, core_top, core_bottom in halo_windows(shape[0], core, halo, fixed=False):
        for left, right, core_left, core_right in halo_windows(shape[1], core, halo, fixed=False):
            box = jnp.asarray([core_top - top, core_bottom - top, core_left - left, core_right - left])
            yield slice(top, bottom), slice(left, right), box


def gram_targets_tiled(
    params, style: np.ndarray, spec: LossSpec, window: int, guides: np.ndarray | None = None
) -> dict[str, jax.Array]:
    """The Gram targets of `style_targets` for a style image too large to run whole, computed in
    windows: equal to the whole image's up to float rounding.

    The image is cut into cores (a multiple of 16 pixels, so that every window's poolings fall on
    the whole image's grid); each core runs inside a window with a margin of the deepest style
    layer's receptive field, so its features are exactly the whole image's, and the cores'
    ``F^T F`` sums add up to the whole image's (`jaxstyle.tiling.halo_windows`). Windows are about
    ``window`` pixels a side (more where that leaves cores under half of it); those near the
    borders are clipped, so there are up to four window sizes per axis (up to 16 compilations).

    With (H, W, R) ``guides``, the guided Grams (R, C, C) of `objective.region_grams` instead: each
    window takes its crop of the whole image's guide at each layer (`_crop_layer`), so the sums
    are the whole image's.
    """
    if spec.style_statistic != "gram":
        raise UsageError("print-size tiles need the Gram style statistic; use --set style_statistic=gram")
    if guides is not None:
        return _guided_grams_tiled(params, style, spec, window, guides)
    totals: dict[str, list] = {}
    for rows, cols, box in _halo_crops(style.shape[:2], spec.style_layers, window):
        for name, (gram, count) in _window_gram_sums(params, jnp.asarray(style[rows, cols]), box, spec).items():
            total = totals.setdefault(name, [0.0, 0])
            total[0] = total[0] + np.asarray(gram, np.float64)
            total[1] += int(count)
    return {name: jnp.asarray(gram / (count * gram.shape[0]), jnp.float32) for name, (gram, count) in totals.items()}


def _guided_grams_tiled(params, image: np.ndarray, spec: LossSpec, window: int, guides: np.ndarray):
    pooled = layer_guides(guides, spec.style_layers)
    totals: dict[str, list] = {}
    for rows, cols, box in _halo_crops(image.shape[:2], spec.style_layers, window):
        own = {name: jnp.asarray(_crop_layer(g, rows, cols, stride_of(name))) for name, g in pooled.items()}
        for name, (gram, count) in window_guided_sums(params, jnp.asarray(image[rows, cols]), own, box, spec).items():
            total = totals.setdefault(name, [0.0, 0.0])
            total[0] = total[0] + np.asarray(gram, np.float64)
            total[1] = total[1] + np.asarray(count, np.float64)
    return {
        name: jnp.asarray(gram / (gram.shape[-1] * np.maximum(count, losses.EMPTY_REGION))[:, None, None], jnp.float32)
        for name, (gram, count) in totals.items()
    }


def guided_targets_tiled(params, content: np.ndarray, styles, regions, guides: np.ndarray, spec: LossSpec, window: int):
    """`objective.guided_style_targets` of an image too large to run whole, in windows: per style
    layer ``{"gram": (R, C, C), "weight": (R,)}`` (the guides are each tile's own)."""
    per_style = []
    for index, style in enumerate(styles):
        region = None if regions is None else regions[index]
        if region is None:
            per_style.append(gram_targets_tiled(params, style, spec, window))
        else:
            own = gram_targets_tiled(params, style, spec, window, np.asarray(region)[..., None])
            per_style.append({name: gram[0] for name, gram in own.items()})
    photo = gram_targets_tiled(params, content, spec, window, guides[..., -1:])
    return {
        name: {
            "gram": jnp.stack([*(grams[name] for grams in per_style), photo[name][0]]),
            "weight": jnp.asarray(region_weights(guide)),
        }
        for name, guide in layer_guides(guides, spec.style_layers).items()
    }


def layer_losses_tiled(
    params,
    image: np.ndarray,
    targets: Mapping[str, Any],
    content: np.ndarray,
    spec: LossSpec,
    window: int,
    guides: np.ndarray | None = None,
) -> dict[str, Any]:
    """`layer_losses` of an image too large to run whole, in windows (as `gram_targets_tiled`):
    the content layers against the features of ``content``, the style layers against the Gram
    ``targets["style"]``; with (H, W, R) ``guides``, the guided Grams against a masked run's targets
    (`guided_targets_tiled`)."""
    grams = gram_targets_tiled(params, image, spec, window, guides)
    if guides is None:
        style = {name: losses.style_loss_of_grams(grams[name], targets["style"][name]) for name in spec.style_layers}
    else:
        style = {
            name: losses.guided_style_loss(
                grams[name], targets["style"][name]["gram"], targets["style"][name]["weight"]
            )
            for name in spec.style_layers
        }
    totals: dict[str, list] = {}
    content_windows = _halo_crops(image.shape[:2], spec.content_layers, window) if spec.content_layers else ()
    for rows, cols, box in content_windows:
        crops = (jnp.asarray(image[rows, cols]), jnp.asarray(content[rows, cols]))
        for name, (total, count) in _window_content_sums(params, *crops, box, spec).items():
            running = totals.setdefault(name, [0.0, 0])
            running[0] += float(total)
            running[1] += int(count)
    return {
        "content": {name: jnp.float32(total / count) for name, (total, count) in totals.items()},
        "style": style,
        "tv": losses.tv_loss(jnp.asarray(image), spec.tv_kind),
    }
