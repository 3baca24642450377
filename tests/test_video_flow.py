"""Optical flow, warping, occlusion masks and the warping error (jaxstyle.video.flow).

References are independent of OpenCV: a NumPy cubic-convolution sampler (Keys, a = -0.75, the
kernel OpenCV's INTER_CUBIC uses) with replicated edges, hand-built flows whose consistency is
known, and integer shifts whose warps are exact.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from jaxstyle.video import flow


def _keys(t: np.ndarray, a: float = -0.75) -> np.ndarray:
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def _reference_warp(image: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """image[y + dy, x + dx] by separable cubic convolution, indices clamped to the edges."""
    h, w = image.shape[:2]
    out = np.zeros_like(image, dtype=np.float64)
    for y in range(h):
        for x in range(w):
            sx, sy = x + backward[y, x, 0], y + backward[y, x, 1]
            x0, y0 = int(np.floor(sx)), int(np.floor(sy))
            for j in range(-1, 3):
                for i in range(-1, 3):
                    weight = _keys(sx - (x0 + i)) * _keys(sy - (y0 + j))
                    out[y, x] += weight * image[min(max(y0 + j, 0), h - 1), min(max(x0 + i, 0), w - 1)]
    return out


def _smooth_image(shape: tuple[int, int], seed: int = 0, sigma: float = 3.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.random((*shape, 3)), sigma=(sigma, sigma, 0)).astype(np.float32)


def test_warp_matches_cubic_convolution_reference():
    image = _smooth_image((14, 17), sigma=1.0)
    rng = np.random.default_rng(1)
    backward = rng.uniform(-2.5, 2.5, (14, 17, 2)).astype(np.float32)
    warped, inside = flow.warp(image, backward)
    reference = _reference_warp(image, backward)
    # OpenCV quantises sample positions to 1/32 px: the difference is bounded by the image's
    # slope times 1/64 px, far below the interpolation's own effect.
    assert np.max(np.abs(warped - reference)) < 2e-3
    assert np.mean(np.abs(warped - image)) > 0.01  # the warp did move things
    sx = np.arange(17)[None, :] + backward[..., 0]
    sy = np.arange(14)[:, None] + backward[..., 1]
    np.testing.assert_array_equal(inside, (sx >= 0) & (sx <= 16) & (sy >= 0) & (sy <= 13))


def test_warp_by_whole_pixels_is_a_shift():
    image = np.random.default_rng(2).random((10, 12, 3)).astype(np.float32)
    backward = np.broadcast_to(np.array([2.0, -1.0], np.float32), (10, 12, 2))
    warped, inside = flow.warp(image, backward)
    np.testing.assert_allclose(warped[1:, :10], image[:-1, 2:], atol=1e-6)
    assert inside[1:, :10].all() and not inside[0].any() and not inside[:, 10:].any()


def test_estimate_flow_recovers_a_known_shift():
    big = _smooth_image((80, 100), seed=3)
    # current[y, x] = big[10 + y, 12 + x] = previous[y + 2, x - 3]
    current, previous = big[10:58, 12:76], big[8:56, 15:79]
    backward = flow.estimate_flow(current, previous)
    assert backward.shape == (48, 64, 2) and backward.dtype == np.float32
    centre = backward[8:-8, 8:-8]
    np.testing.assert_allclose(np.median(centre.reshape(-1, 2), axis=0), [-3.0, 2.0], atol=0.25)
    with pytest.raises(ValueError, match="shape"):
        flow.estimate_flow(current, previous[:40])


def test_consistency_mask_keeps_consistent_motion_and_drops_occlusions():
    h, w = 20, 30
    backward = np.broadcast_to(np.array([2.0, 0.0], np.float32), (h, w, 2)).copy()
    forward = -backward
    mask = flow.consistency_mask(backward, forward)
    assert mask.dtype == np.float32
    assert mask[:, : w - 2].all()  # every pixel that has a source in the previous frame
    assert not mask[:, w - 2 :].any()  # its source lies outside the previous frame
    # The previous frame's content at x = 10..15 did not move on: pixels there do not cancel.
    forward[:, 10:16] = 0.0
    mask = flow.consistency_mask(backward, forward)
    assert not mask[:, 8:14].any()  # current pixels whose source is in that region
    assert mask[:, :6].all() and mask[:, 16 : w - 2].all()


def test_consistency_mask_drops_motion_boundaries():
    h, w = 20, 30
    backward = np.zeros((h, w, 2), np.float32)
    backward[:, 15:, 0] = 4.0  # the right half moves, the left half stands still
    forward = np.zeros_like(backward)
    forward[:, 19:, 0] = -4.0
    mask = flow.consistency_mask(backward, forward)
    assert not mask[:, 14:16].any()  # the step in the flow
    assert mask[:, :12].all()


def test_warping_error_of_a_perfect_and_an_offset_sequence():
    previous = _smooth_image((16, 20), seed=4)
    backward = np.broadcast_to(np.array([1.0, 0.0], np.float32), (16, 20, 2))
    current = np.empty_like(previous)
    current[:, :19] = previous[:, 1:]
    current[:, 19] = 0.5  # came into view: not compared
    ones = np.ones((16, 20), np.float32)
    assert flow.warping_error(current, previous, backward, ones) == pytest.approx(0.0, abs=1e-6)
    assert flow.warping_error(current + 0.1, previous, backward, ones) == pytest.approx(0.1, abs=1e-6)
    half = ones.copy()
    half[:, :10] = 0
    shifted = current.copy()
    shifted[:, :10] += 0.3  # only where the mask is 0
    assert flow.warping_error(shifted, previous, backward, half) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="no pixel"):
        flow.warping_error(current, previous, backward, np.zeros_like(ones))
