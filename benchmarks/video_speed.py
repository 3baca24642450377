"""`jaxstyle video` with the fast method, whole processes: two installs of jaxstyle side by side.

    python benchmarks/video_speed.py --a .venv/bin/jaxstyle --b /tmp/old/bin/jaxstyle [--rounds 3]
                                     [--size 512x288] [--json benchmarks/results/video_speed.json]

Makes the test clip with `make_video_clip.py` (96 frames of a noisy pan and zoom, with audio, H.264)
at ``--size``, then runs ``jaxstyle -q video CLIP STYLE -o OUT --max-size LONG_SIDE`` with A and
B in turn, every round, each with its own warm compile cache (one unmeasured run first). Reports
the wall time and frames per second of the whole process (start-up and the final encode included),
and the peak RSS.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from fast_e2e import STYLE, cpu_model, timed, write_record

FRAMES = 96


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", required=True, help="the jaxstyle executable to measure")
    parser.add_argument("--b", required=True, help="the one to compare it with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", default="512x288")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "video_speed.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="video_speed_"))
    try:
        clip = work / "clip.mp4"
        maker = Path(__file__).with_name("make_video_clip.py")
        subprocess.run(
            [sys.executable, str(maker), str(clip), "--size", args.size, "--frames", str(FRAMES)], check=True
        )
        long_side = str(max(int(side) for side in args.size.split("x")))
        runs: dict[str, list[dict]] = {"a": [], "b": []}
        for round_ in range(args.rounds + 1):
            for name in ("a", "b"):
                out = work / f"{name}{round_}.mp4"
                env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(work / f"cache_{name}")}
                command = [getattr(args, name), "-q", "video", str(clip), str(STYLE), "-o", str(out)]
                result = timed([*command, "--max-size", long_side], env)
                if round_ > 0:  # the first round fills the compile caches
                    result["fps"] = round(FRAMES / result["seconds"], 2)
                    runs[name].append(result)
                    print(name, round_, result, flush=True)
        summary = {
            name: {
                "median_seconds": statistics.median(r["seconds"] for r in rows),
                "median_fps": statistics.median(r["fps"] for r in rows),
                "median_peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in rows),
            }
            for name, rows in runs.items()
        }
        summary["fps_a_over_b"] = round(summary["a"]["median_fps"] / summary["b"]["median_fps"], 3)
        record = {"host": cpu_model(), "a": args.a, "b": args.b, "clip": args.size, "frames": FRAMES}
        record |= {"runs": runs, "summary": summary}
        write_record(args.json, record)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
