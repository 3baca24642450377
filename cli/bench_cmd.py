"""`jaxstyle bench`: time the optimisation step on the available accelerator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from jaxstyle.config import CHOICE_FIELDS, choices, default
from jaxstyle.errors import UsageError

from . import options as opt
from .common import progress_bar, say, user_errors

ALL_OPTIMIZERS = list(CHOICE_FIELDS["optimizer"])  # bench times every optimiser unless told
DEFAULT_PRECISIONS = [default("precision")]


def _parse_size(text: str) -> tuple[int, int]:
    """'512' -> (512, 512); '384x512' -> (384, 512) as height x width."""
    parts = text.lower().split("x")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 16:
        raise UsageError(f"size {text!r} must be N or HxW with sides >= 16, e.g. 512 or 384x512")
    return values  # type: ignore[return-value]


def _split(values: list[str]) -> list[str]:
    return [part for value in values for part in value.replace(",", " ").split()]


def _comparable(case) -> bool:
    """The peers time one float32 image with the TF tutorial's Adam."""
    return (case.batch, case.precision, case.optimizer) == (1, "float32", "adam")


def _bench_fast(shapes, batch_sizes, precisions, peak, weights_path) -> list:
    """The fast method's cases: the transformer at each size, batch and precision."""
    from jaxstyle.bench import run_fast_case

    from .common import load_weights_option

    params = load_weights_option(weights_path, "fast")
    cases = [(h, w, b, p) for (h, w) in shapes for b in batch_sizes for p in precisions]
    results = []
    with progress_bar(transient=True) as bar:
        task = bar.add_task("bench fast", total=len(cases), status="")
        for h, w, b, p in sorted(cases, key=lambda c: c[0] * c[1] * c[2]):
            bar.update(task, status=f"{h}x{w} x{b} {p}")
            results.append(run_fast_case(h, w, b, p, peak_gflops=peak, params=params))
            bar.advance(task)
    return results


def _report_fast(results, peak, json_path, to_file, overwrite, inputs) -> None:
    from rich.console import Console
    from rich.table import Table

    from jaxstyle.bench import FAST_FLOP_PER_PIXEL
    from jaxstyle.io.files import atomic_write_text

    title = f"jaxstyle bench --method fast: {results[0].backend} ({results[0].device}), GEMM peak {peak:.0f} GFLOP/s"
    table = Table(title=title)
    for column in ("size", "batch", "precision", "ms/call", "images/s", "GFLOP/s", "% peak", "compile s", "peak MB"):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(
            f"{r.height}x{r.width}", str(r.batch), r.precision, f"{r.call_ms:.1f}", f"{r.images_per_s:.2f}",
            f"{r.gflops:.0f}", f"{r.percent_of_peak:.0f}", f"{r.compile_s:.2f}", f"{r.peak_memory_mb:.0f}",
        )  # fmt: skip
    console = Console(stderr=json_path is not None and not to_file)
    if not console.is_terminal:
        console.width = 140  # a log or a pipe: do not squeeze the table to 80 columns
    console.print(table)
    if json_path is None:
        return
    payload = json.dumps(
        {
            "method": "fast",
            "gemm_peak_gflops": peak,
            "flop_per_pixel": FAST_FLOP_PER_PIXEL,
            "results": [r.as_dict() for r in results],
        },
        indent=2,
    )
    if not to_file:
        typer.echo(payload)
        return
    with user_errors():
        atomic_write_text(json_path, payload + "\n", overwrite=overwrite, inputs=inputs)
    say(f"wrote {json_path}")


def bench_command(
    method: Annotated[
        str, typer.Option(help=f"gatys: the optimisation step; fast: the transformer. [default: {default('method')}]")
    ] = default("method"),
    sizes: Annotated[list[str], typer.Option("--size", help="HxW or N; repeat or comma-separate.")] = [  # noqa: B006
        "256",
        "384x512",
    ],
    batches: Annotated[list[str], typer.Option("--batch", help="Batch sizes.")] = ["1"],  # noqa: B006
    optimizers: Annotated[
        list[str], typer.Option("--optimizer", help=f"{choices('optimizer')}, or several.")
    ] = ALL_OPTIMIZERS,
    precisions: Annotated[
        list[str], typer.Option("--precision", help=f"{choices('precision')}, or both.")
    ] = DEFAULT_PRECISIONS,
    convs: Annotated[
        list[str], typer.Option("--conv", help="auto (Winograd on CPU, lax.conv elsewhere), winograd and/or direct.")
    ] = ["auto"],  # noqa: B006
    compare: Annotated[
        list[str],
        typer.Option(
            help="Also time the same Adam step in torch and/or tensorflow (installed separately), side by side."
        ),
    ] = [],  # noqa: B006
    steps: Annotated[
        int,
        typer.Option(
            help="Steps per dispatch, as stylize runs them between progress reports (StyleConfig.report_every)."
        ),
    ] = 10,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the results as JSON ('-' for stdout).")
    ] = None,
    weights: opt.Weights = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --json file.")] = False,
) -> None:
    """Time the optimisation step: ms/step, GFLOP/s, compile time, memory.

    Runs on the default JAX backend (CPU, GPU or TPU). Each case is compiled, warmed up with one
    dispatch of --steps steps, then three dispatches are timed: ms/step is the median dispatch
    divided by --steps. The FLOP model counts the 13 convolutions up to block5_conv1 and the
    5 Gram matrices, forward and image-gradient backward (2x forward).

    Examples:

    \b
      jaxstyle bench
      jaxstyle bench --size 512 --batch 1,2,4,8 --optimizer adam --json r.json
      jaxstyle bench --size 384x512 --precision float32,bfloat16
      jaxstyle bench --size 384x512 --optimizer adam --conv winograd,direct
      jaxstyle bench --optimizer adam --compare torch,tensorflow

    On CPU the convolutions from block2 on use Winograd F(4x4, 3x3), 4x fewer multiplications, so
    GFLOP/s (direct-convolution equivalent) can exceed the GEMM peak.

    --compare runs the step in PyTorch (eager, channels_last) and/or TensorFlow (the tutorial's
    train_step) in a child process with the same weights, images and loss, one step per call, for
    every size with batch 1, Adam and float32; the table shows each peer's time over jaxstyle's and
    the relative difference of the first step's loss (equal work: ~1e-7).
    """
    import jax
    from rich.console import Console
    from rich.table import Table

    from jaxstyle.bench import BenchCase, bench_images, measure_peak_gflops, run_case
    from jaxstyle.io.files import atomic_write_text, check_output_path
    from jaxstyle.peers import PEERS, PeerUnavailable, check_peer, run_peer
    from jaxstyle.weights import load_weights

    from .common import load_weights_option

    with user_errors():
        if steps < 1:
            raise UsageError(f"--steps must be at least 1, got {steps}")
        if method not in CHOICE_FIELDS["method"]:
            raise UsageError(f"--method {method!r} is not one of {', '.join(CHOICE_FIELDS['method'])}")
        to_file = json_path is not None and str(json_path) != "-"
        inputs = [weights] if weights is not None else []
        if to_file:  # before minutes of benchmarking, not after
            check_output_path(json_path, overwrite=overwrite, inputs=inputs)
        shapes = [_parse_size(s) for s in _split(sizes)]
        wanted_peers = _split(compare)
        try:
            batch_sizes = [int(b) for b in _split(batches)]
        except ValueError:
            raise UsageError(f"--batch must be integers, got {batches}") from None
        if not batch_sizes or min(batch_sizes) < 1:
            raise UsageError("--batch sizes must be at least 1")
        for name, values, allowed in (
            ("--optimizer", _split(optimizers), CHOICE_FIELDS["optimizer"]),
            ("--precision", _split(precisions), CHOICE_FIELDS["precision"]),
            ("--conv", _split(convs), ("auto", "winograd", "direct")),
            ("--compare", wanted_peers, PEERS),
        ):
            for value in values:
                if value not in allowed:
                    raise UsageError(f"{name} {value!r} is not one of {', '.join(allowed)}")
        if method == "fast":
            say(f"backend {jax.default_backend()}: {jax.devices()[0]}; measuring GEMM peak ...")
            peak = measure_peak_gflops()
            fast = _bench_fast(shapes, batch_sizes, _split(precisions), peak, weights)
    if method == "fast":
        _report_fast(fast, peak, json_path, to_file, overwrite, inputs)
        return
    with user_errors():
        params = jax.device_put((load_weights_option(weights) or load_weights()).params)
        cases = sorted(
            (
                BenchCase(h, w, b, o, p, conv)
                for (h, w) in shapes
                for b in batch_sizes
                for o in _split(optimizers)
                for p in _split(precisions)
                for conv in _split(convs)
            ),
            key=lambda c: (c.height * c.width * c.batch, c.optimizer, c.precision, c.conv),
        )
        if wanted_peers and not any(_comparable(c) for c in cases):
            raise UsageError("--compare needs a case with --batch 1, --optimizer adam and --precision float32")
        for peer in wanted_peers:  # before minutes of benchmarking, not after
            try:
                check_peer(peer)
            except PeerUnavailable as error:
                raise UsageError(f"--compare: {error}") from None
        say(f"backend {jax.default_backend()}: {jax.devices()[0]}; measuring GEMM peak ...")
        peak = measure_peak_gflops()
        results = []
        with progress_bar(transient=True) as bar:
            task = bar.add_task("bench", total=len(cases), status="")
            for case in cases:
                bar.update(
                    task,
                    status=f"{case.height}x{case.width} x{case.batch} {case.optimizer} {case.precision} {case.conv}",
                )
                results.append(run_case(case, params, steps=steps, peak_gflops=peak))
                bar.advance(task)
        # One peer run per size, against jaxstyle's batch-1 float32 Adam case there.
        ours = {(r.case.height, r.case.width): r for r in results if _comparable(r.case)}
        peers = []
        with progress_bar(transient=True) as bar:
            task = bar.add_task("peers", total=len(ours) * len(wanted_peers), status="")
            for peer in wanted_peers:
                for (h, w), mine in ours.items():
                    bar.update(task, status=f"{peer} {h}x{w}")
                    contents, style = bench_images(mine.case)
                    peers.append(run_peer(peer, params, contents[0], style, steps=steps))
                    bar.advance(task)
    table = Table(title=f"jaxstyle bench: {results[0].backend} ({results[0].device}), GEMM peak {peak:.0f} GFLOP/s")
    for column in (
        "size",
        "batch",
        "optimizer",
        "precision",
        "conv",
        "ms/step",
        "images/s",
        "GFLOP/s",
        "% peak",
        "compile s",
        "peak MB",
    ):
        table.add_column(column, justify="right")
    for r in results:
        c = r.case
        table.add_row(
            f"{c.height}x{c.width}",
            str(c.batch),
            c.optimizer,
            c.precision,
            r.conv,
            f"{r.step_ms:.1f}",
            f"{r.images_per_s:.2f}",
            f"{r.gflops:.0f}",
            f"{r.percent_of_peak:.0f}",
            f"{r.compile_s:.2f}",
            f"{r.peak_memory_mb:.0f}",
        )
    console = Console(stderr=json_path is not None and str(json_path) == "-")
    if not console.is_terminal:
        console.width = 140  # a log or a pipe: do not squeeze the table to 80 columns
    console.print(table)
    if peers:
        side = Table(title="the same Adam step, one step per call in the peers (time / jaxstyle's)")
        for column in ("size", "peer", "version", "ms/step", "x jaxstyle", "loss rel. diff"):
            side.add_column(column, justify="right")
        for p in peers:
            mine = ours[(p.height, p.width)]
            side.add_row(
                f"{p.height}x{p.width}",
                p.peer,
                p.version,
                f"{p.step_ms:.1f}",
                f"{p.step_ms / mine.step_ms:.2f}",
                f"{abs(p.first_loss - mine.first_loss) / abs(mine.first_loss):.1e}",
            )
        console.print(side)
    if json_path is not None:
        payload = json.dumps(
            {"gemm_peak_gflops": peak, "results": [r.as_dict() for r in results], "peers": [vars(p) for p in peers]},
            indent=2,
        )
        if not to_file:
            typer.echo(payload)
        else:
            with user_errors():
                atomic_write_text(json_path, payload + "\n", overwrite=overwrite, inputs=inputs)
            say(f"wrote {json_path}")
