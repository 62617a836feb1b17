"""A hart on a small RAM holding a test program (shared by the translator
tests)."""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from rvkvm.emulator.hart import Hart
from rvkvm.emulator.memory import PhysMemory

from .rvasm import words

BASE = 0x8000_0000


def make_hart(engine: str, code: List[int], regs: Optional[Dict[int, int]] = None,
              data: bytes = b"", data_at: int = 0, ram: int = 1 << 16) -> Tuple[Hart, PhysMemory]:
    """A hart at ``BASE`` (M-mode traps stop ``run``) with ``code`` there,
    ``data`` at ``data_at`` and the registers ``regs``."""
    mem = PhysMemory()
    mem.add_ram(BASE, ram)
    mem.write_bytes(BASE, words(code))
    if data:
        mem.write_bytes(data_at, data)
    h = Hart(mem, engine=engine)
    h.intercept_mtraps = True
    h.pc = BASE
    for n, v in (regs or {}).items():
        h.x[n] = v
    return h, mem


def translated_source(code: List[int], budget: int) -> str:
    """The generated source of the region at ``BASE`` after running
    ``budget`` instructions of ``code`` on the fast engine."""
    h, _ = make_hart("fast", code)
    h.run(budget)
    return h.ctx.blocks[BASE].src
