"""Images the page sent (or picked from the bundled ones), decoded once and kept by id.

Each upload is decoded with the CLI's own `jaxstyle.io.decode.decode_image_bytes`: the same
formats, size and decompression-bomb checks, and the same one-line errors. Its name is never a
path: it is kept for display only, the bytes under a random id, and the bytes are written to the
results folder (by their hash) only when a result uses them. The newest `KEEP` uploads are kept;
an older id answers 404 and the page sends the image again.

Painted masks (`decode_mask`) come inside the job's settings, as PNG data URLs: they are small
(white strokes on black) and change with every stroke, so they are not kept by id.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from jaxstyle.errors import ImageError, InputNotFoundError, MaskError
from jaxstyle.io.decode import LoadedImage, decode_image_bytes
from jaxstyle.io.resize import resize_to
from jaxstyle.prepare import fit_long_side

KEEP = 24  # uploads kept in memory, the newest first
BUNDLED = {"chelsea": "chelsea.jpg", "starry_night": "starry_night.jpg"}  # name -> file in jaxstyle/assets/images
# name -> (kind, title) as the page shows them
BUNDLED_TITLES = {"chelsea": ("photo", "Chelsea the cat"), "starry_night": ("painting", "The Starry Night (van Gogh)")}
_SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "TIFF": ".tif", "BMP": ".bmp", "GIF": ".gif"}


def suffix_of(data: bytes) -> str:
    """The file suffix of an image's format, by its magic bytes (never an uploaded name)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as opened:
        return _SUFFIXES.get(opened.format or "", ".img")


def bundled_path(name: str) -> Path:
    """The bundled image ``name`` (a key of `BUNDLED`, never a path)."""
    if name not in BUNDLED:
        raise InputNotFoundError(f"there is no bundled image {name!r}; choose one of {', '.join(BUNDLED)}")
    return Path(str(resources.files("jaxstyle.assets").joinpath("images", BUNDLED[name])))


class _Encoded:
    """What the bytes an image came as say: their hash (results keep inputs by it) and suffix."""

    data: bytes

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def suffix(self) -> str:
        return suffix_of(self.data)


@dataclass(eq=False)
class Upload(_Encoded):
    """One decoded image and the bytes it came from."""

    id: str
    name: str  # what the page called it: shown, never used as a path
    data: bytes
    image: LoadedImage
    path: Path | None = None  # a bundled image's own file (the CLI command names it)
    _sized: OrderedDict = field(default_factory=OrderedDict)

    def at(self, max_size: int) -> np.ndarray:
        """The image resized as `jaxstyle.prepare` resizes content for ``max_size`` (`fit_long_side`,
        `resize_to`), kept for the last few sizes: previews and webcam frames skip the resize from
        the full photo, and the network sees the same pixels (a same-size resize is a copy).
        Called from the interactive lane's one thread only (`jaxstyle.serve.live`)."""
        shape = fit_long_side(self.image.size, max_size)
        if shape not in self._sized:
            self._sized[shape] = resize_to(self.image.rgb, *shape)
            while len(self._sized) > 3:
                self._sized.popitem(last=False)
        self._sized.move_to_end(shape)
        return self._sized[shape]


@dataclass(frozen=True, eq=False)
class Mask(_Encoded):
    """One painted mask: the PNG bytes the page sent and the (H, W) float32 mask they give."""

    data: bytes
    array: np.ndarray
    path = None  # never a file of its own: kept in the results folder by its hash, like uploads


def decode_mask(text: str, what: str, max_pixels: int) -> Mask:
    """A data URL (or bare base64) of an image as a `Mask`, as `jaxstyle.masks.load_mask` reads a
    ``--style-mask`` file: the image loader's checks, then `as_mask`; any problem is a `MaskError`."""
    from jaxstyle.masks import as_mask

    encoded = text.partition(",")[2] if text.startswith("data:") else text
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise MaskError(f"{what} is not base64 image data") from None
    try:
        loaded = decode_image_bytes(data, name=what, min_side=1, max_pixels=max_pixels)
    except ImageError as error:
        raise MaskError(f"{what}: {error}") from None
    return Mask(data, as_mask(loaded.rgb, loaded.alpha, what=what))


class Newest:
    """The newest ``keep`` items by id, thread-safe: the server's memory of uploads and webcam
    sessions; a gone id is an `InputNotFoundError` saying ``gone``."""

    def __init__(self, keep: int, gone: str) -> None:
        self.keep, self.gone = keep, gone
        self._items: OrderedDict[str, object] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, key: str, item):
        with self._lock:
            self._items[key] = item
            while len(self._items) > self.keep:
                self._items.popitem(last=False)
        return item

    def get(self, key: str):
        with self._lock:
            item = self._items.get(key)
        if item is None:
            raise InputNotFoundError(self.gone)
        return item

    def drop(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)


class Uploads:
    """The newest `KEEP` uploads by id; thread-safe."""

    def __init__(self, max_pixels: int) -> None:
        self.max_pixels = max_pixels
        self._items = Newest(KEEP, "that image is no longer on the server; add it again")

    def add(self, data: bytes, name: str) -> Upload:
        """Decode ``data`` (ImageError with the CLI's message if it is not a usable image)."""
        shown = " ".join(name.split())[:80] or "upload"
        image = decode_image_bytes(data, name=shown, max_pixels=self.max_pixels)
        return self._keep(Upload(secrets.token_hex(8), shown, data, image))

    def add_bundled(self, name: str) -> Upload:
        path = bundled_path(name)
        data = path.read_bytes()
        image = decode_image_bytes(data, name=path.name, max_pixels=self.max_pixels)
        return self._keep(Upload(secrets.token_hex(8), path.name, data, image, path=path))

    def _keep(self, upload: Upload) -> Upload:
        return self._items.add(upload.id, upload)

    def get(self, upload_id: str) -> Upload:
        return self._items.get(upload_id)
