"""Guest memory over gRPC: slots, unary and streamed transfers, dirty log,
read-only slots."""

from __future__ import annotations

import errno
import os

import grpc
import pytest

from rvkvm.client import KvmError
from rvkvm.client.exits import DebugExit, MmioExit
from rvkvm.client.kvm import KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY
from rvkvm.v1 import kvm_pb2 as pb
from rvkvm.v1 import kvm_pb2_grpc as pb_grpc

from .guest import EBREAK, REG_A0, REG_A1, li, load, new_vm, sd

BIG = 0x9000_0000


def test_write_and_read_small(kvm):
    vm, _ = new_vm(kvm)
    vm.write_memory(0x8000_0100, b"hello")
    assert vm.read_memory(0x8000_00FE, 9) == b"\0\0hello\0\0"
    vm.destroy()


def test_large_transfers_are_streamed(kvm):
    vm = kvm.create_vm()
    vm.set_user_memory_region(1, BIG, 1 << 20)
    data = os.urandom(300_000)  # several 64 KiB chunks at the test server's limit
    vm.write_memory(BIG + 5, data)
    assert vm.read_memory(BIG + 5, len(data)) == data
    vm.destroy()


def test_unary_transfer_limit_is_e2big(channel, kvm):
    vm = kvm.create_vm()
    stub = pb_grpc.KvmStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.ReadMemory(pb.ReadMemoryRequest(vm_id=vm.id, gpa=BIG, size=1 << 20))
    assert info.value.code() == grpc.StatusCode.OUT_OF_RANGE
    vm.destroy()


def test_memory_outside_slots_is_efault(kvm):
    vm, _ = new_vm(kvm)
    with pytest.raises(KvmError) as info:
        vm.read_memory(0x1000, 4)
    assert info.value.errno == errno.EFAULT
    vm.destroy()


def test_slot_rules(kvm):
    vm, _ = new_vm(kvm)
    with pytest.raises(KvmError) as info:
        vm.set_user_memory_region(1, 0x8000_8000, 0x1000)  # overlaps slot 0
    assert info.value.errno == errno.EEXIST
    with pytest.raises(KvmError) as info:
        vm.set_user_memory_region(2, 0x9000_0001, 0x1000)  # unaligned
    assert info.value.errno == errno.EINVAL
    vm.destroy()


def test_dirty_log(kvm):
    vm, (vcpu,) = new_vm(kvm)
    vm.set_user_memory_region(1, BIG, 0x4000, flags=KVM_MEM_LOG_DIRTY_PAGES)
    load(vm, vcpu, li(REG_A0, BIG + 0x2000) + [sd(REG_A0, REG_A0, 0), EBREAK])
    assert isinstance(vcpu.run(), DebugExit)
    assert vm.get_dirty_log(1) == (0b100).to_bytes(8, "little")
    assert vm.get_dirty_log(1) == bytes(8)  # harvesting cleared it
    vm.destroy()


def test_store_to_readonly_slot_is_mmio(kvm):
    vm, (vcpu,) = new_vm(kvm)
    vm.set_user_memory_region(1, BIG, 0x1000, flags=KVM_MEM_READONLY)
    load(vm, vcpu, li(REG_A0, BIG) + li(REG_A1, 0x55) + [sd(REG_A1, REG_A0, 8), EBREAK])
    exit_ = vcpu.run()
    assert isinstance(exit_, MmioExit) and exit_.is_write
    assert (exit_.phys_addr, exit_.value) == (BIG + 8, 0x55)
    vm.destroy()
