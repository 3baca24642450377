"""What the page asks for, checked: the images, the painted masks and the `StyleConfig` a job, a
preview or a webcam session runs with.

The settings the page sends are the CLI's own fields, typed and checked by the same code as
``--set`` (`jaxstyle.config_sources.parse_setting`, `build_config`), so a bad value gets the
CLI's one-line message. The server adds two settings of its own: progress reports every
`progress_every` iterations (an image on the page every second or two on a CPU), and an upper
limit on the size (print sizes are the CLI's job).

Masks come as one greyscale PNG per style (a data URL each, white where that style goes), checked
as the CLI checks ``--style-mask`` files: decoded with the image loader's format and
decompression-bomb checks, `jaxstyle.masks.as_mask` (all black is refused), one per style and of
the photo's aspect ratio (`check_masks`); each problem is a `MaskError` with the CLI's one line.
"""

from __future__ import annotations

from dataclasses import dataclass

from jaxstyle.config import StyleConfig
from jaxstyle.config_sources import build_config, parse_setting
from jaxstyle.errors import UsageError
from jaxstyle.serve.uploads import Mask, Upload, Uploads, decode_mask

# The page's settings: each a `StyleConfig` field, by name.
FIELDS = ("method", "max_size", "style_strength", "content_weight", "preserve_color", "iterations")
# Iterations between an optimisation's progress reports (and pictures): 2 at 384 px (about 1 s an
# iteration on a 2-core CPU), scaled by the pixels an iteration costs (`progress_every`). It is
# also where the stopping rule looks, so it is part of the config and of the reproducing command.
PROGRESS_EVERY = 2
PROGRESS_SIZE = 384
MAX_SIZE = 2048  # long side of a job's result
MAX_LIVE_SIZE = 1024  # long side of a preview or a webcam frame
MAX_STYLES = 8  # styles (and masks) in one request: the page offers six colours


@dataclass(frozen=True)
class Request:
    content: Upload | None  # None for a webcam session (its frames come one by one)
    styles: tuple[Upload, ...]  # empty with built-in styles
    config: StyleConfig
    masks: tuple[Mask, ...] | None = None  # one per style (per built-in style named), or None

    @property
    def style_key(self) -> tuple:
        """What a fast runner depends on besides the sizes, the strength and the masks' pixels
        (`jaxstyle.serve.live`): the masks' count sets the network's regions."""
        count = None if self.masks is None else len(self.masks)
        return (
            tuple(style.id for style in self.styles),
            self.config.fast.builtin_style,
            self.config.fast.model,
            self.config.preserve_color,
            count,
        )

    @property
    def mask_arrays(self) -> list | None:
        return None if self.masks is None else [mask.array for mask in self.masks]


def _setting(name: str, value: object) -> tuple[str, object]:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise UsageError(f"{name} must be a number or a word, got {value!r}")
    return parse_setting(f"{name}={value}")


def parse(
    body: object, uploads: Uploads, *, need_content: bool = True, live: bool = False, model: str | None = None
) -> Request:
    """The page's JSON ``body`` as a checked `Request` (UsageError, InputNotFoundError otherwise).
    ``model``: the server's trained network (``serve --model``), whose styles ``builtin`` numbers."""
    if not isinstance(body, dict):
        raise UsageError("the request must be a JSON object")
    unknown = sorted(set(body) - {*FIELDS, "content", "style", "builtin", "masks"})
    if unknown:
        raise UsageError(f"unknown setting(s) {', '.join(unknown)}; the page sends {', '.join(FIELDS)}")
    settings = dict(_setting(name, body[name]) for name in FIELDS if body.get(name) is not None)
    if live:
        settings["method"] = "fast"
    builtin = body.get("builtin")
    if builtin is not None:
        numbers = _listed(builtin, "builtin")
        if not numbers or any(isinstance(n, bool) or not isinstance(n, int) for n in numbers):
            raise UsageError(f"builtin must be a style number or a list of them, got {builtin!r}")
        settings["builtin_style"] = ",".join(map(str, numbers))
        if model is not None:  # the model's styles take the built-in ones' place; paintings stay
            settings["model"] = model
    if settings.get("method", "gatys") == "gatys":
        settings["report_every"] = progress_every(int(settings.get("max_size", StyleConfig().max_size)))
    config = build_config(settings=settings)
    limit = MAX_LIVE_SIZE if live else MAX_SIZE
    if config.max_size > limit:
        raise UsageError(
            f"max size must be at most {limit} px here, got {config.max_size}; use the CLI for print sizes"
        )
    content = uploads.get(_id(body, "content")) if need_content else None
    style_ids = _listed(body.get("style"), "style")
    if any(not isinstance(item, str) for item in style_ids):
        raise UsageError("style must be an image id or a list of them")
    styles = tuple(uploads.get(item) for item in style_ids)
    if not styles and builtin is None:
        raise UsageError("choose a style first: a painting, one of yours, or a built-in style")
    if styles and builtin is not None:
        raise UsageError("choose either style images or built-in styles, not both")
    masks = None
    if body.get("masks") is not None:
        masks = _masks(body["masks"], content, len(styles) or len(_listed(builtin, "builtin")), config, uploads)
    return Request(content, styles, config, masks)


def _listed(value: object, name: str) -> list:
    """``value`` as a list: None -> [], one item -> [item]; at most `MAX_STYLES` items."""
    items = [] if value is None else list(value) if isinstance(value, list) else [value]
    if len(items) > MAX_STYLES:
        raise UsageError(f"at most {MAX_STYLES} {name}s in one request, got {len(items)}")
    return items


def _masks(value: object, content: Upload | None, styles: int, config: StyleConfig, uploads: Uploads) -> tuple:
    """The page's painted masks, checked as the CLI checks ``--style-mask`` files (MaskError)."""
    from jaxstyle.masks import check_masks

    if content is None:
        raise UsageError("masks are painted over a photo; the webcam takes none")
    if not isinstance(value, list) or any(not isinstance(item, str) for item in value):
        raise UsageError("masks must be a list of PNG data URLs, one per style")
    check_masks(value, styles, (1, 1), fit="stretch")  # the count alone, before any mask is decoded
    names = [f"style mask {i + 1}" for i in range(styles)]
    # A mask is stretched to the result, which is at most MAX_SIZE a side: finer masks add
    # nothing but memory (eight masks of the uploads' 50 megapixels would be 1.6 GB as floats).
    limit = min(uploads.max_pixels, MAX_SIZE * MAX_SIZE)
    masks = tuple(decode_mask(text, name, limit) for text, name in zip(value, names))
    check_masks([m.array for m in masks], styles, content.image.size, fit=config.masks.mask_fit, names=names)
    return masks


def progress_every(max_size: int) -> int:
    """Iterations between progress reports at ``max_size``: `PROGRESS_EVERY` at `PROGRESS_SIZE`, in
    proportion to the pixels (an iteration's cost), from 1 to 10."""
    return max(1, min(10, round(PROGRESS_EVERY * (PROGRESS_SIZE / max_size) ** 2)))


def _id(body: dict, key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str):
        raise UsageError(f"choose a {'photo' if key == 'content' else 'style'} first")
    return value
