"""The front end's garbage collector: its startup heap frozen, its pauses
measured.

CPython's cyclic collector stops the thread that triggers it, and in the
front end that is the event loop: every call that is ready waits out the
pause. A full (generation 2) collection walks every tracked object that
is not frozen. Under bench.load (16 clients x 64 VMs) the front end held
about 80,000 of them, 40,000 of which were there before the first call
(modules, classes, functions of grpc, protobuf, structlog and
prometheus-client, which never become garbage); its full collections took
22-54 ms of CPU each, one every five seconds or so. With that startup heap
frozen (``gc.freeze``: moved to a generation no collection walks) they took
10-12 ms, and collections of all generations 0.55 instead of 0.78 CPU s
over 20 s (gc callbacks, same load, one run after the other). Nothing
else changes: everything allocated later is collected as before.

``rvkvm_gc_pause_seconds`` (a histogram by generation) shows the pauses an
operator would otherwise have to guess from tail latencies.
"""

from __future__ import annotations

import gc
import threading
import time
from bisect import bisect_left
from typing import Any, Dict, Iterable, List, Optional

from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

GC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
              0.5, 1.0)
GENERATIONS = 3


def freeze_startup_heap() -> int:
    """Collect once, then freeze what is left (the process's startup
    heap), so later collections do not walk it again; the number of
    objects frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class GcPauses:
    """Durations of the process's collections, by generation, kept in
    plain bucket counts.

    The recording runs inside the collector's callback, which can fire in
    any thread at any allocation, even one made while that thread holds a
    lock: so it takes no lock (a prometheus-client Histogram would take
    its own, and deadlock where the collection began inside one of its
    calls). Collections do not nest and run with the interpreter lock
    held, so the callbacks never overlap."""

    def __init__(self, buckets: Iterable[float] = GC_BUCKETS) -> None:
        self.bounds: List[float] = sorted(buckets)
        # per generation: counts per bucket (the last: above every bound)
        self.counts: List[List[int]] = [[0] * (len(self.bounds) + 1)
                                        for _ in range(GENERATIONS)]
        self.sums: List[float] = [0.0] * GENERATIONS
        self._started = 0.0

    def callback(self, phase: str, info: Dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        generation = min(int(info.get("generation", 0)), GENERATIONS - 1)
        # the first bound at or above it (le), past the last: +Inf
        self.counts[generation][bisect_left(self.bounds, took)] += 1
        self.sums[generation] += took

    def family(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily(
            "rvkvm_gc_pause_seconds",
            "pauses of the front end's cyclic garbage collector, by generation: the "
            "event loop waits them out", labels=["generation"])
        for generation in range(GENERATIONS):
            row = list(self.counts[generation])
            cumulative = 0
            buckets = []
            for bound, n in zip([*map(str, self.bounds), "+Inf"], row):
                cumulative += n
                buckets.append((bound, cumulative))
            family.add_metric([str(generation)], buckets, self.sums[generation])
        return family


_lock = threading.Lock()
_pauses: Optional[GcPauses] = None


def gc_pauses() -> GcPauses:
    """The process's one recorder, its callback installed the first time
    (a process's collections are the same for every server in it)."""
    global _pauses
    with _lock:
        if _pauses is None:
            _pauses = GcPauses()
            gc.callbacks.append(_pauses.callback)
        return _pauses


class GcPauseCollector(Collector):
    """``rvkvm_gc_pause_seconds`` for a server's registry."""

    def __init__(self, pauses: GcPauses) -> None:
        self._pauses = pauses

    def collect(self) -> Iterable[Any]:
        yield self._pauses.family()
