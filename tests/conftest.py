"""Strict test setup shared by every test module (CONVENTIONS.md, habit 9).

* Warnings are errors (``filterwarnings = ["error"]`` in pyproject.toml).
* Implicit rank promotion in jax.numpy is an error, so a broadcast such as ``(N, H, W, 3) - (3,)``
  that happens to work cannot hide a shape bug; library code reshapes explicitly instead.
"""

from __future__ import annotations

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def x64():
    """Run the test body with float64 enabled in JAX (a context, so it is restored afterwards)."""
    with jax.enable_x64(True):
        yield
