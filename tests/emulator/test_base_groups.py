"""Loads and stores of a block through one base register that keeps its
value share one TLB lookup (region.emit.base_groups), whatever lies
between them and whatever their sizes. Whatever they meet (a page boundary
inside the group, a misaligned base, a fault in the middle, a read-only or
code page, the base rewritten), the state must be the reference
interpreter's."""

from __future__ import annotations

from typing import List

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rvkvm.emulator.hart import Hart
from rvkvm.emulator.isa import decode
from rvkvm.emulator.memory import PhysMemory
from rvkvm.emulator.region.emit import base_groups

from . import rvasm as A

BASE = 0x8000_0000
DATA = BASE + 0x2000
RAM = 0x4000
SP = 2
LOADS = [(0, 1), (1, 2), (2, 4), (3, 8), (4, 1), (5, 2), (6, 4)]  # (funct3, size)
STORES = [(0, 1), (1, 2), (2, 4), (3, 8)]


@st.composite
def access(draw: st.DrawFn) -> int:
    if draw(st.booleans()):
        f3, size = draw(st.sampled_from(LOADS))
        rd = draw(st.sampled_from([5, 6, 7, 8, 9, SP]))  # SP: the base rewritten
        return A.i(0x03, f3, rd, SP, draw(st.integers(-32, 40)) & ~(size - 1)
                   if draw(st.integers(0, 9)) else draw(st.integers(-32, 40)))
    f3, size = draw(st.sampled_from(STORES))
    off = draw(st.integers(-32, 40))
    return A.s(0x23, f3, SP, draw(st.sampled_from([0, 5, 6, 7, 8, 9])),
               off & ~(size - 1) if draw(st.integers(0, 9)) else off)


@st.composite
def block(draw: st.DrawFn) -> List[int]:
    out = []
    for _ in range(draw(st.integers(2, 10))):
        if draw(st.integers(0, 3)) == 0:
            out.append(A.addi(draw(st.sampled_from([5, 6, 7])), draw(st.sampled_from([5, 9])),
                              draw(st.integers(-9, 9))))
        else:
            out.append(draw(access()))
    return out


def run(engine: str, body: List[int], sp: int, laps: int = 3) -> tuple:
    # the body in a counted loop (x20), so the region is built and entered again
    prog = [A.addi(20, 0, laps), A.addi(21, SP, 0)] + body + [
        A.addi(SP, 21, 0), A.addi(20, 20, -1), A.b(1, 20, 0, -4 * (len(body) + 2)), A.EBREAK]
    mem = PhysMemory()
    mem.add_ram(BASE, RAM)
    mem.add_ram(BASE + RAM, 0x1000, "rom", readonly=True)
    mem.write_bytes(BASE + RAM, bytes(range(256)) * 16, force=True)
    mem.write_bytes(BASE, A.words(prog))
    mem.write_bytes(DATA, bytes((k * 29 + 3) & 0xFF for k in range(0x1000)))
    h = Hart(mem, engine=engine)
    h.intercept_mtraps = True
    h.pc = BASE
    for n in range(5, 10):
        h.x[n] = (0x0102_0304_0506_0708 * n) & ((1 << 64) - 1)
    h.x[SP] = sp
    stop = h.run(10_000)
    return (stop.reason, stop.cause, stop.tval, h.pc, h.instret, tuple(h.x),
            mem.read_bytes(BASE + 0x1000, RAM - 0x1000))


SPS = [DATA + 0x100, DATA + 0x1000 - 12, DATA + 0x1000 - 36, DATA + 0x103,  # in, across, odd
       BASE + RAM - 20,  # across into ROM: stores fault there, loads do not
       BASE + 0x10]  # the code page: stores drop the running code


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=block(), sp=st.sampled_from(SPS))
def test_base_groups_agree_with_the_reference(body: List[int], sp: int) -> None:
    assert run("fast", body, sp) == run("reference", body, sp)


def test_groups_found() -> None:
    def dec(words: List[int]):
        return [decode(w, BASE + 4 * k) for k, w in enumerate(words)]

    sd8 = A.s(0x23, 3, SP, 8, 8)
    lw12 = A.i(0x03, 2, 9, SP, 12)
    lbu3 = A.i(0x03, 4, 10, SP, 3)
    add = A.addi(5, 5, 1)
    groups = base_groups(dec([sd8, add, lw12, add, lbu3]), set())
    assert sorted(groups) == [0, 2, 4] and len(set(groups.values())) == 1
    g = groups[0]
    assert (g.reg, g.lo, g.span, g.align, g.stores, g.bytes) == (SP, 3, 12, 8, True, True)
    # an offset not aligned to its size: not in the group (alone: no group)
    assert base_groups(dec([sd8, A.s(0x23, 3, SP, 8, 12)]), set()) == {}
    # the base rewritten between them: two groups of one, none
    assert base_groups(dec([sd8, A.addi(SP, SP, 16), lw12]), set()) == {}
    # a store's rd field is an offset, not a write; a load of the base ends it
    g2 = base_groups(dec([A.s(0x23, 3, SP, 8, 2 * 32 + 8), A.i(0x03, 3, SP, SP, 0),
                          A.i(0x03, 3, 9, SP, 8)]), set())
    assert sorted(g2) == [0, 1]


def test_one_lookup_serves_the_group() -> None:
    body = [A.s(0x23, 3, SP, 8, 8), A.addi(5, 5, 1), A.i(0x03, 2, 9, SP, 12), A.addi(6, 6, 1),
            A.i(0x03, 4, 7, SP, 3)]
    h = Hart(PhysMemory(), engine="fast")
    h.mem.add_ram(BASE, RAM)
    prog = body + [A.EBREAK]
    h.mem.write_bytes(BASE, A.words(prog))
    h.pc, h.x[SP] = BASE, DATA
    h.intercept_mtraps = True
    h.run(100)
    src = h.ctx.blocks[BASE].src
    assert src.count("WT.get(") == 2 and src.count("RT.get(") == 2  # the group's, the fallbacks'
