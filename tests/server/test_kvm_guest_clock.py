"""The guest clock rate is a setting of the server (``ns_per_insn``): every
VM it creates keeps time at that rate, and ``rvkvm-server --ns-per-insn``
parses it as a positive fraction."""

from __future__ import annotations

import argparse
from fractions import Fraction

import pytest

from rvkvm.server.__main__ import _ns_per_insn, _parse
from rvkvm.server.kvm.system import KvmSystem


def test_new_vms_take_the_systems_rate():
    assert KvmSystem().create_vm().ns_per_insn is None
    vm = KvmSystem(ns_per_insn=Fraction(1, 4)).create_vm()
    assert vm.ns_per_insn == Fraction(1, 4)


def test_the_flag_is_a_positive_fraction():
    assert _parse(["--ns-per-insn", "1/4"]).ns_per_insn == Fraction(1, 4)
    assert _parse([]).ns_per_insn is None
    for bad in ("0", "-1", "fast", "1/0"):
        with pytest.raises(argparse.ArgumentTypeError):
            _ns_per_insn(bad)


# -- the clock as a VM setting: deterministic at a rate, or the host's ---------

import time  # noqa: E402

from rvkvm.server.kvm import parse_name  # noqa: E402
from rvkvm.server.kvm.clock import (  # noqa: E402
    DETERMINISTIC,
    HOST,
    SERVER_DEFAULT,
    TICK_PER_INSN,
    GuestClock,
    parse_clock,
)
from rvkvm.server.kvm.exits import DebugExit, IntrExit  # noqa: E402
from tests.emulator import rvasm as A  # noqa: E402
from tests.server.kvm_runtime_guest import (  # noqa: E402
    EBREAK,
    REG_A0,
    REG_A3,
    WFI,
    li,
    load,
    new_vm,
)

TIMER_TIME = parse_name("timer time")
TIME = 0x54494D45  # the SBI TIME extension


def timer_guest(delta: int):
    """Arm the SBI timer ``delta`` ticks ahead, WFI; the interrupt ebreaks."""
    handler = 0x8000_0800
    return handler, (li(5, handler) + [A.csrrw(0, 0x105, 5)]  # stvec
                     + li(5, 1 << 5) + [A.csrrs(0, 0x104, 5)]  # sie.STIE
                     + li(6, 2) + [A.csrrs(0, 0x100, 6)]  # sstatus.SIE
                     + [A.csrrs(REG_A3, 0xC01, 0)]  # time now
                     + li(7, delta) + [A.r(0x33, 0, 0, REG_A0, REG_A3, 7)]  # add
                     + li(17, TIME) + li(16, 0) + [A.ECALL, WFI, A.j(0, 0)])


def test_a_rate_sets_ticks_per_instruction():
    # 1 ns per instruction at 10 MHz: a tick every 100 instructions
    vm, (vcpu,) = new_vm()
    vm.clock = GuestClock(DETERMINISTIC, Fraction(1))
    load(vm, vcpu, [A.addi(5, 5, 1)] * 1000 + [EBREAK])
    before = vcpu.get_value(TIMER_TIME)
    assert isinstance(vcpu.run(budget=10_000, idle_timeout=0.0), DebugExit)
    assert vcpu.get_value(TIMER_TIME) - before == 1000 // 100


def test_the_host_clock_follows_host_time_not_instructions():
    vm, (vcpu,) = new_vm()
    vm.clock = GuestClock(HOST)
    assert vm.clock.mode == HOST
    load(vm, vcpu, [A.j(0, 0)])
    t0 = vcpu.get_value(TIMER_TIME)
    time.sleep(0.05)
    t1 = vcpu.get_value(TIMER_TIME)
    assert t1 - t0 >= 0.05 * 10_000_000 * 0.9  # 10 MHz timebase, at least the sleep
    # setting time moves the host clock by the difference
    vcpu.set_value(TIMER_TIME, 123)
    assert 123 <= vcpu.get_value(TIMER_TIME) < 123 + 10_000_000


def test_wfi_on_the_host_clock_sleeps_until_the_timer():
    vm, (vcpu,) = new_vm()
    vm.clock = GuestClock(HOST)
    handler, program = timer_guest(200_000)  # 20 ms ahead
    vm.write_memory(handler, A.words([EBREAK]))
    load(vm, vcpu, program)
    start = time.monotonic()
    # with nothing to wake it, the vCPU would sleep the whole idle timeout
    exit_ = vcpu.run(budget=100_000, idle_timeout=30.0)
    assert isinstance(exit_, DebugExit), exit_
    assert time.monotonic() - start >= 0.02  # real time passed: guest time is host time
    assert vcpu.get_value(parse_name("csr scause")) == (1 << 63) | 5
    assert vcpu.get_value(TIMER_TIME) >= vcpu.get_value(parse_name("core a0"))


def test_wfi_on_the_host_clock_without_a_timer_is_idle():
    vm, (vcpu,) = new_vm()
    vm.clock = GuestClock(HOST)
    load(vm, vcpu, [WFI, A.j(0, -4)])
    exit_ = vcpu.run(budget=100_000, idle_timeout=0.05)
    assert isinstance(exit_, IntrExit) and exit_.why == "idle"


def test_switching_clocks_never_turns_time_back():
    vm, (vcpu,) = new_vm()
    load(vm, vcpu, [A.addi(5, 5, 1)] * 500 + [EBREAK])
    vcpu.run(budget=10_000, idle_timeout=0.0)
    t0 = vcpu.get_value(TIMER_TIME)
    vm.clock = GuestClock(HOST)
    t1 = vcpu.get_value(TIMER_TIME)
    vm.clock = GuestClock(DETERMINISTIC, Fraction(1))
    t2 = vcpu.get_value(TIMER_TIME)
    assert t0 <= t1 <= t2


def test_the_system_clock_is_given_to_new_vms_and_a_vm_may_choose():
    system = KvmSystem(clock=GuestClock(HOST))
    assert system.create_vm().clock.mode == HOST
    vm = system.create_vm(clock=GuestClock(DETERMINISTIC, Fraction(1, 2)))
    assert vm.clock == GuestClock(DETERMINISTIC, Fraction(1, 2))
    assert KvmSystem().create_vm().clock == TICK_PER_INSN


def test_clock_settings_parse_and_refuse_nonsense():
    assert parse_clock("host") == GuestClock(HOST)
    assert parse_clock("tick") == TICK_PER_INSN
    assert parse_clock("1/4") == GuestClock(DETERMINISTIC, Fraction(1, 4))
    assert SERVER_DEFAULT == GuestClock(DETERMINISTIC, Fraction(1))
    for bad in ("0", "-2", "fast", "1/0"):
        with pytest.raises(ValueError):
            parse_clock(bad)
    with pytest.raises(ValueError):
        GuestClock(HOST, Fraction(1))
    assert _parse(["--clock", "host"]).clock == GuestClock(HOST)
    with pytest.raises(SystemExit):
        _parse(["--clock", "sometimes"])


def test_an_alarm_far_away_does_not_stop_the_alarm_thread():
    # a guest's timer may be centuries away; the thread must still fire the
    # next alarm, and one failing alarm function must not stop the others
    import threading

    from rvkvm.server.kvm.alarm import AlarmClock

    clock = AlarmClock()
    far = clock.arm(time.monotonic() + 1e15, lambda: None)
    fired = threading.Event()

    def fail() -> None:
        raise RuntimeError("an alarm that fails")

    clock.arm(time.monotonic() + 0.01, fail)
    clock.arm(time.monotonic() + 0.02, fired.set)
    assert fired.wait(10)
    far.cancel()
