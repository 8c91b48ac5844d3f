"""One generation at a time per model, with a bounded line of requests waiting behind it.

A generation runs in the model's single worker thread; its pieces of text reach the event loop
through an asyncio queue. A request beyond the line is refused at once (`Busy`: the server
answers 503 with Retry-After). A request's slot is freed when its generation ends in the worker,
so a client that disconnects (its stream is closed, which sets `cancel`) frees it at the next
token, and no two generations ever share the model.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

Job = Callable[[Callable[[str], None], threading.Event], Any]  # (on_text, cancel) -> result


class Busy(Exception):
    """The line is full."""


class GenerationQueue:
    def __init__(self, depth: int) -> None:
        self.depth = depth  # requests that may wait behind the running one
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="specforge-generate")
        self._lock = threading.Lock()
        self._pending = 0

    @property
    def pending(self) -> int:
        """Requests running or waiting."""
        return self._pending

    def submit(self, job: Job, on_text: Callable[[str], None]) -> tuple[Future, threading.Event]:
        """Start (or line up) `job`; Busy when the line is full."""
        with self._lock:
            if self._pending > self.depth:
                raise Busy
            self._pending += 1
        cancel = threading.Event()

        def work():
            if cancel.is_set():  # its client left while it waited
                return None
            return job(on_text, cancel)

        future = self._executor.submit(work)
        future.add_done_callback(self._release)
        return future, cancel

    def _release(self, _future: Future) -> None:
        with self._lock:
            self._pending -= 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class Stream:
    """A submitted job seen from the event loop: its text pieces, then its result."""

    def __init__(self, queue: GenerationQueue, job: Job) -> None:
        self._loop = asyncio.get_running_loop()
        self._pieces: asyncio.Queue[str | None] = asyncio.Queue()
        self.future, self.cancel = queue.submit(job, self._put)  # Busy propagates
        self.future.add_done_callback(lambda _: self._loop.call_soon_threadsafe(self._end))

    def _put(self, piece: str) -> None:
        self._loop.call_soon_threadsafe(self._pieces.put_nowait, piece)

    def _end(self) -> None:
        self._pieces.put_nowait(None)

    async def pieces(self) -> AsyncIterator[str]:
        """Each piece of text as it is generated; leaving early cancels the generation."""
        try:
            while (piece := await self._pieces.get()) is not None:
                yield piece
        finally:
            self.cancel.set()

    async def result(self) -> Any:
        """The job's return value (its exception re-raised), once it has ended."""
        return await asyncio.wrap_future(self.future)
