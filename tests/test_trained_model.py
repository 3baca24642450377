"""Trained multi-style networks (issue #29's file format, `magenta_weights.save_trained` /
`load_trained`, `magenta.trained_transform`) and ``--method fast --model NET`` in every command.

The reference is independent of the new code path: a trained file whose tables are the embedded
arbitrary transformer's affine maps of two style vectors (``table[s] = v_s @ K + b``) must
stylize exactly as `magenta.transform` with those vectors, since ``w @ (V K + b) = (w V) K + b``
for weights summing to 1. Everything runs at 64x64 (a few compiles for the whole module).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxstyle.errors import WeightsError
from jaxstyle.nets import magenta, magenta_tiled, magenta_weights
from jaxstyle.nets.magenta_weights import TRANSFORMER_LAYERS, conv_and_cin_names

NAMES = ("waves", "starry")
SIZE = 64
TOLERANCE = 1e-5


def _tables(transformer, vectors: np.ndarray) -> dict:
    """The trained tree whose (S, C) tables are the arbitrary CINs' affine maps of ``vectors`` (S, 100)."""
    tree: dict = {}

    def put(name, value):
        node = tree
        *parents, leaf = name.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = np.asarray(value, np.float32)

    for layer, _ in TRANSFORMER_LAYERS:
        conv, cin = conv_and_cin_names(layer)
        source = transformer
        for part in conv.split("/"):
            source = source[part]
        put(f"{conv}/kernel", source["kernel"])
        if layer.startswith("contract"):
            put(f"{conv}/bias", source["bias"])
            continue
        node = transformer
        for part in cin.split("/"):
            node = node[part]
        for field in ("gamma", "beta"):
            kernel = np.asarray(node[field]["kernel"], np.float64).reshape(magenta_weights.STYLE_DIM, -1)
            put(f"{cin}/{field}", vectors.astype(np.float64) @ kernel + np.asarray(node[field]["bias"], np.float64))
    return {"transformer": tree}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The embedded arbitrary transformer, two style vectors, the trained file made of them, content."""
    rng = np.random.default_rng(29)
    arbitrary = magenta_weights.load_arbitrary()
    vectors = rng.normal(0.0, 0.5, (2, magenta_weights.STYLE_DIM)).astype(np.float32)
    params = _tables(arbitrary["transformer"], vectors)
    folder = tmp_path_factory.mktemp("trained")
    path = folder / "net.safetensors"
    styles = [{"name": name, "sha256": f"{i:064x}"} for i, name in enumerate(NAMES)]
    magenta_weights.save_trained(path, params, styles, {"steps": 0, "image_size": SIZE})
    content = rng.uniform(0.0, 1.0, (2, SIZE, SIZE, 3)).astype(np.float32)
    return {"arbitrary": arbitrary, "vectors": vectors, "params": params, "path": path, "content": content}


def test_round_trip_and_info(setup):
    loaded = magenta_weights.load_trained(setup["path"])
    flat = magenta_weights.flatten(loaded)
    expected = magenta_weights.flatten(setup["params"])
    assert flat.keys() == expected.keys() == magenta_weights.trained_shapes(2).keys()
    for name, value in expected.items():
        np.testing.assert_array_equal(np.asarray(flat[name]), value)
    info = magenta_weights.read_trained_info(setup["path"])
    assert [s.name for s in info.styles] == list(NAMES) and info.num_styles == 2
    assert info.training == {"steps": 0, "image_size": SIZE}
    assert magenta_weights.load_model(setup["path"])[0] == "trained"
    with pytest.raises(Exception, match="exists"):  # no clobbering unless asked
        magenta_weights.save_trained(setup["path"], setup["params"], [{"name": "a", "sha256": ""}] * 2, {})
    magenta_weights.save_trained(setup["path"], setup["params"], info.styles, info.training, overwrite=True)


def test_bad_files_are_one_line(setup, tmp_path):
    good = magenta_weights.flatten(setup["params"])
    styles = [{"name": n, "sha256": ""} for n in NAMES]

    def write(name, tensors, metadata):
        from safetensors.numpy import save_file

        path = tmp_path / name
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path), metadata=metadata)
        return path

    meta = {"format": magenta_weights.TRAINED_FORMAT, "format_version": "1", "training": "{}"}
    cases = {
        "arbitrary": (magenta_weights.default_path("arbitrary"), "not a jaxstyle-magenta-trained file"),
        "missing": (tmp_path / "nothing.safetensors", "does not exist"),
        "text": (tmp_path / "text.safetensors", "not a safetensors weights file"),
        "rows": (
            write(
                "rows",
                {**good, "transformer/expand1/cin/beta": np.zeros((3, 16), np.float32)},
                {**meta, "styles": json.dumps(styles)},
            ),
            "has 3 style rows, but the file lists 2 styles",
        ),
        "gone": (
            write(
                "gone", {k: v for k, v in good.items() if "expand3" not in k}, {**meta, "styles": json.dumps(styles)}
            ),
            "is missing",
        ),
        "styles": (write("styles", good, {**meta, "styles": "[1, 2]"}), "metadata styles must be"),
    }
    (tmp_path / "text.safetensors").write_text("not weights")
    for name, (path, message) in cases.items():
        with pytest.raises(Exception, match=message) as caught:
            magenta_weights.load_trained(path)
        assert "\n" not in str(caught.value) and str(path) in str(caught.value), name
    with pytest.raises(WeightsError, match="shape"):
        bad = {
            "transformer": {
                **setup["params"]["transformer"],
                "contract1": {"conv": {"kernel": np.zeros((3, 3, 3, 8)), "bias": np.zeros(8)}},
            }
        }
        magenta_weights.save_trained(tmp_path / "bad.safetensors", bad, styles, {})
    assert not (tmp_path / "bad.safetensors").exists()


@pytest.fixture(scope="module")
def trained(setup):
    return magenta_weights.load_trained(setup["path"])["transformer"]


def test_one_hot_and_blends_equal_the_arbitrary_network(setup, trained):
    content, vectors, transformer = setup["content"], setup["vectors"], setup["arbitrary"]["transformer"]
    for weights in (np.eye(2, dtype=np.float32), np.asarray([[0.3, 0.7], [0.6, 0.4]], np.float32)):
        ours = np.asarray(magenta.trained_transform(trained, content, weights))
        reference = np.asarray(magenta.transform(transformer, content, weights @ vectors))
        np.testing.assert_allclose(ours, reference, atol=TOLERANCE, rtol=0)
    assert np.abs(ours[0] - ours[1]).mean() > 1e-3  # the two styles differ: the test can fail


def test_buckets_and_windows_equal_the_whole_run(setup, trained):
    content = setup["content"]
    small = content[1, :44, :56]
    whole = np.asarray(magenta.trained_transform(trained, small[None], np.asarray([[0.0, 1.0]], np.float32)))[0]
    bucket = np.stack([content[0], magenta.pad_into_bucket(small, (SIZE, SIZE))])
    sizes = np.asarray([[SIZE, SIZE], [44, 56]], np.int32)
    out = np.asarray(magenta.trained_transform(trained, bucket, np.eye(2, dtype=np.float32), sizes))
    np.testing.assert_allclose(out[1, :44, :56], whole, atol=TOLERANCE, rtol=0)
    windowed = magenta_tiled.transform_tiled("trained", trained, small, np.asarray([[0.0, 1.0]], np.float32), core=16)
    np.testing.assert_allclose(windowed, whole, atol=TOLERANCE, rtol=0)


# ---------------------------------------------------------------------------------------------
# The library's runner and the commands (``--method fast --model NET``)
# ---------------------------------------------------------------------------------------------


def _main(args: list[str], capsys) -> tuple[int, str, str]:
    from jaxstyle.cli.app import main

    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    rng = np.random.default_rng(3)
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(path)
    return path


def test_stylize_with_the_model_equals_the_library(setup, photo, tmp_path, capsys):
    from jaxstyle import StyleConfig, stylize
    from jaxstyle.io.decode import load_image, read_image_metadata

    out = tmp_path / "out.png"
    args = ["stylize", photo, "--method", "fast", "--model", setup["path"], "--builtin-style", "1", "-o", out]
    code, _, err = _main([*args, "--max-size", SIZE], capsys)
    assert code == 0, err
    config = StyleConfig(method="fast", model=str(setup["path"]), builtin_style="1", max_size=SIZE)
    expected = stylize(load_image(photo).rgb, [], config)
    np.testing.assert_array_equal(load_image(out).rgb, np.round(expected * 255) / 255)
    reference = np.asarray(
        magenta.transform(setup["arbitrary"]["transformer"], load_image(photo).rgb[None], setup["vectors"][1:])
    )
    assert np.abs(expected - reference[0]).max() < 1e-4  # style 1 is the second vector's
    inputs = json.loads(read_image_metadata(out)["jaxstyle.inputs"])
    assert inputs["weights"].startswith(f"{setup['path']} sha256:")


def test_batch_video_and_listing(setup, photo, tmp_path, capsys):
    from video_files import moving_frames, write_animation

    folder = tmp_path / "in"
    folder.mkdir()
    Image.open(photo).save(folder / "a.png")
    net = tmp_path / "net.safetensors"
    net.write_bytes(setup["path"].read_bytes())
    model = ["--method", "fast", "--model", net, "--builtin-style", "0:0.5,1:0.5", "--max-size", SIZE]
    batch = ["batch", "--input", folder, "--output", tmp_path / "out", *model]
    code, _, err = _main(batch, capsys)
    assert code == 0, err
    assert (tmp_path / "out" / "a.png").exists()
    # The same path retrained (here: its two styles swapped) is another run's settings.
    swapped = magenta_weights.flatten(setup["params"])
    swapped = {k: v[::-1] if k.endswith(("gamma", "beta")) else v for k, v in swapped.items()}
    magenta_weights.save_trained(
        net,
        magenta_weights.unflatten(swapped),
        list(reversed(magenta_weights.read_trained_info(net).styles)),
        {},
        overwrite=True,
    )
    code, _, err = _main(batch, capsys)
    assert code != 0 and "made with other settings" in err, err
    clip = write_animation(tmp_path / "clip.png", moving_frames(3, (SIZE, SIZE)), [100] * 3, "PNG")
    code, _, err = _main(["video", clip, "-o", tmp_path / "styled.png", *model], capsys)
    assert code == 0, err
    code, out, err = _main(["builtin-styles", "--model", setup["path"]], capsys)
    assert code == 0, err
    assert [line.split("\t")[:2] for line in out.splitlines()] == [["0", "waves"], ["1", "starry"]]
    code, out, err = _main(["weights", "info", setup["path"], "--json"], capsys)
    assert code == 0, err
    info = json.loads(out)
    assert info["metadata"]["format"] == magenta_weights.TRAINED_FORMAT
    assert info["layers"]["transformer/expand1/cin"] == {"gamma": [2, 16], "beta": [2, 16]}


def test_bad_model_inputs_are_one_line(setup, photo, tmp_path, capsys):
    out = tmp_path / "out.png"
    fast = [photo, "-o", out, "--method", "fast", "--max-size", SIZE]
    arbitrary = magenta_weights.default_path("arbitrary")
    cases = {
        "missing file": ([*fast, "--model", tmp_path / "none.safetensors"], "does not exist"),
        "arbitrary file": ([*fast, "--model", arbitrary], "not a jaxstyle-magenta-trained file"),
        "out of range": ([*fast, "--model", setup["path"], "--builtin-style", "2"], "N in 0..1"),
        "no choice": ([*fast, "--model", setup["path"]], "holds 2 styles (0 waves, 1 starry)"),
        "gatys": ([photo, "-o", out, "--model", setup["path"], "--builtin-style", "1"], "add --method fast"),
        "style images": ([*fast, photo, "--model", setup["path"]], "brings its own styles"),
    }
    for name, (args, message) in cases.items():
        code, _, err = _main(["stylize", *args], capsys)
        lines = err.strip().splitlines()
        assert code != 0 and len(lines) == 1 and message in lines[0], (name, err)
    assert not out.exists()


def test_serve_offers_the_models_styles(setup, photo, tmp_path):
    pytest.importorskip("starlette", reason="the web extra is not installed")
    from serve_files import ORIGIN, PORT, wait_for_job
    from starlette.testclient import TestClient

    from jaxstyle.io.decode import load_image
    from jaxstyle.serve.app import create_app
    from jaxstyle.serve.security import ServeSettings

    settings = ServeSettings(results_dir=tmp_path, port=PORT, model=str(setup["path"]))
    with TestClient(create_app(settings), base_url=ORIGIN) as client:
        assert client.get("/api/info").json()["builtin"] == list(NAMES)
        post = {"origin": ORIGIN}
        upload = client.post("/api/images?name=photo.png", content=photo.read_bytes(), headers=post).json()["id"]
        job = client.post(
            "/api/jobs", json={"content": upload, "builtin": 1, "method": "fast", "max_size": SIZE}, headers=post
        )
        assert wait_for_job(client, job.json()["id"])["state"] == "done"
        record = client.get("/api/results").json()[0]
        assert f"--model {setup['path']}" in record["command"] and "--builtin-style 1" in record["command"]
        bad = client.post("/api/preview", json={"content": upload, "builtin": 5, "max_size": SIZE}, headers=post)
        assert bad.status_code == 400 and "N in 0..1" in bad.json()["error"]
    expected = np.asarray(
        magenta.transform(setup["arbitrary"]["transformer"], load_image(photo).rgb[None], setup["vectors"][1:])
    )
    assert np.abs(load_image(tmp_path / f"{record['id']}.png").rgb - expected[0]).max() < 1 / 255 + 1e-4
