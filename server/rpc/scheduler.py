"""The run scheduler: vCPU slices on a few worker threads, fairly by owner.

Every Run is cut into slices (bounded in instructions and in wall time by
the session); each slice is one job here. Waiting jobs are taken
round-robin over their owners, and in order within an owner: a session has
at most one job waiting, so an owner's vCPUs take turns too. An owner is
whatever key the servicer picks (``KvmServicer._owner``: the tenant that
owns the VM, so every busy tenant gets an equal share of the turns,
however many busy vCPUs it has). A vCPU that waits (WFI, stopped) has no
job and costs nothing.

The workers are few on purpose: slices are pure Python, so more threads
than cores only make every thread, the event loop included, wait longer
for the interpreter lock.

The event loop goes first: it accepts every call (gRPC's core cancels a
call the application has not taken within 30 s) and answers the control
calls (ONE_REG, health, ...), so a worker starts no slice while the loop
has work (``LoopWatch``). Run traffic then queues here, fairly, instead of
inside gRPC's core in arrival order with the control calls stuck behind it.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable, Deque, Dict, Hashable, List, Optional, Tuple

Job = Tuple[Future, Callable[..., Any], Tuple[Any, ...]]


class LoopWatch:
    """Whether the event loop has work: ``attach`` wraps the loop's selector
    so that ``idle`` is set while the loop waits for I/O with nothing
    ready (a select with a timeout) and clear while it runs callbacks.
    ``give_way`` is for the threads that run guests: they start no slice
    while the loop has work, so it takes the interpreter lock at once. A
    loop that is not a selector loop is never waited for."""

    def __init__(self, max_pause: float = 0.002) -> None:
        self.max_pause = max_pause
        self.pauses = 0  # slices that waited for the loop
        self.idle = threading.Event()
        self.idle.set()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._selector: Any = None

    def start(self) -> None:
        """Watch the running loop."""
        loop = asyncio.get_running_loop()
        selector = getattr(loop, "_selector", None)  # BaseSelectorEventLoop's
        if self._loop is not None or selector is None or not hasattr(selector, "select"):
            return
        self._loop, self._selector = loop, selector
        loop._selector = _WatchedSelector(selector, self.idle)  # type: ignore[attr-defined]
        self.idle.clear()

    async def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            loop._selector = self._selector  # type: ignore[attr-defined]
        self.idle.set()

    def give_way(self) -> None:
        """In a run thread: wait while the loop has work (at most
        ``max_pause`` seconds, so that guests still progress under a flood
        of calls)."""
        if not self.idle.is_set():
            self.pauses += 1
            self.idle.wait(self.max_pause)


class _WatchedSelector:
    """A selector that says when its loop waits (``LoopWatch``)."""

    def __init__(self, inner: Any, idle: threading.Event) -> None:
        self._inner = inner
        self._idle = idle

    def select(self, timeout: Optional[float] = None) -> Any:
        if timeout is not None and timeout <= 0:  # callbacks are ready: still busy
            return self._inner.select(timeout)
        self._idle.set()
        try:
            return self._inner.select(timeout)
        finally:
            self._idle.clear()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class FairScheduler:
    def __init__(self, threads: int, name: str = "rvkvm-run",
                 watch: Optional[LoopWatch] = None) -> None:
        self.watch = watch or LoopWatch()
        self._queues: Dict[Hashable, Deque[Job]] = {}
        self._turns: Deque[Hashable] = deque()  # owners with waiting jobs, next first
        self._cond = threading.Condition()
        self._closed = False
        self._workers: List[threading.Thread] = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(max(1, threads))]
        for worker in self._workers:
            worker.start()

    def submit(self, owner: Hashable, fn: Callable[..., Any], *args: Any) -> Future:
        """Run ``fn(*args)`` on a worker when ``owner``'s turn comes."""
        future: Future = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("scheduler shut down")
            queue = self._queues.get(owner)
            if queue is None:
                queue = self._queues[owner] = deque()
                self._turns.append(owner)
            queue.append((future, fn, args))
            self._cond.notify()
        return future

    def waiting(self) -> int:
        """Jobs waiting for a worker."""
        with self._cond:
            return sum(len(q) for q in self._queues.values())

    def _take(self) -> Job | None:
        with self._cond:
            while not self._turns:
                if self._closed:
                    return None
                self._cond.wait()
            owner = self._turns.popleft()
            queue = self._queues[owner]
            job = queue.popleft()
            if queue:
                self._turns.append(owner)
            else:
                del self._queues[owner]
            return job

    def give_way(self) -> None:
        """Between slices: let a lagging event loop go first."""
        self.watch.give_way()

    def _work(self) -> None:
        while True:
            job = self._take()
            if job is None:
                return
            self.watch.give_way()
            future, fn, args = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args)
            except BaseException as exc:  # handed to the waiting Run
                future.set_exception(exc)
            else:
                future.set_result(result)

    def shutdown(self) -> None:
        """Cancel waiting jobs; workers end after their current job."""
        with self._cond:
            self._closed = True
            jobs = [job for queue in self._queues.values() for job in queue]
            self._queues.clear()
            self._turns.clear()
            self._cond.notify_all()
        for future, _, _ in jobs:
            future.cancel()
