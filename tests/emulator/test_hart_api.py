"""Hart and memory APIs the server builds on: batch runs and register
access, MMIO and read-only regions, intercepted M-mode traps, self-modifying
code, determinism and lazily committed RAM."""

from __future__ import annotations

import resource

import pytest

from rvkvm.emulator.batch import get_regs, run_harts, set_regs
from rvkvm.emulator.events import GuestExit
from rvkvm.emulator.hart import Hart
from rvkvm.emulator.memory import BusError, PhysMemory

from . import rvasm as A

BASE = 0x8000_0000
ENGINES = ["fast", "reference"]


def machine(code: list, engine: str, size: int = 1 << 20) -> Hart:
    mem = PhysMemory()
    mem.add_ram(BASE, size)
    mem.write_bytes(BASE, A.words(code))
    h = Hart(mem, engine=engine)
    h.pc = BASE
    h.intercept_mtraps = True
    return h


def counting_loop(n: int) -> list:
    return [A.addi(5, 0, 0), A.addi(6, 0, n), A.addi(5, 5, 1), A.addi(6, 6, -1),
            A.b(1, 6, 0, -8), A.EBREAK]


@pytest.mark.parametrize("engine", ENGINES)
def test_budget_is_exact_and_resumable(engine: str) -> None:
    h = machine(counting_loop(1000), engine)
    stop = h.run(101)
    assert stop.reason == "budget" and h.instret == 101
    stop = h.run(10_000)
    assert stop.reason == "trap" and stop.cause == 3 and h.x[5] == 1000
    assert h.instret == 2 + 3 * 1000


def test_run_harts_batch_and_register_batch() -> None:
    harts = [machine(counting_loop(50 * (i + 1)), "fast") for i in range(3)]
    stops = run_harts([(h, 1_000_000) for h in harts])
    assert [s.reason for s in stops] == ["trap"] * 3
    assert [get_regs(h, ["x5", "pc"])[0] for h in harts] == [50, 100, 150]
    set_regs(harts[0], [("x7", 42), ("pc", BASE + 4), ("mscratch", 9), ("x0", 5)])
    assert get_regs(harts[0], ["x7", "pc", "mscratch", "x0", "csr:0x340"]) == [42, BASE + 4, 9, 0, 9]
    with pytest.raises(KeyError):
        get_regs(harts[0], ["x32"])


class Device:
    def __init__(self) -> None:
        self.writes: list = []

    def mmio_read(self, offset: int, size: int) -> int:
        return 0x1122334455667788 >> (8 * (offset & 7)) & ((1 << (8 * size)) - 1)

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        self.writes.append((offset, size, value))


@pytest.mark.parametrize("engine", ENGINES)
def test_mmio_region_reads_and_writes(engine: str) -> None:
    dev = Device()
    code = [A.addi(10, 0, 1), A.i(0x13, 1, 10, 10, 28),  # a0 = 0x10000000
            A.i(0x03, 3, 11, 10, 0), A.i(0x03, 2, 12, 10, 4), A.s(0x23, 2, 10, 11, 8), A.EBREAK]
    h = machine(code, engine)
    h.mem.add_mmio(0x1000_0000, 0x1000, dev)
    assert h.run(100).cause == 3
    assert h.x[11] == 0x1122334455667788
    assert h.x[12] == 0x11223344
    assert dev.writes == [(8, 4, 0x55667788)]


@pytest.mark.parametrize("engine", ENGINES)
def test_rom_write_is_a_store_access_fault(engine: str) -> None:
    code = [A.addi(10, 0, 1), A.i(0x13, 1, 10, 10, 28), A.s(0x23, 3, 10, 10, 0), A.EBREAK]
    h = machine(code, engine)
    h.mem.add_ram(0x1000_0000, 0x1000, readonly=True)
    stop = h.run(100)
    assert (stop.cause, stop.tval, h.pc) == (7, 0x1000_0000, BASE + 8)


@pytest.mark.parametrize("engine", ENGINES)
def test_guest_exit_stops_before_the_instruction(engine: str) -> None:
    class Exit(GuestExit):
        pass

    class Trapdoor:
        def mmio_read(self, offset: int, size: int) -> int:
            raise Exit()

        def mmio_write(self, offset: int, size: int, value: int) -> None:
            raise Exit()

    code = [A.addi(5, 0, 7), A.addi(10, 0, 1), A.i(0x13, 1, 10, 10, 28), A.i(0x03, 3, 11, 10, 0),
            A.EBREAK]
    h = machine(code, engine)
    h.mem.unmapped = Trapdoor()
    stop = h.run(100)
    assert stop.reason == "exit" and isinstance(stop.event, Exit)
    assert h.pc == BASE + 12 and h.instret == 3 and h.x[5] == 7


@pytest.mark.parametrize("engine", ENGINES)
def test_self_modifying_code_in_a_loop(engine: str) -> None:
    # The loop body rewrites its own "addi x5, x5, 1" into "addi x5, x5, 100"
    # after the first iteration: stores to code pages invalidate blocks.
    new = A.addi(5, 5, 100)
    code = [A.addi(6, 0, 3), A.addi(5, 0, 0)]
    code += A.li32(7, new)  # x7 = new instruction word (2 insns)
    code += [A.u(0x17, 8, 0),  # x8 = pc of this auipc
             A.addi(5, 5, 1),  # <- patched
             A.s(0x23, 2, 8, 7, 4),  # sw x7, 4(x8)
             A.addi(6, 6, -1), A.b(1, 6, 0, -12), A.EBREAK]
    h = machine(code, engine)
    assert h.run(1000).cause == 3
    assert h.x[5] == 1 + 100 + 100


@pytest.mark.parametrize("engine", ENGINES)
def test_ecall_traps_to_m_are_intercepted_with_state_intact(engine: str) -> None:
    h = machine([A.addi(17, 0, 0x10), A.ECALL, A.addi(5, 0, 1), A.EBREAK], engine)
    h.priv = 1
    h.update_ctx()
    stop = h.run(100)
    assert (stop.reason, stop.cause, h.pc, h.priv) == ("trap", 9, BASE + 4, 1)
    assert h.mepc == 0 and h.mcause == 0  # the hart did not take the trap itself
    h.pc += 4  # the host handled the call
    assert h.run(100).cause == 3 and h.x[5] == 1


def test_deterministic_time_is_reproducible() -> None:
    code = [A.csrrs(7, 0xC01, 0)] + counting_loop(300)[:-1] + [A.csrrs(28, 0xC01, 0), A.EBREAK]

    def once(engine: str) -> tuple:
        h = machine(code, engine)
        h.run(10_000)
        return h.x[7], h.x[28], h.instret

    assert once("fast") == once("fast") == once("reference")
    t0, t1, n = once("fast")
    assert t1 - t0 == n - 1  # time advances with retired instructions


def test_overlapping_regions_are_rejected() -> None:
    mem = PhysMemory()
    mem.add_ram(BASE, 0x2000)
    with pytest.raises(ValueError):
        mem.add_ram(BASE + 0x1000, 0x1000)
    with pytest.raises(ValueError):
        mem.add_ram(BASE + 1, 0x1000)
    with pytest.raises(BusError):
        mem.read(BASE + 0x2000, 8)


def test_large_ram_is_committed_lazily() -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    mems = []
    for _ in range(8):
        mem = PhysMemory()
        r = mem.add_ram(BASE, 1 << 30)  # 8 x 1 GiB of guest RAM
        r.buf[12345] = 1
        mems.append(mem)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 64 * 1024  # far below the 8 GiB mapped
    for mem in mems:
        mem.close()
