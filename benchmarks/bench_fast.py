"""Magenta arbitrary-style transformer: jaxstyle (JAX, CPU) versus onnxruntime on the same float weights.

    python benchmarks/bench_fast.py [--sizes 512 1024] [--repeats 7] [--threads 2]

onnxruntime runs a float copy of ``arbitrary_transform.onnx`` (activation fake-quantisation
removed, weights dequantised, H and W made dynamic) with ``intra_op_num_threads`` = ``--threads``;
JAX runs `jaxstyle.nets.magenta.transform` (XLA's CPU thread pool has one thread per core, the
same 2 here). The two are timed interleaved, batch 1, same input, after a warm-up call, with a
0.1 s pause before every call (onnxruntime's worker threads spin for a while after a run and would
otherwise slow whatever runs next); the table reports min and median of ``--repeats`` calls each,
so a busy machine slows both alike.

Also recorded: compile time (first call), the nominal FLOP count of the network as direct
convolutions (the port does fewer multiplications: FFT for the 9x9 and Winograd for most 3x3
convolutions), that count over the measured time as a share of the machine's float32 GEMM rate
(``jnp.dot`` of 2048x2048), and the bfloat16 compute dtype's speed and output difference on a
real photo. Writes ``benchmarks/results/fast_cpu.json``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ONNX_TRANSFORM = ROOT / "tests" / "data" / "magenta" / "arbitrary_transform.onnx"
IMAGES = ROOT / "jaxstyle" / "assets" / "images"

# (name, kernel, input channels, output channels, stride, resolution divisor) as direct convolutions
LAYERS = (
    ("contract1", 9, 3, 8, 1, 1),
    ("contract2", 3, 8, 16, 2, 2),
    ("contract3", 3, 16, 32, 2, 4),
    *((f"residual{k}/conv{j}", 3, 32, 32, 1, 4) for k in range(1, 6) for j in (1, 2)),
    ("expand1", 3, 32, 16, 1, 2),  # after nearest x2: at 1/2 resolution
    ("expand2", 3, 16, 8, 1, 1),
    ("expand3", 9, 8, 3, 1, 1),
)


def flop_per_pixel() -> dict[str, float]:
    """2 x multiply-adds per content pixel of each convolution (output resolution 1/divisor)."""
    return {name: 2.0 * k * k * cin * cout / div**2 for name, k, cin, cout, _, div in LAYERS}


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def float_transformer(onnx):
    """arbitrary_transform.onnx without fake quantisation and with dynamic H, W."""
    from onnx import helper, numpy_helper

    model = onnx.load(ONNX_TRANSFORM)
    graph = model.graph
    arrays = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    nodes, extra = [], []
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in arrays:
            values, scale, zero = (arrays[n].astype(np.float64) for n in node.input[:3])
            if scale.ndim == 1 and values.ndim > 1:
                scale, zero = scale.reshape(-1, *[1] * (values.ndim - 1)), zero.reshape(-1, *[1] * (values.ndim - 1))
            extra.append(numpy_helper.from_array(((values - zero) * scale).astype(np.float32), node.output[0]))
        elif node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            nodes.append(helper.make_node("Identity", [node.input[0]], [node.output[0]], name=node.name))
        else:
            nodes.append(node)
    used = {n for node in nodes for n in node.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept + extra)
    for value in (graph.input[0], graph.output[0]):
        dims = value.type.tensor_type.shape.dim
        dims[1].dim_param, dims[2].dim_param = "h", "w"
    return model


def timed(call, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def gemm_peak(jax, jnp, size: int = 2048, repeats: int = 7) -> float:
    a = jnp.asarray(np.random.default_rng(0).random((size, size), dtype=np.float32))
    dot = jax.jit(lambda a: a @ a)
    dot(a).block_until_ready()
    best = min(timed(lambda: dot(a).block_until_ready(), repeats))
    return 2 * size**3 / best / 1e9


def _jax_call(transformer, content, vector, dtype):
    from jaxstyle.nets import magenta

    return magenta.transform(transformer, content, vector, compute_dtype=dtype).block_until_ready()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fast_cpu.json")
    args = parser.parse_args()

    import jax
    import jax.numpy as jnp
    import onnx
    import onnxruntime as ort
    from PIL import Image

    from jaxstyle.nets import magenta, magenta_predictor, magenta_weights

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(
        float_transformer(onnx).SerializeToString(), options, providers=["CPUExecutionProvider"]
    )

    params = magenta_weights.load_arbitrary()
    style = np.asarray(Image.open(IMAGES / "starry_night.jpg").convert("RGB"), np.float32) / 255
    photo = np.asarray(Image.open(IMAGES / "chelsea.jpg").convert("RGB"), np.float32) / 255
    vector = np.asarray(
        magenta_predictor.style_vector(params["predictor"], magenta_predictor.resize_style_image(style)[None])
    )
    peak = gemm_peak(jax, jnp)
    per_pixel = flop_per_pixel()
    load_before = os.getloadavg()

    results = []
    for size in args.sizes:
        content = np.asarray(jax.image.resize(photo, (size, size, 3), "bilinear"))[None]
        feed = {"content_image": content, "mobilenet_conv/Conv/BiasAdd": vector.reshape(1, 1, 1, 100)}
        content_j, vector_j = jnp.asarray(content), jnp.asarray(vector)
        row = {"size": size, "batch": 1}
        for name, dtype in (("float32", jnp.float32), ("bfloat16", jnp.bfloat16)):
            start = time.perf_counter()
            out = magenta.transform(params["transformer"], content_j, vector_j, compute_dtype=dtype).block_until_ready()
            row[f"jax_{name}_first_call_s"] = round(time.perf_counter() - start, 2)
            row[f"_out_{name}"] = np.asarray(out)
        reference = session.run(None, feed)[0]
        row["max_abs_diff_float32_vs_ort"] = float(np.abs(row["_out_float32"] - reference).max())
        bf16_diff = np.abs(row.pop("_out_bfloat16") - row.pop("_out_float32"))
        row["bfloat16_vs_float32_mean_abs_diff"] = float(bf16_diff.mean())
        row["bfloat16_vs_float32_max_abs_diff"] = float(bf16_diff.max())
        times = {"ort": [], "jax_float32": [], "jax_bfloat16": []}
        transformer = params["transformer"]
        calls = {
            "ort": functools.partial(session.run, None, feed),
            "jax_float32": functools.partial(_jax_call, transformer, content_j, vector_j, jnp.float32),
            "jax_bfloat16": functools.partial(_jax_call, transformer, content_j, vector_j, jnp.bfloat16),
        }
        for _ in range(args.repeats):  # interleaved, with a pause so that one's spinning threads
            for key, call in calls.items():  # (onnxruntime's spin after a run) do not slow the next
                time.sleep(0.1)
                times[key] += timed(call, 1)
        for key, values in times.items():
            row[f"{key}_min_ms"] = round(1e3 * min(values), 1)
            row[f"{key}_median_ms"] = round(1e3 * float(np.median(values)), 1)
        row["speedup_float32_min"] = round(row["ort_min_ms"] / row["jax_float32_min_ms"], 2)
        row["speedup_float32_median"] = round(row["ort_median_ms"] / row["jax_float32_median_ms"], 2)
        row["speedup_bfloat16_min"] = round(row["ort_min_ms"] / row["jax_bfloat16_min_ms"], 2)
        nominal = sum(per_pixel.values()) * size * size
        row["nominal_gflop"] = round(nominal / 1e9, 2)
        row["jax_float32_nominal_gflops"] = round(nominal / (row["jax_float32_min_ms"] / 1e3) / 1e9, 1)
        row["jax_float32_pct_of_gemm_peak"] = round(100 * row["jax_float32_nominal_gflops"] / peak, 1)
        row["ort_nominal_gflops"] = round(nominal / (row["ort_min_ms"] / 1e3) / 1e9, 1)
        results.append(row)
        print(json.dumps(row), flush=True)

    report = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": args.threads,
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "jax": jax.__version__,
        "onnxruntime": ort.__version__,
        "python": sys.version.split()[0],
        "gemm_peak_gflops_float32": round(peak, 1),
        "flop_per_content_pixel": round(sum(per_pixel.values())),
        "flop_per_content_pixel_by_layer": {k: round(v) for k, v in per_pixel.items()},
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
