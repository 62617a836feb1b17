"""Device pages through the MMU: their translations are cached per context
(``Ctx.mt``), so an MMIO access does not walk the page table each time, and
every address-translation fence drops them."""

from __future__ import annotations

import struct
from typing import List, Tuple

import pytest

from rvkvm.emulator import csr as C

from . import rvasm as A
from .harts import BASE, make_hart
from .rvasm import assemble, br, lbl

ROOT, MID, LEAF = BASE + 0x10000, BASE + 0x11000, BASE + 0x12000
CODE, RAM_PAGE = BASE + 0x20000, BASE + 0x30000
VA = 0x1000_0000  # the code's virtual page
DEV_VA = VA + 0x1000  # the device's virtual page
DEV_A, DEV_B = 0x2000_0000, 0x2001_0000
V, R, W, X, AD = 1, 2, 4, 8, 0xC0


class Device:
    def __init__(self) -> None:
        self.writes: List[Tuple[int, int]] = []
        self.reads = 0

    def mmio_read(self, offset: int, size: int) -> int:
        self.reads += 1
        return 0x40 + offset

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        self.writes.append((offset, value))


def pte(pa: int, flags: int) -> bytes:
    return struct.pack("<Q", ((pa >> 12) << 10) | flags)


def program() -> List[int]:
    """x20 times: sb x6, 3(x10); lbu x7, 3(x10); x6 += 1; then ebreak."""
    return assemble([lbl("top"), A.s(0x23, 0, 10, 6, 3), A.i(0x03, 4, 7, 10, 3),
                     A.addi(6, 6, 1), A.addi(20, 20, -1), br(1, 20, 0, "top"), A.EBREAK])


def map_dev(mem, pa: int) -> None:
    mem.write_bytes(LEAF + 8 * ((DEV_VA >> 12) & 511), pte(pa, V | R | W | AD))


def hart(engine: str):
    h, mem = make_hart(engine, [A.EBREAK], ram=1 << 20)
    vpn2, vpn1 = (VA >> 30) & 511, (VA >> 21) & 511
    mem.write_bytes(ROOT + 8 * vpn2, pte(MID, V))
    mem.write_bytes(MID + 8 * vpn1, pte(LEAF, V))
    mem.write_bytes(LEAF + 8 * ((VA >> 12) & 511), pte(CODE, V | R | X | AD))
    mem.write_bytes(CODE, A.words(program()))
    a, b = Device(), Device()
    mem.add_mmio(DEV_A, 0x1000, a)
    mem.add_mmio(DEV_B, 0x1000, b)
    map_dev(mem, DEV_A)
    h.priv = 1
    h.csr_write(C.SATP, (8 << 60) | (ROOT >> 12))
    h.update_ctx()
    return h, mem, a, b


def laps(h, n: int) -> None:
    h.pc = VA
    h.x[10] = DEV_VA
    h.x[20] = n
    stop = h.run(100_000)
    assert stop.reason == "trap" and stop.cause == C.CAUSE_BREAKPOINT
    assert h.x[20] == 0


def count_walks(h, monkeypatch: pytest.MonkeyPatch) -> List[int]:
    walks: List[int] = []
    real = h.translate

    def translate(va: int, access: int, priv: int) -> int:
        if va >> 12 == DEV_VA >> 12:
            walks.append(access)
        return real(va, access, priv)

    monkeypatch.setattr(h, "translate", translate)
    return walks


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_device_accesses_walk_once_per_kind(engine, monkeypatch):
    h, _, a, _ = hart(engine)
    walks = count_walks(h, monkeypatch)
    laps(h, 50)
    assert [v for _, v in a.writes] == list(range(50))
    assert a.writes[0][0] == 3 and a.reads == 50 and h.x[7] == 0x43
    # one walk for loads and one for stores, not one (or two) per access
    assert sorted(walks) == [1, 2]


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_a_fence_of_the_page_sends_accesses_to_the_new_mapping(engine):
    h, mem, a, b = hart(engine)
    laps(h, 10)
    map_dev(mem, DEV_B)
    laps(h, 5)  # no fence yet: the old translation may still be used
    assert len(a.writes) + len(b.writes) == 15
    h.fence_vma(DEV_VA)
    before = len(a.writes)
    laps(h, 7)
    assert len(a.writes) == before and len(b.writes) >= 7
    assert b.writes[-1][0] == 3


@pytest.mark.parametrize("engine", ["fast", "reference"])
@pytest.mark.parametrize("fence", ["all", "other page", "asid"])
def test_every_fence_drops_device_translations(engine, fence):
    h, mem, a, _ = hart(engine)
    laps(h, 4)
    mem.write_bytes(LEAF + 8 * ((DEV_VA >> 12) & 511), pte(RAM_PAGE, V | R | W | AD))
    if fence == "all":
        h.fence_vma()
    elif fence == "asid":
        h.fence_vma(asid=0)
    else:
        h.fence_vma(VA + 0x5000)  # a fence of any one page drops them all
    laps(h, 6)
    assert len(a.writes) == 4  # the rest went to RAM
    assert mem.read_ram(RAM_PAGE + 3, 1) == 9  # x6 counted 0..9
    assert h.x[7] == 9


def test_a_memory_slot_over_a_cached_device_page_is_used(monkeypatch):
    h, mem, a, _ = hart("fast")
    laps(h, 3)
    assert h.ctx.mt  # a device translation is held
    # the slot holding the device goes and RAM comes at its address
    region = mem.find(DEV_A)
    mem.remove(region)
    mem.add_ram(DEV_A, 0x1000)
    laps(h, 4)
    assert len(a.writes) == 3
    assert mem.read_ram(DEV_A + 3, 1) == 6
