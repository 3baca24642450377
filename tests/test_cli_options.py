"""The CLI's start-up (what it imports), its options from the config (--set, --config), and
bench --json's no-clobber rule."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from jaxstyle.cli.app import main
from PIL import Image

from jaxstyle.config import (
    CHOICE_FIELDS,
    FIELDS,
    SECTIONS,
    LossSettings,
    OptimizeSettings,
    StyleConfig,
    field_path,
)
from jaxstyle.config_sources import build_config, load_toml, parse_setting
from jaxstyle.errors import InputNotFoundError, UsageError

HEAVY = ("jax", "sklearn", "skimage", "cv2", "av")

# Runs the CLI in a fresh interpreter and prints which heavy packages it imported.
IMPORTS = textwrap.dedent(
    """
    import sys
    from jaxstyle.cli.app import main
    code = main(sys.argv[1:])
    heavy = sorted({name.partition(".")[0] for name in sys.modules} & {"jax", "sklearn", "skimage", "cv2", "av"})
    print("HEAVY=" + ",".join(heavy))
    sys.exit(code)
    """
)


def imported(*args: str) -> tuple[int, set[str], str]:
    result = subprocess.run(
        [sys.executable, "-c", IMPORTS, *args], capture_output=True, check=False, text=True, timeout=120
    )
    line = [text for text in result.stdout.splitlines() if text.startswith("HEAVY=")][-1]
    return result.returncode, set(filter(None, line[6:].split(","))), result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("--version",),
        ("--help",),
        ("stylize", "--help"),
        ("batch", "--help"),
        ("bench", "--help"),
        ("color", "--help"),
        ("video", "--help"),
    ],
    ids=lambda args: " ".join(args),
)
def test_help_and_version_import_no_heavy_library(args):
    code, heavy, err = imported(*args)
    assert code == 0, err
    assert heavy == set()


def test_color_runs_without_jax(tmp_path: Path):
    rng = np.random.default_rng(0)
    for name in ("content.png", "style.png"):
        Image.fromarray((rng.uniform(size=(24, 24, 3)) * 255).astype(np.uint8)).save(tmp_path / name)
    out = tmp_path / "out.png"
    code, heavy, err = imported("color", str(tmp_path / "content.png"), str(tmp_path / "style.png"), "-o", str(out))
    assert code == 0, err
    assert out.is_file()
    assert "jax" not in heavy and {"sklearn", "skimage"} <= heavy  # the KNN itself does use them


def test_help_fits_80_columns():
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from jaxstyle.cli.app import main; sys.exit(main(sys.argv[1:]))"]
        + ["stylize", "--help"],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
        env={"COLUMNS": "80", "PATH": ""},
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) > 30
    assert max(len(line) for line in lines) <= 80
    assert "Long side of the output in px. [default: 512]" in " ".join(result.stdout.split())  # the config's


# --------------------------------------------------------------------------------------- config


def test_parse_setting_types_every_kind_of_field():
    assert parse_setting("tv_weight=10") == ("tv_weight", 10.0)
    assert parse_setting("lbfgs-memory=20") == ("lbfgs_memory", 20)
    assert parse_setting("clip=false") == ("clip", False)
    assert parse_setting("multiscale_min=none") == ("multiscale_min", None)
    assert parse_setting("style_layers=relu1_1,relu2_1") == ("style_layers", ("relu1_1", "relu2_1"))
    assert parse_setting("style_layer_weights=1 2.5") == ("style_layer_weights", (1.0, 2.5))
    for bad, message in [
        ("nonsense=1", "--set takes FIELD=VALUE"),
        ("tv_weight", "--set takes FIELD=VALUE"),
        ("iterations=many", "iterations must be an integer"),
        ("clip=maybe", "clip must be true or false"),
    ]:
        with pytest.raises(UsageError, match=message):
            parse_setting(bad)


def test_build_config_order_preset_file_options_set(tmp_path: Path):
    path = tmp_path / "settings.toml"
    path.write_text('iterations = 7\ntv_weight = 2.0\nstyle_layers = ["relu1_1"]\noptimizer = "adam"\n')
    config = build_config(
        "neural-style", config_file=path, settings={"tv_weight": 3.0, "seed": None}, sets=("iterations=9",)
    )
    assert config.loss.pooling == "max"  # from the preset
    assert config.loss.style_layers == ("relu1_1",) and config.optimize.optimizer == "adam"  # from the file
    assert config.loss.tv_weight == 3.0  # the named option beats the file
    assert config.optimize.iterations == 9  # --set is applied last
    assert config.seed == StyleConfig().seed  # None means "not given"


def test_command_defaults_come_first(tmp_path: Path):
    """The video command's own default method yields to a preset, a file, the option and --set."""
    defaults = {"method": "fast", "iterations": 5}
    assert build_config(defaults=defaults).method == "fast"
    assert build_config("neural-style", defaults=defaults).optimize.iterations == 1000
    path = tmp_path / "gatys.toml"
    path.write_text('method = "gatys"\n')
    assert build_config(defaults=defaults, config_file=path).method == "gatys"
    assert build_config(defaults=defaults, settings={"method": "gatys"}).method == "gatys"
    assert build_config(defaults=defaults, sets=("method=gatys",)).method == "gatys"


def test_toml_errors_are_one_clear_line(tmp_path: Path):
    with pytest.raises(InputNotFoundError, match="does not exist"):
        load_toml(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("iterations = [")
    with pytest.raises(UsageError, match="not valid TOML"):
        load_toml(tmp_path / "bad.toml")
    (tmp_path / "unknown.toml").write_text("iteratons = 3\n")
    with pytest.raises(UsageError, match="unknown setting"):
        load_toml(tmp_path / "unknown.toml")


def test_every_choice_field_is_checked():
    for name, allowed in CHOICE_FIELDS.items():
        assert len(allowed) >= 1
        with pytest.raises(UsageError, match=f"choose one of {', '.join(allowed)}"):
            StyleConfig().replace(**{name: "bogus"})


def test_fields_are_unique_across_sections_and_reached_by_name_or_path():
    names = [name for cls in SECTIONS.values() for name in cls.__dataclass_fields__]
    assert len(names) == len(set(names)) and not set(names) & set(StyleConfig.__dataclass_fields__)
    assert field_path("iterations") == field_path("optimize.iterations") == ("optimize", "iterations")
    assert field_path("max_size") == ("", "max_size") and field_path("loss") == ("", "loss")
    for bad in ("loss.iterations", "nonsense", "optimize.nonsense"):
        with pytest.raises(KeyError):
            field_path(bad)
    config = StyleConfig().replace(iterations=5, **{"loss.tv_weight": 2.0}, max_size=64)
    assert (config.optimize.iterations, config.loss.tv_weight, config.max_size) == (5, 2.0, 64)
    assert config.optimize.replace(iterations=300) == StyleConfig().optimize  # the rest kept
    assert parse_setting("optimize.lbfgs_memory=20") == ("optimize.lbfgs_memory", 20)
    assert build_config(sets=("optimize.lbfgs_memory=20",)).optimize.lbfgs_memory == 20
    assert len(FIELDS) == len(names) + len(StyleConfig.__dataclass_fields__) - len(SECTIONS)


def test_a_config_is_checked_when_it_is_built():
    """No unchecked config exists: each section checks itself, StyleConfig what spans sections."""
    with pytest.raises(UsageError, match="iterations must be at least 1"):
        OptimizeSettings(iterations=0)
    with pytest.raises(UsageError, match="at least one style layer"):
        LossSettings(style_layers=())
    with pytest.raises(UsageError, match="max size must be at least 16"):
        StyleConfig(max_size=8)
    with pytest.raises(UsageError, match="built-in styles belong to the fast method"):
        StyleConfig().replace(builtin_style="7")
    with pytest.raises(UsageError, match="multiscale start must be between 16 and max size 64"):
        StyleConfig().replace(max_size=64, multiscale_min=128)
    with pytest.raises(UsageError, match="temporal weight is a share"):
        StyleConfig().replace(method="fast", temporal_weight=2.0)
    with pytest.raises(UsageError, match="learning rate must be greater than 0"):
        StyleConfig().replace(learning_rate=0.0)


def test_toml_sections_and_top_level_names(tmp_path: Path):
    path = tmp_path / "settings.toml"
    path.write_text('max_size = 256\ntv_weight = 2.0\n[optimize]\niterations = 7\n[loss]\npooling = "max"\n')
    config = build_config(config_file=path)
    assert (config.max_size, config.loss.tv_weight, config.optimize.iterations, config.loss.pooling) == (
        256,
        2.0,
        7,
        "max",
    )
    path.write_text("[loss]\niterations = 7\n")
    with pytest.raises(UsageError, match=r"unknown setting\(s\) loss.iterations"):
        load_toml(path)


def test_set_reaches_a_field_without_an_option(tmp_path: Path, capsys):
    """--set lbfgs_memory=3 reaches the run: the PNG metadata records the config that ran."""
    from jaxstyle.io.decode import read_image_metadata

    rng = np.random.default_rng(1)
    for name in ("content.png", "style.png"):
        Image.fromarray((rng.uniform(size=(20, 20, 3)) * 255).astype(np.uint8)).save(tmp_path / name)
    out = tmp_path / "out.png"
    args = ["stylize", str(tmp_path / "content.png"), str(tmp_path / "style.png"), "-o", str(out)]
    args += ["--max-size", "16", "--iterations", "1", "--set", "lbfgs_memory=3", "--set", "style_layers=relu1_1"]
    assert main(args) == 0, capsys.readouterr().err
    recorded = json.loads(read_image_metadata(out)["jaxstyle.config"])
    assert recorded["optimize"]["lbfgs_memory"] == 3 and recorded["loss"]["style_layers"] == ["relu1_1"]


# --------------------------------------------------------------------------------------- bench


def test_bench_json_never_overwrites_an_existing_file(tmp_path: Path, capsys):
    photo = tmp_path / "photo.jpg"
    Image.new("RGB", (8, 8), "red").save(photo)
    before = photo.read_bytes()
    assert main(["bench", "--size", "32", "--optimizer", "adam", "--json", str(photo)]) == 6
    err = capsys.readouterr().err
    assert "already exists; pass --overwrite" in err and err.count("\n") == 1
    assert photo.read_bytes() == before


def test_bench_json_refuses_its_weights_file_even_with_overwrite(tmp_path: Path, capsys):
    from jaxstyle.weights import default_weights_path

    weights = tmp_path / "w.safetensors"
    weights.write_bytes(default_weights_path().read_bytes())
    before = weights.read_bytes()
    args = ["bench", "--size", "32", "--optimizer", "adam", "--weights", str(weights), "--json", str(weights)]
    assert main([*args, "--overwrite"]) == 6
    assert "it is also an input file" in capsys.readouterr().err
    assert weights.read_bytes() == before
