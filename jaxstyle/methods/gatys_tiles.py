"""One scale of the optimisation in overlapping tiles (print sizes), under the whole image's
statistics: `optimize_tiles`, used by `jaxstyle.methods.gatys.GatysRunner`."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle import losses
from jaxstyle.objective import (
    LossSpec,
    batch_content_targets,
    blend_style_targets,
    input_norms,
    layer_guides,
    make_targets,
    style_targets,
    total_of,
    weighted_terms,
)
from jaxstyle.optimize import optimize
from jaxstyle.prepare import ScaleInput
from jaxstyle.step import OptimizerSpec, batched, make_stepper
from jaxstyle.windowed import gram_targets_tiled, guided_targets_tiled, layer_losses_tiled, window_guided_sums


def optimize_tiles(runner, plan, inputs: ScaleInput, config, report, parts, scale, scores=False):
    """One scale of ``runner`` (a `GatysRunner`) in overlapping tiles under the whole style image's
    statistics: the image, and with ``scores`` its `objective.score` (computed in windows; else None).

    Each tile optimises the *whole-image* loss with the rest of the image held fixed. Its
    content term is its own, weighted by its share ``s`` of the image (the content loss is a
    mean, so each pixel keeps the gradient it has in the whole-image loss; TV is a sum and needs
    no weight). Its style term is the whole image's Gram loss ``mean((G - A)^2)`` with
    ``G = s G_tile + (1 - s) G_rest``: the rest's Gram ``G_rest`` is frozen at what the image is
    when the tile starts (the whole current image's Grams, computed exactly in windows by
    `windowed.gram_targets_tiled`, less the tile's own). That is the plain Gram loss of the tile
    against the target ``G_tile_start + (A - G_whole) / s`` with weight ``s^2``, so the loss
    code is unchanged. A tile aiming at the global Grams itself (each tile a small copy of the
    style's statistics) came out 49 % further from the style than the untiled run at 1024 px
    (benchmarks/highres_tiles.py), because every region then had to carry all of the style.

    With style masks (``inputs.guides``) the share differs per region and may be ~0 in a tile, so
    instead of dividing by it the tile's target holds the rest itself: each region's guided Gram
    is the tile's guided sums over the whole image's ``count`` plus the frozen ``rest``
    (`objective.guided_layer_loss`), the whole image's loss with its own weight.

    The tiles run in `TilePlan.groups`: a group's tiles do not overlap and run as vmapped
    batches; each tile starts from the tiles finished before it where they overlap it (faded
    in by their blending weights), and the blend of all (`TilePlan.weights`, summing to 1) is
    the result. Finished tiles go to ``parts``. The inputs' losses, which every term is measured
    against, are the whole image's, computed in windows (`windowed.layer_losses_tiled`).
    """
    params, guides = runner.params, inputs.guides
    tiles = plan.tiles()
    th, tw = tiles.tile
    share = th * tw / (plan.shape[0] * plan.shape[1])
    loss = runner.spec.settings.replace(
        content_weight=runner.spec.content_weight * share,
        style_weight=runner.spec.style_weight * (1.0 if guides is not None else share**2),
    )
    spec = dataclasses.replace(runner.spec, settings=loss)
    stepper = batched(make_stepper(spec, OptimizerSpec.from_config(config)), 0)
    gram_window = max(tiles.tile)
    if guides is None:
        style = blend_style_targets(
            [gram_targets_tiled(params, image, spec, gram_window) for image in inputs.styles], runner.styles.weights
        )
    else:
        style = guided_targets_tiled(params, inputs.content, inputs.styles, inputs.regions, guides, spec, gram_window)

    def measure(image):
        return layer_losses_tiled(
            params, np.asarray(image), {"style": style}, inputs.content, spec, gram_window, guides
        )

    norm = input_norms(measure, inputs.content, inputs.references, runner.styles.weights)
    blended = np.zeros((*plan.shape, 3), np.float32)
    covered = np.zeros((*plan.shape, 1), np.float32)
    finished = 0
    for group in tiles.groups():
        results = {}
        todo = []
        for window in group:
            name = f"scale{scale}_tile{window.index:04d}.npy"
            saved = parts.load_array(name, (*tiles.tile, 3)) if parts is not None else None
            if saved is not None:
                results[window.index] = saved
                finished += 1
            else:
                todo.append(window)
        if todo:  # the whole image as it is now: where the tile targets start from
            canvas = blended + (1.0 - covered) * inputs.start
            current = gram_targets_tiled(params, canvas, spec, gram_window, guides)
            if guides is None:
                residual = jax.tree.map(lambda a, g: (a - g) / share, style, current)
        for first in range(0, len(todo), plan.batch):
            chunk = todo[first : first + plan.batch]
            starts = []
            for window in chunk:
                # What the finished tiles made, faded into the scale's start with their own
                # feathered weights: a hard switch where their windows end would be a seam.
                done = tiles.crop(covered, window)
                starts.append(tiles.crop(blended, window) + (1.0 - done) * tiles.crop(inputs.start, window))
            contents = jnp.asarray(np.stack([tiles.crop(inputs.content, window) for window in chunk]))
            if guides is None:
                tile_style = _tile_styles(params, starts, residual, spec, tiles.tile)
            else:
                crops = [tiles.crop(guides, window) for window in chunk]
                tile_style = _guided_tile_styles(params, starts, crops, style, current, guides, spec)
            targets = make_targets(
                batch_content_targets(params, contents, spec),
                tile_style,
                jax.tree.map(lambda *v: jnp.stack(v), *[norm] * len(chunk)),
            )

            def tile_report(step, chunk=chunk, finished=finished):
                report(step, tiles=(finished, tiles.count, len(chunk)))

            result = optimize(
                params,
                jnp.asarray(np.stack(starts), jnp.float32),
                targets,
                config,
                spec,
                stepper=stepper,
                callback=tile_report,
            )
            for window, image in zip(chunk, np.asarray(result.image)):
                results[window.index] = image
                if parts is not None:
                    parts.save_array(f"scale{scale}_tile{window.index:04d}.npy", image)
            finished += len(chunk)
        for window in group:
            weights = tiles.weights(window)[..., None]
            top, left = window.top, window.left
            blended[top : top + th, left : left + tw] += weights * results[window.index]
            covered[top : top + th, left : left + tw] += weights
    if not scores:
        return blended, None
    terms = weighted_terms(measure(blended), norm, runner.spec)
    return blended, {**terms, "total": total_of(terms)}


def _tile_styles(params, starts, residual, spec: LossSpec, tile: tuple[int, int]) -> dict:
    """A batch of tiles' style targets (`optimize_tiles`): each tile's Grams where it starts plus
    the ``residual`` the rest of the image leaves it."""
    own = [style_targets(params, jnp.asarray(image), spec, tile) for image in starts]
    return jax.tree.map(lambda r, *g: jnp.stack([gram + r for gram in g]), residual, *own)


def _guided_tile_styles(params, starts, crops, style, current, guides, spec: LossSpec) -> dict:
    """A batch of tiles' style targets under style masks (`optimize_tiles`): the whole image's
    ``style`` targets and region weights, each tile's guide (``crops`` of the whole (H, W, R)
    ``guides``, pooled on the tile's own grid, as its features are), the whole image's ``count``,
    and the ``rest``: the ``current`` whole image's guided Grams less the tile's own part of them
    where it starts."""
    counts = {
        name: np.maximum(np.sum(np.square(g, dtype=np.float64), axis=(0, 1)), losses.EMPTY_REGION).astype(np.float32)
        for name, g in layer_guides(guides, spec.style_layers).items()
    }
    per_tile = []
    for image, crop in zip(starts, crops):
        own = {name: jnp.asarray(g) for name, g in layer_guides(crop, spec.style_layers).items()}
        box = jnp.asarray([0, crop.shape[0], 0, crop.shape[1]])
        sums = window_guided_sums(params, jnp.asarray(image), own, box, spec)
        per_tile.append(
            {
                name: {
                    "gram": style[name]["gram"],
                    "guide": own[name],
                    "weight": style[name]["weight"],
                    "count": jnp.asarray(counts[name]),
                    "rest": current[name] - sums[name][0] / (sums[name][0].shape[-1] * counts[name])[:, None, None],
                }
                for name in spec.style_layers
            }
        )
    return jax.tree.map(lambda *v: jnp.stack(v), *per_tile)
