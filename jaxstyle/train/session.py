"""The JAX side of a training run: the frozen VGG, each style's targets, the network's state, the
jitted step, the samples and the final file (`driver.train` calls these)."""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.config import StyleConfig
from jaxstyle.errors import WeightsError
from jaxstyle.io.resize import resize_long_side, resize_to
from jaxstyle.nets import magenta_weights
from jaxstyle.nets.vgg import prepare_params
from jaxstyle.objective import LossSpec
from jaxstyle.train import loss, network, step
from jaxstyle.train.settings import INIT_CHOICES, TrainConfig
from jaxstyle.weights import load_weights

SAMPLE_PHOTOS = 3  # held-out photos in each sample grid


class Session:
    def __init__(self, style_images, config: TrainConfig, style_config: StyleConfig, vgg_weights=None) -> None:
        self.config, self.style_config = config, style_config
        self.num_styles = len(style_images)
        weights = vgg_weights or load_weights()
        self.spec = LossSpec.from_config(style_config, weights.mean_bgr)
        self.vgg = jax.device_put(prepare_params(weights.params, self.spec.layers))
        self.style_images = style_images
        side = max(16, round(style_config.style_scale * config.photo_size))
        self.targets = loss.stack(
            [
                loss.style_targets(
                    self.vgg,
                    jnp.asarray(resize_long_side(image, side)),
                    jnp.asarray(resize_to(image, config.size, config.size)),
                    self.spec,
                )
                for image in style_images
            ]
        )
        self.optimizer = step.make_optimizer(config.learning_rate, config.steps, config.schedule, config.warmup)
        self.network = network.StyleNetwork(self.num_styles)

    def initial_params(self):
        if self.config.init not in INIT_CHOICES:
            return self._params_of_file(self.config.init)
        if self.config.init == "scratch":
            key = jax.random.key(self.config.seed)
            shape = jnp.zeros((1, self.config.size, self.config.size, 3)), jnp.ones((1, self.num_styles))
            return self.network.init(key, *shape)["params"]
        from jaxstyle.nets.magenta_predictor import resize_style_image, style_vector

        arbitrary = magenta_weights.load_arbitrary()
        images = jnp.stack([resize_style_image(jnp.asarray(image)) for image in self.style_images])
        vectors = np.asarray(style_vector(arbitrary["predictor"], images))
        return jax.tree.map(jnp.asarray, network.from_arbitrary(arbitrary["transformer"], vectors))

    def _params_of_file(self, path: str):
        """A trained network's parameters to continue from; it must have this run's style count."""
        info = magenta_weights.read_trained_info(path)
        if info.num_styles != self.num_styles:
            raise WeightsError(
                f"{path}: a network of {info.num_styles} style(s) cannot start a run of {self.num_styles}; "
                "name as many styles, in its order"
            )
        return magenta_weights.load_trained(path)["transformer"]

    def initial_state(self):
        return step.create_state(self.initial_params(), self.num_styles, self.optimizer)

    def step(self, state, crops: np.ndarray, style_ids: np.ndarray):
        state, terms = step.train_step(
            state, self.vgg, jnp.asarray(crops), jnp.asarray(style_ids), self.targets, self.spec
        )
        return state, {key: float(value) for key, value in jax.device_get(terms).items()}

    def sample(self, state, photos, output: Path, at_step: int):
        """A grid of held-out photos (rows: the photo, then each style) at the crop size, written
        beside ``output``; and the mean loss terms of those outputs."""
        from jaxstyle.io.decode import load_image
        from jaxstyle.io.encode import save_image

        size = self.config.size
        crops = np.stack([_centre_square(load_image(p).rgb, size) for p in list(photos)[:SAMPLE_PHOTOS]])
        count = len(crops)
        repeated = np.repeat(crops, self.num_styles, axis=0)
        ids = np.tile(np.arange(self.num_styles, dtype=np.int32), count)
        outputs, terms = _evaluate(
            state.params, self.num_styles, self.vgg, jnp.asarray(repeated), jnp.asarray(ids), self.targets, self.spec
        )
        outputs = np.asarray(outputs).reshape(count, self.num_styles, size, size, 3)
        rows = [np.concatenate([crops[i], *outputs[i]], axis=1) for i in range(count)]
        folder = output.with_name(f"{output.stem}.samples")
        folder.mkdir(parents=True, exist_ok=True)
        path = save_image(folder / f"step_{at_step:06d}.jpg", np.concatenate(rows, axis=0), overwrite=True)
        return path, {key: float(value) for key, value in jax.device_get(terms).items()}

    def write(self, output: Path, state, styles, training: dict, *, overwrite: bool) -> Path:
        params = {"transformer": jax.device_get(state.params)}
        return magenta_weights.save_trained(output, params, styles, training, overwrite=overwrite)


@functools.partial(jax.jit, static_argnames=("num_styles", "spec"))
def _evaluate(params, num_styles, vgg, crops, style_ids, targets, spec):
    weights = jax.nn.one_hot(style_ids, num_styles, dtype=jnp.float32)
    outputs = network.StyleNetwork(num_styles).apply({"params": params}, crops, weights)
    total, terms = loss.batch_loss(vgg, outputs, crops, targets, style_ids, spec)
    return outputs, {**terms, "total": total}


def _centre_square(image: np.ndarray, size: int) -> np.ndarray:
    h, w = image.shape[:2]
    scale = size / min(h, w)
    image = resize_to(image, max(size, round(h * scale)), max(size, round(w * scale)))
    h, w = image.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return image[top : top + size, left : left + size]
