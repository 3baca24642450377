"""The `jaxstyle` command: a thin Typer app over the library.

Every command maps library errors (`jaxstyle.errors`) to one line on stderr and a distinct exit
code; `main` does the same for command-line usage errors, so no input ever ends in a traceback
unless --verbose asks for one.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from jaxstyle.errors import one_line

from .batch_cmd import batch_command
from .bench_cmd import bench_command
from .color_cmd import color_command
from .common import EXIT_INTERNAL, EXIT_INTERRUPTED, VERBOSITY, configure_logging, stderr
from .serve_cmd import serve_command
from .stylize_cmd import builtin_styles_command, demo_command, stylize_command
from .train_cmd import train_command
from .video_cmd import video_command
from .weights_cmd import app as weights_app

app = typer.Typer(
    name="jaxstyle",
    help="Artistic style transfer in JAX, with KNN colour transfer. Runs offline on CPU, GPU or TPU.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain click help: it wraps cleanly at any width and needs no rich at start-up.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("stylize", no_args_is_help=True)(stylize_command)
app.command("color", no_args_is_help=True)(color_command)
app.command("batch", no_args_is_help=True)(batch_command)
app.command("video", no_args_is_help=True)(video_command)
app.command("demo")(demo_command)
app.command("builtin-styles", no_args_is_help=True)(builtin_styles_command)
app.command("bench")(bench_command)
app.command("serve")(serve_command)
app.command("train", no_args_is_help=True)(train_command)
app.add_typer(weights_app, name="weights")


def _version(value: bool) -> None:
    if value:
        from jaxstyle import __version__

        typer.echo(f"jaxstyle {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging; tracebacks on errors.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors; no progress bars.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Neural style transfer in JAX."""
    VERBOSITY.verbose, VERBOSITY.quiet = verbose, quiet and not verbose
    configure_logging()


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the app, turning usage errors into one line and exit code 2."""
    from typer._click import exceptions as click_exceptions

    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="jaxstyle", standalone_mode=False)
    except click_exceptions.NoArgsIsHelpError as error:  # a bare command: its help
        typer.echo(error.ctx.get_help())
        return 0
    except click_exceptions.UsageError as error:
        hint = f" (see 'jaxstyle {error.ctx.command_path.partition(' ')[2]} --help')" if error.ctx else ""
        stderr.print(f"error: {error.format_message()}{hint}".replace("  ", " "), markup=False, soft_wrap=True)
        return 2
    except (typer.Abort, KeyboardInterrupt):  # Ctrl-C outside a command's own handling
        stderr.print("interrupted", markup=False)
        return EXIT_INTERRUPTED
    except typer.Exit as exit_:
        return exit_.exit_code
    except SystemExit:  # e.g. rich's exit on a closed pipe (`jaxstyle ... | head`)
        raise
    except Exception as error:
        if VERBOSITY.verbose:
            raise
        message = f"error: internal error ({type(error).__name__}: {one_line(error)}); run with --verbose"
        stderr.print(message, markup=False)
        return EXIT_INTERNAL
    return result if isinstance(result, int) else 0


def use_compilation_cache() -> None:
    """Keep XLA's compiled programs between runs (JAX's persistent cache), unless the user chose.

    A run compiles a few programs per image shape (seconds each on a CPU); the next run with the
    same shapes loads them instead. The cache lives in ``$XDG_CACHE_HOME/jaxstyle/xla`` (or
    ``~/.cache/...``); set ``JAX_COMPILATION_CACHE_DIR`` to move it, or to an empty string for none.
    Every program is kept, also those that compile in under JAX's default second (the style
    predictor's 0.45 s is a fifth of a one-photo run), unless
    ``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`` says otherwise.
    Environment variables, because JAX reads them when it is first imported (inside a command).
    """
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    if "JAX_COMPILATION_CACHE_DIR" in os.environ:
        return
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(base, "jaxstyle", "xla")


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """At most ``arenas`` glibc heaps for the whole process (the command's own, not a library's).

    glibc gives threads up to eight heaps per core and keeps what each frees for its own reuse.
    A batch's reader, writer, compile and network threads then hold several copies of their
    working sets: peak RSS of the 48-photo fast folder 800 MB, with two heaps 613 MB in the same
    time (docs/performance.md). Set before JAX starts its threads; a no-op off glibc.
    """
    import ctypes
    import ctypes.util

    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_arena_max = -8
    return mallopt(m_arena_max, arenas) == 1


def run() -> None:
    use_compilation_cache()
    limit_malloc_arenas()
    sys.exit(main())
