"""Where a `StyleConfig`'s settings come from, in the order they apply (`build_config`): a
command's own defaults, a published preset (`PRESETS`), a TOML file (`load_toml`), the CLI's named
options, then ``--set FIELD=VALUE`` texts (`parse_setting`). Fields are named by their name or by
their path (`jaxstyle.config.field_path`). Plain Python: importing this costs no JAX.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, get_args

from jaxstyle.config import _DEFAULTS, FIELDS, SECTIONS, STYLE_LAYERS, StyleConfig, field_path, is_field
from jaxstyle.errors import InputNotFoundError, UsageError


def _convert(annotation, value: object, name: str) -> object:
    """``value`` (a string from ``--set``, or a TOML value) as the field type ``annotation``."""
    args = get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        is_none = value is None or (isinstance(value, str) and value.lower() in ("none", "null", ""))
        if is_none and type(None) in args:
            return None
        inner = [arg for arg in args if arg is not type(None)]
        return _convert(inner[0], value, name) if len(inner) == 1 else value
    if origin is Literal:
        return str(value)
    if origin is tuple:
        items = value if isinstance(value, list | tuple) else str(value).replace(",", " ").split()
        return tuple(_convert(args[0], item, name) for item in items)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text not in ("true", "false", "1", "0", "yes", "no"):
            raise UsageError(f"{name} must be true or false, got {value!r}")
        return text in ("true", "1", "yes")
    if annotation in (int, float):
        try:
            number = annotation(value)
        except (TypeError, ValueError):
            kind = "an integer" if annotation is int else "a number"
            raise UsageError(f"{name} must be {kind}, got {value!r}") from None
        if annotation is int and isinstance(value, float) and number != value:
            raise UsageError(f"{name} must be an integer, got {value!r}")
        return number
    return value


def _known_fields() -> str:
    return ", ".join(f"{section}.{name}" if section else name for name, (section, _) in FIELDS.items())


def _typed(name: str, value: object) -> tuple[str, object]:
    """``name`` (a field's name or path) and ``value`` converted to that field's type."""
    field = field_path(name)[1]
    return name, _convert(FIELDS[field][1], value, field)


def parse_setting(text: str) -> tuple[str, object]:
    """``'tv_weight=10'`` -> ``("tv_weight", 10.0)``, typed by the `StyleConfig` field; the field
    may also be named by its path, ``'loss.tv_weight=10'``."""
    name, sep, value = text.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not is_field(name):
        raise UsageError(f"--set takes FIELD=VALUE with one of the fields {_known_fields()}; got {text!r}")
    return _typed(name, value.strip())


def load_toml(path: str | Path) -> dict[str, object]:
    """The settings of a TOML file, typed: shared fields at the top level and one table per
    section (``[optimize]`` ``iterations = 100``); a section's field may also be given at the top
    level by its name alone."""
    import tomllib

    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"config file '{path}' does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"config file '{path}' is not valid TOML: {error}") from None
    flat = {}
    for key, value in data.items():
        if key in SECTIONS and isinstance(value, dict):
            flat.update({f"{key}.{name}": item for name, item in value.items()})
        else:
            flat[key] = value
    unknown = [name for name in flat if not is_field(name)]
    if unknown:
        raise UsageError(f"config file '{path}': unknown setting(s) {', '.join(sorted(unknown))}")
    return dict(_typed(name, value) for name, value in flat.items())


def build_config(
    preset_name: str | None = None,
    *,
    defaults: Mapping[str, object] | None = None,
    config_file: str | Path | None = None,
    settings: Mapping[str, object] | None = None,
    sets: tuple[str, ...] = (),
) -> StyleConfig:
    """A `StyleConfig`: ``defaults`` (a command's own, e.g. the video command's method) over the
    `StyleConfig` ones, then a preset, then a TOML file, then ``settings`` (e.g. the CLI's named
    options; None values are skipped), then ``--set FIELD=VALUE`` texts. Fields by name or path."""
    merged: dict[str, object] = {}

    def merge(changes: Mapping[str, object]) -> None:
        for name, value in changes.items():  # one key per field, whether named by name or path
            merged[field_path(name)[1]] = value

    merge(defaults or {})
    merge(PRESETS[_preset_name(preset_name)] if preset_name else {})
    if config_file is not None:
        merge(load_toml(config_file))
    merge({key: value for key, value in (settings or {}).items() if value is not None})
    merge(dict(parse_setting(text) for text in sets))
    return _DEFAULTS.replace(**merged)


def _preset_name(name: str) -> str:
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return name


def _tf_tutorial_layer_weights() -> tuple[float, ...]:
    # TF tutorial: style_weight 1e-2 / 5 layers on Grams normalised by M only, i.e. C^2 x ours.
    channels = (64, 128, 256, 512, 512)
    return tuple(c * c * 1e-2 / 5 for c in channels)


PRESETS: dict[str, dict[str, object]] = {
    # jaxstyle's own defaults (see StyleConfig).
    "jaxstyle": {},
    # jcjohnson/neural-style defaults: L-BFGS, content 5, style 100, TV 1e-3 on 0..255 pixels with
    # 1/2 sum of squares (= 1e-3 * 255^2 / 2 in our units), random init, max pooling, 1000 iterations.
    "neural-style": {
        "loss_units": "raw",
        "stop_tolerance": 0.0,
        "optimizer": "lbfgs",
        "iterations": 1000,
        "content_weight": 5.0,
        "style_weight": 100.0,
        "style_layer_weights": None,
        "tv_weight": 1e-3 * 255.0**2 / 2,
        "tv_kind": "l2",
        "init": "noise",
        "pooling": "max",
        "content_layers": ("relu4_2",),
        "style_layers": STYLE_LAYERS,
    },
    # The TensorFlow "Neural style transfer" tutorial: Adam(0.02, 0.99, eps 0.1), style 1e-2,
    # content 1e4, TV 30 (tf.image.total_variation = L1 sum), content init, content block5_conv2.
    "tf-tutorial": {
        "loss_units": "raw",
        "stop_tolerance": 0.0,
        "optimizer": "adam",
        "iterations": 1000,
        "learning_rate": 0.02,
        "adam_b1": 0.99,
        "adam_eps": 0.1,
        "content_weight": 1e4,
        "style_weight": 1.0,
        "style_layer_weights": _tf_tutorial_layer_weights(),
        "tv_weight": 30.0,
        "tv_kind": "l1",
        "init": "content",
        "pooling": "max",
        "content_layers": ("block5_conv2",),
        "style_layers": ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1"),
    },
}


def preset(name: str, **overrides) -> StyleConfig:
    """A `StyleConfig` from a named preset with further overrides (fields by name or path)."""
    return build_config(name, settings=overrides)
