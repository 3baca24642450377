"""`jaxstyle batch --engine ray` against `--engine local` on one machine, and its scaling over actors.

    python benchmarks/ray_batch.py [--rounds 3] [--size 512] [--json benchmarks/results/ray_batch.json]

Two measurements on the 48-photo folder of `benchmarks/fast_e2e.py` (its `make_folder`), with the
fast method at ``--size`` px:

* **engines**: whole processes as a person types them, ``jaxstyle -q batch STYLE --input DIR
  --output OUT --method fast --max-size SIZE --engine local|ray``, alternating in every round,
  each into a fresh output folder, with one warm XLA compile cache for both (primed by one untimed
  run of each). Ray's start-up (``ray.init`` of a local instance, the actors' imports, weights
  and compiles) is included. The peak RSS is the driver's own (Ray's processes are not counted).
* **scaling**: per-image time with 1 and 2 actors of one core each, alternating: a child process
  starts Ray with that many CPUs and runs `run_ray_batch`; the per-image time is the time between
  the first and the last finished image over the images between them (start-up and each actor's
  first compiles mostly excluded). Each actor size runs once untimed first, so that its programs
  are in the compile cache (one core per actor takes another code path than two).

``--parts estimate`` adds (to the JSON already there) the numbers of the paper estimate for 1
million photos at 1024 px on GPUs (docs/batch.md): the network's FLOPs at 1024x768 (XLA's cost
analysis of the CPU program, and direct convolutions counted from the layer shapes) and the host
work per image on one core here (decode at a reduced scale, Lanczos resize, PNG and JPEG encode).
No GPU was measured: the GPU's own time is an assumption stated in the docs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fast_e2e import FOLDER_COUNT, FOLDER_SIZES, STYLE, cpu_model, make_folder, timed

ROOT = Path(__file__).resolve().parents[1]

SCALING = textwrap.dedent(
    """
    import json, sys, time, warnings, logging
    import ray
    actors, folder, out, style, size = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
    ray.init(num_cpus=actors, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    from jaxstyle.batch.ray_engine import run_ray_batch
    from jaxstyle.batch import ImageFinished
    from jaxstyle.config import StyleConfig
    times = []
    def callback(event):
        if isinstance(event, ImageFinished):
            times.append(time.perf_counter())
    started = time.perf_counter()
    summary = run_ray_batch(folder, out, [style], StyleConfig(method="fast", max_size=size), actors=actors,
                            callback=callback)
    assert summary.done == len(times), summary
    print(json.dumps({"actors": actors, "images": summary.done, "seconds": round(time.perf_counter() - started, 3),
                      "first_image_s": round(times[0] - started, 3),
                      "per_image_s": round((times[-1] - times[0]) / (len(times) - 1), 4)}))
    ray.shutdown()
    """
)


ESTIMATE = textwrap.dedent(
    """
    import json, statistics, tempfile, time
    from pathlib import Path
    import jax, jax.numpy as jnp
    from PIL import Image
    from skimage import data
    from jaxstyle.batch.inputs import probe_size
    from jaxstyle.io.decode import load_image
    from jaxstyle.io.encode import save_image
    from jaxstyle.io.resize import resize_to
    from jaxstyle.nets import magenta
    from jaxstyle.nets.magenta_weights import arbitrary_shapes, load_arbitrary

    h, w = 768, 1024
    transformer = load_arbitrary()["transformer"]
    x, v = jnp.zeros((1, h, w, 3), jnp.float32), jnp.zeros((1, 100), jnp.float32)
    cost = jax.jit(magenta.transform).lower(transformer, x, v).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    # direct convolutions: multiply-adds per output pixel of each layer, at its resolution
    strides = {"contract2": 2, "contract3": 4, "expand1": 2}  # the layer's output is 1/stride per side
    macs = 0
    for name, shape in arbitrary_shapes().items():
        if name.startswith("transformer/") and name.split("/")[-2:] in (["conv", "kernel"], ["conv1", "kernel"], ["conv2", "kernel"]):
            kh, kw, cin, cout = shape
            layer = name.split("/")[1]
            scale = strides.get(layer, 4 if layer.startswith("residual") else 1)
            macs += kh * kw * cin * cout * (h // scale) * (w // scale)
    folder = Path(tempfile.mkdtemp())
    photo = folder / "photo.jpg"
    Image.fromarray(data.astronaut()).resize((1600, 1200), Image.BICUBIC).save(photo, quality=90)
    steps = {"decode": [], "resize": [], "encode_png": [], "encode_jpg": []}
    for index in range(7):
        t = time.perf_counter(); probe_size(photo); image = load_image(photo, shrink_to=w)
        steps["decode"].append(time.perf_counter() - t)
        t = time.perf_counter(); out = resize_to(image.rgb, h, w); steps["resize"].append(time.perf_counter() - t)
        t = time.perf_counter(); save_image(folder / f"{index}.png", out); steps["encode_png"].append(time.perf_counter() - t)
        t = time.perf_counter(); save_image(folder / f"{index}.jpg", out); steps["encode_jpg"].append(time.perf_counter() - t)
    print(json.dumps({
        "shape": [h, w],
        "xla_cpu_gflops": round(cost["flops"] / 1e9, 2),
        "xla_cpu_gbytes_accessed": round(cost.get("bytes accessed", 0) / 1e9, 3),
        "direct_conv_gflops": round(2 * macs / 1e9, 2),
        "host_seconds_one_core": {k: round(statistics.median(v[1:]), 4) for k, v in steps.items()},
        "png_bytes": (folder / "1.png").stat().st_size,
    }))
    """
)


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--jaxstyle", default=str(Path(sys.executable).with_name("jaxstyle")))
    parser.add_argument("--parts", default="engines,scaling")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "ray_batch.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ray_batch_"))
    try:
        folder = make_folder(work / "photos")[0].parent
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env["JAX_COMPILATION_CACHE_DIR"] = str(work / "cache")
        size = str(args.size)

        def command(engine: str, out: Path) -> list[str]:
            return [args.jaxstyle, "-q", "batch", str(STYLE), "--input", str(folder), "--output", str(out)] + [
                "--method", "fast", "--max-size", size, "--engine", engine,
            ]  # fmt: skip

        def scale(actors: int, out: Path) -> dict:
            result = subprocess.run(
                [sys.executable, "-c", SCALING, str(actors), str(folder), str(out), str(STYLE), size],
                env=env, capture_output=True, text=True, check=False,
            )  # fmt: skip
            if result.returncode != 0:
                raise SystemExit(result.stderr[-3000:])
            return json.loads(result.stdout.strip().splitlines()[-1])

        engines: dict[str, list[dict]] = {"local": [], "ray": []}
        scaling: dict[str, list[dict]] = {"1": [], "2": []}
        parts = args.parts.split(",")
        if "engines" in parts:
            for engine in engines:  # prime the compile cache, untimed
                timed(command(engine, work / f"prime_{engine}"), env)
        if "scaling" in parts:
            for actors in (1, 2):  # the same for each actor size's own programs
                scale(actors, work / f"prime_scaling_{actors}")
        for round_ in range(args.rounds):
            if "engines" in parts:
                order = ("local", "ray") if round_ % 2 == 0 else ("ray", "local")
                for engine in order:
                    row = timed(command(engine, work / f"{engine}_{round_}"), env) | {"load": load_average()}
                    engines[engine].append(row)
                    print(engine, round_, row, flush=True)
            if "scaling" in parts:
                for actors in (1, 2) if round_ % 2 == 0 else (2, 1):
                    row = scale(actors, work / f"scaling_{actors}_{round_}") | {"load": load_average()}
                    scaling[str(actors)].append(row)
                    print("scaling", round_, row, flush=True)
        if "estimate" in parts:
            result = subprocess.run(
                [sys.executable, "-c", ESTIMATE], env=env, capture_output=True, text=True, check=False
            )
            if result.returncode != 0:
                raise SystemExit(result.stderr[-3000:])
            estimate = json.loads(result.stdout.strip().splitlines()[-1]) | {"load": load_average()}
            print("estimate", estimate, flush=True)
            if not engines["local"] and not scaling["1"] and args.json.exists():  # add to the runs there
                record = json.loads(args.json.read_text()) | {"estimate": estimate}
                args.json.write_text(json.dumps(record, indent=1) + "\n")
                return
        summary: dict[str, object] = {}
        if engines["local"]:
            median = {k: statistics.median(r["seconds"] for r in v) for k, v in engines.items()}
            summary["engines_median_seconds"] = median
            summary["ray_over_local"] = round(median["ray"] / median["local"], 3)
            summary["ray_minus_local_seconds"] = round(median["ray"] - median["local"], 3)
        if scaling["1"]:
            per = {k: statistics.median(r["per_image_s"] for r in v) for k, v in scaling.items()}
            summary["scaling_median_per_image_s"] = per
            summary["speedup_2_over_1"] = round(per["1"] / per["2"], 3)
        record = {
            "host": cpu_model(),
            "cpus": len(os.sched_getaffinity(0)),
            "size": args.size,
            "method": "fast",
            "folder": {"images": FOLDER_COUNT, "sizes": [list(s) for s in FOLDER_SIZES]},
            "rounds": args.rounds,
            "engines": engines,
            "scaling": scaling,
            "summary": summary,
        }
        if "estimate" in parts:
            record["estimate"] = estimate
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=1) + "\n")
        print(json.dumps(summary, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
