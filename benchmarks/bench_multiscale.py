"""Coarse-to-fine vs single-scale optimisation at 512 px: time to reach the same final loss.

    python benchmarks/bench_multiscale.py [--init noise|content] [--iterations 300] [--coarse-iterations 60] [--out ...json]

Both runs minimise the same loss at the final 512 px scale (same content, style, weights, config)
and start from ``--init`` (noise, as Gatys et al. and jcjohnson/neural-style, or the content).
The single-scale run does ``--iterations`` at 512 px; its final loss is the target. The multi-scale
run does ``--coarse-iterations`` at each scale from 128 px up by sqrt(2) (128, 181, 256 and 362 px
for 512), upsampling the result between scales, then up to ``--iterations`` at the final size, and
stops as soon as its loss there reaches the target. We
record the wall time of both from the call to `stylize` (compilation included).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from jaxstyle.config import StyleConfig
from jaxstyle.io.decode import load_image
from jaxstyle.io.encode import save_image
from jaxstyle.prepare import scale_sizes
from jaxstyle.stylization import stylize
from jaxstyle.weights import load_weights

ASSETS = Path(__file__).resolve().parents[1] / "jaxstyle" / "assets" / "images"


class _Reached(Exception):
    pass


def run(config: StyleConfig, content, style, weights, target: float | None = None) -> dict:
    """Stylize, recording (seconds since start, iterations done, loss) at the final scale."""
    curve: list[tuple[float, int, float]] = []
    start = time.perf_counter()
    reached: dict = {}

    def on_progress(progress) -> None:
        now = time.perf_counter() - start
        if progress.report is None:  # the last report: the result's scores
            return
        losses = np.asarray(progress.report.losses["total"])
        if progress.scale == progress.num_scales - 1:
            curve.append((now, progress.done, float(losses[-1])))
            if target is not None and losses[-1] <= target:
                reached["image"] = progress.report.image()
                raise _Reached

    try:
        image = stylize(content, style, config, weights=weights, callback=on_progress)
    except _Reached:
        image = reached["image"]
    return {"seconds": time.perf_counter() - start, "curve": curve, "image": image}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300, help="single-scale iterations at 512 px")
    parser.add_argument("--coarse-iterations", type=int, default=60, help="multi-scale iterations per coarse scale")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--init", default="noise", help="start image: noise (Gatys) or content")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/multiscale_noise.json"))
    args = parser.parse_args()

    weights = load_weights()
    content = load_image(ASSETS / "chelsea.jpg").rgb
    style = load_image(ASSETS / "starry_night.jpg").rgb
    base = StyleConfig(max_size=args.size, report_every=5, init=args.init)
    single = run(base.replace(iterations=args.iterations), content, style, weights)
    target = single["curve"][-1][2]
    multi_config = base.replace(
        iterations=args.iterations, coarse_iterations=args.coarse_iterations, multiscale_min=128
    )
    multi = run(multi_config, content, style, weights, target=target)
    reached = multi["curve"][-1][2] <= target
    sizes = scale_sizes(content.shape[:2], multi_config)
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {platform.node()}",
        "size": args.size,
        "init": args.init,
        "single_scale": {"iterations": args.iterations, "seconds": single["seconds"], "final_loss": target},
        "multi_scale": {
            "coarse_iterations": args.coarse_iterations,
            "scales": " -> ".join(f"{w}x{h}" for h, w in sizes),
            "iterations_at_final_size": multi["curve"][-1][1] - (len(sizes) - 1) * args.coarse_iterations,
            "seconds": multi["seconds"],
            "final_loss": multi["curve"][-1][2],
            "reached_target": reached,
            "speedup": single["seconds"] / multi["seconds"] if reached else None,
        },
        "curves": {"single": single["curve"], "multi": multi["curve"]},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    save_image(args.out.with_suffix(".single.jpg"), single["image"], overwrite=True)
    save_image(args.out.with_suffix(".multi.jpg"), multi["image"], overwrite=True)
    s, m = result["single_scale"], result["multi_scale"]
    print(f"single-scale: {s['iterations']} its, {s['seconds']:.0f} s, final loss {s['final_loss']:.4g}")
    outcome = f"reached it {m['speedup']:.2f}x faster" if reached else "did not reach it"
    print(
        f"multi-scale:  {m['coarse_iterations']}/coarse scale + {m['iterations_at_final_size']} at the final size, "
        f"{m['seconds']:.0f} s, loss {m['final_loss']:.4g}: {outcome}"
    )


if __name__ == "__main__":
    main()
