"""`jaxstyle.peers`: the PyTorch and TensorFlow steps of `jaxstyle bench --compare`.

Neither framework is a dependency, so the equal-work check runs only where one is installed (it
was run with torch 2.13 and tensorflow-cpu 2.21); the missing-framework path always runs, with the
framework hidden from the child process.
"""

from __future__ import annotations

import importlib.util
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from jaxstyle.cli.app import main

from jaxstyle.config_sources import preset
from jaxstyle.objective import LossSpec, content_targets, style_targets, total_loss, whole_norms
from jaxstyle.peers import PEERS, PeerUnavailable, check_peer, run_peer
from jaxstyle.weights import load_weights


@pytest.fixture(scope="module")
def params():
    return load_weights().params


@pytest.fixture
def hide_peers(tmp_path, monkeypatch):
    """A PYTHONPATH entry that makes `import torch` and `import tensorflow` fail in child processes."""
    for name in PEERS:
        (tmp_path / f"{name}.py").write_text("raise ImportError('hidden by the test')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))


def test_missing_framework_is_reported(params, hide_peers):
    image = np.full((16, 16, 3), 0.5, np.float32)
    for peer in PEERS:
        with pytest.raises(PeerUnavailable, match=f"{peer} is not installed .*pip install"):
            check_peer(peer)
        with pytest.raises(PeerUnavailable, match=f"{peer} is not installed .*pip install"):
            run_peer(peer, params, image, image, steps=1)


def test_cli_compare_without_the_framework_fails_first_in_one_line(hide_peers, capsys):
    assert main(["bench", "--size", "16", "--optimizer", "adam", "--steps", "1", "--compare", "torch"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [f"error: --compare: torch is not installed in {sys.executable} (pip install torch)"]


@pytest.mark.parametrize("peer", PEERS)
def test_peer_step_does_the_same_work(peer, params):
    """The peer's first loss equals jaxstyle's tf-tutorial loss (bench's step) on the same images."""
    if importlib.util.find_spec(peer) is None:
        pytest.skip(f"{peer} is not installed")
    rng = np.random.default_rng(0)
    content, style = (rng.uniform(size=(40, 56, 3)).astype(np.float32) for _ in range(2))
    spec = LossSpec.from_config(preset("tf-tutorial", content_layers=("block4_conv2",)))
    targets = {
        "content": content_targets(params, jnp.asarray(content), spec),
        "style": style_targets(params, jnp.asarray(style), spec, (40, 56)),
    }
    targets["norm"] = whole_norms(params, content, [style], (1.0,), targets, spec)  # ratios only: raw units
    ours = float(total_loss(params, jnp.asarray(content), targets, spec)[0])
    result = run_peer(peer, params, content, style, steps=2, warmup=1)
    assert (result.peer, result.height, result.width) == (peer, 40, 56)
    assert result.step_ms > 0
    assert result.first_loss == pytest.approx(ours, rel=1e-5)
