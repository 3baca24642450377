"""Numeric regression test of the embedded 8-bit VGG19 weights, end to end through jaxstyle.

The reference (tests/data/vgg19_embedded_reference.npz) was made by
tests/data/make_vgg19_embedded_reference.py, which shares no code with jaxstyle: it reads the
safetensors file with ``safetensors.numpy``, dequantises ``codebook[codes]`` itself and runs a
float64 NumPy VGG19. Here the same image goes through ``load_weights()`` (the embedded default),
``preprocess`` and ``vgg19_features`` in float32, so a change to the file, to dequantisation, to
the mean or channel order, to padding or to either pooling shows up as a feature mismatch.

The npz keeps, per pooling and layer, per-channel means and standard deviations over the whole map,
the largest absolute value and the features on a grid of rows x cols including the borders (whole
maps from block 4 on). Tolerances are relative to each layer's largest value: float32 against
float64 measured below 1e-6 of it for lax.conv and below 1e-5 for the Winograd path (on CPU; on a
GPU the convolutions are asked for full float32 precision, not TF32).

What it cannot see: a change of one 8-bit code moves the features by ~1e-6 of their scale, below
float32 noise, and a weight whose input channel is inactive for this image moves nothing at all;
the sha256 check covers the file byte for byte, the features cover what jaxstyle makes of it.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle.nets.vgg import prepare_params, preprocess, vgg19_features
from jaxstyle.weights import DEFAULT_WEIGHTS_SHA256, default_weights_path, load_weights

REFERENCE = Path(__file__).parent / "data" / "vgg19_embedded_reference.npz"
SIDE = 32
LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1", "relu5_4")
POOLINGS = ("avg", "max")
RTOL = 1e-4  # of each layer's largest |feature|


def smooth_image(side: int = SIDE) -> np.ndarray:
    """The generator's image, from the same closed-form formulas (no RNG): waves plus a blob, RGB [0, 1]."""
    y, x = np.mgrid[:side, :side].astype(np.float64) / (side - 1)
    red = 0.5 + 0.4 * np.sin(2.0 * np.pi * (1.5 * x + 0.5 * y))
    green = 0.5 + 0.3 * np.cos(2.0 * np.pi * (2.0 * y - x)) + 0.15 * np.sin(9.0 * x) * np.sin(7.0 * y)
    blue = 0.1 + 0.8 * np.exp(-((x - 0.6) ** 2 + (y - 0.35) ** 2) / 0.05)
    return np.stack([red, green, blue], axis=-1)


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as data:
        return {name: data[name] for name in data.files}


@pytest.fixture(scope="module")
def weights():
    return load_weights()


@pytest.fixture(scope="module")
def image(weights) -> jax.Array:
    return preprocess(jnp.asarray(smooth_image(), jnp.float32).reshape(1, SIDE, SIDE, 3), weights.mean_bgr)


@functools.cache
def _features_fn(pooling: str, layers: tuple[str, ...] = LAYERS):
    return jax.jit(functools.partial(vgg19_features, layers=layers, pooling=pooling))


@pytest.fixture(scope="module")
def features(weights, image) -> dict[str, dict[str, np.ndarray]]:
    """{pooling: {layer: (h, w, C) float64}} from the plain (lax.conv) path."""
    params = jax.device_put(weights.params)
    out = {}
    for pooling in POOLINGS:
        with jax.default_matmul_precision("highest"):  # no TF32 on GPUs; a no-op on CPU
            got = _features_fn(pooling)(params, image)
        out[pooling] = {layer: np.asarray(got[layer][0], np.float64) for layer in LAYERS}
    return out


def assert_matches_reference(got: np.ndarray, reference: dict[str, np.ndarray], pooling: str, layer: str, rtol: float):
    key = f"{pooling}__{layer}"
    block = int(layer[4])
    mean, std, samples = reference[f"{key}__mean"], reference[f"{key}__std"], reference[f"{key}__samples"]
    grid, scale = reference[f"{key}__grid"], float(reference[f"{key}__scale"])
    assert got.shape == (SIDE >> (block - 1), SIDE >> (block - 1), mean.shape[0])
    atol = rtol * scale
    np.testing.assert_allclose(got[np.ix_(grid, grid)], samples, rtol=0, atol=atol, err_msg=f"{key} samples")
    np.testing.assert_allclose(got.mean(axis=(0, 1)), mean, rtol=0, atol=atol, err_msg=f"{key} channel means")
    np.testing.assert_allclose(got.std(axis=(0, 1)), std, rtol=0, atol=atol, err_msg=f"{key} channel stds")
    assert np.abs(got).max() == pytest.approx(scale, rel=rtol), f"{key} largest value"


def test_embedded_file_is_the_one_the_reference_was_made_from(reference):
    digest = hashlib.sha256(default_weights_path().read_bytes()).hexdigest()
    assert digest == DEFAULT_WEIGHTS_SHA256
    # If the embedded file is replaced on purpose, rerun tests/data/make_vgg19_embedded_reference.py.
    assert str(reference["weights_sha256"]) == DEFAULT_WEIGHTS_SHA256


def test_image_is_the_generators(reference):
    np.testing.assert_allclose(smooth_image().astype(np.float32), reference["image"], rtol=0, atol=1e-6)


def test_reference_is_not_degenerate(reference):
    """Every layer has many active channels, and the two poolings differ after the first pool."""
    for pooling in POOLINGS:
        for layer in LAYERS:
            key = f"{pooling}__{layer}"
            assert np.count_nonzero(reference[f"{key}__std"]) > reference[f"{key}__std"].size // 10, key
            assert np.count_nonzero(reference[f"{key}__samples"]) > reference[f"{key}__samples"].size // 20, key
    for layer in LAYERS[1:]:
        avg, peak = reference[f"avg__{layer}__samples"], reference[f"max__{layer}__samples"]
        assert np.abs(avg - peak).max() > 0.1 * float(reference[f"max__{layer}__scale"]), layer


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("layer", LAYERS)
def test_features_match_the_float64_reference(features, reference, pooling, layer):
    assert_matches_reference(features[pooling][layer], reference, pooling, layer, RTOL)


def test_winograd_features_match_the_float64_reference(weights, image, reference):
    """The CPU production path (`prepare_params`: Winograd convolutions from block 2 on) with the default
    avg pooling, through relu4_2 (block 5's Winograd kernels would double this file's run time)."""
    layers = LAYERS[:5]
    assert layers[-1] == "relu4_2"
    params = prepare_params(jax.device_put(weights.params), layers, winograd_convs=True)
    assert "winograd" in params["block4_conv2"]
    with jax.default_matmul_precision("highest"):
        got = _features_fn("avg", layers)(params, image)
    for layer in layers:
        assert_matches_reference(np.asarray(got[layer][0], np.float64), reference, "avg", layer, RTOL)
