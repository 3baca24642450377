"""The fast method's memory plan: how much an image takes whole, and the windows a print size
runs in when it does not fit (`magenta_tiled.transform_tiled`); the plan itself is a
`jaxstyle.tiling.ScalePlan`, as the optimisation's (`methods.gatys_plan`)."""

from __future__ import annotations

import math

from jaxstyle.config import MIN_TILE, StyleConfig
from jaxstyle.errors import UsageError
from jaxstyle.nets import magenta_tiled
from jaxstyle.tiling import ScalePlan

# Peak memory of the untiled transformer on CPU, float32: about 280 bytes per pixel above 0.45 GB
# of runtime and weights (peak RSS at 512, 1024 and 2048 px square), rounded up; on the host, the
# image takes about two float32 copies more.
BYTES_PER_PIXEL = 320
BASE_BYTES = int(0.5 * 2**30)
# In windows, peak RSS of the whole process (ru_maxrss), measured on the 2-core x86 CPU VM,
# 2026-12-06, float32, chelsea.jpg (benchmarks/memory_plan.py):
#
#   image      window      peak
#   2048x1362  528x528     0.70 GB
#   4096x2725  528x528     1.15 GB  (1.07 GiB: --memory-budget 1 before this fit, 7 % over)
#   4096x2725  1400x1400   1.83 GB  (1.71 GiB: --memory-budget 1.5 before, 14 % over)
#   4096x2725  1904x1904   2.30 GB  (2.14 GiB: --memory-budget 2 before, 7 % over)
#
# The host holds 54 bytes per image pixel (the image, the result and the 1/4-resolution
# activations kept between stages, 8 bytes per pixel), above ~0.43 GB of runtime and weights; a
# window costs 406 bytes per pixel from 528 to 1400 px, 280 from 1400 to 1904 px. Windows are
# planned at 410 bytes per pixel and the host at 60 above `BASE_BYTES`, which covers every peak.
WINDOW_BYTES_PER_PIXEL = 410
HOST_BYTES_PER_PIXEL = 60


def estimate_memory_bytes(shape: tuple[int, int]) -> int:
    return shape[0] * shape[1] * (BYTES_PER_PIXEL + HOST_BYTES_PER_PIXEL) + BASE_BYTES


def _windowed_fixed_bytes(shape: tuple[int, int]) -> int:
    """What a windowed run of ``shape`` holds besides its window: the runtime and the host arrays."""
    return BASE_BYTES + HOST_BYTES_PER_PIXEL * shape[0] * shape[1]


def planned_peak_bytes(plan: ScalePlan) -> int:
    """What a plan holds at once, by the estimates it is planned from: the whole image's
    `estimate_memory_bytes`, or the runtime, the full-size host arrays and one window."""
    if not plan.tiled:
        return plan.needed
    return _windowed_fixed_bytes(plan.shape) + WINDOW_BYTES_PER_PIXEL * plan.tile[0] * plan.tile[1]


def plan_windows(shape: tuple[int, int], config: StyleConfig, budget: int | None) -> ScalePlan:
    """Whole, or in windows of ``config.resources.tile_size`` (else the largest that fits ``budget`` beside
    the image) around cores of that less twice the halo (`magenta_tiled.transform_tiled`)."""
    needed = estimate_memory_bytes(shape)
    if config.resources.tile_size is None and (budget is None or needed <= budget):
        return ScalePlan(shape, needed)
    room = None if budget is None else budget - _windowed_fixed_bytes(shape)
    smallest = MIN_TILE + 2 * magenta_tiled.TILE_HALO
    if config.resources.tile_size is not None and config.resources.tile_size < smallest:
        raise UsageError(
            f"the fast method's windows need --tile-size {smallest} or more, got {config.resources.tile_size}"
        )
    window = int(math.sqrt(max(room, 0) / WINDOW_BYTES_PER_PIXEL)) if room is not None else config.resources.tile_size
    if config.resources.tile_size is not None:
        window = min(config.resources.tile_size, max(window, smallest))  # forced, but not above the budget
    if window < smallest:
        raise UsageError(
            f"a memory budget of {budget / 2**30:.1f} GiB is too small for the fast method's windows at "
            f"{shape[1]}x{shape[0]} px; a larger --memory-budget or a smaller --max-size is needed"
        )
    core = max(32, (window - 2 * magenta_tiled.TILE_HALO) // 4 * 4)
    if core >= max(shape):
        return ScalePlan(shape, needed)
    side = min(max(shape), core + 2 * magenta_tiled.TILE_HALO)
    count = math.ceil(shape[0] / core) * math.ceil(shape[1] / core)
    return ScalePlan(shape, needed, (min(shape[0], side), min(shape[1], side)), count, core=core)
