"""Resize images with Lanczos in float32, so that no precision is lost to 8-bit steps."""

from __future__ import annotations

import numpy as np
from PIL import Image

from jaxstyle.errors import UsageError


def resize_long_side(rgb: np.ndarray, long_side: int) -> np.ndarray:
    """Scale an image so that its longer side is ``long_side`` px, keeping the aspect ratio.

    Lanczos resampling, up or down (see :func:`resize_to`). The shorter side is rounded to
    the nearest pixel and is at least 1 px.

    Args:
        rgb: ``(H, W)`` or ``(H, W, C)`` array.
        long_side: target length of the longer side, >= 1.

    Returns:
        float32 ``(H', W')`` or ``(H', W', C)`` with ``max(H', W') == long_side``.
    """
    if long_side < 1:
        raise UsageError(f"the image size must be at least 1 px, got {long_side}")
    height, width = np.shape(rgb)[:2]
    scale = long_side / max(height, width)
    new_height = long_side if height >= width else max(1, round(height * scale))
    new_width = long_side if width > height else max(1, round(width * scale))
    return resize_to(rgb, new_height, new_width)


def resize_to(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resample an image to exactly ``height x width`` with Lanczos (a = 3).

    Each channel is resampled as a Pillow mode 'F' (float32) image, so no precision is lost
    to 8-bit quantisation. Lanczos rings slightly at sharp edges; the result is clipped to
    the input's value range so that, e.g., [0, 1] images stay in [0, 1].

    Args:
        rgb: ``(H, W)`` or ``(H, W, C)`` array, any real dtype.
        height, width: output size in pixels, each >= 1.

    Returns:
        float32 ``(height, width)`` or ``(height, width, C)``.
    """
    if height < 1 or width < 1:
        raise UsageError(f"the image size must be at least 1x1 px, got {width}x{height}")
    values = np.asarray(rgb, dtype=np.float32)
    if values.ndim not in (2, 3) or values.shape[0] < 1 or values.shape[1] < 1:
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {values.shape}")
    # One value range for all channels, computed once (see the docstring for why we clip).
    low, high = float(np.min(values)), float(np.max(values))
    value_range = (low, high) if np.isfinite(low) and np.isfinite(high) else None
    if values.ndim == 2:
        return _resize_plane(values, height, width, value_range)
    planes = [_resize_plane(values[:, :, c], height, width, value_range) for c in range(values.shape[2])]
    if not planes:  # C == 0
        return np.zeros((height, width, 0), dtype=np.float32)
    return np.stack(planes, axis=2)


def _resize_plane(plane: np.ndarray, height: int, width: int, value_range: tuple[float, float] | None) -> np.ndarray:
    """One float32 ``(H, W)`` plane -> ``(height, width)``, clipped to ``value_range``."""
    if plane.shape == (height, width):
        return plane.copy()
    image = Image.fromarray(np.ascontiguousarray(plane))  # float32 2-D -> mode 'F'
    out = np.asarray(image.resize((width, height), Image.Resampling.LANCZOS), dtype=np.float32)
    if value_range is not None:
        out = np.clip(out, *value_range)
    return out
