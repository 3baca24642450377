"""Keras VGG19 HDF5 weights -> canonical tensors.

Keras' kernels are already HWIO and take BGR, mean-subtracted 0..255 input (the Caffe convention
they were converted from), so the tensors are copied as they are: no transpose, no channel flip.
The mean is Keras' ``vgg19.preprocess_input`` ("caffe" mode) mean, which the files do not store.

Layouts read (the fully connected ``fc1``/``fc2``/``predictions`` layers of "with top" files, and
any other layer, are ignored):

``keras1-h5``
    ``vgg19_weights_tf_dim_ordering_tf_kernels[_notop].h5`` as published for Keras 1/2: one root
    group per layer, ``/block1_conv1/block1_conv1_W_1:0`` and ``/block1_conv1/block1_conv1_b_1:0``
    (older copies: ``..._W:0`` / ``..._b:0``); root attribute ``layer_names`` and per-group
    attribute ``weight_names``.
``keras2-h5``
    ``model.save_weights("x.h5")`` in Keras 2 / tf.keras: ``/block1_conv1/block1_conv1/kernel:0``
    and ``.../bias:0``, with the same ``weight_names`` attributes.
``keras2-model-h5``
    ``model.save("x.h5")``: the same tree under ``/model_weights`` (also found when VGG19 is a
    nested sub-model, e.g. ``/model_weights/vgg19/block1_conv1/kernel:0``).
``keras3-weights-h5``
    Keras 3 ``.weights.h5`` (inside ``.keras`` archives too): ``/layers/<name>/vars/0`` (kernel)
    and ``/vars/1`` (bias). Keras 3 names these groups after the layer *class*, not the layer:
    ``conv2d``, ``conv2d_1``, ..., ``conv2d_15`` in model order, so when the Keras VGG names are
    absent the 16 ``conv2d[_N]`` groups are mapped to ``block1_conv1 ... block5_conv4`` in order
    of their numeric suffix (``conv2d`` = 0; numeric, not string, order: ``conv2d_10`` comes
    after ``conv2d_9``). Files written by versions that used layer names
    (``/layers/block1_conv1/vars/0``) are matched by name.

Inside a Keras 1/2 layer group the ``weight_names`` attribute is read first; if it is absent or
names datasets that are not there, the group is searched for datasets named like a kernel
(``*_W[_N][:0]``, ``kernel[:0]``) or a bias (``*_b[_N][:0]``, ``bias[:0]``).
"""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np

from jaxstyle.errors import WeightsError, one_line
from jaxstyle.nets.vgg_layers import CONV_SHAPES, KERAS_MEAN_BGR
from jaxstyle.weights import base_metadata, require_weights_file

LICENSE = "VGG19 weights: Simonyan & Zisserman (Oxford VGG), CC BY 4.0; released for Keras"

# Explicit table: our tensor name -> (Keras layer, field). Keras layer names are our layer names.
NAME_TABLE: dict[str, tuple[str, str]] = {}
for _layer in CONV_SHAPES:
    NAME_TABLE[f"{_layer}/kernel"] = (_layer, "kernel")
    NAME_TABLE[f"{_layer}/bias"] = (_layer, "bias")

# Dataset base names, per field, in the Keras 1/2 layouts ("block1_conv1_W_1:0", "kernel:0", ...).
_FIELD_PATTERNS = {
    "kernel": re.compile(r"(?:.*_)?(?:W(?:_\d+)?|kernel)(?::\d+)?"),
    "bias": re.compile(r"(?:.*_)?(?:b(?:_\d+)?|bias)(?::\d+)?"),
}
# Keras 3 stores a layer's variables as vars/0, vars/1, ... in creation order: kernel, then bias.
_KERAS3_INDEX = {"kernel": "0", "bias": "1"}
_GENERIC_CONV = re.compile(r"conv2d(?:_(\d+))?")

_LOOKED_FOR = (
    "looked for group /{layer} (or under /model_weights) with weight_names or datasets "
    "{layer}_W[_1]:0 / {layer}/kernel:0, and Keras 3 layers/{layer}/vars/0"
)


def read_keras_h5(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Flat canonical tensors (``<layer>/kernel`` HWIO float32, ``<layer>/bias``) and metadata."""
    path = Path(path)
    source = str(path)
    require_weights_file(path)
    if path.stat().st_size == 0:
        raise WeightsError(f"{source}: empty file, expected Keras HDF5 weights")
    try:
        with h5py.File(path, "r") as handle:
            tensors, layout = _read_open_file(handle, source)
    except (OSError, RuntimeError, KeyError) as error:
        # h5py raises OSError for "file signature not found" (not HDF5) and "truncated file",
        # and OSError/KeyError/RuntimeError for damaged objects met while reading.
        raise WeightsError(f"{source}: not a readable HDF5 file ({one_line(error)})") from None
    description = f"{path.name} (Keras VGG19 HDF5 weights, layout {layout})"
    return tensors, base_metadata(description, LICENSE, mean_bgr=KERAS_MEAN_BGR, source_format=layout)


def _read_open_file(handle: h5py.File, source: str) -> tuple[dict[str, np.ndarray], str]:
    groups = _all_groups(handle)
    keras3 = _keras3_layers(groups, source)
    if keras3 is not None:
        tensors = {}
        for name, (layer, field) in NAME_TABLE.items():
            vars_group, index = keras3[layer], _KERAS3_INDEX[field]
            if not isinstance(vars_group.get(index), h5py.Dataset):
                raise WeightsError(f"{source}: {vars_group.name}/{index} ({name}) is missing")
            tensors[name] = _checked(vars_group[index], name, source)
        return tensors, "keras3-weights-h5"

    root = handle["model_weights"] if isinstance(handle.get("model_weights"), h5py.Group) else handle
    tensors = {}
    layout = ""
    for layer in CONV_SHAPES:
        group = _keras12_group(root, groups, layer)
        if group is None:
            raise WeightsError(f"{source}: layer {layer!r} is missing ({_LOOKED_FOR.format(layer=layer)})")
        for field in ("kernel", "bias"):
            dataset = _keras12_dataset(group, field)
            if dataset is None:
                raise WeightsError(
                    f"{source}: {layer}/{field} is missing (group {group.name} has no dataset named like "
                    f"{layer}_{'W' if field == 'kernel' else 'b'}[_1]:0 or {field}:0)"
                )
            tensors[f"{layer}/{field}"] = _checked(dataset, f"{layer}/{field}", source)
            if not layout:
                base = dataset.name.rsplit("/", 1)[-1]
                layout = "keras2-h5" if base.startswith(field) else "keras1-h5"
                if root is not handle:
                    layout = "keras2-model-h5"
    return tensors, layout


def _all_groups(handle: h5py.File) -> dict[str, h5py.Group]:
    """Every group in the file by full path ("/model_weights/block1_conv1")."""
    found: dict[str, h5py.Group] = {}

    def visit(name: str, item: object) -> None:
        if isinstance(item, h5py.Group):
            found["/" + name] = item

    handle.visititems(visit)
    return found


def _keras3_layers(groups: dict[str, h5py.Group], source: str) -> dict[str, h5py.Group] | None:
    """Our layer name -> its ``vars`` group in a Keras 3 file, or None if the file is not one."""
    # Layer groups are the parents of groups called "vars" that hold datasets "0", "1", ...
    by_parent: dict[str, dict[str, h5py.Group]] = {}
    for path, group in groups.items():
        parent, _, base = path.rpartition("/")
        if base == "vars" and any(isinstance(item, h5py.Dataset) for item in group.values()):
            layer_parent, _, layer = parent.rpartition("/")
            by_parent.setdefault(layer_parent, {})[layer] = group
    if not by_parent:
        return None
    # Named layers (Keras versions that used layer names) anywhere in the file.
    named = {layer: vars_group for children in by_parent.values() for layer, vars_group in children.items()}
    if all(layer in named for layer in CONV_SHAPES):
        return {layer: named[layer] for layer in CONV_SHAPES}
    # Generic class-derived names: the 16 conv2d[_N] groups under one parent, in suffix order.
    candidates = []
    for parent, children in by_parent.items():
        convs = sorted(
            (int(match[1] or 0), layer, vars_group)
            for layer, vars_group in children.items()
            if (match := _GENERIC_CONV.fullmatch(layer))
        )
        if convs:
            candidates.append((parent, convs))
    if len(candidates) > 1:
        candidates = [(parent, convs) for parent, convs in candidates if len(convs) == len(CONV_SHAPES)]
    if len(candidates) > 1:  # e.g. both layers/ and an alias tree: prefer Keras 3's "layers" list
        candidates = [(parent, convs) for parent, convs in candidates if parent.rpartition("/")[2] == "layers"]
    if len(candidates) != 1:
        missing = next(layer for layer in CONV_SHAPES if layer not in named)
        raise WeightsError(
            f"{source}: Keras 3 weights: layer {missing!r} is missing (looked for layers/{missing}/vars/0 and for "
            f"one group holding 16 Conv2D layers conv2d, conv2d_1, ..., conv2d_15)"
        )
    parent, convs = candidates[0]
    if len(convs) != len(CONV_SHAPES):
        found = ", ".join(layer for _, layer, _ in convs)
        raise WeightsError(
            f"{source}: Keras 3 weights: {parent or '/'} holds {len(convs)} Conv2D layers ({found}), "
            f"expected {len(CONV_SHAPES)} mapped in order to block1_conv1 ... block5_conv4"
        )
    return {layer: vars_group for layer, (_, _, vars_group) in zip(CONV_SHAPES, convs, strict=True)}


def _keras12_group(root: h5py.Group, groups: dict[str, h5py.Group], layer: str) -> h5py.Group | None:
    """The group holding a Keras 1/2 layer's weights: ``root/<layer>``, else any group so named."""
    item = root.get(layer)
    if isinstance(item, h5py.Group):
        return item
    # Nested sub-model ("/model_weights/vgg19/block1_conv1/kernel:0"): the shallowest group so
    # named inside root, so that optimizer slots elsewhere ("/optimizer_weights/...") are never used.
    prefix = root.name.rstrip("/") + "/"
    matches = sorted(
        (path.count("/"), path) for path in groups if path.startswith(prefix) and path.rpartition("/")[2] == layer
    )
    return groups[matches[0][1]] if matches else None


def _keras12_dataset(group: h5py.Group, field: str) -> h5py.Dataset | None:
    pattern = _FIELD_PATTERNS[field]
    # 1. The weight_names attribute, as Keras' own loader reads it.
    for name in _weight_names(group):
        if pattern.fullmatch(name.rsplit("/", 1)[-1]):
            item = group.get(name)
            if isinstance(item, h5py.Dataset):
                return item
    # 2. Pattern match over the group's datasets (a nested group such as block1_conv1/kernel:0 too).
    found: list[h5py.Dataset] = []

    def visit(name: str, item: object) -> None:
        if isinstance(item, h5py.Dataset) and pattern.fullmatch(name.rsplit("/", 1)[-1]):
            found.append(item)

    group.visititems(visit)
    return found[0] if found else None


def _weight_names(group: h5py.Group) -> list[str]:
    names = group.attrs.get("weight_names")
    if names is None:
        return []
    return [name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name) for name in np.ravel(names)]


def _checked(dataset: h5py.Dataset, name: str, source: str) -> np.ndarray:
    """Read a dataset as float32 after checking its dtype and shape against VGG19's."""
    layer, _, field = name.partition("/")
    kernel_shape = CONV_SHAPES[layer]
    expected = kernel_shape if field == "kernel" else kernel_shape[-1:]
    where = f"{name} ({dataset.name})"
    if dataset.dtype.kind != "f":
        raise WeightsError(f"{source}: {where} has dtype {dataset.dtype}, expected floating point")
    if dataset.shape != expected:
        hint = ""
        if field == "kernel" and dataset.shape == (expected[3], expected[2], expected[0], expected[1]):
            hint = " (an OIHW Theano 'th' kernel: use the *_tf_dim_ordering_tf_kernels* file)"
        raise WeightsError(f"{source}: {where} has shape {dataset.shape}, expected {expected}{hint}")
    array = np.asarray(dataset[()], dtype=np.float32)
    if not np.all(np.isfinite(array)):
        raise WeightsError(f"{source}: {where} contains NaN or inf")
    return array
