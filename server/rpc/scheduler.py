"""The run scheduler: vCPU slices on a few worker threads, fairly by owner.

Every Run is cut into slices (bounded in instructions and in wall time by
the session); each slice is one job here. Waiting jobs are taken
round-robin over their owners: an owner is whatever key the servicer picks
(``KvmServicer._owner``: the tenant that owns the VM, so every busy tenant
gets an equal share of the turns, however many busy vCPUs it has). A vCPU
that waits (WFI, stopped) has no job and costs nothing.

Within an owner, the job of the vCPU that has run least goes first, as
CFS picks the task of least virtual runtime: each session has an
``Account`` of the wall time its slices ran, and the owner's waiting job
with the smallest goes next (a session has at most one job waiting, so
busy vCPUs of one owner, whose accounts grow alike, take turns). A session
that was idle, was just created, or comes back from an exit to userspace
is placed at the owner's current floor (the account of the job it last
took) less ``latency_credit``: it goes before the busy ones, so a hello
guest's Run does not wait behind hundreds of busy vCPUs of its own tenant,
and an account left far behind while idle is raised to that, so that no
session gets more than its share by having slept (CFS's sleeper credit).
The credit is small (5 ms: a hello guest runs well under that in all),
since every session that misses turns (its client is slow to send the
next Run) catches up by as much, ahead of those that came back at once.
Jobs without an account are placed at the floor, in order.

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
import heapq
import itertools
import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable, Deque, Dict, Hashable, List, Optional, Tuple

Job = Tuple[Future, Callable[..., Any], Tuple[Any, ...]]

# Seconds between two samples of the event loop's lag (LoopWatch): 20
# timers a second, a few hundredths of a per cent of a core.
LAG_PERIOD = 0.05


class LoopWatch:
    """Whether the event loop has work: ``attach`` wraps the loop's selector
    so that ``idle`` is set while the loop waits for I/O with nothing
    ready (a select with a timeout) and clear while it runs callbacks.
    ``give_way`` is for the threads that run guests: they start no slice
    while the loop has work, so it takes the interpreter lock at once. A
    loop that is not a selector loop is never waited for."""

    def __init__(self, max_pause: float = 0.002, lag_period: float = LAG_PERIOD) -> None:
        self.max_pause = max_pause
        self.pauses = 0  # slices that waited for the loop
        self.idle = threading.Event()
        self.idle.set()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._selector: Any = None
        # the loop's lag: how late it ran a timer due every ``lag_period``
        # seconds, the wait of any callback that was ready then (a call
        # accepted, a reply from a worker); told to each of ``lag_observers``
        self.lag_period = lag_period
        self.lag = 0.0  # the last sample
        self.lag_observers: List[Callable[[float], None]] = []
        self._lag_task: Optional[asyncio.Task] = None

    def start(self) -> None:
        """Watch the running loop."""
        loop = asyncio.get_running_loop()
        if self._lag_task is None and self.lag_period > 0:
            self._lag_task = loop.create_task(self._sample_lag(), name="rvkvm-loop-lag")
        selector = getattr(loop, "_selector", None)  # BaseSelectorEventLoop's
        if self._loop is not None or selector is None or not hasattr(selector, "select"):
            return
        self._loop, self._selector = loop, selector
        loop._selector = _WatchedSelector(selector, self.idle)  # type: ignore[attr-defined]
        self.idle.clear()

    async def _sample_lag(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.lag_period
            await asyncio.sleep(self.lag_period)
            self.lag = lag = max(0.0, loop.time() - due)
            for observe in self.lag_observers:
                observe(lag)

    async def stop(self) -> None:
        task, self._lag_task = self._lag_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
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


class Account:
    """A session's run time as the scheduler counts it (seconds of wall
    time its jobs ran, placed as the class docstring says)."""

    __slots__ = ("vruntime",)

    def __init__(self) -> None:
        self.vruntime = 0.0


class _Owner:
    """An owner's waiting jobs, least virtual runtime first."""

    __slots__ = ("jobs", "floor")

    def __init__(self, floor: float) -> None:
        self.jobs: List[Tuple[float, int, Job, Optional[Account]]] = []  # a heap
        self.floor = floor  # the virtual runtime of the job it last took


class FairScheduler:
    def __init__(self, threads: int, name: str = "rvkvm-run",
                 watch: Optional[LoopWatch] = None, latency_credit: float = 0.005,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.watch = watch or LoopWatch()
        self.latency_credit = latency_credit
        self._clock = clock  # what jobs' run time is measured with
        self._owners: Dict[Hashable, _Owner] = {}
        self._floors: Dict[Hashable, float] = {}  # of owners with no job waiting
        self._turns: Deque[Hashable] = deque()  # owners with waiting jobs, next first
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._closed = False
        self._workers: List[threading.Thread] = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(max(1, threads))]
        for worker in self._workers:
            worker.start()

    def submit(self, owner: Hashable, fn: Callable[..., Any], *args: Any,
               account: Optional[Account] = None) -> Future:
        """Run ``fn(*args)`` on a worker when ``owner``'s turn comes and no
        job of ``owner`` with a smaller account waits (``account``: the
        session's; None: at the owner's floor, after those already there)."""
        future: Future = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("scheduler shut down")
            queue = self._owners.get(owner)
            if queue is None:
                queue = self._owners[owner] = _Owner(self._floors.pop(owner, 0.0))
                self._turns.append(owner)
            if account is None:
                key = queue.floor
            else:
                account.vruntime = max(account.vruntime, queue.floor - self.latency_credit)
                key = account.vruntime
            heapq.heappush(queue.jobs, (key, next(self._seq), (future, fn, args), account))
            self._cond.notify()
        return future

    def waiting(self) -> int:
        """Jobs waiting for a worker."""
        with self._cond:
            return sum(len(q.jobs) for q in self._owners.values())

    def _take(self) -> Optional[Tuple[Job, Optional[Account]]]:
        with self._cond:
            while not self._turns:
                if self._closed:
                    return None
                self._cond.wait()
            owner = self._turns.popleft()
            queue = self._owners[owner]
            key, _, job, account = heapq.heappop(queue.jobs)
            queue.floor = max(queue.floor, key)
            if queue.jobs:
                self._turns.append(owner)
            else:
                del self._owners[owner]
                self._floors[owner] = queue.floor
            return job, account

    def give_way(self) -> None:
        """Between slices: let a lagging event loop go first."""
        self.watch.give_way()

    def _work(self) -> None:
        while True:
            taken = self._take()
            if taken is None:
                return
            (future, fn, args), account = taken
            self.watch.give_way()
            if not future.set_running_or_notify_cancel():
                continue
            start = self._clock()
            try:
                result = fn(*args)
            except BaseException as exc:  # handed to the waiting Run
                self._charge(account, start)
                future.set_exception(exc)
            else:
                self._charge(account, start)
                future.set_result(result)

    def _charge(self, account: Optional[Account], start: float) -> None:
        if account is not None:
            account.vruntime += self._clock() - start

    def shutdown(self) -> None:
        """Cancel waiting jobs; workers end after their current job."""
        with self._cond:
            self._closed = True
            jobs = [job for queue in self._owners.values() for _, _, job, _ in queue.jobs]
            self._owners.clear()
            self._turns.clear()
            self._cond.notify_all()
        for future, _, _ in jobs:
            future.cancel()
