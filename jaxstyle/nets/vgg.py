"""VGG19 (Simonyan & Zisserman 2014) feature extractor as pure JAX functions.

`params` is a PyTree keyed by Keras layer names, ``{"block1_conv1": {"kernel": HWIO, "bias": (C,)}}``;
images are NHWC float32. The weights follow the Keras/Caffe convention: the network expects
BGR input in 0..255 with the ImageNet mean subtracted (see `preprocess`).

Layer names (Keras ``block4_conv2``, MatConvNet ``conv4_2``/``relu4_2``) are those of
`jaxstyle.nets.vgg_layers`.

The forward pass is unrolled at trace time and stops at the deepest requested layer, so asking
for ``relu1_1`` costs one convolution.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.config import Pooling
from jaxstyle.errors import UsageError
from jaxstyle.nets import winograd
from jaxstyle.nets.vgg_layers import (
    ACTIVATIONS,
    CONV_LAYERS,
    CONV_SHAPES,
    KERAS_MEAN_BGR,
    MIN_SIDE,
    POSITION,
    SEQUENCE,
    canonical_layer,
)

__all__ = [
    "ACTIVATIONS",
    "CONV_LAYERS",
    "CONV_SHAPES",
    "KERAS_MEAN_BGR",
    "MIN_SIDE",
    "canonical_layer",
    "deprocess",
    "prepare_params",
    "preprocess",
    "vgg19_features",
]


def preprocess(image: jax.Array, mean_bgr: Iterable[float] = KERAS_MEAN_BGR) -> jax.Array:
    """RGB in [0, 1], (..., H, W, 3) -> mean-subtracted BGR in 0..255, as Keras ``vgg19.preprocess_input``."""
    mean = jnp.asarray(tuple(mean_bgr), dtype=image.dtype).reshape((1,) * (image.ndim - 1) + (3,))
    return image[..., ::-1] * 255.0 - mean


def deprocess(features: jax.Array, mean_bgr: Iterable[float] = KERAS_MEAN_BGR) -> jax.Array:
    """Inverse of `preprocess` (no clipping): mean-subtracted BGR 0..255 -> RGB in [0, 1]."""
    mean = jnp.asarray(tuple(mean_bgr), dtype=features.dtype).reshape((1,) * (features.ndim - 1) + (3,))
    return ((features + mean) / 255.0)[..., ::-1]


# Winograd pays off from block2 on (>= 128 output channels): in block1's 64-channel layers the tile
# transforms cost more than the multiplications they save (measured, docs/performance.md).
WINOGRAD_MIN_CHANNELS = 128


def prepare_params(
    params: Mapping[str, Mapping[str, jax.Array]],
    layers: Iterable[str],
    *,
    winograd_convs: bool | None = None,
) -> dict[str, dict[str, jax.Array]]:
    """Add precomputed kernels that make the image's forward/backward pass faster on CPU.

    On CPU, every conv up to the deepest of ``layers`` gets one of:

    * from block2 on, ``"winograd"`` and ``"winograd_flipped"`` (see `jaxstyle.nets.winograd`), which
      `vgg19_features` then uses instead of ``lax.conv``. They cost 8x the memory of those kernels
      (~0.4 GB through block5_conv1), so they are made once per run, not per step;
    * in block1 (or everywhere with ``winograd_convs=False``), ``"kernel_flipped"``: the input
      gradient's kernel, so that the backward pass is a plain HWIO ``lax.conv`` (see
      `_conv_flipped_given` for why that matters).

    Other backends (cuDNN, TPU) get ``params`` unchanged unless ``winograd_convs=True``;
    ``winograd_convs`` overrides the Winograd choice (None: on CPU only).

    The prepared params are for optimising images: `vgg19_features` then differentiates in the
    image only, treating the kernels as constants.
    """
    on_cpu = jax.default_backend() == "cpu"
    if winograd_convs is None:
        winograd_convs = on_cpu
    prepared = {name: dict(layer) for name, layer in params.items()}
    deepest = max((POSITION[canonical_layer(name)] for name in layers), default=-1)
    for op, layer, _ in SEQUENCE[: deepest + 1]:
        if op != "conv":
            continue
        kernel = prepared[layer]["kernel"]
        if winograd_convs and CONV_SHAPES[layer][3] >= WINOGRAD_MIN_CHANNELS:
            prepared[layer]["winograd"] = jnp.asarray(winograd.transform_kernel(kernel))
            prepared[layer]["winograd_flipped"] = jnp.asarray(winograd.transform_kernel(kernel, flipped=True))
        elif on_cpu:
            prepared[layer]["kernel_flipped"] = jnp.asarray(_flip(kernel))
    return prepared


def _flip(kernel) -> np.ndarray:
    """The HWIO kernel of the input gradient: flipped in space, input and output channels swapped."""
    return np.ascontiguousarray(np.asarray(kernel)[::-1, ::-1].swapaxes(2, 3))


def _correlate(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return jax.lax.conv_general_dilated(
        x, kernel.astype(x.dtype), window_strides=(1, 1), padding="SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


# ``lax.conv`` whose input gradient uses a precomputed `_flip` kernel. Why: inside ``lax.scan`` (many
# steps per dispatch, as `jaxstyle.step.run_steps` runs them), XLA:CPU hoists autodiff's kernel
# flip out of the loop as an OI-ordered kernel and then runs the backward conv with its generic
# convolution instead of YNNPACK's; with the flipped kernel given, the step is much faster
# (measured in docs/performance.md).
_conv_flipped_given = winograd.with_given_adjoint(_correlate)


def _conv_plus_bias(x: jax.Array, layer: Mapping[str, jax.Array]) -> jax.Array:
    """One VGG layer's 'SAME' 3x3 convolution plus its bias, with the kernels `prepare_params` left in
    ``layer`` (Winograd, or ``lax.conv`` with the flipped kernel given), else plain ``lax.conv``."""
    if "winograd" in layer:
        y = winograd.conv3x3(x, layer["winograd"], layer["winograd_flipped"])
    elif "kernel_flipped" in layer:
        y = _conv_flipped_given(x, layer["kernel"], layer["kernel_flipped"])
    else:
        y = _correlate(x, layer["kernel"])
    return y + layer["bias"].astype(x.dtype).reshape(1, 1, 1, -1)


def _pool(x: jax.Array, pooling: Pooling) -> jax.Array:
    """2x2 pooling with stride 2 and 'valid' padding (odd trailing rows/columns are dropped, as in Keras).

    Written as a reshape + reduction instead of ``lax.reduce_window``: XLA fuses it better,
    which measured ~10% faster for the whole VGG step on CPU (see shared/perf).
    """
    if pooling == "max":
        return _max_pool(x)
    return _windows(x).mean(axis=(2, 4))


def _windows(x: jax.Array) -> jax.Array:
    """(N, H, W, C) -> (N, H//2, 2, W//2, 2, C), dropping an odd last row/column."""
    n, h, w, c = x.shape
    return x[:, : h - h % 2, : w - w % 2, :].reshape(n, h // 2, 2, w // 2, 2, c)


@jax.custom_vjp
def _max_pool(x: jax.Array) -> jax.Array:
    return _windows(x).max(axis=(2, 4))


def _max_pool_fwd(x):
    y = _max_pool(x)
    return y, (x, y)


def _max_pool_bwd(residuals, g):
    # Each window's gradient goes to the inputs equal to its max. Autodiff's rule splits it
    # between ties instead, and builds a float32 mask of the whole input in the forward pass: the
    # step measured 3.5 % slower at 256x256. Ties only differ in all-zero windows after a ReLU,
    # whose gradient the ReLU then zeroes anyway.
    x, y = residuals
    n, h, w, c = x.shape
    spread = jnp.where(_windows(x) == y[:, :, None, :, None], g[:, :, None, :, None], jnp.zeros((), g.dtype))
    dx = spread.reshape(n, h - h % 2, w - w % 2, c)
    return (jnp.pad(dx, ((0, 0), (0, h % 2), (0, w % 2), (0, 0))),)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def vgg19_features(
    params: Mapping[str, Mapping[str, jax.Array]],
    images: jax.Array,
    layers: Iterable[str],
    *,
    pooling: Pooling = "max",
) -> dict[str, jax.Array]:
    """Intermediate VGG19 activations of preprocessed images.

    Args:
      params: ``{keras_conv_name: {"kernel": (3, 3, I, O), "bias": (O,)}}``; only the layers up to
        the deepest requested one are read.
      images: (N, H, W, 3) output of `preprocess` (BGR, mean-subtracted); H, W >= 16.
      layers: names in any accepted convention (see the module docstring).
      pooling: "max" as trained, or "avg", which Gatys et al. found gives smoother gradients.

    Returns:
      ``{name: (N, h, w, C)}`` keyed by the names exactly as requested.
    """
    if pooling not in ("max", "avg"):
        raise UsageError(f"unknown pooling {pooling!r}; choose 'max' or 'avg'")
    requested = {name: canonical_layer(name) for name in layers}
    if not requested:
        return {}
    if images.ndim != 4 or images.shape[-1] != 3:
        raise UsageError(f"images must be (N, H, W, 3), got shape {tuple(images.shape)}")
    if min(images.shape[1:3]) < MIN_SIDE:
        raise UsageError(f"images must be at least {MIN_SIDE} px per side, got {tuple(images.shape[1:3])}")
    last = max(POSITION[name] for name in requested.values())
    wanted = set(requested.values())
    found: dict[str, jax.Array] = {}
    x = images
    for op, layer, name in SEQUENCE[: last + 1]:
        if op == "conv":
            x = _conv_plus_bias(x, params[layer])
        elif op == "relu":
            x = jax.nn.relu(x)
        else:
            x = _pool(x, pooling)
        if name in wanted:
            found[name] = x
    return {name: found[canonical] for name, canonical in requested.items()}
