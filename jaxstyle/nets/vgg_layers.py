"""VGG19's layer table and names, in plain Python (no JAX), so configs and weights files can
check layer names and shapes without importing the network.

Layer names. Three naming conventions are in use for the same activations and all are accepted:

* Keras ``blockN_convM``: the output of Keras' Conv2D layer, which *includes* its ReLU
  (``activation="relu"``), so it is the post-ReLU activation. ``blockN_pool`` is the pool output.
* MatConvNet / the Gatys paper ``convN_M``: the convolution output *before* the ReLU.
* MatConvNet / the Gatys paper ``reluN_M``: after the ReLU (same tensor as Keras ``blockN_convM``),
  and ``poolN`` for the pool output.
"""

from __future__ import annotations

import re

from jaxstyle.errors import UsageError

# (block, number of convs, output channels) of VGG19's 16 convolutions.
_BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 4, 256), (4, 4, 512), (5, 4, 512))

# Keras' vgg19.preprocess_input("caffe" mode) subtracts this per-channel mean from BGR 0..255 pixels.
KERAS_MEAN_BGR = (103.939, 116.779, 123.68)

MIN_SIDE = 16  # four 2x2 poolings still leave at least one pixel before block5.


def _conv_shapes() -> dict[str, tuple[int, int, int, int]]:
    shapes = {}
    in_channels = 3
    for block, count, out_channels in _BLOCKS:
        for index in range(1, count + 1):
            shapes[f"block{block}_conv{index}"] = (3, 3, in_channels, out_channels)
            in_channels = out_channels
    return shapes


CONV_SHAPES: dict[str, tuple[int, int, int, int]] = _conv_shapes()
"""Kernel shape (HWIO) of every conv layer, in network order; the biases are (O,)."""

CONV_LAYERS: tuple[str, ...] = tuple(CONV_SHAPES)


def _build_sequence() -> tuple[tuple[str, str, str], ...]:
    """The network as (op, keras layer, canonical activation name) triples, in order."""
    sequence = []
    for block, count, _ in _BLOCKS:
        for index in range(1, count + 1):
            keras = f"block{block}_conv{index}"
            sequence.append(("conv", keras, f"conv{block}_{index}"))
            sequence.append(("relu", keras, f"relu{block}_{index}"))
        sequence.append(("pool", f"block{block}_pool", f"pool{block}"))
    return tuple(sequence)


SEQUENCE = _build_sequence()
POSITION = {name: position for position, (_, _, name) in enumerate(SEQUENCE)}
ACTIVATIONS: tuple[str, ...] = tuple(name for _, _, name in SEQUENCE)
"""Every activation name in canonical (MatConvNet) form, in network order."""

_KERAS_CONV = re.compile(r"block(\d)_conv(\d)$")
_KERAS_POOL = re.compile(r"block(\d)_pool$")


def canonical_layer(name: str) -> str:
    """Map any accepted layer name to its canonical MatConvNet form (``relu4_2``, ``conv1_1``, ``pool3``)."""
    if name in POSITION:
        return name
    if match := _KERAS_CONV.match(name):
        # Keras folds the ReLU into the conv layer, so its output is the post-ReLU activation.
        canonical = f"relu{match[1]}_{match[2]}"
    elif match := _KERAS_POOL.match(name):
        canonical = f"pool{match[1]}"
    else:
        canonical = ""
    if canonical not in POSITION:
        raise UsageError(
            f"unknown VGG19 layer {name!r}; use Keras names (block4_conv2, block3_pool) "
            "or MatConvNet names (conv4_2, relu4_2, pool3)"
        )
    return canonical


def receptive_field(layers) -> tuple[int, int]:
    """(receptive field in input pixels, total stride) of the deepest of ``layers``.

    Each 3x3 convolution widens the field by 2 steps of the current stride, each 2x2 pooling by 1
    step and doubles the stride: conv4_2 sees 84 px, conv5_1 156 px.
    """
    last = max(POSITION[canonical_layer(name)] for name in layers)
    field, stride = 1, 1
    for op, _, _ in SEQUENCE[: last + 1]:
        if op == "conv":
            field += 2 * stride
        elif op == "pool":
            field += stride
            stride *= 2
    return field, stride


def stride_of(name: str) -> int:
    """How many input pixels one position of layer ``name`` steps over (1, 2, 4, 8 or 16)."""
    position = POSITION[canonical_layer(name)]
    return 2 ** sum(op == "pool" for op, _, _ in SEQUENCE[: position + 1])
