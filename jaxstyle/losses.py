"""Loss terms of Gatys et al. (2015), one pure function each.

All functions take a single image's features, ``(H, W, C)`` arrays (use ``jax.vmap`` for batches),
and return a scalar. Normalisation conventions (why they differ from the paper is in the notes):

* Gram matrix: ``G = F^T F / (H W C)`` with ``F`` the (HW, C) feature matrix, i.e. the mean over all
  feature elements. jcjohnson/neural-style and the PyTorch tutorial use the same.
* Style loss per layer: ``mean((G - A)^2)`` over the C x C entries.
* Content loss per layer: ``mean((F - P)^2)`` over the H x W x C elements.
* Total variation: a *sum* over the image of ``|dx| + |dy|`` (L1, as ``tf.image.total_variation``)
  or ``dx^2 + dy^2`` (L2), for an image in [0, 1].

Conversions to other conventions (per layer with C channels and M = H W positions):

============================  ==========================================  =====================
peer                          its style loss                              = jaxstyle loss x
============================  ==========================================  =====================
jaxstyle, jcjohnson           mean((FtF/(MC) - A)^2)                      1
TensorFlow tutorial           mean((FtF/M - A)^2)                         C^2
Gatys et al. 2015 (E_l)       sum((FtF - A)^2) / (4 C^2 M^2)              C^2 / 4
raw Gram, no normalisation    mean((FtF - A)^2)                           C^2 M^2
============================  ==========================================  =====================

Content: Gatys' ``1/2 sum((F - P)^2)`` = jaxstyle x (M C / 2); the TF tutorial and jcjohnson
use the mean, like jaxstyle. Because our normalisation divides by C^2 relative to the TF
tutorial, its ``style_weight`` becomes per-layer weights proportional to C^2 (see config.py).
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

TVKind = Literal["l1", "l2"]


def gram_matrix(features: jax.Array) -> jax.Array:
    """(H, W, C) -> (C, C) Gram matrix ``F^T F / (H W C)``."""
    h, w, c = features.shape
    return _gram(features.reshape(h * w, c)) / (h * w * c)


# HIGHEST keeps float32 accuracy on TPU/GPU, where the default may use bf16/tf32 passes.
_HIGHEST = jax.lax.Precision.HIGHEST


@jax.custom_vjp
def _gram(flat: jax.Array) -> jax.Array:
    return jnp.matmul(flat.T, flat, precision=_HIGHEST)


def _gram_fwd(flat):
    return _gram(flat), flat


def _gram_bwd(flat, cotangent):
    # d(F^T F) = dF^T F + F^T dF, so the gradient is F (G' + G'^T): one (HW, C) x (C, C) product.
    # Autodiff emits F G' and F G'^T as two products over the large (HW, C) matrix.
    return (jnp.matmul(flat, cotangent + cotangent.T, precision=_HIGHEST),)


_gram.defvjp(_gram_fwd, _gram_bwd)


def guided_gram(features: jax.Array, guide: jax.Array) -> jax.Array:
    """(H, W, C) features and an (H, W, R) guide -> (R, C, C) guided Gram matrices, one per region:
    ``G_r = (F * T_r)^T (F * T_r) / (sum(T_r^2) C)`` (Gatys et al. 2017, "Controlling Perceptual
    Factors in Neural Style Transfer", spatial control).

    The paper leaves the scale of ``G_r`` to the guide; dividing by ``sum(T_r^2)`` (not H W) makes
    ``G_r`` a weighted mean of ``F_p F_p^T`` over the region, so a region's statistics do not depend
    on its area and a guide of ones gives `gram_matrix` exactly. An empty region's is 0."""
    c = features.shape[-1]
    total = jnp.sum(jnp.square(guide), axis=(0, 1))
    return guided_gram_sums(features, guide) / (c * jnp.maximum(total, EMPTY_REGION))[:, None, None]


# Below this sum of squared guide values a region is empty: its guided Gram is 0 instead of 0 / 0.
EMPTY_REGION = 1e-12


def guided_gram_sums(features: jax.Array, guide: jax.Array) -> jax.Array:
    """The unnormalised guided Grams ``sum_p T_r(p)^2 F_p F_p^T`` of (H, W, C) features under an
    (H, W, R) guide: (R, C, C). Sums of windows add up to the whole image's (`jaxstyle.windowed`)."""
    h, w, c = features.shape
    return _guided_sums(features.reshape(h * w, c), jnp.square(guide.reshape(h * w, guide.shape[-1])))


@jax.custom_vjp
def _guided_sums(flat: jax.Array, weights: jax.Array) -> jax.Array:
    # All regions in one (R C, HW) x (HW, C) product instead of R small ones.
    (p, c), r = flat.shape, weights.shape[-1]
    weighted = (weights[:, :, None] * flat[:, None, :]).reshape(p, r * c)
    return jnp.matmul(weighted.T, flat, precision=_HIGHEST).reshape(r, c, c)


def _guided_sums_fwd(flat, weights):
    return _guided_sums(flat, weights), (flat, weights)


def _guided_sums_bwd(residuals, cotangent):
    # As `_gram_bwd`, per region: dF = sum_r w_r * F (G'_r + G'_r^T), all regions in one product of
    # the (HW, C) features, and only F and the weights kept from the forward pass (autodiff would
    # keep the (HW, R C) weighted features). The weights' cotangent, F_p^T G'_r F_p, is exact but
    # unused in an optimisation (the guides are constants), so XLA drops it.
    flat, weights = residuals
    (p, c), r = flat.shape, weights.shape[-1]
    sym = cotangent + jnp.swapaxes(cotangent, 1, 2)  # (R, C, C)
    mixed = jnp.matmul(flat, jnp.moveaxis(sym, 0, 1).reshape(c, r * c), precision=_HIGHEST).reshape(p, r, c)
    d_flat = jnp.sum(weights[:, :, None] * mixed, axis=1)
    d_weights = 0.5 * jnp.sum(mixed * flat[:, None, :], axis=2)
    return d_flat, d_weights


_guided_sums.defvjp(_guided_sums_fwd, _guided_sums_bwd)


def guided_style_loss(grams: jax.Array, target_grams: jax.Array, weights: jax.Array) -> jax.Array:
    """A layer's style loss under spatial control: the sum over regions of ``weights[r] *
    mean((G_r - A_r)^2)``, for (R, C, C) guided Grams and targets and (R,) region weights. With one
    region of weight 1 it is `style_loss_of_grams`."""
    return jnp.sum(weights * jnp.mean(jnp.square(grams - target_grams), axis=(1, 2)))


def content_loss(features: jax.Array, target: jax.Array) -> jax.Array:
    """Mean squared difference of (H, W, C) features and the content target of the same shape."""
    return jnp.mean(jnp.square(features - target))


def style_loss(features: jax.Array, target_gram: jax.Array) -> jax.Array:
    """Mean squared difference between the Gram matrix of (H, W, C) features and a (C, C) target."""
    return style_loss_of_grams(gram_matrix(features), target_gram)


def style_loss_of_grams(gram: jax.Array, target_gram: jax.Array) -> jax.Array:
    """`style_loss` of an image whose Gram matrix is already known (computed in windows)."""
    return jnp.mean(jnp.square(gram - target_gram))


def tv_loss(image: jax.Array, kind: TVKind = "l2") -> jax.Array:
    """Total variation of an (H, W, 3) image in [0, 1], summed over pixels and channels.

    "l1" is anisotropic TV (``tf.image.total_variation``); "l2" sums squared differences, which
    jcjohnson/neural-style uses (half of it, on 0..255 pixels: its weight w is ours x 255^2 / 2).
    """
    dy = image[1:, :, :] - image[:-1, :, :]
    dx = image[:, 1:, :] - image[:, :-1, :]
    if kind == "l1":
        return jnp.sum(jnp.abs(dy)) + jnp.sum(jnp.abs(dx))
    return jnp.sum(jnp.square(dy)) + jnp.sum(jnp.square(dx))


def temporal_loss(image: jax.Array, previous: jax.Array, mask: jax.Array) -> jax.Array:
    """Ruder et al. 2016's short-term temporal loss: ``mean(mask * (image - previous)^2)``.

    ``image`` and ``previous`` (the previous frame's result warped onto this one) are (H, W, 3)
    in [0, 1]; ``mask`` (H, W, 1) is 1 where the warp can be trusted and 0 at occlusions. The
    mean runs over all H x W x 3 values, as the paper's 1/D.
    """
    return jnp.mean(mask * jnp.square(image - previous))


def sorted_projections(features: jax.Array, directions: jax.Array, length: int) -> jax.Array:
    """Sorted 1-D projections of (H, W, C) features on (C, K) directions, resampled to ``length`` quantiles.

    The target of `sliced_wasserstein_loss`: resampling to the generated image's number of positions
    lets style and content images of different sizes be compared quantile by quantile.
    """
    h, w, c = features.shape
    projected = jnp.sort(features.reshape(h * w, c) @ directions, axis=0)  # (HW, K)
    source = (jnp.arange(h * w) + 0.5) / (h * w)
    wanted = (jnp.arange(length) + 0.5) / length
    return jax.vmap(lambda column: jnp.interp(wanted, source, column), in_axes=1, out_axes=1)(projected)


def sliced_wasserstein_loss(features: jax.Array, directions: jax.Array, target_sorted: jax.Array) -> jax.Array:
    """Sliced Wasserstein-2 distance between the feature distribution and a style target.

    Gram matrices only match second moments; the sliced Wasserstein distance compares the whole
    distribution of features along K random directions (Heitz et al. 2021, "A Sliced Wasserstein
    Loss for Neural Texture Synthesis"). ``target_sorted`` is `sorted_projections` of the style
    features at this image's number of positions. The mean over positions and directions keeps the
    scale comparable across layers; we divide by C like the Gram convention above.
    """
    h, w, c = features.shape
    projected = jnp.sort(features.reshape(h * w, c) @ directions, axis=0)
    return jnp.mean(jnp.square(projected - target_sorted)) / c
