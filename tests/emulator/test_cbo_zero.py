"""cbo.zero (Zicboz) zeroes its whole 64-byte block, through the write TLB
when the page is in it (clear_page in Linux is 64 of them per page) and the
slow path otherwise, and is a store like any other: it breaks an LR
reservation on its block, leaves the bytes around the block alone, and
dropping translated code it overwrites."""

from __future__ import annotations

import pytest

from . import rvasm as A
from .harts import BASE, make_hart

DATA = BASE + 0x2000  # a page of its own, 64-byte aligned
FILL = bytes(range(1, 256)) * 2  # 510 bytes, none zero


def cbo_zero(rs1: int) -> int:
    return A.i(0x0F, 2, 0, rs1, 4)


def lr_d(rd: int, rs1: int) -> int:
    return A.r(0x2F, 3, 0x02 << 2, rd, rs1, 0)


def sc_d(rd: int, rs1: int, rs2: int) -> int:
    return A.r(0x2F, 3, 0x03 << 2, rd, rs1, rs2)


def program() -> list:
    return [
        cbo_zero(10),                     # first access to the page: the slow path
        A.s(0x23, 3, 10, 11, 0x80),       # sd x11, 0x80(x10): the page in the write TLB
        A.addi(13, 10, 0x48),
        lr_d(12, 13),                     # reserve 0x48(x10)
        A.addi(14, 10, 0x70),             # inside the block at 0x40
        cbo_zero(14),                     # the fast path: zeroes 0x40..0x7F
        sc_d(15, 13, 11),                 # must fail: the reservation is gone
        A.addi(16, 10, 0x1C0),
        lr_d(17, 16),                     # reserve 0x1C0(x10), outside the next block
        A.addi(14, 10, 0x100),
        cbo_zero(14),                     # zeroes 0x100..0x13F
        sc_d(18, 16, 11),                 # succeeds: its block was not touched
        A.EBREAK,
    ]


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_cbo_zero_zeroes_its_block_and_breaks_a_reservation_on_it(engine: str) -> None:
    value = 0x1122_3344_5566_7788
    h, mem = make_hart(engine, program(), regs={10: DATA, 11: value}, data=FILL, data_at=DATA)
    h.run(100)
    assert h.pc == BASE + 4 * (len(program()) - 1)  # stopped at the ebreak
    got = mem.read_bytes(DATA, len(FILL))
    want = bytearray(FILL)
    want[0x00:0x40] = bytes(64)
    want[0x40:0x80] = bytes(64)
    want[0x80:0x88] = value.to_bytes(8, "little")
    want[0x100:0x140] = bytes(64)
    want[0x1C0:0x1C8] = value.to_bytes(8, "little")
    assert got == bytes(want)
    assert h.x[12] == int.from_bytes(FILL[0x48:0x50], "little")
    assert h.x[15] == 1  # sc.d after cbo.zero on its block
    assert h.x[18] == 0  # sc.d after cbo.zero elsewhere
    assert h.x[17] == int.from_bytes(FILL[0x1C0:0x1C8], "little")


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_cbo_zero_on_running_code_drops_it(engine: str) -> None:
    # x10 = the block of code after the cbo.zero: the second pass must see
    # the zeroed words (an illegal instruction, trapping to M-mode at that pc)
    loop = [
        A.addi(5, 5, 1),                  # 0: count passes
        cbo_zero(10),                     # 4: zero the block at BASE + 64
        A.j(0, 64 - 8),                   # 8: jump to BASE + 64
    ]
    tail = [A.addi(6, 6, 1), A.j(0, -64 - 4)]  # BASE + 64: count, back to 0
    code = loop + [A.addi(0, 0, 0)] * (16 - len(loop)) + tail
    h, mem = make_hart(engine, code, regs={10: BASE + 64})
    h.run(100)
    assert mem.read_bytes(BASE + 64, 64) == bytes(64)
    assert h.x[5] == 1 and h.x[6] == 0  # the old tail never ran
    assert h.pc == BASE + 64
