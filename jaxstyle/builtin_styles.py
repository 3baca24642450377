"""The 26 built-in styles of the multistyle26 network (Dumoulin et al. 2017) as settings: which
styles a ``--builtin-style`` text names, and with what weights. With a trained network (``--model``)
the same text names that network's ``count`` styles. Plain Python: no JAX, no NumPy."""

from __future__ import annotations

import math

from jaxstyle.errors import UsageError

BUILTIN_STYLES = 26  # styles of the multistyle26 network


def builtin_style_parts(
    text: str, count: int | None = BUILTIN_STYLES, what: str = "built-in style"
) -> list[tuple[int, float]]:
    """``"7"`` or ``"3:0.5,12:0.5"`` -> the named styles in order, each with its weight (default 1):
    style numbers 0 to ``count - 1`` (None: any number >= 0, the syntax alone)."""
    numbers = "N >= 0" if count is None else f"N in 0..{count - 1}"
    message = f"{what} must be N or N:W,N:W with {numbers}, got {text!r}"
    parts = [part for part in text.replace(" ", "").split(",") if part]
    if not parts:
        raise UsageError(message)
    named = []
    for part in parts:
        index, _, weight = part.partition(":")
        try:
            number, value = int(index), float(weight) if weight else 1.0
        except ValueError:
            raise UsageError(message) from None
        if number < 0 or (count is not None and number >= count) or not math.isfinite(value) or value < 0:
            raise UsageError(message)
        named.append((number, value))
    return named


def builtin_style_weights(text: str, count: int = BUILTIN_STYLES, what: str = "built-in style") -> tuple[float, ...]:
    """``"7"`` or ``"3:0.5,12:0.5"`` -> one weight per style (26, or ``count``), normalised to sum 1."""
    weights = [0.0] * count
    for number, value in builtin_style_parts(text, count, what):
        weights[number] += value
    total = sum(weights)
    if total <= 0:
        raise UsageError(f"built-in style weights must not all be 0, got {text!r}")
    return tuple(w / total for w in weights)


def model_style_weights(model: str, text: str | None) -> tuple[object, tuple[float, ...], str]:
    """The styles of the trained network file ``model`` that ``text`` names (None: its only style):
    (its header, `magenta_weights.TrainedInfo`; one weight per style, summing to 1; what a style
    number is called in messages). Reads the file's header only (no JAX); one-line errors for a
    missing or wrong file (`WeightsError`), a number out of range or no choice among several."""
    from jaxstyle.nets.magenta_weights import read_trained_info

    info = read_trained_info(model)
    names = ", ".join(f"{i} {style.name}" for i, style in enumerate(info.styles))
    if text is None and info.num_styles > 1:
        raise UsageError(f"{model} holds {info.num_styles} styles ({names}); choose one or a mix with --builtin-style")
    what = f"a style of {model} ({names})"
    return info, builtin_style_weights(text or "0", info.num_styles, what), what
