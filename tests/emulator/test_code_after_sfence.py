"""Translated code across ``sfence.vma``: a fence sets blocks aside, and a
block runs again only while its virtual page still maps to the physical
page its code was read from; a remapped page runs the new code at once."""

from __future__ import annotations

import struct
from typing import List, Tuple

from rvkvm.emulator import csr as C

from . import rvasm as A
from .harts import BASE, make_hart
from .rvasm import assemble, br, lbl

ROOT, MID, LEAF = BASE + 0x10000, BASE + 0x11000, BASE + 0x12000
PAGE_A, PAGE_B = BASE + 0x20000, BASE + 0x21000
VA = 0x1000_0000  # the code's virtual page
V, R, W, X, AD = 1, 2, 4, 8, 0xC0


def pte(pa: int, flags: int) -> bytes:
    return struct.pack("<Q", ((pa >> 12) << 10) | flags)


def loop(step: int) -> List[int]:
    """x5 += step, x20 times, then ebreak."""
    return assemble([lbl("top"), A.addi(5, 5, step), A.addi(20, 20, -1),
                     br(1, 20, 0, "top"), A.EBREAK])


def sv39_hart(engine: str):
    h, mem = make_hart(engine, [A.EBREAK], ram=1 << 20)
    vpn2, vpn1, vpn0 = (VA >> 30) & 511, (VA >> 21) & 511, (VA >> 12) & 511
    mem.write_bytes(ROOT + 8 * vpn2, pte(MID, V))
    mem.write_bytes(MID + 8 * vpn1, pte(LEAF, V))
    mem.write_bytes(LEAF + 8 * vpn0, pte(PAGE_A, V | R | X | AD))
    mem.write_bytes(PAGE_A, A.words(loop(1)))
    mem.write_bytes(PAGE_B, A.words(loop(100)))
    h.priv = 1
    h.csr_write(C.SATP, (8 << 60) | (ROOT >> 12))
    h.update_ctx()
    return h, mem


def lap(h, laps: int = 40) -> Tuple[str, int, int, int]:
    h.pc = VA
    h.x[20] = laps
    stop = h.run(10_000)
    return stop.reason, stop.cause, h.pc, h.x[5]


def remap(mem, pa: int) -> None:
    mem.write_bytes(LEAF + 8 * ((VA >> 12) & 511), pte(pa, V | R | X | AD))


def scenario(engine: str) -> Tuple[list, list]:
    h, mem = sv39_hart(engine)
    seen = [lap(h)]
    built = [h.translator.blocks_built]
    h.sfence_vma(0, 0, 0, 0)          # nothing changed
    seen.append(lap(h))
    built.append(h.translator.blocks_built)
    remap(mem, PAGE_B)
    h.sfence_vma(0, 0, 0, 0)
    seen.append(lap(h))               # the new page's code
    built.append(h.translator.blocks_built)
    remap(mem, PAGE_A)
    h.sfence_vma(0, 0, 0, 0)
    seen.append(lap(h))               # and back
    built.append(h.translator.blocks_built)
    return seen, built


def test_fences_keep_code_whose_mapping_holds_and_drop_the_rest() -> None:
    ref, _ = scenario("reference")
    fast, built = scenario("fast")
    assert fast == ref
    ebreak = VA + 12
    assert [s[:3] for s in fast] == [("trap", 3, ebreak)] * 4
    assert [s[3] for s in fast] == [40, 80, 80 + 4000, 80 + 4000 + 40]
    # the loop's region and the ebreak's marker: built once, kept by the
    # fence that changed nothing, built again for each remapping
    assert built == [2, 2, 4, 6]


def test_written_code_set_aside_by_a_fence_is_not_reused() -> None:
    h, mem = sv39_hart("fast")
    lap(h)
    h.sfence_vma(0, 0, 0, 0)
    mem.write_bytes(PAGE_A, A.words([A.addi(5, 5, 7)]))  # the loop's first word
    assert lap(h)[3] == 40 + 7 * 40


def test_a_fence_with_the_page_made_not_executable_faults() -> None:
    h, mem = sv39_hart("fast")
    lap(h)
    mem.write_bytes(LEAF + 8 * ((VA >> 12) & 511), pte(PAGE_A, V | R | AD))  # X cleared
    h.sfence_vma(0, 0, 0, 0)
    stop = lap(h)
    assert stop[:3] == ("trap", C.CAUSE_FETCH_PAGE_FAULT, VA)
