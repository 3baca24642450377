"""Which optical flow for `jaxstyle video`: speed and end-point error on noisy frames of known motion.

    python benchmarks/flow_choice.py [--out benchmarks/results/flow_choice.json]

A pan (3.3 px right, 1.7 px down per frame) and a 2 % zoom of the bundled photo at 384x288,
sampled with cubic splines, each frame with its own Gaussian noise (sigma 3/255). For each
method: the median of 5 timed calls (after one warm-up) of the flow from frame 5 to frame 4, and
the mean end-point error against the true flow, 20 px away from the borders. Candidates: OpenCV's
DIS (fast and medium presets) and Farneback, scikit-image's TV-L1 and ILK.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.registration import optical_flow_ilk, optical_flow_tvl1

from jaxstyle.io.files import atomic_write_text

H, W = 288, 384


def _u8(image):
    return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)


def _dis(preset):
    return lambda a, b: cv2.DISOpticalFlow_create(preset).calc(_u8(a), _u8(b), None)


def _farneback(a, b):
    return cv2.calcOpticalFlowFarneback(_u8(a), _u8(b), None, 0.5, 4, 15, 3, 5, 1.2, 0)


def _skimage(method):
    def flow(a, b):
        v, u = method(a, b)  # (rows, columns) = (dy, dx), with the same direction as OpenCV's
        return np.stack([u, v], -1)

    return flow


METHODS = {
    "opencv-dis-fast": _dis(cv2.DISOPTICAL_FLOW_PRESET_FAST),
    "opencv-dis-medium": _dis(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM),
    "opencv-farneback": _farneback,
    "skimage-tvl1": _skimage(optical_flow_tvl1),
    "skimage-ilk": _skimage(lambda a, b: optical_flow_ilk(a, b, radius=7)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/flow_choice.json"))
    args = parser.parse_args()
    photo = resources.files("jaxstyle.assets") / "images" / "chelsea.jpg"
    source = np.asarray(Image.open(str(photo)).convert("L").resize((600, 400)), np.float32) / 255
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    rng = np.random.default_rng(0)

    def sample(y, x):
        image = ndimage.map_coordinates(source, [y, x], order=3, mode="reflect")
        return np.clip(image + rng.normal(0, 3 / 255, image.shape), 0, 1).astype(np.float32)

    clips = {
        "pan": (
            lambda t: sample(ys + 40 + 1.7 * t, xs + 40 + 3.3 * t),
            np.stack([np.full((H, W), 3.3), np.full((H, W), 1.7)], -1),
        ),
        "zoom": (
            lambda t: sample(56 + H / 2 + (ys - H / 2) / 1.02**t, 108 + W / 2 + (xs - W / 2) / 1.02**t),
            np.stack([(xs - W / 2) * (1 / 1.02 - 1), (ys - H / 2) * (1 / 1.02 - 1)], -1),
        ),
    }
    rows = []
    for clip, (frame, truth) in clips.items():
        current, previous = frame(5), frame(4)
        for name, method in METHODS.items():
            method(current, previous)
            times = []
            for _ in range(5):
                started = time.perf_counter()
                estimate = method(current, previous)
                times.append(time.perf_counter() - started)
            error = np.sqrt(np.sum((estimate - truth) ** 2, axis=-1))[20:-20, 20:-20].mean()
            row = {"clip": clip, "method": name, "ms": 1000 * statistics.median(times), "epe_px": float(error)}
            rows.append(row)
            print(f"{clip:5s} {name:18s} {row['ms']:8.1f} ms  end-point error {row['epe_px']:.3f} px")
    atomic_write_text(args.out, json.dumps(rows, indent=1), overwrite=True)


if __name__ == "__main__":
    main()
