"""``python -m jaxstyle``: the same as the ``jaxstyle`` command (for a Python whose scripts are not on PATH)."""

from jaxstyle.cli.app import run

if __name__ == "__main__":
    run()
