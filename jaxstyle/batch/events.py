"""What a batch run reports (the library is silent; the CLI draws these)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from jaxstyle.methods import BucketProgress

Status = Literal["started", "done", "failed"]

#: Progress of the batch in flight, as the method reports it.
BatchStep = BucketProgress


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


BatchEvent = BatchStarted | BatchStep | ImageFinished
