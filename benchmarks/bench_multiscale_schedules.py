"""Coarse-to-fine schedules that `stylize` does not offer, against one single-scale run.

    python benchmarks/bench_multiscale_schedules.py [--size 256] [--init noise] [--out ...json]

`bench_multiscale.py` measures the product's schedule (sqrt(2) steps). This script asks whether
any other schedule would reach the single-scale final loss sooner: factor-2 steps, one coarse
scale, more coarse iterations, and a "detail" variant that adds the init's own fine band (the
init minus its round trip through the coarse size) back after each upsampling, so that the fine
layers do not start from a blurred image. Every run optimises the same loss at the final size
from the same init (the coarse scales start from its downsampled copy); the curve records the
final-size loss against wall time from the start of the run (compilation included, the jit
caches cleared before each run).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.config import StyleConfig
from jaxstyle.io.decode import load_image
from jaxstyle.io.resize import resize_to
from jaxstyle.nets.vgg import prepare_params
from jaxstyle.objective import LossSpec, content_targets, style_targets, total_loss, whole_norms
from jaxstyle.optimize import optimize
from jaxstyle.prepare import fit_long_side, initial_image
from jaxstyle.weights import load_weights

ASSETS = Path(__file__).resolve().parents[1] / "jaxstyle" / "assets" / "images"

# name: (coarse long sides as fractions of the final size, iterations at each, detail)
SCHEDULES = {
    "sqrt2_x4_60": ((1 / 4, 1 / 2**1.5, 1 / 2, 1 / 2**0.5), 60, False),
    "sqrt2_x4_60_detail": ((1 / 4, 1 / 2**1.5, 1 / 2, 1 / 2**0.5), 60, True),
    "half_100": ((1 / 2,), 100, False),
    "half_100_detail": ((1 / 2,), 100, True),
    "quarter_half_100": ((1 / 4, 1 / 2), 100, False),
}


def run(params, spec, config, content, style, sides, coarse_iterations, detail, final_iterations) -> list:
    # Every run compiles its own steps, as a fresh `stylize` process would: without this, later runs
    # reuse the earlier runs' compilations of the same shapes and look 10 s per scale faster.
    jax.clear_caches()
    shapes = [fit_long_side(content.shape[:2], side) for side in sides]
    init = initial_image(resize_to(content, *shapes[-1]), config, None)
    curve, image, start_time = [], None, time.perf_counter()
    for index, (h, w) in enumerate(shapes):
        last = index == len(shapes) - 1
        style_shape = fit_long_side(style.shape[:2], max(h, w))
        targets = {
            "content": content_targets(params, jnp.asarray(resize_to(content, h, w)), spec),
            "style": style_targets(params, jnp.asarray(resize_to(style, *style_shape)), spec, (h, w)),
        }
        references = [resize_to(style, h, w)]
        targets["norm"] = whole_norms(params, resize_to(content, h, w), references, (1.0,), targets, spec)
        if image is None:
            start = init if last else resize_to(init, h, w)
        else:
            start = resize_to(image, h, w)
            if detail:
                round_trip = resize_to(resize_to(init, *image.shape[:2]), h, w)
                start = np.clip(start + resize_to(init, h, w) - round_trip, 0.0, 1.0)
        if last:
            curve.append(
                (time.perf_counter() - start_time, 0, float(total_loss(params, jnp.asarray(start), targets, spec)[0]))
            )

        def record(report, last=last):
            if last:
                curve.append((time.perf_counter() - start_time, report.iteration, float(report.losses["total"][-1])))

        iterations = final_iterations if last else coarse_iterations
        result = optimize(
            params, jnp.asarray(start), targets, config.replace(iterations=iterations), spec, callback=record
        )
        image = np.asarray(result.image)
    return curve


def time_to(curve, target):
    return next(((t, i) for t, i, loss in curve if loss <= target), (None, None))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=300, help="iterations at the final size")
    parser.add_argument("--init", default="noise")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/multiscale_schedules_256.json"))
    args = parser.parse_args()

    weights = load_weights()
    content = load_image(ASSETS / "chelsea.jpg").rgb
    style = load_image(ASSETS / "starry_night.jpg").rgb
    config = StyleConfig(max_size=args.size, init=args.init, report_every=5)
    spec = LossSpec.from_config(config, weights.mean_bgr)
    params = jax.device_put(prepare_params(weights.params, spec.layers))
    common = (params, spec, config, content, style)

    single = run(*common, [args.size], 0, False, args.iterations)
    target, single_seconds = single[-1][2], single[-1][0]
    print(f"single scale: {args.iterations} its, {single_seconds:.0f} s, final loss {target:.4g}")
    results = {}
    for name, (fractions, coarse, detail) in SCHEDULES.items():
        sides = [round(args.size * f) for f in fractions] + [args.size]
        curve = run(*common, sides, coarse, detail, args.iterations)
        seconds, iterations = time_to(curve, target)
        results[name] = {
            "sides": sides,
            "coarse_iterations": coarse,
            "detail": detail,
            "coarse_seconds": curve[0][0],
            "reached_after_iterations": iterations,
            "reached_seconds": seconds,
            "speedup": single_seconds / seconds if seconds else None,
            "final_loss": curve[-1][2],
            "curve": curve,
        }
        outcome = (
            f"target after {iterations} its, {seconds:.0f} s ({single_seconds / seconds:.2f}x)"
            if seconds
            else "target not reached"
        )
        print(f"{name:20s} coarse {curve[0][0]:5.1f} s, final {curve[-1][2]:.4g}: {outcome}")
    summary = {
        "machine": f"{platform.processor() or platform.machine()}, {platform.node()}",
        "size": args.size,
        "init": args.init,
        "single_scale": {
            "iterations": args.iterations,
            "seconds": single_seconds,
            "final_loss": target,
            "curve": single,
        },
        "schedules": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
