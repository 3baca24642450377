"""Measure `jaxstyle serve` as a user meets it: a real server process on loopback, spoken to over
HTTP (httpx2), with the bundled cat and Starry Night.

* start-up: from starting ``jaxstyle serve`` to the page's first answer; idle memory (RSS) then;
* fast preview at 384 px, warm: one request per slider step (style strength 0.50, 0.55, ...), the
  time from sending the settings to having the picture (the page's own path; target <= 300 ms);
* webcam mode at 256 px: JPEG frames posted one after another, frames per second (target >= 8);
* optimisation at 384 px: seconds between its progress pictures on the event stream (target <= 2 s),
  then cancelled.

    python benchmarks/serve_bench.py --json benchmarks/results/serve.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(port: int, results: str) -> tuple[subprocess.Popen, float]:
    command = [sys.executable, "-m", "jaxstyle", "serve", "--port", str(port), "--results", results]
    import httpx2

    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while True:
        try:
            if httpx2.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200:
                return process, time.perf_counter() - started
        except httpx2.TransportError:
            if process.poll() is not None:
                raise SystemExit(process.stderr.read().decode()) from None
            time.sleep(0.02)


def webcam_frames(count: int, side: int) -> list[bytes]:
    """The bundled cat at ``side`` px, panning slowly, with sensor noise: JPEG frames."""
    from PIL import Image

    from jaxstyle.serve.uploads import bundled_path

    cat = Image.open(bundled_path("chelsea")).convert("RGB")
    cat.thumbnail((side + count, side + count))
    pixels = np.asarray(cat, np.float32)
    rng = np.random.default_rng(0)
    frames = []
    for index in range(count):
        crop = pixels[:, index : index + side]
        noisy = np.clip(crop + rng.normal(0, 4, crop.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(noisy).save(buffer, "JPEG", quality=80)
        frames.append(buffer.getvalue())
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="Write the results here.")
    parser.add_argument("--previews", type=int, default=12)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--pictures", type=int, default=6, help="Optimisation progress pictures to time.")
    args = parser.parse_args()
    import httpx2

    from jaxstyle.serve.forms import progress_every

    load_before = os.getloadavg()[0]

    port = free_port()
    base, origin = f"http://127.0.0.1:{port}", {"origin": f"http://127.0.0.1:{port}"}
    with tempfile.TemporaryDirectory() as results:
        process, startup = start_server(port, results)
        try:
            time.sleep(1.0)
            idle = rss_mb(process.pid)
            client = httpx2.Client(base_url=base, headers=origin, timeout=300)
            photo = client.post("/api/bundled/chelsea").json()["id"]
            style = client.post("/api/bundled/starry_night").json()["id"]
            settings = {"content": photo, "style": style, "method": "fast", "max_size": 384}

            def preview(strength: float) -> float:
                begun = time.perf_counter()
                response = client.post("/api/preview", json={**settings, "style_strength": strength})
                response.raise_for_status()
                return time.perf_counter() - begun

            first_preview = preview(1.0)
            preview(0.95)  # the content's own style vector's programs
            latencies = [preview(round(0.5 + 0.05 * (i % 10), 2)) for i in range(args.previews)]
            full_strength = [preview(1.0) for _ in range(5)]

            session = client.post("/api/live", json={"style": style, "max_size": 256}).json()["id"]
            frames = webcam_frames(args.frames + 3, 256)
            for frame in frames[:3]:  # warm: compile, first flow
                client.post(f"/api/live/{session}/frame", content=frame).raise_for_status()
            begun = time.perf_counter()
            for frame in frames[3:]:
                client.post(f"/api/live/{session}/frame", content=frame).raise_for_status()
            fps = args.frames / (time.perf_counter() - begun)

            job = client.post("/api/jobs", json={**settings, "method": "gatys", "iterations": 1000}).json()["id"]
            pictures, first_picture, begun = [], None, time.perf_counter()
            with client.stream("GET", f"/api/jobs/{job}/events") as stream:
                for line in stream.iter_lines():
                    if line.startswith("data: ") and '"image": "data:' in line:
                        now = time.perf_counter()
                        if first_picture is None:
                            first_picture = now - begun
                        pictures.append(now)
                        if len(pictures) > args.pictures:
                            client.post(f"/api/jobs/{job}/cancel")
                            break
            gaps = np.diff(pictures)
            busy = rss_mb(process.pid)
        finally:
            process.terminate()
            process.wait(60)

    record = {
        "host": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "startup_s": round(startup, 2),
        "idle_rss_mb": round(idle, 1),
        "rss_after_runs_mb": round(busy, 1),
        "preview_384_first_s": round(first_preview, 2),
        "preview_384_warm_ms": {
            "median": round(1000 * statistics.median(latencies)),
            "max": round(1000 * max(latencies)),
            "runs": len(latencies),
            "strength": "0.50-0.95 (Magenta's interpolation with the photo's own style vector)",
        },
        "preview_384_warm_strength1_ms": round(1000 * statistics.median(full_strength)),
        "webcam_256_fps": round(fps, 1),
        "optimisation_384": {
            "first_picture_s": round(first_picture, 1),
            "between_pictures_s": {"median": round(float(np.median(gaps)), 2), "max": round(float(gaps.max()), 2)},
            "iterations_per_picture": progress_every(384),
        },
    }
    print(json.dumps(record, indent=1))
    if args.json:
        args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
