"""3x3 'SAME' convolution by Winograd's minimal filtering, F(4x4, 3x3) (Lavin & Gray 2016).

Why: XLA's CPU convolution already runs at the machine's GEMM rate, so the only way to make
the VGG step much faster on a CPU is to do fewer multiplications. F(4x4, 3x3) computes each 4x4
output tile from a 6x6 input tile with 36 multiplications per (input, output) channel pair
instead of 144, i.e. as 36 independent GEMMs of (tiles x C_in) @ (C_in x C_out). The tile
transforms are cheap additions that XLA fuses. Measured on a 2-core AVX-512 CPU
(docs/performance.md), this is 1.5-2.4x faster than ``lax.conv`` for VGG19's layers from
block2 on, and the whole Gatys step gets ~1.5x faster. In the shallow 64-channel layers the
transforms cost more than they save, and on GPUs cuDNN is better, so the engine only uses it
there (`vgg.prepare_params`).

The fast method's transformers (`jaxstyle.nets.magenta`) use the same transforms through
`conv3x3_valid`, where they are about 2x faster than XLA's direct convolution for the 32-channel
residual layers: there the input comes already padded (at each image's own border) and the kernel is
a traced argument (the network's weights, or a sub-pixel kernel made from them), so its transform
runs inside the program (`transform_traced_kernel`) instead of once on the host.

Everything is exact arithmetic up to float32 rounding: the relative error against ``lax.conv``
is ~1e-5 (tested), far below what matters for an image optimised with Adam or L-BFGS.

The gradient with respect to the input of a stride-1 'SAME' 3x3 correlation is the same
correlation of the output gradient with the kernel flipped in space and transposed in
channels, so the backward pass reuses the forward algorithm with precomputed flipped kernels
(`transform_kernel(..., flipped=True)`) instead of autodiff through the tile gathers, which
XLA turns into slow scatter-adds.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

TILE = 4  # output tile side m
_SIDE = TILE + 2  # input tile side m + r - 1

# The transform matrices (public: the tests check the kernel transforms against ``G``).
# Lavin & Gray (2016), "Fast Algorithms for Convolutional Neural Networks", F(4x4, 3x3):
# Y = A^T [ (G g G^T) * (B^T d B) ] A, computing the correlation y_i = sum_k d_{i+k} g_k.
BT = np.array(
    [
        [4, 0, -5, 0, 1, 0],
        [0, -4, -4, 1, 1, 0],
        [0, 4, -4, -1, 1, 0],
        [0, -2, -1, 2, 1, 0],
        [0, 2, -1, -2, 1, 0],
        [0, 4, 0, -5, 0, 1],
    ],
    dtype=np.float64,
)
G = np.array(
    [
        [1 / 4, 0, 0],
        [-1 / 6, -1 / 6, -1 / 6],
        [-1 / 6, 1 / 6, -1 / 6],
        [1 / 24, 1 / 12, 1 / 6],
        [1 / 24, -1 / 12, 1 / 6],
        [0, 0, 1],
    ],
    dtype=np.float64,
)
AT = np.array(
    [
        [1, 1, 1, 1, 1, 0],
        [0, 1, -1, 2, -2, 0],
        [0, 1, 1, 4, 4, 0],
        [0, 1, -1, 8, -8, 1],
    ],
    dtype=np.float64,
)


def transform_kernel(kernel, *, flipped: bool = False) -> np.ndarray:
    """(3, 3, I, O) HWIO kernel -> (36, I, O) Winograd-domain kernel ``G g G^T``.

    With ``flipped=True`` the kernel is flipped in space and its channels are swapped: the input
    gradient's kernel, (36, O, I). Stored that way round, the backward GEMM runs ~3% faster than
    contracting the unswapped kernel over O.

    Two float32 matmuls with the 6x3 ``G``: the rounding (~3e-8 relative) is far below Winograd's
    own (~1e-5), and this takes ~0.7 s for the kernels through block5_conv1, where a float64 einsum
    took 2.0 s at every start-up.
    """
    k = np.asarray(kernel)
    if k.ndim != 4 or k.shape[:2] != (3, 3):
        raise ValueError(f"expected a (3, 3, I, O) kernel, got shape {k.shape}")
    g = G.astype(np.float32)
    i, o = k.shape[2:]
    spatial = k[::-1, ::-1] if flipped else k
    by_col = np.matmul(g, spatial.astype(np.float32).reshape(3, 3, i * o))  # along kernel columns: (3, 6, I*O)
    u = np.tensordot(g, by_col, axes=(1, 0)).reshape(_SIDE * _SIDE, i, o)  # then rows
    if flipped:
        u = u.transpose(0, 2, 1)
    return np.ascontiguousarray(u, dtype=k.dtype)


def transform_traced_kernel(kernel: jax.Array) -> jax.Array:
    """`transform_kernel` inside a traced function, for a kernel that is an argument there:
    (3, 3, I, O) -> (36, I, O) ``G g G^T`` as one float32 einsum."""
    g = jnp.asarray(G, jnp.float32)
    return jnp.einsum("ak,bl,klio->abio", g, g, kernel.astype(jnp.float32)).reshape(_SIDE * _SIDE, *kernel.shape[2:])


def combine(coefficients: np.ndarray, arrays: list[jax.Array]) -> jax.Array:
    """sum_i c_i * a_i, skipping zero terms and multiplications by +-1 (unrolled at trace time)."""
    total = None
    for c, a in zip(coefficients, arrays, strict=True):
        if c == 0:
            continue
        term = a if c == 1 else -a if c == -1 else a * float(c)
        total = term if total is None else total + term
    return total


def _input_transform(x: jax.Array) -> tuple[jax.Array, tuple[int, int]]:
    """(N, H, W, C) -> ``B^T d B`` of every overlapping 6x6 tile, (36, N*ty*tx, C), and (ty, tx)."""
    _, h, w, _ = x.shape
    ty, tx = -(-h // TILE), -(-w // TILE)
    # One pixel of zero padding for 'SAME', plus enough at the bottom/right to complete the last tile.
    xp = jnp.pad(x, ((0, 0), (1, ty * TILE + 1 - h), (1, tx * TILE + 1 - w), (0, 0)))
    return _tile_transform(xp, ty, tx), (ty, tx)


def _tile_transform(xp: jax.Array, ty: int, tx: int) -> jax.Array:
    """(N, 4*ty+2, 4*tx+2, C) padded input -> ``B^T d B`` of its ty x tx overlapping 6x6 tiles, (36, N*ty*tx, C)."""
    n, c = xp.shape[0], xp.shape[-1]
    rows = [xp[:, i : i + TILE * (ty - 1) + 1 : TILE] for i in range(_SIDE)]  # each (N, ty, W+2, C)
    by_row = jnp.stack([combine(BT[k], rows) for k in range(_SIDE)])  # (6, N, ty, W+2, C)
    # Materialise the row transform: otherwise XLA recomputes it inside each column fusion
    # (measured 15-20% slower).
    by_row = jax.lax.optimization_barrier(by_row)
    cols = [by_row[:, :, :, j : j + TILE * (tx - 1) + 1 : TILE] for j in range(_SIDE)]  # each (6, N, ty, tx, C)
    tiles = jnp.stack([combine(BT[l], cols) for l in range(_SIDE)], axis=1)  # (6, 6, N, ty, tx, C)
    return tiles.reshape(_SIDE * _SIDE, n * ty * tx, c)


def _output_transform(products: jax.Array, shape: tuple[int, int, int, int]) -> jax.Array:
    """(36, N*ty*tx, O) -> ``A^T m A`` tiles assembled into the (N, H, W, O) output."""
    n, h, w, _ = shape
    ty, tx = -(-h // TILE), -(-w // TILE)
    m = products.reshape(_SIDE, _SIDE, n, ty, tx, -1)
    by_row = jnp.stack([combine(AT[p], list(m)) for p in range(TILE)])  # (4, 6, N, ty, tx, O)
    cols = [by_row[:, l] for l in range(_SIDE)]
    y = jnp.stack([combine(AT[q], cols) for q in range(TILE)])  # (4q, 4p, N, ty, tx, O)
    y = y.transpose(2, 3, 1, 4, 0, 5).reshape(n, ty * TILE, tx * TILE, -1)
    return y[:, :h, :w]


def _correlate(x: jax.Array, u: jax.Array) -> jax.Array:
    tiles, _ = _input_transform(x)
    products = jnp.einsum("ktc,kco->kto", tiles, u.astype(x.dtype))
    return _output_transform(products, (*x.shape[:3], u.shape[-1]))


def conv3x3_valid(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """VALID stride-1 3x3 correlation of (N, H+2, W+2, I) with a (3, 3, I, O) kernel, both of which
    may be traced: the input carries its own border, the kernel is transformed in the program.

    Float32 whatever the input dtype; error ~1e-6 relative per layer.
    """
    n, hp, wp, _ = x.shape
    h, w = hp - 2, wp - 2
    ty, tx = -(-h // TILE), -(-w // TILE)
    # Zeros at the bottom/right only, to complete the last tile.
    xp = jnp.pad(x.astype(jnp.float32), ((0, 0), (0, ty * TILE + 2 - hp), (0, tx * TILE + 2 - wp), (0, 0)))
    products = jnp.einsum("ktc,kco->kto", _tile_transform(xp, ty, tx), transform_traced_kernel(kernel))
    return _output_transform(products, (n, h, w, kernel.shape[-1]))


def with_given_adjoint(correlate: Callable[[jax.Array, jax.Array], jax.Array]) -> Callable:
    """``correlate(x, kernel)`` as ``f(x, kernel, kernel_adjoint)``, whose input gradient is
    ``correlate(g, kernel_adjoint)`` (a `custom_vjp`; both kernels get a zero cotangent).

    For a stride-1 'SAME' 3x3 correlation, ``kernel_adjoint`` is the kernel flipped in space with
    its channels swapped, in whatever form ``correlate`` takes kernels.
    """

    @jax.custom_vjp
    def correlate_with_adjoint(x, kernel, kernel_adjoint):
        return correlate(x, kernel)

    def forward(x, kernel, kernel_adjoint):
        return correlate(x, kernel), (kernel, kernel_adjoint)

    def backward(residuals, g):
        kernel, kernel_adjoint = residuals
        return correlate(g, kernel_adjoint), jnp.zeros_like(kernel), jnp.zeros_like(kernel_adjoint)

    correlate_with_adjoint.defvjp(forward, backward)
    return correlate_with_adjoint


conv3x3 = with_given_adjoint(_correlate)
conv3x3.__doc__ = """``conv3x3(x, u, u_flipped)``: stride-1 'SAME' 3x3 correlation of NHWC ``x`` (no bias),
equal to ``lax.conv_general_dilated``.

Args:
  x: (N, H, W, I) input.
  u: (36, I, O) from ``transform_kernel(kernel)``.
  u_flipped: (36, O, I) from ``transform_kernel(kernel, flipped=True)``; used by the backward pass.

Differentiable in ``x`` only: the kernels are treated as constants (zero cotangent), which is
what optimising an image needs. For gradients with respect to VGG weights use ``lax.conv``
(`jaxstyle.nets.vgg` without `prepare_params`). Computing the kernel gradient here, even when XLA
then discards it, adds ~0.3 s to every compile.
"""
