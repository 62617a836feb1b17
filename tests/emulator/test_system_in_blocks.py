"""SYSTEM instructions that translated code runs itself (isa.priv.in_block):
accesses of plain CSRs, pure reads of a few others and the clearing of
sstatus.SIE inline, fence.i and sfence.vma as the last instruction of a
block, counter reads as its first; everything else stays with the
interpreter. Exact against the
reference engine, traps included."""

from __future__ import annotations

import pytest

import rvkvm.emulator.tier1 as tier1
from rvkvm.emulator.hart import PRV_U
from rvkvm.emulator.isa import decode
from rvkvm.emulator.isa.priv import FIRST, INLINE, LAST, in_block

from . import rvasm as A
from .harts import BASE, make_hart

SSTATUS, SSCRATCH, SEPC, SCAUSE, STVAL, SIP, SATP, TIME = (
    0x100, 0x140, 0x141, 0x142, 0x143, 0x144, 0x180, 0xC01)
FENCE_I = 0x0000100F
SFENCE_VMA = 0x12000073


def csrrci(rd: int, csr: int, uimm: int) -> int:
    return A.i(0x73, 7, rd, uimm, csr)


def csrrsi(rd: int, csr: int, uimm: int) -> int:
    return A.i(0x73, 6, rd, uimm, csr)


@pytest.mark.parametrize("word, want", [
    (A.csrrw(0, SSCRATCH, 5), INLINE),  # csrw sscratch, t0
    (A.csrrw(4, SSCRATCH, 4), INLINE),  # the trap entry's swap of tp
    (A.csrrs(6, SEPC, 0), INLINE),
    (A.csrrw(0, SCAUSE, 7), INLINE),
    (A.csrrs(8, STVAL, 0), INLINE),
    (A.csrrs(9, SSTATUS, 0), INLINE),  # csrr sstatus: a pure read
    (A.csrrs(9, SATP, 0), INLINE),
    (csrrci(10, SSTATUS, 2), INLINE),  # interrupts off
    (A.csrrs(9, SSTATUS, 5), 0),  # sets bits: may enable an interrupt
    (csrrsi(0, SSTATUS, 2), 0),  # interrupts on
    (csrrci(10, SSTATUS, 8), 0),  # clears another bit (of the context, say)
    (A.csrrw(0, SSTATUS, 5), 0),
    (A.csrrw(0, SATP, 5), 0),  # a new address space
    (A.csrrs(9, SIP, 0), 0),  # follows the timer
    (A.csrrs(9, TIME, 0), FIRST),  # follows retired instructions: exact at a block's start
    (A.csrrs(9, TIME - 1, 0), FIRST),  # cycle
    (A.csrrs(9, TIME + 1, 0), FIRST),  # instret
    (A.csrrw(9, TIME, 0), 0),  # (illegal)
    (FENCE_I, LAST),
    (SFENCE_VMA, LAST),
    (A.SRET, 0), (A.ECALL, 0), (A.WFI, 0),
])
def test_which_system_instructions_run_in_blocks(word: int, want: int) -> None:
    assert in_block(decode(word, BASE)) == want


PROGRAM = [
    A.addi(5, 0, 0x123), A.csrrw(0, SSCRATCH, 5), A.csrrs(6, SSCRATCH, 0),
    A.csrrw(7, SEPC, 6), A.csrrs(8, SEPC, 0), A.csrrw(0, SCAUSE, 5), A.csrrw(9, STVAL, 8),
    csrrsi(0, SSTATUS, 2),
    csrrci(10, SSTATUS, 2), A.csrrs(11, SSTATUS, 0), FENCE_I, A.addi(12, 12, 1),
    A.csrrs(15, TIME, 0), SFENCE_VMA, A.csrrs(13, SATP, 0), A.addi(20, 20, -1),
    A.b(1, 20, 0, -4 * 16), A.EBREAK,
]


def run(engine: str, priv: int = 3, hot: int = 64) -> tuple:
    saved = tier1.HOT_AFTER
    tier1.HOT_AFTER = hot
    try:
        h, _ = make_hart(engine, PROGRAM, regs={20: 3})
        h.priv = priv
        h.update_ctx()
        steps = []
        step = h.interp.step

        def counted() -> None:
            steps.append(h.pc)
            step()

        h.interp.step = counted  # type: ignore[method-assign]
        stop = h.run(10_000)
    finally:
        tier1.HOT_AFTER = saved
    state = (stop.reason, stop.cause, stop.tval, h.pc, h.instret, tuple(h.x), h.sscratch,
             h.sepc, h.scause, h.stval, h.mstatus)
    blocks = {pc - BASE: sorted(p - BASE for p in blk.index) for pc, blk in h.ctx.blocks.items()}
    return state, steps, blocks


@pytest.mark.parametrize("hot", [1, 64])
def test_the_fast_engine_runs_them_in_its_blocks_and_agrees(hot: int) -> None:
    ref, _, _ = run("reference")
    fast, steps, blocks = run("fast", hot=hot)
    assert fast == ref
    assert ref[:2] == ("trap", 3) and ref[3] == BASE + 4 * 17  # stopped at the ebreak
    assert fast[5][12] == 3 and fast[6] == 0x123 and fast[7] == 0x122  # three laps
    if hot == 1:  # regions at once: counter reads stay with the interpreter there
        assert {pc - BASE for pc in steps} <= {4 * 7, 4 * 12, 4 * 17}
        # the fences end their blocks and leave the region: the pcs after them enter others
        assert blocks[4 * 8] == [4 * 8, 4 * 9, 4 * 10] and blocks[4 * 13] == [4 * 13]
    if hot == 64:  # first-tier blocks
        # the interpreter ran the sets of SIE (interrupts on) and the ebreak only
        assert {pc - BASE for pc in steps} <= {4 * 7, 4 * 17}
        # csrrci, csrr sstatus, fence.i: a block; addi: another (the time
        # read starts one), rdtime and sfence.vma the next
        assert blocks[4 * 8] == [4 * 8, 4 * 9, 4 * 10] and blocks[4 * 11] == [4 * 11]
        assert blocks[4 * 12] == [4 * 12, 4 * 13] and blocks[4 * 14] == [4 * 14, 4 * 15, 4 * 16]


def test_a_trap_inside_a_block_is_precise() -> None:
    ref = run("reference", priv=PRV_U)[0]
    fast = run("fast", priv=PRV_U)[0]
    assert fast == ref
    assert ref[:2] == ("trap", 2) and ref[3] == BASE + 4  # csrw sscratch from U: illegal


def test_control_leaves_a_region_after_a_fence_even_where_a_branch_goes() -> None:
    # 0: x20 -= 1; 4: if x20 == x21 goto 12; 8: fence.i; 12: x5 += 1;
    # 16: if x20 != 0 goto 0; 20: ebreak. 12 follows the fence and is a
    # branch target: not a leader of the region at 0.
    code = [A.addi(20, 20, -1), A.b(0, 20, 21, 8), FENCE_I, A.addi(5, 5, 1),
            A.b(1, 20, 0, -16), A.EBREAK]
    saved = tier1.HOT_AFTER
    tier1.HOT_AFTER = 1
    try:
        states = []
        for engine in ("reference", "fast"):
            h, _ = make_hart(engine, code, regs={20: 4, 21: 2})
            stop = h.run(1000)
            states.append((stop.reason, h.pc, h.instret, tuple(h.x)))
    finally:
        tier1.HOT_AFTER = saved
    assert states[0] == states[1] and states[1][3][5] == 4
    region = h.ctx.blocks[BASE]
    assert region.src and sorted(region.index) == [BASE, BASE + 4, BASE + 8]
