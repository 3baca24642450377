"""What every command shares: consoles, verbosity, error mapping, progress bars, number checks.

rich is imported on first use, not here, so that ``--help`` and ``--version`` stay instant.
"""

from __future__ import annotations

import logging
import math
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import typer
from typer._click import exceptions as click_exceptions

from jaxstyle.errors import JaxstyleError, UsageError, one_line

EXIT_INTERRUPTED = 130
EXIT_INTERNAL = 70


class _LazyConsole:
    """rich's stderr Console, created on first use."""

    _console = None

    def real(self):
        """The Console itself, e.g. for rich's Progress (which uses it as a context manager)."""
        if _LazyConsole._console is None:
            from rich.console import Console

            _LazyConsole._console = Console(stderr=True, highlight=False)
        return _LazyConsole._console

    def __getattr__(self, name: str):
        return getattr(self.real(), name)


stderr = _LazyConsole()


@dataclass
class Verbosity:
    verbose: bool = False
    quiet: bool = False


VERBOSITY = Verbosity()


def configure_logging() -> None:
    level = logging.DEBUG if VERBOSITY.verbose else logging.WARNING if not VERBOSITY.quiet else logging.ERROR
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("jaxstyle").setLevel(level)


def say(message: str) -> None:
    """A status line on stderr unless --quiet (stdout is kept for data such as JSON)."""
    if not VERBOSITY.quiet:
        stderr.print(message, markup=False, soft_wrap=True)


def fail(error: BaseException, code: int) -> typer.Exit:
    """Print one line (or the traceback with --verbose) and return the Exit to raise."""
    if VERBOSITY.verbose:
        stderr.print("".join(traceback.format_exception(error)), markup=False, end="")
    stderr.print(f"error: {one_line(error)}", markup=False, soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn library errors into one line and the error's exit code; internal errors into code 70."""
    try:
        yield
    except JaxstyleError as error:
        raise fail(error, error.exit_code) from None
    except (typer.Exit, typer.Abort, KeyboardInterrupt, click_exceptions.ClickException):
        raise
    except MemoryError:
        raise fail(MemoryError("out of memory; try a smaller --max-size"), EXIT_INTERNAL) from None
    except Exception as error:  # noqa: BLE001 - a last line of defence against tracebacks
        wrapped = RuntimeError(f"internal error ({type(error).__name__}: {error}); run with --verbose for details")
        wrapped.__cause__ = error
        raise fail(wrapped if not VERBOSITY.verbose else error, EXIT_INTERNAL) from None


def finite(value: float | None, name: str, *, minimum: float = 0.0, strict: bool = False) -> float | None:
    """Check a numeric option: finite and >= minimum (> minimum when strict)."""
    if value is None:
        return None
    if not math.isfinite(value) or value < minimum or (strict and value == minimum):
        relation = ">" if strict else ">="
        raise UsageError(f"{name} must be a finite number {relation} {minimum:g}, got {value}")
    return value


def format_seconds(seconds: float | None) -> str:
    """H:MM:SS, or -:--:-- when unknown."""
    if seconds is None:
        return "-:--:--"
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def float_list(text: str | None, name: str) -> tuple[float, ...] | None:
    """Parse '0.7,0.3' or '0.7 0.3' into finite non-negative floats."""
    if text is None:
        return None
    try:
        values = tuple(float(part) for part in text.replace(",", " ").split())
    except ValueError:
        raise UsageError(f"{name} must be numbers separated by commas, got {text!r}") from None
    if not values:
        raise UsageError(f"{name} is empty")
    for value in values:
        finite(value, name)
    return values


def require_styles(styles, config) -> list:
    """The style image paths, or click's own 'Missing argument' error when there are none and
    no built-in style stands in for them."""
    if not styles and config.fast.network_styles is None:
        raise click_exceptions.MissingParameter(param_hint="'STYLES...'", param_type="argument")
    if styles and config.fast.model is not None:
        raise UsageError("a trained model (--model) brings its own styles: name them with --builtin-style, not images")
    return list(styles or [])


def load_weights_option(path: Path | None, method: str = "gatys"):
    """The weights of ``--weights`` for ``method``, or None for the method's embedded default:
    VGG19 in any supported format for "gatys", a converted Magenta file for "fast"."""
    if path is None:
        return None
    if method == "fast":
        from jaxstyle.nets.magenta_weights import load_arbitrary

        return load_arbitrary(path)
    from jaxstyle.weights_convert.convert import load_any

    return load_any(path)


def check_model_option(config, weights: Path | None) -> str:
    """``--model``'s file and ``--builtin-style``'s numbers checked before any work (the header
    only: no JAX), and what the run's metadata records as its weights: ``--weights``' path or
    "embedded", or the model's path and sha256 (a retrained file at the same path is another run)."""
    if config.fast.model is None:
        return str(weights or "embedded")
    if weights is not None:
        raise UsageError("--weights and --model do not combine: the trained model is the whole network")
    from jaxstyle.builtin_styles import model_style_weights
    from jaxstyle.prepare import weights_record

    model_style_weights(config.fast.model, config.fast.builtin_style)
    return weights_record(config.fast.model)


def progress_bar(transient: bool = False):
    """rich's Progress with the columns every command shows (disabled off a terminal)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=stderr.real(),
        transient=transient,
        # Off a terminal (logs, CI) a bar would only leave its last frame behind.
        disable=VERBOSITY.quiet or not stderr.is_terminal,
    )


def rate_bar(unit: str):
    """rich's Progress for a run of many items (batch images, video frames): items done of the
    total, the rate and the ETA (fields ``rate``, ``eta`` and ``status`` of each task)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(f"{unit}  {{task.fields[rate]}}  ETA {{task.fields[eta]}}"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        console=stderr.real(),
        disable=VERBOSITY.quiet,
    )
