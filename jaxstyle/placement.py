"""Where a batch's arrays live: split along the batch axis over the devices, or replicated."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P


class Placement:
    """A 1-D mesh over ``devices`` (all local devices by default) with a ``"batch"`` axis."""

    def __init__(self, devices: Sequence[jax.Device] | None = None) -> None:
        self.devices = list(devices) if devices is not None else jax.local_devices()
        mesh = Mesh(np.array(self.devices), ("batch",))
        self._split = NamedSharding(mesh, P("batch"))
        self._replicated = NamedSharding(mesh, P())

    @property
    def count(self) -> int:
        return len(self.devices)

    @property
    def all_cpu(self) -> bool:
        return all(device.platform == "cpu" for device in self.devices)

    def put(self, tree, *, split: bool):
        """Place arrays on the mesh: split along their leading (batch) axis, or replicated.

        On one device they stay uncommitted, like the arrays a jitted function creates, so the
        jitted step sees one set of input shardings and compiles once (with several devices it
        compiles twice per shape: see docs/batch.md).
        """
        if len(self.devices) == 1 and self.devices[0] == jax.local_devices()[0]:
            return jax.tree.map(jnp.asarray, tree)
        return jax.device_put(tree, self._split if split else self._replicated)
