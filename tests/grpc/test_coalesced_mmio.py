"""Coalesced MMIO over gRPC: the zone RPCs, the ring carried in Exit
messages (Run, RunStream, RunMany) and DrainCoalescedMmio, errors."""

from __future__ import annotations

import errno
import io
import os

import grpc
import pytest

from rvkvm.client import KvmError
from rvkvm.client.exits import CoalescedMmio, DebugExit, MmioExit
from rvkvm.client.kvm import KVM_CAP_COALESCED_MMIO, KVM_MP_STATE_RUNNABLE
from rvkvm.client.vmm import Vmm
from rvkvm.server.kvm.coalesced_mmio import RING_CAPACITY
from tests.server.test_kvm_coalesced_mmio import store_loop

from .guest import MMIO, REG_A0, REG_A2, jump_self, ld, li, load, new_vm

JUMP_SELF = jump_self()
UART_GUEST = os.path.join(os.path.dirname(__file__), "..", "..", "client", "guests", "uart.elf")


def entries(n: int, first: int = 1) -> list:
    return [CoalescedMmio(MMIO, 1, 0, bytes([(first + i) & 0xFF])) for i in range(n)]


def test_check_extension(kvm):
    assert kvm.check_extension(KVM_CAP_COALESCED_MMIO) == 1
    vm, _ = new_vm(kvm)
    assert vm.check_extension(KVM_CAP_COALESCED_MMIO) == 1


def test_exit_carries_the_ring_in_order_unary(kvm):
    vm, (vcpu,) = new_vm(kvm)
    vm.register_coalesced_mmio(MMIO, 1)
    load(vm, vcpu, store_loop(5))
    exit_ = vcpu.run()
    assert isinstance(exit_, DebugExit)
    assert list(exit_.coalesced_mmio) == entries(5)
    assert vm.drain_coalesced_mmio() == []  # delivered once


def test_full_ring_exit_over_run_stream_then_the_rest(kvm):
    vm, (vcpu,) = new_vm(kvm)
    vm.register_coalesced_mmio(MMIO, 1)
    load(vm, vcpu, store_loop(RING_CAPACITY + 3))
    with vcpu.run_stream() as stream:
        exit_ = stream.run()
        assert isinstance(exit_, MmioExit) and exit_.is_write
        assert exit_.value == RING_CAPACITY + 1  # the store that found the ring full ...
        assert list(exit_.coalesced_mmio) == entries(RING_CAPACITY)  # ... after these
        exit_ = stream.run()
        assert isinstance(exit_, DebugExit)
        assert list(exit_.coalesced_mmio) == entries(2, RING_CAPACITY + 2)


def test_load_exit_comes_after_the_stores_before_it(kvm):
    vm, (vcpu,) = new_vm(kvm)
    vm.register_coalesced_mmio(MMIO, 0x10)
    load(vm, vcpu, store_loop(3)[:-1] + li(REG_A0, MMIO) + [ld(REG_A2, REG_A0, 8)]
         + [store_loop(1)[-1]])
    exit_ = vcpu.run()
    assert isinstance(exit_, MmioExit) and not exit_.is_write
    assert list(exit_.coalesced_mmio) == entries(3)
    exit_.value = 9
    assert isinstance(vcpu.run(), DebugExit)
    assert vcpu.get_reg("core a2") == 9


def test_run_many_and_drain(kvm):
    vm, vcpus = new_vm(kvm, vcpus=2)
    vm.register_coalesced_mmio(MMIO, 1)
    vm.register_coalesced_mmio(MMIO + 0x100, 1)
    load(vm, vcpus[0], store_loop(4))
    load(vm, vcpus[1], store_loop(4, MMIO + 0x100), at=0x8000_1000)
    vcpus[1].set_mp_state(KVM_MP_STATE_RUNNABLE)  # secondary vCPUs start STOPPED
    results = vm.run_many(vcpus, budget=100_000, idle_timeout=1.0)
    assert all(isinstance(r, DebugExit) for r in results)
    # The ring is the VM's, as in KVM: whichever vCPU exits first takes what
    # both stored so far, so one vCPU's stores may be split between the two
    # exits, in either order of the results: the first exit has a prefix of
    # each vCPU's stores, the other the rest, each store exactly once.
    for addr in (MMIO, MMIO + 0x100):
        parts = [[e.data[0] for e in r.coalesced_mmio if e.phys_addr == addr] for r in results]
        assert parts[0] + parts[1] == [1, 2, 3, 4] or parts[1] + parts[0] == [1, 2, 3, 4]
    vm.unregister_coalesced_mmio(MMIO, 1)
    load(vm, vcpus[0], store_loop(1))
    assert isinstance(vcpus[0].run(), MmioExit)  # the zone is gone: an exit again


def test_budget_exit_delivers_the_ring(kvm):
    vm, (vcpu,) = new_vm(kvm)
    vm.register_coalesced_mmio(MMIO, 1)
    load(vm, vcpu, store_loop(3)[:-1] + [JUMP_SELF])
    assert list(vcpu.run(budget=2_000).coalesced_mmio) == entries(3)
    assert vm.drain_coalesced_mmio() == []


def test_drain_rpc_takes_what_no_exit_delivered(kvm):
    vm, (vcpu,) = new_vm(kvm)
    vm.register_coalesced_mmio(MMIO, 1)
    load(vm, vcpu, store_loop(3)[:-1] + [JUMP_SELF])
    with pytest.raises(KvmError) as err:
        vcpu.run(timeout=0.5)  # spins until the deadline: no exit is delivered
    assert err.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert vm.drain_coalesced_mmio() == entries(3)


def test_errors_keep_their_errno(kvm):
    vm, _ = new_vm(kvm)
    with pytest.raises(KvmError) as err:
        vm.register_coalesced_mmio(MMIO, 8, pio=2)
    assert err.value.errno == errno.EINVAL
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    vm.unregister_coalesced_mmio(MMIO, 8)  # no such zone: success, as Linux
    vm.destroy()
    with pytest.raises(KvmError) as err:
        vm.drain_coalesced_mmio()
    assert err.value.errno == errno.EBADF


@pytest.mark.parametrize("coalesce", [False, True])
def test_vmm_prints_the_uart_guest_with_and_without_coalesced_thr(kvm, coalesce):
    console = io.BytesIO()
    vmm = Vmm(kvm, ram_size=4 << 20, console=console)
    vmm.add_uart(coalesce_thr=coalesce)
    vmm.boot(vmm.load_elf(UART_GUEST), vmm.place_dtb(vmm.device_tree()))
    result = vmm.run(timeout=60)
    vmm.close()
    assert result.clean_shutdown
    assert console.getvalue() == (b"Hello from an MMIO device guest: this text went byte by byte "
                                  b"through the NS16550A at 0x10000000\n")
