"""The convolutions of the fast method's networks (`jaxstyle.nets.magenta`), NHWC / HWIO, as pure
functions: direct convolution, reflect padding, nearest upsampling, the sub-pixel convolution (nearest
x2 upsampling and the 3x3 convolution after it, at the low resolution) and FFT overlap-save for the
9x9 convolutions; the 3x3 Winograd convolution is `jaxstyle.nets.winograd`'s. Why these algorithms,
and how far each moves the output: the docstring of `jaxstyle.nets.magenta`.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxstyle.nets import winograd

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


def subpixel_conv(padded, kernel):
    """``conv(reflect_pad(upsample_nearest(x, 2), 1), kernel)`` from ``padded``, ``x`` (N, h, w, I)
    edge-padded by 1 at its borders, without building the upsampled tensor: (N, 2h, 2w, O)."""
    n, hp, wp, _ = padded.shape
    h, w = hp - 2, wp - 2
    cout = kernel.shape[-1]
    subpixel = _subpixel_kernel(kernel)
    # Winograd pays off from 32 input channels on (measured); below, XLA's convolution is as fast.
    y = winograd.conv3x3_valid(padded, subpixel) if padded.shape[-1] >= 32 else conv2d(padded, subpixel)
    y = y.reshape(n, h, w, 2, 2, cout).transpose(0, 1, 3, 2, 4, 5)  # (N, h, w, 4*O) -> depth to space
    return y.reshape(n, 2 * h, 2 * w, cout)


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
    ty, tx = ceil_div(h, block), ceil_div(w, block)
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
        return ceil_div(h, block) * ceil_div(w, block) * tile * tile * np.log2(tile)

    return min(_FFT_TILES, key=cost)


def conv9(x, kernel):
    """The 9x9 convolutions: FFT overlap-save on large images, direct below ~2 tiles."""
    h, w = x.shape[1] - kernel.shape[0] + 1, x.shape[2] - kernel.shape[1] + 1
    if h * w >= 4 * FFT_TILE * FFT_TILE:
        return conv2d_fft(x, kernel, tile=fft_tile(h, w, kernel.shape[0]))
    return conv2d(x, kernel)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)
