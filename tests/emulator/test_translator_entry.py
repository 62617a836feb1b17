"""Regions entered in the middle of a loop (a run resumed after a budget
exit, an interrupt return): the translator gives the entry a prefix block
that runs once and keeps the loop's own block whole, so the loop still
loops in place. Traps inside the prefix or the loop must retire exactly
what the reference interpreter retires."""

from __future__ import annotations

import itertools
from typing import List, Tuple

import pytest

from rvkvm.emulator.hart import Hart
from rvkvm.emulator.memory import PhysMemory

from .rvasm import addi, b, i, words

BASE = 0x8000_0000
RAM = 1 << 16
LOOP = BASE + 8
CAUSE_LOAD_ACCESS = 5


def ld(rd: int, rs1: int, imm: int) -> int:
    return i(0x03, 3, rd, rs1, imm)


# x1 counts iterations; x4 walks through RAM 512 bytes at a time until the
# load leaves RAM and faults.
PROGRAM = [
    addi(1, 0, 0),
    addi(5, 0, 2000),
    addi(1, 1, 1),        # LOOP
    ld(3, 4, 0),          # LOOP + 4
    addi(4, 4, 512),      # LOOP + 8
    addi(6, 6, 3),        # LOOP + 12
    b(1, 1, 5, -16),      # LOOP + 16: bne x1, x5, LOOP
]


def make(engine: str, pc: int, x4: int) -> Hart:
    mem = PhysMemory()
    mem.add_ram(BASE, RAM)
    mem.write_bytes(BASE, words(PROGRAM))
    h = Hart(mem, engine=engine)
    h.intercept_mtraps = True
    h.pc = pc
    h.x[4] = x4
    h.x[5] = 2000
    return h


def run_in_steps(engine: str, pc: int, x4: int, budgets: List[int]) -> Tuple:
    h = make(engine, pc, x4)
    trace = []
    for budget in itertools.cycle(budgets):
        stop = h.run(budget)
        trace.append((h.pc, h.instret))
        if stop.reason != "budget":
            break
    return (stop.reason, stop.cause, stop.tval, h.pc, h.instret, list(h.x), trace)


@pytest.mark.parametrize("budgets", [[5], [7, 3], [11, 2, 13], [1000]])
def test_resumed_loop_matches_reference(budgets: List[int]) -> None:
    x4 = BASE + 0x1000
    fast = run_in_steps("fast", BASE, x4, budgets)
    ref = run_in_steps("reference", BASE, x4, budgets)
    assert fast == ref
    assert (fast[0], fast[1]) == ("trap", CAUSE_LOAD_ACCESS)
    assert fast[5][1] == (BASE + RAM - x4) // 512 + 1  # the faulting iteration


@pytest.mark.parametrize("entry", [LOOP + 4, LOOP + 8, LOOP + 12, LOOP + 16])
@pytest.mark.parametrize("laps", [0, 1, 3])
def test_trap_in_prefix_or_loop_after_mid_loop_entry(entry: int, laps: int) -> None:
    # The load faults after ``laps`` loads succeed (the prefix from LOOP + 8
    # passes the ``addi x4`` first); with the load as the entry and no laps,
    # the fault comes in the prefix itself.
    x4 = BASE + RAM - 512 * laps - (512 if entry == LOOP + 8 else 0)
    fast = run_in_steps("fast", entry, x4, [10_000])
    ref = run_in_steps("reference", entry, x4, [10_000])
    assert fast == ref
    assert (fast[0], fast[1]) == ("trap", CAUSE_LOAD_ACCESS)
    assert fast[3] == LOOP + 4  # the load
    assert fast[2] == BASE + RAM  # its address


def test_mid_loop_entry_keeps_the_loop_block_whole() -> None:
    h = make("fast", LOOP + 8, BASE + 0x1000)
    h.run(50)
    blk = h.ctx.blocks[LOOP + 8]
    # The prefix starts the count behind by its offset in the loop's block,
    # and the loop's block loops in place.
    assert "n = -2" in blk.src
    assert "while True:\n" in blk.src.split("while True:", 1)[1]
