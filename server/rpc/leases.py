"""Leases: a VM lives while its tenant holds it.

Every call that names a VM holds it for as long as the call is open (a Run
or a stream holds it throughout) and renews it when it ends. A VM that no
call has held for the lease time is destroyed by the ``LeaseReaper`` and
logged, as if its owner had called DestroyVm.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any, Callable, List, Optional

import structlog


class Lease:
    """The hold count and last use of one VM."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holds = 0
        self._last_used = time.monotonic()
        self.last_used_wall = time.time()

    def hold(self) -> None:
        with self._lock:
            self._holds += 1
            self._touch()

    def release(self) -> None:
        with self._lock:
            self._holds -= 1
            self._touch()

    def _touch(self) -> None:
        self._last_used = time.monotonic()
        self.last_used_wall = time.time()

    @property
    def holds(self) -> int:
        return self._holds

    def idle(self, now: Optional[float] = None) -> Optional[float]:
        """Seconds since the last call ended; None while a call holds it."""
        with self._lock:
            if self._holds:
                return None
            return (time.monotonic() if now is None else now) - self._last_used


class LeaseReaper:
    """Destroys the VMs whose lease ran out, checking every ``period`` s."""

    def __init__(self, lease: float, entries: Callable[[], List[Any]],
                 destroy: Callable[[Any], bool], on_expired: Callable[[Any], None],
                 period: Optional[float] = None) -> None:
        self.lease = lease
        self._entries = entries
        self._destroy = destroy
        self._on_expired = on_expired
        self._period = period if period is not None else min(max(lease / 4, 0.05), 5.0)
        self._task: Optional[asyncio.Task] = None
        self._log = structlog.get_logger("rvkvm.lease")

    def start(self) -> None:
        if self.lease > 0 and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def reap(self) -> int:
        """Destroy every expired VM now; returns how many."""
        now = time.monotonic()
        reaped = 0
        for entry in self._entries():
            idle = entry.lease.idle(now)
            if idle is None or idle < self.lease:
                continue
            if self._destroy(entry):
                reaped += 1
                self._on_expired(entry)
                self._log.info("vm lease expired", vm_id=entry.vm_id, tenant=entry.owner,
                               idle_s=round(idle, 3), lease_s=self.lease)
        return reaped

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._period)
            try:
                self.reap()
            except Exception:  # never let the reaper die
                self._log.exception("lease reaper failed")
