"""The batch manifest: an append-only JSON-lines log of every image's fate, and the settings hash.

One fsync-ed line per event, so a crash (even SIGKILL) loses at most the line being written; a
line cut short is ignored when read back. This is the one file jaxstyle appends to instead of
writing it atomically (`jaxstyle.io.files`): rewriting it for every image would not scale.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

from jaxstyle.config import StyleConfig
from jaxstyle.errors import OutputError, one_line
from jaxstyle.io import remote

MANIFEST_NAME = "manifest.jsonl"


def manifest_name(shard: tuple[int, int]) -> str:
    """``manifest.jsonl``, or ``manifest.shard-I-of-N.jsonl`` for a shard, so workers never share a file."""
    index, count = shard
    return MANIFEST_NAME if count == 1 else f"manifest.shard-{index}-of-{count}.jsonl"


def read_manifests(output_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The latest record of every input across all ``manifest*.jsonl`` files of ``output_dir``.

    Lines that are not complete JSON objects (a write cut short by a crash) are ignored; among
    several records of one input the latest ``time`` wins.
    """
    latest: dict[str, dict[str, Any]] = {}
    for lines in _manifest_texts(output_dir):
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if not isinstance(record, dict) or not isinstance(record.get("input"), str):
                continue
            previous = latest.get(record["input"])
            if previous is None or float(record.get("time", 0)) >= float(previous.get("time", 0)):
                latest[record["input"]] = record
    return latest


def _manifest_texts(output_dir: str | os.PathLike):
    """The lines of each ``manifest*.jsonl`` of a local folder or a folder URI."""
    if remote.is_uri(output_dir):
        names = sorted(n for n in remote.names(output_dir) if "/" not in n and fnmatch.fnmatch(n, "manifest*.jsonl"))
        for name in names:
            yield remote.read_bytes(remote.join(output_dir, name)).decode("utf-8", errors="replace").splitlines()
        return
    for path in sorted(Path(output_dir).glob("manifest*.jsonl")):
        try:
            yield path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError as exc:
            raise OutputError(f"cannot read the manifest '{path}': {one_line(exc)}") from None


class Manifest:
    """An append-only JSON-lines file, one fsync per write, locked against a second writer."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._file = None

    def __enter__(self) -> Self:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a+b")
        except OSError as exc:
            raise OutputError(f"cannot write the manifest '{self.path}': {one_line(exc)}") from None
        try:
            import fcntl

            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # Windows: no advisory locks; one worker per shard is up to the user
            pass
        except OSError:
            self._file.close()
            raise OutputError(
                f"another jaxstyle batch is already writing '{self.path}'; run one worker per shard"
            ) from None
        self._file.seek(0, os.SEEK_END)
        if self._file.tell() > 0:
            self._file.seek(-1, os.SEEK_END)
            if self._file.read(1) != b"\n":  # a line cut short by a crash: end it
                self._file.write(b"\n")
        return self

    def __exit__(self, *exc_info) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def write(self, records: Iterable[Mapping[str, Any]]) -> None:
        data = "".join(json.dumps(dict(r), sort_keys=True, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
        if not data:
            return
        try:
            self._file.write(data)
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:
            raise OutputError(f"cannot write the manifest '{self.path}': {one_line(exc)}") from None


class ChunkedManifest:
    """The manifest of an output folder named by a URI (`jaxstyle.io.remote`), where nothing can
    be appended to: the lines go out as new objects ``manifest.<run>-<n>.jsonl``, each once
    ``every`` seconds have passed since the last (and on close), which `read_manifests` reads
    with the others. A driver killed outright loses at most the last ``every`` seconds of lines;
    those images are ``started`` (that line goes out first) and are redone by the next run."""

    def __init__(self, folder: str, run: str, every: float = 10.0) -> None:
        self.folder, self.run, self.every = folder, run, every
        self.path = remote.join(folder, f"manifest.{run}-*.jsonl")
        self._lines: list[str] = []
        self._count = 0
        self._last = time.monotonic()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.flush()

    def write(self, records: Iterable[Mapping[str, Any]]) -> None:
        self._lines.extend(json.dumps(dict(r), sort_keys=True, ensure_ascii=False) + "\n" for r in records)
        if time.monotonic() - self._last >= self.every:
            self.flush()

    def flush(self) -> None:
        if self._lines:
            name = f"manifest.{self.run}-{self._count:06d}.jsonl"
            remote.write_bytes(remote.join(self.folder, name), "".join(self._lines).encode("utf-8"))
            self._lines, self._count = [], self._count + 1
        self._last = time.monotonic()


def params_record(
    config: StyleConfig,
    style_digests: Sequence[str],
    style_blend: Sequence[float] | None,
    weights_digest: str,
    *,
    output_format: str,
    bucket_multiple: int,
    jpeg_quality: int,
    mask_digests: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Everything that changes a result. The batch size does not, but for the stopping rule, which
    runs a batch until each of its images has converged (an image may get a few more iterations
    in one batch than in another). Reporting does: the rule is checked at each report.
    ``mask_digests``: the style masks' file digests, if any (their feather and fit are in the
    config); the record of a run without masks has no ``masks`` entry, so its hash is the same as
    before masks existed and finished folders stay finished."""
    settings = dataclasses.asdict(config)
    masks = {} if mask_digests is None else {"masks": list(mask_digests)}
    return {
        "config": settings,
        "styles": list(style_digests),
        "style_weights": list(style_blend) if style_blend is not None else None,
        "weights": weights_digest,
        "format": output_format,
        "bucket_multiple": bucket_multiple,
        "jpeg_quality": jpeg_quality,
        **masks,
    }


def params_hash(record: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:16]
