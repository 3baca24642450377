"""Writing files safely: one atomic, no-clobber writer for every file jaxstyle produces.

Images, weights, loss histories, benchmark JSON: each is written to a hidden temporary file in
the target's folder, flushed and fsync-ed, then moved into place. A crash, Ctrl-C or full disk
leaves either the old file or nothing, never half a file. The target is checked first: it is
never one of the run's inputs (even with ``overwrite``), and an existing file is replaced only
with ``overwrite``. Without ``overwrite`` the move is a hard link, which fails if the name
appeared meanwhile (another run writing the same file), where a rename would clobber it.

The batch manifest is the one exception: it is an append-only log with one fsync per line
(`jaxstyle.batch.manifest`), because rewriting it whole for every finished image would not be.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from jaxstyle.errors import OutputError, one_line

PathLike = str | os.PathLike


def os_reason(error: BaseException) -> str:
    """An OSError's reason in lower case ('no space left on device'), else the one-line message."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror[0].lower() + error.strerror[1:]
    return one_line(error, 160)


def same_file(target: Path, other: Path) -> bool:
    """Whether two paths name one file (symlinks, hard links, case-insensitive file systems)."""
    try:
        if target.resolve() == other.resolve():
            return True
        return target.exists() and other.exists() and os.path.samefile(target, other)
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop (Python < 3.13)
        return False


def check_output_path(path: PathLike, *, overwrite: bool, inputs: Sequence[PathLike] = ()) -> Path:
    """Check, before any long computation, that ``path`` may and can be written.

    Creates the parent folder if it is missing (so that the check is real). An image output's
    extension is checked apart, by `jaxstyle.io.encode.check_image_suffix`.

    Args:
        path: the output file.
        overwrite: whether an existing file may be replaced.
        inputs: files the run reads; the output may never be one of them, even with
            ``overwrite``.

    Returns:
        The resolved (absolute, symlinks followed) path.

    Raises:
        OutputError: the path is an input, a directory, a special file, exists without
            ``overwrite``, or its folder cannot be created or written to.
    """
    shown = Path(path)
    target = shown.resolve()
    for given in inputs:
        if same_file(target, Path(given)):
            raise OutputError(f"refusing to write '{shown}': it is also an input file '{given}'")
    if target.is_dir():
        raise OutputError(f"cannot write '{shown}': it is a directory")
    if target.exists():
        if not target.is_file():
            raise OutputError(f"cannot write '{shown}': it exists and is not a regular file")
        if not overwrite:
            raise OutputError(f"'{shown}' already exists; pass --overwrite to replace it")
    folder = target.parent
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create the folder '{folder}' for '{shown}': {os_reason(error)}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write '{shown}': the folder '{folder}' is not writable")
    return target


@contextlib.contextmanager
def atomic_path(
    path: PathLike, *, overwrite: bool = False, inputs: Sequence[PathLike] = (), mode: int | None = None
) -> Iterator[Path]:
    """A temporary path to write ``path`` through, published atomically when the block ends.

    For writers that want a file name rather than a stream (a video muxer). The block writes the
    temporary file; on a normal exit it is fsync-ed and moved into place, on any exception it is
    removed. The permissions follow the user's umask, like any file they create, unless ``mode``
    fixes them (weights files: 0o644 whatever the umask, so a shared model folder stays readable).

    Raises:
        OutputError: see `check_output_path`, or the write failed (disk full, ...); nothing is
            left behind in either case.
    """
    shown = str(path)
    target = check_output_path(path, overwrite=overwrite, inputs=inputs)
    try:
        fd, temporary = _create_temporary(target)
        os.close(fd)
    except OSError as error:
        raise OutputError(f"cannot write '{shown}': {os_reason(error)}") from None
    try:
        yield temporary
        with open(temporary, "rb+") as stream:
            if mode is not None:
                os.fchmod(stream.fileno(), mode)
            os.fsync(stream.fileno())  # data on disk before the rename makes it visible
        _publish(temporary, target, overwrite=overwrite, shown=shown)
    except (OSError, ValueError) as error:
        _remove_quietly(temporary)
        raise OutputError(f"cannot write '{shown}': {os_reason(error)}") from None
    except BaseException:
        _remove_quietly(temporary)
        raise


def atomic_write(
    path: PathLike,
    write: Callable[[BinaryIO], None],
    *,
    overwrite: bool = False,
    inputs: Sequence[PathLike] = (),
    mode: int | None = None,
) -> Path:
    """Write a file through ``write(stream)`` atomically (`atomic_path`); returns the resolved
    path written."""
    with atomic_path(path, overwrite=overwrite, inputs=inputs, mode=mode) as temporary, open(temporary, "wb") as stream:
        write(stream)
    return Path(path).resolve()


def atomic_write_bytes(
    path: PathLike, data: bytes, *, overwrite: bool = False, inputs: Sequence[PathLike] = (), mode: int | None = None
) -> Path:
    return atomic_write(path, lambda stream: stream.write(data), overwrite=overwrite, inputs=inputs, mode=mode)


def atomic_write_text(path: PathLike, text: str, *, overwrite: bool = False, inputs: Sequence[PathLike] = ()) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), overwrite=overwrite, inputs=inputs)


def temporaries_of(target: Path) -> list[Path]:
    """The temporary files a killed writer may have left next to ``target`` ('.NAME.xxxx.tmp')."""
    import glob

    if not target.parent.is_dir():
        return []
    return list(target.parent.glob(f".{glob.escape(target.name)}.*.tmp"))


def file_sha256(path: PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _create_temporary(target: Path) -> tuple[int, Path]:
    """A new, hidden, empty file in the target's folder; returns (fd, path).

    os.open with 0o666 lets the user's umask decide the permissions (tempfile's are always
    0600), so the result gets the same permissions as any other file they create.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        temporary = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(temporary, flags, 0o666), temporary
        except FileExistsError:  # 48 random bits make this vanishingly rare
            continue


def _publish(temporary: Path, target: Path, *, overwrite: bool, shown: str) -> None:
    if overwrite:
        os.replace(temporary, target)
        return
    try:
        os.link(temporary, target)
    except FileExistsError:
        raise OutputError(f"'{shown}' already exists; pass --overwrite to replace it") from None
    except OSError:  # no hard links here (FAT, some network shares): best effort instead
        if target.exists():
            raise OutputError(f"'{shown}' already exists; pass --overwrite to replace it") from None
        os.replace(temporary, target)
        return
    _remove_quietly(temporary)


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
