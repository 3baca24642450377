"""The trainable fast style network: Magenta's arbitrary transformer as a flax module with one
conditional-instance-norm table per style (Dumoulin et al. 2017).

Why flax linen: its parameters are a plain nested dict that `apply` takes as an argument, so the
training step stays a pure function over PyTrees like the rest of the project, jit and donation work
on it unchanged, and the tree is the weight file: its paths *are* the Magenta names
(``contract1/conv/kernel``, ``residual2/cin1/gamma``), so `jaxstyle.nets.magenta_weights` writes and
reads it and the inference network (`jaxstyle.nets.magenta`) runs it. nnx's stateful objects would
need a split/merge at every boundary for nothing here.

This is the *training* form of the network: square crops whose sides are multiples of 4, plain
`lax.conv` (whose gradients XLA knows), reflect padding and statistics over the whole frame. The
inference form (Winograd, FFT, sub-pixel upsampling, any size, buckets, windows) computes the same
function; tests/test_train_network.py checks the two against each other.

Layers (the arbitrary transformer's, `magenta_weights.TRANSFORMER_LAYERS`): contract1-3 (9x9,
3x3/2, 3x3/2) with a bias and ReLU, five residual blocks (3x3, CIN, ReLU, 3x3, CIN, plus the
input), expand1-2 (nearest x2, 3x3, CIN, ReLU) and expand3 (9x9, CIN, sigmoid). A style is a
weight vector w over the S styles; each CIN's scale and shift are ``w @ gamma`` and ``w @ beta``
with (S, C) tables.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.nets.magenta_weights import CIN_EPSILON, TRANSFORMER_LAYERS, conv_and_cin_names

NUM_RESIDUAL = 5
_LAYOUT = ("NHWC", "HWIO", "NHWC")


def _reflect(x, pad: int):
    return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


class ConditionalInstanceNorm(nn.Module):
    """Instance norm whose scale and shift are a style-weighted mix of per-style rows."""

    num_styles: int

    @nn.compact
    def __call__(self, x, style_weights):
        channels = x.shape[-1]
        gamma = self.param("gamma", nn.initializers.ones, (self.num_styles, channels))
        beta = self.param("beta", nn.initializers.zeros, (self.num_styles, channels))
        mean = jnp.mean(x, axis=(1, 2), keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=(1, 2), keepdims=True)
        scale = (style_weights @ gamma)[:, None, None, :]
        shift = (style_weights @ beta)[:, None, None, :]
        return (x - mean) * jax.lax.rsqrt(var + CIN_EPSILON) * scale + shift


class _Conv(nn.Module):
    """A reflect-padded VALID convolution, as every transformer layer pads; HWIO ``kernel`` (and
    ``bias``) directly under the module's name, as the weight files name them."""

    features: int
    size: int
    stride: int = 1
    use_bias: bool = False

    @nn.compact
    def __call__(self, x):
        shape = (self.size, self.size, x.shape[-1], self.features)
        kernel = self.param("kernel", nn.initializers.lecun_normal(), shape)
        y = jax.lax.conv_general_dilated(
            _reflect(x, self.size // 2), kernel, (self.stride, self.stride), "VALID", dimension_numbers=_LAYOUT
        )
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,)).reshape(1, 1, 1, -1)
        return y


class _Contract(nn.Module):
    features: int
    size: int
    stride: int

    @nn.compact
    def __call__(self, x):
        return nn.relu(_Conv(self.features, self.size, self.stride, use_bias=True, name="conv")(x))


class _Residual(nn.Module):
    num_styles: int

    @nn.compact
    def __call__(self, x, style_weights):
        channels = x.shape[-1]
        y = _Conv(channels, 3, name="conv1")(x)
        y = nn.relu(ConditionalInstanceNorm(self.num_styles, name="cin1")(y, style_weights))
        y = _Conv(channels, 3, name="conv2")(y)
        return x + ConditionalInstanceNorm(self.num_styles, name="cin2")(y, style_weights)


class _Expand(nn.Module):
    features: int
    size: int
    num_styles: int
    upsample: bool

    @nn.compact
    def __call__(self, x, style_weights):
        if self.upsample:
            x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        y = _Conv(self.features, self.size, name="conv")(x)
        return ConditionalInstanceNorm(self.num_styles, name="cin")(y, style_weights)


class StyleNetwork(nn.Module):
    """(N, H, W, 3) RGB in [0, 1] (H, W multiples of 4) and (N, S) style weights -> (N, H, W, 3) in [0, 1]."""

    num_styles: int

    @nn.compact
    def __call__(self, content, style_weights):
        kernels = dict(TRANSFORMER_LAYERS)
        x = content
        for k, stride in ((1, 1), (2, 2), (3, 2)):
            shape = kernels[f"contract{k}"]
            x = _Contract(shape[-1], shape[0], stride, name=f"contract{k}")(x)
        for k in range(1, NUM_RESIDUAL + 1):
            x = _Residual(self.num_styles, name=f"residual{k}")(x, style_weights)
        for k in (1, 2, 3):
            shape = kernels[f"expand{k}"]
            y = _Expand(shape[-1], shape[0], self.num_styles, upsample=k < 3, name=f"expand{k}")(x, style_weights)
            x = nn.relu(y) if k < 3 else nn.sigmoid(y)
        return x


def from_arbitrary(transformer, vectors) -> dict:
    """The network's parameters from Magenta's arbitrary transformer and S style vectors (S, 100):
    the convolutions as they are, and each CIN's table row s the affine map of vector s, so that
    style s at the start computes exactly the arbitrary network with that vector."""
    vectors = np.asarray(vectors, np.float32)
    params: dict = {}
    for layer, _ in TRANSFORMER_LAYERS:
        conv_name, cin_name = conv_and_cin_names(layer)
        conv = _get(transformer, conv_name)
        _set(params, conv_name, {key: np.asarray(value, np.float32) for key, value in conv.items()})
        if not layer.startswith("contract"):
            cin = _get(transformer, cin_name)
            _set(params, cin_name, {field: _affine_rows(vectors, cin[field]) for field in ("gamma", "beta")})
    return params


def _affine_rows(vectors: np.ndarray, layer) -> np.ndarray:
    kernel = np.asarray(layer["kernel"], np.float32)
    return vectors @ kernel.reshape(kernel.shape[2:]) + np.asarray(layer["bias"], np.float32)


def _get(tree, name: str):
    for part in name.split("/"):
        tree = tree[part]
    return tree


def _set(tree: dict, name: str, value) -> None:
    *parents, last = name.split("/")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[last] = value
