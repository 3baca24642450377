"""Quality benchmark: the optimisation's balance at several sizes, judged independently.

Each run is a whole ``jaxstyle stylize`` process (compile and start-up included in its wall time).
The judge is `benchmarks/judge.py`: its own NumPy VGG19 with max pooling and fixed losses, which
shares nothing with jaxstyle's loss code. Per run it records the judge's style and content ratios,
jaxstyle's own final ratios (from ``--history``), the iterations and the wall time; then it draws
a contact sheet (rows: pairs; columns: content, style, one result per size).

    python benchmarks/quality.py --tag defaults --sizes 256 512          # the 12 pairs
    python benchmarks/quality.py --tag before --baseline --sizes 384 --pairs astronaut-scream
    python benchmarks/quality.py --smoke --work /tmp/q                   # one tiny pair (CI)
    python benchmarks/quality.py --compare before defaults               # time and quality saved

Finished runs are kept in ``benchmarks/results/quality_TAG.json`` and skipped when the command is
run again, so a long grid can be stopped and resumed. Images come from ``../shared/images``
(``--images``); the smoke run uses the two pictures shipped in the package.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import judge

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

# (name, content, style): portraits, an animal, architecture, landscapes, a still life and a
# painting as content; impressionist, expressionist, cubist/abstract, woodblock, romantic,
# flat-colour styles and a photograph as style.
PAIRS = (
    ("astronaut-scream", "content/astronaut.jpg", "styles/the_scream.jpg"),
    ("astronaut-composition", "content/astronaut.jpg", "styles/composition_vii.jpg"),
    ("chelsea-starry", "content/chelsea.jpg", "styles/starry_night.jpg"),
    ("chelsea-wave", "content/chelsea.jpg", "styles/great_wave.jpg"),
    ("china-lilies", "content/china.jpg", "styles/water_lilies.jpg"),
    ("china-udnie", "content/china.jpg", "styles/udnie.jpg"),
    ("rocket-shipwreck", "content/rocket.jpg", "styles/shipwreck.jpg"),
    ("rocket-wave", "content/rocket.jpg", "styles/great_wave.jpg"),
    ("dancers-wave", "styles/dance_foyer.jpg", "styles/great_wave.jpg"),
    ("flower-udnie", "content/flower.jpg", "styles/udnie.jpg"),
    ("coffee-tefare", "content/coffee.jpg", "styles/te_fare.jpg"),
    ("coffee-flower", "content/coffee.jpg", "content/flower.jpg"),
)
SMOKE_PAIR = ("chelsea-starry", "chelsea.jpg", "starry_night.jpg")

# jaxstyle's defaults before the quality work (issue 15): raw loss units, content 5, style 500,
# TV 30, content start, every one of 300 iterations.
BASELINE = (
    "loss_units=raw",
    "content_weight=5",
    "style_weight=500",
    "tv_weight=30",
    "init=content",
    "stop_tolerance=0",
)

STYLE_TARGET, CONTENT_TARGET = 0.25, 0.35  # the targets for the judge's ratios


def run_one(content: Path, style: Path, size: int, sets: tuple[str, ...], out: Path) -> dict:
    """One ``jaxstyle stylize`` process: its wall time, iterations and own final scores."""
    history = out.with_suffix(".history.json")
    command = [str(Path(sys.executable).parent / "jaxstyle"), "--quiet", "stylize", str(content), str(style)]
    command += ["-o", str(out), "--max-size", str(size), "--history", str(history), "--overwrite"]
    for setting in sets:
        command += ["--set", setting]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - start
    recorded = json.loads(history.read_text())
    return {"wall_s": round(wall, 1), "iterations": len(recorded["total"]), "own": recorded.get("final")}


def sheet(runs: list[dict], path: Path, images: Path, thumb: int = 224) -> None:
    """Rows: pairs; columns: content, style, then each size's result with the judge's ratios."""
    from PIL import Image, ImageDraw

    pairs = list(dict.fromkeys(run["pair"] for run in runs))
    sizes = sorted({run["size"] for run in runs})
    canvas = Image.new("RGB", ((2 + len(sizes)) * thumb, len(pairs) * (thumb + 18)), "white")
    draw = ImageDraw.Draw(canvas)
    for row, pair in enumerate(pairs):
        mine = [run for run in runs if run["pair"] == pair]
        top = row * (thumb + 18)
        cells = [(images / mine[0]["content"], pair), (images / mine[0]["style"], "style")]
        for size in sizes:
            run = next((r for r in mine if r["size"] == size), None)
            if run is not None:
                label = f"{size}px s{run['style_ratio']:.2f} c{run['content_ratio']:.2f} {run['wall_s']:.0f}s"
                cells.append((Path(run["output"]), label))
            else:
                cells.append((None, ""))
        for column, (file, label) in enumerate(cells):
            if file is not None and file.exists():
                picture = Image.open(file).convert("RGB")
                picture.thumbnail((thumb, thumb))
                canvas.paste(picture, (column * thumb + (thumb - picture.width) // 2, top))
            draw.text((column * thumb + 4, top + thumb + 3), label, fill="black")
    canvas.save(path, quality=88)


def compare(before: dict, after: dict) -> list[dict]:
    """Per pair and size run in both: iterations and seconds saved, and both runs' judged ratios."""
    rows = []
    for run in after["runs"]:
        old = next((r for r in before["runs"] if (r["pair"], r["size"]) == (run["pair"], run["size"])), None)
        if old is None:
            continue
        rows.append(
            {
                "pair": run["pair"],
                "size": run["size"],
                "iterations": [old["iterations"], run["iterations"]],
                "wall_s": [old["wall_s"], run["wall_s"]],
                "time_fraction": round(run["wall_s"] / old["wall_s"], 3),
                "saved": {
                    "iterations": old["iterations"] - run["iterations"],
                    "s": round(old["wall_s"] - run["wall_s"], 1),
                },
                "style_ratio": [round(old["style_ratio"], 3), round(run["style_ratio"], 3)],
                "content_ratio": [round(old["content_ratio"], 3), round(run["content_ratio"], 3)],
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", default="defaults", help="results go to quality_TAG.json / .jpg")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--pairs", default="all", help="comma-separated pair names, or all")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="FIELD=VALUE for every run")
    parser.add_argument("--baseline", action="store_true", help="today's defaults before issue 15 (BASELINE)")
    parser.add_argument("--images", type=Path, default=ROOT.parent / "shared" / "images")
    parser.add_argument("--work", type=Path, default=Path("/tmp/jaxstyle-quality"), help="where outputs go")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--smoke", action="store_true", help="one tiny pair from the package's images")
    parser.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"), help="two tags' common runs, side by side")
    args = parser.parse_args()
    if args.compare:
        before, after = (json.loads((args.results / f"quality_{tag}.json").read_text()) for tag in args.compare)
        rows = compare(before, after)
        (args.results / f"quality_{args.compare[0]}_vs_{args.compare[1]}.json").write_text(json.dumps(rows, indent=1))
        for row in rows:
            print(json.dumps(row))
        return

    sets = (*(BASELINE if args.baseline else ()), *args.sets)
    pairs = PAIRS if args.pairs == "all" else tuple(p for p in PAIRS if p[0] in args.pairs.split(","))
    if args.smoke:
        args.images, pairs = ROOT / "jaxstyle" / "assets" / "images", (SMOKE_PAIR,)
        args.sizes, sets = [64], (*sets, "iterations=20")
    if not pairs:
        raise SystemExit(f"no such pair; choose from {', '.join(p[0] for p in PAIRS)}")
    args.work.mkdir(parents=True, exist_ok=True)
    args.results.mkdir(parents=True, exist_ok=True)
    results_path = args.results / f"quality_{args.tag}.json"
    record = json.loads(results_path.read_text()) if results_path.exists() else {"runs": []}
    record.update(
        host=platform.processor() or platform.machine(),
        cpus=os.cpu_count(),
        settings=list(sets),
        targets={"style_ratio": STYLE_TARGET, "content_ratio": CONTENT_TARGET},
        judge="benchmarks/judge.py: NumPy VGG19, max pooling, relu4_2 content, relu1_1..relu5_1 Gram/(HWC)",
    )
    vgg = judge.load_vgg()
    from jaxstyle.io.decode import load_image

    for size in args.sizes:
        for name, content, style in pairs:
            if any(r["pair"] == name and r["size"] == size for r in record["runs"]):
                continue
            out = args.work / f"{args.tag}_{name}_{size}.png"
            run = run_one(args.images / content, args.images / style, size, sets, out)
            output, content_rgb, style_rgb = (
                load_image(p).rgb for p in (out, args.images / content, args.images / style)
            )
            ratios = judge.ratios(output, content_rgb, style_rgb, vgg)
            run = {"pair": name, "content": content, "style": style, "size": size, **ratios, **run, "output": str(out)}
            record["runs"].append(run)
            results_path.write_text(json.dumps(record, indent=1))
            print(
                f"{name:22s} {size:5d}px style {ratios['style_ratio']:.3f} content {ratios['content_ratio']:.3f} "
                f"{run['iterations']:4d} its {run['wall_s']:7.1f} s",
                flush=True,
            )
    runs = record["runs"]
    for size in sorted({r["size"] for r in runs}):
        at = [r for r in runs if r["size"] == size]
        ok = sum(r["style_ratio"] <= STYLE_TARGET and r["content_ratio"] <= CONTENT_TARGET for r in at)
        print(f"{size}px: {ok}/{len(at)} runs within style <= {STYLE_TARGET} and content <= {CONTENT_TARGET}")
    sheet(runs, args.results / f"quality_{args.tag}.jpg", args.images)


if __name__ == "__main__":
    main()
