"""Optical flow between frames, warping along it, occlusion masks, and the warping error.

Conventions: images are float32 (H, W, C) or (H, W) in [0, 1]; a flow is float32 (H, W, 2) of
(dx, dy) in pixels, and ``flow(a, b)`` maps each pixel of ``a`` to where it is in ``b``:
``a[y, x] ~ b[y + dy, x + dx]``. So ``warp(b, flow(a, b))`` looks like ``a``.

The flow is OpenCV's DIS (Kroeger et al. 2016), "medium" preset, chosen by measurement
(benchmarks/flow_choice.py, noisy pan and zoom at 384x288, docs/video.md): DIS medium 12-13 ms
per flow with an end-point error of 0.06-0.09 px; scikit-image's TV-L1 0.08-0.09 px in 830-940 ms
and ILK 0.09-0.10 px in 470 ms; Farneback 0.12-0.15 px in 21-28 ms; DIS fast 0.08-0.17 px in
2.4 ms. Two flows per frame at DIS speed cost less than the fast network's pass; TV-L1 would
cost ten times it. Bilinear warping visibly softened the fast method's strokes over a few frames
of blending, so the warp is bicubic. Plain numpy and OpenCV: no JAX.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

# Ruder et al. 2016 (artistic-videos, consistencyChecker): a pixel is occluded when the forward
# and backward flows do not cancel, |w + f|^2 > 0.01 (|w|^2 + |f|^2) + 0.5, and lies on a
# motion boundary when |grad u|^2 + |grad v|^2 > 0.01 |w|^2 + 0.002.
_OCCLUSION_RELATIVE, _OCCLUSION_ABSOLUTE = 0.01, 0.5
_BOUNDARY_RELATIVE, _BOUNDARY_ABSOLUTE = 0.01, 0.002


def _gray_u8(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3:
        image = image @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def estimate_flow(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The flow from ``source`` to ``target`` (same shape): (H, W, 2) float32 (dx, dy)."""
    if source.shape != target.shape:
        raise ValueError(f"frames differ in shape: {source.shape} and {target.shape}")
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(_gray_u8(source), _gray_u8(target), None).astype(np.float32)


@functools.lru_cache(maxsize=4)
def _pixel_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(ys, xs) of every pixel, float32, made once per frame size (a video warps twice a frame)."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    ys.flags.writeable = xs.flags.writeable = False
    return ys, xs


def _sample_grid(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = _pixel_grid(*flow.shape[:2])
    return xs + flow[..., 0], ys + flow[..., 1]


def warp(image: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(warped, inside)``: ``warped[y, x] = image[y + dy, x + dx]`` (bilinear, edges replicated)
    and a bool (H, W) mask of the pixels whose source lies inside ``image``."""
    map_x, map_y = _sample_grid(flow)
    h, w = image.shape[:2]
    warped = cv2.remap(
        np.ascontiguousarray(image, np.float32), map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
    )
    inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
    return warped.reshape(image.shape), inside


def consistency_mask(backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Where the previous frame can be trusted: float32 (H, W), 1 or 0, for the current frame.

    ``backward`` is the flow from the current frame to the previous one, ``forward`` the flow
    from the previous frame to the current one. A pixel is 0 when the forward-backward check of
    Ruder et al. 2016 fails (it was hidden in the previous frame), on a motion boundary, or when
    its source lies outside the previous frame.
    """
    forward_back, inside = warp(forward, backward)  # the forward flow, seen from the current frame
    cancel = np.sum(np.square(backward + forward_back), axis=-1)
    size = np.sum(np.square(backward), axis=-1) + np.sum(np.square(forward_back), axis=-1)
    occluded = cancel > _OCCLUSION_RELATIVE * size + _OCCLUSION_ABSOLUTE
    gradients = [np.gradient(backward[..., k]) for k in range(2)]
    variation = sum(np.square(g[0]) + np.square(g[1]) for g in gradients)
    boundary = variation > _BOUNDARY_RELATIVE * np.sum(np.square(backward), axis=-1) + _BOUNDARY_ABSOLUTE
    return (inside & ~occluded & ~boundary).astype(np.float32)


def warping_error(current: np.ndarray, previous: np.ndarray, backward: np.ndarray, mask: np.ndarray) -> float:
    """Lai et al. 2018's warping error of one frame pair, as a mean absolute difference.

    ``previous`` warped onto ``current`` along ``backward`` (the flow current -> previous), then
    the mean over channels and over the pixels where ``mask`` is 1 of |current - warped|. Lai et
    al. average the squared difference; the mean absolute difference reads directly in [0, 1]
    intensity units and weighs a few wrong pixels less.
    """
    warped, inside = warp(previous, backward)
    weight = (np.asarray(mask, np.float32) * inside)[..., None]
    count = float(np.sum(weight)) * current.shape[-1]
    if count == 0:
        raise ValueError("the mask leaves no pixel to compare")
    return float(np.sum(np.abs(current - warped) * weight) / count)
