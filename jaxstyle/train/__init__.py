"""`jaxstyle train`: your own fast style network, fine-tuned from Magenta's with the optimisation's
losses (docs/train.md). `train` is the entry point; importing this package loads no JAX until it runs."""

from jaxstyle.train.settings import TrainConfig


def train(*args, **kwargs):
    """`jaxstyle.train.driver.train` (see there)."""
    from jaxstyle.train.driver import train as run

    return run(*args, **kwargs)


__all__ = ["TrainConfig", "train"]
