"""Wall-clock alarms for bounding a vCPU slice in time.

One daemon thread serves every alarm: it sleeps until the earliest armed
deadline (forever while none is armed, so an idle server pays nothing) and
then calls the alarm's function. A slice arms one alarm that kicks its
hart, so a guest that retires instructions slowly (one storing into its own
code runs a few thousand per second) still gives its thread back on time.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from typing import Callable, List, Optional, Tuple

MAX_WAIT = 3600.0  # seconds the alarm thread sleeps at most before looking again


class Alarm:
    """An armed alarm; ``cancel()`` before it fires and it never does."""

    __slots__ = ("when", "fn", "cancelled")

    def __init__(self, when: float, fn: Callable[[], None]) -> None:
        self.when = when
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class AlarmClock:
    """Alarms on ``time.monotonic()`` deadlines, fired by one daemon thread."""

    def __init__(self) -> None:
        self._heap: List[Tuple[float, int, Alarm]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._thread: Optional[threading.Thread] = None

    def arm(self, when: float, fn: Callable[[], None]) -> Alarm:
        alarm = Alarm(when, fn)
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._main, name="rvkvm-alarm",
                                                daemon=True)
                self._thread.start()
            heapq.heappush(self._heap, (when, next(self._order), alarm))
            if self._heap[0][2] is alarm:
                self._cond.notify()
        return alarm

    def _main(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][2].cancelled:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                delay = self._heap[0][0] - time.monotonic()
                if delay > 0:
                    # bounded: a far deadline (a guest's timer) is still
                    # a wait the platform can express
                    self._cond.wait(min(delay, MAX_WAIT))
                    continue
                alarm = heapq.heappop(self._heap)[2]
            if not alarm.cancelled:
                try:
                    alarm.fn()
                except Exception:  # one alarm's failure must not stop the others
                    logging.getLogger(__name__).exception("alarm function failed")


ALARMS = AlarmClock()
