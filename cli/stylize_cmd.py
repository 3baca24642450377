"""`jaxstyle stylize` and `jaxstyle demo`."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from importlib import resources
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from jaxstyle.config import PRESETS, StyleConfig, preset
from jaxstyle.atomic import atomic_write_text
from jaxstyle.errors import OutputError, UsageError

from .common import EXIT_INTERRUPTED, float_list, progress_bar, say, user_errors

D = StyleConfig()  # the defaults shown in --help come from the config, never repeated here

# Options that `stylize` and `batch` share, declared once.
PresetOption = Annotated[
    str | None, typer.Option("--preset", help=f"Start from published settings: {', '.join(PRESETS)}.")
]
OptimizerOption = Annotated[str | None, typer.Option(help=f"lbfgs or adam. [default: {D.optimizer}]")]
LearningRateOption = Annotated[
    float | None, typer.Option("--lr", help="Step size. [default: 1.0 for lbfgs, 0.02 for adam]")
]
ContentWeightOption = Annotated[float | None, typer.Option(help=f"[default: {D.content_weight:g}]")]
TVWeightOption = Annotated[float | None, typer.Option(help=f"Total variation weight. [default: {D.tv_weight:g}]")]
StyleBlendOption = Annotated[
    str | None, typer.Option(help="Blend of several styles, e.g. 0.7,0.3. [default: equal]")
]
StyleScaleOption = Annotated[
    float | None, typer.Option(help=f"Style size relative to the output. [default: {D.style_scale:g}]")
]
SeedOption = Annotated[int | None, typer.Option(help=f"Random seed. [default: {D.seed}]")]
PreserveColorOption = Annotated[
    str | None, typer.Option(help=f"none, luminance, histogram or knn. [default: {D.preserve_color}]")
]
WeightsOption = Annotated[
    Path | None, typer.Option(help="VGG19 weights (.safetensors, Keras .h5, MatConvNet .mat). [default: embedded]")
]
QualityOption = Annotated[int, typer.Option(help="JPEG/WebP quality.")]

EXAMPLES = """

Examples:

  jaxstyle stylize photo.jpg starry_night.jpg -o out.png

  jaxstyle stylize photo.jpg a.jpg b.jpg --style-weights 0.7,0.3 -o out.png --max-size 768

  jaxstyle stylize photo.jpg wave.jpg -o out.jpg --preserve-color luminance --start-size 128

  jaxstyle stylize photo.jpg wave.jpg -o out.png --preset neural-style --save-every 100
"""


@dataclasses.dataclass
class _Snapshot:
    """The newest image the run has reported, kept so Ctrl-C can still save it."""

    fetch: object = None
    done: int = 0


def build_config(preset_name: str | None, **options) -> StyleConfig:
    """StyleConfig from a preset (or the defaults) with every option the user gave on top."""
    given = {key: value for key, value in options.items() if value is not None}
    config = preset(preset_name, **given) if preset_name else StyleConfig(**given)
    return config.validate()


def run_record(config: StyleConfig, content: Path, styles: list[Path], blend, weights_label: str) -> dict[str, str]:
    """Everything needed to reproduce a result, stored as PNG text (or EXIF) metadata."""
    from jaxstyle import __version__

    return {
        "Software": f"jaxstyle {__version__}",
        "jaxstyle.config": json.dumps(dataclasses.asdict(config), sort_keys=True),
        "jaxstyle.inputs": json.dumps(
            {"content": str(content), "styles": [str(s) for s in styles], "style_weights": blend, "weights": weights_label}
        ),
    }


def check_history_path(path: Path, *, overwrite: bool, taken: list[Path]) -> Path:
    """The --history JSON file: not an input or the image output, not existing unless --overwrite."""
    resolved = Path(path).resolve()
    if any(resolved == Path(other).resolve() for other in taken):
        raise UsageError(f"--history {path} is the same file as an input or the output")
    if resolved.is_dir():
        raise OutputError(f"--history {path} is a directory")
    if resolved.exists() and not overwrite:
        raise OutputError(f"--history {path} exists; pass --overwrite to replace it")
    try:
        resolved.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create the folder for --history {path}: {error.strerror}") from None
    if not os.access(resolved.parent, os.W_OK):
        raise OutputError(f"cannot write --history {path}: folder not writable")
    return resolved


def interrupted_path(output: Path) -> Path:
    """A free name next to the output for the image saved on Ctrl-C."""
    candidate = output.with_name(f"{output.stem}.interrupted{output.suffix}")
    index = 1
    while candidate.exists():
        candidate = output.with_name(f"{output.stem}.interrupted-{index}{output.suffix}")
        index += 1
    return candidate


def load_weights_option(path: Path | None):
    from jaxstyle.weights import load_weights
    from jaxstyle.weights_convert.convert import load_any

    return load_weights() if path is None else load_any(path)


def run_stylize(
    content_path: Path,
    style_paths: list[Path],
    output: Path,
    config: StyleConfig,
    *,
    style_blend: tuple[float, ...] | None,
    init_image_path: Path | None,
    weights_path: Path | None,
    save_every: int | None,
    history_path: Path | None,
    original_size: bool,
    overwrite: bool,
    jpeg_quality: int,
) -> None:
    from jaxstyle.image import check_output_path, load_image, resize_to, save_image
    from jaxstyle.stylize import check_style_blend, stylize

    inputs = [content_path, *style_paths, *([init_image_path] if init_image_path else [])]
    check_style_blend(style_blend, len(style_paths))
    content = load_image(content_path)
    styles = [load_image(path).rgb for path in style_paths]
    init_image = load_image(init_image_path).rgb if init_image_path else None
    output = check_output_path(output, overwrite=overwrite, inputs=inputs)
    if history_path is not None:
        history_path = check_history_path(history_path, overwrite=overwrite, taken=[*inputs, output])
    weights = load_weights_option(weights_path)
    if save_every:
        config = config.replace(report_every=math.gcd(save_every, config.report_every))

    history: dict[str, list[float]] = {}
    snapshot = _Snapshot()
    metadata = run_record(config, content_path, style_paths, style_blend, str(weights_path or "embedded"))
    with progress_bar() as bar:
        task = bar.add_task("stylize", total=config.iterations, status="compiling")

        def on_progress(progress) -> None:
            report = progress.report
            snapshot.fetch, snapshot.done = report.image, progress.done
            for key, values in report.losses.items():
                history.setdefault(key, []).extend(float(v) for v in np.ravel(values))
            h, w = progress.shape
            rate = report.iteration / report.elapsed if report.elapsed > 0 else 0.0
            last = {key: float(np.ravel(values)[-1]) for key, values in report.losses.items()}
            status = f"loss {last['total']:.4g} (content {last['content']:.3g} style {last['style']:.3g} tv {last['tv']:.3g}) {rate:.2f} it/s"
            if report.recovered:
                status += f" [NaN: retrying at lr {report.learning_rate:.3g}]"
            bar.update(
                task,
                completed=progress.done,
                total=progress.total,
                description=f"scale {progress.scale + 1}/{progress.num_scales} {w}x{h}",
                status=status,
            )
            if save_every and progress.done % save_every == 0 and progress.done < progress.total:
                path = output.with_name(f"{output.stem}.{progress.done:05d}{output.suffix}")
                save_image(path, report.image(), overwrite=True, inputs=inputs, metadata=metadata, jpeg_quality=jpeg_quality)

        try:
            result = stylize(
                content.rgb,
                styles,
                config,
                style_blend=style_blend,
                init_image=init_image,
                weights=weights,
                callback=on_progress,
            )
        except KeyboardInterrupt:
            bar.stop()
            if snapshot.fetch is None:
                say("interrupted before the first report; nothing to save")
            else:
                path = interrupted_path(output)
                save_image(path, snapshot.fetch(), inputs=inputs, metadata=metadata, jpeg_quality=jpeg_quality)
                say(f"interrupted after {snapshot.done} iterations; last image saved to {path}")
            raise typer.Exit(EXIT_INTERRUPTED) from None
    if original_size:
        result = resize_to(result, *content.size)
    alpha = resize_to(content.alpha, *result.shape[:2]) if content.alpha is not None else None
    save_image(output, result, alpha=alpha, overwrite=overwrite, inputs=inputs, metadata=metadata, jpeg_quality=jpeg_quality)
    if history_path is not None:
        atomic_write_text(history_path, json.dumps(history))
    say(f"wrote {output} ({result.shape[1]}x{result.shape[0]})")


def stylize_command(
    content: Annotated[Path, typer.Argument(help="The photo to stylize.", show_default=False)],
    styles: Annotated[list[Path], typer.Argument(help="One or more style images.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output image (.png .jpg .webp .tif .bmp).")],
    preset_name: PresetOption = None,
    max_size: Annotated[int | None, typer.Option(help=f"Long side of the output in px. [default: {D.max_size}]")] = None,
    iterations: Annotated[
        int | None, typer.Option(help=f"Iterations at the final scale (and every scale). [default: {D.iterations}]")
    ] = None,
    optimizer: OptimizerOption = None,
    learning_rate: LearningRateOption = None,
    content_weight: ContentWeightOption = None,
    style_weight: Annotated[
        float | None, typer.Option(help=f"[default: {D.resolved_style_weight:g}; 5e4 with sliced_wasserstein]")
    ] = None,
    tv_weight: TVWeightOption = None,
    style_weights: StyleBlendOption = None,
    style_layer_weights: Annotated[
        str | None, typer.Option(help="Weight per style layer, e.g. 0.5,1,1.5,3,4. [default: equal]")
    ] = None,
    style_scale: StyleScaleOption = None,
    start_size: Annotated[
        int | None, typer.Option(help="Optimise coarse to fine from this long side (x sqrt 2 per scale).")
    ] = None,
    coarse_iterations: Annotated[
        int | None, typer.Option(help="With --start-size: iterations at each scale before the final one. [default: --iterations]")
    ] = None,
    init: Annotated[
        str | None, typer.Option(help=f"content, noise, blend, gray or image. [default: {D.init}]")
    ] = None,
    init_image: Annotated[Path | None, typer.Option(help="Starting image for --init image.")] = None,
    seed: SeedOption = None,
    preserve_color: PreserveColorOption = None,
    style_statistic: Annotated[
        str | None, typer.Option(help=f"gram or sliced_wasserstein. [default: {D.style_statistic}]")
    ] = None,
    pooling: Annotated[str | None, typer.Option(help=f"max or avg. [default: {D.pooling}]")] = None,
    save_every: Annotated[int | None, typer.Option(help="Also save the image every N iterations.")] = None,
    history: Annotated[Path | None, typer.Option(help="Write the per-term loss history as JSON.")] = None,
    original_size: Annotated[bool, typer.Option(help="Resize the result back to the content's size.")] = False,
    weights: WeightsOption = None,
    quality: QualityOption = 95,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output file.")] = False,
) -> None:
    """Stylize a photo with one or more style images (Gatys et al.)."""
    with user_errors():
        if save_every is not None and save_every < 1:
            raise UsageError(f"--save-every must be at least 1, got {save_every}")
        if not 1 <= quality <= 100:
            raise UsageError(f"--quality must be between 1 and 100, got {quality}")
        config = build_config(
            preset_name,
            max_size=max_size,
            iterations=iterations,
            optimizer=optimizer,
            learning_rate=learning_rate,
            content_weight=content_weight,
            style_weight=style_weight,
            tv_weight=tv_weight,
            style_layer_weights=float_list(style_layer_weights, "--style-layer-weights"),
            style_scale=style_scale,
            multiscale_min=start_size,
            coarse_iterations=coarse_iterations,
            init=init,
            seed=seed,
            preserve_color=preserve_color,
            style_statistic=style_statistic,
            pooling=pooling,
        )
        if config.init == "image" and init_image is None:
            raise UsageError("--init image needs --init-image FILE")
        run_stylize(
            content,
            styles,
            output,
            config,
            style_blend=float_list(style_weights, "--style-weights"),
            init_image_path=init_image,
            weights_path=weights,
            save_every=save_every,
            history_path=history,
            original_size=original_size,
            overwrite=overwrite,
            jpeg_quality=quality,
        )


stylize_command.__doc__ += EXAMPLES


def bundled_image(name: str) -> Path:
    return Path(str(resources.files("jaxstyle.assets").joinpath("images", name)))


def demo_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the demo picture.")] = Path(
        "jaxstyle-demo.png"
    ),
    max_size: Annotated[int, typer.Option(help="Long side of the output in px.")] = 384,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output file.")] = False,
) -> None:
    """Stylize the bundled photo (Chelsea the cat) with the bundled Starry Night, offline.

    Runs coarse to fine from 128 px; two to three minutes on a 2-core CPU at the default size.

    Example:

      jaxstyle demo -o demo.png
    """
    with user_errors():
        started = time.perf_counter()
        config = build_config(None, max_size=max_size, multiscale_min=min(128, max_size), iterations=100)
        run_stylize(
            bundled_image("chelsea.jpg"),
            [bundled_image("starry_night.jpg")],
            output,
            config,
            style_blend=None,
            init_image_path=None,
            weights_path=None,
            save_every=None,
            history_path=None,
            original_size=False,
            overwrite=overwrite,
            jpeg_quality=95,
        )
        say(f"done in {time.perf_counter() - started:.0f} s")
