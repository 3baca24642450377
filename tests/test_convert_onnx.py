"""weights_convert.onnx_magenta: the real files convert to exactly the embedded assets, and every
kind of bad input (not ONNX, truncated, a foreign model, a missing or misshapen tensor) is one
clear WeightsError line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from jaxstyle.weights_convert import onnx_magenta
from onnx import helper, numpy_helper
from safetensors import safe_open

from jaxstyle.errors import InputNotFoundError, WeightsError
from jaxstyle.nets import magenta_weights

DATA = Path(__file__).parent / "data" / "magenta"
PREDICT, TRANSFORM, MULTI = (DATA / f"{n}.onnx" for n in ("arbitrary_predict", "arbitrary_transform", "multistyle26"))


def _read_safetensors(path):
    with safe_open(str(path), framework="numpy") as handle:
        return {name: handle.get_tensor(name) for name in handle.keys()}, dict(handle.metadata())  # noqa: SIM118


def _one_line_error(call, *args, match: str):
    with pytest.raises(WeightsError, match=match) as info:
        call(*args)
    message = str(info.value)
    assert "\n" not in message and len(message) < 400, message
    return message


def test_detect_kind_of_the_three_files():
    assert [onnx_magenta.detect_kind(onnx_magenta.read_onnx(p)) for p in (PREDICT, TRANSFORM, MULTI)] == [
        "predictor",
        "transformer",
        "multistyle",
    ]


@pytest.mark.parametrize("kind", ["arbitrary", "multistyle"])
def test_conversion_reproduces_embedded_assets(kind, tmp_path):
    if kind == "arbitrary":
        tensors, metadata = onnx_magenta.read_arbitrary(TRANSFORM, PREDICT)  # either order
    else:
        tensors, metadata = onnx_magenta.read_multistyle(MULTI)
    written = onnx_magenta.save(tmp_path / "out.safetensors", tensors, metadata)
    fresh, fresh_metadata = _read_safetensors(written)
    embedded, embedded_metadata = _read_safetensors(magenta_weights.default_path(kind))
    assert sorted(fresh) == sorted(embedded)
    for name, array in embedded.items():
        assert fresh[name].dtype == array.dtype and np.array_equal(fresh[name], array), name
    assert fresh_metadata == embedded_metadata
    assert embedded_metadata["format_version"] == "1" and embedded_metadata["source_sha256"].count(":") >= 1


def test_compact_storage_and_dequantisation_equal_the_onnx_weights():
    tensors, metadata = onnx_magenta.read_arbitrary(PREDICT, TRANSFORM)
    assert metadata["format"] == "jaxstyle-magenta-arbitrary"
    assert tensors["transformer/contract1/conv/kernel_q"].dtype == np.int8
    model = onnx.load(TRANSFORM)
    arrays = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    dq = next(
        n
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] == "transformer/contract/conv1/weights"
    )
    expected = arrays["transformer/contract/conv1/weights"] * arrays[dq.input[1]].reshape(-1, 1, 1, 1)  # OIHW
    params = magenta_weights.load_arbitrary()
    got = np.asarray(params["transformer"]["contract1"]["conv"]["kernel"])
    np.testing.assert_array_equal(got, expected.transpose(2, 3, 1, 0).astype(np.float32))
    # depthwise [C, 1, 3, 3] -> [3, 3, 1, C]
    assert params["predictor"]["block1"]["depthwise"]["kernel"].shape == (3, 3, 1, 96)


def test_graph_claims_int8_per_channel_weights_and_bias_scales():
    """Every Conv of the int8 graphs: int8 weights with a per-output-channel scale and zero point 0;
    non-zero int32 biases with scale = input scale x weight scale."""
    for path in (PREDICT, TRANSFORM):
        model = onnx.load(path)
        arrays = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        producer = {o: n for n in model.graph.node for o in n.output}
        convs = [n for n in model.graph.node if n.op_type == "Conv"]
        assert convs
        for conv in convs:
            x_dq, w_dq, b_dq = (producer[name] for name in conv.input[:3])
            weights, w_scale, w_zero = (arrays[name] for name in w_dq.input)
            assert weights.dtype == np.int8 and w_scale.shape == weights.shape[:1] and not w_zero.any()
            bias, b_scale = arrays[b_dq.input[0]], arrays[b_dq.input[1]]
            assert bias.dtype == np.int32
            if bias.any():
                np.testing.assert_allclose(b_scale, arrays[x_dq.input[1]] * w_scale, rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# Failures
# ---------------------------------------------------------------------------------------------


def test_garbage_and_empty_files(tmp_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00\xffthis is not a protobuf at all" * 50)
    _one_line_error(onnx_magenta.read_multistyle, garbage, match="not an ONNX model")
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    _one_line_error(onnx_magenta.read_multistyle, empty, match="empty file")
    _one_line_error(onnx_magenta.read_multistyle, tmp_path / "missing.onnx", match="cannot read")


def test_truncated_file(tmp_path):
    truncated = tmp_path / "truncated.onnx"
    data = MULTI.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    _one_line_error(onnx_magenta.read_multistyle, truncated, match="not an ONNX model or truncated")


def test_foreign_onnx_model(tmp_path):
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "adder", [x], [y])
    foreign = tmp_path / "add.onnx"
    onnx.save(helper.make_model(graph), foreign)
    message = _one_line_error(onnx_magenta.read_multistyle, foreign, match="not one of the Magenta style models")
    assert "['x']" in message
    _one_line_error(onnx_magenta.read_arbitrary, PREDICT, foreign, match="not one of the Magenta style models")
    _one_line_error(onnx_magenta.read_arbitrary, PREDICT, MULTI, match="expected the arbitrary predictor")
    _one_line_error(onnx_magenta.read_multistyle, PREDICT, match="expected multistyle26")


def _edited(path, tmp_path, edit):
    model = onnx.load(path)
    edit(model.graph)
    out = tmp_path / path.name
    onnx.save(model, out)
    return out


def _replace_initializer(graph, name, array):
    index = next(i for i, t in enumerate(graph.initializer) if t.name == name)
    graph.initializer[index].CopyFrom(numpy_helper.from_array(array, name))


def test_wrong_shape(tmp_path):
    bad = _edited(MULTI, tmp_path, lambda g: _replace_initializer(g, "res.2.1.w", np.zeros((32, 32, 5, 5), np.float32)))
    _one_line_error(onnx_magenta.read_multistyle, bad, match=r"res.2.1.w has shape \[5, 5, 32, 32\]")
    bad = _edited(
        TRANSFORM,
        tmp_path,
        lambda g: _replace_initializer(g, "transformer/contract/conv1/weights", np.zeros((8, 3, 7, 7), np.int8)),
    )
    _one_line_error(onnx_magenta.read_arbitrary, PREDICT, bad, match="transformer/contract/conv1/weights has shape")


def test_missing_tensor(tmp_path):
    def drop(graph, name):
        index = next(i for i, t in enumerate(graph.initializer) if t.name == name)
        del graph.initializer[index]

    bad = _edited(MULTI, tmp_path, lambda g: drop(g, "expand.1.norm.beta"))
    _one_line_error(onnx_magenta.read_multistyle, bad, match="'expand.1.norm.beta' is missing")
    bad = _edited(PREDICT, tmp_path, lambda g: drop(g, "MobilenetV2/expanded_conv_7/expand/weights"))
    _one_line_error(onnx_magenta.read_arbitrary, bad, TRANSFORM, match="expanded_conv_7/expand/weights' is missing")


def test_loading_bad_converted_files(tmp_path):
    tensors, metadata = onnx_magenta.read_multistyle(MULTI)
    with pytest.raises(InputNotFoundError):
        magenta_weights.load_multistyle(tmp_path / "nope.safetensors")
    wrong_format = onnx_magenta.save(tmp_path / "a.safetensors", tensors, {**metadata, "format": "jaxstyle-vgg19"})
    _one_line_error(magenta_weights.load_multistyle, wrong_format, match="not a jaxstyle-magenta-multistyle26 file")
    partial = {k: v for k, v in tensors.items() if k != "multistyle/residual3/cin2/gamma"}
    missing = onnx_magenta.save(tmp_path / "b.safetensors", partial, metadata)
    _one_line_error(magenta_weights.load_multistyle, missing, match="residual3/cin2/gamma' is missing")
    not_safetensors = tmp_path / "c.safetensors"
    not_safetensors.write_bytes(b"hello")
    _one_line_error(magenta_weights.load_multistyle, not_safetensors, match="not a safetensors weights file")
    _one_line_error(
        magenta_weights.load_arbitrary,
        magenta_weights.default_path("multistyle"),
        match="not a jaxstyle-magenta-arbitrary",
    )


# --------------------------------------------------------------------------------------- CLI


def test_cli_convert_and_info_know_the_magenta_kinds(tmp_path, capsys):
    import json

    from jaxstyle.cli.app import main

    out = tmp_path / "arbitrary.safetensors"
    sources = [str(DATA / "arbitrary_transform.onnx"), str(DATA / "arbitrary_predict.onnx")]  # either order
    assert main(["weights", "convert", *sources, "-o", str(out)]) == 0, capsys.readouterr().err
    assert "arbitrary (predictor + transformer)" in capsys.readouterr().err
    loaded = magenta_weights.load_arbitrary(out)
    embedded = magenta_weights.load_arbitrary()
    assert all(
        np.array_equal(a, b)
        for a, b in zip(magenta_weights.flatten(loaded).values(), magenta_weights.flatten(embedded).values())
    )
    assert main(["weights", "info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["metadata"]["format"] == magenta_weights.ARBITRARY_FORMAT
    assert info["layers"]["transformer/contract1/conv"]["kernel"] == [9, 9, 3, 8]
    # Refused, with one line each: an existing output, a wrong pair, an ONNX file given to info.
    assert main(["weights", "convert", *sources, "-o", str(out)]) == 6
    pair = [str(DATA / "multistyle26.onnx"), str(DATA / "arbitrary_predict.onnx")]
    assert main(["weights", "convert", *pair, "-o", str(tmp_path / "x.safetensors")]) == 5
    assert main(["weights", "info", str(DATA / "multistyle26.onnx")]) == 5
    err = capsys.readouterr().err
    assert "already exists" in err and "expected the arbitrary predictor" in err and "convert it first" in err
    assert not (tmp_path / "x.safetensors").exists()


@pytest.mark.parametrize("name", [magenta_weights.DEFAULT_ARBITRARY_FILE, magenta_weights.DEFAULT_MULTISTYLE_FILE])
def test_readme_quotes_the_embedded_fast_weights_sha256(name):
    import hashlib
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    quoted = {h for line in readme.splitlines() if name in line for h in re.findall(r"\b[0-9a-f]{64}\b", line)}
    kind = "arbitrary" if name == magenta_weights.DEFAULT_ARBITRARY_FILE else "multistyle"
    assert quoted == {hashlib.sha256(magenta_weights.default_path(kind).read_bytes()).hexdigest()}
