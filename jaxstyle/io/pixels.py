"""What a decoded Pillow image's pixels mean, as float32 sRGB: the steps of `jaxstyle.io.decode`.

EXIF orientation (portrait photos stay portrait), alpha split from colour, an embedded ICC
colour profile converted to sRGB, and every colour mode and bit depth scaled to ``[0, 1]``.
A broken EXIF block or profile is logged and the raw pixels are used; only values no image
should hold (NaN, inf) are refused.
"""

from __future__ import annotations

import io
import logging

import numpy as np
from PIL import Image, ImageCms, ImageOps

from jaxstyle.errors import ImageError, one_line

logger = logging.getLogger(__name__)


def apply_exif_orientation(img: Image.Image, name: str) -> None:
    """Rotate/flip as the EXIF Orientation tag says, so portrait photos stay portrait.

    Cameras store many photos sideways and only tag them. A broken EXIF block is common and
    not worth refusing the photo for, so it is logged and the pixels are used as stored.
    """
    try:
        ImageOps.exif_transpose(img, in_place=True)
    except Exception as exc:  # noqa: BLE001 - Pillow's EXIF parsers raise many types
        logger.warning("'%s': ignoring unreadable EXIF orientation (%s)", name, one_line(exc, 160))


def split_alpha(img: Image.Image, name: str) -> tuple[Image.Image, np.ndarray | None]:
    """Separate colour from alpha, so colour conversions cannot touch the alpha values.

    Returns the colour image (any mode without alpha) and float32 ``(H, W)`` alpha in
    ``[0, 1]``, or ``None`` when there is no alpha or it is opaque everywhere.
    """
    mode = img.mode
    has_key_colour = "transparency" in img.info
    if mode == "P":
        img = img.convert("RGBA" if has_key_colour else "RGB")
    elif mode == "PA" or mode == "RGBa" or (mode == "RGB" and has_key_colour):
        img = img.convert("RGBA")
    elif mode == "La" or (mode == "L" and has_key_colour):
        img = img.convert("LA")
    elif mode == "1" and has_key_colour:
        img = img.convert("L").convert("LA")
    if img.mode not in ("RGBA", "LA"):
        return img, None
    *colour_bands, alpha_band = img.split()
    colour = colour_bands[0] if len(colour_bands) == 1 else Image.merge("RGB", colour_bands)
    alpha = np.asarray(alpha_band).astype(np.float32) / np.float32(255)
    if np.all(alpha == 1.0):
        return colour, None
    return colour, alpha


def to_srgb(img: Image.Image, icc: bytes | None, name: str) -> Image.Image:
    """Convert colours described by an embedded non-sRGB ICC profile to sRGB.

    The optimiser and VGG assume sRGB; an Adobe RGB or Display P3 photo read as sRGB looks
    washed out. LittleCMS works on 8-bit modes only, so 16-bit and float images keep their
    values (with a warning). If the profile is broken the raw values are used, with a warning.
    """
    if icc is None or img.mode not in ("RGB", "L", "CMYK"):
        if icc is not None:
            logger.warning(
                "'%s': ICC profile ignored for %s pixels; colours may be slightly off",
                name,
                img.mode,
            )
        return img
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if img.mode != "CMYK" and _is_srgb(profile):
            return img  # already what we want; skip a lossy 8-bit round trip
        converted = ImageCms.profileToProfile(img, profile, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except Exception as exc:  # noqa: BLE001 - PyCMSError, OSError, ValueError: a broken profile
        logger.warning(
            "'%s': could not apply the embedded ICC profile (%s); using the raw colour values",
            name,
            one_line(exc, 160),
        )
        return img
    assert converted is not None  # profileToProfile returns None only with inPlace=True
    return converted


def _is_srgb(profile: ImageCms.ImageCmsProfile) -> bool:
    # sRGB profiles are named "sRGB IEC61966-2.1", "sRGB built-in", ... by every vendor.
    try:
        return "srgb" in ImageCms.getProfileDescription(profile).lower()
    except ImageCms.PyCMSError:
        return False


def to_float_rgb(img: Image.Image, name: str) -> np.ndarray:
    """Pixels of a colour image (no alpha) as float32 ``(H, W, 3)`` in ``[0, 1]``.

    16-bit data is scaled by 65535 (not truncated to 8 bits); float data is kept when it
    already lies in ``[0, 1]`` and otherwise divided by its maximum; grey is replicated.
    """
    mode = img.mode
    if mode.startswith("I;16"):
        values = np.asarray(img).astype(np.float32)
        values /= np.float32(65535)
    elif mode == "I":
        values = _scale_32bit_int(np.asarray(img))
    elif mode == "F":
        values = _scale_float(np.asarray(img, dtype=np.float32), name)
    else:
        if mode not in ("L", "RGB"):
            # CMYK without a profile, YCbCr, LAB, HSV, RGBX, 1: Pillow's own conversions.
            img = img.convert("L" if mode == "1" else "RGB")
        # asarray(img, dtype=float32) converts pixel by pixel in Python-level code: 5x slower.
        values = np.asarray(img).astype(np.float32)
        values /= np.float32(255)
    if values.ndim == 2:
        values = np.repeat(values[:, :, None], 3, axis=2)
    return np.ascontiguousarray(values, dtype=np.float32)


def _scale_32bit_int(values: np.ndarray) -> np.ndarray:
    """Mode 'I' (int32) -> [0, 1]. Most such files hold 16-bit data, so use 65535 when it fits."""
    values = np.clip(values, 0, None).astype(np.float64)
    peak = float(values.max(initial=0.0))
    return (values / max(peak, 65535.0)).astype(np.float32)


def _scale_float(values: np.ndarray, name: str) -> np.ndarray:
    """Mode 'F' (float32 TIFF) -> [0, 1]: keep [0, 1] data, otherwise divide by the maximum."""
    if not np.all(np.isfinite(values)):
        raise ImageError(f"cannot read '{name}': the image contains NaN or infinite values")
    values = np.clip(values, 0.0, None)
    peak = float(values.max(initial=0.0))
    if peak > 1.0:
        values = values / np.float32(peak)
    return values.astype(np.float32)
