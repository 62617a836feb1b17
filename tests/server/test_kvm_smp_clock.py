"""The deterministic clock of a VM with several vCPUs (server/kvm/clock.py):
time follows the running vCPUs' retired instructions; a WFI skips time
ahead only when no other vCPU of the VM drives it, and then only to the
earliest deadline of the VM's halted vCPUs; a halted vCPU sleeps until
the running ones bring VM time to its timer and is woken then.

Each test runs the vCPUs in one thread, one ``run`` after the other, so
what happens is reproducible; ``test_two_threads_*`` runs them at once."""

from __future__ import annotations

import threading
import time
from fractions import Fraction
from typing import List, Sequence

import pytest

from rvkvm.server.kvm import parse_name
from rvkvm.server.kvm import vm as vm_module
from rvkvm.server.kvm.clock import DETERMINISTIC, GuestClock
from rvkvm.server.kvm.exits import DebugExit, IntrExit
from rvkvm.server.kvm.sbi import REQ_IPI
from rvkvm.server.kvm.vcpu import Vcpu
from rvkvm.server.kvm.vm import Vm
from rvkvm.uapi.kvm import KVM_MP_STATE_RUNNABLE, KVM_MP_STATE_STOPPED
from tests.emulator import rvasm as A
from tests.server.kvm_runtime_guest import (
    EBREAK,
    PC,
    RAM_BASE,
    REG_A0,
    REG_A3,
    WFI,
    li,
    load,
    new_vm,
)

TIMER_TIME = parse_name("timer time")
A4 = parse_name("core a4")
DEADLINE = parse_name("core s3")
TIME = 0x54494D45  # the SBI TIME extension
REG_A4 = 14
REG_S3 = 19
HANDLER = RAM_BASE + 0x800  # the timer interrupt: a4 <- time, ebreak
SPIN = RAM_BASE + 0x1000  # a busy vCPU: j .
TICKS = 100  # instructions per timer tick (1 ns per instruction, 10 MHz)


def smp_vm(n: int = 2) -> tuple[Vm, List[Vcpu]]:
    """A VM with ``n`` RUNNABLE vCPUs (KVM creates all but the first STOPPED)."""
    vm, vcpus = new_vm(vcpus=n)
    for vcpu in vcpus:
        vcpu.set_mp_state(KVM_MP_STATE_RUNNABLE)
    vm.clock = GuestClock(DETERMINISTIC, Fraction(1))
    vm.write_memory(HANDLER, A.words([A.csrrs(REG_A4, 0xC01, 0), EBREAK]))
    return vm, vcpus


def timer_then_wfi(delta: int, handler: int = HANDLER,
                   tail: Sequence[int] = (WFI, A.j(0, 0))) -> List[int]:
    """Arm the SBI timer ``delta`` ticks from now (s3 = the deadline), WFI."""
    return (li(5, handler) + [A.csrrw(0, 0x105, 5)]  # stvec
            + li(5, 1 << 5) + [A.csrrs(0, 0x104, 5)]  # sie.STIE
            + li(6, 2) + [A.csrrs(0, 0x100, 6)]  # sstatus.SIE
            + [A.csrrs(REG_A3, 0xC01, 0)]  # time now
            + li(7, delta) + [A.r(0x33, 0, 0, REG_A0, REG_A3, 7)]  # a0 = a3 + delta
            + [A.r(0x33, 0, 0, REG_S3, REG_A0, 0)]  # s3 = the deadline
            + li(17, TIME) + li(16, 0) + [A.ECALL] + list(tail))


def load_at(vm: Vm, vcpu: Vcpu, program: List[int], at: int) -> None:
    load(vm, vcpu, program, at=at)


def spinner(vm: Vm, vcpu: Vcpu) -> None:
    load_at(vm, vcpu, [A.j(0, 0)], SPIN)


def sleeper(vm: Vm, vcpu: Vcpu, delta: int, at: int = RAM_BASE) -> None:
    load_at(vm, vcpu, timer_then_wfi(delta), at)


def time_of(vcpu: Vcpu) -> int:
    return vcpu.get_value(TIMER_TIME)


def is_idle(exit_: object) -> bool:
    return isinstance(exit_, IntrExit) and exit_.why == "idle"


# -- the bug: an idle vCPU's WFI pulled the busy one's clock ahead ------------

def test_an_idle_vcpus_wfi_does_not_move_a_busy_vcpus_clock():
    vm, (busy, idle) = smp_vm()
    spinner(vm, busy)
    sleeper(vm, idle, 1_000_000)  # 100 ms of guest time ahead
    busy.run(budget=1000, idle_timeout=0.0)
    # the busy vCPU runs: the idle one must not skip to its timer
    assert is_idle(idle.run(budget=10_000, idle_timeout=0.0))
    busy.run(budget=100_000, idle_timeout=0.0)
    # 101,000 instructions at 1 ns: about 1,010 ticks, not 1,000,000
    assert time_of(busy) <= busy.hart.instret // TICKS + 100
    assert time_of(idle) < 1_000_000


def test_a_halted_vcpu_is_woken_when_the_running_one_reaches_its_timer():
    vm, (busy, idle) = smp_vm()
    spinner(vm, busy)
    sleeper(vm, idle, 2_000)  # 2,000 ticks: 200,000 instructions of the busy vCPU
    woken = threading.Event()
    idle.wake_listener = woken.set
    busy.run(budget=1000, idle_timeout=0.0)
    assert is_idle(idle.run(budget=10_000, idle_timeout=0.0))
    deadline = idle.get_value(DEADLINE)
    busy.run(budget=100_000, idle_timeout=0.0)
    assert not woken.is_set() and time_of(busy) < deadline
    busy.run(budget=150_000, idle_timeout=0.0)
    assert woken.is_set() and time_of(busy) >= deadline
    assert isinstance(idle.run(budget=10_000, idle_timeout=0.0), DebugExit)
    # it took the interrupt at (or after) its deadline, within a slice of the busy vCPU
    at = idle.get_value(A4)
    assert deadline <= at <= time_of(busy) + 100
    assert idle.get_value(parse_name("csr scause")) == (1 << 63) | 5


def test_the_running_vcpus_slice_ends_at_a_halted_vcpus_timer():
    """The wake-up is on time, not at the end of the waker's slice: the
    running vCPU's slice is cut at the earliest timer of the halted ones."""
    vm, (busy, idle) = smp_vm()
    spinner(vm, busy)
    sleeper(vm, idle, 2_000)  # 200,000 instructions of the busy vCPU away
    woke_at: List[int] = []
    idle.wake_listener = lambda: woke_at.append(busy.hart.time())
    busy.run(budget=1000, idle_timeout=0.0)
    assert is_idle(idle.run(budget=10_000, idle_timeout=0.0))
    deadline = idle.get_value(DEADLINE)
    busy.run(budget=1_000_000, idle_timeout=0.0)  # one slice of 1 M instructions
    assert woke_at and deadline <= woke_at[0] <= deadline + 1
    assert time_of(busy) >= deadline + 7_000  # and it ran its whole budget on


def test_when_every_vcpu_waits_time_skips_to_the_earliest_deadline():
    vm, (first, second) = smp_vm()
    sleeper(vm, first, 50_000)
    sleeper(vm, second, 5_000, at=RAM_BASE + 0x2000)
    woken = threading.Event()
    second.wake_listener = woken.set
    # the second halts first: the first still runs, nothing skips
    first.run(budget=5, idle_timeout=0.0)
    assert is_idle(second.run(budget=10_000, idle_timeout=0.0))
    assert not woken.is_set()
    # the first halts too: time goes to the second's (earlier) deadline and
    # wakes it; the first sleeps on, its own timer further away
    assert is_idle(first.run(budget=10_000, idle_timeout=0.0))
    assert woken.is_set()
    assert isinstance(second.run(budget=10_000, idle_timeout=0.0), DebugExit)
    at = second.get_value(A4)
    assert second.get_value(DEADLINE) <= at < first.get_value(DEADLINE)
    assert time_of(first) < first.get_value(DEADLINE)


def test_a_single_vcpu_skips_to_its_timer():
    vm, (vcpu,) = smp_vm(1)
    sleeper(vm, vcpu, 1_000_000)
    assert isinstance(vcpu.run(budget=10_000, idle_timeout=0.0), DebugExit)
    assert vcpu.get_value(A4) >= vcpu.get_value(DEADLINE) >= 1_000_000
    assert vcpu.hart.instret < 1_000  # skipped, not run through


def test_stopped_and_never_run_vcpus_do_not_hold_time_back():
    vm, (vcpu, stopped, fresh) = smp_vm(3)
    stopped.set_mp_state(KVM_MP_STATE_STOPPED)
    spinner(vm, fresh)  # runnable, but nobody ever ran it
    sleeper(vm, vcpu, 1_000_000)
    assert isinstance(vcpu.run(budget=10_000, idle_timeout=0.0), DebugExit)
    assert vcpu.get_value(A4) >= vcpu.get_value(DEADLINE)


def _other_left_alone(monkeypatch) -> tuple[Vcpu, Vcpu]:
    """vCPU 1 ran once and is left alone (a 50 ms DRIVE_WINDOW); vCPU 0 is
    about to arm a timer 1,000,000 ticks ahead and wait for it."""
    monkeypatch.setattr(vm_module, "DRIVE_WINDOW", 0.05)
    vm, (vcpu, other) = smp_vm()
    spinner(vm, other)
    other.run(budget=1000, idle_timeout=0.0)
    sleeper(vm, vcpu, 1_000_000)
    return vcpu, other


def test_a_runnable_vcpu_nobody_runs_stops_holding_time_back(monkeypatch):
    # a client that runs only vCPU 0: after DRIVE_WINDOW seconds without a
    # Run, vCPU 1 no longer drives time and vCPU 0's WFI skips (no stall)
    vcpu, other = _other_left_alone(monkeypatch)
    exit_ = vcpu.run(budget=10_000, idle_timeout=10.0)  # a recheck wakes it, not the timeout
    assert isinstance(exit_, DebugExit), exit_
    assert vcpu.get_value(A4) >= vcpu.get_value(DEADLINE)
    # and the other vCPU, run again, is brought up to VM time
    other.run(budget=10, idle_timeout=0.0)
    assert time_of(other) >= vcpu.get_value(DEADLINE)


def test_the_recheck_also_wakes_a_caller_that_does_not_sleep_in_run(monkeypatch):
    vcpu, other = _other_left_alone(monkeypatch)
    woken = threading.Event()
    vcpu.wake_listener = woken.set
    assert is_idle(vcpu.run(budget=10_000, idle_timeout=0.0))
    assert woken.wait(10)
    assert isinstance(vcpu.run(budget=10_000, idle_timeout=0.0), DebugExit)


def test_an_ipi_makes_a_halted_vcpu_drive_time_again():
    vm, (vcpu, other) = smp_vm()
    sleeper(vm, other, 1_000_000_000, at=RAM_BASE + 0x2000)  # no timer in sight
    spinner(vm, vcpu)
    vcpu.run(budget=5, idle_timeout=0.0)
    assert is_idle(other.run(budget=10_000, idle_timeout=0.0))
    other.interrupt(0xFFFF_FFFF)  # external interrupt: not enabled, but it wakes it
    sleeper(vm, vcpu, 1_000)
    # the woken vCPU has not run yet: vCPU 0 may not skip past it
    assert is_idle(vcpu.run(budget=10_000, idle_timeout=0.0))
    assert time_of(vcpu) < vcpu.get_value(DEADLINE)


def test_setting_time_wakes_the_vcpus_it_brings_past_their_timer():
    vm, (busy, idle) = smp_vm()
    spinner(vm, busy)
    sleeper(vm, idle, 1_000_000)
    woken = threading.Event()
    idle.wake_listener = woken.set
    busy.run(budget=1000, idle_timeout=0.0)
    assert is_idle(idle.run(budget=10_000, idle_timeout=0.0))
    assert not woken.is_set()
    busy.set_value(TIMER_TIME, 2_000_000)
    assert woken.is_set()
    assert isinstance(idle.run(budget=10_000, idle_timeout=0.0), DebugExit)
    assert idle.get_value(A4) >= 2_000_000


def test_time_stays_monotonic_per_vcpu_and_vcpus_stay_within_a_slice():
    vm, (busy, idle) = smp_vm()
    spinner(vm, busy)
    sleeper(vm, idle, 3_000)
    seen = {0: 0, 1: 0}
    busy.run(budget=1000, idle_timeout=0.0)
    for _ in range(20):
        for v in (busy, idle):
            v.run(budget=50_000, idle_timeout=0.0)
            now = time_of(v)
            assert now >= seen[v.id]
            seen[v.id] = now
    assert abs(time_of(busy) - time_of(idle)) <= 50_000 // TICKS + 100
    assert time_of(busy) <= busy.hart.instret // TICKS + 100


def test_two_threads_time_follows_the_busy_vcpu():
    # vCPU 1 takes a timer interrupt every 500 ticks and waits in WFI in
    # between, in its own thread, while vCPU 0 spins: time is vCPU 0's
    # instructions, and vCPU 1 sees at most one interrupt per 500 ticks of it
    vm, (busy, idle) = smp_vm()
    spinner(vm, busy)
    handler = RAM_BASE + 0x3000
    # the handler counts (s2 += 1), re-arms 500 ticks ahead and returns (sret)
    vm.write_memory(handler, A.words(
        [A.addi(18, 18, 1), A.csrrs(REG_A3, 0xC01, 0)] + li(7, 500)
        + [A.r(0x33, 0, 0, REG_A0, REG_A3, 7)] + li(17, TIME) + li(16, 0)
        + [A.ECALL, 0x10200073]))
    load_at(vm, idle, timer_then_wfi(500, handler, (WFI, A.j(0, -4))), RAM_BASE + 0x2000)
    busy.run(budget=100, idle_timeout=0.0)  # it has run: it drives time
    stop = threading.Event()

    def run_idle() -> None:
        while not stop.is_set():
            idle.run(budget=100_000, idle_timeout=0.05)

    thread = threading.Thread(target=run_idle)
    thread.start()
    try:
        for _ in range(100):  # slices of 100 ticks: vCPU 1 is woken within one
            busy.run(budget=10_000, idle_timeout=0.0)
    finally:
        stop.set()
        idle.kick()
        thread.join()
    ticks = busy.hart.instret // TICKS
    assert time_of(busy) <= ticks + 10_000 // TICKS
    # how many depends on when its thread runs, but never more than time allows
    interrupts = idle.get_value(parse_name("core s2"))
    assert 1 <= interrupts <= ticks // 500 + 1


@pytest.mark.parametrize("n", [1, 2])
def test_wfi_skips_are_counted_as_halts(n):
    vm, vcpus = smp_vm(n)
    sleeper(vm, vcpus[0], 10_000)
    assert isinstance(vcpus[0].run(budget=10_000, idle_timeout=0.0), DebugExit)
    assert vcpus[0].stats()["halt_wakeup"] == 1
    assert vcpus[0].hart.n_wfi == 1
    # PC helper is used: the vCPU stopped at the handler's ebreak
    assert vcpus[0].get_value(PC) == HANDLER + 4


def test_wakeups_of_a_vcpu_its_caller_left_do_not_hold_time_back(monkeypatch):
    # vCPU 1 left after a budget exit (not idle): IPIs to it do not make it
    # drive time again, so vCPU 0's WFI skips once the window passed
    monkeypatch.setattr(vm_module, "DRIVE_WINDOW", 0.05)
    vm, (vcpu, other) = smp_vm()
    spinner(vm, other)
    assert isinstance(other.run(budget=1000, idle_timeout=0.0), IntrExit)
    sleeper(vm, vcpu, 1_000_000)
    time.sleep(0.1)
    other.request(REQ_IPI)
    assert isinstance(vcpu.run(budget=10_000, idle_timeout=0.0), DebugExit)


def test_a_vcpu_whose_caller_waits_for_its_wakeup_drives_time_when_woken(monkeypatch):
    # vCPU 1's last run returned idle (halted): woken, it counts as running
    # again at once, however long it slept
    monkeypatch.setattr(vm_module, "DRIVE_WINDOW", 0.05)
    vm, (vcpu, other) = smp_vm()
    sleeper(vm, other, 1_000_000_000, at=RAM_BASE + 0x2000)
    spinner(vm, vcpu)
    vcpu.run(budget=5, idle_timeout=0.0)
    assert is_idle(other.run(budget=10_000, idle_timeout=0.0))
    time.sleep(0.1)
    other.request(REQ_IPI)
    sleeper(vm, vcpu, 1_000)
    assert is_idle(vcpu.run(budget=10_000, idle_timeout=0.0))
    assert time_of(vcpu) < vcpu.get_value(DEADLINE)
