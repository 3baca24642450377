"""Temporal consistency of `jaxstyle video` on synthetic clips of known motion, against frame by frame.

    python benchmarks/video_consistency.py [--methods fast gatys] [--out benchmarks/results/video_consistency.json]

Three clips are made from the bundled photo with camera noise (sigma 3/255, new each frame): a
pan, a zoom, and a disc cut from the painting moving over a still background. Their true flow
and occlusions are known, so the judge needs no flow estimate: the warping error of Lai et al.
2018 (the previous output warped onto the current one along the true flow, mean abs difference
over the pixels visible in both) per frame pair, averaged over the clip. Each clip runs through
the real pipeline (`run_video`, lossless APNG in and out, so no codec adds noise), once frame by
frame (temporal weight 0) and once at each temporal weight asked for. The style loss is
jaxstyle's own Gram loss (relu1_1..relu5_1, unit weights) of each output frame against the style
image, averaged over the frames; the target is a warping error at most 0.5x frame by frame's with
a style loss within 10 % of frame by frame's. Side-by-side animations go to docs/gallery/.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from importlib import resources
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from PIL import Image
from scipy import ndimage

from jaxstyle.config import StyleConfig
from jaxstyle.io.decode import load_image
from jaxstyle.io.files import atomic_write_text
from jaxstyle.io.resize import resize_to
from jaxstyle.io.video import Frame, VideoInfo, probe, read_frames, write_frames
from jaxstyle.nets.vgg import prepare_params
from jaxstyle.objective import LossSpec, loss_terms, style_targets, whole_norms
from jaxstyle.video import flow, run_video
from jaxstyle.weights import load_weights

NOISE = 3 / 255
ASSETS = resources.files("jaxstyle.assets") / "images"


def _source(name: str) -> np.ndarray:
    return np.asarray(Image.open(str(ASSETS / name)).convert("RGB"), np.float32) / 255.0


def _sample(image: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    return np.stack([ndimage.map_coordinates(image[..., c], [ys, xs], order=3, mode="reflect") for c in range(3)], -1)


def make_clip(kind: str, size: tuple[int, int], frames: int, seed: int = 0):
    """``(frames, backward flows, masks)``: noisy RGB frames in [0, 1], and for each frame after the
    first the true flow to the previous frame and the mask of pixels visible in both."""
    h, w = size
    photo, painting = _source("chelsea.jpg"), _source("starry_night.jpg")
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    rng = np.random.default_rng(seed)
    clean, flows, masks = [], [], []
    for t in range(frames):
        if kind == "pan":  # 1.3 px down and 2.7 px right per frame
            v = np.array([2.7, 1.3])
            clean.append(_sample(photo, ys + 20 + t * v[1], xs + 20 + t * v[0]))
            backward = np.broadcast_to(v, (h, w, 2)).copy()
        elif kind == "zoom":  # 2 % per frame into the centre
            scale, cy, cx = 1.02**t, h / 2, w / 2
            clean.append(_sample(photo, 30 + cy + (ys - cy) / scale, 60 + cx + (xs - cx) / scale))
            backward = np.stack([(xs - cx) * (1 / 1.02 - 1), (ys - cy) * (1 / 1.02 - 1)], -1)
        else:  # "object": a disc of the painting crossing the still photo, 3 px right, 1 px down
            radius, u = h / 4, np.array([3.0, 1.0])
            cx, cy = w / 4 + t * u[0], h / 2 + t * u[1]
            inside = np.clip(radius + 0.5 - np.hypot(xs - cx, ys - cy), 0, 1)[..., None]  # anti-aliased edge
            background = _sample(photo, ys + 40, xs + 40)
            disc = _sample(painting, ys + 100 - t * u[1], xs + 100 - t * u[0])  # moves with the disc
            clean.append(inside * disc + (1 - inside) * background)
            core = np.hypot(xs - cx, ys - cy) < radius - 2
            backward = np.where(core[..., None], -u, 0.0)
            was = np.hypot(xs - (cx - u[0]), ys - (cy - u[1]))
            edge = np.abs(np.hypot(xs - cx, ys - cy) - radius) < 3
            covered = (was < radius + 2) & ~core  # background that the disc hid a frame ago
        if t > 0:
            source_x, source_y = xs + backward[..., 0], ys + backward[..., 1]
            mask = (source_x >= 0) & (source_x <= w - 1) & (source_y >= 0) & (source_y <= h - 1)
            if kind == "object":
                mask &= ~covered & ~edge
            flows.append(backward.astype(np.float32))
            masks.append(mask.astype(np.float32))
    noisy = [np.clip(f + rng.normal(0, NOISE, f.shape), 0, 1).astype(np.float32) for f in clean]
    return noisy, flows, masks


def mean_warping_error(frames, flows, masks) -> float:
    return float(np.mean([flow.warping_error(b, a, f, m) for a, b, f, m in zip(frames, frames[1:], flows, masks)]))


class StyleJudge:
    """jaxstyle's Gram style loss of a frame against the style image (unit weights)."""

    def __init__(self, style: np.ndarray) -> None:
        weights = load_weights()
        self.spec = LossSpec.from_config(
            StyleConfig(content_weight=0.0, style_weight=1.0, tv_weight=0.0, loss_units="raw")
        )
        self.params = prepare_params(weights.params, self.spec.layers, winograd_convs=False)
        self.style = jnp.asarray(style)
        self.targets: dict = {}

    def __call__(self, frame: np.ndarray) -> float:
        shape = frame.shape[:2]
        if shape not in self.targets:
            targets = {"content": {}, "style": style_targets(self.params, self.style, self.spec, shape)}
            reference = [resize_to(np.asarray(self.style), *shape)]
            targets["norm"] = whole_norms(self.params, frame, reference, (1.0,), targets, self.spec)
            self.targets[shape] = targets
        return float(loss_terms(self.params, jnp.asarray(frame), self.targets[shape], self.spec)["style"])


def run_clip(folder: Path, frames, config: StyleConfig, style: Path, name: str) -> tuple[list[np.ndarray], float]:
    info = VideoInfo(folder / "src", "animation", frames[0].shape[:2], len(frames), 24, "PNG", None)
    clip = folder / f"{name}.in.png"
    if not clip.exists():
        as_frames = (Frame(i, np.round(f * 255).astype(np.uint8), i / 24, 1 / 24) for i, f in enumerate(frames))
        write_frames(clip, as_frames, info)
    output = folder / f"{name}.{config.method}.{config.resolved_temporal_weight:g}.png"
    started = time.perf_counter()
    run_video(clip, [style], output, config, overwrite=True)
    seconds = time.perf_counter() - started
    return [f.rgb.astype(np.float32) / 255.0 for f in read_frames(probe(output))], seconds


def side_by_side(path: Path, left: list[np.ndarray], right: list[np.ndarray]) -> None:
    gap = np.ones((left[0].shape[0], 6, 3), np.float32)
    frames = [np.concatenate([a, gap, b], axis=1) for a, b in zip(left, right)]
    info = VideoInfo(path, "animation", frames[0].shape[:2], len(frames), 12, "WEBP", None)
    as_frames = (Frame(i, np.round(f * 255).astype(np.uint8), i / 12, 1 / 12) for i, f in enumerate(frames))
    write_frames(path, as_frames, info, overwrite=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["fast", "gatys"])
    parser.add_argument("--clips", nargs="+", default=["pan", "zoom", "object"])
    parser.add_argument("--fast-weights", type=float, nargs="+", default=[0.6])
    parser.add_argument("--gatys-weights", type=float, nargs="+", default=[1e8])
    parser.add_argument("--gatys-iterations", type=int, default=60)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/video_consistency.json"))
    parser.add_argument("--gallery", type=Path, default=Path("docs/gallery"))
    args = parser.parse_args()
    style = Path(str(ASSETS / "starry_night.jpg"))
    judge = StyleJudge(load_image(style).rgb)
    plans = {
        "fast": ((320, 180), 24, StyleConfig(method="fast", max_size=320), args.fast_weights),
        "gatys": (
            (192, 108),
            10,
            StyleConfig(method="gatys", max_size=192, iterations=args.gatys_iterations),
            args.gatys_weights,
        ),
    }
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for method in args.methods:
            (w, h), count, config, weights = plans[method]
            for kind in args.clips:
                frames, flows, masks = make_clip(kind, (h, w), count)
                name = f"{kind}-{w}x{h}"
                row = {"method": method, "clip": kind, "size": [w, h], "frames": count}
                row["input_warping_error"] = mean_warping_error(frames, flows, masks)
                alone, seconds = run_clip(folder, frames, config.replace(temporal_weight=0.0), style, name)
                row["frame_by_frame"] = {
                    "warping_error": mean_warping_error(alone, flows, masks),
                    "style_loss": float(np.mean([judge(f) for f in alone])),
                    "seconds": seconds,
                }
                for weight in weights:
                    linked, seconds = run_clip(folder, frames, config.replace(temporal_weight=weight), style, name)
                    result = {
                        "temporal_weight": weight,
                        "warping_error": mean_warping_error(linked, flows, masks),
                        "style_loss": float(np.mean([judge(f) for f in linked])),
                        "seconds": seconds,
                    }
                    result["error_ratio"] = result["warping_error"] / row["frame_by_frame"]["warping_error"]
                    result["style_ratio"] = result["style_loss"] / row["frame_by_frame"]["style_loss"]
                    row.setdefault("temporal", []).append(result)
                    if weight == weights[0]:
                        side_by_side(args.gallery / f"video_{method}_{kind}.webp", alone, linked)
                rows.append(row)
                print(json.dumps(row))
    atomic_write_text(args.out, json.dumps(rows, indent=1), overwrite=True)


if __name__ == "__main__":
    main()
