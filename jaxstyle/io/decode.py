"""Decode image files for style transfer, safely and without surprises.

Everything the optimiser sees is a float32 ``(H, W, 3)`` array of sRGB values in ``[0, 1]``.
This module turns whatever file a user names into that array (any common format, bit depth,
colour mode, embedded ICC profile or EXIF orientation: `jaxstyle.io.pixels` interprets the
decoded pixels), and reads back the text metadata that `jaxstyle.io.encode.save_image` wrote.

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
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, UnidentifiedImageError

from jaxstyle.errors import ImageError, InputNotFoundError, UsageError, one_line
from jaxstyle.io.encode import EXIF_IMAGE_DESCRIPTION
from jaxstyle.io.files import os_reason
from jaxstyle.io.pixels import apply_exif_orientation, split_alpha, to_float_rgb, to_srgb

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

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
    shrink_to: int | None = None,
) -> LoadedImage:
    """Decode an image held in memory; same rules and errors as :func:`load_image`.

    Args:
        data: the encoded file contents.
        name: how error messages and ``LoadedImage.path`` refer to the data.
        min_side: smallest accepted height and width in pixels.
        max_pixels: largest accepted ``width * height``.
        shrink_to: as `load_image`'s (a JPEG decoded at a reduced scale).

    Raises:
        ImageError: empty data, not an image, truncated/corrupt, too small or too large.
    """
    _check_limits(min_side=min_side, max_pixels=max_pixels)
    if len(data) == 0:
        raise ImageError(f"'{name}' is an empty file")
    return _decode(io.BytesIO(data), name, min_side=min_side, max_pixels=max_pixels, shrink_to=shrink_to)


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
            apply_exif_orientation(img, name)
            colour, alpha = split_alpha(img, name)
            colour = to_srgb(colour, icc, name)
            rgb = to_float_rgb(colour, name)
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


# --------------------------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------------------------


def read_image_metadata(path: PathLike) -> dict[str, str]:
    """Read back the text metadata written by :func:`jaxstyle.io.encode.save_image`.

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
                    description = img.getexif().get(EXIF_IMAGE_DESCRIPTION)
                except Exception as exc:  # noqa: BLE001 - as in pixels.apply_exif_orientation
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
