"""The jaxstyle command-line interface (installed as jaxstyle.cli)."""
