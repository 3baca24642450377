"""Work done behind the caller, on one thread, in order: encoding results and writing them with
their records while the next ones are computed (`jaxstyle.batch.driver`, `jaxstyle.video.driver`)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor


class Behind:
    """One worker thread running jobs in the order they are handed over.

    At most ``limit`` jobs wait at once: `submit` then waits for the oldest, so memory stays
    bounded however long the run. A job that failed raises its error from the next `submit`
    (or `close`), so a full disk stops the run instead of being noticed at the end.
    """

    def __init__(self, limit: int, name: str) -> None:
        self.limit = limit
        self.thread = ThreadPoolExecutor(1, thread_name_prefix=name)
        self.pending: deque[Future] = deque()

    def submit(self, function: Callable, *args, **kwargs) -> None:
        self.pending.append(self.thread.submit(function, *args, **kwargs))
        while self.pending and (self.pending[0].done() or len(self.pending) > self.limit):
            self.pending.popleft().result()

    def close(self, *, check: bool) -> None:
        """Finish every job handed over (also on Ctrl-C: they are results worth keeping); with
        ``check``, raise the first error among them."""
        self.thread.shutdown(wait=True)
        while check and self.pending:
            self.pending.popleft().result()
