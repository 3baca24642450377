"""`stylize`: the whole Gatys stylization of one image, coarse to fine, with colour options.

Arrays in and out are numpy float32 RGB in [0, 1], shape (H, W, 3). The function is silent: it
reports through ``callback`` with a `Progress` per report and never prints.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle import color
from jaxstyle.config import StyleConfig
from jaxstyle.errors import ImageError, UsageError
from jaxstyle.image import resize_to
from jaxstyle.optimize import LossSpec, StepReport, blend_style_targets, content_targets, optimise, style_targets
from jaxstyle.vgg import MIN_SIDE, prepare_params
from jaxstyle.weights import VGGWeights, load_weights


@dataclass(frozen=True)
class Progress:
    """One progress report: where the run is and the step report of the optimiser."""

    scale: int  # 0-based index of the current scale
    num_scales: int
    shape: tuple[int, int]  # (H, W) at this scale
    done: int  # iterations done over all scales
    total: int  # iterations planned over all scales
    report: StepReport


def fit_long_side(shape: tuple[int, int], long_side: int) -> tuple[int, int]:
    """(H, W) scaled so that the longer side is ``long_side``, aspect kept, each side >= 16 px."""
    h, w = shape
    scale = long_side / max(h, w)
    return max(MIN_SIDE, round(h * scale)), max(MIN_SIDE, round(w * scale))


def scale_sizes(shape: tuple[int, int], config: StyleConfig) -> list[tuple[int, int]]:
    """Output (H, W) of every scale, coarse to fine, growing by sqrt(2) up to ``config.max_size``."""
    if config.multiscale_min is None:
        return [fit_long_side(shape, config.max_size)]
    count = math.floor(math.log(config.max_size / config.multiscale_min, math.sqrt(2)) + 1e-9) + 1
    sides = [config.max_size / math.sqrt(2) ** (count - 1 - i) for i in range(count)]
    return [fit_long_side(shape, round(side)) for side in sides]


def check_style_blend(style_blend: Sequence[float] | None, count: int) -> tuple[float, ...]:
    """One finite, non-negative weight per style, not all zero (equal weights when None)."""
    blend = tuple(float(w) for w in (style_blend or (1.0,) * count))
    if len(blend) != count:
        raise UsageError(f"{count} style images but {len(blend)} style weights")
    if not all(math.isfinite(w) and w >= 0 for w in blend) or sum(blend) <= 0:
        raise UsageError("style weights must be finite, >= 0, and not all 0")
    return blend


def estimate_memory_bytes(shape: tuple[int, int], config: StyleConfig) -> int:
    """Rough peak memory of optimising an (H, W) image: VGG activations kept for the backward pass.

    Measured on CPU (float32, L-BFGS): about 3 kB per output pixel plus ~0.9 GB of weights (with the
    Winograd kernels, `vgg.prepare_params`) and runtime; peak RSS was 1.7 GiB at 341x512 and
    3.1 GiB at 681x1024 (the estimate gives 1.6 and 3.7 GB).
    """
    h, w = shape
    per_pixel = 3000 if config.precision == "float32" else 1800
    # The style image only runs forward once (no backward): about a third per pixel.
    style_pixels = h * w * config.style_scale**2 / 3
    return int((h * w + style_pixels) * per_pixel + 0.9 * 2**30)


def available_memory_bytes() -> int | None:
    """Memory this run can use: the accelerator's limit, or MemAvailable on a CPU host."""
    device = jax.devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" and hasattr(device, "memory_stats") else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_memory(shape: tuple[int, int], config: StyleConfig) -> None:
    """Refuse, with the numbers, a size that cannot fit instead of swapping or being OOM-killed."""
    needed, available = estimate_memory_bytes(shape, config), available_memory_bytes()
    if available is not None and needed > available:
        raise UsageError(
            f"a {shape[1]}x{shape[0]} px stylization needs about {needed / 2**30:.1f} GiB of memory but only "
            f"{available / 2**30:.1f} GiB is available; use a smaller --max-size"
        )


def _as_rgb(image: np.ndarray, what: str) -> np.ndarray:
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


def _initial_image(content: np.ndarray, config: StyleConfig, init_image: np.ndarray | None) -> np.ndarray:
    rng = np.random.default_rng(config.seed)
    noise = rng.uniform(0.0, 1.0, content.shape).astype(np.float32)
    if config.init == "content":
        return content
    if config.init == "noise":
        return noise
    if config.init == "blend":
        # The TF tutorial's variant of a noisy start: (1 - f) * content + f * noise.
        return (1.0 - config.init_noise_fraction) * content + config.init_noise_fraction * noise
    if config.init == "gray":
        return np.full_like(content, 0.5)
    if init_image is None:
        raise UsageError("init 'image' needs an init image")
    return resize_to(_as_rgb(init_image, "init image"), *content.shape[:2])


def _prepare_colours(content: np.ndarray, styles: list[np.ndarray], mode: str) -> tuple[np.ndarray, list[np.ndarray]]:
    if mode == "luminance":
        return color.luminance_image(content), [color.luminance_image(s, match_to=content) for s in styles]
    if mode == "histogram":
        return content, [color.match_color_histogram(s, content) for s in styles]
    return content, styles


def _finish_colours(result: np.ndarray, content: np.ndarray, mode: str) -> np.ndarray:
    if mode == "luminance":
        return color.restore_chroma(result, content)
    if mode == "knn":
        from jaxstyle.color_knn import knn_color_transfer

        return np.asarray(knn_color_transfer(result, [content]), np.float32)[..., :3]
    return result


def stylize(
    content: np.ndarray,
    styles: np.ndarray | Sequence[np.ndarray],
    config: StyleConfig | None = None,
    *,
    style_blend: Sequence[float] | None = None,
    init_image: np.ndarray | None = None,
    weights: VGGWeights | None = None,
    callback: Callable[[Progress], None] | None = None,
) -> np.ndarray:
    """Stylize ``content`` with one or several ``styles``.

    Args:
      content: (H, W, 3) RGB in [0, 1] (uint8 and grey (H, W) are accepted).
      styles: one style image or a list; each may have its own size and aspect ratio.
      config: all settings; `StyleConfig()` by default.
      style_blend: one non-negative weight per style (normalised to sum 1); equal by default.
      init_image: the starting image when ``config.init == "image"``.
      weights: VGG19 weights; the embedded default if None.
      callback: called with a `Progress` every ``config.report_every`` iterations.

    Returns:
      (h, w, 3) float32 in [0, 1], with the long side ``config.max_size``.
    """
    config = (config or StyleConfig()).validate()
    content = _as_rgb(content, "content image")
    style_list = [styles] if isinstance(styles, np.ndarray) else list(styles)
    if not style_list:
        raise UsageError("at least one style image is needed")
    style_list = [_as_rgb(s, f"style image {i + 1}") for i, s in enumerate(style_list)]
    blend = check_style_blend(style_blend, len(style_list))

    sizes = scale_sizes(content.shape[:2], config)
    check_memory(sizes[-1], config)
    weights = weights or load_weights()
    spec = LossSpec.from_config(config, weights.mean_bgr)
    params = jax.device_put(prepare_params(weights.params, spec.layers))
    coarse = config.iterations if config.coarse_iterations is None else config.coarse_iterations
    per_scale = [coarse] * (len(sizes) - 1) + [config.iterations]
    total = sum(per_scale)

    image = None
    for index, (h, w) in enumerate(sizes):
        content_s = resize_to(content, h, w)
        content_s, styles_s = _prepare_colours(content_s, style_list, config.preserve_color)
        style_side = max(MIN_SIDE, round(config.style_scale * max(h, w)))
        per_style = []
        for style in styles_s:
            sh, sw = fit_long_side(style.shape[:2], style_side)
            per_style.append(style_targets(params, jnp.asarray(resize_to(style, sh, sw)), spec, (h, w)))
        targets = {
            "content": content_targets(params, jnp.asarray(content_s), spec),
            "style": blend_style_targets(per_style, blend),
        }
        start = _initial_image(content_s, config, init_image) if image is None else resize_to(image, h, w)

        def report(step: StepReport, index=index, shape=(h, w)) -> None:
            if callback is not None:
                done = sum(per_scale[:index]) + step.iteration
                callback(Progress(index, len(sizes), shape, done, total, step))

        scale_config = config.replace(iterations=per_scale[index])
        result = optimise(params, jnp.asarray(start, jnp.float32), targets, scale_config, spec, callback=report)
        image = np.asarray(result.image)
    return _finish_colours(image, resize_to(content, *image.shape[:2]), config.preserve_color)
