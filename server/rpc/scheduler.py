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
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable, Deque, Dict, Hashable, List, Tuple

Job = Tuple[Future, Callable[..., Any], Tuple[Any, ...]]


class FairScheduler:
    def __init__(self, threads: int, name: str = "rvkvm-run") -> None:
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

    def _work(self) -> None:
        while True:
            job = self._take()
            if job is None:
                return
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
