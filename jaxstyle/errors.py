"""The exceptions jaxstyle raises for problems a user can fix.

Every class carries a distinct process exit code, so the CLI can turn any of them into one
clear line and a non-zero exit without a traceback. Library code raises these instead of
printing or exiting.
"""

from __future__ import annotations


class JaxstyleError(Exception):
    """Base class: a problem with the user's input or environment, not a bug."""

    exit_code = 1


class UsageError(JaxstyleError):
    """An option value that makes no sense (zero size, negative weight, NaN, ...)."""

    exit_code = 2


class InputNotFoundError(JaxstyleError):
    """A named input file does not exist, or is a directory."""

    exit_code = 3


class ImageError(JaxstyleError):
    """A file that cannot be decoded as an image, or an image that is too small or too large."""

    exit_code = 4


class WeightsError(JaxstyleError):
    """A weights file that is missing layers, has odd shapes, or is not a weights file at all."""

    exit_code = 5


class OutputError(JaxstyleError):
    """An output that may not or cannot be written (exists, is an input, folder not writable)."""

    exit_code = 6


class NumericalError(JaxstyleError):
    """The optimisation produced NaN or inf and could not recover."""

    exit_code = 7


class MaskError(JaxstyleError):
    """A style mask or region that cannot be used: unreadable, all black, of another aspect ratio
    than the image, or not one per style (`jaxstyle.masks`)."""

    exit_code = 8


def one_line(error: BaseException, limit: int = 300) -> str:
    """An exception as one short line: its message with whitespace folded, or its type's name.

    Every place that shows an error to a user (the CLI, batch manifests, wrapped library errors)
    goes through here, so a multi-line message from Pillow, h5py or JAX never breaks a line.
    """
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
