"""Tiles of a large image: where they lie, how their results blend, and where exact statistics come from.

Two kinds of tiling, both plain numpy (no JAX):

* **Blended tiles** (`TilePlan`) for the optimisation of a print-size image: windows of one shape
  that overlap by ``overlap`` pixels, each optimised on its own and blended back with feathered
  weights that sum to 1 at every pixel (`TilePlan.weights`). Windows of one *group* never overlap,
  so a group can run as one vmapped batch; groups run one after another, each starting from what
  the groups before it made (`TilePlan.groups`).
* **Halo windows** (`halo_windows`) for statistics that must equal the whole image's: the image is
  cut into disjoint *cores*, and each core is computed inside a window that adds a margin (the
  halo) at least as wide as the network's receptive field, so that the core's activations are
  exactly those of the whole image. Statistics summed over the cores are then the whole image's
  (`Moments` merges means and variances without losing precision).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def axis_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Starts of windows of ``tile`` pixels covering ``length`` with at least ``overlap`` shared.

    Evenly spread from 0 to ``length - tile``; one window (start 0) when the tile covers the axis.
    """
    if tile >= length:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def _axis_weights(length: int, starts: list[int], tile: int) -> np.ndarray:
    """(tiles, tile) linear feathers along one axis, normalised to sum to 1 at every position.

    Each window ramps up over its overlap with the window before and down over the one after;
    sides on the image border keep full weight, so the border pixels are never down-weighted.
    """
    size = min(tile, length)
    raw = np.ones((len(starts), size), np.float64)
    positions = np.arange(size) + 0.5
    for index, start in enumerate(starts):
        if index > 0:
            shared = starts[index - 1] + size - start
            raw[index] = np.minimum(raw[index], positions / shared)
        if index + 1 < len(starts):
            shared = start + size - starts[index + 1]
            raw[index] = np.minimum(raw[index], (size - positions) / shared)
    total = np.zeros(length, np.float64)
    for start, weights in zip(starts, raw):
        total[start : start + size] += weights
    return np.stack([weights / total[start : start + size] for start, weights in zip(starts, raw)])


@dataclass(frozen=True)
class Window:
    """One tile: its place in the image (top, left) and its index in `TilePlan.windows`."""

    index: int
    top: int
    left: int
    row: int  # position in the grid of tiles
    col: int


@dataclass(frozen=True)
class TilePlan:
    """Windows of one ``tile`` shape (H, W) covering an image of ``shape``, overlapping by ``overlap``."""

    shape: tuple[int, int]
    tile: tuple[int, int]
    overlap: int
    rows: tuple[int, ...]  # window tops
    cols: tuple[int, ...]  # window lefts

    @classmethod
    def cover(cls, shape: tuple[int, int], tile: int, overlap: int) -> TilePlan:
        """Square ``tile`` windows (clipped to the image) over ``shape``, neighbours sharing at least
        ``overlap`` < tile / 2 pixels."""
        if not 0 < 2 * overlap < tile:
            raise ValueError(f"overlap {overlap} must be positive and below half the tile {tile}")
        h, w = shape
        rows, cols = axis_starts(h, tile, overlap), axis_starts(w, tile, overlap)
        return cls(tuple(shape), (min(tile, h), min(tile, w)), overlap, tuple(rows), tuple(cols))

    @property
    def windows(self) -> list[Window]:
        return [
            Window(r * len(self.cols) + c, top, left, r, c)
            for r, top in enumerate(self.rows)
            for c, left in enumerate(self.cols)
        ]

    @property
    def count(self) -> int:
        return len(self.rows) * len(self.cols)

    @property
    def tiled(self) -> bool:
        return self.count > 1

    def groups(self) -> list[list[Window]]:
        """The windows in groups whose members never share a pixel: by grid row and column modulo
        the smallest step ``k`` for which windows ``k`` apart never meet on that axis (2 when the
        tiles are evenly spread; 3 where rounding packs them closer)."""

        def step(starts: tuple[int, ...], side: int) -> int:
            k = 1
            while any(b - a < side for a, b in zip(starts, starts[k:])):
                k += 1
            return k

        k_rows, k_cols = step(self.rows, self.tile[0]), step(self.cols, self.tile[1])
        by_class: dict[tuple[int, int], list[Window]] = {}
        for window in self.windows:
            by_class.setdefault((window.row % k_rows, window.col % k_cols), []).append(window)
        return [by_class[key] for key in sorted(by_class)]

    def weights(self, window: Window) -> np.ndarray:
        """(th, tw) float32 feathered blending weights of ``window``; over all windows they sum to 1."""
        th, tw = self.tile
        along_rows = _axis_weights(self.shape[0], list(self.rows), th)[window.row]
        along_cols = _axis_weights(self.shape[1], list(self.cols), tw)[window.col]
        return np.outer(along_rows, along_cols).astype(np.float32)

    def crop(self, image: np.ndarray, window: Window) -> np.ndarray:
        th, tw = self.tile
        return image[window.top : window.top + th, window.left : window.left + tw]


def halo_windows(length: int, core: int, halo: int, *, fixed: bool) -> list[tuple[int, int, int, int]]:
    """Disjoint cores of ``core`` pixels along an axis of ``length``, each inside a window with
    ``halo`` pixels more on both sides where the image has them: ``(window start, window end,
    core start, core end)`` in image coordinates.

    ``fixed``: every window has the same size ``min(length, core + 2 * halo)``, moved inwards at the
    borders (one compiled shape); otherwise windows are clipped at the borders. Starts stay multiples
    of the alignment of ``core`` and ``halo`` when ``length`` is one too.
    """
    out = []
    size = min(length, core + 2 * halo)
    for start in range(0, length, core):
        end = min(length, start + core)
        if fixed:
            lo = min(max(0, start - halo), length - size)
            out.append((lo, lo + size, start, end))
        else:
            out.append((max(0, start - halo), min(length, end + halo), start, end))
    return out


@dataclass(frozen=True)
class Moments:
    """Per-channel count, mean and sum of squared deviations, merged across tiles in float64
    (Chan et al.'s pairwise update: no catastrophic cancellation over millions of pixels)."""

    count: float
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def empty(cls, channels: int) -> Moments:
        return cls(0.0, np.zeros(channels), np.zeros(channels))

    def merge(self, count: float, mean: np.ndarray, m2: np.ndarray) -> Moments:
        if count == 0:
            return self
        mean, m2 = np.asarray(mean, np.float64), np.asarray(m2, np.float64)
        total = self.count + count
        delta = mean - self.mean
        return Moments(
            total, self.mean + delta * (count / total), self.m2 + m2 + delta**2 * (self.count * count / total)
        )

    @property
    def variance(self) -> np.ndarray:
        """Population variance, as instance norm takes it."""
        return self.m2 / self.count


@dataclass(frozen=True)
class ScalePlan:
    """How one scale of a run is computed: whole, or in ``count`` tiles of ``tile`` (H, W)."""

    shape: tuple[int, int]  # the output (H, W) at this scale
    needed: int  # estimated bytes to run it whole
    tile: tuple[int, int] | None = None
    count: int = 1  # tiles
    batch: int = 1  # tiles per vmapped batch
    overlap: int = 0  # pixels shared by neighbouring tiles (the optimisation)
    side: int = 0  # the tiles' side before clipping to the image (the optimisation)
    core: int = 0  # side of the exact core of each window (the fast method)

    @property
    def tiled(self) -> bool:
        return self.tile is not None

    def tiles(self) -> TilePlan:
        return TilePlan.cover(self.shape, self.side, self.overlap)
