"""jaxstyle.nets.programs: lowered programs kept beside JAX's compile cache, used instead of tracing."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle.nets import programs


@jax.jit
def _affine(params, x):
    return jnp.tanh(x @ params["w"] + params["b"][None, :])


@pytest.fixture
def cache_dir(tmp_path):
    before = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", str(tmp_path))
    yield tmp_path
    jax.config.update("jax_compilation_cache_dir", before)


def test_a_kept_program_is_used_instead_of_tracing_and_a_damaged_one_is_replaced(cache_dir, monkeypatch):
    params = {"w": np.arange(12, dtype=np.float32).reshape(4, 3) / 10, "b": np.ones(3, np.float32)}
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    spec = jax.ShapeDtypeStruct(x.shape, jnp.float32)
    expected = np.tanh(x @ params["w"] + params["b"])

    first = programs.compile_kept(_affine, params, spec)
    np.testing.assert_allclose(first(params, x), expected, rtol=1e-6)
    kept = list((cache_dir / "jaxstyle-programs").glob("*.stablehlo"))
    assert len(kept) == 1

    def no_tracing(*args, **kwargs):
        raise AssertionError("traced again")

    with monkeypatch.context() as patch:
        patch.setattr(programs.export, "export", no_tracing)
        again = programs.compile_kept(_affine, params, spec)
    np.testing.assert_allclose(again(params, x), expected, rtol=1e-6)

    # another shape is another program; a damaged file is traced again and rewritten
    programs.compile_kept(_affine, params, jax.ShapeDtypeStruct((5, 4), jnp.float32))
    assert len(list((cache_dir / "jaxstyle-programs").glob("*.stablehlo"))) == 2
    kept[0].write_bytes(b"not a program")
    repaired = programs.compile_kept(_affine, params, spec)
    np.testing.assert_allclose(repaired(params, x), expected, rtol=1e-6)
    assert kept[0].read_bytes() != b"not a program"


def test_without_a_compile_cache_nothing_is_kept(tmp_path):
    assert jax.config.jax_compilation_cache_dir in (None, "")
    spec = jax.ShapeDtypeStruct((2, 4), jnp.float32)
    params = {"w": np.zeros((4, 3), np.float32), "b": np.zeros(3, np.float32)}
    compiled = programs.compile_kept(_affine, params, spec)
    np.testing.assert_array_equal(compiled(params, np.ones((2, 4), np.float32)), np.zeros((2, 3)))


def test_a_program_that_cannot_be_serialized_is_compiled_and_not_kept(cache_dir, monkeypatch):
    def no_flatbuffers(self):
        raise ImportError("Please install 'flatbuffers' in order to use Exported serialization")

    monkeypatch.setattr(programs.export.Exported, "serialize", no_flatbuffers)
    params = {"w": np.eye(4, 3, dtype=np.float32), "b": np.zeros(3, np.float32)}
    x = np.ones((2, 4), np.float32)
    compiled = programs.compile_kept(_affine, params, jax.ShapeDtypeStruct(x.shape, jnp.float32))
    np.testing.assert_allclose(compiled(params, x), np.tanh(x @ params["w"]), rtol=1e-6)
    assert not list(cache_dir.glob("jaxstyle-programs/*.stablehlo"))
