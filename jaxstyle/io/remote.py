"""Files behind a URI (``s3://``, ``gs://``, ``file://``, ...), through pyarrow's filesystems.

The Ray engine of `jaxstyle batch` reads its inputs and writes its outputs here when they are
named by a URI; local paths keep using `jaxstyle.io.decode` and `jaxstyle.io.files`. pyarrow
comes with Ray Data (the ``ray`` extra) and is imported on first use.

Writes are whole objects: an object store shows an object only once its upload is complete
(pyarrow's output stream finishes the upload on close), and a ``file://`` one is written under a
temporary name and renamed, so an output appears complete or not at all, like
`jaxstyle.io.files.atomic_write`. The no-clobber check before a write is a look-up, not a lock:
one writer per output folder (the manifest's rule).
"""

from __future__ import annotations

import fnmatch
import re
import secrets
from pathlib import PurePosixPath

from jaxstyle.errors import InputNotFoundError, OutputError, UsageError, one_line

_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def is_uri(text: object) -> bool:
    """Whether ``text`` names a file through a filesystem scheme (``s3://b/k``), not a local path."""
    return isinstance(text, str) and bool(_SCHEME.match(text))


def resolve(uri: str):
    """(pyarrow filesystem, path inside it) of ``uri``.

    Raises:
        UsageError: pyarrow is missing or does not know the scheme.
    """
    try:
        from pyarrow import fs
    except ImportError:
        raise UsageError(f"'{uri}' needs pyarrow: pip install 'jaxstyle[ray]'") from None
    try:
        return fs.FileSystem.from_uri(uri)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError, ...
        raise UsageError(f"cannot open '{uri}': {one_line(exc)}") from None


def join(base: str, rel: str) -> str:
    """``base`` URI / ``rel`` ('/'-separated)."""
    return base.rstrip("/") + "/" + rel


def list_files(uri: str) -> tuple[str, list[tuple[str, str]]]:
    """The files of a folder URI or a glob URI (``s3://b/photos/*.jpg``; ``**`` recurses), as the
    root URI and (path relative to the root, URI) pairs; the root is the folder, or the glob's
    part before its first wildcard, as `jaxstyle.batch.inputs.discover_inputs` has it.

    Raises:
        InputNotFoundError: the folder does not exist.
    """
    from pyarrow import fs as pafs

    # The wildcards stay out of the URI pyarrow parses ('?' would start a query).
    head, _, tail = uri.partition("://")
    parts = tail.split("/")
    magic = next((i for i, part in enumerate(parts) if any(char in part for char in "*?[")), None)
    pattern = None if magic is None else "/".join(parts[magic:])
    root_uri = uri if magic is None else f"{head}://" + "/".join(parts[:magic])
    filesystem, root = resolve(root_uri.rstrip("/") if magic is None else root_uri)
    root = root.rstrip("/")
    prefix = f"{head}://"  # pyarrow's paths carry the bucket (s3, gs) or start at / (file)
    recursive = pattern is not None and ("**" in pattern or "/" in pattern)
    try:
        info = filesystem.get_file_info(root)
        if info.type != pafs.FileType.Directory:
            if info.type == pafs.FileType.File and pattern is None:
                parent = str(PurePosixPath(root).parent)
                return prefix + parent, [(PurePosixPath(root).name, uri)]
            raise InputNotFoundError(
                f"input '{uri}' does not exist (give a folder or a glob pattern such as 'photos/*.jpg')"
            )
        listed = filesystem.get_file_info(pafs.FileSelector(root, recursive=recursive))
    except InputNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - pyarrow raises OSError and its own kinds
        raise InputNotFoundError(f"cannot list '{uri}': {one_line(exc)}") from None
    found = []
    for entry in listed:
        if entry.type != pafs.FileType.File:
            continue
        rel = entry.path[len(root) :].lstrip("/")
        if pattern is not None and not _glob_match(rel, pattern):
            continue
        found.append((rel, prefix + entry.path))
    return prefix + root, found


def _glob_match(rel: str, pattern: str) -> bool:
    """``rel`` against a glob whose ``*`` stays within one folder and whose ``**/`` spans any."""
    regex = ""
    for piece in re.split(r"(\*\*/|\*\*|\*|\?)", pattern):
        if piece == "**/":
            regex += "(?:[^/]+/)*"
        elif piece == "**":
            regex += ".*"
        elif piece == "*":
            regex += "[^/]*"
        elif piece == "?":
            regex += "[^/]"
        else:
            regex += fnmatch.translate(piece)[4:-3] if piece else ""
    return re.fullmatch(regex, rel) is not None


def read_bytes(uri: str) -> bytes:
    """The whole file.

    Raises:
        InputNotFoundError: missing or unreadable.
    """
    filesystem, path = resolve(uri)
    try:
        with filesystem.open_input_stream(path) as stream:
            return stream.read()
    except FileNotFoundError:
        raise InputNotFoundError(f"'{uri}' does not exist") from None
    except Exception as exc:  # noqa: BLE001
        raise InputNotFoundError(f"cannot read '{uri}': {one_line(exc)}") from None


def names(uri: str) -> set[str]:
    """Paths (relative to the folder ``uri``, recursively) of the files in it; empty if it does not exist."""
    from pyarrow import fs as pafs

    filesystem, path = resolve(uri)
    root = path.rstrip("/")
    try:
        if filesystem.get_file_info(root).type != pafs.FileType.Directory:
            return set()
        listed = filesystem.get_file_info(pafs.FileSelector(root, recursive=True))
    except Exception as exc:  # noqa: BLE001
        raise OutputError(f"cannot list '{uri}': {one_line(exc)}") from None
    return {e.path[len(root) :].lstrip("/") for e in listed if e.type == pafs.FileType.File}


def write_bytes(uri: str, data: bytes, *, overwrite: bool = False) -> None:
    """Write a whole file (an object appears complete or not at all); never replaces an existing
    one unless ``overwrite``.

    Raises:
        OutputError: it exists (and not ``overwrite``), or cannot be written.
    """
    from pyarrow import fs as pafs

    filesystem, path = resolve(uri)
    try:
        if not overwrite and filesystem.get_file_info(path).type != pafs.FileType.NotFound:
            raise OutputError(f"'{uri}' exists; pass --overwrite to replace it")
        parent = str(PurePosixPath(path).parent)
        if parent not in ("", "."):
            filesystem.create_dir(parent, recursive=True)
        # An object store shows the object when its upload completes; a disk (file://) needs a
        # temporary name and a rename for that.
        local = filesystem.type_name == "local"
        target = f"{parent}/.{PurePosixPath(path).name}.{secrets.token_hex(4)}.tmp" if local else path
        with filesystem.open_output_stream(target) as stream:
            stream.write(data)
        if local:
            filesystem.move(target, path)
    except OutputError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise OutputError(f"cannot write '{uri}': {one_line(exc)}") from None
