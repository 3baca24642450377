"""`jaxstyle.bench.run_case` on a tiny image: both convolution algorithms, same numbers, no retrace."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxstyle.bench import BenchCase, run_case, step_gflop
from jaxstyle.errors import UsageError
from jaxstyle.weights import load_weights


@pytest.fixture(scope="module")
def params():
    return jax.device_put(load_weights().params)


def test_winograd_and_direct_steps_agree(params):
    results = {
        conv: run_case(BenchCase(32, 48, conv=conv), params, steps=2, dispatches=1) for conv in ("winograd", "direct")
    }
    assert results["winograd"].conv == "winograd" and results["direct"].conv == "direct"
    for r in results.values():
        assert not r.retraced
        assert r.compile_s > 0 and r.step_ms > 0 and np.isfinite(r.final_loss)
        assert r.gflop_per_step == pytest.approx(step_gflop(32, 48))
    # Same random images (seed), same four steps (a warm-up dispatch and a timed one): the loss differs only by float32 rounding.
    assert results["winograd"].final_loss == pytest.approx(results["direct"].final_loss, rel=1e-3)


def test_auto_picks_winograd_on_cpu_only(params):
    result = run_case(BenchCase(32, 32), params, steps=1, dispatches=1)
    assert result.conv == ("winograd" if jax.default_backend() == "cpu" else "direct")


def test_unknown_conv_is_a_usage_error(params):
    with pytest.raises(UsageError, match="fft"):
        run_case(BenchCase(32, 32, conv="fft"), params, steps=1)


def test_fast_flop_model_counts_every_convolution():
    """25,056 FLOP per content pixel: the transformer's 16 convolutions at their resolutions."""
    from jaxstyle.bench import _FAST_CONVS, FAST_FLOP_PER_PIXEL
    from jaxstyle.nets import magenta_weights

    shapes = magenta_weights.arbitrary_shapes()
    names = [n for n in shapes if n.startswith("transformer/") and n.endswith("/kernel")]
    convs = [shapes[n] for n in names if n.split("/")[-2] in ("conv", "conv1", "conv2")]
    assert [(k, cin, cout) for k, _, cin, cout in convs] == [(k, cin, cout) for k, cin, cout, _ in _FAST_CONVS]
    assert FAST_FLOP_PER_PIXEL == 25_056


def test_bench_method_fast_json(tmp_path, capsys):
    import json

    from jaxstyle.cli.app import main

    out = tmp_path / "fast.json"
    assert main(["bench", "--method", "fast", "--size", "32x48", "--batch", "1,2", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["method"] == "fast" and [r["batch"] for r in data["results"]] == [1, 2]
    for r in data["results"]:
        assert r["call_ms"] > 0 and r["compile_s"] > 0 and r["gflops"] > 0
