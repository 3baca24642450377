"""MatConvNet ``imagenet-vgg-verydeep-19.mat`` -> canonical tensors.

The file is a MATLAB v5 .mat (read with `scipy.io.loadmat`, which never runs code) holding a
SimpleNN network. Two layouts are in circulation and both are read:

* old (MatConvNet up to beta-16ish): top-level ``layers`` (a 1x43 cell array of structs with
  ``name``, ``type``, ...) and a top-level ``normalization`` struct (``averageImage``,
  ``imageSize``, ...); the very first releases keep conv parameters in the fields ``filters`` and
  ``biases`` instead of a 1x2 ``weights`` cell ``{kernel, bias}``;
* new (after ``vl_simplenn_tidy``): top-level ``layers`` with ``weights`` cells, and ``meta``
  holding ``normalization`` and ``classes``.

Only the 16 convolutions ``conv1_1 ... conv5_4`` are read (`NAME_TABLE`); ``fc6/fc7/fc8`` (also of
type 'conv'), relu, pool and softmax layers are ignored.

Kernel orientation: no spatial transpose. A MatConvNet filter bank is FH x FW x FC x K in MATLAB
index order, and ``vl_nnconv`` is a cross-correlation pairing the filter's first index with the
image's first index, the row (y) of a MATLAB ``H x W x C`` image:
``y(i, j, k) = b(k) + sum_{u, v, c} F(u, v, c, k) * x(i + u - 1 - pad, j + v - 1 - pad, c)``. The file
was made by MatConvNet's ``utils/import-caffe.py`` from Oxford's Caffe model: it reverses the axes
of each Caffe (O, I, H, W) blob to (W, H, I, O) and then, with ``--transpose`` (the default),
swaps the first two back to (H, W, I, O) "in a sane MATLAB format" before ``savemat``. ``loadmat``
keeps MATLAB's index order, so ``kernel[u, v, c, k]`` pairs with image row offset u and column
offset v, which is exactly what ``lax.conv_general_dilated`` does with an HWIO kernel on an NHWC
image; Keras' VGG19 kernels, converted from the same Caffe blobs (``transpose(2, 3, 1, 0)``), should
be the same arrays apart from conv1_1's channel order. (``vl_nnconv``'s help text calls F
"FW x FH x FC x K", and some TensorFlow ports, e.g. anishathalye/neural-style, transpose H and W on
that basis. That gives the network of the transposed image; it goes unnoticed in style transfer
because Gram matrices do not change under a spatial transpose, but it is not the trained network.)
tests/test_convert_keras_mat.py checks the orientation with an actual convolution against a literal
NumPy transcription of the formula above.

Colour order: MatConvNet's VGG takes RGB input (import-caffe.py reversed the input channels of the
first convolution, Caffe's being BGR) and subtracts ``averageImage``, given in RGB. Canonical
kernels take BGR, so the input-channel axis of ``conv1_1`` alone is reversed back, and the mean is
stored reversed, as BGR. Later layers see feature maps, whose channel order is the network's own.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import scipy.io
from scipy.io.matlab import MatReadError

from jaxstyle.errors import WeightsError, one_line
from jaxstyle.nets.vgg_layers import CONV_SHAPES
from jaxstyle.weights import base_metadata, require_weights_file

SOURCE = "MatConvNet imagenet-vgg-verydeep-19"
LICENSE = "VGG19 weights: Simonyan & Zisserman (Oxford VGG), CC BY 4.0"

# Explicit table: MatConvNet layer name -> our (Keras) layer name.
NAME_TABLE: dict[str, str] = {
    "conv1_1": "block1_conv1", "conv1_2": "block1_conv2",
    "conv2_1": "block2_conv1", "conv2_2": "block2_conv2",
    "conv3_1": "block3_conv1", "conv3_2": "block3_conv2", "conv3_3": "block3_conv3", "conv3_4": "block3_conv4",
    "conv4_1": "block4_conv1", "conv4_2": "block4_conv2", "conv4_3": "block4_conv3", "conv4_4": "block4_conv4",
    "conv5_1": "block5_conv1", "conv5_2": "block5_conv2", "conv5_3": "block5_conv3", "conv5_4": "block5_conv4",
}  # fmt: skip

# The first convolution, whose input channels are image colours (RGB here, BGR canonically).
_FIRST_CONV = "conv1_1"


def read_matconvnet(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Flat canonical tensors (``<layer>/kernel`` HWIO float32, BGR input; ``<layer>/bias``) and metadata."""
    path = Path(path)
    source = str(path)
    contents = _load(path, source)
    if "layers" not in contents:
        raise WeightsError(f"{source}: no 'layers' variable; not a MatConvNet SimpleNN network")
    layers = _layers_by_name(contents["layers"])
    tensors = {}
    for mat_name, layer in NAME_TABLE.items():
        struct = layers.get(mat_name)
        if struct is None:
            raise WeightsError(f"{source}: conv layer {mat_name!r} ({layer}) is missing from 'layers'")
        kernel, bias = _conv_parameters(struct, mat_name, source)
        kernel_shape = CONV_SHAPES[layer]
        _check(kernel, kernel_shape, f"{mat_name} kernel", source)
        out_channels = kernel_shape[-1]
        if bias.shape not in ((out_channels,), (1, out_channels), (out_channels, 1)):
            raise WeightsError(
                f"{source}: {mat_name} bias has shape {bias.shape}, expected ({out_channels},), "
                f"(1, {out_channels}) or ({out_channels}, 1)"
            )
        _check(bias, bias.shape, f"{mat_name} bias", source)
        kernel = kernel.astype(np.float32)
        if mat_name == _FIRST_CONV:
            # RGB -> BGR: reverse the input-channel axis of the first convolution only.
            kernel = kernel[:, :, ::-1, :]
        # No spatial transpose: the array is already (row, column, in, out) = HWIO (module docstring).
        tensors[f"{layer}/kernel"] = np.ascontiguousarray(kernel)
        tensors[f"{layer}/bias"] = bias.astype(np.float32).reshape(-1)
    mean_rgb = _mean_rgb(contents, source)
    mean_bgr = tuple(float(v) for v in mean_rgb[::-1])  # stored RGB, canonical BGR
    layout = "matconvnet-new (meta.normalization)" if "meta" in contents else "matconvnet-old (normalization)"
    metadata = base_metadata(f"{path.name} ({SOURCE})", LICENSE, mean_bgr=mean_bgr, source_format=layout)
    return tensors, metadata


def _load(path: Path, source: str) -> dict[str, object]:
    require_weights_file(path)
    if path.stat().st_size == 0:
        raise WeightsError(f"{source}: empty file, expected a MatConvNet .mat network")
    try:
        with open(path, "rb") as stream:
            return scipy.io.loadmat(
                stream,
                squeeze_me=False,
                struct_as_record=True,
                variable_names=("layers", "meta", "normalization"),
            )
    except NotImplementedError:
        # scipy's answer to MATLAB v7.3 files, which are HDF5 underneath.
        raise WeightsError(
            f"{source}: a MATLAB v7.3 (HDF5) .mat file; save the network with -v7 or use the "
            "imagenet-vgg-verydeep-19.mat published by MatConvNet"
        ) from None
    except (MatReadError, ValueError, TypeError, OSError, EOFError, IndexError, zlib.error) as error:
        # "Unknown mat file type" (not a MAT file), "could not read bytes" (truncated), ...
        raise WeightsError(f"{source}: not a readable MATLAB .mat file ({one_line(error)})") from None


def _unwrap(value: object) -> object:
    """Strip the 1x1 object/struct arrays scipy wraps around MATLAB cells and structs."""
    while isinstance(value, np.ndarray) and value.size == 1 and (value.dtype == object or value.dtype.names):
        value = value.reshape(-1)[0]
    return value


def _field(struct: object, name: str) -> object | None:
    """``struct.name`` of a MATLAB struct as loaded by scipy (np.void record or 1x1 record array)."""
    struct = _unwrap(struct)
    names = getattr(getattr(struct, "dtype", None), "names", None)
    if not names or name not in names:
        return None
    return _unwrap(struct[name])


def _string(value: object) -> str:
    value = _unwrap(value)
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "U":
            return "".join(value.reshape(-1).tolist())
        return ""
    return value if isinstance(value, str) else ""


def _layers_by_name(layers: object) -> dict[str, object]:
    """MatConvNet layer name -> layer struct (first occurrence), from the cell (or struct) array."""
    if not isinstance(layers, np.ndarray):
        return {}
    by_name: dict[str, object] = {}
    for item in layers.reshape(-1):
        name = _string(_field(item, "name"))
        if name and name not in by_name:
            by_name[name] = item
    return by_name


def _conv_parameters(struct: object, mat_name: str, source: str) -> tuple[np.ndarray, np.ndarray]:
    weights = _field(struct, "weights")
    if isinstance(weights, np.ndarray) and weights.dtype == object:
        cells = [_unwrap(cell) for cell in weights.reshape(-1)]
        if len(cells) != 2:
            raise WeightsError(f"{source}: {mat_name}.weights has {len(cells)} cells, expected 2 (kernel, bias)")
        kernel, bias = cells
    elif weights is not None:
        raise WeightsError(f"{source}: {mat_name}.weights holds one array, expected a cell {{kernel, bias}}")
    else:
        kernel, bias = _field(struct, "filters"), _field(struct, "biases")
        if kernel is None or bias is None:
            raise WeightsError(f"{source}: {mat_name} has neither a 'weights' cell nor 'filters'/'biases' fields")
    for value, what in ((kernel, "kernel"), (bias, "bias")):
        if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
            kind = getattr(value, "dtype", type(value).__name__)
            raise WeightsError(f"{source}: {mat_name} {what} is {kind}, expected a floating-point array")
    return kernel, bias


def _check(array: np.ndarray, expected: tuple[int, ...], what: str, source: str) -> None:
    if array.shape != tuple(expected):
        raise WeightsError(f"{source}: {what} has shape {array.shape}, expected {tuple(expected)}")
    if not np.all(np.isfinite(array)):
        raise WeightsError(f"{source}: {what} contains NaN or inf")


def _mean_rgb(contents: dict[str, object], source: str) -> np.ndarray:
    """Per-channel mean of ``averageImage`` (RGB), from ``meta.normalization`` or ``normalization``."""
    normalization = _field(contents.get("meta"), "normalization")
    if normalization is None:
        normalization = contents.get("normalization")
    average = _field(normalization, "averageImage")
    if not isinstance(average, np.ndarray) or average.dtype.kind not in "fiu":
        raise WeightsError(f"{source}: no normalization.averageImage (looked in meta.normalization and normalization)")
    average = average.astype(np.float64)
    if average.size == 3:  # 1x1x3, 3x1, 1x3 or 3
        mean = average.reshape(3)
    elif average.ndim == 3 and average.shape[2] == 3:  # a full H x W x 3 average image
        mean = average.mean(axis=(0, 1))
    else:
        raise WeightsError(
            f"{source}: normalization.averageImage has shape {average.shape}, expected 3 values or H x W x 3"
        )
    if not np.all(np.isfinite(mean)):
        raise WeightsError(f"{source}: normalization.averageImage contains NaN or inf")
    return mean
