"""Keras HDF5 and MatConvNet .mat converters, on synthetic files written in the real layouts.

The files carry random float32 weights of VGG19's real conv shapes (about 80 MB each, written once
per layout per module); fully connected layers, which the readers ignore, get tiny stand-ins.
"""

from __future__ import annotations

import json

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.io
from jaxstyle.weights_convert.keras_h5 import read_keras_h5
from jaxstyle.weights_convert.matconvnet import NAME_TABLE, read_matconvnet

from jaxstyle.errors import InputNotFoundError, WeightsError
from jaxstyle.nets.vgg import CONV_SHAPES, KERAS_MEAN_BGR
from jaxstyle.weights import check_params, load_weights, save_weights

LAYERS = tuple(CONV_SHAPES)
MAT_NAMES = {ours: theirs for theirs, ours in NAME_TABLE.items()}
TOP = {"fc1": (8, 4), "fc2": (4, 4), "predictions": (4, 3)}  # stand-ins: real fc1 is 25088 x 4096
VGG_MEAN_RGB = (123.68, 116.779, 103.939)


@pytest.fixture(scope="module")
def params() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Canonical (kernel HWIO, bias) per conv layer: random float32 of the real VGG19 shapes."""
    rng = np.random.default_rng(20240531)
    return {
        layer: (rng.standard_normal(shape, dtype=np.float32), rng.standard_normal(shape[-1:], dtype=np.float32))
        for layer, shape in CONV_SHAPES.items()
    }


def assert_matches(tensors: dict[str, np.ndarray], params) -> None:
    assert sorted(tensors) == sorted(f"{layer}/{field}" for layer in LAYERS for field in ("kernel", "bias"))
    for layer, (kernel, bias) in params.items():
        assert tensors[f"{layer}/kernel"].dtype == np.float32
        assert tensors[f"{layer}/bias"].dtype == np.float32
        assert np.array_equal(tensors[f"{layer}/kernel"], kernel), layer
        assert np.array_equal(tensors[f"{layer}/bias"], bias), layer


def one_line_error(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert message and "\n" not in message, message
    return message


def mean_of(metadata: dict[str, str]) -> tuple[float, ...]:
    return tuple(float(v) for v in metadata["mean_bgr"].split(","))


# --------------------------------------------------------------------------------------------
# Keras writers


def _names(values) -> np.ndarray:
    return np.array([v.encode() for v in values], dtype="S")


def write_keras1(path, params, *, top=False, skip=(), suffix="_1", shapes=None, weight_names=True):
    """vgg19_weights_tf_dim_ordering_tf_kernels[_notop].h5: /block1_conv1/block1_conv1_W_1:0 ..."""
    shapes = shapes or {}
    with h5py.File(path, "w") as handle:
        layer_names = ["input_1"]
        for layer, (kernel, bias) in params.items():
            if layer in skip:
                continue
            group = handle.create_group(layer)
            names = [f"{layer}_W{suffix}:0", f"{layer}_b{suffix}:0"]
            if weight_names:
                group.attrs["weight_names"] = _names(names)
            group[names[0]] = np.zeros(shapes[layer], np.float32) if layer in shapes else kernel
            group[names[1]] = bias
            layer_names.append(layer)
            if layer.endswith(("block1_conv2", "block2_conv2", "conv4")):
                pool = layer.split("_")[0] + "_pool"
                handle.create_group(pool).attrs["weight_names"] = np.array([], dtype="S")
                layer_names.append(pool)
        if top:
            for name, shape in TOP.items():
                group = handle.create_group(name)
                group.attrs["weight_names"] = _names([f"{name}_W{suffix}:0", f"{name}_b{suffix}:0"])
                group[f"{name}_W{suffix}:0"] = np.ones(shape, np.float32)
                group[f"{name}_b{suffix}:0"] = np.ones(shape[-1:], np.float32)
                layer_names.append(name)
        handle.attrs["layer_names"] = _names(layer_names)


def write_keras2(path, params, *, model=False, nested=False):
    """tf.keras save_weights (/block1_conv1/block1_conv1/kernel:0) or save (under /model_weights).

    ``nested``: VGG19 as a sub-model of the saved model, /model_weights/vgg19/block1_conv1/kernel:0.
    """
    with h5py.File(path, "w") as handle:
        root = handle.create_group("model_weights") if model else handle
        if nested:
            root.attrs["layer_names"] = _names(["input_2", "vgg19"])
            root.create_group("vgg19").attrs["weight_names"] = _names(
                [f"{layer}/{field}:0" for layer in params for field in ("kernel", "bias")]
            )
            # A decoy outside model_weights, shallower than the real weights, named like them.
            for layer, (kernel, bias) in params.items():
                handle[f"optimizer_weights/{layer}/kernel:0"] = np.zeros_like(kernel)
                handle[f"optimizer_weights/{layer}/bias:0"] = np.zeros_like(bias)
            root = root["vgg19"]
        if model:
            handle.attrs["model_config"] = json.dumps({"class_name": "Functional", "config": {"name": "vgg19"}})
            handle.attrs["keras_version"] = "2.15.0"
            # Optimizer slots with the same layer names must not be picked up.
            slots = handle.require_group("optimizer_weights")
            for layer, (kernel, bias) in params.items():
                slots[f"Adam/{layer}/kernel/m:0"] = np.zeros_like(kernel)
                slots[f"Adam/{layer}/bias/m:0"] = np.zeros_like(bias)
        if not nested:
            root.attrs["layer_names"] = _names(["input_1", *params, "fc1"])
            root.attrs["backend"] = "tensorflow"
        for layer, (kernel, bias) in params.items():
            group = root.create_group(layer)
            if not nested:
                group.attrs["weight_names"] = _names([f"{layer}/kernel:0", f"{layer}/bias:0"])
            group[f"{layer}/kernel:0"] = kernel
            group[f"{layer}/bias:0"] = bias
        group = root.create_group("fc1")
        group.attrs["weight_names"] = _names(["fc1/kernel:0", "fc1/bias:0"])
        group["fc1/kernel:0"] = np.ones(TOP["fc1"], np.float32)
        group["fc1/bias:0"] = np.ones(TOP["fc1"][-1:], np.float32)


def write_keras3(path, params, *, named, count=16):
    """Keras 3 .weights.h5: /layers/<conv2d_N or block1_conv1>/vars/0 (kernel) and /vars/1 (bias)."""
    with h5py.File(path, "w") as handle:
        handle.create_group("vars")
        handle.create_group("layers/input_layer/vars")
        for index, (layer, (kernel, bias)) in enumerate(list(params.items())[:count]):
            name = layer if named else ("conv2d" if index == 0 else f"conv2d_{index}")
            group = handle.create_group(f"layers/{name}/vars")
            group["0"] = kernel
            group["1"] = bias
        for index in range(5):
            handle.create_group(f"layers/max_pooling2d{'' if index == 0 else f'_{index}'}/vars")
        for index, shape in enumerate(TOP.values()):
            group = handle.create_group(f"layers/dense{'' if index == 0 else f'_{index}'}/vars")
            group["0"] = np.ones(shape, np.float32)
            group["1"] = np.ones(shape[-1:], np.float32)
        optimizer = handle.create_group("optimizer/vars")
        optimizer["0"] = np.int64(10)
        optimizer["1"] = np.float32(1e-3)
        optimizer["2"] = np.zeros((3, 3, 3, 64), np.float32)


# --------------------------------------------------------------------------------------------
# Keras round trips


@pytest.fixture(scope="module")
def keras1_file(tmp_path_factory, params):
    path = tmp_path_factory.mktemp("keras") / "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
    write_keras1(path, params)
    return path


def test_keras1_notop_round_trip(keras1_file, params):
    tensors, metadata = read_keras_h5(keras1_file)
    assert_matches(tensors, params)
    assert metadata["source_format"] == "keras1-h5"
    assert metadata["format"] == "jaxstyle-vgg19"
    assert mean_of(metadata) == KERAS_MEAN_BGR
    assert keras1_file.name in metadata["source"]
    assert "CC BY 4.0" in metadata["license"]


def test_keras1_with_top_ignores_fc_layers(tmp_path, params):
    # Also the older dataset names without the "_1": block1_conv1_W:0.
    path = tmp_path / "vgg19_weights_tf_dim_ordering_tf_kernels.h5"
    write_keras1(path, params, top=True, suffix="")
    tensors, metadata = read_keras_h5(path)
    assert_matches(tensors, params)
    assert metadata["source_format"] == "keras1-h5"


def test_keras1_without_weight_names_falls_back_to_patterns(tmp_path, params):
    path = tmp_path / "no_attrs.h5"
    write_keras1(path, params, weight_names=False)
    tensors, _ = read_keras_h5(path)
    assert_matches(tensors, params)


@pytest.mark.parametrize(("model", "layout"), [(False, "keras2-h5"), (True, "keras2-model-h5")])
def test_keras2_round_trip(tmp_path, params, model, layout):
    path = tmp_path / "vgg19.h5"
    write_keras2(path, params, model=model)
    tensors, metadata = read_keras_h5(path)
    assert_matches(tensors, params)
    assert metadata["source_format"] == layout
    assert mean_of(metadata) == KERAS_MEAN_BGR


def test_keras2_nested_sub_model(tmp_path, params):
    path = tmp_path / "model_with_vgg19.h5"
    write_keras2(path, params, model=True, nested=True)
    tensors, metadata = read_keras_h5(path)
    assert_matches(tensors, params)
    assert metadata["source_format"] == "keras2-model-h5"


@pytest.mark.parametrize("named", [True, False], ids=["layer-names", "generic-conv2d-names"])
def test_keras3_round_trip(tmp_path, params, named):
    # With generic names HDF5 lists conv2d_10 before conv2d_2: the mapping must sort numerically.
    path = tmp_path / "vgg19.weights.h5"
    write_keras3(path, params, named=named)
    tensors, metadata = read_keras_h5(path)
    assert_matches(tensors, params)
    assert metadata["source_format"] == "keras3-weights-h5"


def test_keras_converted_file_loads_as_canonical_weights(tmp_path, keras1_file, params):
    tensors, metadata = read_keras_h5(keras1_file)
    saved = save_weights(tmp_path / "vgg19.safetensors", tensors, metadata)
    weights = load_weights(saved)
    check_params(weights.params, "converted")
    assert weights.mean_bgr == KERAS_MEAN_BGR
    for layer, (kernel, bias) in params.items():
        assert np.array_equal(weights.params[layer]["kernel"], kernel)
        assert np.array_equal(weights.params[layer]["bias"], bias)


# --------------------------------------------------------------------------------------------
# Keras bad inputs


def test_keras_missing_layer_is_named(tmp_path, params):
    path = tmp_path / "partial.h5"
    write_keras1(path, params, skip={"block3_conv2"})
    with pytest.raises(WeightsError) as error:
        read_keras_h5(path)
    message = one_line_error(error)
    assert "'block3_conv2' is missing" in message
    assert "block3_conv2_W[_1]:0" in message and "kernel:0" in message and "vars/0" in message


def test_keras_wrong_shape_names_tensor_and_both_shapes(tmp_path, params):
    path = tmp_path / "odd.h5"
    write_keras1(path, params, shapes={"block2_conv1": (3, 3, 64, 64)})
    with pytest.raises(WeightsError) as error:
        read_keras_h5(path)
    message = one_line_error(error)
    assert "block2_conv1/kernel" in message
    assert "(3, 3, 64, 64)" in message and "expected (3, 3, 64, 128)" in message


def test_keras_theano_kernel_gets_a_hint(tmp_path, params):
    path = tmp_path / "th.h5"  # the reader stops at the first layer, so one layer is enough
    write_keras1(path, {"block1_conv1": params["block1_conv1"]}, shapes={"block1_conv1": (64, 3, 3, 3)})
    with pytest.raises(WeightsError) as error:
        read_keras_h5(path)
    assert "Theano" in one_line_error(error)


def test_keras3_generic_names_with_a_conv_missing(tmp_path, params):
    path = tmp_path / "short.weights.h5"
    write_keras3(path, params, named=False, count=15)
    with pytest.raises(WeightsError) as error:
        read_keras_h5(path)
    message = one_line_error(error)
    assert "15 Conv2D layers" in message and "expected 16" in message


def test_keras3_named_layer_missing_is_named(tmp_path, params):
    path = tmp_path / "short.weights.h5"
    write_keras3(path, params, named=True, count=15)
    with pytest.raises(WeightsError) as error:
        read_keras_h5(path)
    assert "'block5_conv4' is missing" in one_line_error(error)


@pytest.mark.parametrize(
    "content", [b"", b"this is not an HDF5 file\n" * 40, None], ids=["empty", "garbage", "truncated"]
)
def test_keras_unreadable_files(tmp_path, keras1_file, content):
    path = tmp_path / "bad.h5"
    if content is None:
        data = keras1_file.read_bytes()
        content = data[: len(data) // 2]
    path.write_bytes(content)
    with pytest.raises(WeightsError) as error:
        read_keras_h5(path)
    message = one_line_error(error)
    assert str(path) in message
    assert ("empty" if not content else "not a readable HDF5 file") in message


def test_keras_missing_path(tmp_path):
    with pytest.raises(InputNotFoundError):
        read_keras_h5(tmp_path / "nope.h5")


# --------------------------------------------------------------------------------------------
# MatConvNet writer
#
# A MatConvNet file holds what the network expects: RGB input and (row, column, in, out) filters,
# so the mat kernel of a canonical (BGR) conv1_1 is the canonical kernel with its input channels
# reversed, and every other kernel is the canonical one as is (see matconvnet.py's docstring).


def to_mat_kernel(layer: str, kernel: np.ndarray) -> np.ndarray:
    return kernel[:, :, ::-1, :] if layer == "block1_conv1" else kernel


def _cell(*values) -> np.ndarray:
    cell = np.empty((1, len(values)), dtype=object)
    for index, value in enumerate(values):
        cell[0, index] = value
    return cell


def write_matconvnet(path, params, *, layout, skip=(), first_kernel=None, average_image=None, normalization=True):
    """imagenet-vgg-verydeep-19.mat in the given layout: 'old-weights', 'old-filters' or 'new-meta'."""
    layers = []
    block = 1
    for layer, (kernel, bias) in params.items():
        name = MAT_NAMES[layer]
        if name[4] != str(block):
            layers.append({"name": f"pool{block}", "type": "pool", "method": "max", "pool": np.array([[2.0, 2.0]])})
            block += 1
        if name in skip:
            continue
        mat_kernel = to_mat_kernel(layer, kernel)
        if first_kernel is not None and name == "conv1_1":
            mat_kernel = first_kernel
        struct = {"name": name, "type": "conv", "stride": np.array([[1.0, 1.0]]), "pad": np.array([[1.0, 1, 1, 1]])}
        if layout == "old-filters":
            struct["filters"] = mat_kernel
            struct["biases"] = bias.reshape(1, -1)
        else:
            bias_shape = (1, -1) if layout == "old-weights" else (-1, 1)
            struct["weights"] = _cell(mat_kernel, bias.reshape(bias_shape))
        layers.append(struct)
        layers.append({"name": name.replace("conv", "relu"), "type": "relu"})
    layers.append({"name": "pool5", "type": "pool", "method": "max", "pool": np.array([[2.0, 2.0]])})
    for name, shape in (("fc6", (1, 1, 8, 4)), ("fc7", (1, 1, 4, 4)), ("fc8", (1, 1, 4, 3))):
        weights = _cell(np.ones(shape, np.float32), np.ones((1, shape[-1]), np.float32))
        layers.append({"name": name, "type": "conv", "weights": weights})
    layers.append({"name": "prob", "type": "softmax"})
    layers_cell = _cell(*layers)

    if average_image is None:
        average_image = np.array(VGG_MEAN_RGB).reshape(1, 1, 3)
    normalization_struct = {
        "averageImage": average_image,
        "imageSize": np.array([[224.0, 224.0, 3.0]]),
        "interpolation": "bilinear",
        "keepAspect": 1,
    }
    if not normalization:
        normalization_struct = {"imageSize": np.array([[224.0, 224.0, 3.0]])}
    if layout == "new-meta":
        variables = {
            "layers": layers_cell,
            "meta": {
                "inputs": {"name": "input", "size": np.array([[224.0, 224.0, 3.0, 10.0]])},
                "classes": {"name": _cell("n01440764", "n01443537"), "description": _cell("tench", "goldfish")},
                "normalization": normalization_struct,
            },
        }
    else:
        variables = {"layers": layers_cell, "normalization": normalization_struct, "classes": _cell("tench")}
    scipy.io.savemat(path, variables)


@pytest.fixture(scope="module")
def mat_file(tmp_path_factory, params):
    path = tmp_path_factory.mktemp("mat") / "imagenet-vgg-verydeep-19.mat"
    write_matconvnet(path, params, layout="new-meta")
    return path


# --------------------------------------------------------------------------------------------
# MatConvNet round trips


def test_matconvnet_name_table_covers_the_16_convolutions_in_order():
    assert list(NAME_TABLE.values()) == list(CONV_SHAPES)
    blocks = ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4))
    assert list(NAME_TABLE) == [f"conv{block}_{index}" for block, count in blocks for index in range(1, count + 1)]


def test_matconvnet_new_layout_round_trip(mat_file, params):
    tensors, metadata = read_matconvnet(mat_file)
    assert_matches(tensors, params)
    assert metadata["source_format"].startswith("matconvnet-new")
    assert "MatConvNet imagenet-vgg-verydeep-19" in metadata["source"] and mat_file.name in metadata["source"]
    assert metadata["license"] == "VGG19 weights: Simonyan & Zisserman (Oxford VGG), CC BY 4.0"
    # averageImage is RGB (123.68, 116.779, 103.939); the canonical mean is BGR.
    assert mean_of(metadata) == pytest.approx((103.939, 116.779, 123.68), abs=1e-12)


@pytest.mark.parametrize("layout", ["old-weights", "old-filters"])
def test_matconvnet_old_layouts_round_trip(tmp_path, params, layout):
    # Old files carry a full 224x224x3 average image at top level; its per-channel mean is used.
    rng = np.random.default_rng(3)
    average = rng.uniform(0, 255, (224, 224, 3))
    path = tmp_path / "imagenet-vgg-verydeep-19.mat"
    write_matconvnet(path, params, layout=layout, average_image=average)
    tensors, metadata = read_matconvnet(path)
    assert_matches(tensors, params)
    assert metadata["source_format"].startswith("matconvnet-old")
    assert mean_of(metadata) == pytest.approx(tuple(average.mean(axis=(0, 1))[::-1]), abs=1e-9)


def test_matconvnet_first_layer_channels_are_reversed(mat_file, params):
    """The file's conv1_1 reads R, G, B; ours reads B, G, R: same filter, input axis reversed."""
    with open(mat_file, "rb") as stream:
        raw = scipy.io.loadmat(stream, struct_as_record=True)
    layer0 = raw["layers"][0, 0][0, 0]
    assert str(layer0["name"][0]) == "conv1_1"
    mat_kernel = layer0["weights"][0, 0]
    tensors, _ = read_matconvnet(mat_file)
    ours = tensors["block1_conv1/kernel"]
    for ours_channel, mat_channel in ((0, 2), (1, 1), (2, 0)):  # B<-B(2), G<-G(1), R<-R(0)
        assert np.array_equal(ours[:, :, ours_channel, :], mat_kernel[:, :, mat_channel, :])
    assert not np.array_equal(ours, mat_kernel)  # random channels differ, so the flip is visible
    # Deeper layers see feature maps, not colours: untouched.
    layer1 = raw["layers"][0, 2][0, 0]
    assert str(layer1["name"][0]) == "conv1_2"
    assert np.array_equal(tensors["block1_conv2/kernel"], layer1["weights"][0, 0])


# --------------------------------------------------------------------------------------------
# MatConvNet orientation, checked by convolution
#
# MATLAB images are H x W x C arrays indexed X(row, column, channel): row = y (down), column =
# x (right), which is how imread and MatConvNet lay them out. scipy.io.loadmat keeps that index
# order (array[i-1, j-1] is A(i, j)), so a NumPy H x W x C image *is* the MATLAB image. vl_nnconv
# is a cross-correlation (help text, and im2row: a filter offset (u, v) reads the input at the
# output position plus (u, v) minus the padding):
#     y(i, j, k) = b(k) + sum_{u, v, c} F(u, v, c, k) * x(i + u - pad, j + v - pad, c)   (0-based)
# with F's first index pairing with x's first (row) index. `vl_nnconv_reference` transcribes that
# literally and is the independent reference for what MatConvNet computes with the file's arrays.


def vl_nnconv_reference(image: np.ndarray, filters: np.ndarray, biases: np.ndarray, pad: int = 1) -> np.ndarray:
    height, width, _ = image.shape
    fh, fw, _, _ = filters.shape
    padded = np.pad(image.astype(np.float64), ((pad, pad), (pad, pad), (0, 0)))
    out = np.zeros((height + 2 * pad - fh + 1, width + 2 * pad - fw + 1, filters.shape[3])) + biases.reshape(-1)
    for u in range(fh):
        for v in range(fw):
            window = padded[u : u + out.shape[0], v : v + out.shape[1], :]
            out += np.einsum("hwc,ck->hwk", window, filters[u, v].astype(np.float64))
    return out


def jax_conv(image_bgr: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """What jaxstyle does with a canonical kernel (NHWC / HWIO, SAME padding)."""
    out = jax.lax.conv_general_dilated(
        jnp.asarray(image_bgr)[None],
        jnp.asarray(kernel),
        window_strides=(1, 1),
        padding="SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    return np.asarray(out[0] + jnp.asarray(bias).reshape(1, 1, -1))


def test_matconvnet_orientation_single_off_centre_tap(tmp_path, params):
    # Only F(1, 3, R, 6) in MATLAB's 1-based terms is 1: filter row offset -1 (u=0), column offset
    # +1 (v=2), red input, output channel 5 (0-based). By the formula y(i, j, 5) = x(i-1, j+1, R):
    # a lone red pixel at (row 4, column 7) answers at (row 5, column 6), one row down, one column
    # left. Transposing H and W (as some ports do) would put it one row up, one column right.
    first = np.zeros((3, 3, 3, 64), np.float32)
    first[0, 2, 0, 5] = 1.0
    path = tmp_path / "tap.mat"
    write_matconvnet(path, params, layout="new-meta", first_kernel=first)
    tensors, _ = read_matconvnet(path)
    kernel = tensors["block1_conv1/kernel"]
    assert np.argwhere(kernel).tolist() == [[0, 2, 2, 5]]  # red is input channel 2 in BGR

    image_rgb = np.zeros((9, 11, 3), np.float32)
    image_rgb[4, 7, 0] = 1.0  # red
    expected = vl_nnconv_reference(image_rgb, first, np.zeros(64))
    assert np.argwhere(expected).tolist() == [[5, 6, 5]]

    got = jax_conv(image_rgb[:, :, ::-1], kernel, np.zeros(64, np.float32))
    assert np.argwhere(got).tolist() == [[5, 6, 5]]
    assert got[5, 6, 5] == 1.0


def test_matconvnet_orientation_random_kernel_matches_vl_nnconv(mat_file):
    """Random asymmetric kernels: MatConvNet's computation on RGB == ours on BGR, everywhere."""
    with open(mat_file, "rb") as stream:
        raw = scipy.io.loadmat(stream, struct_as_record=True)
    layer0 = raw["layers"][0, 0][0, 0]
    mat_kernel, mat_bias = layer0["weights"][0, 0], layer0["weights"][0, 1]
    tensors, _ = read_matconvnet(mat_file)
    rng = np.random.default_rng(7)
    image_rgb = rng.uniform(-1, 1, (10, 13, 3)).astype(np.float32)  # non-square: catches H/W swaps
    expected = vl_nnconv_reference(image_rgb, mat_kernel, mat_bias)
    got = jax_conv(image_rgb[:, :, ::-1].copy(), tensors["block1_conv1/kernel"], tensors["block1_conv1/bias"])
    assert got.shape == expected.shape == (10, 13, 64)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    # The transposed reading would be a different network: make sure this test can tell.
    swapped = tensors["block1_conv1/kernel"].transpose(1, 0, 2, 3)
    transposed = jax_conv(image_rgb[:, :, ::-1].copy(), swapped, tensors["block1_conv1/bias"])
    assert not np.allclose(transposed, expected, rtol=1e-2, atol=1e-2)


# --------------------------------------------------------------------------------------------
# MatConvNet bad inputs


def test_matconvnet_missing_conv_layer_is_named(tmp_path, params):
    path = tmp_path / "partial.mat"
    write_matconvnet(path, params, layout="old-weights", skip={"conv4_1"})
    with pytest.raises(WeightsError) as error:
        read_matconvnet(path)
    message = one_line_error(error)
    assert "'conv4_1'" in message and "block4_conv1" in message and "missing" in message


def test_matconvnet_wrong_kernel_shape(tmp_path, params):
    path = tmp_path / "odd.mat"
    write_matconvnet(path, params, layout="new-meta", first_kernel=np.zeros((3, 3, 1, 64), np.float32))
    with pytest.raises(WeightsError) as error:
        read_matconvnet(path)
    message = one_line_error(error)
    assert "conv1_1 kernel" in message and "(3, 3, 1, 64)" in message and "expected (3, 3, 3, 64)" in message


def test_matconvnet_missing_average_image(tmp_path, params):
    path = tmp_path / "nomean.mat"
    write_matconvnet(path, params, layout="new-meta", normalization=False)
    with pytest.raises(WeightsError) as error:
        read_matconvnet(path)
    assert "no normalization.averageImage" in one_line_error(error)


def test_matconvnet_conv_layer_without_weights(tmp_path):
    path = tmp_path / "noweights.mat"
    scipy.io.savemat(path, {"layers": _cell({"name": "conv1_1", "type": "conv"})})
    with pytest.raises(WeightsError) as error:
        read_matconvnet(path)
    message = one_line_error(error)
    assert "conv1_1" in message and "'filters'/'biases'" in message


@pytest.mark.parametrize(
    "content",
    [b"", b"definitely not a MAT file " * 20, None, b"MATLAB 7.3 MAT-file".ljust(124) + b"\x00\x02IM" + b"\x00" * 64],
    ids=["empty", "garbage", "truncated", "v7.3"],
)
def test_matconvnet_unreadable_files(tmp_path, mat_file, content):
    path = tmp_path / "bad.mat"
    if content is None:
        data = mat_file.read_bytes()
        content = data[: len(data) // 2]
    path.write_bytes(content)
    with pytest.raises(WeightsError) as error:
        read_matconvnet(path)
    message = one_line_error(error)
    assert str(path) in message
    if not content:
        assert "empty" in message
    elif content.startswith(b"MATLAB 7.3"):
        assert "v7.3" in message
    else:
        assert "not a readable MATLAB .mat file" in message


def test_matconvnet_not_a_network(tmp_path):
    path = tmp_path / "other.mat"
    scipy.io.savemat(path, {"x": np.ones((2, 2))})
    with pytest.raises(WeightsError) as error:
        read_matconvnet(path)
    assert "no 'layers' variable" in one_line_error(error)


def test_matconvnet_missing_path(tmp_path):
    with pytest.raises(InputNotFoundError):
        read_matconvnet(tmp_path / "nope.mat")
