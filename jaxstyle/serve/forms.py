"""What the page asks for, checked: the images and the `StyleConfig` a job, a preview or a webcam
session runs with.

The settings the page sends are the CLI's own fields, typed and checked by the same code as
``--set`` (`jaxstyle.config_sources.parse_setting`, `build_config`), so a bad value gets the
CLI's one-line message. The server adds two settings of its own: progress reports every
`progress_every` iterations (an image on the page every second or two on a CPU), and an upper
limit on the size (print sizes are the CLI's job).
"""

from __future__ import annotations

from dataclasses import dataclass

from jaxstyle.config import StyleConfig
from jaxstyle.config_sources import build_config, parse_setting
from jaxstyle.errors import UsageError
from jaxstyle.serve.uploads import Upload, Uploads

# The page's settings: each a `StyleConfig` field, by name.
FIELDS = ("method", "max_size", "style_strength", "content_weight", "preserve_color", "iterations")
# Iterations between an optimisation's progress reports (and pictures): 2 at 384 px (about 1 s an
# iteration on a 2-core CPU), scaled by the pixels an iteration costs (`progress_every`). It is
# also where the stopping rule looks, so it is part of the config and of the reproducing command.
PROGRESS_EVERY = 2
PROGRESS_SIZE = 384
MAX_SIZE = 2048  # long side of a job's result
MAX_LIVE_SIZE = 1024  # long side of a preview or a webcam frame


@dataclass(frozen=True)
class Request:
    content: Upload | None  # None for a webcam session (its frames come one by one)
    style: Upload | None  # None with a built-in style
    config: StyleConfig

    @property
    def style_key(self) -> tuple:
        """What a fast runner depends on besides the sizes and the strength (`jaxstyle.serve.live`)."""
        return (self.style.id if self.style else None, self.config.fast.builtin_style, self.config.preserve_color)


def _setting(name: str, value: object) -> tuple[str, object]:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise UsageError(f"{name} must be a number or a word, got {value!r}")
    return parse_setting(f"{name}={value}")


def parse(body: object, uploads: Uploads, *, need_content: bool = True, live: bool = False) -> Request:
    """The page's JSON ``body`` as a checked `Request` (UsageError, InputNotFoundError otherwise)."""
    if not isinstance(body, dict):
        raise UsageError("the request must be a JSON object")
    unknown = sorted(set(body) - {*FIELDS, "content", "style", "builtin"})
    if unknown:
        raise UsageError(f"unknown setting(s) {', '.join(unknown)}; the page sends {', '.join(FIELDS)}")
    settings = dict(_setting(name, body[name]) for name in FIELDS if body.get(name) is not None)
    if live:
        settings["method"] = "fast"
    builtin = body.get("builtin")
    if builtin is not None:
        if isinstance(builtin, bool) or not isinstance(builtin, int):
            raise UsageError(f"builtin must be a style number 0-25, got {builtin!r}")
        settings["builtin_style"] = str(builtin)
    if settings.get("method", "gatys") == "gatys":
        settings["report_every"] = progress_every(int(settings.get("max_size", StyleConfig().max_size)))
    config = build_config(settings=settings)
    limit = MAX_LIVE_SIZE if live else MAX_SIZE
    if config.max_size > limit:
        raise UsageError(
            f"max size must be at most {limit} px here, got {config.max_size}; use the CLI for print sizes"
        )
    content = uploads.get(_id(body, "content")) if need_content else None
    style = uploads.get(_id(body, "style")) if body.get("style") is not None else None
    if style is None and builtin is None:
        raise UsageError("choose a style first: a painting, one of yours, or a built-in style")
    if style is not None and builtin is not None:
        raise UsageError("choose either a style image or a built-in style, not both")
    return Request(content, style, config)


def progress_every(max_size: int) -> int:
    """Iterations between progress reports at ``max_size``: `PROGRESS_EVERY` at `PROGRESS_SIZE`, in
    proportion to the pixels (an iteration's cost), from 1 to 10."""
    return max(1, min(10, round(PROGRESS_EVERY * (PROGRESS_SIZE / max_size) ** 2)))


def _id(body: dict, key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str):
        raise UsageError(f"choose a {'photo' if key == 'content' else 'style'} first")
    return value
