"""The per-image setup every method shares: input checks, sizes, colours, styles, start, finish.

A method (`jaxstyle.methods`) never resizes, recolours or checks inputs itself; `stylize`,
`batch` and every method call these functions, so a single image and a batch image get the
same treatment. Arrays are numpy float32 RGB in [0, 1], shape (H, W, 3). Plain numpy: no JAX.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from jaxstyle import color, masks
from jaxstyle.config import StyleConfig
from jaxstyle.errors import ImageError, UsageError
from jaxstyle.io.resize import resize_to
from jaxstyle.nets.vgg_layers import MIN_SIDE

# Colour modes that recolour the styles for each content image, so nothing about the styles can
# be shared between the images of a batch.
PER_IMAGE_STYLE_MODES = frozenset({"luminance", "histogram"})
KEPT_GUIDES = 4  # output sizes whose mask guides a `StyleSet` keeps (`guides_for`)


@dataclass(frozen=True)
class StyleSet:
    """The style images of a run and their blend weights (one per image, > 0 in sum); with masks
    (`jaxstyle.masks`), where each style goes instead of a blend, and which part of each style
    image it is taken from."""

    images: tuple[np.ndarray, ...]
    weights: tuple[float, ...]
    # One (H, W) float32 mask per style (per built-in style named, in order), at any size: checked
    # with `masks.as_mask`; None: the styles are blended over the whole image.
    masks: tuple[np.ndarray, ...] | None = None
    # Per style image: its (h, w) region (`masks.as_mask`) of that image's aspect ratio, or None
    # for all of it; None: every style from all of its image.
    regions: tuple[np.ndarray | None, ...] | None = None
    # `guides_for`'s last few results by output size: a video's frames and a folder's images of one
    # size share them instead of resizing and feathering the same masks again for each.
    _guides: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)


def as_rgb(image: np.ndarray, what: str) -> np.ndarray:
    """Any (H, W), (H, W, 3) or (H, W, 4) array (uint8 or float) as float32 RGB in [0, 1]."""
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise ImageError(f"{what} must be an (H, W, 3) RGB array, got shape {array.shape}")
    array = array[..., :3]
    if array.dtype == np.uint8:
        array = array / 255.0
    array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise ImageError(f"{what} contains NaN or inf")
    return np.clip(array, 0.0, 1.0)


def check_style_blend(style_blend: Sequence[float] | None, count: int) -> tuple[float, ...]:
    """One finite, non-negative weight per style, not all zero (equal weights when None)."""
    blend = tuple(float(w) for w in (style_blend or (1.0,) * count))
    if len(blend) != count:
        raise UsageError(f"{count} style images but {len(blend)} style weights")
    if not all(math.isfinite(w) and w >= 0 for w in blend) or sum(blend) <= 0:
        raise UsageError("style weights must be finite, >= 0, and not all 0")
    return blend


def make_style_set(
    styles: np.ndarray | Sequence[np.ndarray] | None,
    style_blend: Sequence[float] | None = None,
    config: StyleConfig | None = None,
    *,
    style_masks: Sequence[np.ndarray] | None = None,
    style_regions: Sequence[np.ndarray | None] | None = None,
) -> StyleSet:
    """Checked styles: one array or a list, each converted with `as_rgb`, and their weights; with
    ``style_masks``, one mask per style (per built-in style named in ``config.fast.builtin_style``),
    and ``style_regions``, one region or None per style image (`masks.as_mask` arrays or images).

    There may be no style images only with ``config.fast.builtin_style`` (the fast method's own) or
    a trained ``config.fast.model``, which takes none."""
    images = [styles] if isinstance(styles, np.ndarray) else list(styles or ())
    builtin = config is not None and config.fast.network_styles is not None
    if not images and not builtin:
        raise UsageError("at least one style image is needed")
    if images and config is not None and config.fast.model is not None:
        raise UsageError("a trained model (--model) brings its own styles: name them with --builtin-style, not images")
    images = [as_rgb(s, f"style image {i + 1}") for i, s in enumerate(images)]
    blend = check_style_blend(style_blend, len(images)) if images else ()
    checked_masks = None
    if style_masks is not None:
        if style_blend is not None:
            raise UsageError(
                "style weights and style masks do not combine: the masks say how much of each style goes where"
            )
        count, what = mask_count(len(images), config)
        masks.check_count(len(style_masks), count, what=what)
        checked_masks = tuple(masks.as_mask(m, what=f"style mask {i + 1}") for i, m in enumerate(style_masks))
    regions = None
    if style_regions is not None:
        if not images:
            raise UsageError("style regions are parts of style images; built-in styles have none")
        masks.check_count(len(style_regions), len(images), kind="region")
        regions = tuple(
            None if region is None else masks.as_mask(region, what=f"style region {i + 1}")
            for i, region in enumerate(style_regions)
        )
        fit = config.masks.mask_fit if config else "exact"
        for i, (region, image) in enumerate(zip(regions, images)):
            if region is not None:
                masks.check_aspect(region, image.shape[:2], fit=fit, name=f"style region {i + 1}")
    return StyleSet(tuple(images), blend, checked_masks, regions)


def mask_count(images: int, config: StyleConfig | None) -> tuple[int, str]:
    """How many style masks a run takes, and what each goes with: one per style image, or without
    style images one per built-in style named in ``config.fast.network_styles`` (a model's too)."""
    if images or config is None or config.fast.network_styles is None:
        return images, "style"
    from jaxstyle.builtin_styles import builtin_style_parts

    return len(builtin_style_parts(config.fast.network_styles, None)), "built-in style"


def check_content_masks(styles: StyleSet, content_shape: tuple[int, int], config: StyleConfig) -> None:
    """The masks of ``styles`` fit an image of ``content_shape`` (H, W) (`masks.check_masks`)."""
    if styles.masks is not None:
        masks.check_masks(styles.masks, len(styles.masks), content_shape, fit=config.masks.mask_fit)


def guides_for(styles: StyleSet, shape: tuple[int, int], config: StyleConfig) -> np.ndarray | None:
    """The (H, W, K + 1) guides of an output of ``shape`` (`masks.guides_at`), or None without masks;
    read-only, shared by the images of one size."""
    if styles.masks is None:
        return None
    key = (tuple(shape), config.masks.mask_feather)
    guides = styles._guides.get(key)
    if guides is None:
        guides = masks.guides_at(styles.masks, shape, config.masks.mask_feather)
        guides.setflags(write=False)
        styles._guides[key] = guides
        while len(styles._guides) > KEPT_GUIDES:
            styles._guides.pop(next(iter(styles._guides)), None)  # (decoding threads may race here)
    return guides


def regions_for(styles: StyleSet, sized: Sequence[np.ndarray]) -> tuple[np.ndarray | None, ...] | None:
    """Each style's region at its ``sized`` style image's size (`styles_for`), or None without regions."""
    if styles.regions is None:
        return None
    return tuple(masks.region_at(region, image.shape[:2]) for region, image in zip(styles.regions, sized))


def fit_long_side(shape: tuple[int, int], long_side: int) -> tuple[int, int]:
    """(H, W) scaled so that the longer side is ``long_side``, aspect kept, each side >= 16 px."""
    h, w = shape
    scale = long_side / max(h, w)
    return max(MIN_SIDE, round(h * scale)), max(MIN_SIDE, round(w * scale))


def scale_sizes(shape: tuple[int, int], config: StyleConfig) -> list[tuple[int, int]]:
    """Output (H, W) of every scale, coarse to fine, growing by sqrt(2) up to ``config.max_size``."""
    if config.optimize.multiscale_min is None:
        return [fit_long_side(shape, config.max_size)]
    count = math.floor(math.log(config.max_size / config.optimize.multiscale_min, math.sqrt(2)) + 1e-9) + 1
    sides = [config.max_size / math.sqrt(2) ** (count - 1 - i) for i in range(count)]
    return [fit_long_side(shape, round(side)) for side in sides]


def style_side(shape: tuple[int, int], config: StyleConfig) -> int:
    """Long side of the style images for an output of ``shape``: ``style_scale`` x its long side."""
    return max(MIN_SIDE, round(config.style_scale * max(shape)))


def content_at(content: np.ndarray, shape: tuple[int, int], config: StyleConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(original, to_stylize)``: the content at ``shape`` in its own colours, and what the method
    stylizes (its luminance, as a grey RGB image, in luminance mode; the resized content otherwise)."""
    original = resize_to(content, *shape)
    if config.preserve_color == "luminance":
        return original, color.luminance_image(original)
    return original, original


def styles_for(
    styles: StyleSet, content: np.ndarray | None, shape: tuple[int, int], config: StyleConfig
) -> list[np.ndarray]:
    """The style images for an output of ``shape``: recoloured for ``content`` (the resized
    content, needed only in the `PER_IMAGE_STYLE_MODES`), then fitted to `style_side`."""
    images = list(styles.images)
    if content is None and config.preserve_color in PER_IMAGE_STYLE_MODES:
        raise ValueError(f"preserve_color={config.preserve_color!r} recolours the styles for each content image")
    if config.preserve_color == "luminance":
        images = [color.luminance_image(s, match_to=content) for s in images]
    elif config.preserve_color == "histogram":
        images = [color.match_color_histogram(s, content) for s in images]
    side = style_side(shape, config)
    return [resize_to(s, *fit_long_side(s.shape[:2], side)) for s in images]


def initial_image(content: np.ndarray, config: StyleConfig, init_image: np.ndarray | None = None) -> np.ndarray:
    """The starting image of an optimisation of ``content`` (already at its output size)."""
    rng = np.random.default_rng(config.seed)
    noise = rng.uniform(0.0, 1.0, content.shape).astype(np.float32)
    if config.optimize.init == "content":
        return content
    if config.optimize.init == "noise":
        return noise
    if config.optimize.init == "blend":
        # The TF tutorial's variant of a noisy start: (1 - f) * content + f * noise.
        return (1.0 - config.optimize.init_noise_fraction) * content + config.optimize.init_noise_fraction * noise
    if config.optimize.init == "gray":
        return np.full_like(content, 0.5)
    if init_image is None:  # "image": the caller's; "fast": the fast method's result (`methods.gatys`)
        raise UsageError(f"init {config.optimize.init!r} needs an init image")
    return working_colours(resize_to(as_rgb(init_image, "init image"), *content.shape[:2]), config)


def working_colours(image: np.ndarray, config: StyleConfig) -> np.ndarray:
    """A finished result in the colours the method optimises (`content_at`'s second image):
    its luminance in luminance mode, itself otherwise. The inverse of `finish` but for KNN."""
    if config.preserve_color == "luminance":
        return color.luminance_image(image)
    return image


@dataclass(frozen=True)
class ScaleInput:
    """One content image's setup at one output size, computed once: what an optimisation at that
    size starts from and is measured against (an untiled scale, a tiled one, an image of a batch)."""

    original: np.ndarray  # the content at its output size in its own colours (for `finish`)
    content: np.ndarray  # (H, W, 3) the content to stylize (`content_at`)
    styles: tuple[np.ndarray, ...]  # the style images recoloured and sized for this output (`styles_for`)
    references: tuple[np.ndarray, ...]  # the styles resized to (H, W) (`references_at`)
    start: np.ndarray  # (H, W, 3) the starting image
    guides: np.ndarray | None = None  # (H, W, K + 1) where each style goes (`guides_for`), or None
    regions: tuple[np.ndarray | None, ...] | None = None  # each style's region at its size (`regions_for`)


def references_at(styles: Sequence[np.ndarray], shape: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """The style images resized to the output's ``shape``: what the content ratio is measured
    against (`objective.input_norms`)."""
    return tuple(resize_to(image, *shape) for image in styles)


def scale_input(
    content: np.ndarray,
    styles: StyleSet,
    shape: tuple[int, int],
    config: StyleConfig,
    *,
    init_image: np.ndarray | None = None,
    coarser: np.ndarray | None = None,
) -> ScaleInput:
    """The `ScaleInput` of a checked ``content`` image (`as_rgb`) at ``shape``, started from
    ``coarser`` (the scale before's result) resized, or else from `initial_image`."""
    original, to_stylize = content_at(content, shape, config)
    start = initial_image(to_stylize, config, init_image) if coarser is None else resize_to(coarser, *shape)
    sized = tuple(styles_for(styles, original, shape, config))
    guides, regions = guides_for(styles, shape, config), regions_for(styles, sized)
    return ScaleInput(original, to_stylize, sized, references_at(sized, shape), start, guides, regions)


def batch_scale_input(
    image: BatchImage,
    styles: StyleSet,
    shape: tuple[int, int],
    config: StyleConfig,
    init_image: np.ndarray | None = None,
) -> ScaleInput:
    """The `ScaleInput` of a batch image in a bucket of ``shape``: what it stylizes and starts from
    reflect-padded to the bucket (`pad_to`); ``original`` at the image's own size, as
    `finish_batch` takes it."""
    sized = image.styles or tuple(styles_for(styles, None, image.size, config))
    start = pad_to(initial_image(image.content, config, init_image), shape)
    guides = None if image.guides is None else pad_to(image.guides, shape)
    return ScaleInput(
        image.original,
        pad_to(image.content, shape),
        sized,
        references_at(sized, shape),
        start,
        guides,
        regions_for(styles, sized),
    )


def finish(result: np.ndarray, original: np.ndarray, config: StyleConfig) -> np.ndarray:
    """The colour post-processing of a stylized ``result`` of the resized content in its own
    colours (``original``: `content_at`'s first image)."""
    if config.preserve_color == "luminance":
        return color.restore_chroma(result, original)
    if config.preserve_color == "knn":
        from jaxstyle.color_knn import knn_color_transfer

        return np.asarray(knn_color_transfer(result, [original]), np.float32)[..., :3]
    return result


def run_metadata(
    config: StyleConfig,
    *,
    content: str,
    styles: Sequence[str],
    style_weights: Sequence[float] | None,
    weights: str,
    masks: Sequence[str] = (),
    regions: Sequence[str] = (),
    **extra: str,
) -> dict[str, str]:
    """Everything needed to reproduce a result, stored as PNG text (or EXIF) metadata; ``masks``
    and ``regions``: the style masks' and regions' files, if any."""
    from jaxstyle import __version__

    return {
        "Software": f"jaxstyle {__version__}",
        "jaxstyle.config": json.dumps(dataclasses.asdict(config), sort_keys=True),
        "jaxstyle.inputs": json.dumps(
            {
                "content": content,
                "styles": list(styles),
                "style_weights": list(style_weights) if style_weights else None,
                "weights": weights,
                **({"masks": list(masks)} if masks else {}),
                **({"regions": list(regions)} if regions else {}),
            }
        ),
        **extra,
    }


def weights_record(model: str) -> str:
    """What a run's metadata records as the weights of a trained ``model``: its path and sha256
    (a retrained file at the same path is another run)."""
    from jaxstyle.io.files import file_sha256

    return f"{model} sha256:{file_sha256(model)}"


def settings_record(
    config: StyleConfig,
    files: Sequence[str],
    style_weights: Sequence[float] | None,
    weights_id: str,
    **extra: object,
) -> dict:
    """Everything that changes the pieces a resumable run keeps (`jaxstyle.io.parts`): the input
    files' contents, the settings, the style blend, the weights, and ``extra``; with its
    ``settings_hash``."""
    from jaxstyle.batch.manifest import params_hash
    from jaxstyle.io.files import file_sha256

    # All of the settings: report_every too, since the stopping rule is checked at each report.
    settings = dataclasses.asdict(config)
    record = {
        "inputs": [file_sha256(path) for path in files],
        "style_weights": list(style_weights) if style_weights is not None else None,
        "weights": weights_id,
        "config": settings,
        **extra,
    }
    return {"settings_hash": params_hash(record), **record}


@dataclass(frozen=True)
class BatchImage:
    """One content image prepared for a same-shape batch, at its own (fitted) size."""

    key: object  # the caller's handle (an index, a file)
    size: tuple[int, int]  # its own (h, w): the output size
    original: np.ndarray  # (h, w, 3) resized content in its own colours (for `finish`)
    content: np.ndarray  # (h, w, 3) the content to stylize (see `content_at`)
    styles: tuple[np.ndarray, ...] | None  # its own `styles_for` in per-image colour modes, else None
    guides: np.ndarray | None = None  # (h, w, K + 1) where each style goes (`guides_for`), or None


def prepare_batch_image(
    key: object, content: np.ndarray, styles: StyleSet, config: StyleConfig, size: tuple[int, int] | None = None
) -> BatchImage:
    """Check, resize and colour-handle one content image of a batch (as `stylize` would).
    ``size``: the output size, if the caller knows it better than this array's shape does (a
    file decoded at a reduced scale: `fit_long_side` of its full size)."""
    content = as_rgb(content, "content image")
    size = size or fit_long_side(content.shape[:2], config.max_size)
    original, to_stylize = content_at(content, size, config)
    own_styles = None
    if config.preserve_color in PER_IMAGE_STYLE_MODES:
        own_styles = tuple(styles_for(styles, original, size, config))
    return BatchImage(key, size, original, to_stylize, own_styles, guides_for(styles, size, config))


def finish_batch(results: np.ndarray, images: Sequence[BatchImage], config: StyleConfig) -> list[np.ndarray]:
    """A bucket's (B, H, W, 3) results cropped to each image's own size and `finish`-ed (padding
    copies beyond ``images`` are dropped)."""
    return [
        finish(np.ascontiguousarray(result[: image.size[0], : image.size[1]]), image.original, config)
        for image, result in zip(images, results)
    ]


def pad_to(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Reflect-pad an (h, w, C) image at the bottom and right to ``shape`` (H, W)."""
    h, w = image.shape[:2]
    if (h, w) == tuple(shape):
        return image
    return np.pad(image, ((0, shape[0] - h), (0, shape[1] - w), (0, 0)), mode="reflect")
