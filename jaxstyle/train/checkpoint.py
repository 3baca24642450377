"""A training run's checkpoint: the whole train state (parameters, Adam's moments, the step) in one
safetensors file written atomically by the project's writer, with the run's settings digest.

Why not orbax (which flax installs): the state is a few MB on one host; one atomic file keeps the
project's guarantee that a file is either whole or absent, reads back without running code, and
saves in milliseconds (docs/train.md has the comparison). The data order needs nothing saved: each
step's crops follow from the seed and the step (`jaxstyle.train.data`).
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
from flax import serialization
from flax.traverse_util import flatten_dict, unflatten_dict
from safetensors import SafetensorError, safe_open

from jaxstyle.errors import WeightsError, one_line
from jaxstyle.weights import save_weights

FORMAT = "jaxstyle-train-checkpoint"


def checkpoint_path(output: str | Path) -> Path:
    """Where the run that writes ``output`` (``net.safetensors``) keeps its checkpoint
    (``net.checkpoint.safetensors``)."""
    output = Path(output)
    return output.with_name(f"{output.stem}.checkpoint.safetensors")


def save_checkpoint(path: str | Path, state, digest: str, extra: dict | None = None) -> Path:
    """Write ``state`` (a flax `TrainState`) and the run's settings ``digest``, replacing the last."""
    flat = flatten_dict(serialization.to_state_dict(jax.device_get(state)), sep="/")
    tensors = {name: np.asarray(value) for name, value in flat.items()}
    metadata = {"format": FORMAT, "digest": digest, "extra": json.dumps(extra or {})}
    return save_weights(path, tensors, metadata, overwrite=True)


def read_digest(path: str | Path) -> str:
    with _open(path) as reader:
        return (reader.metadata() or {}).get("digest", "")


def load_checkpoint(path: str | Path, template):
    """The train state saved at ``path``, laid out as ``template`` (a state of the same run)."""
    with _open(path) as reader:
        flat = {name: reader.get_tensor(name) for name in reader.keys()}  # noqa: SIM118 - not a dict
    expected = flatten_dict(serialization.to_state_dict(template), sep="/")
    # Scalars (the step, Adam's count) come back as (1,): the writer stores arrays of ndim >= 1.
    if set(flat) != set(expected) or any(np.size(flat[k]) != np.size(v) for k, v in expected.items()):
        raise WeightsError(f"{path}: the checkpoint does not fit this network; remove it to start again")
    flat = {k: flat[k].reshape(np.shape(v)) for k, v in expected.items()}
    return serialization.from_state_dict(template, unflatten_dict(flat, sep="/"))


class _open:
    def __init__(self, path) -> None:
        self.path = path

    def __enter__(self):
        try:
            self._context = safe_open(str(self.path), framework="numpy")
            reader = self._context.__enter__()
        except (OSError, SafetensorError) as error:
            raise WeightsError(f"{self.path}: not a training checkpoint ({one_line(error)})") from None
        if (reader.metadata() or {}).get("format") != FORMAT:
            self._context.__exit__(None, None, None)
            raise WeightsError(f"{self.path}: not a training checkpoint")
        return reader

    def __exit__(self, *exc):
        return self._context.__exit__(*exc)
