"""The parts folder of a long run: finished pieces kept on disk so that a run stopped in the
middle (Ctrl-C, kill -9, a crash) resumes where it was.

A video keeps its stylized frames there, a print-size optimisation its finished tiles and scales.
The folder holds ``settings.json`` with the run's settings hash: a later run with the same hash
resumes from the pieces, one with other settings is refused (or, with ``overwrite``, starts over).
The folder is created only when the first piece is saved, so a run refused before any work leaves
nothing behind; every piece is written atomically (`jaxstyle.io.files`), so a piece on disk is whole.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from jaxstyle.errors import OutputError, UsageError
from jaxstyle.io.files import atomic_write, atomic_write_text

SETTINGS_NAME = "settings.json"


def parts_folder(output: str | Path) -> Path:
    """Where the finished pieces of ``output`` are kept until it is written: ``OUTPUT.parts/``."""
    output = Path(output)
    return output.with_name(f"{output.name}.parts")


class PartsFolder:
    """``folder`` for the pieces of a run whose settings ``record`` has a ``settings_hash``."""

    def __init__(self, folder: str | Path, record: Mapping[str, Any], *, overwrite: bool, what: str) -> None:
        self.folder, self.record = Path(folder), dict(record)
        if self.folder.exists() and not self.folder.is_dir():
            raise OutputError(f"cannot keep {what} in '{self.folder}': it exists and is not a folder")
        if self.folder.is_dir():
            try:
                found = json.loads((self.folder / SETTINGS_NAME).read_text(encoding="utf-8")).get("settings_hash")
            except (OSError, ValueError, AttributeError):
                found = None
            pieces = [p for p in self.folder.iterdir() if not p.name.startswith(".")]
            if found is None and not pieces:
                found = self.record["settings_hash"]  # killed between creating the folder and its settings
            if found == self.record["settings_hash"]:
                for leftover in self.folder.glob(".*.tmp"):
                    leftover.unlink(missing_ok=True)  # half-written pieces of a killed run
            elif not overwrite:
                raise UsageError(
                    f"'{self.folder}' holds {what} of another input or other settings; run with the same ones to "
                    "resume, or pass --overwrite to start over"
                )
            else:
                shutil.rmtree(self.folder)

    def names(self, pattern: str) -> list[str]:
        """Names of the finished pieces matching the glob ``pattern``."""
        return sorted(path.name for path in self.folder.glob(pattern)) if self.folder.is_dir() else []

    def path(self, name: str) -> Path:
        return self.folder / name

    def write(self, name: str, write: Callable[[Path], Any]) -> None:
        """``write(path)`` for piece ``name``, creating the folder and its settings on the first one."""
        if not self.folder.is_dir():
            try:
                self.folder.mkdir(parents=True)
            except OSError as error:
                raise OutputError(f"cannot create '{self.folder}': {error.strerror or error}") from None
            atomic_write_text(self.folder / SETTINGS_NAME, json.dumps(self.record, indent=1, sort_keys=True))
        write(self.path(name))

    def save_array(self, name: str, array: np.ndarray) -> None:
        def save(path: Path) -> None:
            def dump(stream: BinaryIO) -> None:
                np.save(stream, np.ascontiguousarray(array), allow_pickle=False)

            atomic_write(path, dump, overwrite=True)

        self.write(name, save)

    def load_array(self, name: str, shape: tuple[int, ...]) -> np.ndarray | None:
        """A saved array of ``shape``, or None if there is none (or one of another shape)."""
        path = self.path(name)
        if not path.is_file():
            return None
        array = np.load(path, allow_pickle=False)
        return array if array.shape == tuple(shape) else None

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
