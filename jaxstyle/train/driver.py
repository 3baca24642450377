"""`train`: fine-tune the fast style network for one or more styles on a folder of photos.

The run: split the photos (`data.split_photos`), compute each style's targets once
(`loss.style_targets`), start from Magenta's arbitrary transformer with each style's CIN rows taken
from its predicted style vector (`network.from_arbitrary`), or from random weights, then Adam steps
(`step.train_step`) on augmented crops (`data.Crops`), with a checkpoint every few steps and at an
interrupt, sample grids of held-out photos, and at the end the network file with its provenance.
Silent: it reports through ``callback`` (the events below); the CLI draws them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jaxstyle.config import StyleConfig
from jaxstyle.errors import UsageError
from jaxstyle.io.files import check_output_path, file_sha256
from jaxstyle.nets.magenta_weights import read_trained_info
from jaxstyle.train.checkpoint import checkpoint_path, load_checkpoint, read_digest, save_checkpoint
from jaxstyle.train.data import Crops, split_photos
from jaxstyle.train.settings import INIT_CHOICES, TRAIN_LOSS_DEFAULTS, TrainConfig


@dataclass(frozen=True)
class TrainStarted:
    start_step: int  # > 0 when resumed from a checkpoint
    steps: int
    photos: int
    held_out: int
    unreadable: int


@dataclass(frozen=True)
class TrainStep:
    step: int  # steps done
    steps: int
    terms: dict  # the batch's mean loss terms and ratios, and "total"
    seconds: float  # this step's wall time


@dataclass(frozen=True)
class SampleSaved:
    step: int
    path: Path
    held_out_terms: dict | None  # mean terms over the held-out photos, if any


@dataclass(frozen=True)
class CheckpointSaved:
    step: int
    path: Path


@dataclass(frozen=True)
class TrainFinished:
    path: Path
    steps: int
    seconds: float


TrainEvent = TrainStarted | TrainStep | SampleSaved | CheckpointSaved | TrainFinished


def train(
    style_paths: Sequence[str | Path],
    photos: str | Path,
    output: str | Path,
    config: TrainConfig | None = None,
    style_config: StyleConfig | None = None,
    *,
    overwrite: bool = False,
    callback: Callable[[TrainEvent], None] | None = None,
) -> Path:
    """Train a network for ``style_paths`` on the photos in ``photos`` and write it to ``output``.

    ``style_config`` gives the loss (its ``loss`` section: weights, layers, units) and the style
    scale (default: `settings.TRAIN_LOSS_DEFAULTS` over `StyleConfig`'s); ``config`` everything else. A run stopped by an interrupt (or killed) continues from
    its checkpoint (`checkpoint.checkpoint_path`) when the same command runs again; other settings
    are refused with one line. Returns the written file.
    """
    config = config or TrainConfig()
    style_config = style_config or StyleConfig().replace(**TRAIN_LOSS_DEFAULTS)
    emit = callback or (lambda event: None)
    if not style_paths:
        raise UsageError("name at least one style image")
    style_images = _load_styles(style_paths)
    from_file = config.init not in INIT_CHOICES
    if from_file:
        read_trained_info(config.init)  # a missing file or another format: one line, before any work
    output = check_output_path(
        output, overwrite=overwrite, inputs=[*style_paths, *([config.init] if from_file else [])]
    )
    split = split_photos(photos, config.held_out)
    styles = [{"name": Path(p).stem, "sha256": file_sha256(p)} for p in style_paths]
    record = _record(config, style_config, styles, split)
    if from_file:
        record["init_sha256"] = file_sha256(config.init)
    digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]
    ckpt = checkpoint_path(output)
    if ckpt.exists() and read_digest(ckpt) != digest:
        raise UsageError(f"{ckpt} belongs to a run with other settings, styles or photos; remove it to start again")

    from jaxstyle.train import session  # loads JAX and flax

    run = session.Session(style_images, config, style_config)
    state = run.initial_state()
    if ckpt.exists():
        state = load_checkpoint(ckpt, state)
    start = int(state.step)
    emit(TrainStarted(start, config.steps, len(split.train), len(split.held_out), len(split.unreadable)))
    crops = Crops(split.train, len(style_images), config)
    began = time.perf_counter()
    interrupted = threading.Event()
    step = start
    try:
        with _deferred_interrupt(interrupted):
            while step < config.steps and not interrupted.is_set():
                tick = time.perf_counter()
                batch, style_ids = crops.batch(step)
                state, terms = run.step(state, batch, style_ids)
                step += 1
                emit(TrainStep(step, config.steps, terms, time.perf_counter() - tick))
                if step % config.checkpoint_every == 0 and step < config.steps:
                    emit(CheckpointSaved(step, save_checkpoint(ckpt, state, digest)))
                if config.sample_every and (step % config.sample_every == 0 or step == config.steps):
                    path, held = run.sample(state, split.held_out or split.train[:2], output, step)
                    emit(SampleSaved(step, path, held if split.held_out else None))
        if interrupted.is_set():
            emit(CheckpointSaved(step, save_checkpoint(ckpt, state, digest)))
            raise KeyboardInterrupt
    finally:
        crops.close()
    training = {**record, "steps_done": step, "seconds": round(time.perf_counter() - began, 1)}
    written = run.write(output, state, styles, training, overwrite=overwrite)
    ckpt.unlink(missing_ok=True)
    emit(TrainFinished(written, step, time.perf_counter() - began))
    return written


def _load_styles(style_paths) -> list[np.ndarray]:
    from jaxstyle.io.decode import load_image

    return [load_image(path).rgb for path in style_paths]


def _record(config: TrainConfig, style_config: StyleConfig, styles, split) -> dict:
    """What the network file's provenance says and the checkpoint's digest covers."""
    import dataclasses

    return {
        "train": config.record(),
        "loss": dataclasses.asdict(style_config.loss),
        "style_scale": style_config.style_scale,
        "styles": styles,
        "photos": [p.name for p in split.train],
        "held_out": [p.name for p in split.held_out],
    }


@contextlib.contextmanager
def _deferred_interrupt(flag: threading.Event):
    """Ctrl-C sets ``flag`` instead of raising, so that the step in flight ends and its state is
    checkpointed (the step donates the previous state's buffers: an exception mid-step would lose
    both). Only in the main thread; elsewhere interrupts behave as usual."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, lambda signum, frame: flag.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
