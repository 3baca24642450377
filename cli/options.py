"""Options that several commands share, declared once, with defaults and choices from the config.

Every option that sets a `StyleConfig` field defaults to None ("not given"), so that a preset,
a ``--config`` file and ``--set`` can supply the value; the help shows the config's default.
Only `jaxstyle.config` is imported here: no JAX.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, get_args

import typer

from jaxstyle import config
from jaxstyle.config import JPEG_QUALITY, PRESETS, BatchConfig, StyleConfig, choices

D = StyleConfig()
B = BatchConfig()


def _default(value: object) -> str:
    return f"[default: {value:g}]" if isinstance(value, float) else f"[default: {value}]"


def _choice_help(field: str, text: str = "") -> str:
    return f"{text}{' ' if text else ''}{choices(field)}. {_default(getattr(D, field))}"


Method = Annotated[
    str | None,
    typer.Option(help=_choice_help("method", "gatys optimises the image (slow, best); fast is one network pass.")),
]
StyleStrength = Annotated[
    float | None, typer.Option(help=f"--method fast: 0 (content) to 1 (style). {_default(D.style_strength)}")
]
BuiltinStyle = Annotated[
    str | None,
    typer.Option(help="--method fast: a built-in style (0-25) or a mix, e.g. 7 or 3:0.5,12:0.5, instead of STYLES."),
]
Styles = Annotated[
    list[Path] | None,
    typer.Argument(help="One or more style images (none with --builtin-style).", show_default=False),
]
Output = Annotated[Path, typer.Option("--output", "-o", help="Output image (.png .jpg .webp .tif .bmp).")]
Preset = Annotated[str | None, typer.Option("--preset", help=f"Start from published settings: {', '.join(PRESETS)}.")]
ConfigFile = Annotated[
    Path | None,
    typer.Option("--config", help="TOML file of settings named like StyleConfig fields (after --preset)."),
]
Set = Annotated[
    list[str] | None,
    typer.Option("--set", help="Any StyleConfig field, e.g. --set lbfgs_memory=20 (repeatable; applied last)."),
]
MaxSize = Annotated[int | None, typer.Option(help=f"Long side of the output in px. {_default(D.max_size)}")]
MemoryBudget = Annotated[
    float | None,
    typer.Option(help="GiB the run may use; larger images are done in tiles. [default: 80% of the free memory]"),
]
TileSize = Annotated[int | None, typer.Option(help="Force tiles of this side in px. [default: only if needed]")]
Iterations = Annotated[int | None, typer.Option(help=f"Iterations at most (at every scale). {_default(D.iterations)}")]
StopTolerance = Annotated[
    float | None,
    typer.Option(
        help=f"Stop a scale once its loss improved by less than this fraction over the last {D.stop_window} "
        f"iterations; 0 runs them all. {_default(D.stop_tolerance)}"
    ),
]
Optimizer = Annotated[str | None, typer.Option(help=_choice_help("optimizer"))]
LearningRate = Annotated[float | None, typer.Option("--lr", help="Step size. [default: 1.0 for lbfgs, 0.02 for adam]")]
ContentWeight = Annotated[float | None, typer.Option(help=f"Content loss weight. {_default(D.content_weight)}")]
StyleWeight = Annotated[
    float | None,
    typer.Option(help="Style loss weight. [default: 1; with loss_units=raw 500, 5e4 with sliced_wasserstein]"),
]
TVWeight = Annotated[float | None, typer.Option(help=f"Total variation weight. {_default(D.tv_weight)}")]
StyleBlend = Annotated[str | None, typer.Option(help="Blend of several styles, e.g. 0.7,0.3. [default: equal]")]
StyleScale = Annotated[float | None, typer.Option(help=f"Style size relative to the output. {_default(D.style_scale)}")]
Init = Annotated[str | None, typer.Option(help=_choice_help("init", "Starting image:"))]
Seed = Annotated[int | None, typer.Option(help=f"Random seed. {_default(D.seed)}")]
PreserveColor = Annotated[str | None, typer.Option(help=_choice_help("preserve_color", "Keep the content's colours:"))]
Pooling = Annotated[str | None, typer.Option(help=_choice_help("pooling"))]
StyleStatistic = Annotated[str | None, typer.Option(help=_choice_help("style_statistic"))]
Weights = Annotated[
    Path | None,
    typer.Option(
        help="VGG19 weights (.safetensors, Keras .h5, MatConvNet .mat), or with --method fast a converted "
        "Magenta .safetensors. [default: embedded]"
    ),
]
Quality = Annotated[int, typer.Option(help="JPEG/WebP quality, 1-100.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output file.")]
BatchSize = Annotated[int, typer.Option(help="Images optimised together (rounded up to a multiple of the devices).")]
BucketMultiple = Annotated[
    int, typer.Option(help="Round bucket sides up to N px (reflect-pad, crop back) to share batches.")
]
OutputFormat = Annotated[
    str, typer.Option("--format", help=f"Output format: {', '.join(get_args(config.OutputFormat))}.")
]

__all__ = ["JPEG_QUALITY", "B", "D"]
