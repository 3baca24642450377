"""The jit-compiled optimisation step (Adam or L-BFGS) and the loop that drives it.

Design notes (the measurements behind them are in docs/performance.md):

* The step is one jitted function of ``(params, image, opt_state, targets)``, the ``step`` of a
  `Stepper`; a batch vmaps the stepper where it makes the batch (`batched`). Everything that changes
  between runs of the same shape (images, targets, learning rate) is an argument, so there is no
  recompilation across iterations, scales of the same shape, or batches of the same bucket. Loss
  settings are a hashable `LossSpec` passed as a static argument.
* L-BFGS is the two-loop direction with a fixed step (as jcjohnson/neural-style runs torch's
  L-BFGS without line search), guarded against bad curvature pairs (`jaxstyle.lbfgs`).
  ``optax.lbfgs``' zoom line search re-evaluates the VGG inside ``lax.while_loop``, where XLA:CPU
  runs the same forward/backward several times slower than at the top level of a jit; here the one forward/backward per iteration stays at the top level and L-BFGS costs
  about one Adam step. Divergence is caught by the driver (below) instead of a line search.
* The driver runs the steps between two progress reports (``report_every``) as one dispatch of a
  ``lax.scan`` over the step, so Python and the host sync only to report; on CPU that is faster
  than one dispatch per step, once the block1 kernels are not re-flipped inside the loop
  (`vgg.prepare_params`).
* A non-finite loss restores the last good state and halves the learning rate; after a few tries
  the run stops with `NumericalError` rather than producing a black image.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxstyle import losses
from jaxstyle.config import StyleConfig
from jaxstyle.errors import NumericalError, UsageError
from jaxstyle.lbfgs import scale_by_guarded_lbfgs
from jaxstyle.nets.vgg import KERAS_MEAN_BGR, preprocess, vgg19_features
from jaxstyle.nets.vgg_layers import receptive_field, stride_of

MAX_RECOVERIES = 4  # halvings of the learning rate before a run gives up on NaN/inf


@dataclass(frozen=True)
class LossSpec:
    """The static (hashable) part of the loss: which layers, which weights, which statistic."""

    content_layers: tuple[str, ...]
    content_weight: float
    style_layers: tuple[str, ...]
    style_layer_weights: tuple[float, ...]
    style_weight: float
    style_statistic: str
    tv_weight: float
    tv_kind: str
    pooling: str
    temporal_weight: float = 0.0  # used where the targets hold a "temporal" reference (video)
    mean_bgr: tuple[float, float, float] = KERAS_MEAN_BGR
    precision: str = "float32"
    loss_units: str = "ratio"  # "ratio": each layer's loss over its value at the inputs (`input_norms`)

    @property
    def layers(self) -> tuple[str, ...]:
        """Every VGG layer the loss reads."""
        return self.content_layers + self.style_layers

    @classmethod
    def from_config(cls, config: StyleConfig, mean_bgr=KERAS_MEAN_BGR) -> LossSpec:
        content_layers = config.content_layers if config.content_weight > 0 else ()
        return cls(
            content_layers=tuple(content_layers),
            content_weight=float(config.content_weight),
            style_layers=tuple(config.style_layers),
            style_layer_weights=tuple(float(w) for w in config.resolved_style_layer_weights),
            style_weight=float(config.resolved_style_weight),
            style_statistic=config.style_statistic,
            tv_weight=float(config.tv_weight),
            tv_kind=config.tv_kind,
            pooling=config.pooling,
            temporal_weight=float(config.resolved_temporal_weight),
            mean_bgr=tuple(float(v) for v in mean_bgr),
            precision=config.precision,
            loss_units=config.loss_units,
        )


@dataclass(frozen=True)
class OptimizerSpec:
    """The static part of the optimiser; the learning rate lives in its state (injected)."""

    name: str
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    memory: int = 10
    clip: bool = True

    @classmethod
    def from_config(cls, config: StyleConfig) -> OptimizerSpec:
        return cls(
            name=config.optimizer,
            b1=config.adam_b1,
            b2=config.adam_b2,
            eps=config.adam_eps,
            memory=config.lbfgs_memory,
            # Clipping L-BFGS iterates too (a projected quasi-Newton step): the pairs are then taken
            # between the clipped points, still true secant pairs, and bad ones are skipped by the
            # curvature guard. Unclipped, L-BFGS images drift to about [-0.6, 1.9] and the final clip
            # throws away much of the progress.
            clip=config.clip,
        )


def _lbfgs_fixed_step(learning_rate, memory_size: int) -> optax.GradientTransformation:
    return optax.chain(scale_by_guarded_lbfgs(memory_size=memory_size), optax.scale_by_learning_rate(learning_rate))


def make_optimizer(spec: OptimizerSpec, learning_rate: float) -> optax.GradientTransformation:
    """optax transformation with the learning rate injected into its state (changeable without retracing)."""
    if spec.name == "adam":
        return optax.inject_hyperparams(optax.adam, static_args=("b1", "b2", "eps"))(
            learning_rate=learning_rate, b1=spec.b1, b2=spec.b2, eps=spec.eps
        )
    return optax.inject_hyperparams(_lbfgs_fixed_step, static_args=("memory_size",))(
        learning_rate=learning_rate, memory_size=spec.memory
    )


def _features(params, image: jax.Array, layers, spec: LossSpec) -> dict[str, jax.Array]:
    """VGG features of one (H, W, 3) image in [0, 1], each (h, w, C), float32 whatever the precision."""
    batch = preprocess(image, spec.mean_bgr)[None].astype(spec.precision)
    features = vgg19_features(params, batch, layers, pooling=spec.pooling)
    return {name: value[0].astype(jnp.float32) for name, value in features.items()}


def _directions(channels: int, layer_index: int) -> jax.Array:
    """Fixed random orthonormal (C, C) projection directions for the sliced Wasserstein loss."""
    key = jax.random.fold_in(jax.random.key(1234), layer_index)
    q, _ = jnp.linalg.qr(jax.random.normal(key, (channels, channels)))
    return q


def _direct(params) -> dict[str, dict[str, jax.Array]]:
    """Only the kernels and biases of `vgg.prepare_params` output, so that the VGG runs on ``lax.conv``.

    The target passes run once per scale, forward only: there compilation is what costs, and the
    ``lax.conv`` program compiles several times faster than the Winograd one (docs/performance.md);
    the Gram targets agree to 1.5e-6 relative.
    """
    return {name: {"kernel": layer["kernel"], "bias": layer["bias"]} for name, layer in params.items()}


@functools.partial(jax.jit, static_argnames=("spec",))
def content_targets(params, content: jax.Array, spec: LossSpec) -> dict[str, jax.Array]:
    """Content features of an (H, W, 3) image at ``spec.content_layers``."""
    return _features(_direct(params), content, spec.content_layers, spec)


@functools.partial(jax.jit, static_argnames=("spec", "shape"))
def style_targets(params, style: jax.Array, spec: LossSpec, shape: tuple[int, int]) -> dict[str, jax.Array]:
    """Style statistics of one (h, w, 3) style image for an output of ``shape`` (H, W).

    Gram matrices do not depend on the output size; sliced Wasserstein targets are resampled to
    the number of positions each layer has at the output size (found by a shape-only trace).
    """
    params = _direct(params)
    features = _features(params, style, spec.style_layers, spec)
    if spec.style_statistic == "gram":
        return {name: losses.gram_matrix(value) for name, value in features.items()}
    out_shapes = jax.eval_shape(lambda: _features(params, jnp.zeros((*shape, 3), style.dtype), spec.style_layers, spec))
    targets = {}
    for index, (name, value) in enumerate(features.items()):
        h, w, c = out_shapes[name].shape
        targets[name] = losses.sorted_projections(value, _directions(c, index), h * w)
    return targets


def _core_mask(value: jax.Array, name: str, box: jax.Array) -> jax.Array:
    """(h, w, 1) 1.0 at the positions of a layer's ``value`` inside ``box`` (top, bottom, left,
    right in window pixels), 0.0 elsewhere."""
    stride = stride_of(name)
    rows, cols = jnp.arange(value.shape[0]) * stride, jnp.arange(value.shape[1]) * stride
    inside = ((rows >= box[0]) & (rows < box[1]))[:, None] & ((cols >= box[2]) & (cols < box[3]))[None, :]
    return inside[..., None].astype(value.dtype)


@functools.partial(jax.jit, static_argnames=("spec",))
def _window_gram_sums(params, window: jax.Array, box: jax.Array, spec: LossSpec):
    """Per style layer, the unnormalised Gram ``F^T F`` and position count of the core ``box``
    (top, bottom, left, right in window pixels) of one window of a style image."""
    features = _features(_direct(params), window, spec.style_layers, spec)
    sums = {}
    for name, value in features.items():
        inside = _core_mask(value, name, box)
        flat = (inside * value).reshape(-1, value.shape[-1])
        sums[name] = (jnp.matmul(flat.T, flat, precision=jax.lax.Precision.HIGHEST), jnp.sum(inside))
    return sums


@functools.partial(jax.jit, static_argnames=("spec",))
def _window_content_sums(params, window: jax.Array, reference: jax.Array, box: jax.Array, spec: LossSpec):
    """Per content layer, the sum of squared feature differences between two images' windows in
    the core ``box``, and the number of elements summed."""
    params = _direct(params)
    ours, theirs = (_features(params, image, spec.content_layers, spec) for image in (window, reference))
    sums = {}
    for name, value in ours.items():
        inside = _core_mask(value, name, box)
        sums[name] = (jnp.sum(inside * jnp.square(value - theirs[name])), jnp.sum(inside) * value.shape[-1])
    return sums


def _halo_crops(shape: tuple[int, int], layers: tuple[str, ...], window: int):
    """``(rows, cols, box)`` of the windows that cover an image of ``shape`` in disjoint cores, with
    a halo of ``layers``' receptive field (`jaxstyle.tiling.halo_windows`)."""
    from jaxstyle.tiling import halo_windows

    field, _ = receptive_field(layers)
    halo = -(-field // 16) * 16
    core = max(16, max(window - 2 * halo, window // 2) // 16 * 16)
    for top, bottom, core_top, core_bottom in halo_windows(shape[0], core, halo, fixed=False):
        for left, right, core_left, core_right in halo_windows(shape[1], core, halo, fixed=False):
            box = jnp.asarray([core_top - top, core_bottom - top, core_left - left, core_right - left])
            yield slice(top, bottom), slice(left, right), box


def gram_targets_tiled(params, style: np.ndarray, spec: LossSpec, window: int) -> dict[str, jax.Array]:
    """The Gram targets of `style_targets` for a style image too large to run whole, computed in
    windows: equal to the whole image's up to float rounding.

    The image is cut into cores (a multiple of 16 pixels, so that every window's poolings fall on
    the whole image's grid); each core runs inside a window with a margin of the deepest style
    layer's receptive field, so its features are exactly the whole image's, and the cores'
    ``F^T F`` sums add up to the whole image's (`jaxstyle.tiling.halo_windows`). Windows are about
    ``window`` pixels a side (more where that leaves cores under half of it); those near the
    borders are clipped, so there are up to four window sizes per axis (up to 16 compilations).
    """
    if spec.style_statistic != "gram":
        raise UsageError("print-size tiles need the Gram style statistic; use --set style_statistic=gram")
    totals: dict[str, list] = {}
    for rows, cols, box in _halo_crops(style.shape[:2], spec.style_layers, window):
        for name, (gram, count) in _window_gram_sums(params, jnp.asarray(style[rows, cols]), box, spec).items():
            total = totals.setdefault(name, [0.0, 0])
            total[0] = total[0] + np.asarray(gram, np.float64)
            total[1] += int(count)
    return {name: jnp.asarray(gram / (count * gram.shape[0]), jnp.float32) for name, (gram, count) in totals.items()}


def layer_losses_tiled(
    params, image: np.ndarray, targets: Mapping[str, Any], content: np.ndarray, spec: LossSpec, window: int
) -> dict[str, Any]:
    """`layer_losses` of an image too large to run whole, in windows (as `gram_targets_tiled`):
    the content layers against the features of ``content``, the style layers against the Gram
    ``targets["style"]``."""
    grams = gram_targets_tiled(params, image, spec, window)
    style = {name: losses.style_loss_of_grams(grams[name], targets["style"][name]) for name in spec.style_layers}
    totals: dict[str, list] = {}
    content_windows = _halo_crops(image.shape[:2], spec.content_layers, window) if spec.content_layers else ()
    for rows, cols, box in content_windows:
        crops = (jnp.asarray(image[rows, cols]), jnp.asarray(content[rows, cols]))
        for name, (total, count) in _window_content_sums(params, *crops, box, spec).items():
            running = totals.setdefault(name, [0.0, 0])
            running[0] += float(total)
            running[1] += int(count)
    return {
        "content": {name: jnp.float32(total / count) for name, (total, count) in totals.items()},
        "style": style,
        "tv": losses.tv_loss(jnp.asarray(image), spec.tv_kind),
    }


def blend_style_targets(per_style: list[dict[str, jax.Array]], blend: tuple[float, ...]) -> dict[str, jax.Array]:
    """Weighted mean of several styles' statistics (Grams; for sliced Wasserstein, the quantile
    functions, whose weighted mean is the 1-D Wasserstein barycentre along each slice)."""
    total = sum(blend)
    return jax.tree.map(lambda *values: sum(w / total * v for w, v in zip(blend, values)), *per_style)


def layer_losses(params, image: jax.Array, targets: Mapping[str, Any], spec: LossSpec) -> dict[str, Any]:
    """Unweighted losses of one (H, W, 3) image: ``{"content": {layer: loss}, "style": {layer:
    loss}, "tv": loss}`` in the units of `jaxstyle.losses`."""
    features = _features(params, image, (*spec.content_layers, *spec.style_layers), spec)
    style = {}
    for index, name in enumerate(spec.style_layers):
        target = targets["style"][name]
        if spec.style_statistic == "gram":
            style[name] = losses.style_loss(features[name], target)
        else:
            style[name] = losses.sliced_wasserstein_loss(features[name], _directions(target.shape[-1], index), target)
    return {
        "content": {
            name: losses.content_loss(features[name], targets["content"][name]) for name in spec.content_layers
        },
        "style": style,
        "tv": losses.tv_loss(image, spec.tv_kind),
    }


# Where an input already matches the other (the content image as its own style), its loss is 0:
# the ratio then only has to stay finite.
NORM_FLOOR = 1e-12


def combine(raw: Mapping[str, Any], norm: Mapping[str, Any], spec: LossSpec) -> dict[str, jax.Array]:
    """Weighted loss terms ``{"content", "style", "tv"}`` from `layer_losses` and `input_norms`,
    and each term's ratio to the inputs (``"content_ratio"``, ...), whatever the units.

    A ratio is the layers' mean (style: weighted by the layer weights) of each layer's loss over
    the same loss at the inputs: content against the style image, style against the content
    image, TV against the style image. 1 is as far as the other input; 0 is a perfect match. In
    ``"ratio"`` units the weights multiply these ratios, so that the balance does not depend on the
    image size or on how large a layer's activations are; in ``"raw"`` units (the peers' presets)
    they multiply the plain sums of `jaxstyle.losses`.
    """
    zero = jnp.zeros((), jnp.float32)
    content_ratio = sum((raw["content"][n] / norm["content"][n] for n in spec.content_layers), start=zero)
    content_ratio = content_ratio / max(1, len(spec.content_layers))
    weights = dict(zip(spec.style_layers, spec.style_layer_weights))
    style_ratio = sum((weights[n] * raw["style"][n] / norm["style"][n] for n in spec.style_layers), start=zero)
    style_ratio = style_ratio / max(sum(weights.values()), NORM_FLOOR)
    ratios = {"content_ratio": content_ratio, "style_ratio": style_ratio, "tv_ratio": raw["tv"] / norm["tv"]}
    if spec.loss_units == "ratio":
        content, style, tv = content_ratio, style_ratio, ratios["tv_ratio"]
    else:
        content = sum(raw["content"].values(), start=zero)
        style = sum((weights[n] * raw["style"][n] for n in spec.style_layers), start=zero)
        tv = raw["tv"]
    return {
        "content": spec.content_weight * content,
        "style": spec.style_weight * style,
        "tv": spec.tv_weight * tv,
        **ratios,
    }


TERMS = ("content", "style", "tv", "temporal")  # what the total sums; the rest of the terms is reporting


def loss_terms(params, image: jax.Array, targets: Mapping[str, Any], spec: LossSpec) -> dict[str, jax.Array]:
    """`combine`'s weighted terms and ratios of one (H, W, 3) image, and ``"temporal"`` where
    ``targets`` has a previous frame (``{"image": (H, W, 3), "mask": (H, W, 1)}``). ``targets`` holds
    the ``"content"`` features, ``"style"`` statistics and the inputs' losses (``"norm"``)."""
    terms = combine(layer_losses(params, image, targets, spec), targets["norm"], spec)
    if "temporal" in targets:
        previous = targets["temporal"]
        terms["temporal"] = spec.temporal_weight * losses.temporal_loss(image, previous["image"], previous["mask"])
    return terms


def total_of(terms: Mapping[str, Any]):
    """What the optimisation minimises: the sum of the `TERMS` present in `loss_terms`."""
    return sum(terms[key] for key in TERMS if key in terms)


def total_loss(params, image, targets, spec: LossSpec):
    terms = loss_terms(params, image, targets, spec)
    return total_of(terms), terms


@functools.partial(jax.jit, static_argnames=("spec",))
def _direct_layer_losses(params, image: jax.Array, targets, spec: LossSpec):
    return layer_losses(_direct(params), image, {"content": targets["content"], "style": targets["style"]}, spec)


@functools.partial(jax.jit, static_argnames=("spec",))
def score(params, image: jax.Array, targets, spec: LossSpec) -> dict[str, jax.Array]:
    """`loss_terms` of a finished (H, W, 3) image and its ``"total"``: what a run records."""
    total, terms = total_loss(_direct(params), image, targets, spec)
    return {**terms, "total": total}


def image_targets(targets: Mapping[str, Any], index: int, style_axis: int | None) -> dict[str, Any]:
    """Image ``index``'s own entries of a batch's ``targets`` (laid out as `batched` maps them):
    everything but shared style targets (``style_axis=None``) has a leading batch axis."""
    return {
        key: value if key == "style" and style_axis is None else jax.tree.map(lambda t: t[index], value)
        for key, value in targets.items()
    }


def score_each(params, images: jax.Array, targets, spec: LossSpec, style_axis: int | None) -> list[dict[str, float]]:
    """`score` of each image of a (B, H, W, 3) batch against its own inputs (``targets`` as the
    `batched` stepper takes them), on the host. One image at a time, through the single-image loss
    program that `whole_norms` has already compiled for this shape, instead of a new vmapped
    program for every batch size."""
    images = np.asarray(images)
    scores = []
    for index in range(images.shape[0]):
        own = image_targets(targets, index, style_axis)
        terms = combine(_direct_layer_losses(params, jnp.asarray(images[index]), own, spec), own["norm"], spec)
        scores.append({key: float(value) for key, value in {**terms, "total": total_of(terms)}.items()})
    return scores


def input_norms(
    measure: Callable[[Any], Mapping[str, Any]], content, references: list, blend: tuple[float, ...]
) -> dict[str, Any]:
    """What `combine` divides by: ``measure`` (`layer_losses` of an image) of the content image for
    the style layers, and of the style images resized to the content's shape (``references``,
    mixed by ``blend``) for the content layers and TV.

    Both inputs are at the output's size, so a ratio means the same at 256 px and at 4096 px:
    how much of the way from one input to the other the result has gone.
    """
    at_content = measure(content)
    at_styles = blend_style_targets([measure(reference) for reference in references], blend)
    norms = {"content": at_styles["content"], "style": at_content["style"], "tv": at_styles["tv"]}
    return jax.tree.map(lambda v: jnp.maximum(jnp.asarray(v, jnp.float32), NORM_FLOOR), norms)


def whole_norms(params, content, references, blend, targets, spec: LossSpec) -> dict[str, Any]:
    """`input_norms` of an image that runs whole; ``targets`` needs its content and style."""
    return input_norms(
        lambda image: _direct_layer_losses(params, jnp.asarray(image), targets, spec), content, references, blend
    )


def step_fn(params, image, opt_state, targets, loss_spec: LossSpec, opt_spec: OptimizerSpec):
    """One un-jitted optimisation step of one (H, W, 3) image; returns (image, opt_state, terms)."""
    (total, terms), grad = jax.value_and_grad(total_loss, argnums=1, has_aux=True)(params, image, targets, loss_spec)
    optimizer = make_optimizer(opt_spec, 1.0)  # the real learning rate is read from opt_state
    updates, opt_state = optimizer.update(grad, opt_state, image)
    image = optax.apply_updates(image, updates)
    if opt_spec.clip:
        image = jnp.clip(image, 0.0, 1.0)
    # A finite loss can still come with a non-finite update (e.g. 0/0 in Adam); report it as a NaN
    # total so that the driver's recovery sees it. One reduction, no host sync.
    total = jnp.where(jnp.all(jnp.isfinite(image)), total, jnp.nan)
    return image, opt_state, {**terms, "total": total}


class Stepper(NamedTuple):
    """One problem's optimisation as a pair of pure functions, as optax pairs ``init``/``update``.

    ``init(image, learning_rate) -> opt_state``;
    ``step(params, image, opt_state, targets) -> (image, opt_state, terms)``.
    A batch is the same pair under ``jax.vmap`` (`batched`), applied where the batch is made.
    """

    init: Callable
    step: Callable


@functools.cache
def make_stepper(loss_spec: LossSpec, opt_spec: OptimizerSpec) -> Stepper:
    """The stepper of one (H, W, 3) image. Cached, so equal specs give the same (hashable) pair
    and the jitted `run_steps` compiles once per shape."""

    def init(image, learning_rate):
        return make_optimizer(opt_spec, learning_rate).init(image)

    def step(params, image, opt_state, targets):
        return step_fn(params, image, opt_state, targets, loss_spec, opt_spec)

    return Stepper(init, step)


@functools.cache
def batched(stepper: Stepper, style_axis: int | None = None) -> Stepper:
    """``stepper`` over a leading batch axis of the image, optimiser state and content targets.

    Style targets are shared by the batch (``style_axis=None``), or per image (``0``): the
    colour-preserving modes recolour the style for every content image. The inputs' losses
    (``"norm"``) are per image.
    """
    return Stepper(
        init=jax.vmap(stepper.init, in_axes=(0, None)),
        step=jax.vmap(stepper.step, in_axes=(None, 0, 0, {"content": 0, "style": style_axis, "norm": 0})),
    )


def run_steps(params, image, opt_state, targets, *, stepper: Stepper, steps: int = 1):
    """``steps`` optimisation steps in one dispatch; terms come back stacked per step (jit-compiled).

    ``image`` and ``opt_state`` are donated: do not use the arrays passed in after the call.
    """
    return jitted_run_steps()(params, image, opt_state, targets, stepper=stepper, steps=steps)


def jitted_run_steps() -> Callable:
    """The jitted `run_steps` for the default backend, e.g. for ``.lower(...).compile()``."""
    return _RUN_STEPS[jax.default_backend() == "cpu"]


def _run_steps(params, image, opt_state, targets, *, stepper: Stepper, steps: int = 1):
    """The traced body of `run_steps` (see there), jitted once per backend kind in `_RUN_STEPS`."""
    if steps == 1:
        image, opt_state, terms = stepper.step(params, image, opt_state, targets)
        return image, opt_state, jax.tree.map(lambda t: t[None], terms)

    def body(carry, _):
        image, opt_state, terms = stepper.step(params, *carry, targets)
        return (image, opt_state), terms

    (image, opt_state), terms = jax.lax.scan(body, (image, opt_state), length=steps)
    return image, opt_state, terms


# On CPU, LLVM -O1 instead of XLA's default -O3 compiles the step ~25% faster (the Winograd tile
# transforms are many small fusions) and runs it as fast: the time is in library GEMMs, not in
# generated loops (measured, docs/performance.md). Other backends keep their defaults.
_CPU_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}
_JIT_ARGS = {"static_argnames": ("stepper", "steps"), "donate_argnames": ("image", "opt_state")}
_RUN_STEPS = {
    True: jax.jit(_run_steps, **_JIT_ARGS, compiler_options=_CPU_COMPILER_OPTIONS),
    False: jax.jit(_run_steps, **_JIT_ARGS),
}


def init_opt_state(image: jax.Array, stepper: Stepper, learning_rate: float):
    state = stepper.init(image, learning_rate)
    # optax may hand out one zeros buffer for several leaves; donation needs distinct buffers.
    state = jax.tree.map(jnp.copy, state)
    if isinstance(image.sharding, jax.sharding.NamedSharding):
        # A batch split over devices: start with the layout the step returns, or the second call
        # would compile again.
        state = jax.device_put(state, image.sharding)
    return state


def set_learning_rate(opt_state, learning_rate):
    hyper = dict(opt_state.hyperparams)
    hyper["learning_rate"] = jnp.full_like(hyper["learning_rate"], learning_rate)
    return opt_state._replace(hyperparams=hyper)


def learning_rate_of(opt_state) -> float:
    return float(np.asarray(opt_state.hyperparams["learning_rate"]).reshape(-1)[0])


@dataclass(frozen=True)
class StepReport:
    """What the driver tells its callback every ``report_every`` iterations."""

    iteration: int  # iterations done at this scale
    iterations: int  # iterations planned at this scale
    losses: dict[str, np.ndarray]  # per-term losses of the iterations since the last report, (n,) or (n, B)
    elapsed: float  # seconds at this scale
    learning_rate: float
    recovered: bool  # a NaN/inf was met and the run stepped back with a lower learning rate
    image: Callable[[], np.ndarray]  # fetches the current image(s) from the device on demand
    converged: bool = False  # the stopping rule ended the run here (`converged`)


def converged(totals: list, config: StyleConfig) -> bool:
    """The stopping rule: has the best total loss improved by less than ``config.stop_tolerance``
    of itself over the last ``config.stop_window`` iterations? A batch (each entry of ``totals``
    an array) stops once every image has: an image may then run longer than it would alone, never
    shorter.

    The best so far rather than the last value, because L-BFGS with a fixed step is not monotone.
    """
    window = config.stop_window
    if config.stop_tolerance <= 0 or len(totals) <= window:
        return False
    values = np.array([np.ravel(total) for total in totals], np.float64)  # (iterations, images)
    before, now = np.min(values[:-window], axis=0), np.min(values, axis=0)
    return bool(np.all(before - now < config.stop_tolerance * np.abs(before)))


class RunResult(NamedTuple):
    image: jax.Array
    history: dict[str, np.ndarray]


@dataclass
class _Checkpoint:
    image: jax.Array
    opt_state: Any
    iteration: int
    history: dict[str, list] = field(default_factory=dict)


def optimise(
    params,
    image: jax.Array,
    targets: Mapping[str, Any],
    config: StyleConfig,
    loss_spec: LossSpec,
    *,
    stepper: Stepper | None = None,
    callback: Callable[[StepReport], None] | None = None,
) -> RunResult:
    """Run ``config.iterations`` steps from ``image``, or fewer where the loss has `converged`;
    returns the final image and the per-term history.

    ``stepper`` is the one-image `make_stepper` of ``loss_spec`` and the config's optimiser by
    default; a batch passes its `batched` stepper (and a leading batch axis on ``image``).
    """
    stepper = stepper or make_stepper(loss_spec, OptimizerSpec.from_config(config))
    learning_rate = config.resolved_learning_rate
    opt_state = init_opt_state(image, stepper, learning_rate)
    history: dict[str, list] = {}
    # The starting point is a safe place to return to; copied because the step donates its buffers.
    good = _Checkpoint(jnp.copy(image), jax.tree.map(jnp.copy, opt_state), 0)
    done, recoveries, start = 0, 0, time.perf_counter()
    stop = False
    while done < config.iterations and not stop:
        # One dispatch per report. `done` is always a multiple of report_every (0, a report, or the
        # good state a recovery went back to): only a run's last dispatch can be shorter, so a shape
        # compiles at most twice.
        steps = min(config.report_every, config.iterations - done)
        image, opt_state, terms = run_steps(params, image, opt_state, targets, stepper=stepper, steps=steps)
        done += steps
        fetched = {k: np.asarray(v) for k, v in terms.items()}
        recovered = not all(np.all(np.isfinite(v)) for v in fetched.values())
        if recovered:
            recoveries += 1
            if recoveries > MAX_RECOVERIES:
                raise NumericalError(
                    f"the loss became NaN/inf {recoveries} times even at learning rate {learning_rate:.3g}; "
                    "try a lower learning rate or lower loss weights"
                )
            learning_rate /= 2
            image, done = jnp.copy(good.image), good.iteration
            opt_state = set_learning_rate(jax.tree.map(jnp.copy, good.opt_state), learning_rate)
            history = {k: list(v) for k, v in good.history.items()}
        else:
            for key, values in fetched.items():
                history.setdefault(key, []).extend(values)
            good = _Checkpoint(
                jnp.copy(image), jax.tree.map(jnp.copy, opt_state), done, {k: list(v) for k, v in history.items()}
            )
            stop = converged(history["total"], config)
        if callback is not None:
            snapshot = good.image  # a copy: `image` itself is donated to the next step
            callback(
                StepReport(
                    iteration=done,
                    iterations=config.iterations,
                    losses=fetched,
                    elapsed=time.perf_counter() - start,
                    learning_rate=learning_rate,
                    recovered=recovered,
                    image=lambda snapshot=snapshot: np.asarray(jnp.clip(snapshot, 0.0, 1.0)),
                    converged=stop,
                )
            )
    return RunResult(jnp.clip(image, 0.0, 1.0), {k: np.asarray(v) for k, v in history.items()})
