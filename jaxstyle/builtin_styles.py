"""The 26 built-in styles of the multistyle26 network (Dumoulin et al. 2017) as settings: which
styles a ``--builtin-style`` text names, and with what weights. Plain Python: no JAX, no NumPy."""

from __future__ import annotations

import math

from jaxstyle.errors import UsageError

BUILTIN_STYLES = 26  # styles of the multistyle26 network


def builtin_style_parts(text: str) -> list[tuple[int, float]]:
    """``"7"`` or ``"3:0.5,12:0.5"`` -> the named styles in order, each with its weight (default 1)."""
    message = f"built-in style must be N or N:W,N:W with N in 0..{BUILTIN_STYLES - 1}, got {text!r}"
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
        if not 0 <= number < BUILTIN_STYLES or not math.isfinite(value) or value < 0:
            raise UsageError(message)
        named.append((number, value))
    return named


def builtin_style_weights(text: str) -> tuple[float, ...]:
    """``"7"`` or ``"3:0.5,12:0.5"`` -> one weight per built-in style (26), normalised to sum 1."""
    weights = [0.0] * BUILTIN_STYLES
    for number, value in builtin_style_parts(text):
        weights[number] += value
    total = sum(weights)
    if total <= 0:
        raise UsageError(f"built-in style weights must not all be 0, got {text!r}")
    return tuple(w / total for w in weights)
