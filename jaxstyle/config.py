"""Every default of a stylization in one frozen dataclass, and the published presets.

The CLI reads its defaults from `StyleConfig` rather than repeating them. Presets are plain
dicts of overrides so that what each one changes is visible at a glance.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

from jaxstyle.errors import UsageError
from jaxstyle.vgg import canonical_layer

Optimizer = Literal["lbfgs", "adam"]
Init = Literal["content", "noise", "blend", "gray", "image"]
StyleStatistic = Literal["gram", "sliced_wasserstein"]
PreserveColor = Literal["none", "luminance", "histogram", "knn"]
Pooling = Literal["max", "avg"]
Precision = Literal["float32", "bfloat16"]
TVKind = Literal["l1", "l2"]

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


@dataclass(frozen=True)
class StyleConfig:
    """Settings of one stylization. Units and normalisations are those of `jaxstyle.losses`."""

    # Size: the long side of the output, and the style image's long side relative to it.
    max_size: int = 512
    style_scale: float = 1.0
    # Coarse-to-fine: start at this long side and grow by sqrt(2) up to max_size; None = one scale.
    multiscale_min: int | None = None
    iterations: int = 300  # at the final scale (and at every scale, unless coarse_iterations is set)
    # Iterations at each scale before the final one; None: `iterations`. Coarse scales are cheap
    # (a quarter of the pixels per halving), and what they cannot fix, the final scale must.
    coarse_iterations: int | None = None

    optimizer: Optimizer = "lbfgs"
    learning_rate: float | None = None  # None: 1.0 for L-BFGS (unit step), 0.02 for Adam
    adam_b1: float = 0.9
    adam_b2: float = 0.999
    adam_eps: float = 1e-8
    lbfgs_memory: int = 10

    content_layers: tuple[str, ...] = ("relu4_2",)
    content_weight: float = 5.0
    style_layers: tuple[str, ...] = STYLE_LAYERS
    style_layer_weights: tuple[float, ...] | None = None  # None: equal weights
    # None: 500 for Gram; 5e4 for sliced Wasserstein, whose loss is ~100x smaller at equal effect.
    style_weight: float | None = None
    style_statistic: StyleStatistic = "gram"
    tv_weight: float = 30.0
    tv_kind: TVKind = "l2"
    pooling: Pooling = "avg"
    # bfloat16 runs the VGG convolutions in bf16 (losses and the image stay float32): ~2x less
    # memory traffic; worth it on GPUs/TPUs and CPUs with AVX512_BF16/AMX.
    precision: Precision = "float32"

    init: Init = "content"
    init_noise_fraction: float = 0.7  # "blend" init: (1 - f) * content + f * noise
    seed: int = 0
    preserve_color: PreserveColor = "none"
    clip: bool = True  # clip the image to [0, 1] after each step

    # Iterations between progress reports: also the steps of one compiled dispatch (a lax.scan),
    # so the host syncs only to report. On CPU 10 steps per dispatch run 7-14 % faster than one.
    report_every: int = 10

    def replace(self, **changes) -> StyleConfig:
        return dataclasses.replace(self, **changes)

    @property
    def resolved_learning_rate(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 1.0 if self.optimizer == "lbfgs" else 0.02

    @property
    def resolved_style_weight(self) -> float:
        if self.style_weight is not None:
            return self.style_weight
        return 500.0 if self.style_statistic == "gram" else 5e4

    @property
    def resolved_style_layer_weights(self) -> tuple[float, ...]:
        if self.style_layer_weights is None:
            return (1.0,) * len(self.style_layers)
        return self.style_layer_weights

    def validate(self) -> StyleConfig:
        """Raise UsageError with one line for the first setting that makes no sense."""
        checks = (
            (self.max_size >= 16, f"max size must be at least 16 px, got {self.max_size}"),
            (self.iterations >= 1, f"iterations must be at least 1, got {self.iterations}"),
            (
                self.coarse_iterations is None or self.coarse_iterations >= 1,
                f"coarse iterations must be at least 1, got {self.coarse_iterations}",
            ),
            (self.report_every >= 1, "report_every must be at least 1"),
            (self.lbfgs_memory >= 1, "lbfgs_memory must be at least 1"),
            (self.optimizer in ("lbfgs", "adam"), f"unknown optimizer {self.optimizer!r}; choose lbfgs or adam"),
            (self.init in ("content", "noise", "blend", "gray", "image"), f"unknown init {self.init!r}"),
            (self.style_statistic in ("gram", "sliced_wasserstein"), f"unknown style statistic {self.style_statistic!r}"),
            (self.preserve_color in ("none", "luminance", "histogram", "knn"), f"unknown colour mode {self.preserve_color!r}"),
            (self.pooling in ("max", "avg"), f"unknown pooling {self.pooling!r}; choose max or avg"),
            (self.tv_kind in ("l1", "l2"), f"unknown TV kind {self.tv_kind!r}; choose l1 or l2"),
            (self.precision in ("float32", "bfloat16"), f"unknown precision {self.precision!r}; choose float32 or bfloat16"),
            (bool(self.style_layers), "at least one style layer is needed"),
            (0.0 <= self.init_noise_fraction <= 1.0, "init noise fraction must be in [0, 1]"),
            (
                len(self.resolved_style_layer_weights) == len(self.style_layers),
                f"{len(self.style_layers)} style layers but {len(self.resolved_style_layer_weights)} layer weights",
            ),
        )
        for ok, message in checks:
            if not ok:
                raise UsageError(message)
        numbers = {
            "style scale": self.style_scale,
            "content weight": self.content_weight,
            "style weight": self.resolved_style_weight,
            "TV weight": self.tv_weight,
            "learning rate": self.resolved_learning_rate,
            "Adam beta1": self.adam_b1,
            "Adam beta2": self.adam_b2,
            "Adam epsilon": self.adam_eps,
            **{f"style layer weight {i + 1}": w for i, w in enumerate(self.resolved_style_layer_weights)},
        }
        for name, value in numbers.items():
            if not math.isfinite(value) or value < 0:
                raise UsageError(f"{name} must be a finite number >= 0, got {value}")
        for name, value in (
            ("style scale", self.style_scale),
            ("learning rate", self.resolved_learning_rate),
            ("Adam epsilon", self.adam_eps),
        ):
            if value <= 0:
                raise UsageError(f"{name} must be greater than 0, got {value}")
        if self.seed < 0:
            raise UsageError(f"seed must be an integer >= 0, got {self.seed}")
        if self.multiscale_min is not None and not 16 <= self.multiscale_min <= self.max_size:
            raise UsageError(f"multiscale start must be between 16 and max size {self.max_size}, got {self.multiscale_min}")
        for layer in (*self.content_layers, *self.style_layers):
            canonical_layer(layer)
        return self


def _tf_tutorial_layer_weights() -> tuple[float, ...]:
    # TF tutorial: style_weight 1e-2 / 5 layers on Grams normalised by M only, i.e. C^2 x ours.
    channels = (64, 128, 256, 512, 512)
    return tuple(c * c * 1e-2 / 5 for c in channels)


PRESETS: dict[str, dict[str, object]] = {
    # jaxstyle's own defaults (see StyleConfig).
    "jaxstyle": {},
    # jcjohnson/neural-style defaults: L-BFGS, content 5, style 100, TV 1e-3 on 0..255 pixels with
    # 1/2 sum of squares (= 1e-3 * 255^2 / 2 in our units), random init, max pooling, 1000 iterations.
    "neural-style": {
        "optimizer": "lbfgs",
        "iterations": 1000,
        "content_weight": 5.0,
        "style_weight": 100.0,
        "style_layer_weights": None,
        "tv_weight": 1e-3 * 255.0**2 / 2,
        "tv_kind": "l2",
        "init": "noise",
        "pooling": "max",
        "content_layers": ("relu4_2",),
        "style_layers": STYLE_LAYERS,
    },
    # The TensorFlow "Neural style transfer" tutorial: Adam(0.02, 0.99, eps 0.1), style 1e-2,
    # content 1e4, TV 30 (tf.image.total_variation = L1 sum), content init, content block5_conv2.
    "tf-tutorial": {
        "optimizer": "adam",
        "iterations": 1000,
        "learning_rate": 0.02,
        "adam_b1": 0.99,
        "adam_eps": 0.1,
        "content_weight": 1e4,
        "style_weight": 1.0,
        "style_layer_weights": _tf_tutorial_layer_weights(),
        "tv_weight": 30.0,
        "tv_kind": "l1",
        "init": "content",
        "pooling": "max",
        "content_layers": ("block5_conv2",),
        "style_layers": ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1"),
    },
}


def preset(name: str, **overrides) -> StyleConfig:
    """A `StyleConfig` from a named preset with further overrides."""
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return StyleConfig(**{**PRESETS[name], **overrides})
