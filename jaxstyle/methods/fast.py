"""The feed-forward method (Ghiasi et al. 2017): one pass of Magenta's arbitrary-style network.

A MobileNetV2 predictor turns each style image (at 256x256, as the network was trained) into a
100-d style vector; the vectors of several styles are blended by their weights, and Magenta's
style strength interpolates between that and the content's own vector. The transformer then
stylizes the content at its own size and aspect ratio (`jaxstyle.nets.magenta`). A bucket of a
batch is one call of the transformer over the stacked images: no iterations, no init image.

Departure from the TF-Hub and TF Lite pipelines: they stylize a 384x384 square (the content is
padded or squashed to it); here the content keeps its size and aspect ratio, padded only to a
multiple of 4 by reflection, with the instance-norm statistics taken over the image alone.

Compiled shapes: an image runs in a *bucket* (`bucket_of`), its sides rounded up to a quarter of
the long side, so a folder of any mix of sizes compiles a handful of programs (at 512 px at most
four, with portrait photos transposed into landscape buckets on a CPU), each result equal to the
image's own-size run (`magenta.transform` with ``sizes``). On a CPU the programs a folder needs
are compiled one after the other behind the first batch's decoding (`FastRunner.warm_up`), and
later runs load them (`nets.programs`, JAX's persistent cache).

Spatial control (style masks): one pass still, every instance norm mixing the styles' and the
photo's own conditioning per pixel (`methods.fast_regions`, `magenta.transform` with ``guides``).
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle import prepare
from jaxstyle.builtin_styles import BUILTIN_STYLES, builtin_style_weights, model_style_weights
from jaxstyle.config import StyleConfig
from jaxstyle.methods import BucketProgress, Previous, Warp, fast_regions

# The memory plan, kept importable from here (`fast.plan_windows`, `fast.planned_peak_bytes`).
from jaxstyle.methods.fast_plan import estimate_memory_bytes, plan_windows, planned_peak_bytes  # noqa: F401
from jaxstyle.nets import magenta, magenta_predictor, magenta_tiled, magenta_weights, programs
from jaxstyle.placement import Placement, memory_budget_bytes
from jaxstyle.prepare import BatchImage, StyleSet
from jaxstyle.tiling import ScalePlan
from jaxstyle.weights import params_digest

_COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# The networks whose styles are rows of their CIN tables, by `FastRunner.kind`.
_NETWORKS = {"multistyle": magenta.multistyle_transform, "trained": magenta.trained_transform}


def _styled_network(fast, weights) -> tuple[str, dict, int, str]:
    """(kind, params, style count, what a style number is called) of the network whose own
    styles ``fast.network_styles`` names: a trained ``fast.model`` (its count and names from the
    file's header) or the embedded 26-style one; ``weights``: its params, already loaded."""
    if fast.model is None:
        params = weights if weights is not None else magenta_weights.load_multistyle()
        return "multistyle", params, BUILTIN_STYLES, "built-in style"
    info, _, what = model_style_weights(fast.model, fast.builtin_style)
    params = weights if weights is not None else magenta_weights.load_trained(fast.model)
    return "trained", params, info.num_styles, what


@jax.jit
def _style_vectors(predictor, images: jax.Array, guides: jax.Array | None = None) -> jax.Array:
    """(K, 256, 256, 3), and (K, 256, 256) style regions or None -> (K, 100)."""
    return magenta_predictor.style_vector(predictor, images, guides)


# One program per style image shape: eagerly, the resize dispatched a dozen small programs.
_resize_style_image = jax.jit(magenta_predictor.resize_style_image)


def bucket_of(shape: tuple[int, int], max_size: int) -> tuple[int, int]:
    """The compiled (H, W) an image of own (h, w) ``shape`` runs in: each side rounded up to a
    multiple of a quarter of ``max_size`` (itself a multiple of 4, at least 32). A side grows by
    less than that quarter, and a folder at one size needs at most seven shapes; the result does
    not depend on the bucket (`magenta.transform` with ``sizes``)."""
    quantum = max(magenta.MIN_SIDE, -(-max_size // 16) * 4)
    return tuple(max(quantum, -(-side // quantum) * quantum) for side in shape)


def blend_previous(result: np.ndarray, previous: Previous, weight: float) -> np.ndarray:
    """A frame's own stylization blended with the previous frame's result warped onto it:
    ``weight`` of the warped result where the warp can be trusted, none at occlusions.

    The network has no notion of time, and per frame it turns camera noise into flicker of the
    same size (docs/video.md); this training-free blend is a recursive filter along the motion,
    which Ruder et al.'s occlusion masks keep from smearing what comes into view.
    """
    share = (weight * previous.mask)[..., None]
    return (result + share * (previous.image - result)).astype(np.float32)


@dataclass(frozen=True)
class WindowProgress:
    """Progress of a windowed (print-size) stylization: statistics passes, then the output pass."""

    shape: tuple[int, int]
    done: int  # windows computed, over all passes
    total: int
    passes: int  # one per instance norm, and the output's
    report: object = None  # as `BucketProgress`: no method-specific report

    @property
    def description(self) -> str:
        return f"{self.shape[1]}x{self.shape[0]} in windows"

    @property
    def status(self) -> str:
        per_pass = self.total // self.passes
        return f"pass {min(self.done // per_pass + 1, self.passes)}/{self.passes}, {self.done}/{self.total} windows"


class FastRunner:
    """The arbitrary-style networks on the device and the blended style vector of the style set."""

    frame_batch = None  # video frames are stylized as one bucket, then blended in order
    keeps_parts = False  # a stopped run is redone in the same time

    def __init__(self, config: StyleConfig, styles: StyleSet, *, weights=None, devices=None) -> None:
        self.config = config
        self.styles = styles
        self.placement = Placement(devices) if devices is not None else None
        put = (lambda tree: self.placement.put(tree, split=False)) if self.placement else jax.device_put
        self.dtype = _COMPUTE_DTYPES[self.config.resources.precision]
        self._shared_vector = None
        named = self.config.fast.network_styles
        if named is not None:
            # A network with styles of its own, the 26 built-in ones or a trained model's (``weights``:
            # its params, loaded): a style is a weight vector over them.
            self.kind, params, count, what = _styled_network(self.config.fast, weights)
            self.styled = put(params["multistyle" if self.kind == "multistyle" else "transformer"])
            self.builtin = np.asarray(builtin_style_weights(named, count, what), np.float32)
            if styles.masks is not None:  # one row per mask: its named built-in style
                self.builtin = fast_regions.builtin_rows(named, count)
        else:
            params = weights if weights is not None else magenta_weights.load_arbitrary()
            self.predictor, self.transformer = put(params["predictor"]), put(params["transformer"])
            self.kind, self.builtin = "arbitrary", None
        self._params = params
        # With masks, the network's regions: the K styles, and the photo's own where it has one.
        self.regions = None
        if styles.masks is not None:
            self.regions = len(styles.masks) + (1 if named is None else 0)
        # On a CPU, XLA runs most of this small network on one core, and a vmapped batch is no
        # faster per image than one image at a time; independent calls from several threads do
        # run in parallel (4 images at 384x512 on 2 cores: 192 ms one after another, 245 ms as
        # vmapped pairs, 122 ms from 2 threads). Accelerators keep the vmapped batch.
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        single_cpu_device = self.placement is None or (self.placement.count == 1 and self.placement.all_cpu)
        on_cpu = jax.default_backend() == "cpu" and single_cpu_device
        self._threads = ThreadPoolExecutor(cpus) if on_cpu and cpus > 1 else None
        # Compiles run on a thread of their own, behind the caller's decoding, so that a call
        # waiting for its program never holds the thread its compile needs. One at a time: XLA's
        # compiler is itself parallel, and two compiles at once on two cores took longer than one
        # after the other (a 3.3 s and a 1.6 s compile at once, 2.2 s and 0.45 s alone).
        self._compiler = ThreadPoolExecutor(1) if self._threads is not None else None
        self._programs: dict[tuple[tuple[int, int], int, bool], Future] = {}
        self._predictors: dict[tuple[int, bool], object] = {}
        self._lock = threading.Lock()
        self._predictor_lock = threading.Lock()
        self._photo_vectors: dict[bytes, np.ndarray] = {}  # `_photo_vector`'s last few, by digest

    @functools.cached_property
    def weights_id(self) -> str:
        """A short hash of the weights, computed when first asked for (batch manifests): it reads
        every tensor back from the device, a tenth of a second a one-photo run need not spend."""
        return params_digest(self._params)

    @property
    def _network(self):
        """(the jitted network, its params on the device, the width of a style row)."""
        if self.builtin is not None:
            return _NETWORKS[self.kind], self.styled, self.builtin.shape[-1]
        return magenta.transform, self.transformer, magenta_weights.STYLE_DIM

    def bucket(self, shape: tuple[int, int]) -> tuple[int, int]:
        """The compiled shape of an image of own size ``shape`` (`bucket_of`). On the CPU path a
        portrait image shares the landscape bucket of its transpose (`_one`); on an accelerator a
        bucket is one vmapped call, of one orientation."""
        h, w = shape
        if self._threads is not None and h > w:
            return bucket_of((w, h), self.config.max_size)
        return bucket_of(shape, self.config.max_size)

    def _program(self, bucket: tuple[int, int], count: int, exact: bool = False) -> Future:
        """The network compiled for ``count`` images in ``bucket`` (a future; compiled once);
        ``exact``: for images of exactly that size (the reference network, no ``sizes``)."""
        with self._lock:
            future = self._programs.get((bucket, count, exact))
            if future is None:
                future = self._compiler.submit(self._compile, bucket, count, exact)
                self._programs[(bucket, count, exact)] = future
            return future

    def _compile(self, bucket: tuple[int, int], count: int, exact: bool):
        network, params, width = self._network
        rows = (count, width) if self.regions is None else (count, self.regions, width)
        specs = [
            jax.ShapeDtypeStruct((count, *bucket, 3), jnp.float32),
            jax.ShapeDtypeStruct(rows, jnp.float32),
        ]
        if not exact:
            specs.append(jax.ShapeDtypeStruct((count, 2), jnp.int32))
        if self.regions is not None:
            specs.extend([None] * exact + [jax.ShapeDtypeStruct((count, *bucket, self.regions), jnp.float32)])
        return programs.compile_kept(network, params, *specs, compute_dtype=self.dtype)

    def warm_up(self, shapes: Sequence[tuple[int, int]]) -> None:
        """Start compiling the programs for images of these own sizes (and the shared style
        vector first), one after the other on the compile thread, while the caller goes on
        (decoding the first images); a later call waits only for what it needs."""
        if self._compiler is None:  # accelerators: each bucket compiles at its first call
            return
        shared = self.builtin is None and self.config.preserve_color not in prepare.PER_IMAGE_STYLE_MODES
        if shared and self._shared_vector is None:  # the shared style vectors first: the first batch needs them
            self._shared_vector = self._compiler.submit(self.style_vector, self.styles.images)
        for bucket in dict.fromkeys(self.bucket(shape) for shape in shapes):
            self._program(bucket, 1)

    @property
    def compiled(self) -> list[tuple[tuple[int, int], int, bool]]:
        """The (bucket, batch size, exact) programs compiled so far (the CPU path)."""
        return list(self._programs)

    def _one(self, bucket: tuple[int, int], image: BatchImage, vector: np.ndarray, exact: bool) -> np.ndarray:
        """One image through its bucket's program (the CPU path: one call per core); (h, w, 3).

        A portrait image in a landscape bucket runs transposed, through the same program with
        every kernel transposed (`_transposed`): the network commutes with transposing its input
        and kernels, so the result is the image's own to float rounding, and a folder compiles
        the landscape buckets only."""
        h, w = image.size
        transposed = h > bucket[0] or w > bucket[1]
        params = self._transposed if transposed else self._network[1]
        content, own = (image.content.swapaxes(0, 1), (w, h)) if transposed else (image.content, (h, w))
        guides = self._guides(image)
        if guides is not None and transposed:
            guides = guides.swapaxes(0, 1)
        if exact and own == tuple(bucket):
            extra = () if guides is None else (None, guides[None])
            result = self._program(bucket, 1, exact=True).result()(params, content[None], vector[None], *extra)
        else:
            content = magenta.pad_into_bucket(content, bucket)
            sizes = np.asarray([own], np.int32)
            extra = () if guides is None else (magenta.pad_into_bucket(guides, bucket)[None],)
            result = self._program(bucket, 1).result()(params, content[None], vector[None], sizes, *extra)
        result = np.asarray(result)[0, : own[0], : own[1]]
        return np.ascontiguousarray(result.swapaxes(0, 1)) if transposed else result

    @functools.cached_property
    def _transposed(self):
        """The network's parameters with every convolution kernel's height and width swapped."""
        swapped = jax.tree.map(lambda a: np.swapaxes(np.asarray(a), 0, 1) if a.ndim == 4 else a, self._network[1])
        return jax.device_put(swapped)  # on the host: eagerly, each kernel shape compiled a program

    def _predict(self, images: Sequence[np.ndarray], regions: Sequence[np.ndarray | None] | None = None) -> np.ndarray:
        """(K, 100) style vectors of (H, W, 3) images, each resized to the predictor's 256x256;
        with ``regions`` (one (H, W) style region or None per image), each of its region alone
        (`magenta_predictor.style_vector` with guides; the square the predictor sees moved onto
        the region, `fast_regions.region_window`).

        The small steps between the two programs run on the host: eagerly on the device, each
        (a stack, a blend) was a program of its own to compile, or to load from the cache."""
        guides = None
        if regions is not None:
            regions = [np.ones(i.shape[:2], np.float32) if r is None else r for i, r in zip(images, regions)]
            images, regions = zip(*(fast_regions.region_window(i, r) for i, r in zip(images, regions)))
            guides = np.stack([np.asarray(_resize_style_image(r[..., None]))[..., 0] for r in regions])
        resized = np.stack([np.asarray(_resize_style_image(image)) for image in images])
        if self._compiler is None:
            return np.asarray(_style_vectors(self.predictor, resized, guides))
        with self._predictor_lock:  # the CPU path: a program kept between runs (`nets.programs`)
            key = (len(images), guides is not None)
            program = self._predictors.get(key)
            if program is None:
                specs = [jax.ShapeDtypeStruct(resized.shape, jnp.float32)]
                if guides is not None:
                    specs.append(jax.ShapeDtypeStruct(guides.shape, jnp.float32))
                program = programs.compile_kept(_style_vectors, self.predictor, *specs)
                self._predictors[key] = program
        return np.asarray(program(self.predictor, resized, *([] if guides is None else [guides])))

    def style_vector(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """The blended (100,) vector of style images, each of its style region if it has one
        (`prepare.regions_for`, at the images' own sizes); with masks, each style's own (K, 100)."""
        vectors = self._predict(images, prepare.regions_for(self.styles, images))
        if self.regions is not None:
            return vectors
        return magenta_predictor.blend_vectors(vectors, self.styles.weights)

    def _vectors(self, images: Sequence[BatchImage]) -> np.ndarray:
        """(N, 100): each image's style vector, at the config's style strength; with masks,
        (N, K + 1, 100), each region's (`fast_regions.region_vectors`)."""
        if images[0].styles is not None:  # recoloured for each content image
            style = np.stack([self.style_vector(image.styles) for image in images])
        else:
            # (the caller's thread only: `warm_up` may have started it on the compile thread)
            if self._shared_vector is None:
                self._shared_vector = self.style_vector(self.styles.images)
            elif isinstance(self._shared_vector, Future):
                self._shared_vector = self._shared_vector.result()
            style = np.broadcast_to(self._shared_vector, (len(images), *np.shape(self._shared_vector)))
        strength = self.config.fast.style_strength
        if self.regions is not None:  # the photo's own vector is always needed: its region's
            return fast_regions.region_vectors(style, self._photo_vector(images), strength)
        if strength == 1.0:
            return style
        return magenta_predictor.with_strength(style, self._photo_vector(images), strength)

    # Photos whose own vectors are kept: a preview that changes only the strength or the masks
    # (`jaxstyle serve`) does not run the predictor on the same photo again; a batch or a video,
    # whose every image is new, only pays a digest (about 1 ms at 384 px against ~100 ms).
    KEPT_PHOTO_VECTORS = 8

    def _photo_vector(self, images: Sequence[BatchImage]) -> np.ndarray:
        """(N, 100): each image's own style vector (of its ``original``), predicted once per photo."""
        keys = [hashlib.blake2b(np.ascontiguousarray(i.original).tobytes(), digest_size=16).digest() for i in images]
        missing = list(dict.fromkeys(k for k in keys if k not in self._photo_vectors))
        if missing:
            first = {key: image for key, image in zip(keys, images)}
            for key, vector in zip(missing, self._predict([first[key].original for key in missing])):
                self._photo_vectors[key] = vector
        found = np.stack([self._photo_vectors[key] for key in keys])
        while len(self._photo_vectors) > self.KEPT_PHOTO_VECTORS:
            del self._photo_vectors[next(iter(self._photo_vectors))]
        return found

    def plan(self, content_shape: tuple[int, int]) -> list[ScalePlan]:
        """One scale, whole or in windows (`plan_windows`)."""
        shape = prepare.fit_long_side(content_shape, self.config.max_size)
        return [plan_windows(shape, self.config, memory_budget_bytes(self.config))]

    def stylize(
        self,
        content: np.ndarray,
        *,
        init_image: np.ndarray | None = None,
        callback: Callable[[BucketProgress | WindowProgress], None] | None = None,
        parts=None,
        plans: Sequence[ScalePlan] | None = None,
    ) -> np.ndarray:
        """One forward pass, whole or in windows (``plans``, `plan` by default); (h, w, 3) float32
        with the long side ``max_size``. ``init_image`` and ``parts`` are ignored: there is nothing
        to start from, and nothing worth keeping for a resume."""
        image = prepare.prepare_batch_image(0, content, self.styles, self.config)
        plan = (plans or self.plan(content.shape[:2]))[0]
        if not plan.tiled:
            # its own shape: a single image is computed exactly as the reference network computes it
            return self._run(image.size, [image], 1, callback, exact=True)[0]
        style = self.builtin[None] if self.builtin is not None else self._vectors([image])

        def report(done: int, total: int) -> None:
            if callback is not None:
                callback(WindowProgress(image.size, done, total, total // plan.count))

        result = magenta_tiled.transform_tiled(
            self.kind,
            self._network[1],
            image.content,
            style,
            core=plan.core,
            guides=self._guides(image),
            compute_dtype=self.dtype,
            callback=report,
        )
        return prepare.finish(self._with_photo(result, image), image.original, self.config)

    def stylize_bucket(
        self,
        shape: tuple[int, int],
        images: Sequence[BatchImage],
        size: int,
        callback: Callable[[BucketProgress], None] | None = None,
    ) -> list[np.ndarray]:
        """The transformer over ``images`` (each of its own size) in bucket ``shape``, padded with
        copies to ``size``; each result equals the image's own-size run (`bucket_of`) to float
        rounding (about 1e-5). One program per bucket, whatever sizes it holds."""
        return self._run(shape, images, size, callback, exact=False)

    def _guides(self, image: BatchImage) -> np.ndarray | None:
        """The (h, w, R) guides the network takes for ``image`` (None without masks): its own
        (`BatchImage.guides`), or for the built-in styles the styles' shares alone."""
        if self.regions is None:
            return None
        return fast_regions.builtin_guides(image.guides) if self.builtin is not None else image.guides

    def _with_photo(self, result: np.ndarray, image: BatchImage) -> np.ndarray:
        """The built-in styles' (h, w, 3) ``result`` with the photo's share put back in pixels
        (`fast_regions`); other results as they are."""
        if self.regions is None or self.config.fast.network_styles is None:
            return result
        return fast_regions.composite_photo(result, image.content, image.guides)

    def _run(self, shape, images, size, callback, *, exact: bool) -> list[np.ndarray]:
        """`stylize_bucket`; ``exact``: images of exactly ``shape`` run through the reference
        network itself, bit for bit (one image, a video's frames), not the bucket program."""
        padded = [*images, *[images[-1]] * (size - len(images))]
        params = self._network[1]
        if self.builtin is not None:
            vectors = np.broadcast_to(self.builtin, (size, *self.builtin.shape))
        else:
            vectors = self._vectors(padded)
        if self._threads is not None:
            # One call per real image, two (or more) at once: see `_threads`.
            vectors = np.asarray(vectors)
            calls = [self._threads.submit(self._one, shape, image, vectors[i], exact) for i, image in enumerate(images)]
            results = [call.result() for call in calls]
        else:
            guides = None
            if exact and all(image.size == tuple(shape) for image in padded):  # the reference network itself
                contents, sizes = np.stack([image.content for image in padded]), None
                if self.regions is not None:
                    guides = np.stack([self._guides(image) for image in padded])
            else:
                contents = np.stack([magenta.pad_into_bucket(image.content, shape) for image in padded])
                sizes = np.asarray([image.size for image in padded], np.int32)
                if self.regions is not None:
                    guides = np.stack([magenta.pad_into_bucket(self._guides(image), shape) for image in padded])
            if self.placement is not None:
                contents, vectors, sizes, guides = self.placement.put((contents, vectors, sizes, guides), split=True)
            results = np.asarray(self._network[0](params, contents, vectors, sizes, guides, compute_dtype=self.dtype))
        if callback is not None:
            callback(BucketProgress(shape, len(images), size, 1, 1, None))
        if self.regions is not None and self.builtin is not None:
            results = [self._with_photo(r[: i.size[0], : i.size[1]], i) for i, r in zip(images, results)]
        return prepare.finish_batch(results, images, self.config)

    def stylize_frames(
        self,
        frames: Sequence[BatchImage],
        last: np.ndarray | None,
        warp: Warp,
        callback: Callable[[BucketProgress], None] | None = None,
    ) -> list[np.ndarray]:
        """The frames as one bucket, then each blended with its predecessor (`blend_previous`)."""
        results = self._run(frames[0].size, frames, len(frames), callback, exact=True)
        weight = self.config.resolved_temporal_weight
        for index, result in enumerate(results):
            if last is not None and weight > 0:
                results[index] = blend_previous(result, warp(index, last), weight)
            last = results[index]
        return results


def fast_stylize(
    content: np.ndarray,
    styles: np.ndarray | Sequence[np.ndarray],
    config: StyleConfig | None = None,
    *,
    style_blend: Sequence[float] | None = None,
    weights=None,
) -> np.ndarray:
    """The feed-forward stylization of one image: (h, w, 3) float32 in [0, 1], long side ``max_size``.

    The same as ``jaxstyle.stylize(..., config.replace(method="fast"))``; the optimisation can start
    from it (``init="image"`` with this as the init image).
    """
    config = (config or StyleConfig()).replace(method="fast")
    return FastRunner(config, prepare.make_style_set(styles, style_blend, config), weights=weights).stylize(content)


def setup(config: StyleConfig, styles: StyleSet, *, weights=None, devices=None) -> FastRunner:
    return FastRunner(config, styles, weights=weights, devices=devices)
