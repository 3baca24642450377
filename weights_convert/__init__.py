"""Converters from published VGG19 weight files to jaxstyle's canonical safetensors file."""
