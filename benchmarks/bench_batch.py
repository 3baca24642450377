"""Throughput of `jaxstyle batch` against the single-image path, per batch size and image size.

    python benchmarks/bench_batch.py                      # 256 and 512 px, batch 1, 2, 4, 8
    python benchmarks/bench_batch.py --sizes 256 --batches 1,4 --steps 256:5

Every configuration runs in its own subprocess (fresh JAX, so compile times are real and the peak
resident memory, VmHWM, belongs to that configuration alone). Per configuration:

* ``batch``: `jaxstyle.batch.stylize_batch` on B copies of the bundled photo (slightly perturbed):
  one warm-up call with 1 iteration (compiles; reported as ``compile_s``), then a timed call with
  ``steps`` iterations. The per-iteration time is the median of the optimiser's own per-iteration
  clock (robust to a busy machine); the rest of the wall time is per-batch overhead (resizing,
  content/style targets, transfers).
* ``single``: `jaxstyle.stylization.stylize` in a loop over 2 images (warm, in-process), the library
  equivalent of running the single-image path per image; measured the same way.
* ``cli``: ``jaxstyle stylize`` as a fresh process per image, as a shell loop would (start-up,
  weight loading and compilation paid for every image).

With ``--interleaved`` it times only the jitted step, round-robin over the batch sizes (and the
un-vmapped single-image step), which separates the batch size's effect from a shared machine's
changing load better than consecutive subprocesses do:

    python benchmarks/bench_batch.py --interleaved 256:1,2,4,8:5 --interleaved 512:1,2,4:3 \
        --out benchmarks/results/batch_cpu_interleaved.json

Results are reported as seconds per image-iteration and projected images/hour at the default 300
iterations (overhead + 300 x per-iteration time); the default L-BFGS settings and the full VGG19
are used throughout. Written to
benchmarks/results/batch_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_ITERATIONS = 300  # StyleConfig's default, for the projection


def _peak_rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _inputs(count: int):
    import numpy as np

    from jaxstyle.io.decode import load_image
    from jaxstyle.stylization import stylize  # noqa: F401 - import cost outside the timings

    assets = Path(__file__).resolve().parents[1] / "jaxstyle" / "assets" / "images"
    photo = load_image(assets / "chelsea.jpg").rgb
    style = load_image(assets / "starry_night.jpg").rgb
    rng = np.random.default_rng(0)
    contents = [np.clip(photo + rng.normal(0, 0.01, photo.shape).astype(np.float32), 0, 1) for _ in range(count)]
    return contents, style


def worker(kind: str, size: int, batch: int, steps: int) -> dict:
    import jax

    from jaxstyle.batch import stylize_batch
    from jaxstyle.config import BatchConfig, StyleConfig
    from jaxstyle.stylization import stylize
    from jaxstyle.weights import load_weights

    weights = load_weights()
    config = StyleConfig(max_size=size, iterations=steps, report_every=steps)
    contents, style = _inputs(batch)
    baseline = _rss_mib()
    elapsed: list[float] = []  # optimiser clock at every iteration of the timed run

    def on_step(event) -> None:
        report = getattr(event, "report", event)  # BatchStep and Progress both carry the StepReport
        if report is not None:  # (not the last Progress, which has the result's scores)
            elapsed.append(report.elapsed)

    if kind == "batch":

        def run(iterations, callback=None):
            cfg = config.replace(iterations=iterations, report_every=1)
            return stylize_batch(
                contents, style, cfg, weights=weights, batch=BatchConfig(batch_size=batch), callback=callback
            )
    else:  # the single-image library path in a loop, warm

        def run(iterations, callback=None):
            cfg = config.replace(iterations=iterations, report_every=1)
            return [stylize(content, style, cfg, weights=weights, callback=callback) for content in contents]

    start = time.perf_counter()
    run(1, lambda event: None)  # compiles every jitted function for this shape and batch size, scoring too
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    results = run(steps, on_step)
    total = time.perf_counter() - start
    # Per-iteration times from the optimiser's own clock (a host sync every iteration); the median
    # resists the spikes of a shared machine. What is left of the wall time is per-batch overhead:
    # resizing, colour handling, content/style targets, transfers, the first dispatch.
    runs = len(elapsed) // steps
    durations = []
    for r in range(runs):  # one optimize() call per batch (single: per image), each clock from 0
        clock = elapsed[r * steps : (r + 1) * steps]
        durations += [b - a for a, b in zip([0.0, *clock], clock)]
    per_iteration = statistics.median(durations)  # one iteration of one batch (single: of one image)
    images_per_call = batch if kind == "batch" else 1
    overhead = max(total / runs - sum(durations) / runs, 0.0)  # per batch (single: per image)
    at_300 = overhead + DEFAULT_ITERATIONS * per_iteration
    return {
        "kind": kind,
        "size": size,
        "shape": list(results[0].shape[:2]),
        "batch": batch,
        "steps": steps,
        "devices": jax.device_count(),
        "compile_s": round(compile_s, 2),
        "seconds": round(total, 2),
        "s_per_image_iteration": round(per_iteration / images_per_call, 4),
        "overhead_s_per_call": round(overhead, 2),
        "images_per_s_at_300_iterations": round(images_per_call / at_300, 5),
        "images_per_hour_at_300_iterations": round(3600 * images_per_call / at_300, 1),
        "rss_before_mib": round(baseline, 1),
        "peak_rss_mib": round(_peak_rss_mib(), 1),
    }


def interleaved(size: int, batches: list[int], reps: int) -> dict:
    """The jitted step alone, round-robin over the cases so that a busy machine's load hits them all.

    Case 0 is the single-image step (what `stylize` runs); the others are the vmapped step
    (`step.batched`) with B images. Reports the median seconds per step and per image-iteration.
    """
    import jax
    import jax.numpy as jnp

    from jaxstyle.config import StyleConfig
    from jaxstyle.io.resize import resize_to
    from jaxstyle.nets.vgg import prepare_params
    from jaxstyle.objective import LossSpec, content_targets, make_targets, style_targets, whole_norms
    from jaxstyle.prepare import fit_long_side
    from jaxstyle.step import OptimizerSpec, batched, init_opt_state, make_stepper, run_steps
    from jaxstyle.weights import load_weights

    weights = load_weights()
    config = StyleConfig(max_size=size)
    spec, opt_spec = LossSpec.from_config(config, weights.mean_bgr), OptimizerSpec.from_config(config)
    params = jax.device_put(prepare_params(weights.params, spec.layers))  # as the runner prepares them
    contents, style = _inputs(1)
    shape = fit_long_side(contents[0].shape[:2], size)
    image = jnp.asarray(resize_to(contents[0], *shape))
    shared = style_targets(params, jnp.asarray(resize_to(style, *fit_long_side(style.shape[:2], size))), spec, shape)
    own = make_targets(content_targets(params, image, spec), shared)
    norm = whole_norms(params, image, [resize_to(style, *shape)], (1.0,), own, spec)
    single = make_stepper(spec, opt_spec)
    cases = {}
    for batch in [0, *batches]:
        if batch == 0:
            stepper, x, targets = single, jnp.copy(image), make_targets(own["content"], shared, norm)
        else:
            stepper, x = batched(single), jnp.stack([image] * batch)
            per_image = jax.tree.map(lambda v, b=batch: jnp.stack([v] * b), norm)
            targets = make_targets(jax.vmap(lambda c: content_targets(params, c, spec))(x), shared, per_image)
        cases[batch] = [stepper, x, init_opt_state(x, stepper, config.optimize.resolved_learning_rate), targets]
    times: dict[int, list[float]] = {b: [] for b in cases}
    for rep in range(reps + 1):  # the first round compiles
        for batch, case in cases.items():
            start = time.perf_counter()
            case[1], case[2], _ = run_steps(params, case[1], case[2], case[3], stepper=case[0])
            case[1].block_until_ready()
            if rep:
                times[batch].append(time.perf_counter() - start)
    return {
        "size": size,
        "shape": list(shape),
        "reps": reps,
        "rows": [
            {
                "batch": batch or 1,
                "vmapped": batch > 0,
                "s_per_step": round(statistics.median(t), 4),
                "s_per_image_iteration": round(statistics.median(t) / max(batch, 1), 4),
            }
            for batch, t in times.items()
        ],
    }


def cli_loop(size: int, images: int, steps: int) -> dict:
    """``jaxstyle stylize`` once per image, each a fresh process (as a shell loop over files would)."""
    assets = Path(__file__).resolve().parents[1] / "jaxstyle" / "assets" / "images"
    times = []
    with tempfile.TemporaryDirectory() as folder:
        for index in range(images):
            command = [
                sys.executable,
                "-c",
                "import sys; from jaxstyle.cli.app import run; sys.argv[0] = 'jaxstyle'; run()",
                "-q",
                "stylize",
                str(assets / "chelsea.jpg"),
                str(assets / "starry_night.jpg"),
                "-o",
                str(Path(folder) / f"out{index}.png"),
                "--max-size",
                str(size),
                "--iterations",
                str(steps),
            ]
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            times.append(time.perf_counter() - start)
    per_image = sum(times) / len(times)
    return {
        "kind": "cli",
        "size": size,
        "batch": 1,
        "steps": steps,
        "images": images,
        "seconds_per_image": round(per_image, 2),
        "note": "fresh process per image: start-up + weights + compile + the iterations",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--batches", default="1,2,4,8")
    parser.add_argument("--steps", default="256:5,512:3", help="timed iterations per size, SIZE:N,...")
    parser.add_argument("--cli-images", type=int, default=1, help="images for the 'jaxstyle stylize' loop (0: skip)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "batch_cpu.json")
    parser.add_argument(
        "--interleaved",
        metavar="SIZE:B,B,..:REPS",
        action="append",
        help="instead: time the jitted step round-robin, e.g. 256:1,4,8:5 (repeatable); JSON to --out",
    )
    parser.add_argument("--worker", nargs=4, metavar=("KIND", "SIZE", "BATCH", "STEPS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, size, batch, steps = args.worker
        print(json.dumps(worker(kind, int(size), int(batch), int(steps))))
        return

    if args.interleaved:
        started = time.perf_counter()
        results = []
        for spec in args.interleaved:
            size, batches, reps = spec.split(":")
            results.append(interleaved(int(size), [int(b) for b in batches.split(",")], int(reps)))
            print(json.dumps(results[-1]), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {
                    "benchmark": "jitted step only, round-robin over batch sizes (single-image step as batch 1, vmapped=false)",
                    "note": "Measured on a SHARED 2-core machine while other jobs ran; "
                    "round-robin spreads the load over all cases.",
                    "machine": {
                        "platform": platform.platform(),
                        "cpus": os.cpu_count(),
                        "python": platform.python_version(),
                    },
                    "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
                    "total_seconds": round(time.perf_counter() - started, 1),
                    "results": results,
                },
                indent=2,
            )
            + "\n"
        )
        print(f"wrote {args.out}")
        return

    sizes = [int(s) for s in args.sizes.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    steps_for = {int(k): int(v) for k, v in (part.split(":") for part in args.steps.split(","))}
    rows = []
    started = time.perf_counter()
    for size in sizes:
        steps = steps_for.get(size, 5)
        jobs = [("single", size, 2, steps)] + [("batch", size, b, steps) for b in batches]
        for kind, s, b, n in jobs:
            out = subprocess.run(
                [sys.executable, __file__, "--worker", kind, str(s), str(b), str(n)],
                capture_output=True,
                check=False,
                text=True,
            )
            if out.returncode:
                raise SystemExit(f"{kind} {s}px batch {b} failed:\n{out.stderr[-3000:]}")
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(json.dumps(row), flush=True)
        if args.cli_images:
            row = cli_loop(size, args.cli_images, steps)
            rows.append(row)
            print(json.dumps(row), flush=True)
    load = os.getloadavg()
    result = {
        "benchmark": "jaxstyle batch vs single-image path, CPU",
        "note": (
            "Measured on a SHARED 2-core machine while other jobs ran (load average shown): absolute "
            "timings are noisy and pessimistic; compare rows with each other, and rerun on a quiet "
            "machine for real numbers. Default settings (L-BFGS, full VGG19, one scale); content "
            "chelsea.jpg fitted to the size (3:2 landscape: 170x256 and 341x512), style starry_night.jpg."
        ),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "load_average_at_end": [round(v, 2) for v in load],
        "total_seconds": round(time.perf_counter() - started, 1),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
