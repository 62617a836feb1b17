"""Invalidation as fine as the change: ``fence.i`` drops nothing (stores to
code pages invalidate as they happen, whoever makes them), ``sfence.vma``
of one address sets aside only what that address's leaf mapping can
change, an ASID fence only that address space's code."""

from __future__ import annotations

import struct
from typing import List, Tuple

from rvkvm.emulator import csr as C
from rvkvm.emulator.hart import Hart
from rvkvm.emulator.memory import PhysMemory

from . import rvasm as A
from .harts import BASE, make_hart
from .rvasm import assemble, br, lbl

CODE = BASE + 0x1000  # hart A's loop
STORER = BASE + 0x3000  # hart B's store
FENCE_I = 0x0000100F


def counting_loop(step: int) -> List[int]:
    """x5 += step, x20 times, then ebreak."""
    return assemble([lbl("top"), A.addi(5, 5, step), A.addi(20, 20, -1),
                     br(1, 20, 0, "top"), A.EBREAK])


def run_loop(h: Hart, pc: int, laps: int = 30) -> Tuple[str, int]:
    h.pc = pc
    h.x[20] = laps
    h.x[5] = 0
    stop = h.run(10_000)
    return stop.reason, h.x[5]


def two_harts(engine: str) -> Tuple[Hart, Hart, PhysMemory]:
    a, mem = make_hart(engine, [A.EBREAK])
    mem.write_bytes(CODE, A.words(counting_loop(1)))
    # hart B: sw x6, 0(x7); ebreak
    mem.write_bytes(STORER, A.words([A.s(0x23, 2, 7, 6, 0), A.EBREAK]))
    b = Hart(mem, hartid=1, engine=engine)
    b.intercept_mtraps = True
    return a, b, mem


def store_from_b(b: Hart, addr: int, word: int) -> None:
    b.pc = STORER
    b.x[6], b.x[7] = word, addr
    assert b.run(100).reason == "trap"


def cross_hart_scenario(engine: str) -> List[Tuple[str, int]]:
    a, b, _ = two_harts(engine)
    # B's store reaches CODE's page first as plain data (its write TLB
    # holds the page), then A builds code from the page.
    store_from_b(b, CODE + 0x800, 0)
    seen = [run_loop(a, CODE)]
    # B rewrites A's first instruction (x5 += 1 -> x5 += 9); A fences.
    store_from_b(b, CODE, A.addi(5, 5, 9))
    a.fence_i(FENCE_I, 0)
    seen.append(run_loop(a, CODE))
    # and once more, the page now code already
    store_from_b(b, CODE, A.addi(5, 5, 3))
    a.fence_i(FENCE_I, 0)
    seen.append(run_loop(a, CODE))
    return seen


def test_code_written_by_another_hart_runs_after_fence_i() -> None:
    fast = cross_hart_scenario("fast")
    assert fast == cross_hart_scenario("reference")
    assert fast == [("trap", 30), ("trap", 270), ("trap", 90)]


def test_fence_i_keeps_code_nobody_wrote() -> None:
    a, b, _ = two_harts("fast")
    run_loop(a, CODE)
    built = a.translator.blocks_built
    a.fence_i(FENCE_I, 0)
    store_from_b(b, BASE + 0x8000, 1234)  # data, not code
    a.fence_i(FENCE_I, 0)
    assert run_loop(a, CODE) == ("trap", 30)
    assert a.translator.blocks_built == built


def self_modifying(engine: str) -> Tuple[str, int, int]:
    """A loop that rewrites the immediate of its own ``addi`` every lap
    (x5 += lap number), with fence.i after each store."""
    # x6 = the addi's address; x7 = the addi word without immediate
    patch = assemble([
        lbl("top"),
        A.addi(5, 5, 0),                 # patched: x5 += x21
        A.addi(21, 21, 1),
        A.i(0x13, 1, 8, 21, 20),         # slli x8, x21, 20: the new immediate
        A.r(0x33, 6, 0, 8, 8, 7),        # or x8, x8, x7
        A.s(0x23, 2, 6, 8, 0),           # sw x8, 0(x6)
        FENCE_I,
        A.addi(20, 20, -1),
        br(1, 20, 0, "top"),
        A.EBREAK,
    ])
    h, mem = make_hart(engine, [A.EBREAK])
    mem.write_bytes(CODE, A.words(patch))
    h.pc = CODE
    h.x[6], h.x[7], h.x[20], h.x[21] = CODE, A.addi(5, 5, 0), 25, 0
    stop = h.run(10_000)
    return stop.reason, h.x[5], h.instret


def test_self_modifying_code_on_one_hart() -> None:
    fast = self_modifying("fast")
    assert fast == self_modifying("reference")
    assert fast[:2] == ("trap", sum(range(25)))


def test_host_write_of_code_is_seen() -> None:
    for engine in ("fast", "reference"):
        h, mem = make_hart(engine, [A.EBREAK])
        mem.write_bytes(CODE, A.words(counting_loop(1)))
        assert run_loop(h, CODE) == ("trap", 30)
        mem.write_bytes(CODE, A.words([A.addi(5, 5, 5)]))  # as WriteMemory does
        assert run_loop(h, CODE) == ("trap", 150)


# -- sfence.vma -----------------------------------------------------------------

ROOT, MID, LEAF = BASE + 0x10000, BASE + 0x11000, BASE + 0x12000
VA1, VA2 = 0x1000_0000, 0x1000_1000  # two code pages (4 KiB leaves)
PA1, PA2, PA3 = BASE + 0x20000, BASE + 0x21000, BASE + 0x22000
SUPER_VA = 0x1020_0000  # a 2 MiB leaf
SUPER_A, SUPER_B = BASE + 0x40_0000, BASE + 0x60_0000
V, R, W, X, AD = 1, 2, 4, 8, 0xC0


def pte(pa: int, flags: int) -> bytes:
    return struct.pack("<Q", ((pa >> 12) << 10) | flags)


def sfence(rs1: int, rs2: int) -> int:
    return (0x09 << 25) | (rs2 << 20) | (rs1 << 15) | 0x73


def paged_hart(engine: str, asid: int = 0) -> Tuple[Hart, PhysMemory]:
    h, mem = make_hart(engine, [A.EBREAK], ram=8 << 20)
    vpn2, vpn1 = (VA1 >> 30) & 511, (VA1 >> 21) & 511
    mem.write_bytes(ROOT + 8 * vpn2, pte(MID, V))
    mem.write_bytes(MID + 8 * vpn1, pte(LEAF, V))
    mem.write_bytes(LEAF + 8 * ((VA1 >> 12) & 511), pte(PA1, V | R | X | AD))
    mem.write_bytes(LEAF + 8 * ((VA2 >> 12) & 511), pte(PA2, V | R | X | AD))
    mem.write_bytes(MID + 8 * ((SUPER_VA >> 21) & 511), pte(SUPER_A, V | R | X | AD))
    mem.write_bytes(PA1, A.words(counting_loop(1)))
    mem.write_bytes(PA2, A.words(counting_loop(2)))
    mem.write_bytes(PA3, A.words(counting_loop(3)))
    for base, step in ((SUPER_A, 10), (SUPER_B, 20)):
        mem.write_bytes(base, A.words(counting_loop(step)))
        mem.write_bytes(base + 0x5000, A.words(counting_loop(step + 1)))
    h.priv = 1
    h.csr_write(C.SATP, (8 << 60) | (asid << 44) | (ROOT >> 12))
    h.update_ctx()
    return h, mem


def remap_leaf(mem: PhysMemory, va: int, pa: int) -> None:
    mem.write_bytes(LEAF + 8 * ((va >> 12) & 511), pte(pa, V | R | X | AD))


def test_sfence_of_one_page_sets_aside_that_page_only() -> None:
    h, mem = paged_hart("fast")
    assert run_loop(h, VA1) == ("trap", 30)
    assert run_loop(h, VA2) == ("trap", 60)
    kept = h.ctx.blocks[VA1]
    remap_leaf(mem, VA2, PA3)
    h.sfence_vma(VA2, 0, sfence(10, 0), 0)
    assert h.ctx.blocks.get(VA1) is kept  # not even set aside
    assert VA2 not in h.ctx.blocks
    assert run_loop(h, VA2) == ("trap", 90)  # the new mapping's code
    assert run_loop(h, VA1) == ("trap", 30)
    # a full fence sets everything aside, and code whose page still maps
    # to the same physical page is taken back
    built = h.translator.blocks_built
    h.sfence_vma(0, 0, sfence(0, 0), 0)
    assert VA1 not in h.ctx.blocks
    assert run_loop(h, VA1) == ("trap", 30)
    assert h.translator.blocks_built == built


def test_sfence_of_one_address_covers_its_whole_superpage() -> None:
    for engine in ("fast", "reference"):
        h, mem = paged_hart(engine)
        assert run_loop(h, SUPER_VA) == ("trap", 300)
        assert run_loop(h, SUPER_VA + 0x5000) == ("trap", 330)
        mem.write_bytes(MID + 8 * ((SUPER_VA >> 21) & 511), pte(SUPER_B, V | R | X | AD))
        # one address of the 2 MiB leaf, in neither code page
        h.sfence_vma(SUPER_VA + 0x10_0000, 0, sfence(10, 0), 0)
        assert run_loop(h, SUPER_VA + 0x5000) == ("trap", 630), engine
        assert run_loop(h, SUPER_VA) == ("trap", 600), engine


def test_sfence_of_one_address_keeps_other_superpages() -> None:
    # once a 2 MiB leaf was seen, a fence of one address drops what the
    # 2 MiB span around it holds, and nothing of other spans
    h, mem = paged_hart("fast")
    assert run_loop(h, SUPER_VA) == ("trap", 300)
    assert run_loop(h, VA1) == ("trap", 30)
    assert run_loop(h, VA2) == ("trap", 60)
    kept = h.ctx.blocks[SUPER_VA]
    assert SUPER_VA in h.ctx.xt and VA2 in h.ctx.xt
    remap_leaf(mem, VA2, PA3)
    h.sfence_vma(VA2, 0, sfence(10, 0), 0)
    assert h.ctx.blocks.get(SUPER_VA) is kept and SUPER_VA in h.ctx.xt
    assert VA2 not in h.ctx.xt and VA1 not in h.ctx.xt  # the same 2 MiB span
    assert run_loop(h, VA2) == ("trap", 90)
    assert run_loop(h, VA1) == ("trap", 30)
    # entries filled after the fence are indexed again: a fence in the
    # superpage still reaches them
    mem.write_bytes(MID + 8 * ((SUPER_VA >> 21) & 511), pte(SUPER_B, V | R | X | AD))
    h.sfence_vma(SUPER_VA + 0x1234, 0, sfence(10, 0), 0)
    assert SUPER_VA not in h.ctx.xt and VA1 in h.ctx.xt
    assert run_loop(h, SUPER_VA) == ("trap", 600)


def test_sfence_of_another_asid_keeps_code() -> None:
    h, mem = paged_hart("fast", asid=5)
    assert run_loop(h, VA1) == ("trap", 30)
    kept = h.ctx.blocks[VA1]
    h.sfence_vma(0, 6, sfence(0, 11), 0)
    assert h.ctx.blocks.get(VA1) is kept
    remap_leaf(mem, VA1, PA3)
    h.sfence_vma(0, 5, sfence(0, 11), 0)
    assert run_loop(h, VA1) == ("trap", 90)


def test_a_write_drops_only_the_code_whose_bytes_it_touches() -> None:
    h, mem = make_hart("fast", [A.EBREAK])
    mem.write_bytes(CODE, A.words(counting_loop(1)))
    mem.write_bytes(CODE + 0x100, A.words(counting_loop(2)))
    assert run_loop(h, CODE) == ("trap", 30)
    assert run_loop(h, CODE + 0x100) == ("trap", 60)
    first, second = h.ctx.blocks[CODE], h.ctx.blocks[CODE + 0x100]
    mem.write_bytes(CODE + 0x800, b"data")  # same page, no code there
    assert h.ctx.blocks[CODE] is first and h.ctx.blocks[CODE + 0x100] is second
    assert (CODE >> 12) in mem.code_pages
    mem.write_bytes(CODE + 0x100, A.words([A.addi(5, 5, 4)]))  # the second loop's first word
    assert h.ctx.blocks[CODE] is first and CODE + 0x100 not in h.ctx.blocks
    assert run_loop(h, CODE + 0x100) == ("trap", 120)
    assert run_loop(h, CODE) == ("trap", 30)


def test_a_page_stops_being_code_when_its_code_is_gone() -> None:
    h, mem = make_hart("fast", [A.EBREAK])
    mem.write_bytes(CODE, A.words(counting_loop(1)))
    run_loop(h, CODE)
    assert (CODE >> 12) in mem.code_pages
    mem.write_bytes(CODE, bytes(64))  # over every instruction built from the page
    assert (CODE >> 12) not in mem.code_pages  # stores there take the fast path again
