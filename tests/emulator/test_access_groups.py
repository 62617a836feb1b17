"""Runs of loads and stores through one base register share one TLB lookup
in translated code (a stack frame saved or restored). Whatever the run
meets (a page boundary inside it, a base register a load overwrites, a
fault in the middle, a code page), the state must be the reference
interpreter's, in both flavours of generated code."""

from __future__ import annotations

from typing import List

import pytest

import rvkvm.emulator.translator as tr
from rvkvm.emulator.hart import Hart
from rvkvm.emulator.memory import PhysMemory
from rvkvm.emulator.region.emit import access_groups

from . import rvasm as A

BASE = 0x8000_0000
DATA = BASE + 0x2000
SP, T0, T1 = 2, 5, 6
CAUSE_STORE_ACCESS, CAUSE_LOAD_ACCESS = 7, 5


def sd(rs2: int, rs1: int, off: int) -> int:
    return A.s(0x23, 3, rs1, rs2, off)


def sw(rs2: int, rs1: int, off: int) -> int:
    return A.s(0x23, 2, rs1, rs2, off)


def ld(rd: int, rs1: int, off: int) -> int:
    return A.i(0x03, 3, rd, rs1, off)


def lw(rd: int, rs1: int, off: int) -> int:
    return A.i(0x03, 2, rd, rs1, off)


def frame(n: int) -> List[int]:
    """Save x8.. x(8+n-1) at sp+8*k, clobber them, restore them."""
    save = [sd(8 + k, SP, 8 * k) for k in range(n)]
    clobber = [A.addi(8 + k, 0, -k) for k in range(n)]
    restore = [ld(8 + k, SP, 8 * k) for k in range(n)]
    return save + clobber + restore


def run(engine: str, prog: List[int], sp: int, signed: bool = False, ram: int = 0x4000):
    saved = tr.SIGNED_LOCALS
    tr.SIGNED_LOCALS = signed
    try:
        mem = PhysMemory()
        mem.add_ram(BASE, ram)
        mem.write_bytes(BASE, A.words(prog + [A.EBREAK]))
        h = Hart(mem, engine=engine)
        h.intercept_mtraps = True
        h.pc = BASE
        for n in range(1, 32):
            h.x[n] = (0x0101_0101_0101_0101 * n) ^ (1 << 63 if n & 1 else 0)
        h.x[SP] = sp
        stop = h.run(10_000)
        return (stop.reason, stop.cause, stop.tval, h.pc, h.instret, tuple(h.x),
                mem.read_bytes(DATA - 0x100, 0x1100))
    finally:
        tr.SIGNED_LOCALS = saved


def agree(prog: List[int], sp: int, ram: int = 0x4000) -> tuple:
    ref = run("reference", prog, sp, ram=ram)
    assert run("fast", prog, sp, ram=ram) == ref
    assert run("fast", prog, sp, signed=True, ram=ram) == ref
    return ref


def group_source(prog: List[int], sp: int) -> str:
    h = Hart(PhysMemory(), engine="fast")
    h.mem.add_ram(BASE, 0x4000)
    h.mem.write_bytes(BASE, A.words(prog + [A.EBREAK]))
    h.pc, h.x[SP] = BASE, sp
    h.intercept_mtraps = True
    h.run(10_000)
    return h.ctx.blocks[BASE].src


def test_frame_in_one_page_uses_one_lookup() -> None:
    prog = frame(12)
    ref = agree(prog, DATA)
    assert ref[:2] == ("trap", 3)
    src = group_source(prog, DATA)
    assert src.count("WT.get(") == 1 + 12  # the group's lookup, and the fallback's
    assert "& -4096 == 0:" in src


@pytest.mark.parametrize("sp", [DATA + 0x1000 - 40, DATA + 0x1000 - 8, DATA + 0x1000 - 96])
def test_frame_across_a_page_boundary(sp: int) -> None:
    ref = agree(frame(12), sp)
    assert ref[:2] == ("trap", 3)


def test_fault_in_the_middle_of_a_group_is_precise() -> None:
    # RAM ends inside the frame: the sixth store faults, five are done
    ram = 0x3000
    sp = BASE + ram - 40
    ref = agree(frame(12), sp, ram=ram)
    assert ref[1] == CAUSE_STORE_ACCESS and ref[2] == BASE + ram
    assert ref[4] == 5  # five stores retired


def test_load_overwriting_the_base_ends_the_group() -> None:
    # ld sp, 16(sp) in the middle: later loads use the new sp
    prog = [sd(SP, SP, 16), A.addi(T0, 0, 77), sd(T0, SP, 24),
            A.addi(SP, SP, 0),
            ld(T1, SP, 24), ld(7, SP, 24), ld(SP, SP, 16), ld(8, SP, 24), ld(9, SP, 24),
            ld(10, SP, 24)]
    ref = agree(prog, DATA)
    assert ref[5][8] == 77 and ref[5][SP] == DATA


def test_mixed_loads_and_stores_keep_program_order() -> None:
    prog = [A.addi(T0, 0, 5), sw(T0, SP, 0), lw(T1, SP, 0), sw(T1, SP, 4), lw(7, SP, 4),
            sw(0, SP, 0), lw(8, SP, 0)]
    ref = agree(prog, DATA)
    assert ref[5][7] == 5 and ref[5][8] == 0


def test_group_storing_into_its_own_code_page() -> None:
    # the base points at translated code: stores must invalidate it
    prog = [A.u(0x17, SP, 0)] + [sd(0, SP, 0x100 + 8 * k) for k in range(4)]
    ref = agree(prog, 0)
    assert ref[:2] == ("trap", 3)


def test_access_groups_found() -> None:
    from rvkvm.emulator.isa import decode

    def dec(words: List[int]):
        return [decode(w, BASE + 4 * k) for k, w in enumerate(words)]

    assert access_groups(dec(frame(4))) == [(0, 4), (8, 12)]
    # mixed sizes, other bases and odd alignment split groups
    assert access_groups(dec([sd(8, SP, 0), sw(8, SP, 8), sd(8, SP, 16)])) == []
    assert access_groups(dec([sd(8, SP, 0), sd(8, SP, 4), sd(8, SP, 8)])) == []
    assert access_groups(dec([ld(8, SP, 0), ld(SP, SP, 8), ld(9, SP, 16),
                                  ld(10, SP, 24)])) == []


def test_typed_views_are_let_go_on_close() -> None:
    """Translated code reads and writes RAM through typed views of its mmap;
    closing the memory must still work (an mmap with live views cannot be
    closed) while a hart's TLB still holds them, and a stale view fails
    loudly instead of reading freed memory."""
    from rvkvm.emulator.memory import NATIVE_VIEWS

    mem = PhysMemory()
    ram = mem.add_ram(BASE, 1 << 16)
    code = [A.s(0x23, 3, 2, 1, 0), A.i(0x03, 3, 3, 2, 0),   # sd x1, 0(x2); ld x3, 0(x2)
            A.s(0x23, 2, 2, 1, 8), A.i(0x03, 2, 4, 2, 8),   # sw x1, 8(x2); lw x4, 8(x2)
            A.EBREAK]
    mem.write_bytes(BASE, A.words(code))
    h = Hart(mem, engine="fast")
    h.intercept_mtraps = True
    h.pc = BASE
    h.x[1], h.x[2] = 0x8877_6655_F433_2211, BASE + 0x1000
    h.run(100)
    h.pc = BASE
    h.run(100)  # second pass: the TLB hit path
    assert h.x[3] == 0x8877_6655_F433_2211 and h.x[4] == 0xFFFF_FFFF_F433_2211
    if NATIVE_VIEWS:
        assert "[2][(" in h.ctx.blocks[BASE].src  # the 8-byte view
    view = ram.views()[0]
    mem.close()
    assert ram.buf.closed
    with pytest.raises(ValueError):
        view[0]
