"""The multi-vCPU guest clock over gRPC, in-process and in a worker process
(server/kvm/clock.py): vCPU 1 takes a timer interrupt every 500 ticks and
waits in WFI in between while vCPU 0 spins, each in its own Run; VM time
follows vCPU 0's instructions (1 ns each, 100 per tick), and vCPU 1 is woken
at its timers by vCPU 0's progress, not by skipping time ahead."""

from __future__ import annotations

import threading
from typing import Iterator

import grpc
import pytest

from rvkvm.client import Kvm
from rvkvm.client.kvm import KVM_MP_STATE_RUNNABLE
from tests.emulator import rvasm as A

from .conftest import ServerThread, _test_config
from .guest import RAM_BASE, REG_A0, WFI, li, load

TIME = 0x54494D45  # the SBI TIME extension
REG_A3, REG_S2 = 13, 18
HANDLER = RAM_BASE + 0x3000
TICKS = 100  # instructions per tick at 1 ns and 10 MHz


def arm(delta: int) -> list:
    """SBI set_timer(time + delta)."""
    return ([A.csrrs(REG_A3, 0xC01, 0)] + li(7, delta)
            + [A.r(0x33, 0, 0, REG_A0, REG_A3, 7)] + li(17, TIME) + li(16, 0) + [A.ECALL])


@pytest.fixture(params=[0, 1], ids=["in-process", "worker"])
def smp_kvm(request: pytest.FixtureRequest) -> Iterator[Kvm]:
    thread = ServerThread(_test_config("fast", workers=request.param)).start()
    try:
        with grpc.insecure_channel(thread.address) as ch:
            yield Kvm(ch, timeout=60, max_transfer=64 * 1024)
    finally:
        thread.stop()


def test_an_idle_vcpu_is_woken_by_the_busy_ones_time(smp_kvm):
    vm = smp_kvm.create_vm(clock=1)
    vm.set_user_memory_region(0, RAM_BASE, 0x1_0000)
    busy, idle = vm.create_vcpu(0), vm.create_vcpu(1)
    idle.set_mp_state(KVM_MP_STATE_RUNNABLE)
    load(vm, busy, [A.j(0, 0)], RAM_BASE + 0x1000)
    # the handler counts (s2 += 1), re-arms 500 ticks ahead and returns
    vm.write_memory(HANDLER, A.words([A.addi(REG_S2, REG_S2, 1)] + arm(500) + [0x10200073]))
    load(vm, idle, li(5, HANDLER) + [A.csrrw(0, 0x105, 5)]  # stvec
         + li(5, 1 << 5) + [A.csrrs(0, 0x104, 5)]  # sie.STIE
         + li(6, 2) + [A.csrrs(0, 0x100, 6)]  # sstatus.SIE
         + arm(500) + [WFI, A.j(0, -4)], RAM_BASE)
    busy.run(budget=100)  # it has run: it drives time
    done = threading.Event()

    def run_idle() -> None:
        while not done.is_set():
            idle.run(budget=0, idle_timeout=0.05)

    thread = threading.Thread(target=run_idle)
    thread.start()
    try:
        for _ in range(20):
            busy.run(budget=50_000)
    finally:
        done.set()
        idle.kick()
        thread.join(30)
    insns = busy.get_stats()["rvkvm_instructions"]
    ticks = insns // TICKS
    # VM time is vCPU 0's instructions (within a slice of 200 k, 2,000 ticks)
    assert ticks <= busy.get_reg("timer time") <= ticks + 2_000
    # at most one interrupt per 500 ticks of it; how many depends on when
    # vCPU 1's Runs get the thread, but it was woken at least once
    assert 1 <= idle.get_reg("core s2") <= ticks // 500 + 1
