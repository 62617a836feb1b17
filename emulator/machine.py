"""The bare-metal machine of ``python -m emulator run``: RAM at 0x80000000,
a CLINT at 0x02000000 and HTIF (tohost/fromhost) found through ELF symbols,
the same layout as QEMU's and Spike's ``spike`` machine.
"""

from __future__ import annotations

import sys
from typing import Callable, List, Optional

from .batch import run_harts
from .elf import ElfImage, load_elf
from .events import Stop
from .hart import Hart
from .memory import PAGE_SHIFT, PhysMemory

RAM_BASE = 0x8000_0000
CLINT_BASE = 0x0200_0000
CLINT_SIZE = 0x1_0000
MSIP_BIT, MTIP_BIT = 3, 7

SYS_WRITE = 64
SYS_EXIT = 93


class Clint:
    """Core-local interruptor: msip, mtimecmp and mtime for each hart."""

    def __init__(self, harts: List[Hart]) -> None:
        self.harts = harts

    def mmio_read(self, offset: int, size: int) -> int:
        if offset < 0x4000:
            i = offset // 4
            if i < len(self.harts):
                return (self.harts[i].irq_lines >> MSIP_BIT) & 1
            return 0
        if offset >= 0xBFF8:
            return (self.harts[0].time() >> (8 * (offset - 0xBFF8))) & ((1 << (8 * size)) - 1)
        i, sub = divmod(offset - 0x4000, 8)
        if i < len(self.harts):
            return (self.harts[i].mtimecmp >> (8 * sub)) & ((1 << (8 * size)) - 1)
        return 0

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        if offset < 0x4000:
            i = offset // 4
            if i < len(self.harts):
                self.harts[i].set_irq_line(MSIP_BIT, bool(value & 1))
            return
        if offset >= 0xBFF8:
            h0 = self.harts[0]
            now = h0.time()
            shift = 8 * (offset - 0xBFF8)
            mask = ((1 << (8 * size)) - 1) << shift
            new = (now & ~mask) | ((value << shift) & mask)
            for h in self.harts:
                h.time_skip += new - now
                h.interrupts_changed()
            return
        i, sub = divmod(offset - 0x4000, 8)
        if i < len(self.harts):
            h = self.harts[i]
            shift = 8 * sub
            mask = ((1 << (8 * size)) - 1) << shift
            h.mtimecmp = (h.mtimecmp & ~mask & ((1 << 64) - 1)) | ((value << shift) & mask)
            h.interrupts_changed()


class Htif:
    """Host-target interface: exit codes, a console and the syscall proxy."""

    def __init__(self, mem: PhysMemory, tohost: int, fromhost: Optional[int],
                 out: Callable[[bytes], None], on_exit: Callable[[int], None]) -> None:
        self.mem = mem
        self.tohost = tohost
        self.fromhost = fromhost
        self.out = out
        self.on_exit = on_exit
        self._busy = False
        mem.watch_pages.add(tohost >> PAGE_SHIFT)
        mem.watcher = self._written

    def _written(self, paddr: int, size: int) -> None:
        if self._busy or not (paddr < self.tohost + 8 and self.tohost < paddr + size):
            return
        value = self.mem.read(self.tohost, 8)
        if not value:
            return
        self._busy = True
        try:
            self._handle(value)
        finally:
            self._busy = False

    def _reply(self, value: int) -> None:
        self.mem.write(self.tohost, 8, 0)
        if self.fromhost is not None:
            self.mem.write(self.fromhost, 8, value)

    def _handle(self, value: int) -> None:
        device, cmd, payload = value >> 56, (value >> 48) & 0xFF, value & ((1 << 48) - 1)
        if device == 0 and payload & 1:
            self.on_exit(payload >> 1)
            return
        if device == 1 and cmd == 1:
            self.out(bytes([payload & 0xFF]))
            self._reply((1 << 56) | (1 << 48))
            return
        if device == 0 and cmd == 0:
            self._syscall(payload)
            return
        self._reply(0)  # unknown request: acknowledge and ignore

    def _syscall(self, addr: int) -> None:
        args = [self.mem.read(addr + 8 * i, 8) for i in range(4)]
        which = args[0]
        result = (1 << 64) - 38  # -ENOSYS
        if which == SYS_WRITE and args[1] in (1, 2):
            data = self.mem.read_bytes(args[2], args[3])
            self.out(data)
            result = len(data)
        elif which == SYS_EXIT:
            self.on_exit(args[1])
            return
        self.mem.write(addr, 8, result)
        self._reply(1)


class Machine:
    """RAM, CLINT, HTIF and ``nharts`` harts with deterministic time."""

    def __init__(self, ram_size: int = 256 << 20, engine: str = "fast", nharts: int = 1,
                 out: Optional[Callable[[bytes], None]] = None) -> None:
        self.mem = PhysMemory()
        self.ram = self.mem.add_ram(RAM_BASE, ram_size, "ram")
        self.harts = [Hart(self.mem, hartid=i, engine=engine) for i in range(nharts)]
        self.mem.add_mmio(CLINT_BASE, CLINT_SIZE, Clint(self.harts), "clint")
        self.exit_code: Optional[int] = None
        self.out = out or self._stdout
        self.image: Optional[ElfImage] = None
        self.htif: Optional[Htif] = None

    @staticmethod
    def _stdout(data: bytes) -> None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()

    def load(self, data: bytes) -> ElfImage:
        image = load_elf(self.mem, data)
        self.image = image
        for h in self.harts:
            h.pc = image.entry
        tohost = image.symbol("tohost")
        if tohost is not None:
            self.htif = Htif(self.mem, tohost, image.symbol("fromhost"), self.out, self._exit)
        return image

    def _exit(self, code: int) -> None:
        self.exit_code = code
        for h in self.harts:
            h.kick()
            h.code_dirty = True  # end the running block right after this store

    @property
    def instret(self) -> int:
        return sum(h.instret for h in self.harts)

    def run(self, max_insns: Optional[int] = None, slice_insns: int = 1 << 20) -> str:
        """Run until HTIF exit ('exit'), the budget ('budget') or every hart
        waits with no wake-up source ('wfi')."""
        # One hart: a slice is only a pause (HTIF and host checks), so it may
        # end early at a region boundary, and the next slice re-enters the
        # same translated code. Several harts interleave by exact slices, so
        # both engines interleave them alike.
        single = len(self.harts) == 1
        while self.exit_code is None:
            budget = slice_insns
            exact = not single
            if max_insns is not None:
                left = max_insns - self.instret
                if left <= 0:
                    return "budget"
                if left // len(self.harts) <= budget:
                    budget, exact = max(1, left // len(self.harts)), True
            stops: List[Stop] = run_harts([(h, budget) for h in self.harts], exact)
            if self.exit_code is not None:
                break
            if all(s.reason == "wfi" for s in stops):
                return "wfi"
        return "exit"
