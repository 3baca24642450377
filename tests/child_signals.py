"""Signals for the tests that Ctrl-C a child process."""

from __future__ import annotations

import contextlib
import signal


@contextlib.contextmanager
def sigint_not_ignored():
    """Make sure a child started in this block has SIGINT's default disposition.

    A child inherits an *ignored* SIGINT (pytest started as a background job of a script, as CI
    may start it), and Python only turns SIGINT into KeyboardInterrupt when it starts with the
    default. A handled signal is reset to the default by exec. (`preexec_fn` would do it too, but
    forks this JAX-initialised process, which JAX warns about.)
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
