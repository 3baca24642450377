"""Benchmark the optimisation step on whatever backend JAX runs on (CPU, GPU, TPU).

The benchmarked step is the one `jaxstyle.stylize` runs, with the loss of the TensorFlow tutorial
(the peers' reference step in shared/perf): VGG19 forward through block5_conv1 with max pooling,
content loss on block4_conv2, Gram style losses on block1..5_conv1, L1 TV, the gradient with
respect to the image only, and the optimiser update (Adam 0.02/0.99/0.1, or fixed-step L-BFGS).

FLOP model (same as shared/perf/README.md, so figures compare): forward conv FLOPs
``sum 2 H W Cin Cout 9`` over the 13 convolutions up to block5_conv1, plus ``2 H W C^2`` per Gram.
The backward pass needs only the gradient with respect to the image (the weights are constants),
one transposed convolution per convolution, so a step is 2x the forward FLOPs.

The FLOP model counts direct convolution. On CPU the step uses Winograd F(4x4, 3x3) from block2 on
(`jaxstyle.nets.winograd`), which needs 4x fewer multiplications there, so "GFLOP/s" is the
direct-convolution-equivalent rate and can exceed the GEMM peak; ``conv="direct"`` measures
``lax.conv`` everywhere.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.config_sources import preset
from jaxstyle.errors import UsageError
from jaxstyle.nets.vgg import CONV_SHAPES, prepare_params
from jaxstyle.objective import (
    LossSpec,
    blend_style_targets,
    content_targets,
    make_targets,
    style_targets,
    whole_norms,
)
from jaxstyle.step import OptimizerSpec, Stepper, batched, init_opt_state, jitted_run_steps, make_stepper, run_steps

CONV_CHOICES = {"auto": None, "winograd": True, "direct": False}


@dataclass(frozen=True)
class BenchCase:
    height: int
    width: int
    batch: int = 1
    optimizer: str = "adam"
    precision: str = "float32"
    conv: str = "auto"  # "winograd", "direct" (lax.conv), or "auto": Winograd on CPU only


@dataclass(frozen=True)
class BenchResult:
    case: BenchCase
    backend: str
    device: str
    conv: str  # what ran: "winograd" (from block2 on) or "direct"
    compile_s: float
    step_ms: float  # median wall time of one step of the whole batch
    images_per_s: float
    gflop_per_step: float
    gflops: float  # achieved
    percent_of_peak: float | None
    peak_memory_mb: float | None  # device peak (GPU/TPU) or process peak RSS (CPU)
    first_loss: float  # at the content image, before the first update (mean over the batch)
    final_loss: float
    retraced: bool

    def as_dict(self) -> dict:
        return {**asdict(self), "case": asdict(self.case)}


def step_gflop(height: int, width: int) -> float:
    """GFLOP of one step of one image under the module's FLOP model."""
    flops, h, w = 0.0, height, width
    for layer, (_, _, cin, cout) in CONV_SHAPES.items():
        if layer == "block5_conv2":
            break
        block = int(layer[5])
        scale = 2 ** (block - 1)
        h, w = height // scale, width // scale
        flops += 2 * h * w * cin * cout * 9
        if layer.endswith("_conv1"):
            flops += 2 * h * w * cout * cout  # Gram of reluN_1
    return 2 * flops / 1e9


def measure_peak_gflops(size: int | None = None, repeats: int = 5) -> float:
    """Achieved float32 GEMM GFLOP/s of this backend: the practical ceiling for convolutions."""
    size = size or (2048 if jax.default_backend() == "cpu" else 8192)
    a = jnp.ones((size, size), jnp.float32)
    matmul = jax.jit(lambda x, y: x @ y)
    matmul(a, a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def _peak_memory_mb() -> float | None:
    device = jax.devices()[0]
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "peak_bytes_in_use" in stats:
        return stats["peak_bytes_in_use"] / 2**20
    # ru_maxrss is in KiB on Linux, bytes on macOS.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def bench_images(case: BenchCase, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The random (batch, H, W, 3) content images and (H, W, 3) style image a case runs on, in [0, 1]."""
    rng = np.random.default_rng(seed)
    contents = rng.uniform(size=(case.batch, case.height, case.width, 3)).astype(np.float32)
    return contents, rng.uniform(size=(case.height, case.width, 3)).astype(np.float32)


def run_case(
    case: BenchCase,
    params,
    *,
    steps: int = 10,
    dispatches: int = 3,
    peak_gflops: float | None = None,
    seed: int = 0,
) -> BenchResult:
    """Compile and time one case (random content and style images).

    The step runs as `jaxstyle.stylize` runs it: ``steps`` iterations per dispatch (stylize's
    ``report_every``, 10 by default) in one compiled loop. After one warm-up dispatch, ``dispatches``
    are timed; ms/step is the median dispatch time divided by ``steps``.
    """
    config = preset(
        "tf-tutorial",
        content_layers=("block4_conv2",),
        optimizer=case.optimizer,
        learning_rate=0.02 if case.optimizer == "adam" else 1.0,
        precision=case.precision,
        iterations=steps,
    )
    loss_spec = LossSpec.from_config(config)
    if case.conv not in CONV_CHOICES:
        raise UsageError(f"unknown conv algorithm {case.conv!r}; choose one of {', '.join(CONV_CHOICES)}")
    params = prepare_params(params, loss_spec.layers, winograd_convs=CONV_CHOICES[case.conv])
    shape = (case.height, case.width)
    contents, style = (jnp.asarray(a) for a in bench_images(case, seed))
    # Batch 1 takes the single-image path that `stylize` runs; larger batches the vmapped one.
    one = make_stepper(loss_spec, OptimizerSpec.from_config(config))
    traces = [0]  # counted at trace time, to report a retrace

    def counted(*args):
        traces[0] += 1
        return one.step(*args)

    stepper = Stepper(one.init, counted)
    if case.batch > 1:
        stepper = batched(stepper)
        content = jax.vmap(lambda c: content_targets(params, c, loss_spec))(contents)
        image = jnp.copy(contents)
    else:
        content, image = content_targets(params, contents[0], loss_spec), jnp.copy(contents[0])
    shared = blend_style_targets([style_targets(params, style, loss_spec, shape)], (1.0,))
    # The inputs' losses, which every step measures its ratios against (`objective.weighted_terms`).
    first = make_targets(content_targets(params, contents[0], loss_spec), shared)
    norm = whole_norms(params, contents[0], [style], (1.0,), first, loss_spec)
    targets = make_targets(
        content, shared, jax.tree.map(lambda v: jnp.stack([v] * case.batch), norm) if case.batch > 1 else norm
    )
    opt_state = init_opt_state(image, stepper, config.optimize.resolved_learning_rate)
    dispatch: Callable = lambda image, state: run_steps(params, image, state, targets, stepper=stepper, steps=steps)

    # Trace and compile ahead of time, so compile_s is exactly that; the jitted calls below reuse it.
    start = time.perf_counter()
    jitted_run_steps().lower(params, image, opt_state, targets, stepper=stepper, steps=steps).compile()
    compile_s = time.perf_counter() - start
    traces_after_compile = traces[0]
    image, opt_state, terms = dispatch(image, opt_state)
    first_loss = float(np.mean(np.asarray(terms["total"])[0]))
    times = []
    for _ in range(dispatches):
        start = time.perf_counter()
        image, opt_state, terms = dispatch(image, opt_state)
        jax.block_until_ready(image)
        times.append(time.perf_counter() - start)
    seconds = float(np.median(times)) / steps
    gflop = step_gflop(*shape) * case.batch
    gflops = gflop / seconds
    device = jax.devices()[0]
    return BenchResult(
        case=case,
        backend=jax.default_backend(),
        device=getattr(device, "device_kind", str(device)),
        conv="winograd" if "winograd" in params["block2_conv1"] else "direct",
        compile_s=compile_s,
        step_ms=seconds * 1e3,
        images_per_s=case.batch / seconds,
        gflop_per_step=gflop,
        gflops=gflops,
        percent_of_peak=100 * gflops / peak_gflops if peak_gflops else None,
        peak_memory_mb=_peak_memory_mb(),
        first_loss=first_loss,
        final_loss=float(np.mean(np.asarray(terms["total"])[-1])),
        retraced=traces[0] != traces_after_compile or traces_after_compile > 1,
    )


# The fast method's transformer: (kernel side, in, out channels, output resolution divisor) of
# each convolution, for the FLOP model (direct convolution, 2 FLOP per multiply-add).
_FAST_CONVS = (
    (9, 3, 8, 1),
    (3, 8, 16, 2),
    (3, 16, 32, 4),
    *[(3, 32, 32, 4)] * 10,
    (3, 32, 16, 2),
    (3, 16, 8, 1),
    (9, 8, 3, 1),
)
FAST_FLOP_PER_PIXEL = sum(2 * k * k * cin * cout / div**2 for k, cin, cout, div in _FAST_CONVS)  # 25,056


@dataclass(frozen=True)
class FastResult:
    height: int
    width: int
    batch: int
    precision: str
    backend: str
    device: str
    compile_s: float
    call_ms: float  # median wall time of one transformer call on the whole batch
    images_per_s: float
    gflops: float
    percent_of_peak: float | None
    peak_memory_mb: float | None

    def as_dict(self) -> dict:
        return asdict(self)


def run_fast_case(
    height: int,
    width: int,
    batch: int = 1,
    precision: str = "float32",
    *,
    calls: int = 5,
    peak_gflops: float | None = None,
    params=None,
) -> FastResult:
    """Compile and time the fast method's transformer (random content and style vectors)."""
    from jaxstyle.nets import magenta, magenta_weights

    if precision not in ("float32", "bfloat16"):
        raise UsageError(f"unknown precision {precision!r}; choose float32 or bfloat16")
    transformer = jax.device_put((params or magenta_weights.load_arbitrary())["transformer"])
    rng = np.random.default_rng(0)
    content = jnp.asarray(rng.uniform(size=(batch, height, width, 3)).astype(np.float32))
    vector = jnp.asarray(rng.normal(size=(batch, magenta_weights.STYLE_DIM)).astype(np.float32))
    dtype = jnp.bfloat16 if precision == "bfloat16" else jnp.float32
    start = time.perf_counter()
    compiled = magenta.transform.lower(transformer, content, vector, compute_dtype=dtype).compile()
    compile_s = time.perf_counter() - start
    compiled(transformer, content, vector).block_until_ready()  # warm-up
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        compiled(transformer, content, vector).block_until_ready()
        times.append(time.perf_counter() - start)
    seconds = float(np.median(times))
    gflops = FAST_FLOP_PER_PIXEL * height * width * batch / seconds / 1e9
    device = jax.devices()[0]
    return FastResult(
        height=height,
        width=width,
        batch=batch,
        precision=precision,
        backend=jax.default_backend(),
        device=getattr(device, "device_kind", str(device)),
        compile_s=compile_s,
        call_ms=seconds * 1e3,
        images_per_s=batch / seconds,
        gflops=gflops,
        percent_of_peak=100 * gflops / peak_gflops if peak_gflops else None,
        peak_memory_mb=_peak_memory_mb(),
    )
