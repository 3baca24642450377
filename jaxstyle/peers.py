"""The benchmarked step in PyTorch and TensorFlow, for the side-by-side ratios of `jaxstyle bench --compare`.

Each peer writes the step the way that framework's users do:

* ``torch``: eager PyTorch with channels_last tensors (its fastest CPU layout) and ``torch.optim.Adam``;
* ``tensorflow``: the TensorFlow tutorial's ``train_step``: a ``tf.keras`` VGG19 under ``tf.function``
  with ``tf.keras.optimizers.Adam``.

Both compute the loss `jaxstyle.bench` times, in the TF tutorial's normalisation: VGG19 with max
pooling through block5_conv1, content ``1e4 * mean((F - P)^2)`` on block4_conv2, style
``1e-2 / 5 * sum mean((F^T F / M - A)^2)`` on block1..5_conv1, ``30 *`` L1 total variation, then
Adam(0.02, 0.99, eps 0.1) and a clip to [0, 1]. Batch 1, float32, the same weights and images; one
step per call, as those frameworks run it. With that normalisation the peers' loss equals
jaxstyle's "tf-tutorial" preset, which the tests check.

Neither framework is a dependency. Each peer runs in a child process (``python -m jaxstyle.peers``)
that imports only NumPy and that framework: TensorFlow and jaxlib each bundle their own XLA, and
the child also gets the whole machine to itself, with one thread per core.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PEERS = ("torch", "tensorflow")
_INSTALL = {"torch": "pip install torch", "tensorflow": "pip install tensorflow-cpu"}

# The step's definition, shared by both peers (see the module docstring).
CONTENT_LAYER = "block4_conv2"
STYLE_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1")
CONTENT_WEIGHT, STYLE_WEIGHT, TV_WEIGHT = 1e4, 1e-2, 30.0
ADAM = {"learning_rate": 0.02, "beta_1": 0.99, "beta_2": 0.999, "epsilon": 0.1}
MEAN_BGR = np.array([103.939, 116.779, 123.68], np.float32)
_CONVS = tuple(
    f"block{block}_conv{index}"
    for block, count in ((1, 2), (2, 2), (3, 4), (4, 4), (5, 1))
    for index in range(1, count + 1)
)


@dataclass(frozen=True)
class PeerResult:
    peer: str
    version: str
    height: int
    width: int
    threads: int
    step_ms: float  # median of the timed steps
    first_loss: float  # the loss of the first step, at the content image


class PeerUnavailable(RuntimeError):
    """The peer framework is not installed in this Python."""


def check_peer(peer: str) -> None:
    """Raise `PeerUnavailable` unless this Python can import ``peer`` (checked in a child, like the run)."""
    if peer not in PEERS:
        raise ValueError(f"unknown peer {peer!r}; choose one of {', '.join(PEERS)}")
    if subprocess.run([sys.executable, "-c", f"import {peer}"], capture_output=True, check=False).returncode != 0:
        raise PeerUnavailable(f"{peer} is not installed in {sys.executable} ({_INSTALL[peer]})")


def run_peer(
    peer: str, params, content: np.ndarray, style: np.ndarray, *, steps: int = 10, warmup: int = 2
) -> PeerResult:
    """Time ``steps`` Adam steps of ``peer`` (after ``warmup``) on (H, W, 3) images in [0, 1].

    ``params`` are jaxstyle's VGG19 params (HWIO kernels, Keras/Caffe convention). The image starts
    at ``content``. Raises `PeerUnavailable` if the framework is not installed.
    """
    if peer not in PEERS:
        raise ValueError(f"unknown peer {peer!r}; choose one of {', '.join(PEERS)}")
    with tempfile.TemporaryDirectory(prefix="jaxstyle-peer-") as folder:
        inputs = Path(folder) / "inputs.npz"
        arrays = {
            f"{name}/{part}": np.asarray(params[name][part], np.float32)
            for name in _CONVS
            for part in ("kernel", "bias")
        }
        np.savez(inputs, content=np.asarray(content, np.float32), style=np.asarray(style, np.float32), **arrays)
        child = subprocess.run(
            [sys.executable, "-m", "jaxstyle.peers", peer, str(inputs), str(steps), str(warmup)],
            capture_output=True,
            text=True,
            check=False,
        )
    if child.returncode == 3:
        raise PeerUnavailable(f"{peer} is not installed in {sys.executable} ({_INSTALL[peer]})")
    if child.returncode != 0:
        last = (child.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the {peer} step failed: {last}")
    return PeerResult(**json.loads(child.stdout.strip().splitlines()[-1]))


# --------------------------------------------------------------------------- the child process


def _timed(step, steps: int, warmup: int) -> tuple[float, float]:
    first_loss = float(step())
    for _ in range(max(warmup - 1, 0)):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3, first_loss


def _torch(inputs, threads: int, steps: int, warmup: int) -> tuple[str, float, float]:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    layers = {
        name: (
            torch.from_numpy(inputs[f"{name}/kernel"].transpose(3, 2, 0, 1).copy()).contiguous(
                memory_format=torch.channels_last
            ),
            torch.from_numpy(inputs[f"{name}/bias"]),
        )
        for name in _CONVS
    }
    mean = torch.from_numpy(MEAN_BGR).view(1, 3, 1, 1)

    def features(image):  # (1, 3, H, W) RGB in [0, 1]
        x = (image.flip(1) * 255.0 - mean).contiguous(memory_format=torch.channels_last)
        found = {}
        for name in _CONVS:
            if name.endswith("_conv1") and name != "block1_conv1":
                x = F.max_pool2d(x, 2)
            kernel, bias = layers[name]
            x = F.relu(F.conv2d(x, kernel, bias, padding=1))
            found[name] = x
        return found

    def gram(f):
        _, c, h, w = f.shape
        flat = f.permute(0, 2, 3, 1).reshape(h * w, c)  # a view: channels_last is NHWC in memory
        return flat.T @ flat / (h * w)

    to_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)[None]))
    with torch.no_grad():
        content_target = features(to_tensor(inputs["content"]))[CONTENT_LAYER]
        style_targets = {
            name: gram(f) for name, f in features(to_tensor(inputs["style"])).items() if name in STYLE_LAYERS
        }
    image = to_tensor(inputs["content"]).clone().requires_grad_(True)
    optimizer = torch.optim.Adam(
        [image], lr=ADAM["learning_rate"], betas=(ADAM["beta_1"], ADAM["beta_2"]), eps=ADAM["epsilon"]
    )

    def step():
        optimizer.zero_grad(set_to_none=True)
        f = features(image)
        style = (
            STYLE_WEIGHT
            / len(STYLE_LAYERS)
            * sum(torch.mean((gram(f[n]) - style_targets[n]) ** 2) for n in STYLE_LAYERS)
        )
        content = CONTENT_WEIGHT * torch.mean((f[CONTENT_LAYER] - content_target) ** 2)
        tv = (image[:, :, 1:] - image[:, :, :-1]).abs().sum() + (image[:, :, :, 1:] - image[:, :, :, :-1]).abs().sum()
        loss = style + content + TV_WEIGHT * tv
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            image.clamp_(0.0, 1.0)
        return loss.item()

    return torch.__version__, *_timed(step, steps, warmup)


def _tensorflow(inputs, threads: int, steps: int, warmup: int) -> tuple[str, float, float]:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    vgg = tf.keras.applications.VGG19(include_top=False, weights=None, input_shape=(None, None, 3))
    for name in _CONVS:
        vgg.get_layer(name).set_weights([inputs[f"{name}/kernel"], inputs[f"{name}/bias"]])
    names = (*STYLE_LAYERS, CONTENT_LAYER)
    model = tf.keras.Model([vgg.input], [vgg.get_layer(n).output for n in names])
    model.trainable = False

    def gram(f):
        shape = tf.shape(f)
        return tf.linalg.einsum("bijc,bijd->bcd", f, f) / tf.cast(shape[1] * shape[2], tf.float32)

    def extract(image):  # (1, H, W, 3) RGB in [0, 1]
        outputs = model(tf.keras.applications.vgg19.preprocess_input(image * 255.0))
        found = dict(zip(names, outputs, strict=True))
        return {n: gram(found[n]) for n in STYLE_LAYERS}, found[CONTENT_LAYER]

    style_targets, _ = extract(tf.constant(inputs["style"][None]))
    _, content_target = extract(tf.constant(inputs["content"][None]))
    image = tf.Variable(inputs["content"][None])
    optimizer = tf.keras.optimizers.Adam(**ADAM)

    @tf.function
    def train_step(image):
        with tf.GradientTape() as tape:
            grams, content = extract(image)
            style = (
                STYLE_WEIGHT
                / len(STYLE_LAYERS)
                * tf.add_n([tf.reduce_mean((grams[n] - style_targets[n]) ** 2) for n in STYLE_LAYERS])
            )
            loss = style + CONTENT_WEIGHT * tf.reduce_mean((content - content_target) ** 2)
            loss += TV_WEIGHT * tf.reduce_sum(tf.image.total_variation(image))
        optimizer.apply_gradients([(tape.gradient(loss, image), image)])
        image.assign(tf.clip_by_value(image, 0.0, 1.0))
        return loss

    return tf.__version__, *_timed(lambda: train_step(image).numpy(), steps, warmup)


def _child(argv: list[str]) -> int:
    peer, path, steps, warmup = argv[0], argv[1], int(argv[2]), int(argv[3])
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        __import__("torch" if peer == "torch" else "tensorflow")
    except ImportError:
        return 3
    with np.load(path) as data:
        inputs = {key: data[key] for key in data.files}
    version, step_ms, first_loss = (_torch if peer == "torch" else _tensorflow)(inputs, threads, steps, warmup)
    h, w, _ = inputs["content"].shape
    result = PeerResult(peer, version, h, w, threads, step_ms, first_loss)
    print(json.dumps(result.__dict__))
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
