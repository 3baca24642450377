"""Finished pictures: written atomically to the results folder, listed and served by id only.

A result is ``RESULTS/ID.png`` with the metadata the CLI writes (`jaxstyle.prepare.run_metadata`,
`jaxstyle.io.encode.save_image`), and ``RESULTS/ID.json`` with its settings and the CLI command
that reproduces it. The inputs it used, painted masks included, are kept as
``RESULTS/inputs/SHA256.EXT`` (the uploaded bytes, named by their hash, never by the uploaded
name), so that command runs as shown. Each file
appears whole or not at all, before the page hears of it: stopping the server loses no finished
result. An id is looked up in a dictionary, never joined to a path.
"""

from __future__ import annotations

import io
import json
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jaxstyle.io.encode import save_image, to_8bit
from jaxstyle.io.files import atomic_write_bytes, atomic_write_text, check_output_path
from jaxstyle.serve.uploads import Mask, Upload

THUMBNAIL = 256  # long side of the gallery's thumbnails


@dataclass(frozen=True)
class Result:
    id: str
    path: Path
    record: dict  # what the page shows: settings, command, inputs, scores
    before: bytes  # JPEG: the photo at the result's size, for the comparison slider
    thumbnail: bytes  # JPEG


def jpeg(rgb: np.ndarray, quality: int = 90, long_side: int | None = None) -> bytes:
    """An RGB float image as JPEG bytes (for the page only; results are PNG)."""
    from PIL import Image

    image = Image.fromarray(to_8bit(rgb))
    if long_side is not None and max(image.size) > long_side:
        image.thumbnail((long_side, long_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


class ResultStore:
    """The results folder and the results made since the server started."""

    def __init__(self, folder: Path) -> None:
        self.folder = check_output_path(Path(folder) / "inputs" / "probe", overwrite=True).parent.parent
        self._items: dict[str, Result] = {}
        self._lock = threading.Lock()

    def new_id(self) -> str:
        return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"

    def keep_input(self, upload: Upload | Mask) -> Path:
        """Where the CLI reads ``upload`` (or a painted mask) from: a bundled image's own file,
        else its bytes in ``inputs/`` named by their hash (written once)."""
        if upload.path is not None:
            return upload.path
        target = self.folder / "inputs" / f"{upload.digest[:32]}{upload.suffix}"
        if not target.exists():
            atomic_write_bytes(target, upload.data, overwrite=True)
        return target

    def path_for(self, result_id: str) -> Path:
        return self.folder / f"{result_id}.png"

    def save(
        self,
        result_id: str,
        image: np.ndarray,
        *,
        alpha: np.ndarray | None,
        metadata: dict[str, str],
        record: dict,
        before: np.ndarray,
    ) -> Result:
        """Write the PNG and its record (each atomically), then list it."""
        path = save_image(self.path_for(result_id), image, alpha=alpha, metadata=metadata)
        record = {**record, "id": result_id, "file": str(path), "width": image.shape[1], "height": image.shape[0]}
        atomic_write_text(self.folder / f"{result_id}.json", json.dumps(record, indent=1))
        result = Result(result_id, path, record, jpeg(before), jpeg(image, long_side=THUMBNAIL))
        with self._lock:
            self._items[result_id] = result
        return result

    def get(self, result_id: str) -> Result | None:
        with self._lock:
            return self._items.get(result_id)

    def listed(self) -> list[dict]:
        """The records, newest first."""
        with self._lock:
            return [result.record for result in reversed(self._items.values())]
