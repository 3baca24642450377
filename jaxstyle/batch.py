"""Stylize many images with one style set: same-shape buckets, vmapped batches, resumable manifest.

Two layers, both silent (they report through a callback, never print):

* `stylize_batch` works on arrays in memory: it groups the images into buckets of one shape and
  optimises each batch with one jit-compiled, ``jax.vmap``-ed step (`jaxstyle.optimize.run_steps`
  with ``batched=True``), sharded over the local devices along the batch axis. Every image gets
  exactly what `jaxstyle.stylize.stylize` would give it (same resize, init, colour handling and
  targets), up to float rounding.
* `run_batch` works on files: it finds the inputs (a folder or a glob), keeps this worker's share
  (``shard=(i, n)``), skips what a manifest says is finished, writes every output atomically and
  records each image's fate in ``OUTPUT/manifest*.jsonl`` (one fsync-ed JSON line per event).

Bucket policy (see docs/batch.md): each image is resized so its long side is ``config.max_size``
(`fit_long_side`, as the single-image command does), which gives its *own size* (h, w). With
``bucket_multiple=1`` (the default) the bucket is exactly (h, w), so a batch result is the
single-image result. With ``bucket_multiple=m > 1`` the bucket is (h, w) rounded up to multiples
of m: the content (and starting image) are reflect-padded at the bottom and right, optimised at the
bucket shape and cropped back to (h, w). Outputs always have the image's own size and aspect ratio;
the padding only changes the result near those two edges, slightly.

Batching: a bucket is cut into batches of ``batch_size`` images (rounded up to a multiple of the
device count). The last, partial batch of a bucket is run at the smallest size of the ladder
devices x (1, 2, 4, ...) that holds it, padded with copies of its last image whose results are
dropped: at most log2(batch_size) + 1 compiled shapes per bucket, and never more than 2x waste.

Only one scale (``config.multiscale_min is None``) and no ``init="image"``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import glob as globlib
import hashlib
import json
import logging
import math
import os
import socket
import time
import warnings
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxstyle.config import StyleConfig
from jaxstyle.errors import ImageError, InputNotFoundError, JaxstyleError, NumericalError, OutputError, UsageError
from jaxstyle.image import SUPPORTED_OUTPUT_SUFFIXES, load_image, resize_to, save_image
from jaxstyle.optimize import LossSpec, StepReport, blend_style_targets, content_targets, optimise, style_targets
from jaxstyle.stylize import _as_rgb, _finish_colours, _initial_image, _prepare_colours, fit_long_side
from jaxstyle.vgg import MIN_SIDE, prepare_params
from jaxstyle.weights import VGGWeights, load_weights

logger = logging.getLogger(__name__)

#: File name suffixes (lower case) that input discovery picks up.
INPUT_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".ppm", ".avif"})
MANIFEST_NAME = "manifest.jsonl"
Status = Literal["started", "done", "failed"]
# Colour modes that recolour the style per content image, so style targets cannot be shared.
_PER_IMAGE_STYLE_MODES = frozenset({"luminance", "histogram"})


# --------------------------------------------------------------------------------------------
# Reports (the library is silent; the CLI draws these)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchStarted:
    """Sent once, after planning and before the first image."""

    total: int  # images in this worker's share
    already_done: int  # finished by an earlier run (skipped)
    to_do: int
    buckets: dict[tuple[int, int], int]  # bucket (H, W) -> images to do
    devices: int
    shard: tuple[int, int]  # (index, count), 0-based
    manifest: Path | None


@dataclass(frozen=True)
class BatchStep:
    """Optimiser progress of the batch in flight (every ``config.report_every`` iterations)."""

    shape: tuple[int, int]  # bucket (H, W)
    images: int  # real images in this batch (without the padding copies)
    batch_size: int  # compiled batch size
    iteration: int
    iterations: int
    report: StepReport


@dataclass(frozen=True)
class ImageFinished:
    """One image done or failed; counts are over this run (skipped images excluded)."""

    input: str
    output: str | None
    status: Status
    error: str | None
    done: int
    failed: int
    remaining: int
    elapsed: float  # seconds since the run started (planning excluded)
    images_per_second: float  # images done / elapsed
    eta: float | None  # seconds left at that rate; None before the first image is done


@dataclass(frozen=True)
class BatchSummary:
    total: int
    skipped: int
    done: int
    failed: int
    failures: tuple[tuple[str, str], ...]  # (input, one-line error)
    seconds: float
    manifest: Path | None


BatchEvent = BatchStarted | BatchStep | ImageFinished


# --------------------------------------------------------------------------------------------
# Inputs, sharding, buckets
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputItem:
    """One input file: where it is, its key in the manifest, and where its result goes."""

    path: Path
    rel: str  # path relative to the input root, '/'-separated: the manifest key
    output: str  # output path relative to the output folder


def discover_inputs(
    source: str | os.PathLike, *, output_dir: str | os.PathLike | None = None, output_format: str = "png"
) -> list[InputItem]:
    """The image files named by ``source``, sorted by relative path.

    ``source`` is a folder (its image files, not recursive) or a glob pattern (``**`` recurses,
    e.g. ``'photos/**/*.jpg'``). Only names ending in one of `INPUT_SUFFIXES` are kept; hidden
    files (``.name``) and anything inside ``output_dir`` are skipped. Each output is the relative
    path with the suffix ``.{output_format}``; when two inputs would share an output name (``a.jpg``
    and ``a.png``), both keep their own suffix too (``a.jpg.png``, ``a.png.png``). Names are decided
    on the whole list, so every shard agrees on them.

    Raises:
        InputNotFoundError: nothing matches.
        UsageError: unknown output format.
    """
    suffix = "." + output_format.lower().lstrip(".")
    if suffix not in SUPPORTED_OUTPUT_SUFFIXES:
        choices = ", ".join(s[1:] for s in sorted(SUPPORTED_OUTPUT_SUFFIXES))
        raise UsageError(f"unknown output format {output_format!r}; choose one of {choices}")
    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.is_dir():
        root = path
        candidates = [p for p in path.iterdir()]
    elif globlib.has_magic(text):
        root = _glob_root(text)
        candidates = [Path(p) for p in globlib.glob(os.path.expanduser(text), recursive=True)]
    elif path.exists():
        root, candidates = path.parent, [path]
    else:
        raise InputNotFoundError(
            f"input '{text}' does not exist (give a folder or a glob pattern such as 'photos/*.jpg')"
        )
    excluded = Path(output_dir).resolve() if output_dir is not None else None
    found: list[tuple[str, Path]] = []
    for candidate in candidates:
        if candidate.name.startswith(".") or candidate.suffix.lower() not in INPUT_SUFFIXES or not candidate.is_file():
            continue
        if excluded is not None and candidate.resolve().is_relative_to(excluded):
            continue
        rel = candidate.relative_to(root).as_posix() if candidate.is_relative_to(root) else candidate.name
        found.append((rel, candidate))
    if not found:
        raise InputNotFoundError(f"no image files ({', '.join(sorted(INPUT_SUFFIXES))}) found in '{text}'")
    found.sort()
    stems: dict[str, int] = {}
    for rel, _ in found:
        stem = rel[: len(rel) - len(Path(rel).suffix)]
        stems[stem] = stems.get(stem, 0) + 1
    items = []
    for rel, candidate in found:
        stem = rel[: len(rel) - len(Path(rel).suffix)]
        output = (rel if stems[stem] > 1 else stem) + suffix
        items.append(InputItem(candidate, rel, output))
    return items


def _glob_root(pattern: str) -> Path:
    """The folder part of a glob pattern before its first wildcard ('a/b/*/c.jpg' -> 'a/b')."""
    parts = Path(os.path.expanduser(pattern)).parts
    plain = []
    for part in parts[:-1]:
        if globlib.has_magic(part):
            break
        plain.append(part)
    return Path(*plain) if plain else Path(".")


def parse_shard(text: str) -> tuple[int, int]:
    """'2/8' -> (2, 8): this worker's 0-based index and the number of workers."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard must look like i/n with 0 <= i < n (e.g. 0/4), got {text!r}") from None
    if not 0 <= index < count:
        raise UsageError(f"--shard must look like i/n with 0 <= i < n (e.g. 0/4), got {text!r}")
    return index, count


def shard_of(rel: str, count: int) -> int:
    """The shard (0..count-1) an input belongs to: a stable hash of its relative path.

    A hash rather than the sorted position, so that adding or removing files does not move the
    others to another shard (whose manifest would not know them as done).
    """
    digest = hashlib.sha256(rel.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def select_shard(items: Iterable[InputItem], shard: tuple[int, int]) -> list[InputItem]:
    index, count = shard
    return [item for item in items if count == 1 or shard_of(item.rel, count) == index]


def probe_size(path: str | os.PathLike) -> tuple[int, int]:
    """(H, W) of an image file as `load_image` will give it (EXIF rotation applied), from its header.

    Raises:
        InputNotFoundError, ImageError: as `load_image`, with the file named.
    """
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                width, height = img.size
                try:
                    orientation = img.getexif().get(0x0112, 1)
                except Exception:  # noqa: BLE001 - a broken EXIF block: load_image ignores it too
                    orientation = 1
    except FileNotFoundError:
        raise InputNotFoundError(f"'{path}' does not exist") from None
    except OSError as exc:
        if isinstance(exc, PermissionError):
            raise InputNotFoundError(f"cannot open '{path}': permission denied") from None
        raise ImageError(f"cannot read '{path}': {_one_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - Pillow's header parsers raise many types
        raise ImageError(f"cannot read '{path}': corrupt image header ({_one_line(exc)})") from None
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


def bucket_shape(size: tuple[int, int], multiple: int = 1) -> tuple[int, int]:
    """The bucket (H, W) of an image whose own (fitted) size is ``size``: sides rounded up to ``multiple``."""
    return tuple(max(MIN_SIDE, math.ceil(side / multiple) * multiple) for side in size)  # type: ignore[return-value]


def batch_ladder(batch_size: int, devices: int = 1) -> tuple[int, ...]:
    """Compiled batch sizes: ``devices * 2**k`` below the full batch, and the full batch itself
    (``batch_size`` rounded up to a multiple of ``devices``)."""
    full = math.ceil(batch_size / devices) * devices
    sizes, size = {full}, devices
    while size < full:
        sizes.add(size)
        size *= 2
    return tuple(sorted(sizes))


def _chunk_size(count: int, ladder: tuple[int, ...]) -> int:
    return next((size for size in ladder if size >= count), ladder[-1])


# --------------------------------------------------------------------------------------------
# The engine: arrays in, arrays out
# --------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("spec",))
def _batch_content_targets(params, contents: jax.Array, spec: LossSpec) -> dict[str, jax.Array]:
    """Content features of (B, H, W, 3) images, each (B, h, w, C)."""
    return jax.vmap(lambda content: content_targets(params, content, spec))(contents)


@dataclass
class _Prepared:
    """One image ready for a batch: everything at the bucket shape, plus what finishing needs."""

    key: Any
    size: tuple[int, int]  # its own (h, w)
    content: np.ndarray  # (h, w, 3) resized content, before colour handling (for finishing)
    optimised_content: np.ndarray  # (H, W, 3) content after colour handling, padded
    start: np.ndarray  # (H, W, 3) starting image, padded
    style: dict[str, jax.Array] | None  # per-image style targets, or None when shared


def _pad(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    h, w = image.shape[:2]
    if (h, w) == tuple(shape):
        return image
    return np.pad(image, ((0, shape[0] - h), (0, shape[1] - w), (0, 0)), mode="reflect")


class _Engine:
    """Shared state of a batch run: weights on the devices, loss spec, mesh, cached style targets."""

    def __init__(
        self,
        styles: Sequence[np.ndarray],
        config: StyleConfig,
        *,
        style_blend: Sequence[float] | None,
        weights: VGGWeights | None,
        devices: Sequence[jax.Device] | None,
        bucket_multiple: int,
    ) -> None:
        config = config.validate()
        if config.multiscale_min is not None:
            raise UsageError("batch runs one scale only; leave multiscale_min (--start-size) unset")
        if config.init == "image":
            raise UsageError("batch does not support init 'image'; use content, noise, blend or gray")
        if bucket_multiple < 1:
            raise UsageError(f"the bucket multiple must be at least 1, got {bucket_multiple}")
        self.styles = [_as_rgb(s, f"style image {i + 1}") for i, s in enumerate(styles)]
        if not self.styles:
            raise UsageError("at least one style image is needed")
        blend = tuple(float(w) for w in (style_blend or (1.0,) * len(self.styles)))
        if len(blend) != len(self.styles):
            raise UsageError(f"{len(self.styles)} style images but {len(blend)} style weights")
        if not all(math.isfinite(w) and w >= 0 for w in blend) or sum(blend) <= 0:
            raise UsageError("style weights must be finite, >= 0, and not all 0")
        self.blend = blend
        self.config = config
        self.bucket_multiple = bucket_multiple
        weights = weights or load_weights()
        self.spec = LossSpec.from_config(config, weights.mean_bgr)
        self.devices = list(devices) if devices is not None else jax.local_devices()
        self.mesh = Mesh(np.array(self.devices), ("batch",))
        self.batch_sharding = NamedSharding(self.mesh, P("batch"))
        self.replicated = NamedSharding(self.mesh, P())
        winograd_convs = all(device.platform == "cpu" for device in self.devices)
        self.params = self._put(
            prepare_params(weights.params, self.spec.layers, winograd_convs=winograd_convs), self.replicated
        )
        self.per_image_style = config.preserve_color in _PER_IMAGE_STYLE_MODES
        self._style_cache: dict[tuple, dict[str, jax.Array]] = {}

    def _put(self, tree, sharding: NamedSharding):
        """Place arrays on the mesh. On one device they stay uncommitted, like the optimiser state
        `optimise` creates, so the jitted step sees one set of input shardings and compiles once
        (with several devices it compiles twice per shape: see docs/batch.md)."""
        if len(self.devices) == 1 and self.devices[0] == jax.local_devices()[0]:
            return jax.tree.map(jnp.asarray, tree)
        return jax.device_put(tree, sharding)

    def own_size(self, size: tuple[int, int]) -> tuple[int, int]:
        return fit_long_side(size, self.config.max_size)

    def bucket_of(self, size: tuple[int, int]) -> tuple[int, int]:
        """Bucket of an image of original (H, W) ``size``."""
        return bucket_shape(self.own_size(size), self.bucket_multiple)

    def _style_targets(
        self, styles: Sequence[np.ndarray], own: tuple[int, int], shape: tuple[int, int]
    ) -> dict[str, jax.Array]:
        # As stylize(): each style fitted to style_scale x the output's long side, then blended.
        side = max(MIN_SIDE, round(self.config.style_scale * max(own)))
        per_style = []
        for style in styles:
            sh, sw = fit_long_side(style.shape[:2], side)
            per_style.append(style_targets(self.params, jnp.asarray(resize_to(style, sh, sw)), self.spec, shape))
        return blend_style_targets(per_style, self.blend)

    def shared_style(self, own: tuple[int, int], shape: tuple[int, int]) -> dict[str, jax.Array]:
        """Style targets for every image of bucket ``shape``, computed once per (style side, shape)."""
        side = max(MIN_SIDE, round(self.config.style_scale * max(own)))
        key = (side, shape)
        if key not in self._style_cache:
            self._style_cache[key] = self._style_targets(self.styles, own, shape)
        return self._style_cache[key]

    def prepare(self, key: Any, content: np.ndarray) -> tuple[tuple[int, int], _Prepared]:
        """Resize, colour-handle, initialise and pad one content image; returns (bucket, prepared)."""
        content = _as_rgb(content, "content image")
        own = self.own_size(content.shape[:2])
        shape = bucket_shape(own, self.bucket_multiple)
        resized = resize_to(content, *own)
        optimised, styles = _prepare_colours(resized, self.styles, self.config.preserve_color)
        start = _initial_image(optimised, self.config, None)
        style = self._style_targets(styles, own, shape) if self.per_image_style else None
        start = _pad(np.asarray(start, np.float32), shape)
        return shape, _Prepared(key, own, resized, _pad(optimised, shape), start, style)

    def device_batch(
        self, shape: tuple[int, int], items: Sequence[_Prepared], size: int
    ) -> tuple[jax.Array, dict[str, Any]]:
        """The starting images and targets of one batch, placed on the mesh.

        Images, content targets (and per-image style targets) are split along the batch axis over
        the devices (``P("batch")``); weights and shared style targets are replicated. The batch is
        filled up to ``size`` with copies of the last image.
        """
        if not 0 < len(items) <= size or size % len(self.devices):
            raise ValueError(f"{len(items)} images for a batch of {size} on {len(self.devices)} devices")
        padded = [*items, *[items[-1]] * (size - len(items))]
        start = self._put(np.stack([p.start for p in padded]), self.batch_sharding)
        contents = self._put(np.stack([p.optimised_content for p in padded]), self.batch_sharding)
        targets: dict[str, Any] = {"content": _batch_content_targets(self.params, contents, self.spec)}
        if self.per_image_style:
            stacked = jax.tree.map(lambda *values: jnp.stack(values), *[p.style for p in padded])
            targets["style_per_image"] = self._put(stacked, self.batch_sharding)
        else:
            targets["style"] = self.shared_style(items[0].size, shape)
        return start, targets

    def run(
        self,
        shape: tuple[int, int],
        items: Sequence[_Prepared],
        size: int,
        callback: Callable[[BatchStep], None] | None = None,
    ) -> list[np.ndarray]:
        """Optimise ``items`` (all of bucket ``shape``) as one batch of ``size``; results at their own sizes."""
        start, targets = self.device_batch(shape, items, size)

        def report(step: StepReport) -> None:
            if callback is not None:
                callback(BatchStep(shape, len(items), size, step.iteration, step.iterations, step))

        result = optimise(self.params, start, targets, self.config, self.spec, batched=True, callback=report)
        images = np.asarray(result.image)
        outputs = []
        for prepared, image in zip(items, images):
            h, w = prepared.size
            cropped = np.ascontiguousarray(image[:h, :w])
            outputs.append(_finish_colours(cropped, prepared.content, self.config.preserve_color))
        return outputs


def stylize_batch(
    contents: Sequence[np.ndarray],
    styles: np.ndarray | Sequence[np.ndarray],
    config: StyleConfig | None = None,
    *,
    style_blend: Sequence[float] | None = None,
    weights: VGGWeights | None = None,
    batch_size: int = 4,
    bucket_multiple: int = 1,
    devices: Sequence[jax.Device] | None = None,
    callback: Callable[[BatchStep], None] | None = None,
) -> list[np.ndarray]:
    """Stylize many images with the same styles and settings, in same-shape vmapped batches.

    Args:
      contents: (H, W, 3) RGB images in [0, 1] (uint8 and grey accepted), any sizes.
      styles, config, style_blend, weights: as `jaxstyle.stylize.stylize` (one scale only).
      batch_size: images per compiled step (rounded up to a multiple of the device count).
      bucket_multiple: round bucket sides up to this many px (reflect-pad, then crop back).
      devices: devices to shard each batch over; all local devices by default.
      callback: gets a `BatchStep` every ``config.report_every`` iterations of each batch.

    Returns:
      One (h, w, 3) float32 result per content image, in order, with the long side
      ``config.max_size`` and the image's own aspect ratio.

    Raises:
      NumericalError: a batch diverged even after lowering the learning rate.
    """
    if batch_size < 1:
        raise UsageError(f"the batch size must be at least 1, got {batch_size}")
    engine = _Engine(
        [styles] if isinstance(styles, np.ndarray) else list(styles),
        config or StyleConfig(),
        style_blend=style_blend,
        weights=weights,
        devices=devices,
        bucket_multiple=bucket_multiple,
    )
    buckets: dict[tuple[int, int], list[_Prepared]] = OrderedDict()
    for index, content in enumerate(contents):
        shape, prepared = engine.prepare(index, content)
        buckets.setdefault(shape, []).append(prepared)
    ladder = batch_ladder(batch_size, len(engine.devices))
    results: list[np.ndarray | None] = [None] * len(contents)
    for shape, prepared in buckets.items():
        for begin in range(0, len(prepared), ladder[-1]):
            chunk = prepared[begin : begin + ladder[-1]]
            for item, image in zip(chunk, engine.run(shape, chunk, _chunk_size(len(chunk), ladder), callback)):
                results[item.key] = image
    return results  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------------------------


def manifest_name(shard: tuple[int, int]) -> str:
    """``manifest.jsonl``, or ``manifest.shard-I-of-N.jsonl`` for a shard, so workers never share a file."""
    index, count = shard
    return MANIFEST_NAME if count == 1 else f"manifest.shard-{index}-of-{count}.jsonl"


def read_manifests(output_dir: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The latest record of every input across all ``manifest*.jsonl`` files of ``output_dir``.

    Lines that are not complete JSON objects (a write cut short by a crash) are ignored; among
    several records of one input the latest ``time`` wins.
    """
    latest: dict[str, dict[str, Any]] = {}
    for path in sorted(Path(output_dir).glob("manifest*.jsonl")):
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError as exc:
            raise OutputError(f"cannot read the manifest '{path}': {_one_line(exc)}") from None
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if not isinstance(record, dict) or not isinstance(record.get("input"), str):
                continue
            previous = latest.get(record["input"])
            if previous is None or float(record.get("time", 0)) >= float(previous.get("time", 0)):
                latest[record["input"]] = record
    return latest


class Manifest:
    """An append-only JSON-lines file, one fsync per write, locked against a second writer."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._file = None

    def __enter__(self) -> Manifest:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a+b")  # noqa: SIM115 - closed in __exit__
        except OSError as exc:
            raise OutputError(f"cannot write the manifest '{self.path}': {_one_line(exc)}") from None
        try:
            import fcntl

            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # Windows: no advisory locks; one worker per shard is up to the user
            pass
        except OSError:
            self._file.close()
            raise OutputError(
                f"another jaxstyle batch is already writing '{self.path}'; run one worker per shard"
            ) from None
        self._file.seek(0, os.SEEK_END)
        if self._file.tell() > 0:
            self._file.seek(-1, os.SEEK_END)
            if self._file.read(1) != b"\n":  # a line cut short by a crash: end it
                self._file.write(b"\n")
        return self

    def __exit__(self, *exc_info) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def write(self, records: Iterable[Mapping[str, Any]]) -> None:
        data = "".join(json.dumps(dict(r), sort_keys=True, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
        if not data:
            return
        try:
            self._file.write(data)
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:
            raise OutputError(f"cannot write the manifest '{self.path}': {_one_line(exc)}") from None


def params_record(
    config: StyleConfig,
    style_digests: Sequence[str],
    style_blend: Sequence[float] | None,
    weights_digest: str,
    *,
    output_format: str,
    bucket_multiple: int,
    jpeg_quality: int,
) -> dict[str, Any]:
    """Everything that changes a result (batch size and reporting do not)."""
    settings = dataclasses.asdict(config)
    settings.pop("report_every", None)
    return {
        "config": settings,
        "styles": list(style_digests),
        "style_weights": list(style_blend) if style_blend is not None else None,
        "weights": weights_digest,
        "format": output_format,
        "bucket_multiple": bucket_multiple,
        "jpeg_quality": jpeg_quality,
    }


def params_hash(record: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:16]


def weights_digest(weights: VGGWeights) -> str:
    """A short content hash of the weights (the arrays and the mean), to tell weights files apart."""
    digest = hashlib.blake2b(digest_size=8)
    for layer in sorted(weights.params):
        for name in sorted(weights.params[layer]):
            array = np.ascontiguousarray(weights.params[layer][name])
            digest.update(f"{layer}/{name}{array.shape}{array.dtype}".encode())
            digest.update(memoryview(array).cast("B"))
    digest.update(repr(tuple(weights.mean_bgr)).encode())
    return digest.hexdigest()


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fp:
        for block in iter(lambda: fp.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# The file-level driver
# --------------------------------------------------------------------------------------------


@dataclass
class _Task:
    item: InputItem
    overwrite: bool  # its output may already exist (ours from a cut-short run, or --overwrite)
    size: tuple[int, int] | None = None  # original (H, W) from the header


class _Ledger:
    """This run's bookkeeping: manifest lines, counters, and the reports sent to the callback."""

    def __init__(self, manifest: Manifest, digest: str, total: int, emit: Callable[[BatchEvent], None]) -> None:
        self.manifest, self.digest, self.total, self.emit = manifest, digest, total, emit
        self.done = self.failed = 0
        self.failures: list[tuple[str, str]] = []
        self.started = time.perf_counter()

    def started_batch(self, tasks: Iterable[_Task]) -> None:
        now = time.time()
        self.manifest.write(
            {"input": t.item.rel, "output": t.item.output, "status": "started", "params_hash": self.digest, "time": now}
            for t in tasks
        )

    def finish(self, task: _Task, error: str | None = None, *, seconds: float | None = None, size=None) -> None:
        """Record ``task`` as done (no ``error``) or failed, then report it."""
        status: Status = "failed" if error is not None else "done"
        output = task.item.output if error is None else None
        if error is None:
            self.done += 1
        else:
            self.failed += 1
            self.failures.append((task.item.rel, error))
        self.manifest.write([{
            "input": task.item.rel,
            "output": output,
            "status": status,
            "error": error,
            "params_hash": self.digest,
            "seconds": None if seconds is None else round(seconds, 3),
            "size": list(size) if size is not None else None,
            "time": time.time(),
        }])
        elapsed = time.perf_counter() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        remaining = self.total - self.done - self.failed
        eta = remaining / rate if rate > 0 else None
        self.emit(
            ImageFinished(task.item.rel, output, status, error, self.done, self.failed, remaining, elapsed, rate, eta)
        )


def run_batch(
    inputs: str | os.PathLike,
    output_dir: str | os.PathLike,
    style_paths: Sequence[str | os.PathLike],
    config: StyleConfig,
    *,
    style_blend: Sequence[float] | None = None,
    weights: VGGWeights | None = None,
    batch_size: int = 4,
    bucket_multiple: int = 1,
    shard: tuple[int, int] = (0, 1),
    output_format: str = "png",
    overwrite: bool = False,
    jpeg_quality: int = 95,
    devices: Sequence[jax.Device] | None = None,
    callback: Callable[[BatchEvent], None] | None = None,
) -> BatchSummary:
    """Stylize every image of ``inputs`` (folder or glob) into ``output_dir``; resumable.

    This worker takes the inputs of ``shard=(i, n)`` (see `shard_of`). Images whose latest
    manifest record is ``done`` with the same settings (`params_hash`) and whose output exists are
    skipped. Outputs are written atomically (`save_image`), then a ``done`` record is appended and
    fsync-ed, so a crash (even SIGKILL) loses at most the batch in flight. An image that cannot be
    read (or diverges) is recorded as ``failed`` with a one-line reason and the run goes on.

    Raises:
        InputNotFoundError: no inputs, or a style file is missing.
        OutputError: finished outputs in ``output_dir`` were made with other settings, or an
            output file of this shard exists that no manifest knows (neither is replaced unless
            ``overwrite``); or an output/manifest cannot be written (the run stops; rerun resumes).
        UsageError: bad settings.
    """
    if batch_size < 1:
        raise UsageError(f"the batch size must be at least 1, got {batch_size}")
    if not 1 <= jpeg_quality <= 100:
        raise UsageError(f"the JPEG quality must be between 1 and 100, got {jpeg_quality}")
    output_dir = Path(output_dir)
    style_paths = [Path(p) for p in style_paths]
    all_items = discover_inputs(inputs, output_dir=output_dir, output_format=output_format)
    style_images = [load_image(path).rgb for path in style_paths]
    weights = weights or load_weights()
    engine = _Engine(
        style_images, config, style_blend=style_blend, weights=weights, devices=devices, bucket_multiple=bucket_multiple
    )
    weights_id = weights_digest(weights)
    record = params_record(
        engine.config,
        [_file_digest(p) for p in style_paths],
        style_blend,
        weights_id,
        output_format=output_format,
        bucket_multiple=bucket_multiple,
        jpeg_quality=jpeg_quality,
    )
    digest = params_hash(record)
    items = select_shard(all_items, shard)
    tasks, skipped = _plan(items, output_dir, digest, overwrite)
    metadata = _metadata_factory(engine.config, style_paths, style_blend, weights_id, digest)
    manifest_path = output_dir / manifest_name(shard)
    emit = callback or (lambda event: None)

    with Manifest(manifest_path) as manifest:
        manifest.write([{
            "event": "run",
            "time": time.time(),
            "params_hash": digest,
            "params": record,
            "shard": f"{shard[0]}/{shard[1]}",
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "devices": len(engine.devices),
            "batch_size": batch_size,
        }])
        ledger = _Ledger(manifest, digest, len(tasks), emit)
        # Header sizes place every image in its bucket without decoding pixels.
        buckets: OrderedDict[tuple[int, int], deque[_Task]] = OrderedDict()
        unreadable = []
        for task in tasks:
            try:
                task.size = probe_size(task.item.path)
            except JaxstyleError as error:
                unreadable.append((task, _one_line(error)))
                continue
            buckets.setdefault(engine.bucket_of(task.size), deque()).append(task)
        emit(BatchStarted(
            total=len(items),
            already_done=skipped,
            to_do=len(tasks),
            buckets={shape: len(queue) for shape, queue in buckets.items()},
            devices=len(engine.devices),
            shard=shard,
            manifest=manifest_path,
        ))
        for task, error in unreadable:
            ledger.finish(task, error)

        ladder = batch_ladder(batch_size, len(engine.devices))
        while buckets:
            shape = next(iter(buckets))
            loaded = _load_batch(engine, buckets, shape, ladder[-1], ledger)
            if not loaded:
                continue
            ledger.started_batch(task for task, _, _ in loaded)
            started = time.perf_counter()
            results = _run_with_fallback(engine, shape, [prepared for _, prepared, _ in loaded], ladder, emit)
            seconds = (time.perf_counter() - started) / len(loaded)
            for (task, _, alpha), result in zip(loaded, results):
                if isinstance(result, str):
                    ledger.finish(task, result)
                    continue
                if alpha is not None:
                    alpha = resize_to(alpha, *result.shape[:2])
                save_image(
                    output_dir / task.item.output,
                    result,
                    alpha=alpha,
                    overwrite=task.overwrite,
                    inputs=[task.item.path, *style_paths],
                    metadata=metadata(task.item.rel),
                    jpeg_quality=jpeg_quality,
                )
                ledger.finish(task, seconds=seconds, size=result.shape[:2])
    return BatchSummary(
        total=len(items),
        skipped=skipped,
        done=ledger.done,
        failed=ledger.failed,
        failures=tuple(ledger.failures),
        seconds=time.perf_counter() - ledger.started,
        manifest=manifest_path,
    )


def _load_batch(
    engine: _Engine,
    buckets: OrderedDict[tuple[int, int], deque[_Task]],
    shape: tuple[int, int],
    size: int,
    ledger: _Ledger,
) -> list[tuple[_Task, _Prepared, np.ndarray | None]]:
    """Decode and prepare up to ``size`` images of bucket ``shape``; unreadable ones are recorded
    as failed (and replaced by the next ones). Returns (task, prepared, alpha) triples."""
    queue = buckets[shape]
    loaded = []
    while queue and len(loaded) < size:
        task = queue.popleft()
        try:
            image = load_image(task.item.path)
            actual, prepared = engine.prepare(task, image.rgb)
        except (JaxstyleError, OSError, ValueError) as error:
            ledger.finish(task, _one_line(error))
            continue
        if actual != shape:  # the header said otherwise (odd EXIF): move it to its real bucket
            logger.info("'%s' belongs to bucket %s, not %s", task.item.rel, actual, shape)
            buckets.setdefault(actual, deque()).append(task)
            continue
        loaded.append((task, prepared, image.alpha))
    if not queue:
        del buckets[shape]
    return loaded


def _run_with_fallback(engine: _Engine, shape, prepared: list[_Prepared], ladder, emit) -> list[np.ndarray | str]:
    """Run one batch; if it diverges, run its images one by one so one bad image fails alone."""
    try:
        return engine.run(shape, prepared, _chunk_size(len(prepared), ladder), emit)
    except NumericalError as error:
        if len(prepared) == 1:
            return [_one_line(error)]
    results: list[np.ndarray | str] = []
    for item in prepared:
        try:
            results.extend(engine.run(shape, [item], ladder[0], emit))
        except NumericalError as error:
            results.append(_one_line(error))
    return results


def _plan(items: Sequence[InputItem], output_dir: Path, digest: str, overwrite: bool) -> tuple[list[_Task], int]:
    """Split this shard's items into work and already-finished ones; refuse to clobber others' files."""
    records = read_manifests(output_dir) if output_dir.is_dir() else {}
    tasks, skipped, changed, foreign = [], 0, [], []
    for item in items:
        record = records.get(item.rel)
        target = output_dir / item.output
        exists = target.exists()
        status = record.get("status") if record else None
        if status == "done" and exists and record.get("output") == item.output:
            if record.get("params_hash") == digest:
                skipped += 1
                continue
            changed.append(item)
        elif record is None and exists:
            foreign.append(item)
        # 'started' (cut short, maybe saved) and 'failed' are redone; their outputs are ours.
        tasks.append(_Task(item, overwrite=overwrite or record is not None))
        _remove_stale_temporaries(target)
    if changed and not overwrite:
        raise OutputError(
            f"{len(changed)} finished image(s) in '{output_dir}' (e.g. '{changed[0].output}') were made with other "
            "settings; pass --overwrite to redo them, or choose another output folder"
        )
    if foreign and not overwrite:
        raise OutputError(
            f"'{output_dir / foreign[0].output}' exists but no manifest in '{output_dir}' knows it "
            f"({len(foreign)} such file(s)); pass --overwrite to replace them, or choose another output folder"
        )
    return tasks, skipped


def _remove_stale_temporaries(target: Path) -> None:
    """Delete the temporary files a killed `save_image` left next to ``target`` ('.NAME.xxxx.tmp')."""
    if not target.parent.is_dir():
        return
    for stale in target.parent.glob(f".{globlib.escape(target.name)}.*.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()


def _metadata_factory(config: StyleConfig, style_paths, style_blend, weights_id: str, digest: str):
    from jaxstyle import __version__

    settings = json.dumps(dataclasses.asdict(config), sort_keys=True)

    def metadata(rel: str) -> dict[str, str]:
        return {
            "Software": f"jaxstyle {__version__}",
            "jaxstyle.config": settings,
            "jaxstyle.inputs": json.dumps({
                "content": rel, "styles": [str(p) for p in style_paths],
                "style_weights": list(style_blend) if style_blend else None, "weights": weights_id,
            }),
            "jaxstyle.params_hash": digest,
        }

    return metadata


def initialize_distributed(
    coordinator_address: str | None = None, num_processes: int | None = None, process_id: int | None = None
) -> tuple[int, int]:
    """Join JAX's multi-process runtime; returns this process's shard ``(process_index, process_count)``.

    With no arguments JAX detects the cluster (SLURM, Open MPI, Kubernetes/GKE, Cloud TPU). Each
    process then works on its own shard with its local devices; batch needs no cross-host traffic.
    Must run before any other JAX computation in the process.
    """
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
        )
    except (RuntimeError, ValueError) as error:
        raise UsageError(f"cannot start jax.distributed: {_one_line(error)}") from None
    return jax.process_index(), jax.process_count()


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."
