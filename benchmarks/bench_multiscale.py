"""Coarse-to-fine vs single-scale optimisation at 512 px: time to reach the same final loss.

    python benchmarks/bench_multiscale.py [--init noise|content] [--iterations 300] [--per-scale 60] [--out ...json]

Both runs minimise the same loss at the final 512 px scale (same content, style, weights, config).
Both start from ``--init`` (noise, as Gatys et al. and jcjohnson/neural-style, or the content);
the multi-scale run optimises at 128 -> 181 -> 256 -> 362 -> 512 px, upsampling the result
between scales. We record the wall time
(compilation included) at which each run's 512 px loss first reaches the single-scale run's final
loss.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from jaxstyle.config import StyleConfig
from jaxstyle.image import load_image, save_image
from jaxstyle.stylize import stylize
from jaxstyle.weights import load_weights

ASSETS = Path(__file__).resolve().parents[1] / "jaxstyle" / "assets" / "images"


def run(config: StyleConfig, content, style, weights) -> dict:
    curve: list[tuple[float, int, float]] = []  # (seconds since start, scale index, loss)
    start = time.perf_counter()

    def on_progress(progress) -> None:
        now = time.perf_counter() - start
        losses = np.asarray(progress.report.losses["total"])
        if progress.scale == progress.num_scales - 1:
            curve.append((now, progress.done, float(losses[-1])))

    image = stylize(content, style, config, weights=weights, callback=on_progress)
    return {"seconds": time.perf_counter() - start, "curve": curve, "image": image}


def time_to_reach(curve, target: float) -> float | None:
    for seconds, _, loss in curve:
        if loss <= target:
            return seconds
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300, help="single-scale iterations at 512 px")
    parser.add_argument("--per-scale", type=int, default=60, help="multi-scale iterations per scale")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--init", default="noise", help="start image: noise (Gatys) or content")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/multiscale_noise.json"))
    args = parser.parse_args()

    weights = load_weights()
    content = load_image(ASSETS / "chelsea.jpg").rgb
    style = load_image(ASSETS / "starry_night.jpg").rgb
    base = StyleConfig(max_size=args.size, report_every=5, init=args.init)
    single = run(base.replace(iterations=args.iterations), content, style, weights)
    multi = run(base.replace(iterations=args.per_scale, multiscale_min=128), content, style, weights)
    target = single["curve"][-1][2]
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {platform.node()}",
        "size": args.size,
        "init": args.init,
        "single_scale": {"iterations": args.iterations, "seconds": single["seconds"], "final_loss": target},
        "multi_scale": {
            "iterations_per_scale": args.per_scale,
            "scales": "128 -> 181 -> 256 -> 362 -> 512",
            "seconds": multi["seconds"],
            "final_loss": multi["curve"][-1][2],
            "seconds_to_single_scale_final_loss": time_to_reach(multi["curve"], target),
        },
        "curves": {"single": single["curve"], "multi": multi["curve"]},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    save_image(args.out.with_suffix(".single.jpg"), single["image"], overwrite=True)
    save_image(args.out.with_suffix(".multi.jpg"), multi["image"], overwrite=True)
    s, m = result["single_scale"], result["multi_scale"]
    print(f"single-scale: {s['iterations']} its, {s['seconds']:.0f} s, final loss {s['final_loss']:.4g}")
    print(
        f"multi-scale:  {m['iterations_per_scale']}/scale, {m['seconds']:.0f} s, final loss {m['final_loss']:.4g}, "
        f"reached the single-scale final loss after {m['seconds_to_single_scale_final_loss']} s"
    )


if __name__ == "__main__":
    main()
