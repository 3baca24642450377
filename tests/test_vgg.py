"""VGG19 feature extractor against an independent float64 NumPy reference.

The reference below is written from the network's definition (Simonyan & Zisserman 2014, as laid
out by Keras' ``VGG19``), not from jaxstyle/vgg.py: 3x3 convolutions with zero 'same' padding and a
bias, ReLU, and 2x2 stride-2 pooling that drops an odd trailing row/column ('valid', as Keras).
The weights are random but have VGG19's real shapes; at 16x16 the whole network runs in well under
a second in NumPy.
"""

from __future__ import annotations

import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal

from jaxstyle.errors import JaxstyleError, UsageError
from jaxstyle.nets.vgg import deprocess, preprocess, vgg19_features

# (block, convs, channels) of VGG19, typed in again here rather than imported from the library.
VGG19_BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 4, 256), (4, 4, 512), (5, 4, 512))
MEAN_BGR = np.array([103.939, 116.779, 123.68])


# --------------------------------------------------------------------------- NumPy reference


def np_conv3x3_same(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """(H, W, I) * (3, 3, I, O) HWIO cross-correlation with zero 'same' padding, + bias; im2col."""
    h, w, i = x.shape
    padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    patches = np.stack([padded[dy : dy + h, dx : dx + w, :] for dy in range(3) for dx in range(3)], axis=2)
    return patches.reshape(h, w, 9 * i) @ kernel.reshape(9 * i, -1) + bias


def np_pool2x2(x: np.ndarray, kind: str) -> np.ndarray:
    """2x2, stride 2, 'valid': an odd last row/column is dropped. Explicit loops over outputs."""
    h, w, c = x.shape
    out = np.zeros((h // 2, w // 2, c))
    reduce = np.max if kind == "max" else np.mean
    for r in range(h // 2):
        for s in range(w // 2):
            out[r, s] = reduce(x[2 * r : 2 * r + 2, 2 * s : 2 * s + 2].reshape(4, c), axis=0)
    return out


def np_vgg19_all(params, image: np.ndarray, pooling: str) -> dict[str, np.ndarray]:
    """Every activation of one (H, W, 3) preprocessed image, float64, under canonical names."""
    out = {}
    x = np.asarray(image, np.float64)
    for block, convs, _ in VGG19_BLOCKS:
        for index in range(1, convs + 1):
            layer = params[f"block{block}_conv{index}"]
            x = np_conv3x3_same(x, np.asarray(layer["kernel"], np.float64), np.asarray(layer["bias"], np.float64))
            out[f"conv{block}_{index}"] = x
            x = np.maximum(x, 0.0)
            out[f"relu{block}_{index}"] = x
        x = np_pool2x2(x, pooling)
        out[f"pool{block}"] = x
    return out


def keras_to_canonical(name: str) -> str:
    if name.endswith("_pool"):
        return f"pool{name[5]}"
    if name.startswith("block"):  # blockN_convM is Keras' Conv2D *with* its ReLU
        return f"relu{name[5]}_{name[-1]}"
    return name


def random_vgg_params(seed: int) -> dict[str, dict[str, np.ndarray]]:
    """He-initialised random VGG19 weights (float32) with the real HWIO shapes."""
    rng = np.random.default_rng(seed)
    params, channels_in = {}, 3
    for block, convs, channels in VGG19_BLOCKS:
        for index in range(1, convs + 1):
            scale = np.sqrt(2.0 / (9 * channels_in))
            params[f"block{block}_conv{index}"] = {
                "kernel": (rng.standard_normal((3, 3, channels_in, channels), np.float32) * scale).astype(np.float32),
                "bias": rng.uniform(-1.0, 1.0, channels).astype(np.float32),
            }
            channels_in = channels
    return params


@pytest.fixture(scope="module")
def params():
    return random_vgg_params(0)


def random_preprocessed(rng, *shape) -> np.ndarray:
    """Values on the scale of a preprocessed image (mean-subtracted 0..255)."""
    return rng.uniform(-120.0, 135.0, shape).astype(np.float32)


def assert_close(actual, desired, rtol=1e-4):
    """rtol relative to each element and, for elements near zero, to the tensor's largest value."""
    actual, desired = np.asarray(actual), np.asarray(desired)
    assert actual.shape == desired.shape
    scale = np.abs(desired).max() if desired.size else 0.0
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=rtol * scale)


ALL_CANONICAL = [
    f"{kind}{block}_{index}"
    for block, convs, _ in VGG19_BLOCKS
    for index in range(1, convs + 1)
    for kind in ("conv", "relu")
] + [f"pool{block}" for block, _, _ in VGG19_BLOCKS]
ALL_KERAS = [f"block{b}_conv{i}" for b, convs, _ in VGG19_BLOCKS for i in range(1, convs + 1)] + [
    f"block{b}_pool" for b, _, _ in VGG19_BLOCKS
]


# --------------------------------------------------------------------------- the reference itself


def test_reference_conv_matches_scipy_correlate():
    """The im2col reference equals scipy.signal.correlate2d channel by channel (small I, O)."""
    rng = np.random.default_rng(1)
    x, k, b = rng.normal(size=(5, 7, 2)), rng.normal(size=(3, 3, 2, 3)), rng.normal(size=3)
    expected = np.stack(
        [
            sum(scipy.signal.correlate2d(x[..., i], k[..., i, o], mode="same") for i in range(2)) + b[o]
            for o in range(3)
        ],
        axis=-1,
    )
    np.testing.assert_allclose(np_conv3x3_same(x, k, b), expected, rtol=1e-12, atol=1e-12)
    # Hand check of one border value: top-left output sees only the kernel's lower-right 2x2.
    manual = sum(x[dy, dx, i] * k[dy + 1, dx + 1, i, 0] for dy in range(2) for dx in range(2) for i in range(2)) + b[0]
    assert np_conv3x3_same(x, k, b)[0, 0, 0] == pytest.approx(manual, rel=1e-12)


def test_reference_pool_drops_odd_trailing_row_and_column():
    x = np.arange(5 * 3, dtype=np.float64).reshape(5, 3, 1)
    np.testing.assert_array_equal(np_pool2x2(x, "max")[..., 0], [[4.0], [10.0]])
    np.testing.assert_array_equal(np_pool2x2(x, "avg")[..., 0], [[2.0], [8.0]])


# --------------------------------------------------------------------------- vgg19_features


@pytest.mark.parametrize(
    ("shape", "pooling"),
    [((2, 16, 16), "max"), ((2, 16, 16), "avg"), ((1, 16, 20), "max"), ((1, 17, 23), "max"), ((1, 17, 23), "avg")],
    ids=["16x16x2-max", "16x16x2-avg", "16x20-max", "17x23-max", "17x23-avg"],
)
def test_features_match_numpy_reference(params, shape, pooling):
    rng = np.random.default_rng(sum(shape))
    images = random_preprocessed(rng, *shape, 3)
    names = ALL_CANONICAL + ALL_KERAS
    got = jax.jit(lambda p, x: vgg19_features(p, x, names, pooling=pooling))(params, jnp.asarray(images))
    assert sorted(got) == sorted(names)  # keyed exactly as requested (jit returns dicts key-sorted)
    references = [np_vgg19_all(params, image, pooling) for image in images]
    for name in names:
        expected = np.stack([ref[keras_to_canonical(name)] for ref in references])
        assert got[name].dtype == jnp.float32
        assert_close(got[name], expected)


def test_layer_conventions_alias_the_same_tensors(params):
    """Keras blockN_convM is the post-ReLU tensor (reluN_M), not the pre-ReLU convN_M."""
    images = jnp.asarray(random_preprocessed(np.random.default_rng(2), 1, 16, 16, 3))
    names = ["block2_conv1", "relu2_1", "conv2_1", "block3_pool", "pool3"]
    got = vgg19_features(params, images, names)
    assert list(got) == names  # keyed exactly as requested, in the order requested
    np.testing.assert_array_equal(got["block2_conv1"], got["relu2_1"])
    np.testing.assert_array_equal(got["block3_pool"], got["pool3"])
    assert np.min(got["relu2_1"]) >= 0.0
    assert np.min(got["conv2_1"]) < 0.0  # pre-ReLU: negative values survive
    np.testing.assert_array_equal(np.maximum(got["conv2_1"], 0.0), got["relu2_1"])


def test_output_spatial_shapes_for_odd_sizes(params):
    images = jnp.zeros((1, 17, 23, 3), jnp.float32)
    got = vgg19_features(params, images, ["relu1_1", "pool1", "pool2", "pool3", "pool4", "relu5_1", "pool5"])
    shapes = {name: value.shape for name, value in got.items()}
    assert shapes == {
        "relu1_1": (1, 17, 23, 64),
        "pool1": (1, 8, 11, 64),
        "pool2": (1, 4, 5, 128),
        "pool3": (1, 2, 2, 256),
        "pool4": (1, 1, 1, 512),
        "relu5_1": (1, 1, 1, 512),
        "pool5": (1, 0, 0, 512),
    }


def test_no_layers_requested_returns_empty_dict(params):
    assert vgg19_features(params, jnp.zeros((1, 16, 16, 3)), []) == {}


# --------------------------------------------------------------------------- preprocess


def hand_image():
    return np.array(
        [[[1.0, 0.5, 0.0], [0.0, 0.0, 0.0]], [[1.0, 1.0, 1.0], [0.2, 0.4, 0.6]]],
        np.float32,
    )


# Keras vgg19.preprocess_input (caffe mode), worked out by hand: RGB -> BGR, x255, minus the BGR mean.
HAND_PREPROCESSED = np.array(
    [
        [[-103.939, 10.721, 131.32], [-103.939, -116.779, -123.68]],
        [[151.061, 138.221, 131.32], [49.061, -14.779, -72.68]],
    ]
)


def test_preprocess_is_keras_caffe_mode_by_hand():
    got = preprocess(jnp.asarray(hand_image()))
    np.testing.assert_allclose(np.asarray(got), HAND_PREPROCESSED, rtol=0, atol=1e-4)


def test_preprocess_batched_and_custom_mean():
    batch = jnp.asarray(np.stack([hand_image(), hand_image()[::-1]]))
    got = np.asarray(preprocess(batch))
    np.testing.assert_allclose(got[0], HAND_PREPROCESSED, atol=1e-4)
    np.testing.assert_allclose(got[1], HAND_PREPROCESSED[::-1], atol=1e-4)
    custom = np.asarray(preprocess(jnp.asarray(hand_image()), mean_bgr=(1.0, 2.0, 3.0)))
    np.testing.assert_allclose(custom, HAND_PREPROCESSED + MEAN_BGR - [1.0, 2.0, 3.0], atol=1e-4)


def test_deprocess_inverts_preprocess():
    rng = np.random.default_rng(3)
    image = rng.uniform(0.0, 1.0, (2, 5, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(deprocess(preprocess(jnp.asarray(image)))), image, atol=1e-5)
    features = random_preprocessed(rng, 5, 4, 3)
    np.testing.assert_allclose(np.asarray(preprocess(deprocess(jnp.asarray(features)))), features, atol=1e-3)
    np.testing.assert_allclose(
        np.asarray(deprocess(jnp.asarray(HAND_PREPROCESSED, jnp.float32))), hand_image(), atol=1e-6
    )


# --------------------------------------------------------------------------- nothing past the deepest layer


def count_primitive(jaxpr, name: str) -> int:
    """Occurrences of a primitive in a jaxpr, including nested (pjit, scan, ...) jaxprs."""
    count = 0
    for eqn in jaxpr.eqns:
        count += eqn.primitive.name == name
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                if isinstance(sub, jax.extend.core.ClosedJaxpr):
                    count += count_primitive(sub.jaxpr, name)
                elif isinstance(sub, jax.extend.core.Jaxpr):
                    count += count_primitive(sub, name)
    return count


@pytest.mark.parametrize(
    ("layers", "convs"),
    [
        (["relu1_1"], 1),
        (["conv1_1"], 1),
        (["pool1"], 2),
        (["relu2_1"], 3),
        (["relu1_1", "block3_conv1"], 5),
        (["relu5_4"], 16),
    ],
)
def test_computes_nothing_past_the_deepest_layer(params, layers, convs):
    image = jnp.zeros((1, 16, 16, 3), jnp.float32)
    jaxpr = jax.make_jaxpr(lambda x: vgg19_features(params, x, layers))(image).jaxpr
    assert count_primitive(jaxpr, "conv_general_dilated") == convs


def test_params_of_block1_only_suffice_for_block1(params):
    block1 = {name: params[name] for name in ("block1_conv1", "block1_conv2")}
    image = jnp.asarray(random_preprocessed(np.random.default_rng(4), 1, 16, 16, 3))
    got = vgg19_features(block1, image, ["relu1_2", "pool1"], pooling="max")
    full = vgg19_features(params, image, ["relu1_2", "pool1"], pooling="max")
    np.testing.assert_array_equal(got["pool1"], full["pool1"])
    with pytest.raises((KeyError, JaxstyleError)):
        vgg19_features(block1, image, ["relu2_1"])


# --------------------------------------------------------------------------- jit, grad, vmap


def test_jit_matches_eager(params):
    image = jnp.asarray(random_preprocessed(np.random.default_rng(5), 1, 16, 20, 3))
    layers = ("conv1_1", "relu2_2", "pool3", "block5_conv1")
    eager = vgg19_features(params, image, layers, pooling="avg")
    jitted = jax.jit(lambda p, x: vgg19_features(p, x, layers, pooling="avg"))(params, image)
    for name in layers:
        assert_close(jitted[name], eager[name], rtol=1e-5)


@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_grad_matches_central_differences(params, pooling, x64):
    """Gradient of a scalar of several layers w.r.t. the image, float64, at random coordinates."""
    rng = np.random.default_rng(6)
    params64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
    image = jnp.asarray(rng.uniform(-120.0, 135.0, (1, 16, 16, 3)))
    layers = ("conv1_2", "pool2", "relu3_1")
    shapes = {
        n: v.shape
        for n, v in jax.eval_shape(lambda x: vgg19_features(params64, x, layers, pooling=pooling), image).items()
    }
    probes = {name: jnp.asarray(rng.normal(size=shape)) for name, shape in shapes.items()}

    @jax.jit
    def scalar(x):
        features = vgg19_features(params64, x, layers, pooling=pooling)
        # Quadratic in the features: central differences are exact between ReLU/max kinks.
        return sum(jnp.sum(probes[n] * f + 1e-3 * f**2) for n, f in features.items())

    grad = np.asarray(jax.grad(scalar)(image))
    assert grad.dtype == np.float64
    h = 1e-3
    for _ in range(6):
        index = tuple(int(rng.integers(0, s)) for s in image.shape)
        bump = np.zeros(image.shape)
        bump[index] = h
        numeric = (float(scalar(image + bump)) - float(scalar(image - bump))) / (2 * h)
        assert grad[index] == pytest.approx(numeric, rel=1e-6, abs=1e-9 * np.abs(grad).max())


def test_vmap_over_extra_batch_axis_equals_per_image(params):
    images = jnp.asarray(random_preprocessed(np.random.default_rng(7), 3, 1, 16, 16, 3))
    layers = ("relu1_1", "pool2", "conv4_1")
    mapped = jax.vmap(lambda x: vgg19_features(params, x, layers))(images)
    batched = vgg19_features(params, images[:, 0], layers)  # the batch axis of the network itself
    for i in range(3):
        single = vgg19_features(params, images[i], layers)
        for name in layers:
            assert mapped[name].shape == (3, *single[name].shape)
            assert_close(mapped[name][i], single[name], rtol=1e-5)
            assert_close(batched[name][i : i + 1], single[name], rtol=1e-5)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "name", ["relu6_1", "conv1_3", "block1_conv3", "block6_pool", "pool0", "fc6", "", "RELU1_1", "relu1_1 "]
)
def test_unknown_layer_is_a_usage_error(name):
    with pytest.raises(UsageError):
        vgg19_features({}, jnp.zeros((1, 16, 16, 3)), ["relu1_1", name])


@pytest.mark.parametrize("shape", [(1, 15, 16, 3), (1, 16, 15, 3), (2, 8, 8, 3), (1, 1, 100, 3)])
def test_too_small_image_is_a_usage_error(shape):
    with pytest.raises(UsageError):
        vgg19_features({}, jnp.zeros(shape), ["relu1_1"])


@pytest.mark.parametrize("shape", [(16, 16, 3), (1, 16, 16, 1), (1, 16, 16, 4)])
def test_wrong_rank_or_channels_is_a_usage_error(shape):
    with pytest.raises(UsageError):
        vgg19_features({}, jnp.zeros(shape), ["relu1_1"])


def test_unknown_pooling_is_a_usage_error():
    with pytest.raises(UsageError):
        vgg19_features({}, jnp.zeros((1, 16, 16, 3)), ["relu1_1"], pooling="median")


@pytest.mark.parametrize("shape", [(1, 6, 8, 3), (2, 7, 5, 4)])
def test_max_pool_gradient_routes_each_window_to_its_max(shape):
    """The pool's own VJP against NumPy: every window's cotangent lands on its arg-max, odd edges get 0."""
    from jaxstyle.nets.vgg import _pool

    rng = np.random.default_rng(8)
    x = rng.permutation(np.prod(shape)).reshape(shape).astype(np.float32)  # distinct values: no ties
    cotangent = rng.standard_normal((shape[0], shape[1] // 2, shape[2] // 2, shape[3])).astype(np.float32)
    _, vjp = jax.vjp(lambda x: _pool(x, "max"), jnp.asarray(x))
    (got,) = vjp(jnp.asarray(cotangent))
    expected = np.zeros_like(x)
    for n, i, j, c in np.ndindex(cotangent.shape):
        window = x[n, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2, c]
        di, dj = np.unravel_index(np.argmax(window), (2, 2))
        expected[n, 2 * i + di, 2 * j + dj, c] = cotangent[n, i, j, c]
    np.testing.assert_array_equal(np.asarray(got), expected)
