"""The fast method beside the optimisation on content/style pairs: normalised losses and wall time.

    python benchmarks/quality_fast.py [--size 512] [--pairs 6] [--out benchmarks/results/quality_fast.json]

Per pair and method:

* style ratio: the output's style loss (Gram, relu1_1..relu5_1) over the content image's own
  style loss against the same style image; lower is more of the style;
* content ratio: the output's content loss (relu4_2) over the style image's (resized to the
  output) content loss against the content; lower keeps more of the content;
* wall seconds of the stylization in this process (compilation included, the first pair pays it).

The judge is jaxstyle's own VGG19 loss code (default layers, unit weights), not an independent
one: an independent judge is the quality issue's work. Images come from ../shared/images.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax.numpy as jnp

from jaxstyle.config import StyleConfig
from jaxstyle.io.decode import load_image
from jaxstyle.io.files import atomic_write_text
from jaxstyle.io.resize import resize_to
from jaxstyle.nets.vgg import prepare_params
from jaxstyle.objective import LossSpec, content_targets, loss_terms, style_targets, whole_norms
from jaxstyle.stylization import stylize
from jaxstyle.weights import load_weights

SHARED = Path(__file__).resolve().parents[2] / "shared" / "images"
PAIRS = [
    ("chelsea", "starry_night"),
    ("astronaut", "the_scream"),
    ("coffee", "composition_vii"),
    ("china", "great_wave"),
    ("flower", "udnie"),
    ("rocket", "water_lilies"),
]


def judge(params, spec, output, content, style):
    shape = output.shape[:2]
    targets = {
        "content": content_targets(params, jnp.asarray(content), spec),
        "style": style_targets(params, jnp.asarray(style), spec, shape),
    }
    targets["norm"] = whole_norms(params, content, [resize_to(style, *shape)], (1.0,), targets, spec)

    def terms(image):
        return {k: float(v) for k, v in loss_terms(params, jnp.asarray(image), targets, spec).items()}

    out, own, other = terms(output), terms(content), terms(resize_to(style, *shape))
    return out["style"] / own["style"], out["content"] / other["content"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--pairs", type=int, default=len(PAIRS))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/quality_fast.json"))
    args = parser.parse_args()
    weights = load_weights()
    unit = StyleConfig(content_weight=1.0, style_weight=1.0, tv_weight=0.0)
    spec = LossSpec.from_config(unit, weights.mean_bgr)
    params = prepare_params(weights.params, spec.layers, winograd_convs=False)
    rows = []
    for content_name, style_name in PAIRS[: args.pairs]:
        content = load_image(SHARED / "content" / f"{content_name}.jpg").rgb
        style = load_image(SHARED / "styles" / f"{style_name}.jpg").rgb
        for method in ("fast", "gatys"):
            config = StyleConfig(method=method, max_size=args.size)
            started = time.perf_counter()
            output = stylize(content, style, config, weights=weights if method == "gatys" else None)
            seconds = time.perf_counter() - started
            small_content = resize_to(content, *output.shape[:2])
            side = max(output.shape[:2])
            scale = side / max(style.shape[:2])
            small_style = resize_to(style, round(style.shape[0] * scale), round(style.shape[1] * scale))
            style_ratio, content_ratio = judge(params, spec, output, small_content, small_style)
            row = {
                "content": content_name,
                "style": style_name,
                "method": method,
                "size": list(output.shape[:2]),
                "style_ratio": round(style_ratio, 4),
                "content_ratio": round(content_ratio, 4),
                "seconds": round(seconds, 2),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    payload = json.dumps({"size": args.size, "judge": "jaxstyle VGG19 losses", "runs": rows}, indent=2)
    atomic_write_text(args.out, payload + "\n", overwrite=True)


if __name__ == "__main__":
    main()
