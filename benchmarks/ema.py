"""Does an average of the iterates (EMA) beat the last iterate? An experiment for docs/quality.md.

crowsonkb/style-transfer-pytorch returns an exponential moving average of its Adam iterates. This
runs jaxstyle's defaults for the iterations the quality grid's run took (the stopping rule off, so
that the trajectory is the grid's), keeps an EMA of every iterate for a few decays (started at the first
iterate, so it needs no bias correction), and has the independent judge (`benchmarks/judge.py`) score the last iterate and
each average.

    python benchmarks/ema.py --pairs astronaut-scream,chelsea-starry --size 256
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import judge
from quality import PAIRS, RESULTS

DECAYS = (0.8, 0.9, 0.95)


def run(content: np.ndarray, style: np.ndarray, size: int, iterations: int, vgg) -> dict:
    import jaxstyle
    from jaxstyle.config import StyleConfig

    config = StyleConfig(max_size=size, iterations=iterations, stop_tolerance=0.0, report_every=1)
    averages = {decay: None for decay in DECAYS}
    seen = 0

    def callback(progress) -> None:
        nonlocal seen
        if progress.report is None or progress.report.recovered:  # a recovery repeats the last good image
            return
        image = progress.report.image().astype(np.float64)
        seen += 1
        for decay, average in averages.items():
            averages[decay] = image if average is None else decay * average + (1 - decay) * image

    last = jaxstyle.stylize(content, style, config, callback=callback)
    scores = {"last": judge.ratios(last, content, style, vgg)}
    for decay, average in averages.items():
        scores[f"ema_{decay}"] = judge.ratios(average.astype(np.float32), content, style, vgg)
    return {"iterations": seen, "scores": scores}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default="astronaut-scream,chelsea-starry,china-lilies,dancers-wave")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--images", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "images")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    from jaxstyle.io.decode import load_image

    grid = json.loads((args.results / "quality_defaults.json").read_text())["runs"]
    path = args.results / f"ema_{args.size}.json"
    results = json.loads(path.read_text()) if path.exists() else {"runs": []}
    done = {run["pair"] for run in results["runs"]}
    vgg = judge.load_vgg()
    for name, content_path, style_path in PAIRS:
        if name not in args.pairs.split(",") or name in done:
            continue
        reference = next((r for r in grid if r["pair"] == name and r["size"] == args.size), None)
        if reference is None:
            sys.exit(f"no {args.size} px run of {name} in quality_defaults.json to take the iterations from")
        content, style = (load_image(args.images / p).rgb for p in (content_path, style_path))
        outcome = run(content, style, args.size, reference["iterations"], vgg)
        outcome |= {"pair": name, "grid": {k: reference[k] for k in ("style_ratio", "content_ratio")}}
        results["runs"].append(outcome)
        path.write_text(json.dumps(results, indent=1))
        print(name, json.dumps(outcome["scores"]), flush=True)


if __name__ == "__main__":
    main()
