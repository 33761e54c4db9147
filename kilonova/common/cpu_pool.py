"""CPU-heavy request work (password hashing) off the event loop, on a few threads with a bounded queue.

One event loop serves every API of a process: a request computing for half a second on it delays every
other request of every service by as much. Such work runs here instead, on threads (the C code doing
it, e.g. ``hashlib.scrypt``, releases the GIL, so the loop keeps serving meanwhile), and never more of it
waits than the pool gets through in a few seconds: past ``queue_limit`` jobs waiting or running, a new
one is refused at once with ``Overloaded`` (the API answers 503 with Retry-After) instead of queueing
without bound behind a flood. The threads run at a lower priority (nice 10, on Linux): when the CPUs are
short, the event loop answering every other request comes first.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

T = TypeVar("T")


class Overloaded(Exception):
    """The pool already has ``queue_limit`` jobs waiting or running."""


WORKER_NICENESS = 10


def _lower_priority() -> None:
    # On Linux a thread has its own nice value; elsewhere this would renice the whole process: skip it.
    if hasattr(threading, "get_native_id") and os.uname().sysname == "Linux":
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(),
                           os.getpriority(os.PRIO_PROCESS, 0) + WORKER_NICENESS)


def default_workers() -> int:
    """Half the CPUs (at least one): the other half keeps serving the APIs."""
    return max(1, (os.cpu_count() or 2) // 2)


class CpuPool:
    def __init__(self, name: str, workers: int, queue_limit: int):
        self.workers = workers or default_workers()
        self.queue_limit = max(queue_limit, self.workers)
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix=f"cpu-{name}",
                                            initializer=_lower_priority)
        self._pending = 0

    @property
    def pending(self) -> int:
        return self._pending

    async def run(self, fn: Callable[..., T], *args) -> T:
        """``fn(*args)`` on a worker thread; ``Overloaded`` at once when the queue is full."""
        if self._pending >= self.queue_limit:
            raise Overloaded(f"{self._pending} jobs are already waiting or running")
        self._pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        finally:
            self._pending -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
