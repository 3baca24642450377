"""jaxstyle: neural style transfer as pure JAX functions."""
