"""Translated code shared between translation contexts: the same code page
run from several address spaces (and with SUM on and off) is built once
and entered from each (with that context's TLBs); a context whose page maps
elsewhere, or code written since, builds anew; past ``MAX_CTXS`` contexts
the least recently entered one goes, not every context's code."""

from __future__ import annotations

import struct
from typing import List, Tuple

import pytest

from rvkvm.emulator import csr as C
from rvkvm.emulator import hart as hart_module

from . import rvasm as A
from .harts import BASE, make_hart
from .rvasm import assemble, br, lbl

PAGE_A, PAGE_B = BASE + 0x20000, BASE + 0x21000
DATA = BASE + 0x22000  # one data page, mapped in every space
VA = 0x1000_0000  # the code's virtual page
VDATA = VA + 0x1000  # the same leaf table
V, R, W, X, U, AD = 1, 2, 4, 8, 16, 0xC0


def pte(pa: int, flags: int) -> bytes:
    return struct.pack("<Q", ((pa >> 12) << 10) | flags)


def loop(step: int) -> List[int]:
    """x5 += step and the data word at x6 += step, x20 times, then ebreak."""
    return assemble([lbl("top"), A.addi(5, 5, step), A.i(0x03, 3, 7, 6, 0), A.addi(7, 7, step),
                     A.s(0x23, 3, 6, 7, 0), A.addi(20, 20, -1), br(1, 20, 0, "top"), A.EBREAK])


def space(mem, n: int, code_pa: int) -> int:
    """Page tables number ``n`` (at their own pages) mapping VA to
    ``code_pa`` and VDATA to DATA: the root's physical page number."""
    root, mid, leaf = (BASE + 0x30000 + 0x3000 * n + 0x1000 * i for i in range(3))
    mem.write_bytes(root + 8 * ((VA >> 30) & 511), pte(mid, V))
    mem.write_bytes(mid + 8 * ((VA >> 21) & 511), pte(leaf, V))
    mem.write_bytes(leaf + 8 * ((VA >> 12) & 511), pte(code_pa, V | R | X | AD))
    mem.write_bytes(leaf + 8 * ((VDATA >> 12) & 511), pte(DATA, V | R | W | AD))
    return root >> 12


def setup(engine: str):
    h, mem = make_hart(engine, [A.EBREAK], ram=1 << 20)
    mem.write_bytes(PAGE_A, A.words(loop(1)))
    mem.write_bytes(PAGE_B, A.words(loop(100)))
    roots = [space(mem, 0, PAGE_A), space(mem, 1, PAGE_A), space(mem, 2, PAGE_B)]
    h.priv = 1
    return h, mem, roots


def enter(h, root: int, asid: int, sum_: bool = False) -> None:
    h.csr_write(C.SATP, (8 << 60) | (asid << 44) | root)
    h.mstatus = (h.mstatus | C.MS_SUM) if sum_ else (h.mstatus & ~C.MS_SUM)
    h.update_ctx()


def lap(h, laps: int = 100) -> Tuple[str, int, int, int]:
    h.pc = VA
    h.x[20] = laps
    h.x[6] = VDATA
    stop = h.run(100_000)
    return stop.reason, stop.cause, h.pc, h.x[5]


def scenario(engine: str) -> Tuple[list, list, list]:
    h, mem, roots = setup(engine)
    tr = h.translator
    seen, built, adopted = [], [], []

    def step(root: int, asid: int, sum_: bool = False) -> None:
        enter(h, roots[root], asid, sum_)
        seen.append(lap(h) + (mem.read_bytes(DATA, 8),))
        if engine == "fast":
            built.append((tr.blocks_built, tr.tier1_built))
            adopted.append(tr.blocks_adopted)

    step(0, 1)               # builds the first tier's blocks, then the region
    step(1, 2)               # another address space, the same physical page
    step(1, 2, sum_=True)    # SUM on: another context again
    step(2, 3)               # VA maps to the other page there
    mem.write_bytes(PAGE_A, A.words([A.addi(5, 5, 7)]))  # the loop's first word
    step(1, 2)               # the written code, not the adopted region
    step(0, 1)
    return seen, built, adopted


def test_contexts_share_code_of_the_same_physical_page() -> None:
    ref, _, _ = scenario("reference")
    fast, built, adopted = scenario("fast")
    assert fast == ref
    assert [s[3] for s in fast[:4]] == [100, 200, 300, 300 + 100 * 100]
    # space 1 (twice) enters the first-tier blocks built in space 0: no
    # first-tier block built again; their entries count in every space
    # (one block), so the loop goes hot in the third run (300 laps) and its
    # region is built once
    assert built[1] == built[0]
    assert built[2][1] == built[0][1]
    assert built[2][0] - built[0][0] <= 1
    assert adopted[2] - adopted[0] >= 2
    # space 2 maps another page: its own code
    assert built[3][0] > built[2][0] or built[3][1] > built[2][1]


def test_written_code_is_not_adopted() -> None:
    fast, _, _ = scenario("fast")
    # after the store: 7 per lap, not 1, in both spaces that share the page
    assert fast[4][3] == fast[3][3] + 7 * 100
    assert fast[5][3] == fast[4][3] + 7 * 100


def contexts_scenario(engine: str, n: int) -> Tuple[list, List[int]]:
    """Run the loop in ``n`` address spaces (one ASID each, the same code
    page), then again in the last one and the first."""
    h, mem, _ = setup(engine)
    roots = [space(mem, 3 + i, PAGE_A) for i in range(n)]
    seen, built = [], []
    for i in [*range(n), n - 1, 0]:
        enter(h, roots[i], i + 1)
        seen.append(lap(h, 20))
        built.append(h.translator.blocks_built + h.translator.tier1_built)
    return seen, built


def test_past_the_context_limit_the_least_recently_entered_one_goes(monkeypatch) -> None:
    monkeypatch.setattr(hart_module, "MAX_CTXS", 4)
    n = 6
    ref, _ = contexts_scenario("reference", n)
    fast, built = contexts_scenario("fast", n)
    assert fast == ref
    h, mem, _ = setup("fast")
    roots = [space(mem, 3 + i, PAGE_A) for i in range(n)]
    for i in (0, 1, 2, 0, 3, 4, 5):  # space 0 entered again before the others
        enter(h, roots[i], i + 1)
        lap(h, 20)
    assert len(h._ctxs) <= 4
    asids = {(c.satp >> 44) & 0xFFFF for c in h._ctxs.values()}
    # the newest stay, and space 0 (entered since), not space 1
    assert {1, n - 1, n} <= asids and 2 not in asids
    # the most recent context kept its code: nothing is built again there
    assert built[n] == built[n - 1]


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_many_contexts_agree(engine: str, monkeypatch) -> None:
    monkeypatch.setattr(hart_module, "MAX_CTXS", 3)
    seen, _ = contexts_scenario(engine, 5)
    assert [s[3] for s in seen] == [20 * (i + 1) for i in range(7)]


def test_a_first_tier_block_serves_every_context_that_maps_its_page() -> None:
    h, mem, roots = setup("fast")
    enter(h, roots[0], 1)
    first = lap(h, 5)
    blk0 = h.ctx.blocks[VA]
    assert blk0.parts is not None  # a first-tier block, not yet hot
    enter(h, roots[1], 2)
    assert lap(h, 5)[3] == first[3] + 5
    # the same block object, entered with space 1's TLBs: its data store
    # went to the page space 1 maps (the same DATA page here)
    assert h.ctx.blocks[VA] is blk0
    assert h.translator.blocks_adopted >= 1
    # space 2 maps VA to another page: a block of its own
    enter(h, roots[2], 3)
    lap(h, 5)
    assert h.ctx.blocks[VA] is not blk0
