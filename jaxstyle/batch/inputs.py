"""Which files a batch stylizes: discovery, sharding, header sizes, buckets and batch ladders."""

from __future__ import annotations

import glob as globlib
import hashlib
import math
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from jaxstyle.errors import ImageError, InputNotFoundError, UsageError, one_line
from jaxstyle.io import remote
from jaxstyle.io.encode import SUPPORTED_OUTPUT_SUFFIXES
from jaxstyle.nets.vgg_layers import MIN_SIDE

#: File name suffixes (lower case) that input discovery picks up.
INPUT_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".ppm", ".avif"})


@dataclass(frozen=True)
class InputItem:
    """One input file: where it is, its key in the manifest, and where its result goes."""

    path: Path | str  # a local path, or a URI (`jaxstyle.io.remote`)
    rel: str  # path relative to the input root, '/'-separated: the manifest key
    output: str  # output path relative to the output folder


def discover_inputs(
    source: str | os.PathLike, *, output_dir: str | os.PathLike | None = None, output_format: str = "png"
) -> list[InputItem]:
    """The image files named by ``source``, sorted by relative path.

    ``source`` is a folder (its image files, not recursive) or a glob pattern (``**`` recurses,
    e.g. ``'photos/**/*.jpg'``), local or a URI that pyarrow reads (``s3://bucket/photos/``,
    `jaxstyle.io.remote`; its items' ``path`` is then the URI). Only names ending in one of
    `INPUT_SUFFIXES` are kept; hidden
    files (``.name``) and anything inside ``output_dir`` are skipped. Each output is the relative
    path with the suffix ``.{output_format}``; when two inputs would share an output name (``a.jpg``
    and ``a.png``), both keep their own suffix too (``a.jpg.png``, ``a.png.png``). Names are decided
    on the whole list, so every shard agrees on them.

    Raises:
        InputNotFoundError: nothing matches.
        UsageError: unknown output format.
    """
    suffix = "." + output_format.lower().lstrip(".")
    if suffix not in SUPPORTED_OUTPUT_SUFFIXES:
        choices = ", ".join(s[1:] for s in sorted(SUPPORTED_OUTPUT_SUFFIXES))
        raise UsageError(f"unknown output format {output_format!r}; choose one of {choices}")
    text = os.fspath(source)
    if remote.is_uri(text):
        found = _remote_candidates(text, output_dir)
    else:
        found = _local_candidates(text, output_dir)
    if not found:
        raise InputNotFoundError(f"no image files ({', '.join(sorted(INPUT_SUFFIXES))}) found in '{text}'")
    found.sort()
    stems: dict[str, int] = {}
    for rel, _ in found:
        stem = rel[: len(rel) - len(Path(rel).suffix)]
        stems[stem] = stems.get(stem, 0) + 1
    items = []
    for rel, candidate in found:
        stem = rel[: len(rel) - len(Path(rel).suffix)]
        output = (rel if stems[stem] > 1 else stem) + suffix
        items.append(InputItem(candidate, rel, output))
    return items


def _wanted(name: str) -> bool:
    """An image file's name: not hidden, with one of `INPUT_SUFFIXES`."""
    return not name.startswith(".") and Path(name).suffix.lower() in INPUT_SUFFIXES


def _local_candidates(text: str, output_dir) -> list[tuple[str, Path]]:
    path = Path(text).expanduser()
    if path.is_dir():
        root = path
        candidates = [p for p in path.iterdir()]
    elif globlib.has_magic(text):
        root = _glob_root(text)
        candidates = [Path(p) for p in globlib.glob(os.path.expanduser(text), recursive=True)]
    elif path.exists():
        root, candidates = path.parent, [path]
    else:
        raise InputNotFoundError(
            f"input '{text}' does not exist (give a folder or a glob pattern such as 'photos/*.jpg')"
        )
    excluded = Path(output_dir).resolve() if output_dir is not None and not remote.is_uri(output_dir) else None
    found: list[tuple[str, Path]] = []
    for candidate in candidates:
        if not _wanted(candidate.name) or not candidate.is_file():
            continue
        if excluded is not None and candidate.resolve().is_relative_to(excluded):
            continue
        rel = candidate.relative_to(root).as_posix() if candidate.is_relative_to(root) else candidate.name
        found.append((rel, candidate))
    return found


def _remote_candidates(text: str, output_dir) -> list[tuple[str, str]]:
    """The same rules for a folder or glob URI (`jaxstyle.io.remote`): (relative path, URI) pairs."""
    _, listed = remote.list_files(text)
    excluded = os.fspath(output_dir).rstrip("/") + "/" if remote.is_uri(output_dir) else None
    return [
        (rel, uri)
        for rel, uri in listed
        if _wanted(PurePosixPath(rel).name)
        and not any(part.startswith(".") for part in PurePosixPath(rel).parts)  # as glob skips hidden folders
        and (excluded is None or not uri.startswith(excluded))
    ]


def _glob_root(pattern: str) -> Path:
    """The folder part of a glob pattern before its first wildcard ('a/b/*/c.jpg' -> 'a/b')."""
    parts = Path(os.path.expanduser(pattern)).parts
    plain = []
    for part in parts[:-1]:
        if globlib.has_magic(part):
            break
        plain.append(part)
    return Path(*plain) if plain else Path(".")


def parse_shard(text: str) -> tuple[int, int]:
    """'2/8' -> (2, 8): this worker's 0-based index and the number of workers."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard must look like i/n with 0 <= i < n (e.g. 0/4), got {text!r}") from None
    if not 0 <= index < count:
        raise UsageError(f"--shard must look like i/n with 0 <= i < n (e.g. 0/4), got {text!r}")
    return index, count


def shard_of(rel: str, count: int) -> int:
    """The shard (0..count-1) an input belongs to: a stable hash of its relative path.

    A hash rather than the sorted position, so that adding or removing files does not move the
    others to another shard (whose manifest would not know them as done).
    """
    digest = hashlib.sha256(rel.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def select_shard(items: Iterable[InputItem], shard: tuple[int, int]) -> list[InputItem]:
    index, count = shard
    return [item for item in items if count == 1 or shard_of(item.rel, count) == index]


def probe_size(path: str | os.PathLike) -> tuple[int, int]:
    """(H, W) of an image file as `load_image` will give it (EXIF rotation applied), from its header.

    Raises:
        InputNotFoundError, ImageError: as `load_image`, with the file named.
    """
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                width, height = img.size
                try:
                    orientation = img.getexif().get(0x0112, 1)
                except Exception:  # noqa: BLE001 - a broken EXIF block: load_image ignores it too
                    orientation = 1
    except FileNotFoundError:
        raise InputNotFoundError(f"'{path}' does not exist") from None
    except OSError as exc:
        if isinstance(exc, PermissionError):
            raise InputNotFoundError(f"cannot open '{path}': permission denied") from None
        raise ImageError(f"cannot read '{path}': {one_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - Pillow's header parsers raise many types
        raise ImageError(f"cannot read '{path}': corrupt image header ({one_line(exc)})") from None
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


def bucket_shape(size: tuple[int, int], multiple: int = 1) -> tuple[int, int]:
    """The bucket (H, W) of an image whose own (fitted) size is ``size``: sides rounded up to ``multiple``."""
    return tuple(max(MIN_SIDE, math.ceil(side / multiple) * multiple) for side in size)  # type: ignore[return-value]


def batch_ladder(batch_size: int, devices: int = 1) -> tuple[int, ...]:
    """Compiled batch sizes: ``devices * 2**k`` below the full batch, and the full batch itself
    (``batch_size`` rounded up to a multiple of ``devices``)."""
    full = math.ceil(batch_size / devices) * devices
    sizes, size = {full}, devices
    while size < full:
        sizes.add(size)
        size *= 2
    return tuple(sorted(sizes))


def chunk_size(count: int, ladder: tuple[int, ...]) -> int:
    """The smallest compiled batch size of ``ladder`` that holds ``count`` images."""
    return next((size for size in ladder if size >= count), ladder[-1])
