"""Winograd F(4x4, 3x3) convolution against independent references (float64 NumPy, lax.conv)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_vgg import (  # pytest puts tests/ on sys.path
    np_conv3x3_same,
    random_vgg_params,
)

from jaxstyle.nets import winograd
from jaxstyle.nets.vgg import CONV_LAYERS, prepare_params, vgg19_features


def reference_conv(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Batched float64 'same' correlation by test_vgg's im2col reference (itself checked against SciPy)."""
    return np.stack([np_conv3x3_same(image, kernel.astype(np.float64), 0.0) for image in x.astype(np.float64)])


def winograd_conv(x, kernel):
    u = winograd.transform_kernel(kernel)
    u_flipped = winograd.transform_kernel(kernel, flipped=True)
    return winograd.conv3x3(jnp.asarray(x, jnp.float32), jnp.asarray(u), jnp.asarray(u_flipped))


# Sides that are and are not multiples of the 4-pixel tile, down to a single partial tile.
SHAPES = [(1, 4, 4, 3, 2), (2, 5, 7, 4, 3), (1, 9, 13, 6, 5), (1, 16, 16, 8, 8), (1, 1, 3, 2, 2)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_matches_numpy_reference(shape):
    n, h, w, i, o = shape
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal((n, h, w, i)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, i, o)).astype(np.float32)
    got = np.asarray(jax.jit(lambda x: winograd_conv(x, kernel))(x))
    expected = reference_conv(x, kernel)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5 * np.abs(expected).max())


def test_forward_matches_lax_conv_at_vgg_scale():
    """Error stays at float32 rounding level with 256 channels (the sums are long)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 50, (1, 18, 22, 256)).astype(np.float32)  # post-ReLU-like magnitudes
    kernel = (rng.standard_normal((3, 3, 256, 64)) * np.sqrt(2 / (9 * 256))).astype(np.float32)
    expected = jax.lax.conv_general_dilated(
        x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"), precision="highest"
    )
    got = winograd_conv(x, kernel)
    assert float(jnp.abs(got - expected).max() / jnp.abs(expected).max()) < 5e-5


@pytest.mark.parametrize("shape", SHAPES[1:3], ids=lambda s: "x".join(map(str, s)))
def test_input_gradient_is_the_adjoint_of_the_reference_conv(shape):
    """<conv(x), r> = <x, grad_x <conv(x), r>> with the NumPy reference conv: checks the hand-written backward."""
    n, h, w, i, o = shape
    rng = np.random.default_rng(7 + sum(shape))
    x = rng.standard_normal((n, h, w, i)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, i, o)).astype(np.float32)
    cotangent = rng.standard_normal((n, h, w, o)).astype(np.float32)
    grad = np.asarray(jax.grad(lambda x: jnp.sum(winograd_conv(x, kernel) * cotangent))(jnp.asarray(x)))
    # The gradient of a linear map is its adjoint applied to the cotangent; probe it with basis-free
    # random directions d: <grad, d> must equal <conv(d), cotangent>.
    for _ in range(3):
        direction = rng.standard_normal(x.shape)
        forward = np.sum(reference_conv(direction, kernel) * cotangent)
        assert np.sum(grad * direction) == pytest.approx(forward, rel=2e-5)
    # And elementwise against lax.conv's own gradient.
    direct = jax.grad(
        lambda x: jnp.sum(
            jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
            * cotangent
        )
    )(jnp.asarray(x))
    np.testing.assert_allclose(grad, np.asarray(direct), rtol=0, atol=2e-5 * np.abs(direct).max())


def test_kernels_are_constants_for_autodiff():
    """Documented: the Winograd kernels get a zero cotangent (the engine optimises images only)."""
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((1, 8, 8, 2)), jnp.float32)
    kernel = rng.standard_normal((3, 3, 2, 2)).astype(np.float32)
    u, u_flipped = (jnp.asarray(winograd.transform_kernel(kernel, flipped=f)) for f in (False, True))
    du, du_flipped = jax.grad(lambda u, v: jnp.sum(winograd.conv3x3(x, u, v) ** 2), argnums=(0, 1))(u, u_flipped)
    assert not np.any(np.asarray(du)) and not np.any(np.asarray(du_flipped))


def test_transform_kernel_shapes_and_flip():
    kernel = np.random.default_rng(4).standard_normal((3, 3, 5, 7)).astype(np.float32)
    assert winograd.transform_kernel(kernel).shape == (36, 5, 7)
    assert winograd.transform_kernel(kernel).dtype == np.float32
    flipped = kernel[::-1, ::-1].transpose(0, 1, 3, 2)
    np.testing.assert_array_equal(winograd.transform_kernel(kernel, flipped=True), winograd.transform_kernel(flipped))
    # The plain transform is G g G^T: against a float64 einsum.
    expected = np.einsum("ai,ijco,bj->abco", winograd.G, kernel.astype(np.float64), winograd.G).reshape(36, 5, 7)
    np.testing.assert_allclose(winograd.transform_kernel(kernel), expected, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match=r"\(3, 3, I, O\)"):
        winograd.transform_kernel(np.zeros((5, 5, 1, 1)))


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_valid_conv_of_a_padded_input_with_a_traced_kernel_matches_numpy_reference(shape):
    """`conv3x3_valid`, the fast method's form: the caller pads, the kernel is a jit argument."""
    n, h, w, i, o = shape
    rng = np.random.default_rng(sum(shape) + 1)
    x = rng.standard_normal((n, h, w, i)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, i, o)).astype(np.float32)
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    got = np.asarray(jax.jit(winograd.conv3x3_valid)(padded, kernel))
    expected = reference_conv(x, kernel)
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5 * np.abs(expected).max())
    traced = np.asarray(jax.jit(winograd.transform_traced_kernel)(kernel))
    np.testing.assert_allclose(traced, winograd.transform_kernel(kernel), rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- inside VGG19


@pytest.fixture(scope="module")
def vgg_params():
    return random_vgg_params(0)


def test_prepare_params_adds_kernels_from_block2_to_the_deepest_layer(vgg_params):
    prepared = prepare_params(vgg_params, ["relu1_1", "block4_conv2"], winograd_convs=True)
    with_winograd = [name for name in CONV_LAYERS if "winograd" in prepared[name]]
    assert with_winograd == [
        "block2_conv1",
        "block2_conv2",
        "block3_conv1",
        "block3_conv2",
        "block3_conv3",
        "block3_conv4",
        "block4_conv1",
        "block4_conv2",
    ]
    assert prepared["block4_conv2"]["winograd"].shape == (36, 512, 512)
    assert prepared["block4_conv2"]["winograd_flipped"].shape == (36, 512, 512)
    assert "winograd" not in vgg_params["block2_conv1"]  # the input is not modified
    # On CPU the convs without Winograd kernels get the input gradient's kernel instead.
    assert [name for name in CONV_LAYERS if "kernel_flipped" in prepared[name]] == ["block1_conv1", "block1_conv2"]
    np.testing.assert_array_equal(
        prepared["block1_conv2"]["kernel_flipped"],
        np.asarray(vgg_params["block1_conv2"]["kernel"])[::-1, ::-1].swapaxes(2, 3),
    )
    direct = prepare_params(vgg_params, ["relu5_1"], winograd_convs=False)
    assert not any("winograd" in layer for layer in direct.values())
    assert [name for name in CONV_LAYERS if "kernel_flipped" in direct[name]] == list(CONV_LAYERS[:13])
    # Default: on CPU only (the tests run on CPU).
    default = prepare_params(vgg_params, ["relu2_1"])
    assert ("winograd" in default["block2_conv1"]) == (jax.default_backend() == "cpu")


def test_vgg_features_and_image_gradient_match_lax_conv(vgg_params):
    """Every activation and the image gradient of a style-like loss, Winograd vs lax.conv, odd sizes."""
    layers = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"]
    direct = prepare_params(vgg_params, layers, winograd_convs=False)
    fast = prepare_params(vgg_params, layers, winograd_convs=True)
    images = jnp.asarray(np.random.default_rng(5).uniform(-120, 135, (1, 37, 45, 3)), jnp.float32)

    def loss(params, x):
        features = vgg19_features(params, x, layers)
        return sum(jnp.mean(f**2) for f in features.values())

    features = jax.jit(lambda p, x: vgg19_features(p, x, layers))
    grad = jax.jit(jax.grad(loss, argnums=1))
    a, b = features(direct, images), features(fast, images)
    for name in layers:
        assert float(jnp.abs(a[name] - b[name]).max() / jnp.abs(a[name]).max()) < 1e-4, name
    # Reference: plain autodiff through lax.conv, with the unprepared params.
    g_autodiff = grad(vgg_params, images)
    for prepared in (direct, fast):
        g = grad(prepared, images)
        assert float(jnp.abs(g - g_autodiff).max() / jnp.abs(g_autodiff).max()) < 1e-4


def test_prepared_step_inside_scan_matches_autodiff(vgg_params):
    """`run_steps` runs many steps in a lax.scan, where XLA compiles the backward differently."""
    layers = ["relu1_2", "relu2_1"]
    prepared = prepare_params(vgg_params, layers, winograd_convs=True)
    images = jnp.asarray(np.random.default_rng(6).uniform(-120, 135, (1, 24, 20, 3)), jnp.float32)

    def descend(params, x):
        def step(x, _):
            g = jax.grad(lambda x: sum(jnp.mean(f**2) for f in vgg19_features(params, x, layers).values()))(x)
            return x - 1e-3 * g / jnp.abs(g).max(), None

        return jax.lax.scan(step, x, length=3)[0]

    expected = jax.jit(descend)(vgg_params, images) - images
    got = jax.jit(descend)(prepared, images) - images
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-3 * float(jnp.abs(expected).max()))
