"""Tests for jaxstyle.io.resize: Lanczos in float32, shapes, precision and range.

Every image is generated here, in tmp_path or in memory; expected values are computed
independently (NumPy), not with the code under test.
"""

from __future__ import annotations

import numpy as np
import pytest

from jaxstyle.errors import UsageError
from jaxstyle.io.resize import resize_long_side, resize_to

# ----------------------------------------------------------------------------- resizing


@pytest.mark.parametrize(
    ("shape", "long_side", "expected"),
    [
        ((300, 400, 3), 200, (150, 200, 3)),
        ((400, 300, 3), 200, (200, 150, 3)),
        ((100, 100, 3), 512, (512, 512, 3)),
        ((20, 30, 3), 300, (200, 300, 3)),
        ((1, 1000, 3), 10, (1, 10, 3)),
        ((30, 20), 15, (15, 10)),
    ],
)
def test_resize_long_side_shapes(shape, long_side, expected):
    out = resize_long_side(np.full(shape, 0.5, np.float32), long_side)
    assert out.shape == expected and out.dtype == np.float32
    np.testing.assert_allclose(out, 0.5, atol=1e-6)


def test_resize_keeps_float_precision_and_range():
    rng = np.random.default_rng(4)
    smooth = 0.5 + 1e-3 * rng.standard_normal((64, 64, 3)).astype(np.float32)
    out = resize_to(smooth, 31, 47)
    assert out.shape == (31, 47, 3)
    quantised = np.round(out * 255) / 255
    assert np.max(np.abs(out - quantised)) > 1e-4  # no trip through 8 bits

    checker = (np.indices((64, 64)).sum(axis=0) % 2).astype(np.float32)
    up = resize_to(np.dstack([checker] * 3), 150, 150)
    assert up.min() >= 0.0 and up.max() <= 1.0  # Lanczos ringing clipped


def test_resize_matches_a_linear_ramp():
    # Lanczos reproduces a linear ramp away from the borders.
    ramp = np.tile(np.linspace(0, 1, 200, dtype=np.float32), (20, 1))
    out = resize_to(ramp, 20, 100)
    centres = (np.arange(100) + 0.5) * 2 - 0.5  # output pixel centres in input coordinates
    np.testing.assert_allclose(out[10, 10:-10], centres[10:-10] / 199, atol=2e-3)


def test_resize_bad_sizes():
    with pytest.raises(UsageError):
        resize_long_side(np.zeros((4, 4, 3), np.float32), 0)
    with pytest.raises(UsageError):
        resize_to(np.zeros((4, 4, 3), np.float32), 0, 3)
    with pytest.raises(ValueError):
        resize_to(np.zeros(4, np.float32), 3, 3)
