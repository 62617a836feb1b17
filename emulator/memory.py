"""Guest-physical memory: RAM and ROM regions backed by anonymous ``mmap`` and
MMIO regions whose accesses go to a handler.

Anonymous mappings are committed by the host kernel only when touched, so a
large idle guest costs little. Aligned accesses from translated code go
straight to the ``mmap``: through typed views of it on CPython (an item of a
``memoryview`` cast to ``Q`` is an 8-byte load without a call), through
pre-bound ``struct`` functions on PyPy; everything else goes through
:meth:`PhysMemory.read` / :meth:`PhysMemory.write`.
"""

from __future__ import annotations

import bisect
import mmap
import struct
import sys
from typing import Any, Callable, Dict, List, Optional, Protocol, Set, Tuple

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PAGE_MASK = PAGE_SIZE - 1

# (size, signed) -> pre-bound unpack_from / pack_into (little-endian)
_FMT = {1: "B", 2: "H", 4: "I", 8: "Q"}
UNPACK = {n: struct.Struct("<" + f).unpack_from for n, f in _FMT.items()}
PACK = {n: struct.Struct("<" + f).pack_into for n, f in _FMT.items()}

# Typed views of a RAM buffer, in this order after (buffer, offset) in a host
# page reference (PhysMemory.host_page): an access of ``size`` bytes at
# buffer offset ``o`` (aligned) is item ``o >> shift`` of the view.
VIEW_FORMATS = ("Q", "I", "i", "H", "h")
VIEW = {(8, False): 2, (8, True): 2, (4, False): 3, (4, True): 4, (2, False): 5, (2, True): 6}
VIEW_SHIFT = {8: 3, 4: 2, 2: 1}
# The views use the host's byte order and C type sizes: usable when those are
# the guest's (little-endian, 8/4/2 bytes).
NATIVE_VIEWS = sys.byteorder == "little" and [struct.calcsize(f) for f in VIEW_FORMATS] == [
    8, 4, 4, 2, 2]


class BusError(Exception):
    """No memory (or no writable memory) answers at a physical address."""

    def __init__(self, paddr: int, write: bool) -> None:
        super().__init__(f"bus error at {paddr:#x} ({'write' if write else 'read'})")
        self.paddr = paddr
        self.write = write


class MmioHandler(Protocol):
    def mmio_read(self, offset: int, size: int) -> int: ...

    def mmio_write(self, offset: int, size: int, value: int) -> None: ...


class Region:
    """One contiguous guest-physical range."""

    kind = "?"

    def __init__(self, base: int, size: int, name: str) -> None:
        if base & PAGE_MASK or size <= 0 or size & PAGE_MASK:
            raise ValueError("regions must be page aligned and non-empty")
        self.base = base
        self.size = size
        self.end = base + size
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.kind} {self.name} {self.base:#x}-{self.end:#x}>"


class RamRegion(Region):
    """RAM or ROM backed by an anonymous mmap (lazily committed by the host)."""

    kind = "ram"

    def __init__(self, base: int, size: int, name: str, readonly: bool = False,
                 buf: Optional[mmap.mmap] = None) -> None:
        super().__init__(base, size, name)
        self.readonly = readonly
        self.buf = buf if buf is not None else mmap.mmap(-1, size)
        # Pages written since the last dirty-log harvest (KVM_MEM_LOG_DIRTY_PAGES).
        self.dirty_log: Optional[Set[int]] = None
        self._views: Tuple[memoryview, ...] = ()

    def views(self) -> Tuple[memoryview, ...]:
        """Typed views of the buffer (VIEW_FORMATS), made on first use."""
        if not self._views:
            whole = memoryview(self.buf)
            self._views = (whole.cast("Q"), whole.cast("I"), whole.cast("i"), whole.cast("H"),
                           whole.cast("h"), whole)
        return self._views[:-1]

    def release_views(self) -> None:
        """Let go of the typed views (an mmap with views cannot be closed;
        translated code holding one afterwards fails instead of reading
        freed memory)."""
        for v in self._views:
            v.release()
        self._views = ()

    def close(self) -> None:
        self.release_views()
        self.buf.close()


class MmioRegion(Region):
    kind = "mmio"

    def __init__(self, base: int, size: int, name: str, handler: MmioHandler) -> None:
        super().__init__(base, size, name)
        self.handler = handler


# (ppn, first byte offset, end offset) of a write to a code page -> (whether
# the listener dropped code, whether it still holds code from that page)
CodeWriteListener = Callable[[int, int, int], Tuple[bool, bool]]


class PhysMemory:
    """The guest-physical address space of one machine (shared by its harts)."""

    def __init__(self) -> None:
        self._bases: List[int] = []
        self._regions: List[Region] = []
        # the region find() found last (most accesses fall in the RAM slot
        # the one before did): tried before the search
        self._last: Optional[Region] = None
        # Physical page numbers that hold translated code: stores there go
        # through the slow path and invalidate the blocks built from them.
        self.code_pages: Set[int] = set()
        # Bumped whenever a page becomes a code page or the map changes, so
        # harts drop cached host-page references that may now be stale.
        self.epoch = 0
        self._code_listeners: List[CodeWriteListener] = []
        # Told when a page becomes a code page (buffer, offset of the page
        # in it): harts drop the write-TLB entries they hold for it, so
        # their next store there takes the slow path.
        self._mark_listeners: List[Callable[[Any, int], None]] = []
        # Code pages written so far: a translation that read a page checks
        # it is unchanged before it keeps the code (another hart's thread
        # may store there meanwhile).
        self.code_writes = 0
        self.code_page_writes: Dict[int, int] = {}  # ppn -> writes to its code
        # Optional fallback for accesses outside every region (the KVM host
        # turns them into MMIO exits).
        self.unmapped: Optional[MmioHandler] = None
        # Watched RAM pages: stores there take the slow path and, once
        # written, call the watcher (HTIF's tohost lives in such a page).
        self.watch_pages: Set[int] = set()
        self.watcher: Optional[Callable[[int, int], None]] = None

    # -- map management -------------------------------------------------
    def _insert(self, region: Region) -> None:
        i = bisect.bisect_right(self._bases, region.base)
        if i > 0 and self._regions[i - 1].end > region.base:
            raise ValueError(f"{region!r} overlaps {self._regions[i - 1]!r}")
        if i < len(self._regions) and self._regions[i].base < region.end:
            raise ValueError(f"{region!r} overlaps {self._regions[i]!r}")
        self._bases.insert(i, region.base)
        self._regions.insert(i, region)
        self.epoch += 1

    def add_ram(self, base: int, size: int, name: str = "ram", readonly: bool = False,
                buf: Optional[mmap.mmap] = None) -> RamRegion:
        region = RamRegion(base, size, name, readonly, buf)
        self._insert(region)
        return region

    def add_mmio(self, base: int, size: int, handler: MmioHandler, name: str = "mmio") -> MmioRegion:
        region = MmioRegion(base, size, name, handler)
        self._insert(region)
        return region

    def remove(self, region: Region) -> None:
        i = self._regions.index(region)
        del self._regions[i]
        del self._bases[i]
        self._last = None
        self.epoch += 1
        if isinstance(region, RamRegion):
            first = region.base >> PAGE_SHIFT
            for ppn in range(first, region.end >> PAGE_SHIFT):
                if ppn in self.code_pages:
                    self._code_written(ppn, 0, PAGE_SIZE)

    @property
    def regions(self) -> Tuple[Region, ...]:
        return tuple(self._regions)

    def find(self, paddr: int) -> Optional[Region]:
        r = self._last
        if r is not None and r.base <= paddr < r.end:
            return r
        i = bisect.bisect_right(self._bases, paddr) - 1
        if i >= 0:
            r = self._regions[i]
            if paddr < r.end:
                self._last = r
                return r
        return None

    # -- code tracking ----------------------------------------------------
    def add_code_listener(self, listener: CodeWriteListener) -> None:
        self._code_listeners.append(listener)

    def remove_code_listener(self, listener: CodeWriteListener) -> None:
        if listener in self._code_listeners:
            self._code_listeners.remove(listener)

    def add_mark_listener(self, listener: Callable[[Any, int], None]) -> None:
        self._mark_listeners.append(listener)

    def remove_mark_listener(self, listener: Callable[[Any, int], None]) -> None:
        if listener in self._mark_listeners:
            self._mark_listeners.remove(listener)

    def mark_code(self, ppn: int) -> None:
        """``ppn`` holds code some hart caches: from now on every store
        there, by any hart or the host, goes through :meth:`write` (or
        :meth:`write_bytes`) and invalidates that code."""
        if ppn not in self.code_pages:
            self.code_pages.add(ppn)
            self.epoch += 1
            r = self.find(ppn << PAGE_SHIFT)
            if isinstance(r, RamRegion):
                off = (ppn << PAGE_SHIFT) - r.base
                for listener in list(self._mark_listeners):
                    listener(r.buf, off)

    def drop_code(self, ppn: int) -> None:
        """Every hart drops the code it holds from page ``ppn`` (which then
        stops being a code page unless code is read from it again)."""
        if ppn in self.code_pages:
            self._code_written(ppn, 0, PAGE_SIZE)

    def _code_written(self, ppn: int, lo: int, hi: int) -> None:
        """Bytes [lo, hi) of code page ``ppn`` were written: the harts drop
        the code read from them; the page stops being a code page when no
        hart holds code from it any more."""
        self.code_writes += 1
        dropped = held = False
        for listener in list(self._code_listeners):
            d, h = listener(ppn, lo, hi)
            dropped |= d
            held |= h
        if dropped:
            self.code_page_writes[ppn] = self.code_page_writes.get(ppn, 0) + 1
        if not held:
            self.code_pages.discard(ppn)

    # -- host page references for the TLBs --------------------------------
    def host_page(self, paddr: int, write: bool) -> Optional[Tuple[Any, ...]]:
        """(buffer, offset of the page in it, typed views of the buffer...)
        for direct access, or None if the page needs the slow path (MMIO,
        ROM write, code page write, dirty log)."""
        r = self.find(paddr)
        if not isinstance(r, RamRegion):
            return None
        if write:
            ppn = paddr >> PAGE_SHIFT
            if r.readonly or ppn in self.code_pages or ppn in self.watch_pages:
                return None
            if r.dirty_log is not None:
                r.dirty_log.add((paddr - r.base) >> PAGE_SHIFT)
        return (r.buf, (paddr & ~PAGE_MASK) - r.base) + r.views()

    # -- slow-path accesses -----------------------------------------------
    def read(self, paddr: int, size: int) -> int:
        r = self.find(paddr)
        if r is None or paddr + size > r.end:
            if r is None and self.unmapped is not None:
                return self.unmapped.mmio_read(paddr, size)
            raise BusError(paddr, False)
        if isinstance(r, RamRegion):
            return UNPACK[size](r.buf, paddr - r.base)[0]
        assert isinstance(r, MmioRegion)
        return r.handler.mmio_read(paddr - r.base, size)

    def read_ram(self, paddr: int, size: int) -> int:
        """A read that only RAM may answer (page-table walks are never MMIO)."""
        r = self.find(paddr)
        if not isinstance(r, RamRegion) or paddr + size > r.end:
            raise BusError(paddr, False)
        return UNPACK[size](r.buf, paddr - r.base)[0]

    def write(self, paddr: int, size: int, value: int) -> None:
        r = self.find(paddr)
        if r is None or paddr + size > r.end:
            if r is None and self.unmapped is not None:
                self.unmapped.mmio_write(paddr, size, value)
                return
            raise BusError(paddr, True)
        if isinstance(r, RamRegion):
            if r.readonly:
                raise BusError(paddr, True)
            PACK[size](r.buf, paddr - r.base, value & ((1 << (8 * size)) - 1))
            self._after_write(r, paddr, size)
            return
        assert isinstance(r, MmioRegion)
        r.handler.mmio_write(paddr - r.base, size, value)

    def _after_write(self, r: RamRegion, paddr: int, size: int) -> None:
        first = paddr >> PAGE_SHIFT
        last = (paddr + size - 1) >> PAGE_SHIFT
        for ppn in range(first, last + 1):
            if r.dirty_log is not None:
                r.dirty_log.add(ppn - (r.base >> PAGE_SHIFT))
            if ppn in self.code_pages:
                base = ppn << PAGE_SHIFT
                self._code_written(ppn, max(paddr, base) - base,
                                   min(paddr + size, base + PAGE_SIZE) - base)
            if ppn in self.watch_pages and self.watcher is not None:
                self.watcher(paddr, size)

    def is_ram(self, paddr: int) -> bool:
        return isinstance(self.find(paddr), RamRegion)

    # -- bulk access for loaders and the host -----------------------------
    def _ram_span(self, paddr: int, n: int) -> RamRegion:
        r = self.find(paddr)
        if not isinstance(r, RamRegion) or paddr + n > r.end:
            raise BusError(paddr, False)
        return r

    def read_bytes(self, paddr: int, n: int) -> bytes:
        r = self._ram_span(paddr, n)
        off = paddr - r.base
        return r.buf[off:off + n]

    def write_bytes(self, paddr: int, data: bytes, force: bool = False) -> None:
        """Host-side write (loaders, the KVM host); ``force`` writes ROM too."""
        n = len(data)
        if n == 0:
            return
        r = self._ram_span(paddr, n)
        if r.readonly and not force:
            raise BusError(paddr, True)
        off = paddr - r.base
        r.buf[off:off + n] = data
        self._after_write(r, paddr, n)

    def host_wrote(self, paddr: int, n: int) -> None:
        """The host wrote [paddr, paddr+n) of one RAM region directly into
        its buffer (another process mapping the same memory): log and
        invalidate as :meth:`write_bytes` does."""
        if n:
            self._after_write(self._ram_span(paddr, n), paddr, n)

    def close(self) -> None:
        for r in self._regions:
            if isinstance(r, RamRegion):
                r.close()
        self._regions.clear()
        self._bases.clear()
        self._last = None


__all__ = [
    "BusError", "MmioHandler", "MmioRegion", "PhysMemory", "RamRegion", "Region",
    "PAGE_SHIFT", "PAGE_SIZE", "PAGE_MASK", "UNPACK", "PACK", "VIEW", "VIEW_SHIFT",
    "VIEW_FORMATS", "NATIVE_VIEWS",
]
