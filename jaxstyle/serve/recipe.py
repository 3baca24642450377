"""The `jaxstyle stylize` command that reproduces a result, shown beside it on the page.

Every setting that differs from `StyleConfig`'s default is written out: the ones the page has
controls for as the CLI's own options (their flags from `jaxstyle.cli.options.SETTINGS`), any
other as ``--set section.field=VALUE``. Floats are written with ``repr``, which reads back as
the same number, so the command builds the same config (tests/test_serve_api.py runs it).
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Sequence
from pathlib import Path

from jaxstyle.config import SECTIONS, StyleConfig

# Settings shown as the stylize command's named options; the rest go through --set.
NAMED = (
    "method",
    "builtin_style",
    "model",
    "max_size",
    "style_strength",
    "iterations",
    "content_weight",
    "preserve_color",
)


def _text(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, tuple):
        return ",".join(_text(item) for item in value)
    return str(value)


def changed_settings(config: StyleConfig) -> dict[str, object]:
    """Each field whose value differs from the default, by its path (``optimize.report_every``;
    shared fields by name), in the config's field order."""
    default, changed = StyleConfig(), {}
    for field in dataclasses.fields(StyleConfig):
        value, base = getattr(config, field.name), getattr(default, field.name)
        if field.name in SECTIONS:
            for inner in dataclasses.fields(value):
                if getattr(value, inner.name) != getattr(base, inner.name):
                    changed[f"{field.name}.{inner.name}"] = getattr(value, inner.name)
        elif value != base:
            changed[field.name] = value
    return changed


def stylize_command(
    content: Path, styles: Sequence[Path], output: Path, config: StyleConfig, masks: Sequence[Path] = ()
) -> str:
    """``jaxstyle stylize CONTENT STYLE... -o OUTPUT [--style-mask MASK]... [options]`` for
    ``config``, shell-quoted."""
    from jaxstyle.cli.options import SETTINGS

    words = ["jaxstyle", "stylize", str(content), *map(str, styles), "-o", str(output)]
    for mask in masks:
        words += ["--style-mask", str(mask)]
    for path, value in changed_settings(config).items():
        name = path.rpartition(".")[2]
        if name in NAMED:
            words += [SETTINGS[name].option, _text(value)]
        else:
            words += ["--set", f"{path}={_text(value)}"]
    return shlex.join(words)
