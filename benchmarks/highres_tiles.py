"""Tiled against untiled optimisation at a size where both fit, judged independently.

Both runs share everything but the last scale: the same whole-image coarse scale (half size),
then the final scale either whole or in forced tiles (``--tile-size``), from the same start and
with the same iterations. The tiled run is the runner's real path (`GatysRunner.stylize` with
``tile_size``, which puts the half-size whole scale in front by itself); the untiled one is the
same coarse run followed by a whole-image run started from it. The judge (`judge.py`, NumPy VGG19
with max pooling) scores both; 100 % crops centred on the tile borders go side by side.

    python benchmarks/highres_tiles.py --size 1024 --tile 640 --iterations 60 \\
        --content ../shared/images/content/astronaut.jpg --style ../shared/images/styles/the_scream.jpg
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import judge

from jaxstyle import prepare
from jaxstyle.config import StyleConfig
from jaxstyle.io.decode import load_image
from jaxstyle.io.encode import save_image
from jaxstyle.methods.gatys import GatysRunner

RESULTS = Path(__file__).resolve().parent / "results"


def crops(tiled: np.ndarray, whole: np.ndarray, plan, side: int = 192) -> np.ndarray:
    """Side-by-side 100 % crops (tiled left, untiled right) centred where the tiles meet: the
    middle of each overlap between neighbours, and the corner where four tiles meet."""
    h, w = tiled.shape[:2]
    th, tw = plan.tile
    centres = []
    if len(plan.cols) > 1:
        centres.append((h // 3, (plan.cols[1] + plan.cols[0] + tw) // 2))
    if len(plan.rows) > 1:
        centres.append(((plan.rows[1] + plan.rows[0] + th) // 2, w // 3))
    if len(plan.rows) > 1 and len(plan.cols) > 1:
        centres.append(((plan.rows[1] + plan.rows[0] + th) // 2, (plan.cols[1] + plan.cols[0] + tw) // 2))
    rows = []
    for y, x in centres:
        top, left = min(max(0, y - side // 2), h - side), min(max(0, x - side // 2), w - side)
        pair = [image[top : top + side, left : left + side] for image in (tiled, whole)]
        rows.append(np.concatenate([pair[0], np.ones((side, 8, 3), np.float32), pair[1]], axis=1))
    gap = np.ones((8, rows[0].shape[1], 3), np.float32)
    return np.concatenate([part for row in rows for part in (row, gap)][:-1], axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--content", required=True)
    parser.add_argument("--style", required=True)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--tile", type=int, default=640)
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--name", default="highres_tiles")
    args = parser.parse_args()

    content, style = load_image(args.content).rgb, load_image(args.style).rgb
    styles = prepare.make_style_set(style)
    config = StyleConfig(max_size=args.size, iterations=args.iterations)

    started = time.perf_counter()
    tiled_runner = GatysRunner(config.replace(tile_size=args.tile), styles)
    plans = tiled_runner.plan(content.shape[:2])
    assert len(plans) == 2 and not plans[0].tiled and plans[1].tiled, plans
    tiled = tiled_runner.stylize(content)
    tiled_seconds = time.perf_counter() - started

    started = time.perf_counter()
    coarse = GatysRunner(config.replace(max_size=max(plans[0].shape)), styles).stylize(content)
    whole = GatysRunner(config.replace(init="image"), styles).stylize(content, init_image=coarse)
    whole_seconds = time.perf_counter() - started

    vgg = judge.load_vgg()
    scores = {
        "tiled": {**judge.ratios(tiled, content, style, vgg), "seconds": round(tiled_seconds, 1)},
        "untiled": {**judge.ratios(whole, content, style, vgg), "seconds": round(whole_seconds, 1)},
    }
    for key in ("style_ratio", "content_ratio"):
        scores[f"{key}_tiled_over_untiled"] = scores["tiled"][key] / scores["untiled"][key]
    scores["mean_abs_difference"] = float(np.abs(tiled - whole).mean())
    tiles = plans[1].tiles()
    record = {
        "content": args.content,
        "style": args.style,
        "size": list(plans[1].shape),
        "tile": list(tiles.tile),
        "tiles": tiles.count,
        "overlap": tiles.overlap,
        "iterations_per_scale": args.iterations,
        "scales": [list(plan.shape) for plan in plans],
        **scores,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(record, indent=1) + "\n")
    save_image(RESULTS / f"{args.name}.crops.png", crops(tiled, whole, tiles), overwrite=True)
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
