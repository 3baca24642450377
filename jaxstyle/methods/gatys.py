"""The optimisation method (Gatys et al. 2015): the image itself is optimised against VGG19 losses.

One image runs coarse to fine (`problem.scale_sizes`), each scale starting from the last one's
result; a batch runs one scale, all images of one bucket in one ``jax.vmap``-ed step
(`optimize.batched`). Losses, the step and its driver are in `jaxstyle.optimize`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle import problem
from jaxstyle.config import StyleConfig
from jaxstyle.errors import UsageError
from jaxstyle.io.image import resize_to
from jaxstyle.methods import BucketProgress, Previous, Warp
from jaxstyle.nets.vgg import prepare_params
from jaxstyle.optimize import (
    LossSpec,
    OptimizerSpec,
    Stepper,
    StepReport,
    batched,
    blend_style_targets,
    content_targets,
    make_stepper,
    optimise,
    style_targets,
)
from jaxstyle.placement import Placement
from jaxstyle.problem import BatchImage, StyleSet
from jaxstyle.weights import VGGWeights, load_weights, weights_digest


@dataclass(frozen=True)
class Progress:
    """One progress report of a single-image run: where it is and the optimiser's step report."""

    scale: int  # 0-based index of the current scale
    num_scales: int
    shape: tuple[int, int]  # (H, W) at this scale
    done: int  # iterations done over all scales
    total: int  # iterations planned over all scales
    report: StepReport

    @property
    def description(self) -> str:
        h, w = self.shape
        return f"scale {self.scale + 1}/{self.num_scales} {w}x{h}"

    @property
    def status(self) -> str:
        report = self.report
        last = {key: float(np.ravel(values)[-1]) for key, values in report.losses.items()}
        rate = report.iteration / report.elapsed if report.elapsed > 0 else 0.0
        text = (
            f"loss {last['total']:.4g} (content {last['content']:.3g} style {last['style']:.3g} "
            f"tv {last['tv']:.3g}) {rate:.2f} it/s"
        )
        if report.recovered:
            text += f" [NaN: retrying at lr {report.learning_rate:.3g}]"
        return text


def estimate_memory_bytes(shape: tuple[int, int], config: StyleConfig) -> int:
    """Rough peak memory of optimising an (H, W) image: VGG activations kept for the backward pass.

    About 3 kB per output pixel plus ~0.9 GB of weights (with the Winograd kernels,
    `vgg.prepare_params`) and runtime, measured on CPU (float32, L-BFGS; docs/performance.md).
    """
    h, w = shape
    per_pixel = 3000 if config.precision == "float32" else 1800
    # The style image only runs forward once (no backward): about a third per pixel.
    style_pixels = h * w * config.style_scale**2 / 3
    return int((h * w + style_pixels) * per_pixel + 0.9 * 2**30)


def available_memory_bytes() -> int | None:
    """Memory this run can use: the accelerator's limit, or MemAvailable on a CPU host."""
    device = jax.devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" and hasattr(device, "memory_stats") else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_memory(shape: tuple[int, int], config: StyleConfig) -> None:
    """Refuse, with the numbers, a size that cannot fit instead of swapping or being OOM-killed."""
    needed, available = estimate_memory_bytes(shape, config), available_memory_bytes()
    if available is not None and needed > available:
        raise UsageError(
            f"a {shape[1]}x{shape[0]} px stylization needs about {needed / 2**30:.1f} GiB of memory but only "
            f"{available / 2**30:.1f} GiB is available; use a smaller --max-size"
        )


@functools.partial(jax.jit, static_argnames=("spec",))
def _batch_content_targets(params, contents: jax.Array, spec: LossSpec) -> dict[str, jax.Array]:
    """Content features of (B, H, W, 3) images, each (B, h, w, C)."""
    return jax.vmap(lambda content: content_targets(params, content, spec))(contents)


class GatysRunner:
    """The VGG19 weights on the devices, the loss and optimiser settings, cached style targets."""

    frame_batch = 1  # each video frame starts from the previous result

    def __init__(
        self,
        config: StyleConfig,
        styles: StyleSet,
        *,
        weights: VGGWeights | None = None,
        devices: Sequence[jax.Device] | None = None,
    ) -> None:
        self.config = config.validate()
        self.styles = styles
        weights = weights or load_weights()
        self.weights_id = weights_digest(weights)
        self.spec = LossSpec.from_config(self.config, weights.mean_bgr)
        self.stepper = make_stepper(self.spec, OptimizerSpec.from_config(self.config))
        self.placement = Placement(devices) if devices is not None else None
        winograd_convs = self.placement.all_cpu if self.placement is not None else None
        params = prepare_params(weights.params, self.spec.layers, winograd_convs=winograd_convs)
        self.params = self.placement.put(params, split=False) if self.placement else jax.device_put(params)
        self._shared_style: dict[tuple, dict[str, jax.Array]] = {}

    def style_targets(self, images: Sequence[np.ndarray], shape: tuple[int, int]) -> dict[str, jax.Array]:
        """The blended style statistics of sized style images (`problem.styles_for`) for ``shape``."""
        per_style = [style_targets(self.params, jnp.asarray(image), self.spec, shape) for image in images]
        return blend_style_targets(per_style, self.styles.weights)

    def stylize(
        self,
        content: np.ndarray,
        *,
        init_image: np.ndarray | None = None,
        callback: Callable[[Progress], None] | None = None,
        previous: Previous | None = None,
    ) -> np.ndarray:
        """Optimise ``content`` coarse to fine; (h, w, 3) float32 with the long side ``max_size``.

        With ``previous`` (a video frame after the first), one scale at the final size, started
        from the previous result where it can be trusted and held near it by Ruder et al.'s
        temporal loss (`jaxstyle.losses.temporal_loss`)."""
        config = self.config
        content = problem.as_rgb(content, "content image")
        sizes = problem.scale_sizes(content.shape[:2], config)
        if previous is not None:
            sizes = sizes[-1:]
        check_memory(sizes[-1], config)
        coarse = config.iterations if config.coarse_iterations is None else config.coarse_iterations
        per_scale = [coarse] * (len(sizes) - 1) + [config.iterations]
        total = sum(per_scale)

        image = resized = None
        for index, shape in enumerate(sizes):
            resized, stylized = problem.content_at(content, shape, config)
            targets = {
                "content": content_targets(self.params, jnp.asarray(stylized), self.spec),
                "style": self.style_targets(problem.styles_for(self.styles, resized, shape, config), shape),
            }
            if previous is not None:
                reference = problem.stylized_colours(previous.image, config)
                mask = previous.mask[..., None]
                targets["temporal"] = {"image": jnp.asarray(reference), "mask": jnp.asarray(mask)}
                start = mask * reference + (1.0 - mask) * problem.initial_image(stylized, config, init_image)
            elif image is None:
                start = problem.initial_image(stylized, config, init_image)
            else:
                start = resize_to(image, *shape)

            def report(step: StepReport, index=index, shape=shape) -> None:
                if callback is not None:
                    done = sum(per_scale[:index]) + step.iteration
                    callback(Progress(index, len(sizes), shape, done, total, step))

            scale_config = config.replace(iterations=per_scale[index])
            result = optimise(
                self.params, jnp.asarray(start, jnp.float32), targets, scale_config, self.spec, callback=report
            )
            image = np.asarray(result.image)
        return problem.finish(image, resized, config)

    def stylize_frames(
        self,
        frames: Sequence[BatchImage],
        last: np.ndarray | None,
        warp: Warp,
        callback: Callable[[Progress], None] | None = None,
    ) -> list[np.ndarray]:
        """Each frame optimised in turn, from and near its predecessor's warped result."""
        if self.config.preserve_color == "knn":
            # The KNN colours come after the optimisation and differ from the optimised image's,
            # so the temporal loss would pull each frame towards colours it cannot reach.
            raise UsageError("--preserve-color knn is not available for videos with --method gatys; use luminance")
        results = []
        for index, frame in enumerate(frames):
            previous = warp(index, last) if last is not None and self.config.resolved_temporal_weight > 0 else None
            last = self.stylize(frame.content, callback=callback, previous=previous)
            results.append(last)
        return results

    def _bucket_style(self, own: tuple[int, int], shape: tuple[int, int]) -> dict[str, jax.Array]:
        """Style targets shared by every image of bucket ``shape``, once per (style side, shape)."""
        key = (problem.style_side(own, self.config), shape)
        if key not in self._shared_style:
            images = problem.styles_for(self.styles, None, own, self.config)
            self._shared_style[key] = self.style_targets(images, shape)
        return self._shared_style[key]

    def device_batch(
        self, shape: tuple[int, int], images: Sequence[BatchImage], size: int
    ) -> tuple[jax.Array, dict, Stepper]:
        """The starting images, targets and stepper of one batch of bucket ``shape``, on the mesh.

        Images, content targets (and per-image style targets) are split along the batch axis over
        the devices; weights and shared style targets are replicated. The batch is filled up to
        ``size`` with copies of the last image.
        """
        if self.placement is None:
            self.placement = Placement()
        placement = self.placement
        if not 0 < len(images) <= size or size % placement.count:
            raise ValueError(f"{len(images)} images for a batch of {size} on {placement.count} devices")
        config = self.config
        padded = [*images, *[images[-1]] * (size - len(images))]
        start = np.stack([problem.pad_to(problem.initial_image(i.stylized, config), shape) for i in padded])
        contents = placement.put(np.stack([problem.pad_to(i.stylized, shape) for i in padded]), split=True)
        targets = {"content": _batch_content_targets(self.params, contents, self.spec)}
        if images[0].styles is not None:
            per_image = [self.style_targets(i.styles, shape) for i in padded]
            targets["style"] = placement.put(jax.tree.map(lambda *v: jnp.stack(v), *per_image), split=True)
            style_axis = 0
        else:
            targets["style"] = self._bucket_style(images[0].size, shape)
            style_axis = None
        return placement.put(start, split=True), targets, batched(self.stepper, style_axis)

    def stylize_bucket(
        self,
        shape: tuple[int, int],
        images: Sequence[BatchImage],
        size: int,
        callback: Callable[[BucketProgress], None] | None = None,
    ) -> list[np.ndarray]:
        """Optimise ``images`` (all of bucket ``shape``) as one batch of ``size`` (`device_batch`);
        the results of the padding copies are dropped."""
        start, targets, stepper = self.device_batch(shape, images, size)

        def report(step: StepReport) -> None:
            if callback is not None:
                callback(BucketProgress(shape, len(images), size, step.iteration, step.iterations, step))

        result = optimise(self.params, start, targets, self.config, self.spec, stepper=stepper, callback=report)
        return problem.finish_batch(np.asarray(result.image), images, self.config)


def setup(config: StyleConfig, styles: StyleSet, *, weights=None, devices=None) -> GatysRunner:
    return GatysRunner(config, styles, weights=weights, devices=devices)
