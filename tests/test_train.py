"""`jaxstyle train`: the flax network against the inference network, its gradients against finite
differences, a tiny training run that lowers its loss, resuming after an interrupt or a kill, the
file's provenance, and one line for each bad input. Tiny shapes (32 px crops), one compile of the
training step for the whole module."""

from __future__ import annotations

import json
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxstyle.cli.app import app
from PIL import Image
from safetensors import safe_open
from typer.testing import CliRunner

from jaxstyle.config import StyleConfig
from jaxstyle.errors import ImageError, InputNotFoundError, UsageError, WeightsError
from jaxstyle.nets import magenta, magenta_weights
from jaxstyle.train import data, network
from jaxstyle.train.checkpoint import checkpoint_path
from jaxstyle.train.driver import CheckpointSaved, TrainStep, train
from jaxstyle.train.settings import TrainConfig

TINY = TrainConfig(size=32, photo_size=40, batch_size=2, steps=4, learning_rate=1e-3, warmup=0,
                   schedule="constant", held_out=0.25, checkpoint_every=2, sample_every=0)  # fmt: skip


def _smooth_image(seed: int, height: int, width: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.BILINEAR)
    return np.asarray(image)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    photos = root / "photos"
    photos.mkdir()
    for index in range(4):
        Image.fromarray(_smooth_image(index, 40 + 8 * index, 56)).save(photos / f"p{index}.png")
    styles = []
    for index in range(2):
        path = root / f"style{index}.png"
        Image.fromarray(_smooth_image(10 + index, 48, 48)).save(path)
        styles.append(path)
    return {"root": root, "photos": photos, "styles": styles}


@pytest.fixture(scope="module")
def arbitrary():
    return magenta_weights.load_arbitrary()


def test_flax_network_with_converted_weights_equals_the_inference_network(arbitrary):
    vectors = np.random.default_rng(0).normal(size=(2, magenta_weights.STYLE_DIM)).astype(np.float32) * 0.3
    params = network.from_arbitrary(arbitrary["transformer"], vectors)
    content = jnp.asarray(np.random.default_rng(1).random((2, 64, 64, 3), np.float32))
    weights = jnp.eye(2, dtype=jnp.float32)
    out = network.StyleNetwork(2).apply({"params": params}, content, weights)
    reference = magenta.transform(arbitrary["transformer"], content, jnp.asarray(vectors))
    assert float(jnp.max(jnp.abs(out - reference))) <= 1e-5
    # ... and the inference network of a trained file (its kind "trained") runs the same function.
    blend = jnp.asarray([[0.25, 0.75], [1.0, 0.0]], jnp.float32)
    trained = magenta.trained_transform(jax.tree.map(jnp.asarray, params), content, blend)
    assert float(jnp.max(jnp.abs(network.StyleNetwork(2).apply({"params": params}, content, blend) - trained))) <= 1e-5
    # The parameter tree is the Magenta names: the flax module's own init has exactly these paths.
    init = network.StyleNetwork(2).init(jax.random.key(0), content, weights)["params"]
    assert jax.tree.structure(init) == jax.tree.structure(jax.tree.map(jnp.asarray, params))


def test_gradients_match_finite_differences(x64):
    """Directional derivatives of a loss through the tiny network, float64, central differences."""
    net = network.StyleNetwork(2)
    content = jnp.asarray(np.random.default_rng(2).random((1, 32, 32, 3)), jnp.float64)
    weights = jnp.asarray([[0.3, 0.7]], jnp.float64)
    params = jax.tree.map(lambda a: a.astype(jnp.float64), net.init(jax.random.key(1), content, weights)["params"])
    probe = jnp.asarray(np.random.default_rng(3).normal(size=(1, 32, 32, 3)), jnp.float64)

    def f(p):
        return jnp.sum(net.apply({"params": p}, content, weights) * probe)

    grads = jax.grad(f)(params)
    leaves, tree = jax.tree.flatten(params)
    rng = np.random.default_rng(4)
    direction = jax.tree.unflatten(tree, [jnp.asarray(rng.normal(size=leaf.shape)) for leaf in leaves])
    analytic = sum(float(jnp.vdot(g, d)) for g, d in zip(jax.tree.leaves(grads), jax.tree.leaves(direction)))
    eps = 1e-7  # the ReLUs make the function curved enough that 1e-5 is off by 4 %
    step = lambda s: jax.tree.map(lambda p, d: p + s * eps * d, params, direction)
    numeric = (float(f(step(1))) - float(f(step(-1)))) / (2 * eps)
    assert numeric == pytest.approx(analytic, rel=1e-6)


def test_crops_follow_from_seed_and_step(files):
    split = data.split_photos(files["photos"], 0.25)
    assert len(split.held_out) == 1 and len(split.train) == 3
    a = data.Crops(split.train, 2, TINY)
    b = data.Crops(split.train, 2, TINY)
    try:
        first, styles = a.batch(3)
        assert first.shape == (2, 32, 32, 3) and styles.tolist() == [0, 1]
        np.testing.assert_array_equal(first, b.batch(3)[0])
        assert not np.array_equal(first, a.batch(4)[0])
    finally:
        a.close()
        b.close()


def _train(files, out, config=TINY, callback=None, **kwargs):
    return train(files["styles"], files["photos"], out, config, StyleConfig(), callback=callback, **kwargs)


def _tensors(path):
    with safe_open(str(path), framework="numpy") as reader:
        return {name: reader.get_tensor(name) for name in reader.keys()}, reader.metadata()  # noqa: SIM118


@pytest.fixture(scope="module")
def uninterrupted(files):
    steps = []
    out = _train(files, files["root"] / "a.safetensors", callback=lambda e: steps.append(e))
    return out, steps


def test_training_lowers_the_loss_and_records_its_provenance(files, uninterrupted):
    out, events = uninterrupted
    losses = [e.terms["total"] for e in events if isinstance(e, TrainStep)]
    assert len(losses) == TINY.steps and all(np.isfinite(losses))
    tensors, metadata = _tensors(out)
    assert metadata["format"] == "jaxstyle-magenta-trained"
    assert tensors["transformer/residual1/cin1/gamma"].shape == (2, 32)
    training = json.loads(metadata["training"])
    assert training["steps_done"] == TINY.steps and training["train"]["size"] == 32
    assert [s["name"] for s in json.loads(metadata["styles"])] == ["style0", "style1"]
    assert not checkpoint_path(out).exists()  # removed once the network is written
    # Longer training on the same crops lowers the loss on a fixed batch (step 0's).
    from jaxstyle.train.session import Session, _evaluate

    run = Session([np.asarray(Image.open(p), np.float32) / 255 for p in files["styles"]], TINY, StyleConfig())
    crops = data.Crops(data.split_photos(files["photos"], 0.25).train, 2, TINY)
    try:
        batch, ids = crops.batch(0)
    finally:
        crops.close()
    before = _evaluate(run.initial_params(), 2, run.vgg, jnp.asarray(batch), jnp.asarray(ids), run.targets, run.spec)
    trained = jax.tree.map(jnp.asarray, magenta_weights.unflatten(tensors)["transformer"])
    after = _evaluate(trained, 2, run.vgg, jnp.asarray(batch), jnp.asarray(ids), run.targets, run.spec)
    assert float(after[1]["total"]) < 0.97 * float(before[1]["total"])


def test_interrupt_and_kill_resume_to_the_uninterrupted_result(files, uninterrupted):
    expected, _ = _tensors(uninterrupted[0])

    def interrupt_at_3(event):
        if isinstance(event, TrainStep) and event.step == 3:
            signal.raise_signal(signal.SIGINT)

    out = files["root"] / "b.safetensors"
    with pytest.raises(KeyboardInterrupt):
        _train(files, out, callback=interrupt_at_3)
    assert not out.exists() and checkpoint_path(out).exists()
    seen = []
    _train(files, out, callback=seen.append)
    assert [e.step for e in seen if isinstance(e, TrainStep)] == [4]
    resumed, _ = _tensors(out)
    for name, value in expected.items():
        np.testing.assert_allclose(resumed[name], value, rtol=0, atol=1e-6, err_msg=name)

    class Killed(Exception):
        pass

    def kill_at_3(event):  # dies without its own checkpoint: the last one (step 2) is what is left
        if isinstance(event, TrainStep) and event.step == 3:
            raise Killed

    out = files["root"] / "c.safetensors"
    with pytest.raises(Killed):
        _train(files, out, callback=kill_at_3)
    seen = []
    _train(files, out, callback=seen.append)
    assert [e.step for e in seen if isinstance(e, TrainStep)] == [3, 4]
    assert [e.step for e in seen if isinstance(e, CheckpointSaved)] == []
    killed, _ = _tensors(out)
    for name, value in expected.items():
        np.testing.assert_allclose(killed[name], value, rtol=0, atol=1e-6, err_msg=name)


def test_a_checkpoint_of_other_settings_is_refused(files):
    out = files["root"] / "d.safetensors"

    def stop(event):
        if isinstance(event, TrainStep) and event.step == 1:
            signal.raise_signal(signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        _train(files, out, callback=stop)
    with pytest.raises(UsageError, match="other settings"):
        _train(files, out, config=TINY.replace(learning_rate=5e-4))


@pytest.mark.parametrize(
    ("case", "error", "words"),
    [
        ("empty folder", InputNotFoundError, "no image files"),
        ("unreadable folder", ImageError, "can be read"),
        ("too few photos", UsageError, "too few"),
        ("style not an image", ImageError, "style"),
        ("a network of another shape", WeightsError, "1 style"),
        ("a missing network", InputNotFoundError, "does not exist"),
    ],
)
def test_bad_inputs_one_line(files, arbitrary, tmp_path, case, error, words):
    photos, styles, config = files["photos"], files["styles"], TINY
    if case == "a network of another shape":  # a one-style network to start a two-style run
        one = network.from_arbitrary(arbitrary["transformer"], np.zeros((1, magenta_weights.STYLE_DIM), np.float32))
        path = magenta_weights.save_trained(
            tmp_path / "one.safetensors", {"transformer": one}, [{"name": "a", "sha256": "0" * 64}], {}
        )
        config = TINY.replace(init=str(path))
    elif case == "a missing network":
        config = TINY.replace(init=str(tmp_path / "missing.safetensors"))
    elif case == "empty folder":
        photos = tmp_path
    elif case == "unreadable folder":
        (tmp_path / "a.jpg").write_bytes(b"not a jpeg")
        photos = tmp_path
    elif case == "too few photos":
        Image.fromarray(_smooth_image(0, 40, 40)).save(tmp_path / "only.png")
        photos = tmp_path
    else:
        bad = tmp_path / "style.jpg"
        bad.write_bytes(b"not an image")
        styles = [bad]
    out = tmp_path / "out" / "net.safetensors"
    with pytest.raises(error) as raised:
        train(styles, photos, out, config, StyleConfig())
    assert "\n" not in str(raised.value) and words in str(raised.value).lower()
    assert not out.exists() and not checkpoint_path(out).exists()


def test_cli_trains_and_reports_one_line_errors(files, tmp_path):
    out = tmp_path / "net.safetensors"
    args = ["train", *map(str, files["styles"]), "--photos", str(files["photos"]), "-o", str(out), "--size", "32",
            "--photo-size", "40", "--batch-size", "2", "--steps", "2", "--held-out", "0.25", "--sample-every", "2"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert out.exists() and "wrote" in result.stderr
    loss = json.loads(_tensors(out)[1]["training"])["loss"]  # the training defaults of the loss
    assert (loss["pooling"], loss["content_weight"]) == ("max", 1.0)
    assert (tmp_path / "net.samples" / "step_000002.jpg").exists()
    styled = tmp_path / "styled.png"  # the file works where the fast method runs
    used = CliRunner().invoke(
        app, ["stylize", str(files["photos"] / "p0.png"), "--method", "fast", "--model", str(out), "--builtin-style", "1",
              "--max-size", "48", "-o", str(styled)],
    )  # fmt: skip
    assert used.exit_code == 0, used.output
    again = CliRunner().invoke(app, args)  # an existing output is not replaced
    assert again.exit_code == 6 and len(again.stderr.strip().splitlines()) == 1
    bad = CliRunner().invoke(app, [*args[:-2], "--steps", "0"])
    assert bad.exit_code == 2 and "steps" in bad.stderr and "Traceback" not in bad.output
