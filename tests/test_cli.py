"""The `jaxstyle` command line: bad input gives one clear line and a distinct exit code.

A corpus of bad command lines (tests/cli_corpus.py, built from files generated here) runs
through `typer.testing.CliRunner`, through `main(argv)` and, for a subset, through the real
console script in a subprocess. Each run must give the documented exit code, one line starting
with 'error:' that names the culprit, no traceback, and leave every file as it was (nothing
written, inputs' bytes and mtimes unchanged). Then the happy paths, `--verbose` tracebacks and
Ctrl-C.

Exit codes (jaxstyle.errors): usage 2, input not found 3, image 4, weights 5, output 6, mask 8,
numerical 7, internal 70, interrupted 130.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import typer
from child_signals import sigint_not_ignored
from cli_corpus import CASES, SUBPROCESS_CASES, Case, build_files, describe_changes, snapshot
from jaxstyle.cli.app import app, main
from jaxstyle.cli.common import VERBOSITY
from PIL import Image
from typer.testing import CliRunner

from jaxstyle import __version__
from jaxstyle.io.decode import read_image_metadata
from jaxstyle.weights import default_weights_path

JAXSTYLE = Path(sys.executable).with_name("jaxstyle")  # the console script (`python -m jaxstyle.cli` has no __main__)
STYLE_KEYS = {"content", "style", "tv", "total"}


def _params(cases: list[Case]) -> list:
    return [
        pytest.param(case, id=case.id, marks=[pytest.mark.xfail(strict=True, reason=case.bug)] if case.bug else [])
        for case in cases
    ]


@pytest.fixture(autouse=True)
def _reset_verbosity():
    """--verbose/--quiet live in a module global; never let one test's flags leak into the next."""
    yield
    VERBOSITY.verbose = VERBOSITY.quiet = False


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return build_files(tmp_path / "work")


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _check_error_line(stderr: str, case: Case) -> None:
    lines = _lines(stderr)
    assert len(lines) == 1, f"expected exactly one line on stderr, got:\n{stderr}"
    assert lines[0].startswith("error: "), lines[0]
    for word in case.mentions:
        assert word.lower() in lines[0].lower(), f"{word!r} not in {lines[0]!r}"


# --------------------------------------------------------------------------------------------
# The corpus of bad input
# --------------------------------------------------------------------------------------------


def test_corpus_is_large_and_distinct():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))
    assert len({case.args for case in CASES}) == len(CASES)
    assert len(CASES) >= 30
    assert {case.code for case in CASES} >= {2, 3, 4, 5, 6}
    assert set(SUBPROCESS_CASES) <= set(ids)


@pytest.mark.parametrize("case", _params(CASES))
def test_bad_input_main(case: Case, files: dict[str, Path], capsys: pytest.CaptureFixture[str]):
    """main(argv), the console entry point: exit code, one 'error:' line, nothing touched."""
    before = snapshot(files["tmp"])
    code = main(case.argv(files))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert code == case.code, err
    assert out == ""
    _check_error_line(err, case)
    assert describe_changes(before, snapshot(files["tmp"])) == []


@pytest.mark.parametrize("case", _params(CASES))
def test_bad_input_clirunner(case: Case, files: dict[str, Path]):
    """The Typer app through CliRunner (click's own usage text for parse errors; no main())."""
    before = snapshot(files["tmp"])
    result = CliRunner().invoke(app, case.argv(files))
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == case.code, result.output
    assert result.stdout == ""
    if case.click_usage:
        assert "Usage:" in result.stderr and "Error" in result.stderr
    else:
        _check_error_line(result.stderr, case)
    assert describe_changes(before, snapshot(files["tmp"])) == []


def _run(args: list[str], *, timeout: float = 180, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(JAXSTYLE), *args], capture_output=True, check=False, text=True, timeout=timeout, **kwargs
    )


def test_console_script_exists():
    assert JAXSTYLE.is_file() and os.access(JAXSTYLE, os.X_OK)


@pytest.mark.slow
@pytest.mark.parametrize("case", _params([case for case in CASES if case.id in SUBPROCESS_CASES]))
def test_bad_input_subprocess(case: Case, files: dict[str, Path]):
    """The installed console script in a real process: the same guarantees as main()."""
    before = snapshot(files["tmp"])
    proc = _run(case.argv(files))
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.returncode == case.code, proc.stderr
    assert proc.stdout == ""
    _check_error_line(proc.stderr, case)
    assert describe_changes(before, snapshot(files["tmp"])) == []


@pytest.mark.slow
def test_verbose_shows_the_traceback(files: dict[str, Path]):
    """--verbose is the one place a traceback is allowed; the exit code and last line stay."""
    proc = _run(["--verbose", "stylize", str(files["missing"]), str(files["style_png"]), "-o", str(files["out"])])
    assert proc.returncode == 3
    assert "Traceback (most recent call last)" in proc.stderr
    assert "InputNotFoundError" in proc.stderr
    assert _lines(proc.stderr)[-1].startswith("error: ") and "no_such_photo.png" in _lines(proc.stderr)[-1]
    assert not files["out"].exists()


def test_verbose_traceback_in_process(files: dict[str, Path], capsys: pytest.CaptureFixture[str]):
    code = main(["-v", "stylize", str(files["garbage_png"]), str(files["style_png"]), "-o", str(files["out"])])
    err = capsys.readouterr().err
    assert code == 4
    assert "Traceback" in err and "UnidentifiedImageError" in err
    assert _lines(err)[-1].startswith("error: ")


@pytest.mark.slow
def test_huge_max_size_fails_cleanly_when_memory_runs_out(files: dict[str, Path]):
    """--max-size 1000000 on a 40x32 photo needs terabytes: a clear line about memory, no traceback.

    The child's address space is capped (ulimit -v, 6 GiB) so the test can never exhaust the
    machine. (A shell sets the cap: `preexec_fn` would fork this JAX-initialised process.)
    """
    before = snapshot(files["tmp"])
    script = 'ulimit -v 6291456 && exec "$0" "$@"'
    proc = subprocess.run(
        [
            "sh",
            "-c",
            script,
            str(JAXSTYLE),
            "stylize",
            str(files["content_png"]),
            str(files["style_png"]),
            "-o",
            str(files["out"]),
            "--max-size",
            "1000000",
            "--iterations",
            "2",
        ],
        capture_output=True,
        check=False,
        text=True,
        timeout=180,
    )
    assert "Traceback" not in proc.stderr
    assert proc.returncode not in (0, 1), proc.stderr
    last = _lines(proc.stderr)[-1]
    assert last.startswith("error: ") and "memory" in last, proc.stderr
    assert describe_changes(before, snapshot(files["tmp"])) == []


# --------------------------------------------------------------------------------------------
# Happy paths
# --------------------------------------------------------------------------------------------


def _stylize_args(files: dict[str, Path], output: Path, *extra: str) -> list[str]:
    return [
        "stylize",
        str(files["content_png"]),
        str(files["style_png"]),
        "-o",
        str(output),
        "--max-size",
        "32",
        "--iterations",
        "3",
        *extra,
    ]


@pytest.mark.slow
def test_stylize_writes_result_then_refuses_then_overwrites(files: dict[str, Path], capsys: pytest.CaptureFixture[str]):
    inputs_before = {name: files[name].read_bytes() for name in ("content_png", "style_png")}
    output = files["tmp"] / "out" / "sub" / "result.png"
    assert not output.parent.exists()

    assert main(_stylize_args(files, output)) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"wrote {output}" in err  # one line, even for a long path
    with Image.open(output) as image:
        assert image.format == "PNG"
        assert max(image.size) == 32 and image.size == (32, 26)  # 40x32 content, long side 32
    metadata = read_image_metadata(output)
    config = json.loads(metadata["jaxstyle.config"])
    assert config["max_size"] == 32 and config["optimize"]["iterations"] == 3
    inputs = json.loads(metadata["jaxstyle.inputs"])
    assert inputs["content"] == str(files["content_png"]) and inputs["weights"] == "embedded"
    assert metadata["Software"] == f"jaxstyle {__version__}"
    assert [p.name for p in output.parent.iterdir()] == ["result.png"]  # no temporary files left

    # Again without --overwrite: refused before any work, the file untouched.
    written, stat_before = output.read_bytes(), output.stat()
    assert main(_stylize_args(files, output)) == 6
    err = capsys.readouterr().err
    assert _lines(err) == [f"error: '{output}' already exists; pass --overwrite to replace it"]
    assert output.read_bytes() == written and output.stat().st_mtime_ns == stat_before.st_mtime_ns

    # With --overwrite: replaced atomically (a new file moved into place, so a new inode).
    assert main(_stylize_args(files, output, "--overwrite", "--seed", "1", "--init", "noise")) == 0
    capsys.readouterr()
    assert output.stat().st_ino != stat_before.st_ino
    assert output.read_bytes() != written
    assert json.loads(read_image_metadata(output)["jaxstyle.config"])["optimize"]["init"] == "noise"
    assert [p.name for p in output.parent.iterdir()] == ["result.png"]
    assert {name: files[name].read_bytes() for name in inputs_before} == inputs_before


@pytest.mark.slow
def test_stylize_save_every_and_history(files: dict[str, Path], capsys: pytest.CaptureFixture[str]):
    output = files["tmp"] / "run" / "result.jpg"
    history = files["tmp"] / "run" / "history.json"
    assert main(_stylize_args(files, output, "--save-every", "1", "--history", str(history))) == 0, (
        capsys.readouterr().err
    )
    capsys.readouterr()
    names = sorted(p.name for p in output.parent.iterdir())
    assert names == ["history.json", "result.00001.jpg", "result.00002.jpg", "result.jpg"]
    for name in names:
        if name.endswith(".jpg"):
            with Image.open(output.parent / name) as image:
                assert image.format == "JPEG" and image.size == (32, 26)
    # JPEG keeps the run record as JSON in the EXIF ImageDescription.
    assert json.loads(read_image_metadata(output)["jaxstyle.config"])["max_size"] == 32
    record = json.loads(history.read_text())
    assert set(record) == {*STYLE_KEYS, "content_ratio", "style_ratio", "tv_ratio", "final"}
    # the result's own loss terms and ratios to the inputs, in the history and in the image
    final = record["final"]
    assert set(final) == {*STYLE_KEYS, "content_ratio", "style_ratio", "tv_ratio"}
    assert all(np.isfinite(value) and value > 0 for value in final.values())
    assert json.loads(read_image_metadata(output)["jaxstyle.losses"]) == pytest.approx(final)
    for key, values in record.items():
        assert key == "final" or (len(values) == 3 and all(np.isfinite(values))), (key, values)
    np.testing.assert_allclose(
        np.asarray(record["total"]),
        np.asarray(record["content"]) + np.asarray(record["style"]) + np.asarray(record["tv"]),
        rtol=1e-4,
    )


def test_color_writes_output(files: dict[str, Path], capsys: pytest.CaptureFixture[str]):
    output = files["tmp"] / "colour" / "recoloured.png"
    before = {name: (files[name].read_bytes(), files[name].stat().st_mtime_ns) for name in ("content_png", "style_png")}
    assert (
        main(["color", str(files["content_png"]), str(files["style_png"]), "-o", str(output), "--max-train", "500"])
        == 0
    )
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"wrote {output}" in err
    with Image.open(output) as image:
        assert image.size == (40, 32) and image.mode == "RGB"
    assert "jaxstyle.color" in read_image_metadata(output)
    assert {name: (files[name].read_bytes(), files[name].stat().st_mtime_ns) for name in before} == before


def test_weights_info_embedded(capsys: pytest.CaptureFixture[str]):
    digest = hashlib.sha256(default_weights_path().read_bytes()).hexdigest()
    assert main(["weights", "info"]) == 0
    out = capsys.readouterr().out
    assert digest in out and "block5_conv4" in out
    assert main(["weights", "info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["sha256"] == digest and info["format"] == "canonical"
    assert info["layers"]["block1_conv1"]["kernel"] == [3, 3, 3, 64]
    assert len(info["layers"]) == 16


def test_weights_convert_round_trip(files: dict[str, Path], capsys: pytest.CaptureFixture[str]):
    output = files["tmp"] / "weights" / "vgg19.safetensors"
    assert main(["weights", "convert", str(default_weights_path()), "-o", str(output)]) == 0
    capsys.readouterr()
    assert main(["weights", "info", str(output), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metadata"]["format"] == "jaxstyle-vgg19"
    written = output.read_bytes()
    assert main(["weights", "convert", str(default_weights_path()), "-o", str(output)]) == 6
    assert "--overwrite" in capsys.readouterr().err
    assert output.read_bytes() == written


def test_version(capsys: pytest.CaptureFixture[str]):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"jaxstyle {__version__}\n"
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"jaxstyle {__version__}\n"


def _leaf_commands() -> list[tuple[str, ...]]:
    """Every runnable command of the app, as the words that name it (found, not listed by hand)."""
    found: list[tuple[str, ...]] = []

    def walk(command, path: tuple[str, ...]) -> None:
        subcommands = getattr(command, "commands", None)
        if subcommands is None:
            found.append(path)
            return
        for name, sub in subcommands.items():
            walk(sub, (*path, name))

    walk(typer.main.get_command(app), ())
    return found


def test_every_command_is_found():
    commands = _leaf_commands()
    assert {("stylize",), ("color",), ("demo",), ("bench",), ("weights", "convert"), ("weights", "info")} <= set(
        commands
    )


@pytest.mark.parametrize("words", _leaf_commands(), ids=" ".join)
def test_command_help_has_examples(words: tuple[str, ...]):
    result = CliRunner().invoke(app, [*words, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.stdout
    short = CliRunner().invoke(app, [*words, "-h"])
    assert short.exit_code == 0 and short.stdout == result.stdout


@pytest.mark.parametrize("words", [(), ("weights",)], ids=["root", "weights"])
def test_group_help(words: tuple[str, ...], capsys: pytest.CaptureFixture[str]):
    assert main([*words, "--help"]) == 0
    out = capsys.readouterr().out
    assert "Usage" in out and "Traceback" not in out


def test_shell_completion_is_offered():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "--install-completion" in result.stdout and "--show-completion" in result.stdout


# --------------------------------------------------------------------------------------------
# Ctrl-C
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_ctrl_c_saves_the_last_image(files: dict[str, Path]):
    """SIGINT mid-run: exit 130, 'interrupted' and the saved file's name on one line, no -o file.

    `--save-every 10` is only the signal that the run has compiled and reported at least once
    (its first intermediate file appears); the interrupted image is saved separately.
    """
    output = files["tmp"] / "ctrl-c" / "result.png"
    first_report = output.with_name("result.00010.png")
    interrupted = output.with_name("result.interrupted.png")
    with sigint_not_ignored():
        proc = subprocess.Popen(
            [
                str(JAXSTYLE),
                "stylize",
                str(files["content_png"]),
                str(files["style_png"]),
                "-o",
                str(output),
                "--max-size",
                "64",
                "--iterations",
                "2000",
                "--save-every",
                "10",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    try:
        deadline = time.monotonic() + 90
        while not first_report.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert first_report.exists(), "the run never reported progress"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "Traceback" not in out + err
    notice = [line for line in _lines(err) if "interrupted" in line]
    assert len(notice) == 1 and str(interrupted) in notice[0], err
    with Image.open(interrupted) as image:
        image.load()
        assert image.format == "PNG" and image.size == (64, 51)
    assert "jaxstyle.config" in read_image_metadata(interrupted)
    assert not output.exists()
    assert not [p for p in output.parent.iterdir() if p.name.startswith(".")]  # no temporary files


def test_ctrl_c_before_the_first_report(files: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch):
    """Ctrl-C while compiling: nothing to save, says so, exit 130, nothing written."""
    from jaxstyle.methods.gatys import GatysRunner

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(GatysRunner, "stylize", interrupted)
    before = snapshot(files["tmp"])
    assert main(_stylize_args(files, files["out"])) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and "nothing to save" in err
    assert describe_changes(before, snapshot(files["tmp"])) == []


@pytest.mark.parametrize("words", [(), ("stylize",), ("weights",)], ids=["root", "stylize", "weights"])
def test_no_arguments_print_help_once(words: tuple[str, ...], capsys: pytest.CaptureFixture[str]):
    assert main(list(words)) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert (out + err).count("Usage:") == 1, out + err


@pytest.mark.slow
def test_stylize_in_tiles_says_the_plan_and_leaves_only_the_output(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
):
    output = files["tmp"] / "tiled" / "result.png"
    args = _stylize_args(files, output, "--tile-size", "64")
    args[args.index("--max-size") + 1] = "96"
    assert main(args) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert "96x77 would need about" in err and "scale 2 96x77 in 4 tiles of 64x64" in err, err
    with Image.open(output) as image:
        assert image.size == (96, 77)
    assert [p.name for p in output.parent.iterdir()] == ["result.png"]  # the parts folder is gone
    assert json.loads(read_image_metadata(output)["jaxstyle.config"])["resources"]["tile_size"] == 64
