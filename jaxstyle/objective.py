"""What the optimisation minimises: losses wired to VGG19 features, the targets they are measured
against, the inputs' own losses every term is a ratio to, and the scores of a finished image.

Loss settings are a hashable `LossSpec`, passed to the jitted functions as a static argument; the
targets are a PyTree laid out by `make_targets`. The statistics of an image too large to run whole
are summed in windows (`jaxstyle.windowed`); the step that minimises `total_loss` is `jaxstyle.step`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle import losses
from jaxstyle.config import LossSettings, StyleConfig
from jaxstyle.nets.vgg import KERAS_MEAN_BGR, preprocess, vgg19_features


@dataclass(frozen=True)
class LossSpec:
    """The static (hashable) part of the loss: the config's loss section, and what the loss takes
    from elsewhere (the video's temporal weight, the weights' mean, the VGG's precision)."""

    settings: LossSettings = dataclasses.field(default_factory=LossSettings)
    temporal_weight: float = 0.0  # used where the targets hold a "temporal" reference (video)
    mean_bgr: tuple[float, float, float] = KERAS_MEAN_BGR
    precision: str = "float32"

    @classmethod
    def from_config(cls, config: StyleConfig, mean_bgr=KERAS_MEAN_BGR) -> LossSpec:
        return cls(
            config.loss,
            temporal_weight=float(config.resolved_temporal_weight),
            mean_bgr=tuple(float(v) for v in mean_bgr),
            precision=config.resources.precision,
        )

    # What the loss functions read, from the section (resolved defaults where the section has them).

    @property
    def content_layers(self) -> tuple[str, ...]:
        """The content layers, none when the content weight is 0 (nothing to compute)."""
        return tuple(self.settings.content_layers) if self.settings.content_weight > 0 else ()

    @property
    def content_weight(self) -> float:
        return float(self.settings.content_weight)

    @property
    def style_layers(self) -> tuple[str, ...]:
        return tuple(self.settings.style_layers)

    @property
    def style_layer_weights(self) -> tuple[float, ...]:
        return tuple(float(w) for w in self.settings.resolved_style_layer_weights)

    @property
    def style_weight(self) -> float:
        return float(self.settings.resolved_style_weight)

    @property
    def style_statistic(self) -> str:
        return self.settings.style_statistic

    @property
    def tv_weight(self) -> float:
        return float(self.settings.tv_weight)

    @property
    def tv_kind(self) -> str:
        return self.settings.tv_kind

    @property
    def pooling(self) -> str:
        return self.settings.pooling

    @property
    def loss_units(self) -> str:
        """ "ratio": each layer's loss over its value at the inputs (`input_norms`); "raw": plain sums."""
        return self.settings.loss_units

    @property
    def layers(self) -> tuple[str, ...]:
        """Every VGG layer the loss reads."""
        return self.content_layers + self.style_layers


def image_features(params, image: jax.Array, layers, spec: LossSpec) -> dict[str, jax.Array]:
    """VGG features of one (H, W, 3) image in [0, 1], each (h, w, C), float32 whatever the precision."""
    batch = preprocess(image, spec.mean_bgr)[None].astype(spec.precision)
    features = vgg19_features(params, batch, layers, pooling=spec.pooling)
    return {name: value[0].astype(jnp.float32) for name, value in features.items()}


def _directions(channels: int, layer_index: int) -> jax.Array:
    """Fixed random orthonormal (C, C) projection directions for the sliced Wasserstein loss."""
    key = jax.random.fold_in(jax.random.key(1234), layer_index)
    q, _ = jnp.linalg.qr(jax.random.normal(key, (channels, channels)))
    return q


def direct_params(params) -> dict[str, dict[str, jax.Array]]:
    """Only the kernels and biases of `vgg.prepare_params` output, so that the VGG runs on ``lax.conv``.

    The target passes run once per scale, forward only: there compilation is what costs, and the
    ``lax.conv`` program compiles several times faster than the Winograd one (docs/performance.md);
    the Gram targets agree to 1.5e-6 relative.
    """
    return {name: {"kernel": layer["kernel"], "bias": layer["bias"]} for name, layer in params.items()}


@functools.partial(jax.jit, static_argnames=("spec",))
def content_targets(params, content: jax.Array, spec: LossSpec) -> dict[str, jax.Array]:
    """Content features of an (H, W, 3) image at ``spec.content_layers``."""
    return image_features(direct_params(params), content, spec.content_layers, spec)


@functools.partial(jax.jit, static_argnames=("spec",))
def batch_content_targets(params, contents: jax.Array, spec: LossSpec) -> dict[str, jax.Array]:
    """Content features of (B, H, W, 3) images, each (B, h, w, C)."""
    return jax.vmap(lambda content: content_targets(params, content, spec))(contents)


@functools.partial(jax.jit, static_argnames=("spec", "shape"))
def style_targets(params, style: jax.Array, spec: LossSpec, shape: tuple[int, int]) -> dict[str, jax.Array]:
    """Style statistics of one (h, w, 3) style image for an output of ``shape`` (H, W).

    Gram matrices do not depend on the output size; sliced Wasserstein targets are resampled to
    the number of positions each layer has at the output size (found by a shape-only trace).
    """
    params = direct_params(params)
    features = image_features(params, style, spec.style_layers, spec)
    if spec.style_statistic == "gram":
        return {name: losses.gram_matrix(value) for name, value in features.items()}
    out_shapes = jax.eval_shape(
        lambda: image_features(params, jnp.zeros((*shape, 3), style.dtype), spec.style_layers, spec)
    )
    targets = {}
    for index, (name, value) in enumerate(features.items()):
        h, w, c = out_shapes[name].shape
        targets[name] = losses.sorted_projections(value, _directions(c, index), h * w)
    return targets


# Spatial control (Gatys et al. 2017; the guides come from `jaxstyle.masks`). A style target of a
# masked run is, per style layer, a dict instead of a Gram matrix: ``{"gram": (R, C, C), "guide":
# (h, w, R), "weight": (R,)}`` for R = K + 1 regions, the K styles and last the photo's own share.
# ``"gram"`` holds style k's Gram (its guided Gram over its ``--style-region``, if given) and, for
# the photo, the content image's own guided Gram over the uncovered part, so that part keeps the
# photo's texture. A tile adds ``"count"`` (R,) and ``"rest"`` (R, C, C) (`guided_layer_loss`).

# Regions whose share of the image (mean guide value at a layer) is below this are weighted by
# share / MIN_REGION_SHARE. Guided Grams are means over their region, so the pull on each pixel of
# a region grows as 1 / share: a sliver (the seam two feathered masks leave to the photo, a stray
# speck in a mask) would pull its few pixels hundreds of times harder than a whole-image style and
# dominate the step. Fading it in linearly caps that at 1 / MIN_REGION_SHARE = 20 times and, unlike
# dropping regions below a threshold, does not jump when a mask changes a little.
MIN_REGION_SHARE = 0.05


def region_weights(guide: np.ndarray) -> np.ndarray:
    """(R,) weights of the regions of an (h, w, R) guide: ``min(1, share / MIN_REGION_SHARE)``."""
    share = np.mean(np.asarray(guide, np.float64), axis=(0, 1))
    return np.minimum(1.0, share / MIN_REGION_SHARE).astype(np.float32)


def layer_guides(guides: np.ndarray, layers) -> dict[str, np.ndarray]:
    """(H, W, R) guides at each of ``layers``' resolutions: ``{layer: (h, w, R)}``, averaged over
    stride x stride blocks (`masks.downsample`). VGG's 2x2 poolings drop odd rows and columns
    (VALID), so the layer at stride s has floor(H / s) rows and each position sees the block the
    mean is over: it is the share of that block in each region (Gatys et al. resize the guides)."""
    from jaxstyle.masks import downsample
    from jaxstyle.nets.vgg_layers import stride_of

    return {name: downsample(np.asarray(guides, np.float32), stride_of(name)) for name in layers}


@functools.partial(jax.jit, static_argnames=("spec",))
def region_grams(params, image: jax.Array, guides, spec: LossSpec) -> dict[str, jax.Array]:
    """Guided Grams (R, C, C) of one (H, W, 3) image under ``{layer: (h, w, R)}`` guides."""
    features = image_features(direct_params(params), image, spec.style_layers, spec)
    return {name: losses.guided_gram(value, guides[name]) for name, value in features.items()}


def guided_style_targets(
    params,
    content: np.ndarray,
    styles,
    regions,
    guides: np.ndarray,
    spec: LossSpec,
) -> dict[str, dict[str, jax.Array]]:
    """The style targets of a masked run (the layout above) for ``content`` (what is stylized, (H,
    W, 3)) and its (H, W, K + 1) ``guides`` (`prepare.guides_for`): ``styles``, the K sized style
    images, and ``regions``, each one's (h, w) region or None (or None for all)."""
    shape = content.shape[:2]
    per_layer = layer_guides(guides, spec.style_layers)
    photo = region_grams(params, jnp.asarray(content), {n: g[..., -1:] for n, g in per_layer.items()}, spec)
    per_style = []
    for index, style in enumerate(styles):
        region = None if regions is None else regions[index]
        if region is None:
            per_style.append(style_targets(params, jnp.asarray(style), spec, shape))
        else:
            own = layer_guides(np.asarray(region)[..., None], spec.style_layers)
            per_style.append({n: g[0] for n, g in region_grams(params, jnp.asarray(style), own, spec).items()})
    return {
        name: {
            "gram": jnp.stack([*(grams[name] for grams in per_style), photo[name][0]]),
            "guide": jnp.asarray(guide),
            "weight": jnp.asarray(region_weights(guide)),
        }
        for name, guide in per_layer.items()
    }


def guided_layer_loss(features: jax.Array, target: Mapping[str, jax.Array]) -> jax.Array:
    """One style layer's loss under spatial control (`losses.guided_style_loss`) of (h, w, C)
    ``features`` against a masked run's ``target`` (the layout above). A tile's target also holds
    the whole image's ``"count"`` (sum of squared guide values per region) and ``"rest"``, what the
    rest of the image adds to each guided Gram: the tile's sums then give the whole image's Grams."""
    if "rest" in target:
        sums = losses.guided_gram_sums(features, target["guide"])
        grams = sums / (features.shape[-1] * target["count"])[:, None, None] + target["rest"]
    else:
        grams = losses.guided_gram(features, target["guide"])
    return losses.guided_style_loss(grams, target["gram"], target["weight"])


def blend_style_targets(per_style: list[dict[str, jax.Array]], blend: tuple[float, ...]) -> dict[str, jax.Array]:
    """Weighted mean of several styles' statistics (Grams; for sliced Wasserstein, the quantile
    functions, whose weighted mean is the 1-D Wasserstein barycentre along each slice)."""
    total = sum(blend)
    return jax.tree.map(lambda *values: sum(w / total * v for w, v in zip(blend, values)), *per_style)


def make_targets(content, style, norm=None, temporal=None) -> dict[str, Any]:
    """The targets an image is measured against (`loss_terms`), in the one layout every run builds
    and `jaxstyle.step.batched` maps: ``"content"``, the content features (`content_targets`);
    ``"style"``, the style statistics (`style_targets`); ``"norm"``, the inputs' own losses that every
    term is a ratio to (`input_norms`; left out while they are measured, which needs the rest); and
    for a video frame ``"temporal"``, its warped predecessor ``{"image": (H, W, 3), "mask": (H, W,
    1)}``. In a batch every leaf has a leading batch axis, shared style statistics excepted."""
    targets = {"content": content, "style": style}
    if norm is not None:
        targets["norm"] = norm
    if temporal is not None:
        targets["temporal"] = temporal
    return targets


def layer_losses(params, image: jax.Array, targets: Mapping[str, Any], spec: LossSpec) -> dict[str, Any]:
    """Unweighted losses of one (H, W, 3) image: ``{"content": {layer: loss}, "style": {layer:
    loss}, "tv": loss}`` in the units of `jaxstyle.losses`."""
    features = image_features(params, image, (*spec.content_layers, *spec.style_layers), spec)
    style = {}
    for index, name in enumerate(spec.style_layers):
        target = targets["style"][name]
        if isinstance(target, Mapping):  # spatial control
            style[name] = guided_layer_loss(features[name], target)
        elif spec.style_statistic == "gram":
            style[name] = losses.style_loss(features[name], target)
        else:
            style[name] = losses.sliced_wasserstein_loss(features[name], _directions(target.shape[-1], index), target)
    return {
        "content": {
            name: losses.content_loss(features[name], targets["content"][name]) for name in spec.content_layers
        },
        "style": style,
        "tv": losses.tv_loss(image, spec.tv_kind),
    }


# Where an input already matches the other (the content image as its own style), its loss is 0:
# the ratio then only has to stay finite.
NORM_FLOOR = 1e-12


def weighted_terms(raw: Mapping[str, Any], norm: Mapping[str, Any], spec: LossSpec) -> dict[str, jax.Array]:
    """Weighted loss terms ``{"content", "style", "tv"}`` from `layer_losses` and `input_norms`,
    and each term's ratio to the inputs (``"content_ratio"``, ...), whatever the units.

    A ratio is the layers' mean (style: weighted by the layer weights) of each layer's loss over
    the same loss at the inputs: content against the style image, style against the content
    image, TV against the style image. 1 is as far as the other input; 0 is a perfect match. In
    ``"ratio"`` units the weights multiply these ratios, so that the balance does not depend on the
    image size or on how large a layer's activations are; in ``"raw"`` units (the peers' presets)
    they multiply the plain sums of `jaxstyle.losses`.
    """
    zero = jnp.zeros((), jnp.float32)
    content_ratio = sum((raw["content"][n] / norm["content"][n] for n in spec.content_layers), start=zero)
    content_ratio = content_ratio / max(1, len(spec.content_layers))
    weights = dict(zip(spec.style_layers, spec.style_layer_weights))
    style_ratio = sum((weights[n] * raw["style"][n] / norm["style"][n] for n in spec.style_layers), start=zero)
    style_ratio = style_ratio / max(sum(weights.values()), NORM_FLOOR)
    ratios = {"content_ratio": content_ratio, "style_ratio": style_ratio, "tv_ratio": raw["tv"] / norm["tv"]}
    if spec.loss_units == "ratio":
        content, style, tv = content_ratio, style_ratio, ratios["tv_ratio"]
    else:
        content = sum(raw["content"].values(), start=zero)
        style = sum((weights[n] * raw["style"][n] for n in spec.style_layers), start=zero)
        tv = raw["tv"]
    return {
        "content": spec.content_weight * content,
        "style": spec.style_weight * style,
        "tv": spec.tv_weight * tv,
        **ratios,
    }


TERMS = ("content", "style", "tv", "temporal")  # what the total sums; the rest of the terms is reporting


def loss_terms(params, image: jax.Array, targets: Mapping[str, Any], spec: LossSpec) -> dict[str, jax.Array]:
    """The weighted terms and ratios (`weighted_terms`) of one (H, W, 3) image, and ``"temporal"``
    where ``targets`` has a previous frame (``{"image": (H, W, 3), "mask": (H, W, 1)}``). ``targets``
    holds the ``"content"`` features, ``"style"`` statistics and the inputs' losses (``"norm"``), as
    `make_targets` lays them out."""
    terms = weighted_terms(layer_losses(params, image, targets, spec), targets["norm"], spec)
    if "temporal" in targets:
        previous = targets["temporal"]
        terms["temporal"] = spec.temporal_weight * losses.temporal_loss(image, previous["image"], previous["mask"])
    return terms


def total_of(terms: Mapping[str, Any]):
    """What the optimisation minimises: the sum of the `TERMS` present in `loss_terms`."""
    return sum(terms[key] for key in TERMS if key in terms)


def total_loss(params, image, targets, spec: LossSpec):
    terms = loss_terms(params, image, targets, spec)
    return total_of(terms), terms


@functools.partial(jax.jit, static_argnames=("spec",))
def _direct_layer_losses(params, image: jax.Array, targets, spec: LossSpec):
    return layer_losses(direct_params(params), image, make_targets(targets["content"], targets["style"]), spec)


@functools.partial(jax.jit, static_argnames=("spec",))
def score(params, image: jax.Array, targets, spec: LossSpec) -> dict[str, jax.Array]:
    """`loss_terms` of a finished (H, W, 3) image and its ``"total"``: what a run records."""
    total, terms = total_loss(direct_params(params), image, targets, spec)
    return {**terms, "total": total}


def image_targets(targets: Mapping[str, Any], index: int, style_axis: int | None) -> dict[str, Any]:
    """Image ``index``'s own entries of a batch's ``targets`` (laid out as `batched` maps them):
    everything but shared style targets (``style_axis=None``) has a leading batch axis."""
    return {
        key: value if key == "style" and style_axis is None else jax.tree.map(lambda t: t[index], value)
        for key, value in targets.items()
    }


def score_each(params, images: jax.Array, targets, spec: LossSpec, style_axis: int | None) -> list[dict[str, float]]:
    """`score` of each image of a (B, H, W, 3) batch against its own inputs (``targets`` as the
    `batched` stepper takes them), on the host. One image at a time, through the single-image loss
    program that `whole_norms` has already compiled for this shape, instead of a new vmapped
    program for every batch size."""
    images = np.asarray(images)
    scores = []
    for index in range(images.shape[0]):
        own = image_targets(targets, index, style_axis)
        terms = weighted_terms(_direct_layer_losses(params, jnp.asarray(images[index]), own, spec), own["norm"], spec)
        scores.append({key: float(value) for key, value in {**terms, "total": total_of(terms)}.items()})
    return scores


def input_norms(
    measure: Callable[[Any], Mapping[str, Any]], content, references: list, blend: tuple[float, ...]
) -> dict[str, Any]:
    """What `weighted_terms` divides by: ``measure`` (`layer_losses` of an image) of the content image for
    the style layers, and of the style images resized to the content's shape (``references``,
    mixed by ``blend``) for the content layers and TV.

    Both inputs are at the output's size, so a ratio means the same at 256 px and at 4096 px:
    how much of the way from one input to the other the result has gone.
    """
    at_content = measure(content)
    at_styles = blend_style_targets([measure(reference) for reference in references], blend)
    norms = {"content": at_styles["content"], "style": at_content["style"], "tv": at_styles["tv"]}
    return jax.tree.map(lambda v: jnp.maximum(jnp.asarray(v, jnp.float32), NORM_FLOOR), norms)


def whole_norms(params, content, references, blend, targets, spec: LossSpec) -> dict[str, Any]:
    """`input_norms` of an image that runs whole; ``targets`` needs its content and style."""
    return input_norms(
        lambda image: _direct_layer_losses(params, jnp.asarray(image), targets, spec), content, references, blend
    )
