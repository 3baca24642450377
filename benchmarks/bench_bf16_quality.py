"""Quality effect of --precision bfloat16: final loss of the same run, re-evaluated in float32.

    python benchmarks/bench_bf16_quality.py [--size 256] [--iterations 100]

Stylizes the bundled content/style pair once in float32 and once in bfloat16 (same config, seed
and start), then evaluates both results with the float32 loss, so the numbers compare.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax.numpy as jnp

from jaxstyle.config import StyleConfig
from jaxstyle.io.decode import load_image
from jaxstyle.io.resize import resize_to
from jaxstyle.objective import LossSpec, content_targets, loss_terms, style_targets, total_of, whole_norms
from jaxstyle.prepare import fit_long_side
from jaxstyle.stylization import stylize
from jaxstyle.weights import load_weights

ASSETS = Path(__file__).resolve().parents[1] / "jaxstyle" / "assets" / "images"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bf16_quality.json"))
    args = parser.parse_args()
    weights = load_weights()
    content = load_image(ASSETS / "chelsea.jpg").rgb
    style = load_image(ASSETS / "starry_night.jpg").rgb
    base = StyleConfig(max_size=args.size, iterations=args.iterations)
    h, w = fit_long_side(content.shape[:2], args.size)
    spec = LossSpec.from_config(base, weights.mean_bgr)
    params = weights.params
    targets = {
        "content": content_targets(params, jnp.asarray(resize_to(content, h, w)), spec),
        "style": style_targets(params, jnp.asarray(resize_to(style, h, w)), spec, (h, w)),
    }
    references = [resize_to(style, h, w)]
    targets["norm"] = whole_norms(params, resize_to(content, h, w), references, (1.0,), targets, spec)
    results = {}
    for precision in ("float32", "bfloat16"):
        image = stylize(content, [style], base.replace(precision=precision), weights=weights)
        terms = loss_terms(params, jnp.asarray(image), targets, spec)
        results[precision] = {name: float(value) for name, value in terms.items()}
        results[precision]["total"] = float(total_of(terms))
    results["bf16_over_f32_total"] = results["bfloat16"]["total"] / results["float32"]["total"]
    args.out.write_text(json.dumps({"size": args.size, "iterations": args.iterations, **results}, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
