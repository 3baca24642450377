"""What the web app's tests share: tiny images as file bytes, settings, and waiting for a job."""

from __future__ import annotations

import base64
import io
import time

import numpy as np
from PIL import Image

PORT = 8765
ORIGIN = f"http://127.0.0.1:{PORT}"
SIZE = 64  # every job's long side: the optimisation's programs compile once per test session


def png_bytes(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "PNG")
    return buffer.getvalue()


def jpeg_bytes(rgb: np.ndarray, quality: int = 92) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def half_mask(height: int = 48, width: int = 64) -> np.ndarray:
    """A painted mask as the page sends it: white over the left half, black over the right."""
    mask = np.zeros((height, width), np.uint8)
    mask[:, : width // 2] = 255
    return mask


def photo_rgb(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth picture with some texture: gradients and a disc, plus a little noise."""
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    disc = ((x - 0.5) ** 2 + (y - 0.35) ** 2 < 0.05).astype(float)
    rgb = np.stack([x, y, 0.5 * disc + 0.3], axis=-1)
    rgb += np.random.default_rng(seed).normal(0, 0.03, rgb.shape)
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


def style_rgb(side: int = 48) -> np.ndarray:
    """Diagonal colour stripes."""
    y, x = np.mgrid[0:side, 0:side]
    stripes = ((x + y) // 6) % 3
    palette = np.array([[220, 60, 40], [30, 80, 200], [250, 210, 60]], np.uint8)
    return palette[stripes]


def wait_for_job(client, job_id: str, timeout: float = 120.0, states=("done", "failed", "cancelled")) -> dict:
    """Poll the job list until the job reaches one of ``states``; its summary."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = next(item for item in client.get("/api/jobs").json() if item["id"] == job_id)
        if job["state"] in states:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still {job['state']} after {timeout} s")
