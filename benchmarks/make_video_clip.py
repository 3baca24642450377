"""A test clip for timing `jaxstyle video`: a slow pan and zoom over the bundled photo, with audio.

    python benchmarks/make_video_clip.py clip.mp4 [--frames 96] [--size 640x360] [--fps 24]

The photo is upscaled and sampled along a path that pans 2 px and zooms 0.2 % per frame, each
frame with its own camera noise (sigma 3/255); a 440 Hz tone plays throughout (AAC). H.264 at
CRF 18, as a phone or camera would record it.
"""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path

import av
import numpy as np
from PIL import Image
from scipy import ndimage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--frames", type=int, default=96)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--fps", type=int, default=24)
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    photo = resources.files("jaxstyle.assets") / "images" / "chelsea.jpg"
    source = np.asarray(Image.open(str(photo)).convert("RGB").resize((3 * w // 2, 3 * h // 2), Image.BICUBIC))
    source = source.astype(np.float32) / 255
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(0)
    with av.open(str(args.output), "w") as out:
        video = out.add_stream("libx264", rate=args.fps, options={"crf": "18"})
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        audio = out.add_stream("aac", rate=48_000)
        audio.layout = "stereo"
        for t in range(args.frames):
            # Sweep back and forth so that any number of frames stays inside the photo.
            phase = (t % 200) if (t // 200) % 2 == 0 else 200 - t % 200
            scale = 1 + 0.002 * phase
            cy, cx = source.shape[0] / 2, source.shape[1] / 2
            sy, sx = cy + (ys - h / 2) / scale, cx - w / 4 + 2 * phase * 0.5 + (xs - w / 2) / scale
            frame = np.stack([ndimage.map_coordinates(source[..., c], [sy, sx], order=1) for c in range(3)], -1)
            frame = np.clip(frame + rng.normal(0, 3 / 255, frame.shape), 0, 1)
            rgb = np.ascontiguousarray(np.round(frame * 255).astype(np.uint8))
            out.mux(video.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(video.encode(None))
        seconds = args.frames / args.fps
        samples = np.arange(int(seconds * 48_000)) / 48_000
        tone = (0.2 * np.sin(2 * np.pi * 440 * samples)).astype(np.float32)
        for start in range(0, len(tone), 1024):
            chunk = np.ascontiguousarray(np.stack([tone[start : start + 1024]] * 2))
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = 48_000, start
            out.mux(audio.encode(frame))
        out.mux(audio.encode(None))


if __name__ == "__main__":
    main()
