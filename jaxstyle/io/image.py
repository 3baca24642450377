"""Decode, encode and resize images for style transfer, safely and without surprises.

Everything the optimiser sees is a float32 ``(H, W, 3)`` array of sRGB values in ``[0, 1]``.
This module turns whatever file a user names into that array (any common format, bit depth,
colour mode, embedded ICC profile or EXIF orientation), and writes results back without ever
clobbering an input or leaving a half-written file behind.

Every problem a user can fix is raised as one of the classes in :mod:`jaxstyle.errors`, with a
one-line message that names the file; no raw Pillow or ``OSError`` escapes. Pillow's own
warnings are caught and sent to :mod:`logging`, never left to leak to the caller.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import math
import os
import re
import stat
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

import numpy as np
from PIL import (
    ExifTags,
    Image,
    ImageCms,
    ImageOps,
    PngImagePlugin,
    UnidentifiedImageError,
    features,
)

from jaxstyle.errors import ImageError, InputNotFoundError, NumericalError, OutputError, UsageError, one_line
from jaxstyle.io import files
from jaxstyle.io.files import os_reason

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

#: Largest image (width * height) that :func:`load_image` decodes by default.
#: This is Pillow's own hard decompression-bomb limit (2 * ``Image.MAX_IMAGE_PIXELS``, about
#: 179 Mpx, e.g. 16384 x 10922): a float32 RGB copy of it takes about 2 GiB, already far more
#: than style transfer can use, while every real camera photo (up to ~150 Mpx) still loads so
#: that it can be downscaled. Pillow refuses anything larger regardless of this setting.
DEFAULT_MAX_PIXELS = 178_956_970

# Pillow plugins that load_image tries. Restricting the list keeps Pillow from guessing exotic
# formats from a few magic bytes (TGA has none at all) and never lets EPS start Ghostscript.
_INPUT_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF", "PPM", "AVIF")
_INPUT_FORMATS_TEXT = "JPEG, PNG, WebP, TIFF, BMP, GIF, PPM or AVIF"

# Formats whose files can carry an alpha channel; for the others alpha is dropped.
_ALPHA_FORMATS = frozenset({"PNG", "WEBP", "TIFF"})
# Largest side each encoder accepts; checked up front so the error is clear and nothing is written.
_MAX_SIDE = {"WEBP": 16383, "JPEG": 65535}
_EXIF_IMAGE_DESCRIPTION = ExifTags.Base.ImageDescription
_BYTES_PER_DECODED_PIXEL = 3 * 4  # float32 RGB


@dataclasses.dataclass(frozen=True, eq=False)
class LoadedImage:
    """A decoded image, ready for style transfer.

    Attributes:
        rgb: float32 ``(H, W, 3)``, sRGB-encoded (not linear), values in ``[0, 1]``, EXIF
            orientation already applied.
        alpha: float32 ``(H, W)`` in ``[0, 1]`` (1 = opaque), or ``None`` when the file has no
            alpha channel or it is fully opaque everywhere.
        path: the file it came from (for :func:`decode_image_bytes`, the ``name`` given).
    """

    rgb: np.ndarray
    alpha: np.ndarray | None
    path: Path

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` in pixels."""
        return self.rgb.shape[0], self.rgb.shape[1]


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_image(
    path: PathLike, *, min_side: int = 16, max_pixels: int = DEFAULT_MAX_PIXELS, shrink_to: int | None = None
) -> LoadedImage:
    """Read an image file into float32 sRGB ``(H, W, 3)`` in ``[0, 1]`` plus optional alpha.

    Only the header is read before the size checks, so a huge or hostile file is refused
    without allocating its pixels. Then: the EXIF orientation is applied; palette, grey,
    CMYK, YCbCr, Lab, 16-bit and float images are converted (grey replicated to 3 channels,
    16-bit scaled by 65535); colours tagged with a non-sRGB ICC profile are converted to
    sRGB; animated files give their first frame.

    Args:
        path: the file to read (a pipe such as ``/dev/stdin`` works too).
        min_side: smallest accepted height and width in pixels.
        max_pixels: largest accepted ``width * height``. Pillow itself refuses more than
            ``2 * PIL.Image.MAX_IMAGE_PIXELS`` (the default) whatever this says.
        shrink_to: for a caller that shrinks the image to this long side next: a JPEG is then
            decoded at the smallest of libjpeg's scales (1/2, 1/4, 1/8) that keeps at least that
            long side (scaling in the DCT domain, as thumbnailers do: a 1600x1200 photo for a
            512 px output decodes and resizes in 20 ms instead of 70, and a 12-megapixel one
            needs a sixteenth of the memory). Other formats decode whole.

    Raises:
        InputNotFoundError: the path does not exist, is a directory or cannot be opened.
        ImageError: the file is empty, not an image, truncated/corrupt, too small or too large.
    """
    _check_limits(min_side=min_side, max_pixels=max_pixels)
    path = Path(path)
    with _open_input(path) as (fp, is_regular):
        if not is_regular:
            # Pipes and process substitution (<(curl ...)) cannot seek; Pillow needs to.
            return decode_image_bytes(fp.read(), name=str(path), min_side=min_side, max_pixels=max_pixels)
        image = _decode(fp, str(path), min_side=min_side, max_pixels=max_pixels, shrink_to=shrink_to)
    return dataclasses.replace(image, path=path)


def decode_image_bytes(
    data: bytes,
    *,
    name: str = "<bytes>",
    min_side: int = 16,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> LoadedImage:
    """Decode an image held in memory; same rules and errors as :func:`load_image`.

    Args:
        data: the encoded file contents.
        name: how error messages and ``LoadedImage.path`` refer to the data.
        min_side: smallest accepted height and width in pixels.
        max_pixels: largest accepted ``width * height``.

    Raises:
        ImageError: empty data, not an image, truncated/corrupt, too small or too large.
    """
    _check_limits(min_side=min_side, max_pixels=max_pixels)
    if len(data) == 0:
        raise ImageError(f"'{name}' is an empty file")
    return _decode(io.BytesIO(data), name, min_side=min_side, max_pixels=max_pixels)


def _check_limits(*, min_side: int, max_pixels: int) -> None:
    if min_side < 1:
        raise UsageError(f"min_side must be at least 1, got {min_side}")
    if max_pixels < 1:
        raise UsageError(f"max_pixels must be at least 1, got {max_pixels}")


@contextlib.contextmanager
def _open_input(path: Path) -> Iterator[tuple[IO[bytes], bool]]:
    """Open ``path`` for reading, turning every OS failure into one clear error.

    Yields the binary file and whether it is a regular file (as opposed to a pipe or device).
    """
    try:
        fp = open(path, "rb")  # noqa: SIM115 - closed below; open errors are mapped first
    except FileNotFoundError as exc:
        raise InputNotFoundError(f"'{path}' does not exist") from exc
    except IsADirectoryError as exc:
        raise InputNotFoundError(f"'{path}' is a directory, not an image file") from exc
    except PermissionError as exc:
        raise InputNotFoundError(f"cannot open '{path}': permission denied") from exc
    except OSError as exc:
        raise InputNotFoundError(f"cannot open '{path}': {os_reason(exc)}") from exc
    with fp:
        try:
            info = os.fstat(fp.fileno())
        except OSError as exc:
            raise InputNotFoundError(f"cannot open '{path}': {os_reason(exc)}") from exc
        if stat.S_ISDIR(info.st_mode):  # open() of a directory succeeds on some systems
            raise InputNotFoundError(f"'{path}' is a directory, not an image file")
        is_regular = stat.S_ISREG(info.st_mode)
        if is_regular and info.st_size == 0:
            raise ImageError(f"'{path}' is an empty file")
        try:
            yield fp, is_regular
        except OSError as exc:
            # Only plain I/O errors get here (EIO, a file on a vanished network share):
            # everything Pillow raises on bad data is already mapped inside _decode.
            raise ImageError(f"cannot read '{path}': {os_reason(exc)}") from exc


def _decode(fp: IO[bytes], name: str, *, min_side: int, max_pixels: int, shrink_to: int | None = None) -> LoadedImage:
    """Shared body of :func:`load_image` and :func:`decode_image_bytes`."""
    with _pillow_warnings_to_log(name):
        img = _open_pil(fp, name, max_pixels=max_pixels)
        with img:
            _check_size(img.size, name, min_side=min_side, max_pixels=max_pixels)
            icc = img.info.get("icc_profile") or None
            if shrink_to is not None and img.format == "JPEG" and max(img.size) > shrink_to:
                factor = shrink_to / max(img.size)  # the long side stays the long side when rotated
                img.draft(img.mode, tuple(math.ceil(side * factor) for side in img.size))
            _load_pixels(img, name, max_pixels=max_pixels)
            _apply_exif_orientation(img, name)
            colour, alpha = _split_alpha(img, name)
            colour = _to_srgb(colour, icc, name)
            rgb = _to_float_rgb(colour, name)
    return LoadedImage(rgb=rgb, alpha=alpha, path=Path(name))


@contextlib.contextmanager
def _pillow_warnings_to_log(name: str) -> Iterator[None]:
    """Log Pillow's warnings instead of letting them reach the caller.

    Corrupt EXIF, odd chunks and the like are harmless for our use; callers (and the test
    suite, which runs with warnings as errors) must not see them. Pillow's
    DecompressionBombWarning is dropped: :func:`_check_size` applies our own limit instead.
    """
    level = logging.WARNING
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        except BaseException:
            level = logging.DEBUG  # the error raised says enough; keep these for debugging
            raise
        finally:
            for warning in caught:
                if not issubclass(warning.category, Image.DecompressionBombWarning):
                    logger.log(level, "'%s': %s", name, warning.message)


def _open_pil(fp: IO[bytes], name: str, *, max_pixels: int) -> Image.Image:
    """Read only the header (Pillow is lazy), trying the formats we support."""
    try:
        return Image.open(fp, formats=_available_input_formats())
    except UnidentifiedImageError as exc:
        raise ImageError(f"'{name}' is not a recognised image format (expected {_INPUT_FORMATS_TEXT})") from exc
    except Image.DecompressionBombError as exc:
        raise _bomb_error(name, exc, max_pixels) from exc
    except Exception as exc:
        # Pillow's header parsers raise many types on bad input (SyntaxError, struct.error,
        # IndexError, ValueError, ...); all mean the same thing to a user.
        raise ImageError(f"cannot read '{name}': corrupt image header ({one_line(exc, 160)})") from exc


def _available_input_formats() -> tuple[str, ...]:
    # AVIF needs an optional Pillow plugin; Image.open fails on names it does not know.
    Image.init()
    return tuple(f for f in _INPUT_FORMATS if f in Image.OPEN)


def _check_size(size: tuple[int, int], name: str, *, min_side: int, max_pixels: int) -> None:
    """Refuse images too large to decode or too small to stylise, before decoding pixels."""
    width, height = size
    pixels = width * height
    if pixels > max_pixels:
        raise ImageError(
            f"'{name}' is {width}x{height} px ({_format_pixels(pixels)}); decoding it would need "
            f"about {_format_bytes(pixels * _BYTES_PER_DECODED_PIXEL)}; "
            f"the limit is {_format_pixels(max_pixels)}"
        )
    if min(width, height) < min_side:
        raise ImageError(f"'{name}' is {width}x{height} px; each side must be at least {min_side} px")


def _bomb_error(name: str, exc: Image.DecompressionBombError, max_pixels: int) -> ImageError:
    """Rephrase Pillow's own refusal (it happens inside Image.open, before we see the size)."""
    match = re.search(r"\((\d+) pixels\)", str(exc))
    limit = max_pixels
    if Image.MAX_IMAGE_PIXELS is not None:
        limit = min(limit, 2 * Image.MAX_IMAGE_PIXELS)
    if match is None:
        return ImageError(f"'{name}' is too large to decode; the limit is {_format_pixels(limit)}")
    pixels = int(match.group(1))
    return ImageError(
        f"'{name}' has {_format_pixels(pixels)}; decoding it would need about "
        f"{_format_bytes(pixels * _BYTES_PER_DECODED_PIXEL)}; the limit is {_format_pixels(limit)}"
    )


def _load_pixels(img: Image.Image, name: str, *, max_pixels: int) -> None:
    """Decode the pixel data; a truncated or corrupt file becomes an ImageError.

    ``ImageFile.LOAD_TRUNCATED_IMAGES`` stays off: a half-grey image would be stylised
    silently, and setting it would change Pillow's behaviour for the whole process.
    """
    try:
        img.load()
    except Image.DecompressionBombError as exc:  # e.g. a GIF frame larger than its canvas
        raise _bomb_error(name, exc, max_pixels) from exc
    except MemoryError as exc:
        raise ImageError(f"cannot read '{name}': not enough memory to decode it") from exc
    except Exception as exc:
        # Decoders signal bad data with OSError, SyntaxError, ValueError, struct.error, ...
        raise ImageError(f"cannot read '{name}': the file is truncated or corrupt ({one_line(exc, 160)})") from exc


def _apply_exif_orientation(img: Image.Image, name: str) -> None:
    """Rotate/flip as the EXIF Orientation tag says, so portrait photos stay portrait.

    Cameras store many photos sideways and only tag them. A broken EXIF block is common and
    not worth refusing the photo for, so it is logged and the pixels are used as stored.
    """
    try:
        ImageOps.exif_transpose(img, in_place=True)
    except Exception as exc:  # noqa: BLE001 - Pillow's EXIF parsers raise many types
        logger.warning("'%s': ignoring unreadable EXIF orientation (%s)", name, one_line(exc, 160))


def _split_alpha(img: Image.Image, name: str) -> tuple[Image.Image, np.ndarray | None]:
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


def _to_srgb(img: Image.Image, icc: bytes | None, name: str) -> Image.Image:
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


def _to_float_rgb(img: Image.Image, name: str) -> np.ndarray:
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


# --------------------------------------------------------------------------------------------
# Resizing
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------------


def check_output_path(path: PathLike, *, overwrite: bool, inputs: Sequence[PathLike] = ()) -> Path:
    """Check that an output can be written, before any long computation starts.

    Creates the parent folder if it is missing (so that the check is real).

    Args:
        path: the output file; its extension picks the format.
        overwrite: whether an existing file may be replaced.
        inputs: files the run reads; the output may never be one of them, even with
            ``overwrite``.

    Returns:
        The resolved (absolute, symlinks followed) output path.

    Raises:
        UsageError: the extension is not one of :data:`SUPPORTED_OUTPUT_SUFFIXES`.
        OutputError: the path is an input, a directory, a special file, exists without
            ``overwrite``, or its folder cannot be created or written to.
    """
    output_format(path)
    return files.check_output_path(path, overwrite=overwrite, inputs=inputs)


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
        path: output file, checked again with :func:`check_output_path`.
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
        OutputError: see :func:`check_output_path`, or writing failed (disk full, ...).
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
        exif[_EXIF_IMAGE_DESCRIPTION] = json.dumps(dict(metadata), ensure_ascii=True, sort_keys=True)
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


# --------------------------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------------------------


def read_image_metadata(path: PathLike) -> dict[str, str]:
    """Read back the text metadata written by :func:`save_image`.

    PNG: all tEXt/zTXt/iTXt chunks. JPEG, WebP, TIFF: the JSON object in the EXIF
    ImageDescription (or ``{"ImageDescription": text}`` if it is not JSON). Otherwise ``{}``.

    Raises:
        InputNotFoundError, ImageError: as :func:`load_image`.
    """
    path = Path(path)
    name = str(path)
    with _open_input(path) as (fp, is_regular):
        source: IO[bytes] = fp if is_regular else io.BytesIO(fp.read())
        with _pillow_warnings_to_log(name):
            img = _open_pil(source, name, max_pixels=DEFAULT_MAX_PIXELS)
            with img:
                _check_size(img.size, name, min_side=1, max_pixels=DEFAULT_MAX_PIXELS)
                if img.format == "PNG":
                    # Chunks after the pixel data are only seen once the pixels are decoded.
                    _load_pixels(img, name, max_pixels=DEFAULT_MAX_PIXELS)
                    text = getattr(img, "text", {})
                    return {str(k): str(v) for k, v in text.items()}
                try:
                    description = img.getexif().get(_EXIF_IMAGE_DESCRIPTION)
                except Exception as exc:  # noqa: BLE001 - as in _apply_exif_orientation
                    logger.warning("'%s': unreadable EXIF (%s)", name, one_line(exc, 160))
                    return {}
    return _parse_description(description)


def _parse_description(description: object) -> dict[str, str]:
    if description is None:
        return {}
    if isinstance(description, bytes):
        description = description.decode("latin-1")
    text = str(description).rstrip("\x00")
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        return {str(k): str(v) for k, v in parsed.items()}
    return {"ImageDescription": text}


# --------------------------------------------------------------------------------------------
# Message helpers
# --------------------------------------------------------------------------------------------


def _format_pixels(pixels: int) -> str:
    if pixels >= 10_000_000:
        return f"{pixels / 1e6:.0f} Mpx"
    if pixels >= 1_000_000:
        return f"{pixels / 1e6:.1f} Mpx"
    return f"{pixels:,} px"


def _format_bytes(size: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"
