"""The optimisation method (Gatys et al. 2015): the image itself is optimised against VGG19 losses.

One image runs coarse to fine (`prepare.scale_sizes`), each scale starting from the last one's
result; a batch runs one scale, all images of one bucket in one ``jax.vmap``-ed step
(`step.batched`). The losses and targets are in `jaxstyle.objective` (print sizes: `jaxstyle.windowed`),
the step in `jaxstyle.step`, and its driver in `jaxstyle.optimize`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle import prepare
from jaxstyle.config import StyleConfig
from jaxstyle.errors import MaskError, UsageError
from jaxstyle.io.parts import PartsFolder
from jaxstyle.methods import BucketProgress, Previous, Warp
from jaxstyle.methods.gatys_plan import check_memory, plan_scales
from jaxstyle.methods.gatys_tiles import optimize_tiles
from jaxstyle.nets.magenta import MIN_SIDE as magenta_min_side
from jaxstyle.nets.vgg import prepare_params
from jaxstyle.objective import (
    LossSpec,
    batch_content_targets,
    blend_style_targets,
    content_targets,
    guided_style_targets,
    image_targets,
    make_targets,
    score,
    score_each,
    style_targets,
    whole_norms,
)
from jaxstyle.optimize import StepReport, optimize
from jaxstyle.placement import Placement, memory_budget_bytes
from jaxstyle.prepare import BatchImage, ScaleInput, StyleSet
from jaxstyle.step import OptimizerSpec, Stepper, batched, make_stepper
from jaxstyle.tiling import ScalePlan
from jaxstyle.weights import VGGWeights, load_weights, params_digest


@dataclass(frozen=True)
class Progress:
    """One progress report of a single-image run: where it is and the optimiser's step report."""

    scale: int  # 0-based index of the current scale
    num_scales: int
    shape: tuple[int, int]  # (H, W) at this scale
    done: int  # iterations done over all scales
    total: int  # iterations planned over all scales (a tiled scale counts each tile's)
    report: StepReport | None  # None in the last report, which has the `scores`
    tiles: tuple[int, int] | None = None  # (tiles finished, tiles) of a tiled scale
    # The last report's: the result's loss terms and their ratios to the inputs (`objective.score`).
    scores: dict[str, float] | None = None

    @property
    def description(self) -> str:
        h, w = self.shape
        text = f"scale {self.scale + 1}/{self.num_scales} {w}x{h}"
        return text if self.tiles is None else f"{text} tile {self.tiles[0] + 1}/{self.tiles[1]}"

    @property
    def status(self) -> str:
        if self.scores is not None:
            return (
                f"done: loss {self.scores['total']:.4g}, content ratio {self.scores['content_ratio']:.3f}, "
                f"style ratio {self.scores['style_ratio']:.3f}"
            )
        report = self.report
        last = {key: float(np.ravel(values)[-1]) for key, values in report.losses.items()}
        rate = report.iteration / report.elapsed if report.elapsed > 0 else 0.0
        text = (
            f"loss {last['total']:.4g} (content {last['content']:.3g} style {last['style']:.3g} "
            f"tv {last['tv']:.3g}) {rate:.2f} it/s"
        )
        if report.recovered:
            text += f" [NaN: retrying at lr {report.learning_rate:.3g}]"
        if report.converged:
            text += " [converged]"
        return text


class GatysRunner:
    """The VGG19 weights on the devices, the loss and optimiser settings, cached style targets."""

    frame_batch = 1  # each video frame starts from the previous result
    keeps_parts = True  # finished scales and tiles are worth keeping for a resume

    def __init__(
        self,
        config: StyleConfig,
        styles: StyleSet,
        *,
        weights: VGGWeights | None = None,
        devices: Sequence[jax.Device] | None = None,
    ) -> None:
        if styles.masks is not None and config.loss.style_statistic != "gram":
            raise MaskError(
                "style masks need the Gram style statistic (guided Gram matrices); use --style-statistic gram"
            )
        self.config = config
        self.styles = styles
        weights = weights or load_weights()
        self.weights_id = params_digest(weights.params, separator="/", trailer=repr(tuple(weights.mean_bgr)))
        self.spec = LossSpec.from_config(self.config, weights.mean_bgr)
        self.stepper = make_stepper(self.spec, OptimizerSpec.from_config(self.config))
        self.placement = Placement(devices) if devices is not None else None
        winograd_convs = self.placement.all_cpu if self.placement is not None else None
        params = prepare_params(weights.params, self.spec.layers, winograd_convs=winograd_convs)
        self.params = self.placement.put(params, split=False) if self.placement else jax.device_put(params)
        self._shared_style: dict[tuple, dict[str, jax.Array]] = {}
        self._fast = None  # the feed-forward method, for init="fast"

    def style_targets(self, images: Sequence[np.ndarray], shape: tuple[int, int]) -> dict[str, jax.Array]:
        """The blended style statistics of sized style images (`prepare.styles_for`) for ``shape``."""
        per_style = [style_targets(self.params, jnp.asarray(image), self.spec, shape) for image in images]
        return blend_style_targets(per_style, self.styles.weights)

    @property
    def regions(self) -> int:
        """The guided Grams' regions (the styles and the photo's share) with style masks, else 0."""
        return 0 if self.styles.masks is None else len(self.styles.masks) + 1

    def scale_style(self, inputs: ScaleInput) -> dict:
        """The style targets of one image's ``inputs``: the blended style statistics, or with style
        masks the guided Grams of each region (`objective.guided_style_targets`)."""
        shape = inputs.content.shape[:2]
        if inputs.guides is None:
            return self.style_targets(inputs.styles, shape)
        return guided_style_targets(
            self.params, inputs.content, inputs.styles, inputs.regions, inputs.guides, self.spec
        )

    def bucket(self, shape: tuple[int, int]) -> tuple[int, int]:
        """Every own size is its own compiled shape: padding would change what VGG sees."""
        return shape

    def warm_up(self, shapes: Sequence[tuple[int, int]]) -> None:
        """Nothing ahead of time: each scale compiles its step when it starts."""

    def plan(self, content_shape: tuple[int, int]) -> list[ScalePlan]:
        """The scales `stylize` runs for content of ``content_shape``, whole or tiled (`plan_scales`)."""
        return plan_scales(content_shape, self.config, memory_budget_bytes(self.config), self.regions)

    def stylize(
        self,
        content: np.ndarray,
        *,
        init_image: np.ndarray | None = None,
        callback: Callable[[Progress], None] | None = None,
        previous: Previous | None = None,
        parts: PartsFolder | None = None,
        plans: Sequence[ScalePlan] | None = None,
    ) -> np.ndarray:
        """Optimise ``content`` (float32 RGB in [0, 1], as `prepare.as_rgb` gives it: the input
        checks are `stylization.stylize`'s) coarse to fine; (h, w, 3) float32 with the long side
        ``max_size``.

        Scales too large for the memory budget run in tiles (`plan_scales`, `_optimize_tiles`).
        ``parts``: where finished scales and tiles are kept, so that a stopped run resumes; its
        settings must cover ``plans`` (`plan` by default), which a resume must run again.

        With ``previous`` (a video frame after the first), one scale at the final size, started
        from the previous result where it can be trusted and held near it by Ruder et al.'s
        temporal loss (`jaxstyle.losses.temporal_loss`)."""
        config = self.config
        plans = list(plans or self.plan(content.shape[:2]))
        if previous is not None:  # a video frame: one whole scale
            plans = [ScalePlan(plans[-1].shape, plans[-1].needed)]
            check_memory(plans[0].shape, config, self.regions)
        coarse = (
            config.optimize.iterations
            if config.optimize.coarse_iterations is None
            else config.optimize.coarse_iterations
        )
        per_scale = [coarse] * (len(plans) - 1) + [config.optimize.iterations]
        total = sum(n * plan.count for n, plan in zip(per_scale, plans))

        image = inputs = scores = None
        for index, plan in enumerate(plans):
            shape, before = plan.shape, sum(n * p.count for n, p in zip(per_scale[:index], plans))
            # (the last scale is the result, never kept in ``parts``: `inputs` is always its own)
            saved = parts.load_array(f"scale{index}.npy", (*shape, 3)) if parts is not None else None
            if saved is not None:
                image = saved
                continue
            if index == 0 and config.optimize.init == "fast":  # a video frame's too: its newly seen parts
                init_image = self.fast_start(content, shape)
            inputs = prepare.scale_input(content, self.styles, shape, config, init_image=init_image, coarser=image)
            temporal = None
            if previous is not None:
                reference = prepare.working_colours(previous.image, config)
                mask = previous.mask[..., None]
                inputs = dataclasses.replace(inputs, start=mask * reference + (1.0 - mask) * inputs.start)
                temporal = {"image": jnp.asarray(reference), "mask": jnp.asarray(mask)}

            def report(step: StepReport, index=index, shape=shape, before=before, tiles=None) -> None:
                if callback is not None:
                    done = (
                        before
                        + step.iteration * (1 if tiles is None else tiles[2])
                        + (tiles or (0,))[0] * (per_scale[index])
                    )
                    callback(Progress(index, len(plans), shape, done, total, step, tiles and tiles[:2]))

            scale_config = config.replace(iterations=per_scale[index])
            last = index == len(plans) - 1
            if plan.tiled:
                image, scores = optimize_tiles(
                    self, plan, inputs, scale_config, report, parts, index, scores=last and callback is not None
                )
            else:
                image, scores = self._optimize_whole(
                    inputs, scale_config, report, temporal, scores=last and callback is not None
                )
            if parts is not None and index < len(plans) - 1:
                parts.save_array(f"scale{index}.npy", image)
        if callback is not None and scores is not None:
            final = {key: float(value) for key, value in scores.items()}
            callback(Progress(len(plans) - 1, len(plans), plans[-1].shape, total, total, None, scores=final))
        return prepare.finish(image, inputs.original, config)

    def _optimize_whole(self, inputs: ScaleInput, config, report, temporal=None, scores=False):
        """One scale optimised whole: the image, and with ``scores`` its `objective.score` (else
        None). ``temporal``: a video frame's warped predecessor, which the temporal loss holds it near."""
        features = content_targets(self.params, jnp.asarray(inputs.content), self.spec)
        style = self.scale_style(inputs)
        targets = make_targets(features, style, self._norms(inputs, make_targets(features, style)), temporal)
        start = jnp.asarray(inputs.start, jnp.float32)
        image = np.asarray(optimize(self.params, start, targets, config, self.spec, callback=report).image)
        return image, score(self.params, jnp.asarray(image), targets, self.spec) if scores else None

    def _norms(self, inputs: ScaleInput, targets: dict) -> dict[str, jax.Array]:
        """The inputs' own losses (`objective.whole_norms`) of an image that runs whole, against the
        content and style of its ``targets``: what every term of its loss is a ratio to."""
        return whole_norms(self.params, inputs.content, inputs.references, self.styles.weights, targets, self.spec)

    def fast_start(self, content: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """``init="fast"``: the feed-forward method's stylization of ``content`` at ``shape``, with the
        same styles and colour mode (Magenta's embedded arbitrary-style network). The optimisation
        then refines a picture that is already styled instead of painting over the photo."""
        from jaxstyle.methods.fast import FastRunner

        if self._fast is None:
            # The colours only as the optimisation will see them (KNN would be wasted on a start).
            colours = self.config.preserve_color if self.config.preserve_color != "knn" else "none"
            fast = self.config.replace(
                method="fast", init="content", tile_size=None, temporal_weight=None, preserve_color=colours
            )
            self._fast = FastRunner(fast, self.styles)
        # The network needs 32 px a side; a smaller coarse scale gets a larger picture, resized.
        # (From the content's own aspect: the scale's sides are rounded.)
        long, short = max(content.shape[:2]), max(1, min(content.shape[:2]))
        side = max(max(shape), math.ceil(long * magenta_min_side / short))
        self._fast.config = self._fast.config.replace(max_size=side)
        return self._fast.stylize(content)

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
        check_memory(frames[0].size, self.config, self.regions)  # every frame, the first one included, runs whole
        results = []
        for index, frame in enumerate(frames):
            previous = warp(index, last) if last is not None and self.config.resolved_temporal_weight > 0 else None
            whole = [ScalePlan(plan.shape, plan.needed) for plan in self.plan(frame.size)]
            last = self.stylize(frame.original, callback=callback, previous=previous, plans=whole)
            results.append(last)
        return results

    def _bucket_style(self, own: tuple[int, int], shape: tuple[int, int], styles) -> dict[str, jax.Array]:
        """Style targets shared by every image of bucket ``shape``, once per (style side, shape):
        of ``styles``, the style images sized for an image of own size ``own``."""
        key = (prepare.style_side(own, self.config), shape)
        if key not in self._shared_style:
            self._shared_style[key] = self.style_targets(styles, shape)
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
        fast = [self.fast_start(i.original, i.size) if config.optimize.init == "fast" else None for i in images]
        inputs = [prepare.batch_scale_input(i, self.styles, shape, config, f) for i, f in zip(images, fast)]
        inputs += inputs[-1:] * (size - len(images))
        contents = placement.put(np.stack([own.content for own in inputs]), split=True)
        features = batch_content_targets(self.params, contents, self.spec)
        style_axis = _style_axis(images)
        if style_axis == 0:
            per_image = [self.scale_style(own) for own in inputs]
            style = placement.put(jax.tree.map(lambda *v: jnp.stack(v), *per_image), split=True)
        else:
            style = self._bucket_style(images[0].size, shape, inputs[0].styles)
        shared = make_targets(features, style)
        # each image against its own inputs, at the bucket's shape
        norms = [self._norms(own, image_targets(shared, index, style_axis)) for index, own in enumerate(inputs)]
        targets = make_targets(
            features, style, placement.put(jax.tree.map(lambda *v: jnp.stack(v), *norms), split=True)
        )
        start = placement.put(np.stack([own.start for own in inputs]), split=True)
        return start, targets, batched(self.stepper, style_axis)

    def stylize_bucket(
        self,
        shape: tuple[int, int],
        images: Sequence[BatchImage],
        size: int,
        callback: Callable[[BucketProgress], None] | None = None,
    ) -> list[np.ndarray]:
        """Optimise ``images`` (all of bucket ``shape``) as one batch of ``size`` (`device_batch`);
        the results of the padding copies are dropped. The last report has each image's scores."""
        start, targets, stepper = self.device_batch(shape, images, size)

        def report(step: StepReport) -> None:
            if callback is not None:
                callback(BucketProgress(shape, len(images), size, step.iteration, step.iterations, step))

        result = optimize(self.params, start, targets, self.config, self.spec, stepper=stepper, callback=report)
        results = np.asarray(result.image)
        if callback is not None:
            scores = score_each(self.params, results[: len(images)], targets, self.spec, _style_axis(images))
            done = len(result.history["total"])
            keyed = tuple((image.key, own) for image, own in zip(images, scores))
            callback(BucketProgress(shape, len(images), size, done, done, None, scores=keyed))
        return prepare.finish_batch(results, images, self.config)


def _style_axis(images: Sequence[BatchImage]) -> int | None:
    """The batch axis of a batch's style targets: 0 where each image has its own recoloured
    styles (the colour-preserving modes) or its own guides and photo statistics (style masks),
    None where the batch shares them."""
    return 0 if images[0].styles is not None or images[0].guides is not None else None


def setup(config: StyleConfig, styles: StyleSet, *, weights=None, devices=None) -> GatysRunner:
    return GatysRunner(config, styles, weights=weights, devices=devices)
