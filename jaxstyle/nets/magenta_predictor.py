"""Magenta's style predictor as a pure JAX function, and the mixes of the style vectors it makes.

The arbitrary model's *predictor* (Ghiasi et al. 2017; MobileNetV2 1.0, batch norm folded into the
biases) maps a 256x256 style image to a 100-d style vector that `jaxstyle.nets.magenta.transform`
stylizes with. Its weights are ``params["predictor"]`` of `magenta_weights.load_arbitrary`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.errors import UsageError
from jaxstyle.nets.convolutions import conv2d
from jaxstyle.nets.magenta_weights import MOBILENET_BLOCKS, STYLE_DIM, Params

STYLE_SIZE = 256  # the predictor's training resolution


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' zero padding (the extra pixel goes at the end)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _dense_1x1(x, layer):
    """A 1x1 convolution as a matmul over the channel axis (N, H, W, I) -> (N, H, W, O)."""
    kernel = layer["kernel"].reshape(layer["kernel"].shape[2:])
    y = jnp.einsum("nhwi,io->nhwo", x, kernel.astype(x.dtype), preferred_element_type=jnp.float32)
    return y + layer["bias"].reshape(1, 1, 1, -1)


def _conv_same(x, layer, stride, groups=1):
    kh, kw = layer["kernel"].shape[:2]
    padding = (_same_padding(x.shape[1], kh, stride), _same_padding(x.shape[2], kw, stride))
    return conv2d(x, layer["kernel"], stride=stride, padding=padding, groups=groups) + layer["bias"].reshape(
        1, 1, 1, -1
    )


def _relu6(x):
    return jnp.clip(x, 0.0, 6.0)


def style_vector(predictor: Params, style_images, guides=None) -> jax.Array:
    """(N, H, W, 3) RGB in [0, 1] -> (N, 100) style vectors.

    The predictor was trained at 256x256 (use `resize_style_image`); other sizes run (it is fully
    convolutional with a global mean) but are not what the weights expect. TF 'SAME' zero padding,
    ReLU6, batch norm folded into the biases, global mean, then the 1280 -> 100 bottleneck.

    ``guides`` (N, H, W) in [0, 1] (a style region, `jaxstyle.masks`): the style of that part of
    each image. The global mean is the one place where the network pools over the image, so it
    becomes the guide-weighted mean there, the guide carried to the last feature map (1/32 of the
    input) by area (`_area_pool`); everything before it stays as trained. A guide that is 1
    everywhere is the plain mean up to rounding; without ``guides`` nothing changes.
    """
    x = jnp.asarray(style_images, jnp.float32)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise UsageError(f"style images must be (N, H, W, 3), got {x.shape}")
    x = _relu6(_conv_same(x, predictor["stem"], 2))
    for index, (cin, _, cout, stride) in enumerate(MOBILENET_BLOCKS):
        block = predictor[f"block{index}"]
        y = _relu6(_dense_1x1(x, block["expand"])) if index > 0 else x
        y = _relu6(_conv_same(y, block["depthwise"], stride, groups=y.shape[-1]))
        y = _dense_1x1(y, block["project"])
        x = x + y if stride == 1 and cin == cout else y
    x = _relu6(_dense_1x1(x, predictor["top"]))
    if guides is None:
        pooled = jnp.mean(x, axis=(1, 2), keepdims=True)
    else:
        weight = _area_pool(jnp.asarray(guides, jnp.float32), x.shape[1:3])[..., None]  # (N, h, w, 1)
        mass = jnp.maximum(weight.sum(axis=(1, 2), keepdims=True), _NO_MASS)
        pooled = (x * weight).sum(axis=(1, 2), keepdims=True) / mass
    return _dense_1x1(pooled, predictor["bottleneck"]).reshape(x.shape[0], STYLE_DIM)


# A region with less than this share of one final-map cell counts as empty (its vector is then 0s'
# bottleneck: the caller keeps regions inside the predictor's crop, `fast_regions.region_window`).
_NO_MASS = 1e-6


def _area_pool(guides, shape: tuple[int, int]):
    """(N, H, W) guides averaged over the input pixels each cell of an (h, w) map covers: blocks of
    ``ceil(H / h)`` x ``ceil(W / w)`` from the top left, as the network's 'SAME' strides lay them,
    the last blocks counting only the pixels they have."""
    n, big_h, big_w = guides.shape
    h, w = shape
    sh, sw = -(-big_h // h), -(-big_w // w)
    pad = ((0, 0), (0, h * sh - big_h), (0, w * sw - big_w))
    sums = jnp.pad(guides, pad).reshape(n, h, sh, w, sw).sum(axis=(2, 4))
    counts = jnp.pad(jnp.ones((1, big_h, big_w), jnp.float32), pad).reshape(1, h, sh, w, sw).sum(axis=(2, 4))
    return sums / counts


def resize_style_image(image, size: int = STYLE_SIZE, *, antialias: bool = False) -> jax.Array:
    """Prepare one (H, W, 3) [0, 1] image for the predictor as Magenta's TensorFlow Lite tutorial does.

    That tutorial (``preprocess_image(image, 256)`` in the arbitrary style transfer TFLite example,
    made for these int8 models) scales the image so its *shorter* side is ``size`` (new sides
    truncated to int, ``tf.image.resize`` bilinear: half-pixel centres, no antialiasing), then cuts
    the central ``size x size`` square (``tf.image.resize_with_crop_or_pad``: offset
    ``(side - size) // 2``). ``antialias=True`` filters when shrinking (better for large images,
    not what the tutorial does). The larger TF-Hub model's colab instead crops the central square
    first and then applies a 3x3 average pool; that is not reproduced here.
    """
    image = jnp.asarray(image, jnp.float32)
    h, w = image.shape[:2]
    scale = size / min(h, w)
    new_h, new_w = max(size, int(h * scale)), max(size, int(w * scale))
    resized = jax.image.resize(image, (new_h, new_w, image.shape[2]), method="bilinear", antialias=antialias)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return resized[top : top + size, left : left + size, :]


# The two mixes of style vectors run on the host, in NumPy: (K, 100) numbers, where each eager
# device operation was a program of its own to compile or load (`methods.fast`).


def blend_vectors(vectors, weights=None) -> np.ndarray:
    """Weighted sum of style vectors (K, 100) with weights (K,) (None: equal); weights are normalised to sum to 1."""
    vectors = np.asarray(vectors, np.float32)
    weights = np.ones(vectors.shape[:1], np.float32) if weights is None else np.asarray(weights, np.float32)
    if weights.shape != vectors.shape[:1]:
        raise UsageError(f"need one weight per style vector, got {weights.shape[0]} for {vectors.shape[0]}")
    return (weights / np.sum(weights)) @ vectors


def with_strength(style, content_own, strength: float) -> np.ndarray:
    """Magenta's style interpolation ``strength * style + (1 - strength) * content_own`` (both (…, 100)).

    ``content_own`` is the predictor's vector of the content image itself (`resize_style_image` of
    the content, i.e. its central 256x256 after scaling the short side to 256), so strength 0 gives
    the content 'in its own style'.
    """
    return (strength * np.asarray(style, np.float32) + (1.0 - strength) * np.asarray(content_own, np.float32)).astype(
        np.float32
    )
