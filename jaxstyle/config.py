"""Every default of a stylization in one frozen config, in sections.

`StyleConfig` holds the settings every method shares and one section per part of the work
(`FastSettings`, `LossSettings`, `OptimizeSettings`, `VideoSettings`, `ResourceSettings`,
`MaskSettings`); each checks itself when built, so no unchecked config exists. `BatchConfig` says
how a batch is cut (`jaxstyle.config_commands`, with the other commands' settings; names kept here).
The CLI reads its defaults and choices from here rather than repeating them. Choices are
``Literal`` types, and `choices` lists them. Every field has a name unique across sections and a
path (`field_path`: ``iterations``, ``optimize.iterations``). Where settings come from (presets,
TOML files, ``--set``) is `jaxstyle.config_sources`. Plain Python: importing this costs no JAX.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from jaxstyle.builtin_styles import BUILTIN_STYLES, builtin_style_parts, builtin_style_weights

# The other commands' settings, importable from here as before.
from jaxstyle.config_commands import BatchConfig, ColorConfig, OutputFormat  # noqa: F401
from jaxstyle.errors import UsageError
from jaxstyle.nets.vgg_layers import canonical_layer

MethodName = Literal["gatys", "fast"]
Optimizer = Literal["lbfgs", "adam"]
Init = Literal["content", "noise", "blend", "gray", "image", "fast"]
StyleStatistic = Literal["gram", "sliced_wasserstein"]
PreserveColor = Literal["none", "luminance", "histogram", "knn"]
Pooling = Literal["max", "avg"]
Precision = Literal["float32", "bfloat16"]
TVKind = Literal["l1", "l2"]
LossUnits = Literal["ratio", "raw"]
MaskFit = Literal["exact", "stretch"]

JPEG_QUALITY = 95  # JPEG/WebP quality of every image jaxstyle writes, unless --quality says otherwise

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


# ------------------------------------------------------------------------------------ sections
# Each section holds the settings of one part of the work and checks its own fields when it is
# built; `StyleConfig` holds the sections and the settings every method shares, and checks what
# spans sections. Field names are unique across sections, so ``--set iterations=5`` and
# ``--set optimize.iterations=5`` name the same field (`field_path`).


def _check(checks) -> None:
    """Raise UsageError with the message of the first check that failed."""
    for ok, message in checks:
        if not ok:
            raise UsageError(message)


def _check_choices(settings) -> None:
    """Each of ``settings``' choice fields (`CHOICE_FIELDS`) holds one of its values."""
    for field in dataclasses.fields(settings):
        name, value = field.name, getattr(settings, field.name)
        allowed = CHOICE_FIELDS.get(name)
        if allowed is not None and value not in allowed:
            shown = name.replace("_", " ")
            raise UsageError(f"unknown {shown} {value!r}; choose one of {', '.join(allowed)}")


def _check_numbers(numbers: Mapping[str, float], positive: tuple[str, ...] = ()) -> None:
    """Finite and >= 0; those named in ``positive`` also > 0."""
    for name, value in numbers.items():
        if not math.isfinite(value) or value < 0:
            raise UsageError(f"{name} must be a finite number >= 0, got {value}")
    for name in positive:
        if numbers[name] <= 0:
            raise UsageError(f"{name} must be greater than 0, got {numbers[name]}")


class _Section:
    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class FastSettings(_Section):
    """The fast method (`jaxstyle.methods.fast`): one pass of Magenta's arbitrary-style network, its
    26-style network or a trained one."""

    # 1 is the style's own vector, 0 the content's (Magenta's interpolation).
    style_strength: float = 1.0
    # The 26-style network's built-in styles instead of style images, "7" or a mix "3:0.5,12:0.5"
    # (see `builtin_style_weights`).
    builtin_style: str | None = None
    # A trained multi-style network (``jaxstyle train``, a .safetensors file) instead of the embedded
    # ones: ``builtin_style`` then names its styles (0..S-1; "0" when left out, for S = 1).
    model: str | None = None

    @property
    def network_styles(self) -> str | None:
        """The styles a run takes from a network instead of style images: ``builtin_style``, "0"
        for a model alone (its only style; `methods.fast` checks the count), None for images."""
        return "0" if self.builtin_style is None and self.model is not None else self.builtin_style

    def __post_init__(self) -> None:
        _check([(0.0 <= self.style_strength <= 1.0, f"style strength must be in [0, 1], got {self.style_strength}")])
        if self.model is not None and (not isinstance(self.model, str) or not self.model.strip()):
            raise UsageError(f"model must be the path of a trained .safetensors file, got {self.model!r}")
        if self.builtin_style is not None:  # a model's style count is checked against its file
            count = (
                BUILTIN_STYLES
                if self.model is None
                else 1 + max(n for n, _ in builtin_style_parts(self.builtin_style, None))
            )
            builtin_style_weights(self.builtin_style, count)


@dataclass(frozen=True)
class LossSettings(_Section):
    """The optimisation's loss terms. Units and normalisations are those of `jaxstyle.losses`."""

    # "ratio": every loss term is its ratio to the inputs (content against the style image, style
    # against the content image, layer by layer; `objective.weighted_terms`), so that one set of weights
    # holds the same balance at every size (docs/quality.md). "raw": the plain sums of
    # `jaxstyle.losses`, as the peers' presets weigh them.
    loss_units: LossUnits = "ratio"
    content_layers: tuple[str, ...] = ("relu4_2",)
    content_weight: float = 0.5
    style_layers: tuple[str, ...] = STYLE_LAYERS
    style_layer_weights: tuple[float, ...] | None = None  # None: equal weights
    # None: 500 for Gram; 5e4 for sliced Wasserstein, whose loss is ~100x smaller at equal effect.
    style_weight: float | None = None
    style_statistic: StyleStatistic = "gram"
    tv_weight: float = 0.03
    tv_kind: TVKind = "l2"
    pooling: Pooling = "avg"

    @property
    def resolved_style_weight(self) -> float:
        if self.style_weight is not None:
            return self.style_weight
        if self.loss_units == "ratio":
            return 1.0
        return 500.0 if self.style_statistic == "gram" else 5e4

    @property
    def resolved_style_layer_weights(self) -> tuple[float, ...]:
        if self.style_layer_weights is None:
            return (1.0,) * len(self.style_layers)
        return self.style_layer_weights

    def __post_init__(self) -> None:
        _check_choices(self)
        _check(
            [
                (bool(self.style_layers), "at least one style layer is needed"),
                (
                    len(self.resolved_style_layer_weights) == len(self.style_layers),
                    f"{len(self.style_layers)} style layers but {len(self.resolved_style_layer_weights)} layer weights",
                ),
            ]
        )
        _check_numbers(
            {
                "content weight": self.content_weight,
                "style weight": self.resolved_style_weight,
                "TV weight": self.tv_weight,
                **{f"style layer weight {i + 1}": w for i, w in enumerate(self.resolved_style_layer_weights)},
            }
        )
        for layer in (*self.content_layers, *self.style_layers):
            canonical_layer(layer)


@dataclass(frozen=True)
class OptimizeSettings(_Section):
    """How the optimisation (Gatys et al. 2015) runs: scales, iterations, stopping, the optimiser
    and its starting image."""

    # Coarse-to-fine: start at this long side and grow by sqrt(2) up to max_size; None = one scale.
    multiscale_min: int | None = None
    iterations: int = 300  # at the final scale (and at every scale, unless coarse_iterations is set)
    # Iterations at each scale before the final one; None: `iterations`. Coarse scales are cheap
    # (a quarter of the pixels per halving), and what they cannot fix, the final scale must.
    coarse_iterations: int | None = None
    # The stopping rule: a scale (or tile) ends before ``iterations`` once its best loss has improved
    # by less than ``stop_tolerance`` (a fraction) over the last ``stop_window`` iterations. 0: run
    # every iteration. Checked at each progress report (`report_every`).
    stop_tolerance: float = 0.02
    stop_window: int = 30

    optimizer: Optimizer = "lbfgs"
    learning_rate: float | None = None  # None: 1.0 for L-BFGS (unit step), 0.02 for Adam
    adam_b1: float = 0.9
    adam_b2: float = 0.999
    adam_eps: float = 1e-8
    lbfgs_memory: int = 10

    # "fast": start from the fast method's picture (Magenta's network), which already has the
    # style's colours and strokes, so the optimisation converges sooner (docs/quality.md).
    init: Init = "fast"
    init_noise_fraction: float = 0.7  # "blend" init: (1 - f) * content + f * noise
    clip: bool = True  # clip the image to [0, 1] after each step

    # Iterations between progress reports: also the steps of one compiled dispatch (a lax.scan),
    # so the host syncs only to report (faster than one step per dispatch: docs/performance.md).
    report_every: int = 10

    @property
    def resolved_learning_rate(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 1.0 if self.optimizer == "lbfgs" else 0.02

    def __post_init__(self) -> None:
        _check(
            [
                (self.iterations >= 1, f"iterations must be at least 1, got {self.iterations}"),
                (
                    self.coarse_iterations is None or self.coarse_iterations >= 1,
                    f"coarse iterations must be at least 1, got {self.coarse_iterations}",
                ),
                (self.report_every >= 1, "report_every must be at least 1"),
                (
                    math.isfinite(self.stop_tolerance) and 0 <= self.stop_tolerance < 1,
                    f"stop tolerance must be a fraction from 0 (off) to below 1, got {self.stop_tolerance}",
                ),
                (self.stop_window >= 1, f"stop window must be at least 1 iteration, got {self.stop_window}"),
                (self.lbfgs_memory >= 1, "lbfgs_memory must be at least 1"),
                (0.0 <= self.init_noise_fraction <= 1.0, "init noise fraction must be in [0, 1]"),
            ]
        )
        _check_choices(self)
        _check_numbers(
            {
                "learning rate": self.resolved_learning_rate,
                "Adam beta1": self.adam_b1,
                "Adam beta2": self.adam_b2,
                "Adam epsilon": self.adam_eps,
            },
            positive=("learning rate", "Adam epsilon"),
        )


@dataclass(frozen=True)
class VideoSettings(_Section):
    """Video only (`jaxstyle.video`)."""

    # How closely each frame follows the previous result, warped along the optical flow. "fast":
    # the warped result's share of the blend, 0 to 1; "gatys": the weight of Ruder et al.'s
    # temporal loss. 0: frame by frame. None: the method's default (`TEMPORAL_WEIGHTS`).
    temporal_weight: float | None = None


@dataclass(frozen=True)
class ResourceSettings(_Section):
    """What a run may use, and how it computes; none of these is meant to change the picture
    beyond rounding."""

    # Print sizes (docs/highres.md): memory a run may use, in GiB (None: what the machine or the
    # accelerator has free). Above it, the optimisation runs its final scales in overlapping tiles
    # and the fast method in windows, both under the whole image's statistics. ``tile_size``
    # forces tiles of that side in output pixels (None: tiles only where memory needs them).
    memory_budget: float | None = None
    tile_size: int | None = None
    # bfloat16 runs the VGG convolutions in bf16 (losses and the image stay float32): ~2x less
    # memory traffic; worth it on GPUs/TPUs and CPUs with AVX512_BF16/AMX.
    precision: Precision = "float32"

    def __post_init__(self) -> None:
        _check(
            [
                (
                    self.memory_budget is None or (math.isfinite(self.memory_budget) and self.memory_budget > 0),
                    f"memory budget must be a number of GiB above 0, got {self.memory_budget}",
                ),
                (
                    self.tile_size is None or self.tile_size >= MIN_TILE,
                    f"tile size must be at least {MIN_TILE} px, got {self.tile_size}",
                ),
            ]
        )
        _check_choices(self)


@dataclass(frozen=True)
class MaskSettings(_Section):
    """Style masks (`jaxstyle.masks`): the width of a mask's soft edge in output pixels (None: 1/128
    of the long side), and "stretch" to lay a mask of another aspect ratio over the image."""

    mask_feather: float | None = None
    mask_fit: MaskFit = "exact"

    def __post_init__(self) -> None:
        _check_numbers({"mask feather": 0.0 if self.mask_feather is None else self.mask_feather})
        _check_choices(self)


SECTIONS: dict[str, type] = {
    "fast": FastSettings,
    "loss": LossSettings,
    "optimize": OptimizeSettings,
    "video": VideoSettings,
    "resources": ResourceSettings,
    "masks": MaskSettings,
}


@dataclass(frozen=True, init=False)
class StyleConfig:
    """Settings of one stylization: those every method shares, then one section per part of the
    work. Checked when built: an instance is always a config that makes sense.

    Built from any of its settings by name: the shared fields, whole sections, and any section's
    field by its name (unique across sections) or its path: ``StyleConfig(method="fast",
    iterations=150)`` or ``StyleConfig(**{"optimize.iterations": 150})``. Read through the
    sections: ``config.optimize.iterations``.
    """

    # The method (`jaxstyle.methods`): "gatys" optimises the image (Gatys et al. 2015); "fast" is
    # one pass of Magenta's arbitrary-style network (Ghiasi et al. 2017).
    method: MethodName = "gatys"
    # Size: the long side of the output, and the style image's long side relative to it.
    max_size: int = 512
    style_scale: float = 1.0
    preserve_color: PreserveColor = "none"
    seed: int = 0

    fast: FastSettings = dataclasses.field(default_factory=FastSettings)
    loss: LossSettings = dataclasses.field(default_factory=LossSettings)
    optimize: OptimizeSettings = dataclasses.field(default_factory=OptimizeSettings)
    video: VideoSettings = dataclasses.field(default_factory=VideoSettings)
    resources: ResourceSettings = dataclasses.field(default_factory=ResourceSettings)
    masks: MaskSettings = dataclasses.field(default_factory=MaskSettings)

    def __init__(self, **settings: object) -> None:
        values = {
            f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
            for f in dataclasses.fields(StyleConfig)
        }
        per_section: dict[str, dict[str, object]] = {}
        for name, value in settings.items():
            try:
                section, field = field_path(name)
            except KeyError:
                raise TypeError(f"StyleConfig has no setting {name!r}") from None
            if section:
                per_section.setdefault(section, {})[field] = value
            else:
                values[field] = value
        for section, changes in per_section.items():  # a section's fields over the section given
            values[section] = dataclasses.replace(values[section], **changes)
        for name, value in values.items():
            object.__setattr__(self, name, value)
        self._check()

    def replace(self, **changes: object) -> StyleConfig:
        """A copy with ``changes``, named as `StyleConfig` takes them."""
        return StyleConfig(**{**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}, **changes})

    @property
    def resolved_temporal_weight(self) -> float:
        if self.video.temporal_weight is not None:
            return self.video.temporal_weight
        if self.method == "gatys" and self.loss.loss_units == "raw":
            return RAW_TEMPORAL_WEIGHT
        return TEMPORAL_WEIGHTS[self.method]

    def _check(self) -> None:
        """The shared fields, and what spans sections (each section checks itself)."""
        _check(
            [
                (self.max_size >= 16, f"max size must be at least 16 px, got {self.max_size}"),
                (self.seed >= 0, f"seed must be an integer >= 0, got {self.seed}"),
            ]
        )
        _check_choices(self)
        _check_numbers({"style scale": self.style_scale}, positive=("style scale",))
        if self.fast.network_styles is not None:
            what = "built-in styles" if self.fast.model is None else "a trained model's styles (--model)"
            if self.method != "fast":
                raise UsageError(f"{what} belong to the fast method; add --method fast")
            if self.fast.style_strength != 1.0:
                raise UsageError(f"--style-strength interpolates style images' vectors, not {what}")
            if self.preserve_color == "histogram":
                raise UsageError(f"histogram colour matching needs style images, not {what}")
        temporal = self.resolved_temporal_weight
        _check_numbers({"temporal weight": temporal})
        if self.method == "fast" and temporal > 1:
            raise UsageError(
                f"with --method fast the temporal weight is a share, 0 to 1; got {self.video.temporal_weight}"
            )
        start = self.optimize.multiscale_min
        if start is not None and not 16 <= start <= self.max_size:
            raise UsageError(f"multiscale start must be between 16 and max size {self.max_size}, got {start}")


# The smallest tile: the VGG's deepest default layer (conv5_1) sees 156 px, so smaller tiles are
# mostly border.
MIN_TILE = 64

# The default `StyleConfig.temporal_weight` of each method, measured on noisy synthetic clips
# (benchmarks/video_consistency.py, docs/video.md). fast 0.6: the warping error fell to 0.31-0.41x
# of frame by frame's. gatys: the temporal loss is a mean over [0, 1] pixel values, the VGG terms
# were then in raw feature units, so up to 1e5 it changed nothing (0.48x, all from the warped start);
# 1e7 gave 0.30-0.38x, 1e8 0.13-0.19x with the style loss within 1 %. In ratio units (the default),
# on the "pan" clip: 20 gave 0.16x (style loss +0.1 %), 200 0.07x (+0.9 %), 2000 0.05x (+2.4 %);
# 200 is the strongest within 1 % (benchmarks/results/video_consistency_gatys_ratio_units.json).
TEMPORAL_WEIGHTS: dict[str, float] = {"fast": 0.6, "gatys": 200.0}
RAW_TEMPORAL_WEIGHT = 1e8  # "gatys" with loss_units="raw" (the presets): as measured in raw units


def _field_types(cls) -> dict[str, object]:
    return typing.get_type_hints(cls)


def _literal_of(annotation) -> tuple[str, ...] | None:
    """The allowed values of a ``Literal[...]`` (or ``Literal[...] | None``) annotation."""
    if typing.get_origin(annotation) is Literal:
        return get_args(annotation)
    for arg in get_args(annotation):
        if typing.get_origin(arg) is Literal:
            return get_args(arg)
    return None


# Every field of a stylization by its name: section ("" for the shared fields) and type.
_SHARED = {name: kind for name, kind in _field_types(StyleConfig).items() if name not in SECTIONS}
FIELDS: dict[str, tuple[str, object]] = {
    **{name: ("", kind) for name, kind in _SHARED.items()},
    **{name: (section, kind) for section, cls in SECTIONS.items() for name, kind in _field_types(cls).items()},
}
"""Field name -> (its section, "" for the shared fields; its type). Names are unique across sections."""

CHOICE_FIELDS: dict[str, tuple[str, ...]] = {
    name: values for name, (_, kind) in FIELDS.items() if (values := _literal_of(kind)) is not None
}
"""Every `StyleConfig` field with a fixed set of values, and those values."""


def field_path(name: str) -> tuple[str, str]:
    """``"iterations"`` or ``"optimize.iterations"`` -> ``("optimize", "iterations")``; a shared
    field's section is ""; a section's own name is ``("", section)``. KeyError if there is none."""
    section, dot, field = name.rpartition(".")
    if name in SECTIONS:
        return "", name
    if field not in FIELDS or (dot and FIELDS[field][0] != section):
        raise KeyError(name)
    return FIELDS[field][0], field


def is_field(name: str) -> bool:
    """Whether ``name`` names a field, by its name or its path (a section's own name does not)."""
    if name in SECTIONS:
        return False
    try:
        field_path(name)
    except KeyError:
        return False
    return True


def choices(field: str) -> str:
    """'lbfgs or adam': the values of a choice field, for help texts."""
    values = CHOICE_FIELDS[field]
    return ", ".join(values[:-1]) + f" or {values[-1]}" if len(values) > 1 else values[0]


def default(field: str) -> object:
    """The default of a `StyleConfig` field, by name."""
    section, name = field_path(field)
    return getattr(getattr(_DEFAULTS, section) if section else _DEFAULTS, name)


_DEFAULTS = StyleConfig()
