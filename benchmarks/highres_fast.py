"""The fast method in windows against the whole image, where both fit: the mean and largest
absolute difference of the [0, 1] outputs, and the time of each (this process, after a warm-up
of both at the same size, so compilation is not counted).

    python benchmarks/highres_fast.py --size 2048 --tile 1024 \\
        --content ../shared/images/content/astronaut.jpg --style ../shared/images/styles/the_scream.jpg
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from jaxstyle import prepare
from jaxstyle.config import StyleConfig
from jaxstyle.io.decode import load_image
from jaxstyle.methods.fast import FastRunner

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--content", required=True)
    parser.add_argument("--style", required=True)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--tile", type=int, default=1024)
    args = parser.parse_args()
    content, style = load_image(args.content).rgb, load_image(args.style).rgb
    config = StyleConfig(method="fast", max_size=args.size)
    runners = {
        "untiled": FastRunner(config, prepare.make_style_set(style)),
        "tiled": FastRunner(config.replace(tile_size=args.tile), prepare.make_style_set(style)),
    }
    results, seconds = {}, {}
    for name, runner in runners.items():
        runner.stylize(content)  # compile
        started = time.perf_counter()
        results[name] = runner.stylize(content)
        seconds[name] = round(time.perf_counter() - started, 2)
    plan = runners["tiled"].plan(content.shape[:2])[0]
    difference = np.abs(results["tiled"] - results["untiled"])
    record = {
        "size": list(plan.shape),
        "window": list(plan.tile),
        "core": plan.core,
        "windows": plan.count,
        "seconds": seconds,
        "mean_abs_difference": float(difference.mean()),
        "max_abs_difference": float(difference.max()),
        "mean_abs_difference_in_8bit_steps": float(difference.mean() * 255),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "highres_fast.json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
