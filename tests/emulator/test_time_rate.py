"""Deterministic time at a rate of timer ticks per instruction: time reads
and timer interrupts follow retired instructions at that rate, on both
engines; the KVM model's VM setting (nanoseconds per instruction)."""

from __future__ import annotations

from fractions import Fraction

import pytest

from rvkvm.emulator import csr as C
from rvkvm.server.kvm.system import KvmSystem

from . import rvasm as A
from .harts import make_hart

LOOP = A.assemble([A.lbl("top"), A.addi(5, 5, 1), A.br(0, 0, 0, "top")])  # x5 += 1 forever


def interrupt_at(engine: str, ticks: int, insns: int, cmp: int):
    h, _ = make_hart(engine, LOOP)
    h.set_time_rate(ticks, insns)
    h.mtimecmp = cmp
    h.mie = C.MTIP
    h.mstatus |= C.MS_MIE
    h.interrupts_changed()
    stop = h.run(1_000_000)
    return stop.reason, stop.interrupt, h.instret, h.time(), h.x[5]


@pytest.mark.parametrize("ticks,insns", [(1, 1), (1, 100), (3, 7), (64, 100)])
def test_timer_interrupt_comes_when_time_reaches_the_compare(ticks: int, insns: int) -> None:
    cmp = 1000
    fast = interrupt_at("fast", ticks, insns, cmp)
    assert fast == interrupt_at("reference", ticks, insns, cmp)
    reason, interrupt, instret, now, _ = fast
    first = -(-cmp * insns // ticks)  # the first count at which time >= cmp
    assert (reason, interrupt, instret) == ("trap", True, first)
    assert now == first * ticks // insns >= cmp > (first - 1) * ticks // insns


def test_changing_the_rate_keeps_the_time() -> None:
    h, _ = make_hart("fast", LOOP)
    h.run(1000)
    before = h.time()
    h.set_time_rate(1, 100)
    assert h.time() == before
    h.run(1000)
    assert h.time() == before + 10


def test_vm_nanoseconds_per_instruction() -> None:
    vm = KvmSystem().create_vm()
    vcpu = vm.create_vcpu(0)
    vm.ns_per_insn = Fraction(1)  # 10 MHz timebase: a tick per 100 instructions
    assert (vcpu.hart.time_num, vcpu.hart.time_den) == (1, 100)
    later = vm.create_vcpu(1)
    assert (later.hart.time_num, later.hart.time_den) == (1, 100)
    vm.ns_per_insn = None
    assert (vcpu.hart.time_num, vcpu.hart.time_den) == (1, 1)
    with pytest.raises(ValueError):
        vm.ns_per_insn = Fraction(0)
