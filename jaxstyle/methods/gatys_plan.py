"""The optimisation method's memory plan: how much memory optimising an image takes, and the
scales of a run (`prepare.scale_sizes`), each whole or in tiles that fit a memory budget
(docs/highres.md). Used by `jaxstyle.methods.gatys`."""

from __future__ import annotations

import math

from jaxstyle import prepare
from jaxstyle.config import MIN_TILE, StyleConfig
from jaxstyle.errors import UsageError
from jaxstyle.placement import memory_budget_bytes
from jaxstyle.tiling import ScalePlan, TilePlan


def estimate_memory_bytes(shape: tuple[int, int], config: StyleConfig) -> int:
    """Rough peak memory of optimising an (H, W) image: VGG activations kept for the backward pass.

    About 3 kB per output pixel plus ~0.9 GB of weights (with the Winograd kernels,
    `vgg.prepare_params`) and runtime, measured on CPU (float32, L-BFGS; docs/performance.md).
    """
    h, w = shape
    per_pixel = 3000 if config.resources.precision == "float32" else 1800
    # The style image only runs forward once (no backward): about a third per pixel.
    style_pixels = h * w * config.style_scale**2 / 3
    return int((h * w + style_pixels) * per_pixel + 0.9 * 2**30)


def check_memory(shape: tuple[int, int], config: StyleConfig) -> None:
    """Refuse, with the numbers, a size that cannot fit instead of swapping or being OOM-killed."""
    needed, available = estimate_memory_bytes(shape, config), memory_budget_bytes(config)
    if available is not None and needed > available:
        raise UsageError(
            f"a {shape[1]}x{shape[0]} px stylization needs about {needed / 2**30:.1f} GiB of memory but only "
            f"{available / 2**30:.1f} GiB is available; use a smaller --max-size"
        )


def _tile_bytes(side: int, config: StyleConfig) -> int:
    """Memory of optimising one square tile: as `estimate_memory_bytes` without the style image,
    whose statistics are computed beforehand in windows (`windowed.gram_targets_tiled`)."""
    return estimate_memory_bytes((side, side), config.replace(style_scale=1e-9))


def _overlap(tile: int) -> int:
    """Tiles share a quarter of their side, at most 256 px: the content layer (relu4_2) sees 84 px
    and conv5_1 156 px, so the outer ~80 px of a tile see its edge; the feathered blend hides them."""
    return max(16, min(tile // 4, 256) // 16 * 16)


# A tiled scale keeps about eight full-size float32 RGB images on the host (content, what it
# stylizes, the start, the blend and its weights, the style image at that scale, the result):
# measured, a 4096x4096 run peaked 1.5 GB above its tiles' estimate.
HOST_BYTES_PER_PIXEL = 100


def plan_scales(content_shape: tuple[int, int], config: StyleConfig, budget: int | None) -> list[ScalePlan]:
    """The scales of an optimisation, each whole or tiled to fit ``budget`` bytes (None: no limit).

    A scale is tiled when it does not fit whole, or is larger than ``config.resources.tile_size``. Tiles are
    then the largest square that fits beside the scale's full-size arrays on the host (or
    ``tile_size``), batched as many as fit. When even the first scale is tiled, a whole-image
    scale is put in front, the largest that fits but at most one tile and half the final size:
    the composition comes from the whole picture, the detail from the tiles.
    """
    sizes = prepare.scale_sizes(content_shape, config)
    per_pixel = _tile_bytes(1, config) - _tile_bytes(0, config)

    def room(shape):  # bytes left for tiles at this scale
        return None if budget is None else budget - _tile_bytes(0, config) - HOST_BYTES_PER_PIXEL * shape[0] * shape[1]

    def tile_side(shape):
        if budget is None:
            return config.resources.tile_size
        side = int(math.sqrt(max(room(shape), 0) / per_pixel)) // 16 * 16
        if config.resources.tile_size is not None and side >= MIN_TILE:
            return min(config.resources.tile_size, side)  # forced, but never above the budget
        if side < MIN_TILE:
            raise UsageError(
                f"a memory budget of {budget / 2**30:.1f} GiB leaves no room for {MIN_TILE}x{MIN_TILE} px tiles at "
                f"{shape[1]}x{shape[0]} px; a larger --memory-budget or a smaller --max-size is needed"
            )
        return side

    def fits(shape):
        return budget is None or estimate_memory_bytes(shape, config) <= budget

    def tiled(shape):
        return not fits(shape) or (config.resources.tile_size is not None and max(shape) > config.resources.tile_size)

    if tiled(sizes[-1]) and config.loss.style_statistic != "gram":
        raise UsageError(
            f"{sizes[-1][1]}x{sizes[-1][0]} px needs tiles, and tiles need --style-statistic gram "
            "(the windows add up Gram matrices); use gram or a smaller --max-size"
        )
    if tiled(sizes[0]):
        side = min(tile_side(sizes[-1]), config.max_size // 2)
        while side > MIN_TILE and not fits(prepare.fit_long_side(content_shape, side)):
            side -= 16
        sizes = [prepare.fit_long_side(content_shape, side), *sizes]
    plans = []
    for shape in sizes:
        needed = estimate_memory_bytes(shape, config)
        if not tiled(shape):
            plans.append(ScalePlan(shape, needed))
            continue
        tile = tile_side(shape)
        cover = TilePlan.cover(shape, tile, _overlap(tile))
        largest_group = max(len(group) for group in cover.groups())
        batch = 1 if budget is None else max(1, min(room(shape) // (per_pixel * tile * tile), largest_group))
        plans.append(ScalePlan(shape, needed, cover.tile, cover.count, int(batch), cover.overlap, side=tile))
    return plans
