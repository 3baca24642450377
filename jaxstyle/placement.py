"""Where a batch's arrays live (split along the batch axis over the devices, or replicated), and how
much memory there is for them."""

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


def available_memory_bytes() -> int | None:
    """Memory this run can use: the accelerator's limit, or MemAvailable on a CPU host."""
    device = jax.devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" and hasattr(device, "memory_stats") else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


# The default budget leaves a fifth of the free memory to the rest of the machine. The estimates
# it is planned against are of the whole process's peak (runtime and weights included) and cover
# every peak measured on the 2-core CPU VM, 2026-12-06 (benchmarks/memory_plan.py: tiled runs
# within their budgets at 2048 and 4096 px), so nothing more is held back for them.
DEFAULT_BUDGET_SHARE = 0.8


def memory_budget_bytes(config) -> int | None:
    """``config.resources.memory_budget`` GiB in bytes, or 80 % of what the machine has (None where unknown)."""
    if config.resources.memory_budget is not None:
        return int(config.resources.memory_budget * 2**30)
    available = available_memory_bytes()
    return None if available is None else int(DEFAULT_BUDGET_SHARE * available)
