"""Magenta's transformers in windows: bounded memory at any size, the same result.

`transform_tiled` runs `jaxstyle.nets.magenta.transform`, `multistyle_transform` or `trained_transform` on one image of any
size in windows of a fixed shape, stage by stage, with every instance norm's statistics those of the
whole image; the fast method uses it for print sizes (`methods.fast.plan_windows`).
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxstyle.errors import UsageError
from jaxstyle.nets.magenta import (
    MIN_SIDE,
    Frame,
    contract_stage,
    expand_stage,
    layers_and_norms,
    residual_stage,
)
from jaxstyle.nets.magenta_weights import CIN_EPSILON, Params

# Receptive-field radius of the transformer in input pixels: 4 (9x9) + 1 + 2 (the two stride-2
# 3x3 convs) + 10 x 4 (residual 3x3s at 1/4) + 4 + 2 (the upsampling 3x3s) + 4 (9x9) = 57 for the
# arbitrary network, 65 for the 26-style one (12 residual convs). A window's core is exact when
# its halo is at least this wide; 72 is a multiple of 4 (the strides) above both.
TILE_HALO = 72


def mix_regions(normal, gamma, beta, guide):
    """``sum_r guide_r * (gamma_r * normal_r + beta_r)``: ``normal`` (N, R, H, W, C) float32, each
    region's normalised activations, ``gamma`` and ``beta`` (N, R, C), ``guide`` (N, H, W, R): the
    last step of the guided CIN (`guided_norm.guided_norm`), with the whole image's statistics of each
    region summed over the windows."""
    n, c = normal.shape[0], normal.shape[-1]
    guide = guide.astype(jnp.float32)
    out = None
    for r in range(guide.shape[-1]):
        term = guide[..., r : r + 1] * (normal[:, r] * gamma[:, r].reshape(n, 1, 1, c) + beta[:, r].reshape(n, 1, 1, c))
        out = term if out is None else out + term
    return out


def _stage_cores(kind, params, style, window, guides, box, limit, stats, stage, upto, scale, compute_dtype):
    """One stage of the network (`contract_stage`, ``"residual{k}"`` or `expand_stage`) on one
    window of its input, with the CINs normalised by the whole image's ``stats`` (name -> (mean,
    variance), each (1, C)). ``scale``: the input's pixels are ``scale`` image pixels (1 for the frame, 4 for the
    1/4-resolution activations between stages). ``guides``: None, or the window's (1, h, w, R)
    guides at full resolution (the frame's, cropped as the window is), ``style`` then (1, R, width).

    ``upto`` None: the stage's output on the window. Otherwise the moments (count, mean, m2, each
    (C,)) of layer ``upto``'s pre-norm activation over the window's core ``box`` (top, bottom,
    left, right in image pixels from the window's origin) within the image's valid region
    (``limit``: the image's height and width from the window's origin); nothing after that layer
    is computed (XLA drops the unused rest). With ``guides`` (the guided CIN), each region's moments,
    weighted by its guide: counts (R,), means and m2 (R, C); ``stats`` then hold (R, C) rows.
    """
    layers, norms, _ = layers_and_norms(kind, params, style)
    captured = {}

    def norm(name, y, _frame):
        entry = norms[name]
        if entry[0] == "bias":
            return y + entry[1]
        if name == upto:
            captured["y"] = y
        if name not in stats:
            return y  # only layers after `upto`, which nothing uses
        mean, variance = stats[name]
        guide = _frame.guide_at(y)
        if guide is not None:  # the guided CIN: (R, C) statistics, one row per region
            normal = (y.astype(jnp.float32)[:, None] - mean[None, :, None, None, :]) * lax.rsqrt(
                variance + CIN_EPSILON
            )[None, :, None, None, :]
            return mix_regions(normal, entry[1], entry[2], guide).astype(y.dtype)
        scale_ = entry[1] * lax.rsqrt(variance + CIN_EPSILON)
        shift = entry[2] - mean * scale_
        return (y.astype(jnp.float32) * scale_[:, None, None, :] + shift[:, None, None, :]).astype(y.dtype)

    frame = Frame(window.shape[1] * scale, guides=guides)  # the window itself is the frame: plain padding
    x = window.astype(compute_dtype)
    if stage == "contract":
        out = contract_stage(x, frame, layers, norm, compute_dtype)
    elif stage == "expand":
        out = expand_stage(x, frame, layers, norm, compute_dtype)
    else:
        out = residual_stage(x, int(stage.removeprefix("residual")), frame, layers, norm, compute_dtype)
    if upto is None:
        return out.astype(jnp.float32)
    y = captured["y"][0].astype(jnp.float32)
    stride = window.shape[1] * scale // y.shape[0]
    rows, cols = jnp.arange(y.shape[0]) * stride, jnp.arange(y.shape[1]) * stride
    inside_rows = (rows >= box[0]) & (rows < jnp.minimum(box[1], limit[0]))
    inside_cols = (cols >= box[2]) & (cols < jnp.minimum(box[3], limit[1]))
    mask = (inside_rows[:, None] & inside_cols[None, :]).astype(jnp.float32)[..., None]
    if guides is not None:  # each region's moments, weighted by its guide: (R,), (R, C), (R, C)
        weights = jnp.moveaxis(frame.guide_at(captured["y"])[0], -1, 0)[..., None] * mask[None]  # (R, h, w, 1)
        count = jnp.sum(weights, axis=(1, 2, 3))
        mean = jnp.sum(weights * y[None], axis=(1, 2)) / jnp.maximum(count, 1e-6)[:, None]
        m2 = jnp.sum(weights * jnp.square(y[None] - mean[:, None, None, :]), axis=(1, 2))
        return count, mean, m2
    count = jnp.sum(mask)
    mean = jnp.sum(mask * y, axis=(0, 1)) / jnp.maximum(count, 1.0)
    m2 = jnp.sum(mask * jnp.square(y - mean[None, None, :]), axis=(0, 1))
    return count, mean, m2


def _as_first(name: str) -> str:
    """A residual block's stage or layer name as the first block's ("residual4/conv2" ->
    "residual1/conv2"); other names as they are."""
    return re.sub(r"^residual\d+", "residual1", name)


_stage_cores_jit = jax.jit(_stage_cores, static_argnames=("kind", "stage", "upto", "scale", "compute_dtype"))


def transform_tiled(
    kind: str,
    params: Params,
    content: np.ndarray,
    style,
    *,
    core: int,
    guides: np.ndarray | None = None,
    compute_dtype=jnp.float32,
    callback=None,
) -> np.ndarray:
    """`transform` (``kind`` "arbitrary"), `multistyle_transform` ("multistyle") or `trained_transform`
    ("trained", ``params`` the file's transformer tree) of one (H, W, 3)
    image in windows of at most ``core + 2 * TILE_HALO`` pixels a side: memory bounded by the
    window (and the 1/4-resolution activations, 8 bytes per image pixel), the result equal to the
    untiled one up to float rounding.

    Every CIN's mean and variance must be the whole image's, and each depends on the layers before
    it. The network runs stage by stage (contract, each residual block, expand), keeping each
    stage's output at 1/4 resolution on the host between them. Within a stage there is one
    statistics pass per CIN, in order: each window runs the stage up to that layer (earlier CINs
    normalised with the statistics already found) and adds the moments of its core to the total
    (`tiling.Moments`); a last pass computes the stage's output on every core. Windows overlap by
    the halo, wider than the receptive field, so that every core is exact; all have one shape, so
    each pass compiles once (the residual blocks' passes once for all blocks). ``callback(done, total)``
    after every window.

    ``guides`` (H, W, R) (spatial control, `magenta.transform`'s, with ``style`` (1, R, width)):
    padded as the image is, and each window's the same crop of them as its content, at full
    resolution, so that each CIN pools them exactly as the whole image's run does (windows start
    at multiples of 4).
    """
    from jaxstyle.tiling import Moments, halo_windows

    image = np.asarray(content, np.float32)
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise UsageError(f"content is {w}x{h}; both sides need at least {MIN_SIDE} pixels")
    if core % 4 or core < 4:
        raise ValueError(f"the core must be a positive multiple of 4, got {core}")
    frame = np.pad(image, ((0, (-h) % 4), (0, (-w) % 4), (0, 0)), mode="reflect")
    if guides is not None:
        guides = np.pad(np.asarray(guides, np.float32), ((0, (-h) % 4), (0, (-w) % 4), (0, 0)), mode="reflect")
    rows = halo_windows(frame.shape[0], core, TILE_HALO, fixed=True)
    cols = halo_windows(frame.shape[1], core, TILE_HALO, fixed=True)
    norms, residual = layers_and_norms(kind, params, style)[1:]
    stages = [("contract", "contract"), *((f"residual{k}", f"residual{k}/") for k in range(1, residual + 1))]
    stages.append(("expand", "expand"))
    passes = [
        (stage, [name for name, entry in norms.items() if name.startswith(prefix) and entry[0] == "cin"])
        for stage, prefix in stages
    ]
    total = sum(len(cins) + 1 for _, cins in passes) * len(rows) * len(cols)
    done = 0
    stats: dict[str, tuple[jax.Array, jax.Array]] = {}
    source, scale = frame, 1
    for (stage, cins), (_, prefix) in zip(passes, stages):
        out_scale = 1 if stage == "expand" else 4
        # Every residual block runs as the first one with its own weights (`_as_first`), so the five
        # (or six) blocks share their compiled programs: 8 for the arbitrary network instead of 20.
        stage_params = params
        if stage.startswith("residual"):
            stage_params = {**params, _as_first(stage): params[stage]}
        out = None
        for upto in [*cins, None]:
            moments = None
            for top, bottom, core_top, core_bottom in rows:
                for left, right, core_left, core_right in cols:
                    window = jnp.asarray(source[None, top // scale : bottom // scale, left // scale : right // scale])
                    box = jnp.asarray([core_top - top, core_bottom - top, core_left - left, core_right - left])
                    limit = jnp.asarray([h - top, w - left])
                    guide = None if guides is None else jnp.asarray(guides[None, top:bottom, left:right])
                    result = _stage_cores_jit(
                        kind,
                        stage_params,
                        style,
                        window,
                        guide,
                        box,
                        limit,
                        {_as_first(name): value for name, value in stats.items() if name.startswith(prefix)},
                        _as_first(stage),
                        None if upto is None else _as_first(upto),
                        scale,
                        compute_dtype,
                    )
                    if upto is None:
                        part = np.asarray(result[0])
                        if out is None:
                            out = np.empty(
                                (frame.shape[0] // out_scale, frame.shape[1] // out_scale, part.shape[-1]), np.float32
                            )
                        s = out_scale
                        out[core_top // s : core_bottom // s, core_left // s : core_right // s] = part[
                            (core_top - top) // s : (core_bottom - top) // s,
                            (core_left - left) // s : (core_right - left) // s,
                        ]
                    else:
                        # (count, mean, m2) of the window, or with guides one of each per region
                        count = np.atleast_1d(np.asarray(result[0], np.float64))
                        mean, m2 = (np.atleast_2d(np.asarray(value, np.float64)) for value in result[1:])
                        moments = moments or [Moments.empty(mean.shape[-1]) for _ in range(mean.shape[0])]
                        moments = [m.merge(float(n), a, b) for m, n, a, b in zip(moments, count, mean, m2)]
                    done += 1
                    if callback is not None:
                        callback(done, total)
            if upto is not None:  # (1, C), or (R, C) per region with guides (none: statistics 0)
                stats[upto] = (
                    jnp.asarray(np.stack([m.mean for m in moments]), jnp.float32),
                    jnp.asarray(np.stack([m.m2 / max(m.count, 1e-6) for m in moments]), jnp.float32),
                )
        source, scale = out, out_scale
    return source[:h, :w]
