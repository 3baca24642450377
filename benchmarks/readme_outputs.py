"""Fingerprint the outputs of the README's examples, to show a refactor changed no pixel.

Runs a small version of each README example (the packaged photo and painting, small sizes,
few iterations, so the whole set takes a few minutes on two cores) through the CLI, and
writes the SHA-256 of each output's decoded pixels (not of the file: PNG metadata carries
versions) to a JSON. Run it before and after a change and compare the two files:

    python benchmarks/readme_outputs.py --json before.json
    python benchmarks/readme_outputs.py --json after.json --compare before.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ASSETS = Path(__file__).resolve().parents[1] / "jaxstyle" / "assets" / "images"
PHOTO, PAINTING = ASSETS / "chelsea.jpg", ASSETS / "starry_night.jpg"
SMALL = ["--max-size", "96", "--iterations", "12"]

# name -> (arguments after `jaxstyle`, output file name); {out} is the output folder.
EXAMPLES = {
    "stylize": (["stylize", PHOTO, PAINTING, "-o", "{out}/a.png", *SMALL], "a.png"),
    "stylize_adam": (["stylize", PHOTO, PAINTING, "-o", "{out}/b.png", *SMALL, "--optimizer", "adam"], "b.png"),
    "fast": (["stylize", PHOTO, PAINTING, "-o", "{out}/c.png", "--method", "fast", "--max-size", "128"], "c.png"),
    "fast_strength": (
        ["stylize", PHOTO, PAINTING, "-o", "{out}/d.png", "--method", "fast", "--style-strength", "0.8"],
        "d.png",
    ),
    "builtin": (
        ["stylize", PHOTO, "-o", "{out}/e.png", "--method", "fast", "--builtin-style", "3:0.5,12:0.5"],
        "e.png",
    ),
    "two_styles": (
        ["stylize", PHOTO, PAINTING, PHOTO, "-o", "{out}/f.png", *SMALL, "--style-weights", "0.7,0.3"],
        "f.png",
    ),
    "coarse_to_fine": (["stylize", PHOTO, PAINTING, "-o", "{out}/g.png", *SMALL, "--start-size", "64"], "g.png"),
    "preset": (["stylize", PHOTO, PAINTING, "-o", "{out}/h.png", *SMALL, "--preset", "neural-style"], "h.png"),
    "set_fields": (
        [
            "stylize",
            PHOTO,
            PAINTING,
            "-o",
            "{out}/i.png",
            *SMALL,
            "--set",
            "lbfgs_memory=20",
            "--set",
            "style_layers=relu1_1,relu3_1",
        ],
        "i.png",
    ),
    "preserve_color": (
        ["stylize", PHOTO, PAINTING, "-o", "{out}/j.png", *SMALL, "--preserve-color", "luminance"],
        "j.png",
    ),
    "tiles": (["stylize", PHOTO, PAINTING, "-o", "{out}/k.png", *SMALL, "--tile-size", "64"], "k.png"),
    "fast_tiles": (
        [
            "stylize",
            PHOTO,
            PAINTING,
            "-o",
            "{out}/l.png",
            "--method",
            "fast",
            "--max-size",
            "384",
            "--tile-size",
            "224",
        ],
        "l.png",
    ),
    "color": (["color", PHOTO, PAINTING, "-o", "{out}/m.png"], "m.png"),
    "batch_fast": (
        ["batch", PAINTING, "--input", "{out}/in", "--output", "{out}/batch", "--method", "fast", "--max-size", "128"],
        "batch/chelsea.png",
    ),
}


def pixels_digest(path: Path) -> str:
    with Image.open(path) as image:
        return hashlib.sha256(np.asarray(image.convert("RGB")).tobytes()).hexdigest()


def run_all(jaxstyle: str) -> dict[str, str]:
    digests = {}
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "in").mkdir()
        (Path(folder) / "in" / "chelsea.jpg").write_bytes(PHOTO.read_bytes())
        for name, (args, output) in EXAMPLES.items():
            argv = [jaxstyle, *(str(a).format(out=folder) for a in args)]
            done = subprocess.run(argv, check=False, capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"{name}: {' '.join(argv)} failed: {done.stderr.strip().splitlines()[-1:]}")
            digests[name] = pixels_digest(Path(folder) / output)
            print(f"{name:16s} {digests[name][:16]}", flush=True)
    return digests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, required=True, help="where to write the digests")
    parser.add_argument("--compare", type=Path, help="an earlier JSON to compare with")
    parser.add_argument("--jaxstyle", default=str(Path(sys.executable).with_name("jaxstyle")), help="the CLI to run")
    args = parser.parse_args()
    digests = run_all(args.jaxstyle)
    args.json.write_text(json.dumps(digests, indent=1) + "\n")
    if args.compare:
        before = json.loads(args.compare.read_text())
        changed = [name for name in digests if before.get(name) != digests[name]]
        print("identical" if not changed else f"changed: {', '.join(changed)}")
        sys.exit(1 if changed else 0)


if __name__ == "__main__":
    main()
