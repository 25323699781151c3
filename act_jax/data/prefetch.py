"""Prefetching: batches built on a background thread and put on the devices ahead of the step.

The queue is bounded (two batches by default), so the accelerator does not wait on Python and
the host does not run ahead by more than that.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator

import jax


class Prefetcher:
    """Builds the batches for steps `start .. end-1` on a thread and puts them on the devices.

    Usage:
        with Prefetcher(sampler.batch, start, end, sharding) as batches:
            for step, batch in batches: ...

    `make_batch(step)` returns this process's rows; with several processes the rows are assembled
    into one global array with `jax.make_array_from_process_local_data`. Errors on the thread are
    re-raised in the consumer.
    """

    _DONE = object()

    def __init__(
        self,
        make_batch: Callable[[int], dict],
        start: int,
        end: int,
        sharding: jax.sharding.Sharding,
        size: int = 2,
    ):
        self._make_batch, self._start, self._end = make_batch, start, end
        self._sharding = sharding
        self._queue: queue.Queue = queue.Queue(maxsize=size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prefetch", daemon=True)

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self):
        try:
            for step in range(self._start, self._end):
                local = self._make_batch(step)
                batch = jax.tree.map(
                    lambda x: jax.make_array_from_process_local_data(self._sharding, x), local
                )
                if not self._put((step, batch)):
                    return
            self._put(self._DONE)
        except BaseException as e:  # noqa: B036 - handed to the consumer, which re-raises it
            self._put(e)

    def __enter__(self) -> Iterator[tuple[int, dict]]:
        self._thread.start()
        return self._iterate()

    def _iterate(self) -> Iterator[tuple[int, dict]]:
        while True:
            item = self._queue.get()
            if item is self._DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)
