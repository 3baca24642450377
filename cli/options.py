"""Every option of the CLI, declared once: its flag, type, help and (for settings) config field.

Options that set a `StyleConfig` field are rows of `SETTINGS`; a command names the ones it takes
with `@with_config(...)`, and receives the built config (defaults < command defaults < --preset <
--config FILE < named options < --set) instead of the options. Every setting option defaults to
None ("not given"), so that a preset, a file and --set can supply the value; the help shows the
config's default. The other shared options are `Annotated` types below. Only `jaxstyle.config` is
imported here: no JAX.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, get_args

import typer
from typer._click import exceptions as click_exceptions

from jaxstyle import config as config_module
from jaxstyle.config import TEMPORAL_WEIGHTS, choices, default
from jaxstyle.config_sources import PRESETS, build_config

from .common import float_list, user_errors


def _default(value: object) -> str:
    return f"[default: {value:g}]" if isinstance(value, float) else f"[default: {value}]"


def _choice_help(field: str, text: str = "") -> str:
    return f"{text}{' ' if text else ''}{choices(field)}. {_default(default(field))}"


@dataclass(frozen=True)
class Setting:
    """A command-line option that sets the `StyleConfig` field ``field``."""

    field: str
    kind: type
    help: str
    flag: str | None = None  # None: --field-with-dashes
    parse: Callable[[str | None, str], object] | None = None  # (text, flag) -> the field's value

    @property
    def option(self) -> str:
        return self.flag or "--" + self.field.replace("_", "-")

    def parameter(self, help_text: str | None = None) -> inspect.Parameter:
        option = typer.Option(self.option, help=help_text or self.help)
        annotation = Annotated[self.kind | None, option]
        return inspect.Parameter(self.field, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)

    def value(self, given: object) -> object:
        return self.parse(given, self.option) if self.parse is not None and given is not None else given


SETTINGS: dict[str, Setting] = {
    setting.field: setting
    for setting in (
        Setting(
            "method", str, _choice_help("method", "gatys optimises the image (slow, best); fast is one network pass.")
        ),
        Setting(
            "builtin_style",
            str,
            "--method fast: a built-in style (0-25) or a mix, e.g. 7 or 3:0.5,12:0.5, instead of STYLES; "
            "with --model, one of the model's styles.",
        ),
        Setting(
            "model",
            str,
            "--method fast: a trained network (jaxstyle train, .safetensors); --builtin-style N picks among "
            "its styles (jaxstyle builtin-styles --model NET lists them).",
        ),
        Setting(
            "style_strength", float, f"--method fast: 0 (content) to 1 (style). {_default(default('style_strength'))}"
        ),
        Setting("max_size", int, f"Long side of the output in px. {_default(default('max_size'))}"),
        Setting(
            "memory_budget",
            float,
            "GiB the run may use; larger images are done in tiles. [default: 80% of the free memory]",
        ),
        Setting("tile_size", int, "Force tiles of this side in px. [default: only if needed]"),
        Setting("iterations", int, f"Iterations at most (at every scale). {_default(default('iterations'))}"),
        Setting(
            "stop_tolerance",
            float,
            f"Stop a scale once its loss improved by less than this fraction over the last {default('stop_window')} "
            f"iterations; 0 runs them all. {_default(default('stop_tolerance'))}",
        ),
        Setting("optimizer", str, _choice_help("optimizer")),
        Setting("learning_rate", float, "Step size. [default: 1.0 for lbfgs, 0.02 for adam]", flag="--lr"),
        Setting("content_weight", float, f"Content loss weight. {_default(default('content_weight'))}"),
        Setting(
            "style_weight",
            float,
            "Style loss weight. [default: 1; with loss_units=raw 500, 5e4 with sliced_wasserstein]",
        ),
        Setting("tv_weight", float, f"Total variation weight. {_default(default('tv_weight'))}"),
        Setting(
            "style_layer_weights", str, "Weight per style layer, e.g. 0.5,1,1.5,3,4. [default: equal]", parse=float_list
        ),
        Setting("style_scale", float, f"Style size relative to the output. {_default(default('style_scale'))}"),
        Setting(
            "multiscale_min",
            int,
            "Optimise coarse to fine from this long side (x sqrt 2 per scale).",
            flag="--start-size",
        ),
        Setting(
            "coarse_iterations",
            int,
            "With --start-size: iterations at each scale before the last. [default: --iterations]",
        ),
        Setting("init", str, _choice_help("init", "Starting image:")),
        Setting("seed", int, f"Random seed. {_default(default('seed'))}"),
        Setting("preserve_color", str, _choice_help("preserve_color", "Keep the content's colours:")),
        Setting("style_statistic", str, _choice_help("style_statistic")),
        Setting("pooling", str, _choice_help("pooling")),
        Setting(
            "mask_feather",
            float,
            "Soft edge of the style masks in px. [default: 1/128 of the long side]",
        ),
        Setting("mask_fit", str, _choice_help("mask_fit", "A mask of another aspect ratio than the photo:")),
        Setting(
            "temporal_weight",
            float,
            "How closely each frame follows the previous one: fast, the previous result's share (0-1); "
            f"gatys, the temporal loss weight; 0 = frame by frame. [default: {TEMPORAL_WEIGHTS['fast']} "
            f"fast, {TEMPORAL_WEIGHTS['gatys']:g} gatys]",
        ),
    )
}
"""The options that set config fields, by field: each command lists the ones it takes."""

_CONFIG_SOURCES = (
    inspect.Parameter(
        "preset_name",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            str | None, typer.Option("--preset", help=f"Start from published settings: {', '.join(PRESETS)}.")
        ],
    ),
    inspect.Parameter(
        "config_file",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            Path | None,
            typer.Option(
                "--config", help="TOML file of settings named like StyleConfig fields, by section (after --preset)."
            ),
        ],
    ),
    inspect.Parameter(
        "set_",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            list[str] | None,
            typer.Option(
                "--set",
                help="Any StyleConfig field, e.g. --set lbfgs_memory=20 or optimize.lbfgs_memory=20 "
                "(repeatable; applied last).",
            ),
        ],
    ),
)


def with_config(*fields: str, defaults: dict[str, object] | None = None, helps: dict[str, str] | None = None):
    """Give a command the setting options ``fields`` (rows of `SETTINGS`) and --preset, --config,
    --set, in place of its ``config`` parameter, which receives the `StyleConfig` they build
    over ``defaults`` (the command's own, e.g. the video command's method). ``helps`` replaces a
    row's help text for this command."""
    settings = [SETTINGS[field] for field in fields]

    def decorate(command: Callable) -> Callable:
        signature = inspect.signature(command, eval_str=True)
        parameters = []
        for parameter in signature.parameters.values():
            if parameter.name == "config":
                parameters += [setting.parameter((helps or {}).get(setting.field)) for setting in settings]
                parameters += _CONFIG_SOURCES
            else:
                parameters.append(parameter)

        @functools.wraps(command)
        def run(*args, preset_name=None, config_file=None, set_=None, **kwargs):
            given = {setting.field: kwargs.pop(setting.field) for setting in settings}
            with user_errors():
                config = build_config(
                    preset_name,
                    defaults=defaults,
                    config_file=config_file,
                    sets=tuple(set_ or ()),
                    settings={setting.field: setting.value(given[setting.field]) for setting in settings},
                )
            return command(*args, config=config, **kwargs)

        run.__signature__ = signature.replace(parameters=parameters)
        return run

    return decorate


def at_least_one(flag: str):
    def check(value: int) -> int:
        if value < 1:
            raise click_exceptions.UsageError(f"{flag} must be at least 1, got {value}")
        return value

    return check


def _check_quality(value: int) -> int:
    if not 1 <= value <= 100:
        raise click_exceptions.UsageError(f"--quality must be between 1 and 100, got {value}")
    return value


Styles = Annotated[
    list[Path] | None,
    typer.Argument(help="One or more style images (none with --builtin-style).", show_default=False),
]
Output = Annotated[Path, typer.Option("--output", "-o", help="Output image (.png .jpg .webp .tif .bmp).")]
StyleBlend = Annotated[str | None, typer.Option(help="Blend of several styles, e.g. 0.7,0.3. [default: equal]")]


def _files_per_style(flag: str, help_text: str):
    """A repeatable option of one file per style, in the styles' order."""
    return Annotated[list[Path] | None, typer.Option(flag, help=help_text, show_default=False)]


_MASK_HELP = "Where each style goes: one greyscale image (or alpha) per style, in order{}; white = this style. "
_MASK_HELP += "What the masks leave stays the photo."
StyleMasks = _files_per_style("--style-mask", _MASK_HELP.format(""))
BatchStyleMasks = _files_per_style("--style-mask", _MASK_HELP.format(", stretched over every image"))
StyleRegions = _files_per_style(
    "--style-region", "Which part of each style image to take its style from: one mask per style, in order."
)
Weights = Annotated[
    Path | None,
    typer.Option(
        help="VGG19 weights (.safetensors, Keras .h5, MatConvNet .mat), or with --method fast a converted "
        "Magenta .safetensors. [default: embedded]"
    ),
]
Quality = Annotated[int, typer.Option(help="JPEG/WebP quality, 1-100.", callback=_check_quality)]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output file.")]
BatchSize = Annotated[
    int,
    typer.Option(
        help="Images optimised together (rounded up to a multiple of the devices).",
        callback=at_least_one("--batch-size"),
    ),
]
BucketMultiple = Annotated[
    int,
    typer.Option(
        help="Round bucket sides up to N px (reflect-pad, crop back) to share batches.",
        callback=at_least_one("--bucket-multiple"),
    ),
]
OutputFormat = Annotated[
    str, typer.Option("--format", help=f"Output format: {', '.join(get_args(config_module.OutputFormat))}.")
]
