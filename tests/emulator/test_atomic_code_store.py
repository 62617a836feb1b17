"""An AMO or SC that writes translated code ends its block after it, with
its destination register written: the value it returns is the result of
the instruction, not lost with the block (Debian's kernel spun forever in
a ticket spinlock whose amoadd.w ticket never reached a4)."""

from __future__ import annotations

import pytest

from rvkvm.emulator.hart import Hart
from rvkvm.emulator.memory import PhysMemory

from . import rvasm as A

BASE = 0x8000_0000
LOOP = BASE + 16
ROUNDS = 100


def amo_w(funct5: int, rd: int, rs1: int, rs2: int) -> int:
    return A.r(0x2F, 2, funct5 << 2, rd, rs1, rs2)


def program() -> list:
    # x10 = LOOP; x13 = the word at LOOP; each round rewrites that word
    # (the running code) with itself by amoor.w and by lr.w/sc.w, counting
    # wrong results in x20 (amoor.w's old value) and x21 (sc.w's status)
    return [
        A.u(0x17, 10, 0),                 # auipc x10, 0
        A.addi(10, 10, 16),               # x10 = LOOP
        A.i(0x03, 2, 13, 10, 0),          # lw x13, 0(x10)
        A.addi(6, 0, ROUNDS),
        A.addi(14, 0, 0x123),             # LOOP: x14 = 0x123, then rewritten
        amo_w(0x08, 14, 10, 0),           # amoor.w x14, x0, (x10)
        A.b(0, 14, 13, 8),                # beq x14, x13, +8
        A.addi(20, 20, 1),
        amo_w(0x02, 15, 10, 0),           # lr.w x15, (x10)
        A.addi(16, 0, 7),
        amo_w(0x03, 16, 10, 15),          # sc.w x16, x15, (x10)
        A.b(0, 16, 0, 8),                 # beq x16, x0, +8
        A.addi(21, 21, 1),
        A.addi(6, 6, -1),
        A.b(1, 6, 0, -40),                # bne x6, x0, LOOP
        A.EBREAK,
    ]


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_amo_and_sc_rewriting_running_code_write_rd(engine: str) -> None:
    mem = PhysMemory()
    mem.add_ram(BASE, 1 << 16)
    code = A.words(program())
    mem.write_bytes(BASE, code)
    h = Hart(mem, engine=engine)
    h.intercept_mtraps = True
    h.pc = BASE
    h.run(10_000)
    word = int.from_bytes(code[16:20], "little")
    assert h.x[13] == word
    assert h.x[6] == 0  # every round ran
    assert (h.x[20], h.x[21]) == (0, 0)  # no round lost a result
    assert h.x[14] == word and h.x[16] == 0
    assert mem.read_bytes(BASE, len(code)) == code
    # the stores did drop the running code (the path under test)
    assert mem.code_page_writes.get(BASE >> 12, 0) > 0
