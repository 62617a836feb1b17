"""The guest clock over gRPC: HostInfo.default_clock, CreateVmRequest.clock
(deterministic at a rate, or the host's), and bad settings refused with
EINVAL."""

from __future__ import annotations

import errno
import time
from fractions import Fraction

import grpc
import pytest

from rvkvm.client import Kvm, KvmError
from rvkvm.client.exits import DebugExit
from rvkvm.v1 import kvm_pb2 as pb
from tests.emulator import rvasm as A

from .guest import EBREAK, RAM_BASE, RAM_SIZE, load


def test_the_default_clock_is_one_ns_per_instruction(kvm: Kvm) -> None:
    clock = kvm.get_host_info().default_clock
    assert clock.mode == pb.GuestClock.MODE_DETERMINISTIC
    assert (clock.ns_per_insn_num, clock.ns_per_insn_den) == (1, 1)


@pytest.mark.parametrize("rate, ticks", [(None, 10), (Fraction(1, 2), 5), (100, 1000),
                                          ("tick", 1000)])
def test_a_vm_keeps_time_at_its_rate(kvm: Kvm, rate, ticks) -> None:
    clock = "100" if rate == "tick" else rate  # one tick per instruction at 10 MHz
    vm = kvm.create_vm(clock=clock)
    vm.set_user_memory_region(0, RAM_BASE, RAM_SIZE)
    vcpu = vm.create_vcpu(0)
    load(vm, vcpu, [A.addi(5, 5, 1)] * 1000 + [EBREAK])
    before = vcpu.get_reg("timer time")
    assert isinstance(vcpu.run(budget=10_000), DebugExit)
    assert vcpu.get_reg("timer time") - before == ticks
    vm.destroy()


def test_a_host_clock_vm_follows_the_wall(kvm: Kvm) -> None:
    vm = kvm.create_vm(clock="host")
    vm.set_user_memory_region(0, RAM_BASE, RAM_SIZE)
    vcpu = vm.create_vcpu(0)
    t0 = vcpu.get_reg("timer time")
    time.sleep(0.05)
    assert vcpu.get_reg("timer time") - t0 >= 0.9 * 0.05 * kvm.get_host_info().timebase_frequency
    vm.destroy()


@pytest.mark.parametrize("clock", [
    pb.GuestClock(mode=pb.GuestClock.MODE_DETERMINISTIC, ns_per_insn_num=1),
    pb.GuestClock(mode=pb.GuestClock.MODE_DETERMINISTIC, ns_per_insn_den=3),
    pb.GuestClock(mode=pb.GuestClock.MODE_HOST, ns_per_insn_num=1, ns_per_insn_den=1),
    pb.GuestClock(mode=7),
    pb.GuestClock(ns_per_insn_num=2, ns_per_insn_den=1),
])
def test_bad_clocks_are_einval(kvm: Kvm, clock: pb.GuestClock) -> None:
    request = pb.CreateVmRequest(clock=clock)
    with pytest.raises(KvmError) as err:
        kvm._caller.unary("CreateVm", request)
    assert err.value.errno == errno.EINVAL
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_the_client_refuses_a_bad_clock_before_calling(kvm: Kvm) -> None:
    for bad in ("sometimes", 0, -1):
        with pytest.raises(ValueError):
            kvm.create_vm(clock=bad)
