"""`jaxstyle stylize` and `jaxstyle demo`."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from typer._click import exceptions as click_exceptions

from jaxstyle.config import JPEG_QUALITY, StyleConfig
from jaxstyle.config_sources import build_config
from jaxstyle.errors import UsageError

from . import options as opt
from .common import (
    EXIT_INTERRUPTED,
    check_model_option,
    float_list,
    load_weights_option,
    progress_bar,
    require_styles,
    say,
    user_errors,
)

EXAMPLES = """

Examples:

\b
  jaxstyle stylize photo.jpg starry_night.jpg -o out.png
  jaxstyle stylize photo.jpg a.jpg b.jpg --style-weights 0.7,0.3 \\
      -o out.png --max-size 768
  jaxstyle stylize photo.jpg wave.jpg -o out.jpg \\
      --preserve-color luminance --start-size 128
  jaxstyle stylize photo.jpg wave.jpg -o out.png --preset neural-style
  jaxstyle stylize photo.jpg wave.jpg -o out.png --set lbfgs_memory=20
  jaxstyle stylize photo.jpg wave.jpg starry.jpg -o out.png \\
      --style-mask sky.png --style-mask sea.png
"""


@dataclasses.dataclass
class _Snapshot:
    """The newest image the run has reported, kept so Ctrl-C can still save it."""

    fetch: object = None
    done: int = 0


def check_history_path(path: Path, *, overwrite: bool, taken: list[Path]) -> Path:
    """The --history JSON file: not an input or the image output, not existing unless --overwrite."""
    from jaxstyle.io.files import check_output_path, same_file

    if any(same_file(Path(path), Path(other)) for other in taken):
        raise UsageError(f"--history {path} is the same file as an input or the output")
    return check_output_path(path, overwrite=overwrite)


def interrupted_path(output: Path) -> Path:
    """A free name next to the output for the image saved on Ctrl-C."""
    candidate = output.with_name(f"{output.stem}.interrupted{output.suffix}")
    index = 1
    while candidate.exists():
        candidate = output.with_name(f"{output.stem}.interrupted-{index}{output.suffix}")
        index += 1
    return candidate


def describe_plan(plans, budget: int | None) -> str:
    """One line: how a print-size run fits its memory budget (whole and tiled scales)."""
    final = plans[-1]
    h, w = final.shape
    parts = []
    for index, plan in enumerate(plans):
        ph, pw = plan.shape
        how = "whole" if not plan.tiled else f"in {plan.count} tiles of {plan.tile[1]}x{plan.tile[0]}"
        parts.append(f"{'scale ' + str(index + 1) + ' ' if len(plans) > 1 else ''}{pw}x{ph} {how}")
    limit = f" with a {budget / 2**30:.1f} GiB budget" if budget is not None else ""
    return f"{w}x{h} would need about {final.needed / 2**30:.1f} GiB at once; running{limit}: " + ", ".join(parts)


def run_stylize(
    content_path: Path,
    style_paths: list[Path],
    output: Path,
    config: StyleConfig,
    *,
    style_blend: tuple[float, ...] | None,
    init_image_path: Path | None,
    mask_paths: list[Path] | None = None,
    region_paths: list[Path] | None = None,
    weights_path: Path | None,
    save_every: int | None,
    history_path: Path | None,
    original_size: bool,
    overwrite: bool,
    jpeg_quality: int,
) -> None:
    import numpy as np

    from jaxstyle import prepare
    from jaxstyle.io.decode import load_image
    from jaxstyle.io.encode import check_image_suffix, save_image
    from jaxstyle.io.files import atomic_write_text, check_output_path
    from jaxstyle.io.parts import PartsFolder, parts_folder
    from jaxstyle.io.resize import resize_to
    from jaxstyle.masks import check_aspect, load_masks
    from jaxstyle.prepare import check_style_blend, run_metadata
    from jaxstyle.stylization import Planned, stylize

    mask_paths, region_paths = mask_paths or [], region_paths or []
    inputs = [content_path, *style_paths, *([init_image_path] if init_image_path else []), *mask_paths, *region_paths]
    inputs += [Path(config.fast.model)] if config.fast.model else []  # never written over
    if style_paths:
        check_style_blend(style_blend, len(style_paths))
    if mask_paths and style_blend is not None:
        raise UsageError(
            "--style-weights and --style-mask do not combine: the masks say how much of each style goes where"
        )
    if region_paths and not style_paths:
        raise UsageError("--style-region takes a part of a style image; built-in styles have none")
    count, what = prepare.mask_count(len(style_paths), config)
    masks = load_masks(mask_paths, count, what=what) if mask_paths else None  # the count before any file
    regions = load_masks(region_paths, len(style_paths), kind="region") if region_paths else None
    content = load_image(content_path)
    fit = config.masks.mask_fit
    for mask, path in zip(masks or [], mask_paths):
        check_aspect(mask, content.size, fit=fit, name=f"style mask '{path}'")
    styles = [load_image(path).rgb for path in style_paths]
    for region, path, style in zip(regions or [], region_paths, styles):
        check_aspect(region, style.shape[:2], fit=fit, name=f"style region '{path}'")
    init_image = load_image(init_image_path).rgb if init_image_path else None
    check_image_suffix(output)
    output = check_output_path(output, overwrite=overwrite, inputs=inputs)
    if history_path is not None:
        history_path = check_history_path(history_path, overwrite=overwrite, taken=[*inputs, output])
    weights_label = check_model_option(config, weights_path)
    weights = load_weights_option(weights_path, config.method)
    if save_every:
        config = config.replace(report_every=math.gcd(save_every, config.optimize.report_every))

    kept: list = []  # the parts folder of a tiled optimisation, once the library asks for it

    def keep_parts(plans, weights_id):
        # the plan too: it follows the free memory, which changes between runs
        record = prepare.settings_record(
            config, inputs, style_blend, weights_id, plan=[dataclasses.asdict(plan) for plan in plans]
        )
        kept.append(PartsFolder(parts_folder(output), record, overwrite=overwrite, what="tiles"))
        return kept[-1]

    history: dict[str, list[float]] = {}
    final: dict[str, float] = {}  # the result's loss terms and ratios to the inputs (optimisations)
    snapshot = _Snapshot()
    metadata = run_metadata(
        config,
        content=str(content_path),
        styles=[str(s) for s in style_paths],
        style_weights=style_blend,
        weights=weights_label,
        masks=[str(p) for p in mask_paths],
        regions=[str(p) for p in region_paths],
    )
    with progress_bar() as bar:
        task = bar.add_task(config.method, total=None, status="compiling")

        def on_progress(progress) -> None:
            if isinstance(progress, Planned):
                say(describe_plan(progress.plans, progress.budget))
                return
            # Any method's report has done/total/description/status; an optimisation's also has
            # the loss terms and the current image.
            if getattr(progress, "scores", None) is not None:  # the last report: the result's own terms
                final.update(progress.scores)
                bar.update(task, status=progress.status)
                return
            fetch = getattr(progress.report, "image", None)
            if getattr(progress, "tiles", None) is not None:
                fetch = None  # a tile, not the picture: the finished tiles are kept in the parts folder
            snapshot.fetch, snapshot.done = fetch, progress.done
            for key, values in getattr(progress.report, "losses", {}).items():
                history.setdefault(key, []).extend(float(v) for v in np.ravel(values))
            bar.update(
                task,
                completed=progress.done,
                total=progress.total,
                description=progress.description,
                status=progress.status,
            )
            if fetch and save_every and progress.done % save_every == 0 and progress.done < progress.total:
                path = output.with_name(f"{output.stem}.{progress.done:05d}{output.suffix}")
                save_image(path, fetch(), overwrite=True, inputs=inputs, metadata=metadata, jpeg_quality=jpeg_quality)

        try:
            result = stylize(
                content.rgb,
                styles,
                config,
                style_blend=style_blend,
                style_masks=masks,
                style_regions=regions,
                init_image=init_image,
                weights=weights,
                callback=on_progress,
                keep_parts=keep_parts,
            )
        except KeyboardInterrupt:
            bar.stop()
            pieces = kept[0].names("*.npy") if kept else []
            if pieces:
                say(
                    f"interrupted; {len(pieces)} finished tile(s) and scale(s) are kept in '{kept[0].folder}'. "
                    "Run the same command again to resume."
                )
            elif snapshot.fetch is None:
                say("interrupted before any image was ready; nothing to save")
            else:
                path = interrupted_path(output)
                save_image(path, snapshot.fetch(), inputs=inputs, metadata=metadata, jpeg_quality=jpeg_quality)
                say(f"interrupted after {snapshot.done} iterations; last image saved to {path}")
            raise typer.Exit(EXIT_INTERRUPTED) from None
    if original_size:
        result = resize_to(result, *content.size)
    alpha = resize_to(content.alpha, *result.shape[:2]) if content.alpha is not None else None
    if final:
        metadata["jaxstyle.losses"] = json.dumps(final, sort_keys=True)
    save_image(
        output, result, alpha=alpha, overwrite=overwrite, inputs=inputs, metadata=metadata, jpeg_quality=jpeg_quality
    )
    if history_path is not None:
        record = {**history, "final": final} if final else history
        atomic_write_text(history_path, json.dumps(record), overwrite=overwrite, inputs=[*inputs, output])
    for parts in kept:
        parts.remove()
    say(f"wrote {output} ({result.shape[1]}x{result.shape[0]})")


@opt.with_config(
    "method",
    "builtin_style",
    "model",
    "max_size",
    "memory_budget",
    "tile_size",
    "style_strength",
    "iterations",
    "stop_tolerance",
    "optimizer",
    "learning_rate",
    "content_weight",
    "style_weight",
    "tv_weight",
    "style_layer_weights",
    "style_scale",
    "multiscale_min",
    "coarse_iterations",
    "init",
    "seed",
    "preserve_color",
    "style_statistic",
    "pooling",
    "mask_feather",
    "mask_fit",
)
def stylize_command(
    content: Annotated[Path, typer.Argument(help="The photo to stylize.", show_default=False)],
    styles: opt.Styles = None,
    *,
    output: opt.Output,
    config: StyleConfig,
    style_weights: opt.StyleBlend = None,
    style_mask: opt.StyleMasks = None,
    style_region: opt.StyleRegions = None,
    init_image: Annotated[Path | None, typer.Option(help="Starting image for --init image.")] = None,
    save_every: Annotated[int | None, typer.Option(help="Also save the image every N iterations.")] = None,
    history: Annotated[Path | None, typer.Option(help="Write the per-term loss history as JSON.")] = None,
    original_size: Annotated[bool, typer.Option(help="Resize the result back to the content's size.")] = False,
    weights: opt.Weights = None,
    quality: opt.Quality = JPEG_QUALITY,
    overwrite: opt.Overwrite = False,
) -> None:
    """Stylize a photo: optimised (Gatys et al.) or in one pass (--method fast)."""
    with user_errors():
        if save_every is not None and save_every < 1:
            raise UsageError(f"--save-every must be at least 1, got {save_every}")
        styles = require_styles(styles, config)
        if config.optimize.init == "image" and init_image is None:
            raise UsageError("--init image needs --init-image FILE")
        run_stylize(
            content,
            styles,
            output,
            config,
            style_blend=float_list(style_weights, "--style-weights"),
            init_image_path=init_image,
            mask_paths=style_mask,
            region_paths=style_region,
            weights_path=weights,
            save_every=save_every,
            history_path=history,
            original_size=original_size,
            overwrite=overwrite,
            jpeg_quality=quality,
        )


stylize_command.__doc__ += EXAMPLES


SHEET_TILE = 256  # the built-in styles' contact sheet: long side of each tile
DEMO_SIZE = 384  # the demo's own default: small enough for a few minutes on 2 CPU cores


def bundled_image(name: str) -> Path:
    return Path(str(resources.files("jaxstyle.assets").joinpath("images", name)))


def fast_demo_path(output: Path) -> Path:
    """Where the demo writes its fast picture: ``NAME.fast.SUFFIX`` beside the optimised one."""
    return output.with_name(f"{output.stem}.fast{output.suffix}")


def demo_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the optimised picture.")] = Path(
        "jaxstyle-demo.png"
    ),
    max_size: Annotated[int, typer.Option(help="Long side of the output in px.")] = DEMO_SIZE,
    overwrite: opt.Overwrite = False,
) -> None:
    """Stylize the bundled cat photo with Starry Night, fast and optimised.

    First the fast method (one network pass, a few seconds) writes NAME.fast.png; then the
    optimisation (coarse to fine from 128 px, one to three minutes on a 2-core CPU at the
    default size) writes NAME.png. Ctrl-C during the optimisation keeps the fast picture.

    Example:

    \b
      jaxstyle demo -o demo.png
    """
    with user_errors():
        started = time.perf_counter()
        from jaxstyle.io.encode import check_image_suffix
        from jaxstyle.io.files import check_output_path

        fast = fast_demo_path(output)
        for target in (output, fast):  # both checked before any work
            check_image_suffix(target)
            check_output_path(target, overwrite=overwrite)
        common = {
            "style_blend": None,
            "init_image_path": None,
            "weights_path": None,
            "save_every": None,
            "history_path": None,
            "original_size": False,
            "overwrite": overwrite,
            "jpeg_quality": JPEG_QUALITY,
        }
        content, style = bundled_image("chelsea.jpg"), [bundled_image("starry_night.jpg")]
        run_stylize(content, style, fast, build_config(settings={"method": "fast", "max_size": max_size}), **common)
        say(f"fast method (one pass of Magenta's network): {fast}, after {time.perf_counter() - started:.1f} s")
        config = build_config(settings={"max_size": max_size, "multiscale_min": min(128, max_size), "iterations": 100})
        run_stylize(content, style, output, config, **common)
        say(f"optimisation (Gatys et al.): {output}; done in {time.perf_counter() - started:.0f} s")


def builtin_styles_command(
    content: Annotated[
        Path | None, typer.Argument(help="The photo to show the styles on (optional with --model).", show_default=False)
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="The contact sheet (.png .jpg ...).")] = None,
    model: Annotated[
        Path | None, typer.Option(help="A trained network (jaxstyle train): list its styles, or show them.")
    ] = None,
    max_size: Annotated[int, typer.Option(help="Long side of each tile in px.")] = SHEET_TILE,
    columns: Annotated[int, typer.Option(help="Tiles per row.")] = 7,
    quality: opt.Quality = JPEG_QUALITY,
    overwrite: opt.Overwrite = False,
) -> None:
    """Show a photo in each of the 26 built-in styles (or a trained model's), on one sheet.

    Tiles run row by row from style 0; use the number with --method fast --builtin-style N.
    With --model and no photo, list the model's styles by number and name.

    Example:

    \b
      jaxstyle builtin-styles photo.jpg -o styles.jpg
      jaxstyle stylize photo.jpg --method fast --builtin-style 7 -o out.png
      jaxstyle builtin-styles --model mine.safetensors
    """
    with user_errors():
        if columns < 1:
            raise UsageError(f"--columns must be at least 1, got {columns}")
        if model is not None:
            from jaxstyle.nets.magenta_weights import read_trained_info

            info = read_trained_info(model)
            for index, style in enumerate(info.styles):
                typer.echo(f"{index}\t{style.name}\t{style.sha256[:12]}")
            if content is None:
                return
        if content is None:
            raise click_exceptions.MissingParameter(param_hint="'CONTENT'", param_type="argument")
        if output is None:
            raise click_exceptions.MissingParameter(param_hint="'--output' / '-o'", param_type="option")
        settings = {"method": "fast", "builtin_style": "0", "max_size": max_size}
        config = build_config(settings={**settings, "model": None if model is None else str(model)})
        from jaxstyle.io.decode import load_image
        from jaxstyle.io.encode import check_image_suffix, save_image
        from jaxstyle.io.files import check_output_path
        from jaxstyle.methods.fast_sheet import builtin_contact_sheet

        check_image_suffix(output)
        target = check_output_path(output, overwrite=overwrite, inputs=[content, *([model] if model else [])])
        photo = load_image(content)
        count = 26 if model is None else info.num_styles
        with progress_bar() as bar:
            bar.add_task("builtin-styles", total=None, status=f"{count} styles")
            sheet = builtin_contact_sheet(photo.rgb, config, columns=columns)
        save_image(target, sheet, overwrite=overwrite, inputs=[content], jpeg_quality=quality)
        say(f"wrote {output} ({sheet.shape[1]}x{sheet.shape[0]}): styles 0-{count - 1}, {columns} per row")
