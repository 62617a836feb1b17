"""LR/SC and AMOs take the software TLB when the page is in it (writable RAM
with no code for SC and the AMOs, readable RAM for LR): the same values,
memory and reservation rules as the slow path through the page walk, which
fills the TLB for the next access."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rvkvm.emulator.events import CodeModified
from rvkvm.emulator.hart import Hart
from rvkvm.emulator.memory import PhysMemory

from . import rvasm as A

BASE = 0x8000_0000
DATA = BASE + 0x4000
M64 = (1 << 64) - 1
OPS = ("add", "swap", "xor", "or", "and", "min", "max", "minu", "maxu")


def make() -> Hart:
    mem = PhysMemory()
    mem.add_ram(BASE, 1 << 16)
    h = Hart(mem, engine="fast")
    h.intercept_mtraps = True
    return h


def sext(v: int, size: int) -> int:
    bits = 8 * size
    v &= (1 << bits) - 1
    return (v - (1 << bits) if v >> (bits - 1) else v) & M64


def model(op: str, a: int, b: int) -> int:
    sa, sb = a - (1 << 64) if a >> 63 else a, b - (1 << 64) if b >> 63 else b
    return {"add": a + b, "swap": b, "xor": a ^ b, "or": a | b, "and": a & b,
            "min": a if sa < sb else b, "max": a if sa > sb else b,
            "minu": min(a, b), "maxu": max(a, b)}[op] & M64


def slow_calls(h: Hart) -> list:
    """Count the page-walking slow path of the atomics on ``h``."""
    calls: list = []
    orig = h._amo_phys

    def counted(*args: int) -> int:
        calls.append(args)
        return orig(*args)

    h._amo_phys = counted  # type: ignore[method-assign]
    return calls


values = st.one_of(st.integers(0, M64), st.sampled_from(
    [0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 1 << 63, M64, (1 << 63) - 1]))


@settings(max_examples=60, deadline=None)
@given(op=st.sampled_from(OPS), size=st.sampled_from([4, 8]), old=values, src=values,
       slot=st.integers(0, 7))
def test_amo_fast_path_matches_the_slow_path(op: str, size: int, old: int, src: int,
                                            slot: int) -> None:
    va = DATA + slot * 8
    results = []
    for warm in (False, True):
        h = make()
        if warm:
            h.store(DATA + 0x100, 8, 0, 0)  # fills the write TLB for the page
        calls = slow_calls(h)
        h.mem.write(va, size, old & ((1 << (8 * size)) - 1))
        got = h.amo(va, size, op, src, 0)
        assert bool(calls) != warm  # the fast path went without a page walk
        results.append((got, h.mem.read(va, 8)))
    assert results[0] == results[1]
    a, b = sext(old, size), (src if size == 8 else sext(src, size))
    assert results[1][0] == a
    assert results[1][1] & ((1 << (8 * size)) - 1) == model(op, a, b) & ((1 << (8 * size)) - 1)


@pytest.mark.parametrize("warm", [False, True])
def test_reservation_rules_on_both_paths(warm: bool) -> None:
    h = make()
    if warm:
        h.store(DATA + 0x100, 8, 0, 0)
        h.load_u(DATA + 0x100, 8, 0)
    calls = slow_calls(h)
    h.mem.write(DATA, 8, 0x1122334455667788)
    assert h.lr(DATA, 8, 0) == 0x1122334455667788
    assert h.sc(DATA, 8, 0xAB, 0) == 0  # success writes
    assert h.mem.read(DATA, 8) == 0xAB
    assert h.sc(DATA, 8, 0xCD, 0) == 1  # the reservation is gone
    assert h.mem.read(DATA, 8) == 0xAB
    h.lr(DATA, 8, 0)
    assert h.sc(DATA + 8, 8, 0xCD, 0) == 1  # another address fails, writes nothing
    assert h.mem.read(DATA + 8, 8) == 0
    h.lr(DATA, 4, 0)
    assert h.sc(DATA, 8, 0xCD, 0) == 1  # another size fails
    h.lr(DATA, 8, 0)
    h.amo(DATA + 4, 4, "add", 1, 0)  # overlapping AMO drops the reservation
    assert h.sc(DATA, 8, 0xCD, 0) == 1
    h.lr(DATA, 8, 0)
    h.amo(DATA + 8, 8, "add", 1, 0)  # a disjoint one does not
    assert h.sc(DATA, 8, 0xEF, 0) == 0
    assert h.mem.read(DATA, 8) == 0xEF
    assert h.lr(DATA + 0x10, 4, 0) == 0
    h.mem.write(DATA + 0x10, 4, 0x80000000)
    assert h.lr(DATA + 0x10, 4, 0) == 0xFFFFFFFF80000000  # lr.w sign-extends
    if warm:
        assert not calls
    else:
        assert len(calls) == 2  # the first LR filled the read TLB, the first SC the write TLB
        h2 = make()
        c2 = slow_calls(h2)
        h2.amo(DATA, 8, "add", 1, 0)
        h2.amo(DATA, 8, "add", 1, 0)
        h2.sc(DATA, 8, 1, 0)
        assert len(c2) == 1  # the slow AMO filled the write TLB for the next ones


def test_atomics_on_a_code_page_still_drop_its_code() -> None:
    h = make()
    loop = [A.addi(5, 5, 1), A.b(1, 5, 6, -4), A.EBREAK]
    h.mem.write_bytes(BASE, A.words(loop))
    h.pc = BASE
    h.x[6] = 50
    h.run(1000)
    assert BASE in h.ctx.blocks
    h.store(BASE + 0x800, 8, 0, 0)  # a data access on the code page: no write-TLB entry
    assert not h.ctx.wt
    old = h.amo(BASE, 4, "or", 0, 0)  # rewrites the addi with itself
    assert old == A.addi(5, 5, 1)  # the old value comes back for rd
    assert BASE not in h.ctx.blocks
    assert h.code_dirty  # the instruction's code ends the block after rd is set
    with pytest.raises(CodeModified):
        h.after_atomic(0)
    assert not h.code_dirty
