"""Small images the image tests make themselves, in tmp_path or in memory (Pillow, no files shipped)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from jaxstyle.io.decode import LoadedImage


def random_rgb(height: int = 24, width: int = 32, seed: int = 0) -> np.ndarray:
    """Random uint8 (H, W, 3)."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def block_rgb(height: int = 48, width: int = 64) -> np.ndarray:
    """uint8 (H, W, 3) made of flat 16x16 colour blocks, so lossy codecs stay close."""
    rng = np.random.default_rng(1)
    colours = rng.integers(0, 256, (height // 16, width // 16, 3), dtype=np.uint8)
    return np.repeat(np.repeat(colours, 16, axis=0), 16, axis=1)


def encode_image(img: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    return buffer.getvalue()


def write_image(path: Path, img: Image.Image, **options) -> Path:
    img.save(path, **options)
    return path


def assert_valid(loaded: LoadedImage) -> None:
    rgb = loaded.rgb
    assert rgb.dtype == np.float32 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert np.all(np.isfinite(rgb)) and rgb.min() >= 0.0 and rgb.max() <= 1.0
    if loaded.alpha is not None:
        alpha = loaded.alpha
        assert alpha.dtype == np.float32 and alpha.shape == rgb.shape[:2]
        assert np.all(np.isfinite(alpha)) and alpha.min() >= 0.0 and alpha.max() <= 1.0
        assert alpha.min() < 1.0  # fully opaque alpha is reported as None
