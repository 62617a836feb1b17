"""Regression tests for core bugs found by the official riscv-tests ISA suites
(rv64ui/um/ua/uc/uf/ud/si/mi, -p and -v environments).

Each test is a small hand-encoded program run on a bare :class:`Hart` in both
engines; a trap that would enter M-mode stops the run (``intercept_mtraps``).
"""

from __future__ import annotations

import pytest

from rvkvm.emulator.hart import Hart
from rvkvm.emulator.memory import PhysMemory

from .rvasm import ECALL, WFI, addi, csrrs, csrrw, words

BASE = 0x8000_0000
ENGINES = ("fast", "reference")

MIP, SISELECT, SIREG, SIREG2 = 0x344, 0x150, 0x151, 0x152
CAUSE_ILLEGAL, CAUSE_ECALL_M = 2, 11


def run(code: list, engine: str, n: int = 100):
    mem = PhysMemory()
    mem.add_ram(BASE, 1 << 20)
    mem.write_bytes(BASE, words(code))
    h = Hart(mem, engine=engine)
    h.pc = BASE
    h.intercept_mtraps = True
    return h, h.run(n)


@pytest.mark.parametrize("engine", ENGINES)
def test_wfi_does_not_stall_while_a_disabled_interrupt_is_pending(engine: str) -> None:
    # rv64si-p-wfi: with mip.SSIP set but mie = 0, WFI must not wait forever
    # (it used to stop the run with "wfi": nothing would ever wake the hart).
    code = [
        addi(1, 0, 2),          # x1 = SSIP
        csrrs(0, MIP, 1),       # mip.SSIP = 1, mie stays 0
        WFI,
        addi(5, 0, 7),
        ECALL,
    ]
    h, stop = run(code, engine)
    assert (stop.reason, stop.cause) == ("trap", CAUSE_ECALL_M)
    assert h.x[5] == 7


@pytest.mark.parametrize("engine", ENGINES)
def test_wfi_still_waits_when_nothing_is_pending(engine: str) -> None:
    h, stop = run([WFI, addi(5, 0, 7), ECALL], engine)
    assert stop.reason == "wfi"
    assert h.x[5] == 0


@pytest.mark.parametrize("engine", ENGINES)
def test_spmp_registers_through_siselect(engine: str) -> None:
    # rv64si-p-spmpcfg/spmpaddr: siselect 0x100+i reaches spmpaddr[i] (sireg)
    # and spmpcfg[i] (sireg2); these CSRs used to raise illegal instruction.
    bad_read = csrrs(9, SIREG, 0)
    code = [
        addi(1, 0, 0x100),
        csrrw(0, SISELECT, 1),
        addi(2, 0, 0x1E),       # NAPOT|X|W without R: kept as written
        csrrw(0, SIREG2, 2),
        csrrs(6, SIREG2, 0),
        addi(3, 0, -1),
        csrrw(0, SIREG, 3),
        csrrs(7, SIREG, 0),
        csrrs(8, SISELECT, 0),
        addi(1, 0, 0x7FF),      # selects no SPMP entry
        csrrw(0, SISELECT, 1),
        bad_read,
    ]
    h, stop = run(code, engine)
    assert (h.x[6], h.x[7], h.x[8]) == (0x1E, (1 << 54) - 1, 0x100)
    assert (stop.reason, stop.cause, stop.tval) == ("trap", CAUSE_ILLEGAL, bad_read)
    assert h.pc == BASE + 4 * (len(code) - 1)
