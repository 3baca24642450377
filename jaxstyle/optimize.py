"""The loop that drives the optimisation step (`jaxstyle.step`): reports, the stopping rule,
and recovery from a non-finite loss.

Design notes (the measurements behind them are in docs/performance.md):

* The driver runs the steps between two progress reports (``report_every``) as one dispatch of a
  ``lax.scan`` over the step, so Python and the host sync only to report; on CPU that is faster
  than one dispatch per step, once the block1 kernels are not re-flipped inside the loop
  (`vgg.prepare_params`).
* A non-finite loss restores the last good state and halves the learning rate; after a few tries
  the run stops with `NumericalError` rather than producing a black image.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.config import StyleConfig
from jaxstyle.errors import NumericalError
from jaxstyle.objective import LossSpec
from jaxstyle.step import OptimizerSpec, Stepper, init_opt_state, make_stepper, run_steps, set_learning_rate

MAX_RECOVERIES = 4  # halvings of the learning rate before a run gives up on NaN/inf


@dataclass(frozen=True)
class StepReport:
    """What the driver tells its callback every ``report_every`` iterations."""

    iteration: int  # iterations done at this scale
    iterations: int  # iterations planned at this scale
    losses: dict[str, np.ndarray]  # per-term losses of the iterations since the last report, (n,) or (n, B)
    elapsed: float  # seconds at this scale
    learning_rate: float
    recovered: bool  # a NaN/inf was met and the run stepped back with a lower learning rate
    image: Callable[[], np.ndarray]  # fetches the current image(s) from the device on demand
    converged: bool = False  # the stopping rule ended the run here (`converged`)


def converged(totals: list, config: StyleConfig) -> bool:
    """The stopping rule: has the best total loss improved by less than ``config.optimize.stop_tolerance``
    of itself over the last ``config.optimize.stop_window`` iterations? A batch (each entry of ``totals``
    an array) stops once every image has: an image may then run longer than it would alone, never
    shorter.

    The best so far rather than the last value, because L-BFGS with a fixed step is not monotone.
    """
    window = config.optimize.stop_window
    if config.optimize.stop_tolerance <= 0 or len(totals) <= window:
        return False
    values = np.array([np.ravel(total) for total in totals], np.float64)  # (iterations, images)
    before, now = np.min(values[:-window], axis=0), np.min(values, axis=0)
    return bool(np.all(before - now < config.optimize.stop_tolerance * np.abs(before)))


class RunResult(NamedTuple):
    image: jax.Array
    history: dict[str, np.ndarray]


@dataclass
class _Checkpoint:
    image: jax.Array
    opt_state: Any
    iteration: int
    history: dict[str, list] = field(default_factory=dict)


def optimize(
    params,
    image: jax.Array,
    targets: Mapping[str, Any],
    config: StyleConfig,
    loss_spec: LossSpec,
    *,
    stepper: Stepper | None = None,
    callback: Callable[[StepReport], None] | None = None,
) -> RunResult:
    """Run ``config.optimize.iterations`` steps from ``image``, or fewer where the loss has `converged`;
    returns the final image and the per-term history.

    ``stepper`` is the one-image `make_stepper` of ``loss_spec`` and the config's optimiser by
    default; a batch passes its `batched` stepper (and a leading batch axis on ``image``).
    """
    stepper = stepper or make_stepper(loss_spec, OptimizerSpec.from_config(config))
    learning_rate = config.optimize.resolved_learning_rate
    opt_state = init_opt_state(image, stepper, learning_rate)
    history: dict[str, list] = {}
    # The starting point is a safe place to return to; copied because the step donates its buffers.
    good = _Checkpoint(jnp.copy(image), jax.tree.map(jnp.copy, opt_state), 0)
    done, recoveries, start = 0, 0, time.perf_counter()
    stop = False
    while done < config.optimize.iterations and not stop:
        # One dispatch per report. `done` is always a multiple of report_every (0, a report, or the
        # good state a recovery went back to): only a run's last dispatch can be shorter, so a shape
        # compiles at most twice.
        steps = min(config.optimize.report_every, config.optimize.iterations - done)
        image, opt_state, terms = run_steps(params, image, opt_state, targets, stepper=stepper, steps=steps)
        done += steps
        fetched = {k: np.asarray(v) for k, v in terms.items()}
        recovered = not all(np.all(np.isfinite(v)) for v in fetched.values())
        if recovered:
            recoveries += 1
            if recoveries > MAX_RECOVERIES:
                raise NumericalError(
                    f"the loss became NaN/inf {recoveries} times even at learning rate {learning_rate:.3g}; "
                    "try a lower learning rate or lower loss weights"
                )
            learning_rate /= 2
            image, done = jnp.copy(good.image), good.iteration
            opt_state = set_learning_rate(jax.tree.map(jnp.copy, good.opt_state), learning_rate)
            history = {k: list(v) for k, v in good.history.items()}
        else:
            for key, values in fetched.items():
                history.setdefault(key, []).extend(values)
            good = _Checkpoint(
                jnp.copy(image), jax.tree.map(jnp.copy, opt_state), done, {k: list(v) for k, v in history.items()}
            )
            stop = converged(history["total"], config)
        if callback is not None:
            snapshot = good.image  # a copy: `image` itself is donated to the next step
            callback(
                StepReport(
                    iteration=done,
                    iterations=config.optimize.iterations,
                    losses=fetched,
                    elapsed=time.perf_counter() - start,
                    learning_rate=learning_rate,
                    recovered=recovered,
                    image=lambda snapshot=snapshot: np.asarray(jnp.clip(snapshot, 0.0, 1.0)),
                    converged=stop,
                )
            )
    return RunResult(jnp.clip(image, 0.0, 1.0), {k: np.asarray(v) for k, v in history.items()})
