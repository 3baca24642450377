"""What training minimises: the optimisation's own loss (`jaxstyle.objective`) on each output of the
network, in the same ratio units, so that ``--content-weight`` means the same balance in
``jaxstyle train`` as in ``jaxstyle stylize``.

Per training image, the ratios are those of a one-photo run on that crop: content against the
style image resized to the crop's shape, style against the crop itself, TV against the resized
style image (`objective.input_norms`). The parts that depend only on the style (its Grams, its
resized copy's content features and TV) are computed once per style (`StyleTargets`); those of the
crop come from one VGG pass over the batch, without gradients.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxstyle import losses
from jaxstyle.objective import (
    NORM_FLOOR,
    LossSpec,
    direct_params,
    image_features,
    layer_losses,
    make_targets,
    total_of,
    weighted_terms,
)


class StyleTargets(NamedTuple):
    """What each of S styles contributes to every crop's loss, stacked on a leading style axis."""

    grams: dict  # {style layer: (S, C, C)}, the style images' Grams at the style scale
    resized: dict  # {content layer: (S, h, w, C)}, content features of each style resized to the crop
    tv: jax.Array  # (S,) TV of each style resized to the crop


@functools.partial(jax.jit, static_argnames=("spec",))
def style_targets(vgg, style, resized, spec: LossSpec) -> StyleTargets:
    """One style's targets: ``style`` (h, w, 3) at the style scale, ``resized`` the same painting
    at the crop's shape (H, W, 3). Stack several with `stack`."""
    vgg = direct_params(vgg)
    grams = {n: losses.gram_matrix(f) for n, f in image_features(vgg, style, spec.style_layers, spec).items()}
    content = image_features(vgg, resized, spec.content_layers, spec)
    return StyleTargets(grams, content, losses.tv_loss(resized, spec.tv_kind))


def stack(targets: list[StyleTargets]) -> StyleTargets:
    return jax.tree.map(lambda *rows: jnp.stack(rows), *targets)


def crop_targets(vgg, crop, style: StyleTargets, spec: LossSpec) -> dict:
    """The `objective.make_targets` of one (H, W, 3) crop for one style (rows of `StyleTargets`):
    its content features, the style's Grams, and the norms every ratio divides by."""
    features = image_features(vgg, crop, (*spec.content_layers, *spec.style_layers), spec)
    content = {n: features[n] for n in spec.content_layers}
    norm = {
        "content": {n: losses.content_loss(style.resized[n], content[n]) for n in spec.content_layers},
        "style": {n: losses.style_loss(features[n], style.grams[n]) for n in spec.style_layers},
        "tv": style.tv,
    }
    norm = jax.tree.map(lambda v: jnp.maximum(v, NORM_FLOOR), norm)
    return jax.lax.stop_gradient(make_targets(content, style.grams, norm))


def image_loss(vgg, output, crop, style: StyleTargets, spec: LossSpec):
    """The optimisation's total (`objective.total_of`) of one network output against its crop and
    style, and its terms and ratios."""
    targets = crop_targets(vgg, crop, style, spec)
    terms = weighted_terms(layer_losses(vgg, output, targets, spec), targets["norm"], spec)
    return total_of(terms), terms


def batch_loss(vgg, outputs, crops, styles: StyleTargets, style_ids, spec: LossSpec):
    """Mean `image_loss` of (B, H, W, 3) outputs, image b against style ``style_ids[b]``; and the
    mean of each term."""
    chosen = jax.tree.map(lambda rows: rows[style_ids], styles)
    totals, terms = jax.vmap(lambda o, c, s: image_loss(vgg, o, c, s, spec))(outputs, crops, chosen)
    return jnp.mean(totals), jax.tree.map(jnp.mean, terms)
