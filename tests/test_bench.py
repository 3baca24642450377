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
