"""Encode images: write results atomically, with metadata, without ever clobbering an input.

The format follows the output's extension; values are clipped to ``[0, 1]`` and stored as 8 bits
per channel, through `jaxstyle.io.files.atomic_write` (a file appears complete or not at all).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, PngImagePlugin, features

from jaxstyle.errors import NumericalError, OutputError, UsageError
from jaxstyle.io import files

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


#: Output file extension (lower case) -> Pillow format name.
SUPPORTED_OUTPUT_SUFFIXES: dict[str, str] = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
}

# Formats whose files can carry an alpha channel; for the others alpha is dropped.
_ALPHA_FORMATS = frozenset({"PNG", "WEBP", "TIFF"})
# Largest side each encoder accepts; checked up front so the error is clear and nothing is written.
_MAX_SIDE = {"WEBP": 16383, "JPEG": 65535}
# Where JPEG, WebP and TIFF keep the metadata (as JSON); `jaxstyle.io.decode.read_image_metadata`
# reads it back.
EXIF_IMAGE_DESCRIPTION = ExifTags.Base.ImageDescription


def check_image_suffix(path: PathLike) -> None:
    """Check, before any long computation, that an output's extension selects an image format.

    The image-specific half of checking an output; `jaxstyle.io.files.check_output_path` is
    the other (whether the file may and can be written).

    Raises:
        UsageError: the extension is not one of :data:`SUPPORTED_OUTPUT_SUFFIXES`.
    """
    output_format(path)


def output_format(path: PathLike) -> str:
    """The Pillow format an output file's extension selects, or UsageError."""
    shown = Path(path)
    suffix = shown.suffix.lower()
    if suffix not in SUPPORTED_OUTPUT_SUFFIXES:
        what = f"unsupported file extension '{shown.suffix}'" if suffix else "no file extension"
        choices = ", ".join(sorted(SUPPORTED_OUTPUT_SUFFIXES))
        raise UsageError(f"cannot write '{shown}': {what}; use one of {choices}")
    return SUPPORTED_OUTPUT_SUFFIXES[suffix]


def save_image(
    path: PathLike,
    rgb: np.ndarray,
    *,
    alpha: np.ndarray | None = None,
    overwrite: bool = False,
    inputs: Sequence[PathLike] = (),
    metadata: Mapping[str, str] | None = None,
    jpeg_quality: int = 95,
) -> Path:
    """Write an image atomically: the file either appears complete or not at all.

    The format follows the extension. Values are clipped to [0, 1] and stored as 8 bits per
    channel. JPEG uses 4:4:4 chroma (stylised textures have fine colour detail that 4:2:0
    would smear) and ``jpeg_quality``, which also sets WebP's quality.

    Args:
        path: output file, checked again with `jaxstyle.io.files.check_output_path`.
        rgb: float ``(H, W, 3)`` sRGB in [0, 1].
        alpha: optional float ``(H, W)`` in [0, 1]; written for PNG, WebP and TIFF, dropped
            (with a log message) for JPEG and BMP, which have no alpha.
        overwrite: whether an existing file may be replaced.
        inputs: files the output must not replace.
        metadata: text written as PNG tEXt/iTXt chunks, or as JSON in the EXIF
            ImageDescription for JPEG, WebP and TIFF; BMP has nowhere to keep it.
        jpeg_quality: 1..100.

    Returns:
        The resolved path written.

    Raises:
        NumericalError: ``rgb`` or ``alpha`` contains NaN or inf (nothing is written).
        UsageError: bad extension or quality.
        OutputError: see `jaxstyle.io.files.check_output_path`, or writing failed (disk full, ...).
    """
    rgb = np.asarray(rgb)
    _check_array(rgb, (3,), "rgb")
    if not np.all(np.isfinite(rgb)):
        raise NumericalError(f"refusing to write '{path}': the image contains NaN or infinite values")
    if alpha is not None:
        alpha = np.asarray(alpha)
        _check_array(alpha, (), "alpha")
        if alpha.shape != rgb.shape[:2]:
            raise ValueError(f"alpha shape {alpha.shape} does not match image {rgb.shape[:2]}")
        if not np.all(np.isfinite(alpha)):
            raise NumericalError(f"refusing to write '{path}': the alpha contains NaN or infinite values")
    if not 1 <= jpeg_quality <= 100:
        raise UsageError(f"the JPEG quality must be between 1 and 100, got {jpeg_quality}")

    fmt = output_format(path)
    height, width = rgb.shape[:2]
    if max(height, width) > _MAX_SIDE.get(fmt, 2**31 - 1):
        raise OutputError(
            f"cannot write '{path}': {fmt} images can be at most {_MAX_SIDE[fmt]} px on a side, "
            f"this one is {width}x{height} px"
        )
    if alpha is not None and fmt not in _ALPHA_FORMATS:
        logger.info("'%s': %s has no alpha channel; transparency is dropped", path, fmt)
        alpha = None
    image = _to_pil(rgb, alpha)
    options = _save_options(fmt, metadata, jpeg_quality, path)
    return files.atomic_write(
        path, lambda stream: image.save(stream, format=fmt, **options), overwrite=overwrite, inputs=inputs
    )


def _check_array(values: np.ndarray, channels: tuple[int, ...], what: str) -> None:
    if values.ndim != 2 + len(channels) or values.shape[2:] != channels:
        expected = ", ".join(["H", "W", *map(str, channels)])
        raise ValueError(f"{what} must have shape ({expected}), got {values.shape}")
    if not np.issubdtype(values.dtype, np.floating):
        # An 8-bit array would silently become white after clipping to [0, 1].
        raise ValueError(f"{what} must be a float array in [0, 1], got dtype {values.dtype}")


def to_8bit(values: np.ndarray) -> np.ndarray:
    """[0, 1] values as the uint8 levels every writer stores (clipped, rounded half to even)."""
    return np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)


def _to_pil(rgb: np.ndarray, alpha: np.ndarray | None) -> Image.Image:
    pixels = to_8bit(rgb)
    if alpha is not None:
        pixels = np.concatenate([pixels, to_8bit(alpha)[:, :, None]], axis=2)
    return Image.fromarray(np.ascontiguousarray(pixels))  # (H, W, 3|4) uint8 -> RGB|RGBA


def _save_options(fmt: str, metadata: Mapping[str, str] | None, quality: int, path: PathLike) -> dict[str, object]:
    """Encoder keyword arguments for Pillow's ``Image.save``."""
    options: dict[str, object] = {}
    if fmt == "JPEG":
        options.update(quality=quality, subsampling=0, optimize=True)
    elif fmt == "WEBP":
        options.update(quality=quality)
    elif fmt == "TIFF" and features.check("libtiff"):
        options.update(compression="tiff_deflate")
    if not metadata:
        return options
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        for key, value in metadata.items():
            _check_png_keyword(key)
            info.add_text(key, str(value))  # falls back to iTXt for non-Latin-1 text
        options["pnginfo"] = info
    elif fmt in ("JPEG", "WEBP", "TIFF"):
        exif = Image.Exif()
        # ImageDescription is ASCII; ensure_ascii escapes everything else.
        exif[EXIF_IMAGE_DESCRIPTION] = json.dumps(dict(metadata), ensure_ascii=True, sort_keys=True)
        options["exif"] = exif
    else:
        logger.info("'%s': %s cannot store metadata; it is not written", path, fmt)
    return options


def _check_png_keyword(key: str) -> None:
    # PNG keywords: 1-79 Latin-1 characters (PNG spec 11.3.4.2); Pillow does not check.
    try:
        key.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"PNG metadata keys must be Latin-1 text, got {key!r}") from None
    if not 1 <= len(key) <= 79:
        raise ValueError(f"PNG metadata keys must be 1 to 79 characters long, got {key!r}")
