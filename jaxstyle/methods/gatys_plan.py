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

# Peak resident memory of the whole process (ru_maxrss: Python, JAX, the XLA runtime, the VGG
# weights with their Winograd kernels, the compiled programs, XLA's temporaries), measured on the
# 2-core x86 CPU VM, 2026-12-06, float32, L-BFGS (its memory is allocated whole in the first step),
# chelsea.jpg and starry_night.jpg resized, 1 or 2 iterations (benchmarks/memory_plan.py checks
# the plans against measured peaks).
#
# Whole runs (content and style at one size): 384x256 peaked at 1.55 GB, 768x512 at 2.44 GB,
# 1152x768 at 4.02 GB, about 3,200 bytes per content pixel above ~1.2 GB. The estimate takes 3,000
# bytes per pixel for the content and a third of that for the style image (forward only), above
# 1.15 GiB, which covers all three (by 5, 15 and 19 %).
WHOLE_BASE_BYTES = int(1.15 * 2**30)
# bfloat16 is scaled by the same 0.6 as before (not measured again on this VM).
WHOLE_BYTES_PER_PIXEL = {"float32": 3000, "bfloat16": 1800}


# Style masks (guided Grams): each region (the styles and the photo's share) adds about 1,000 bytes
# per content pixel, the features weighted by each region's guide in the forward and backward
# passes: 384x255 with two styles peaked at 1.43 GB plain and 1.73 GB with two masks (3 regions),
# same VM, 2026-12-06, 2 iterations (the tiles take the same per tile pixel).
GUIDED_BYTES_PER_PIXEL = 1000


def estimate_memory_bytes(shape: tuple[int, int], config: StyleConfig, regions: int = 0) -> int:
    """Peak memory of a whole process optimising an (H, W) image whole: the runtime and weights,
    and the VGG activations kept for the backward pass (measured, see above); ``regions``: the
    guided Grams' regions with style masks (styles + 1), 0 without."""
    h, w = shape
    per_pixel = WHOLE_BYTES_PER_PIXEL[config.resources.precision]
    # The style image only runs forward once (no backward): about a third per pixel.
    style_pixels = h * w * config.style_scale**2 / 3
    return int((h * w + style_pixels) * per_pixel + h * w * regions * GUIDED_BYTES_PER_PIXEL + WHOLE_BASE_BYTES)


def check_memory(shape: tuple[int, int], config: StyleConfig, regions: int = 0) -> None:
    """Refuse, with the numbers, a size that cannot fit instead of swapping or being OOM-killed."""
    needed, available = estimate_memory_bytes(shape, config, regions), memory_budget_bytes(config)
    if available is not None and needed > available:
        raise UsageError(
            f"a {shape[1]}x{shape[0]} px stylization needs about {needed / 2**30:.1f} GiB of memory but only "
            f"{available / 2**30:.1f} GiB is available; use a smaller --max-size"
        )


def _overlap(tile: int) -> int:
    """Tiles share a quarter of their side, at most 256 px: the content layer (relu4_2) sees 84 px
    and conv5_1 156 px, so the outer ~80 px of a tile see its edge; the feathered blend hides them."""
    return max(16, min(tile // 4, 256) // 16 * 16)


# A tiled scale (same VM, date and inputs): one tile side at a time, with the image around it at
# 1.5 its side (a batch of 1), and the 2048x1362 benchmark at two budgets:
#
#   tile      image       peak
#   384x384   576x576     2.04 GB
#   576x576   864x864     2.53 GB
#   768x768   1152x1152   3.45 GB
#   800x800   2048x1362   3.75 GB  (3.49 GiB: --memory-budget 3 before this fit, 16 % over)
#   1168x1168 2048x1362   6.09 GB  (5.67 GiB: --memory-budget 5 before this fit, 13 % over)
#   2 x 384   384x1000    2.29 GB  (a batch of two tiles: the fit gives 2.45 GB)
#
# A least-squares fit of the batches of 1 gives 1.48 GB + 3,214 bytes per tile pixel + 76 bytes per image pixel
# (residuals within 66 MB). The tile's own part is more than a whole image's per pixel (the
# vmapped L-BFGS step, the tile's targets, the windowed statistics of the image around it), and
# the fixed part more (the windowed programs beside the step). The host keeps about eight full-size
# float32 RGB images (content, what it stylizes, the start, the blend and its weights, the style
# image at that scale, the result). The constants cover every measured peak:
TILED_BASE_BYTES = int(1.45 * 2**30)
TILE_BYTES_PER_PIXEL = {"float32": 3300, "bfloat16": 2000}  # bfloat16: float32 x 0.6, not measured
HOST_BYTES_PER_PIXEL = 100


def _tiled_fixed_bytes(shape: tuple[int, int]) -> int:
    """What a tiled scale of ``shape`` holds besides its tiles: the runtime and the host arrays."""
    return TILED_BASE_BYTES + HOST_BYTES_PER_PIXEL * shape[0] * shape[1]


def planned_peak_bytes(plan: ScalePlan, config: StyleConfig, regions: int = 0) -> int:
    """What one scale of a plan holds at once, by the estimates it is planned from: a whole scale's
    `estimate_memory_bytes`, or a tiled scale's runtime, batch of tiles and full-size host arrays."""
    if not plan.tiled:
        return estimate_memory_bytes(plan.shape, config, regions)
    per_pixel = TILE_BYTES_PER_PIXEL[config.resources.precision] + regions * GUIDED_BYTES_PER_PIXEL
    return _tiled_fixed_bytes(plan.shape) + plan.batch * per_pixel * plan.side**2


def plan_scales(
    content_shape: tuple[int, int], config: StyleConfig, budget: int | None, regions: int = 0
) -> list[ScalePlan]:
    """The scales of an optimisation, each whole or tiled to fit ``budget`` bytes (None: no limit).

    A scale is tiled when it does not fit whole, or is larger than ``config.resources.tile_size``. Tiles are
    then the largest square that fits beside the scale's full-size arrays on the host (or
    ``tile_size``), batched as many as fit. When even the first scale is tiled, a whole-image
    scale is put in front, the largest that fits but at most one tile and half the final size:
    the composition comes from the whole picture, the detail from the tiles. ``regions``: as
    `estimate_memory_bytes`.
    """
    sizes = prepare.scale_sizes(content_shape, config)
    per_pixel = TILE_BYTES_PER_PIXEL[config.resources.precision] + regions * GUIDED_BYTES_PER_PIXEL

    def room(shape):  # bytes left for tiles at this scale
        return None if budget is None else budget - _tiled_fixed_bytes(shape)

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
        return budget is None or estimate_memory_bytes(shape, config, regions) <= budget

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
        needed = estimate_memory_bytes(shape, config, regions)
        if not tiled(shape):
            plans.append(ScalePlan(shape, needed))
            continue
        tile = tile_side(shape)
        cover = TilePlan.cover(shape, tile, _overlap(tile))
        largest_group = max(len(group) for group in cover.groups())
        batch = 1 if budget is None else max(1, min(room(shape) // (per_pixel * tile * tile), largest_group))
        plans.append(ScalePlan(shape, needed, cover.tile, cover.count, int(batch), cover.overlap, side=tile))
    return plans
