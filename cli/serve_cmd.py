"""`jaxstyle serve`: the local web app (`jaxstyle.serve`), started with uvicorn.

Starlette, uvicorn and JAX are imported inside the command, so ``--help`` stays instant; without
the ``web`` extra the command says how to install it, in one line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from jaxstyle.errors import UsageError

from .common import say, user_errors

INSTALL_HINT = "jaxstyle serve needs the web extra: pip install 'jaxstyle[web]'"
EXIT_MISSING_EXTRA = 3


def default_results_dir() -> Path:
    """``$XDG_DATA_HOME/jaxstyle/results`` (or ``~/.local/share/...``)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "jaxstyle" / "results"


def bind(host: str, port: int):
    """The listening socket, bound before the address is printed (a port in use is one line)."""
    import socket

    from jaxstyle.errors import OutputError

    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        listening = socket.socket(info[0], socket.SOCK_STREAM)
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind(info[4])
        listening.listen(64)
    except OSError as error:
        raise OutputError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    return listening


def serve_command(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    host: Annotated[
        str,
        typer.Option(
            help="Address to listen on. Anything but loopback makes the app reachable from other machines: "
            "it prints a warning and requires a token it generates."
        ),
    ] = "127.0.0.1",
    open_browser: Annotated[bool, typer.Option("--open", help="Open the page in the default browser.")] = False,
    results: Annotated[
        Path | None, typer.Option(help="Folder for the results. [default: ~/.local/share/jaxstyle/results]")
    ] = None,
    max_upload_mb: Annotated[int, typer.Option(help="Largest upload in MB.")] = 25,
    model: Annotated[
        Path | None,
        typer.Option(help="A trained network (jaxstyle train): the page's built-in styles become its styles."),
    ] = None,
) -> None:
    """Start the web app: stylize photos in the browser, with live previews and the webcam.

    The page works offline and listens on 127.0.0.1 only, unless --host says otherwise.
    Results are written to the results folder as PNG, with the command that reproduces each.

    Examples:

    \b
      jaxstyle serve --open
      jaxstyle serve --port 9000 --results ~/Pictures/styled
      jaxstyle serve --model mine.safetensors
    """
    with user_errors():
        try:
            import starlette  # noqa: F401
            import uvicorn
        except ImportError:
            say(f"error: {INSTALL_HINT}")
            raise typer.Exit(EXIT_MISSING_EXTRA) from None
        if not 1 <= port <= 65535:
            raise UsageError(f"--port must be between 1 and 65535, got {port}")
        if max_upload_mb < 1:
            raise UsageError(f"--max-upload-mb must be at least 1, got {max_upload_mb}")
        if model is not None:  # a wrong file is refused before the server starts
            from jaxstyle.nets.magenta_weights import read_trained_info

            read_trained_info(model)
        from jaxstyle.serve.app import create_app
        from jaxstyle.serve.security import ServeSettings

        settings = ServeSettings.for_host(
            host,
            port,
            results or default_results_dir(),
            max_upload_bytes=max_upload_mb * 2**20,
            model=None if model is None else str(model.resolve()),
        )
        app = create_app(settings)
        if settings.token is not None:
            say(
                f"warning: listening on {host}, not only this computer: anyone who can reach it and has the "
                "token can use the app and read its results. Open the address below (it carries the token)."
            )
        listening = bind(host, port)
        say(f"jaxstyle serve: {settings.url}")
        say(f"results are written to {settings.results_dir.resolve()}; Ctrl-C stops the server")
        if open_browser:
            import webbrowser

            webbrowser.open(settings.url)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=3))
        server.run(sockets=[listening])
        say("stopped; every finished result is in the results folder")
