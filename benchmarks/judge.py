"""An independent judge of a stylization: VGG19 in plain NumPy, apart from jaxstyle's loss code.

It shares only the weights file (data) with jaxstyle: its own forward pass (im2col + BLAS
matmuls, zero 'SAME' padding, **max** pooling as trained), its own preprocessing (Caffe BGR,
mean subtracted) and its own fixed losses, so a change to jaxstyle's losses, pooling or layer
weights cannot make its own results look better to it.

* **content ratio**: the output's content loss (relu4_2, mean squared difference from the
  content's features) over the same loss of the style image resized to the content's shape.
  0 = the content untouched, 1 = as far from it as the style image is.
* **style ratio**: the output's style loss (relu1_1..relu5_1, Gram / (HWC), mean squared
  difference from the style image's Grams, layers equally weighted) over the content image's.
  The style image is first resized to the output's long side, the scale a run matches by default.
  0 = the style's statistics exactly, 1 = no more styled than the photo.

    python benchmarks/judge.py OUTPUT CONTENT STYLE    # prints the two ratios as JSON
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

CONTENT_LAYER = "relu4_2"
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
_BLOCKS = ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4))
MEAN_BGR = np.array([103.939, 116.779, 123.68], np.float32)
ROWS_PER_CHUNK = 64  # im2col a few rows at a time: memory stays small at 1024 px


def load_vgg() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"block1_conv1": (kernel (3, 3, I, O), bias (O,))}``: the embedded weights, as data."""
    from jaxstyle.weights import load_weights

    return {name: (np.asarray(p["kernel"]), np.asarray(p["bias"])) for name, p in load_weights().params.items()}


def _conv_relu(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    h, w, c = x.shape
    padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    flat_kernel = kernel.reshape(9 * c, -1).astype(np.float32)
    out = np.empty((h, w, kernel.shape[-1]), np.float32)
    for top in range(0, h, ROWS_PER_CHUNK):
        rows = min(ROWS_PER_CHUNK, h - top)
        patches = np.concatenate(
            [padded[top + dy : top + dy + rows, dx : dx + w] for dy in range(3) for dx in range(3)], axis=-1
        )
        out[top : top + rows] = (patches.reshape(rows * w, 9 * c) @ flat_kernel).reshape(rows, w, -1)
    out += bias
    return np.maximum(out, 0.0)


def _max_pool(x: np.ndarray) -> np.ndarray:
    h, w, c = x.shape
    x = x[: h // 2 * 2, : w // 2 * 2]
    return x.reshape(h // 2, 2, w // 2, 2, c).max(axis=(1, 3))


def features(vgg, image: np.ndarray) -> dict[str, np.ndarray]:
    """relu activations of an (H, W, 3) RGB image in [0, 1], up to relu5_1."""
    x = image[..., ::-1].astype(np.float32) * 255.0 - MEAN_BGR
    wanted = {CONTENT_LAYER, *STYLE_LAYERS}
    found = {}
    for block, count in _BLOCKS:
        for index in range(1, count + 1):
            x = _conv_relu(x, *vgg[f"block{block}_conv{index}"])
            name = f"relu{block}_{index}"
            if name in wanted:
                found[name] = x
            if wanted <= set(found):
                return found
        x = _max_pool(x)
    return found


def gram(feature: np.ndarray) -> np.ndarray:
    h, w, c = feature.shape
    flat = feature.reshape(h * w, c).astype(np.float64)
    return flat.T @ flat / (h * w * c)


def _resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    planes = [Image.fromarray(image[..., k].astype(np.float32), mode="F") for k in range(3)]
    return np.stack([np.asarray(p.resize(shape[::-1], Image.BICUBIC)) for p in planes], axis=-1).clip(0, 1)


def ratios(output: np.ndarray, content: np.ndarray, style: np.ndarray, vgg=None) -> dict[str, float]:
    """``{"style_ratio", "content_ratio"}`` of ``output`` (any size: the content is resized to it)."""
    vgg = vgg or load_vgg()
    return Reference(content, style, output.shape[:2], vgg).ratios(output)


class Reference:
    """What a content/style pair is judged against at one output shape, computed once, so that
    many outputs of the pair (a training curve's steps) each cost one VGG pass."""

    def __init__(self, content: np.ndarray, style: np.ndarray, shape: tuple[int, int], vgg) -> None:
        self.vgg, self.shape = vgg, tuple(shape)
        content = _resize(content, self.shape) if content.shape[:2] != self.shape else content
        self.content = features(vgg, content)[CONTENT_LAYER]
        # The style at the output's long side, as a run sees it with the default --style-scale 1:
        # its statistics at another scale are not what the run was asked to match.
        side = max(self.shape)
        style_shape = tuple(max(1, round(n * side / max(style.shape[:2]))) for n in style.shape[:2])
        f_style = features(vgg, _resize(style, style_shape) if style_shape != style.shape[:2] else style)
        self.targets = {name: gram(f_style[name]) for name in STYLE_LAYERS}
        self.content_norm = self._content_loss(features(vgg, _resize(style, self.shape)))
        self.style_norm = self._style_loss(features(vgg, content))

    def _content_loss(self, f) -> float:
        return float(np.mean((f[CONTENT_LAYER] - self.content) ** 2))

    def _style_loss(self, f) -> float:
        return float(np.mean([np.mean((gram(f[name]) - self.targets[name]) ** 2) for name in STYLE_LAYERS]))

    def ratios(self, output: np.ndarray) -> dict[str, float]:
        if output.shape[:2] != self.shape:
            raise ValueError(f"output {output.shape[:2]} is not the reference's {self.shape}")
        f = features(self.vgg, output)
        return {
            "style_ratio": self._style_loss(f) / self.style_norm,
            "content_ratio": self._content_loss(f) / self.content_norm,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="the stylized image")
    parser.add_argument("content", type=Path, help="the content image it was made from")
    parser.add_argument("style", type=Path, help="the style image it was made with")
    args = parser.parse_args()
    from jaxstyle.io.decode import load_image

    output, content, style = (load_image(path).rgb for path in (args.output, args.content, args.style))
    print(json.dumps(ratios(output, content, style)))


if __name__ == "__main__":
    main()
