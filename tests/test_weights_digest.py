"""`weights.params_digest`: the one digest of a weights PyTree, for both methods.

Batch manifests, the settings hash of a run's parts and the PNG metadata record these digests,
so their values must never change: each expected value below was computed by the two functions
this one replaced (``weights.weights_digest`` of a `VGGWeights`, ``fast.params_digest`` of a
Magenta tree) before they were joined.
"""

from __future__ import annotations

import numpy as np
import pytest

from jaxstyle import methods, prepare
from jaxstyle.config import StyleConfig
from jaxstyle.weights import VGGWeights, params_digest

MEAN_BGR = (103.939, 116.779, 123.68)


def _small_vgg() -> VGGWeights:
    params = {
        "block1_conv1": {
            "kernel": np.arange(6, dtype=np.float32).reshape(1, 1, 2, 3),
            "bias": np.array([0.5, -1, 2], np.float32),
        },
        "block1_conv2": {"kernel": np.zeros((1, 1, 3, 1), np.float32), "bias": np.ones(1, np.float32)},
    }
    return VGGWeights(params=params, mean_bgr=MEAN_BGR, metadata={})


def _small_tree() -> dict:
    return {
        "conv": {"kernel": np.arange(6, dtype=np.float32).reshape(1, 2, 3), "bias": np.array([0.5, -1], np.float32)},
        "norm": [np.arange(3, dtype=np.int32), np.ones((2, 2), np.float16)],
    }


def test_vgg_spelling_keeps_the_recorded_digest():
    weights = _small_vgg()
    digest = params_digest(weights.params, separator="/", trailer=repr(tuple(weights.mean_bgr)))
    assert digest == "352c3a779b83b7b0"


def test_keystr_spelling_keeps_the_recorded_digest():
    assert params_digest(_small_tree()) == "10552fecb3ca1f8d"


def test_every_part_of_the_weights_changes_the_digest():
    weights = _small_vgg()
    base = params_digest(weights.params, separator="/", trailer=repr(MEAN_BGR))
    changed = {layer: dict(fields) for layer, fields in weights.params.items()}
    changed["block1_conv2"]["bias"] = np.full(1, 2.0, np.float32)
    assert params_digest(changed, separator="/", trailer=repr(MEAN_BGR)) != base  # a value
    retyped = {layer: dict(fields) for layer, fields in weights.params.items()}
    retyped["block1_conv2"]["bias"] = np.ones(1, np.float64)
    assert params_digest(retyped, separator="/", trailer=repr(MEAN_BGR)) != base  # a dtype
    assert params_digest(weights.params, separator="/", trailer=repr((0.0, 0.0, 0.0))) != base  # the mean
    assert params_digest(weights.params, trailer=repr(MEAN_BGR)) != base  # the spelling


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"method": "gatys"}, "84fef1f18fcc283d"),  # the embedded VGG19
        ({"method": "fast"}, "2879da8fba9cde16"),  # the embedded arbitrary-style networks
        ({"method": "fast", "builtin_style": "0"}, "52364c39f2e46a1d"),  # the 26-style network
    ],
)
def test_each_method_records_the_same_weights_id_as_before(settings, expected):
    config = StyleConfig(max_size=64, **settings)
    styles = None if "builtin_style" in settings else [np.full((32, 32, 3), 0.5, np.float32)]
    runner = methods.setup(config, prepare.make_style_set(styles, None, config))
    assert runner.weights_id == expected
