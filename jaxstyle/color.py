"""Colour preservation around the optimisation (numpy; Gatys et al. 2016, "Preserving Color in
Neural Artistic Style Transfer").

* luminance-only transfer: stylize the luminance channels, then put the content's chroma back;
* colour histogram matching: recolour the style image to the content's colour mean and covariance
  before the transfer;
* KNN Lab transfer (`jaxstyle.color_knn`): recolour the result from the content afterwards.
"""

from __future__ import annotations

import numpy as np

# RGB -> YIQ (NTSC), as Gatys et al. 2016 use for luminance-only transfer.
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float64)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)


def rgb_to_yiq(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) RGB -> (..., 3) YIQ, float64."""
    return rgb.astype(np.float64) @ _RGB_TO_YIQ.T


def yiq_to_rgb(yiq: np.ndarray) -> np.ndarray:
    return yiq @ _YIQ_TO_RGB.T


def luminance_image(rgb: np.ndarray, match_to: np.ndarray | None = None) -> np.ndarray:
    """Grey RGB image (H, W, 3) of the luminance of ``rgb``.

    With ``match_to``, the luminance is shifted and scaled to that image's luminance mean and
    standard deviation (the paper's luminance histogram matching of the style to the content).
    """
    y = rgb_to_yiq(rgb)[..., 0]
    if match_to is not None:
        target = rgb_to_yiq(match_to)[..., 0]
        y = (y - y.mean()) * (target.std() / max(y.std(), 1e-8)) + target.mean()
    return np.repeat(np.clip(y, 0.0, 1.0)[..., None], 3, axis=-1).astype(np.float32)


def restore_chroma(stylized: np.ndarray, content: np.ndarray) -> np.ndarray:
    """Luminance of ``stylized`` with the I/Q chroma of ``content`` (same (H, W, 3) shape)."""
    yiq = rgb_to_yiq(content)
    yiq[..., 0] = rgb_to_yiq(stylized)[..., 0]
    return np.clip(yiq_to_rgb(yiq), 0.0, 1.0).astype(np.float32)


def _sqrtm_and_inverse(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values, vectors = np.linalg.eigh(cov)
    values = np.maximum(values, 1e-8)
    root = (vectors * np.sqrt(values)) @ vectors.T
    inverse_root = (vectors / np.sqrt(values)) @ vectors.T
    return root, inverse_root


def match_color_histogram(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Affinely recolour ``source`` (H, W, 3) so its RGB mean and covariance equal ``target``'s.

    x' = A (x - mu_s) + mu_t with A = Sigma_t^(1/2) Sigma_s^(-1/2), the symmetric-root variant of
    Gatys et al. 2016, eq. 2 (it maps the source covariance exactly onto the target's).
    """
    src = source.reshape(-1, 3).astype(np.float64)
    tgt = target.reshape(-1, 3).astype(np.float64)
    mu_s, mu_t = src.mean(0), tgt.mean(0)
    root_t, _ = _sqrtm_and_inverse(np.cov(tgt, rowvar=False) + 1e-6 * np.eye(3))
    _, inverse_root_s = _sqrtm_and_inverse(np.cov(src, rowvar=False) + 1e-6 * np.eye(3))
    recoloured = (src - mu_s) @ (root_t @ inverse_root_s).T + mu_t
    return np.clip(recoloured, 0.0, 1.0).reshape(source.shape).astype(np.float32)
