"""Style masks, judged: does each region take its own style, and does an uncovered region stay the photo?

For each photo and pair of paintings, two mask layouts, both methods, through the public
``jaxstyle.stylize(..., style_masks=...)``:

* **split**: style A on the left half, style B on the right (complementary masks). Each side,
  away from the seam (the outer 35 %), is judged against both paintings by the independent
  NumPy VGG of `judge.py`: its style ratio against its own painting must be lower than against
  the other one.
* **band**: A on the left 30 %, B on the right 30 %, the middle 40 % covered by no mask. The
  middle 20 % is judged for its content ratio (0 = the photo's features, 1 = as far as the
  painting), beside the same crop of an unmasked single-style run (style A over everything).

Writes a JSON of every ratio and one contact sheet per pair (photo, masks, fast and optimised
results of both layouts). Images come from ``../shared/images``.

    python benchmarks/masks_quality.py --json benchmarks/results/masks_quality.json \
        --sheets docs/gallery --size 384
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

SHARED = Path(__file__).resolve().parents[2] / "shared" / "images"
PAIRS = (
    ("chelsea", "content/chelsea.jpg", "styles/starry_night.jpg", "styles/great_wave.jpg"),
    ("astronaut", "content/astronaut.jpg", "styles/the_scream.jpg", "styles/composition_vii.jpg"),
    ("china", "content/china.jpg", "styles/water_lilies.jpg", "styles/udnie.jpg"),
    ("rocket", "content/rocket.jpg", "styles/shipwreck.jpg", "styles/great_wave.jpg"),
)
OUTER = 0.35  # the share of each side judged in the split layout, away from the seam
BAND = (0.3, 0.7)  # the uncovered middle of the band layout
JUDGED_BAND = (0.4, 0.6)  # the part of it judged, away from the feathered edges


def layout(name: str, shape: tuple[int, int]) -> list[np.ndarray]:
    """The two masks (style A, style B) of a layout, at the photo's own size."""
    h, w = shape
    columns = np.arange(w)[None, :].repeat(h, axis=0) / w
    if name == "split":
        left = (columns < 0.5).astype(np.float32)
        return [left, 1.0 - left]
    return [(columns < BAND[0]).astype(np.float32), (columns >= BAND[1]).astype(np.float32)]


def columns(image: np.ndarray, start: float, stop: float) -> np.ndarray:
    w = image.shape[1]
    return image[:, round(start * w) : round(stop * w)]


def mask_picture(masks: list[np.ndarray]) -> np.ndarray:
    """The masks as one RGB picture: style A red, style B blue, the photo's share grey."""
    a, b = masks
    rest = np.clip(1.0 - a - b, 0.0, 1.0)
    return np.stack([a + 0.5 * rest, 0.5 * rest, b + 0.5 * rest], axis=-1).astype(np.float32)


def sheet(row: list[np.ndarray], height: int) -> np.ndarray:
    from jaxstyle.io.resize import resize_to

    tiles = [resize_to(image, height, round(image.shape[1] * height / image.shape[0])) for image in row]
    gap = np.ones((height, 8, 3), np.float32)
    out = []
    for tile in tiles:
        out += [tile, gap]
    return np.concatenate(out[:-1], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--sheets", type=Path, default=None, help="folder for the contact sheets")
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--pairs", type=int, default=len(PAIRS))
    parser.add_argument("--iterations", type=int, default=None, help="the optimisation's (default: its own)")
    args = parser.parse_args()

    from jaxstyle import StyleConfig, stylize
    from jaxstyle.io.decode import load_image
    from jaxstyle.io.encode import save_image
    from jaxstyle.io.resize import resize_to

    vgg = judge.load_vgg()
    results = {"size": args.size, "iterations": args.iterations, "pairs": {}}
    for name, photo_path, a_path, b_path in PAIRS[: args.pairs]:
        photo = load_image(SHARED / photo_path).rgb
        styles = [load_image(SHARED / path).rgb for path in (a_path, b_path)]
        record = results["pairs"].setdefault(name, {"styles": [a_path, b_path]})
        row = [photo]
        for method in ("fast", "gatys"):
            extra = {"iterations": args.iterations} if args.iterations and method == "gatys" else {}
            config = StyleConfig(method=method, max_size=args.size, **extra)
            single = stylize(photo, styles[:1], config)
            small = resize_to(photo, *single.shape[:2])
            for kind in ("split", "band"):
                masks = layout(kind, photo.shape[:2])
                started = time.perf_counter()
                out = stylize(photo, styles, config, style_masks=masks)
                seconds = time.perf_counter() - started
                entry = {"seconds": round(seconds, 1)}
                if kind == "split":
                    for side, (start, stop), own, other in (
                        ("left", (0.0, OUTER), 0, 1),
                        ("right", (1.0 - OUTER, 1.0), 1, 0),
                    ):
                        crop, photo_crop = columns(out, start, stop), columns(small, start, stop)
                        to_own = judge.ratios(crop, photo_crop, styles[own], vgg)
                        to_other = judge.ratios(crop, photo_crop, styles[other], vgg)
                        entry[side] = {
                            "style_ratio_own": round(to_own["style_ratio"], 4),
                            "style_ratio_other": round(to_other["style_ratio"], 4),
                            "own_lower": to_own["style_ratio"] < to_other["style_ratio"],
                        }
                else:
                    band = columns(out, *JUDGED_BAND)
                    photo_band = columns(small, *JUDGED_BAND)
                    styled = columns(single, *JUDGED_BAND)
                    entry["uncovered_content_ratio"] = round(
                        judge.ratios(band, photo_band, styles[0], vgg)["content_ratio"], 4
                    )
                    entry["unmasked_content_ratio"] = round(
                        judge.ratios(styled, photo_band, styles[0], vgg)["content_ratio"], 4
                    )
                    entry["uncovered_mean_abs_difference"] = round(float(np.abs(band - photo_band).mean()), 4)
                record[f"{method}_{kind}"] = entry
                if kind == "split" and method == "fast":
                    row.append(mask_picture([resize_to(m, *out.shape[:2]) for m in masks]))
                row.append(out)
                print(name, method, kind, json.dumps(entry), flush=True)
        if args.sheets is not None:
            args.sheets.mkdir(parents=True, exist_ok=True)
            save_image(args.sheets / f"masks_{name}.jpg", sheet(row, 192), overwrite=True)
    checks = [
        side["own_lower"]
        for record in results["pairs"].values()
        for key, entry in record.items()
        if key.endswith("_split")
        for side in (entry["left"], entry["right"])
    ]
    results["own_style_lower"] = f"{sum(checks)} of {len(checks)} regions"
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    print(results["own_style_lower"])


if __name__ == "__main__":
    main()
