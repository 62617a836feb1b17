"""Coalesced MMIO in the KVM model (virt/kvm/coalesced_mmio.c): zones, the
ring, which accesses it takes, and its bound."""

from __future__ import annotations

import errno

import pytest

from rvkvm.server.kvm import KvmError, parse_name
from rvkvm.server.kvm.caps import KVM_CAP_COALESCED_MMIO, KVM_CAP_COALESCED_PIO
from rvkvm.server.kvm.coalesced_mmio import KVM_COALESCED_MMIO_MAX, NR_IOBUS_DEVS, RING_CAPACITY
from rvkvm.server.kvm.exits import MmioExit
from rvkvm.server.kvm.system import KvmSystem
from rvkvm.server.kvm.vm import KVM_MEM_READONLY
from tests.emulator import rvasm as A
from tests.server.kvm_runtime_guest import (
    EBREAK,
    MMIO,
    REG_A0,
    REG_A1,
    REG_A2,
    ld,
    li,
    load,
    new_vm,
    run_to_end,
    sd,
    sw,
)

T0 = 5
A2 = parse_name("core a2")
ROM = 0x2000_0000


def sb(rs2: int, rs1: int, off: int = 0) -> int:
    return A.s(0x23, 0, rs1, rs2, off)


def store_loop(count: int, addr: int = MMIO) -> list:
    """Store bytes 1..count (a1 counts up) to ``addr``, then ebreak."""
    return (li(REG_A0, addr) + li(REG_A1, 0) + li(T0, count)
            + [A.addi(REG_A1, REG_A1, 1), sb(REG_A1, REG_A0, 0), A.addi(T0, T0, -1),
               A.b(1, T0, 0, -12), EBREAK])


def test_check_extension_answers_the_ring_page_offset():
    system = KvmSystem()
    assert system.check_extension(KVM_CAP_COALESCED_MMIO) == 1  # KVM_COALESCED_MMIO_PAGE_OFFSET
    assert system.create_vm().check_extension(KVM_CAP_COALESCED_PIO) == 1
    assert KVM_COALESCED_MMIO_MAX == 170 and RING_CAPACITY == 169


def test_writes_into_a_zone_queue_without_an_exit_in_order():
    vm, (vcpu,) = new_vm()
    vm.register_coalesced_mmio(MMIO, 8)
    load(vm, vcpu, store_loop(20))
    run_to_end(vcpu)  # no MMIO exit on the way
    entries = vm.drain_coalesced_mmio()
    assert [(e.phys_addr, e.len, e.pio, e.data) for e in entries] == [
        (MMIO, 1, 0, bytes([n])) for n in range(1, 21)]
    assert vm.drain_coalesced_mmio() == []


def test_zone_stores_complete_inside_the_harts_run(monkeypatch):
    vm, (vcpu,) = new_vm()
    vm.register_coalesced_mmio(MMIO, 8)
    load(vm, vcpu, store_loop(30))
    entered = []
    real = vcpu.hart.run

    def run(*args, **kwargs):
        entered.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(vcpu.hart, "run", run)
    before = vcpu.stats()
    run_to_end(vcpu)
    # the in-kernel bus takes each store where the hart is: one run of the
    # hart for the whole loop, not one per store
    assert len(entered) == 1
    after = vcpu.stats()
    assert after["mmio_exit_kernel"] - before["mmio_exit_kernel"] == 30
    assert after["exits"] - before["exits"] >= 30  # each still counts as a KVM exit
    assert [e.data for e in vm.drain_coalesced_mmio()] == [bytes([n]) for n in range(1, 31)]


def test_a_zone_store_kvm_cannot_decode_is_still_eopnotsupp():
    vm, (vcpu,) = new_vm()
    vm.register_coalesced_mmio(MMIO, 8)
    # a store KVM's MMIO decoder does not know (fsd f1, 0(a0), with FS on)
    sstatus_fs = 1 << 13
    load(vm, vcpu, li(REG_A0, MMIO) + li(REG_A1, sstatus_fs)
         + [A.csrrs(0, 0x100, REG_A1), A.s(0x27, 3, REG_A0, 1, 0), EBREAK])
    with pytest.raises(KvmError) as info:
        vcpu.run()
    assert info.value.errno == errno.EOPNOTSUPP
    assert vm.drain_coalesced_mmio() == []


def test_reads_in_a_zone_still_exit():
    vm, (vcpu,) = new_vm()
    vm.register_coalesced_mmio(MMIO, 8)
    load(vm, vcpu, li(REG_A0, MMIO) + li(REG_A1, 0x1234)
         + [sd(REG_A1, REG_A0, 0), ld(REG_A2, REG_A0, 0), EBREAK])
    exit_ = vcpu.run()
    assert isinstance(exit_, MmioExit) and not exit_.is_write and exit_.len == 8
    # the store before the load is in the ring, ahead of the load's exit
    assert [(e.phys_addr, e.len, e.data) for e in vm.drain_coalesced_mmio()] == [
        (MMIO, 8, (0x1234).to_bytes(8, "little"))]
    exit_.data[:] = (7).to_bytes(8, "little")
    run_to_end(vcpu)
    assert vcpu.get_value(A2) == 7


def test_store_straddling_the_zone_end_exits():
    vm, (vcpu,) = new_vm()
    vm.register_coalesced_mmio(MMIO, 6)
    load(vm, vcpu, li(REG_A0, MMIO) + li(REG_A1, 0x1234)
         + [sw(REG_A1, REG_A0, 4), sw(REG_A1, REG_A0, 0), sw(REG_A1, REG_A0, 8), EBREAK])
    exit_ = vcpu.run()
    assert isinstance(exit_, MmioExit) and exit_.phys_addr == MMIO + 4  # [4, 8) leaves [0, 6)
    exit_ = vcpu.run()  # the store at +0 queued, the one at +8 is outside
    assert isinstance(exit_, MmioExit) and exit_.phys_addr == MMIO + 8
    assert [(e.phys_addr, e.data) for e in vm.drain_coalesced_mmio()] == [
        (MMIO, (0x1234).to_bytes(4, "little"))]
    run_to_end(vcpu)


def test_a_full_ring_makes_the_write_an_ordinary_exit():
    vm, (vcpu,) = new_vm()
    vm.register_coalesced_mmio(MMIO, 1)
    load(vm, vcpu, store_loop(RING_CAPACITY + 2))
    exit_ = vcpu.run()
    assert isinstance(exit_, MmioExit) and exit_.is_write
    assert bytes(exit_.data[:1]) == bytes([(RING_CAPACITY + 1) & 0xFF])
    entries = vm.drain_coalesced_mmio()  # the VMM drains before it serves the exit
    assert len(entries) == RING_CAPACITY and entries[-1].data == bytes([RING_CAPACITY])
    run_to_end(vcpu)  # the last store fits again
    assert [e.data for e in vm.drain_coalesced_mmio()] == [bytes([(RING_CAPACITY + 2) & 0xFF])]


def test_stores_to_a_read_only_slot_in_a_zone_are_coalesced():
    vm, (vcpu,) = new_vm()
    vm.set_user_memory_region(1, KVM_MEM_READONLY, ROM, 0x1000)
    vm.register_coalesced_mmio(ROM, 0x1000)
    load(vm, vcpu, store_loop(3, ROM))
    run_to_end(vcpu)
    assert [e.data for e in vm.drain_coalesced_mmio()] == [b"\x01", b"\x02", b"\x03"]
    assert vm.read_memory(ROM, 1) == b"\0"  # the slot itself is not written


def test_pio_zones_never_match_and_bad_pio_is_einval():
    vm, (vcpu,) = new_vm()
    vm.register_coalesced_mmio(MMIO, 8, pio=1)
    load(vm, vcpu, store_loop(1))
    assert isinstance(vcpu.run(), MmioExit)
    with pytest.raises(KvmError) as err:
        vm.register_coalesced_mmio(MMIO, 8, pio=2)
    assert err.value.errno == errno.EINVAL
    with pytest.raises(KvmError) as err:
        vm.unregister_coalesced_mmio(MMIO, 8, pio=2)
    assert err.value.errno == errno.EINVAL


def test_unregister_drops_every_zone_containing_the_range_and_unknown_is_no_error():
    vm, _ = new_vm()
    ring = vm.coalesced_mmio
    vm.register_coalesced_mmio(MMIO, 0x100)
    vm.register_coalesced_mmio(MMIO + 0x10, 0x10)  # overlapping zones are allowed
    vm.register_coalesced_mmio(MMIO, 0x100, pio=1)
    vm.unregister_coalesced_mmio(MMIO + 0x400, 4)  # none contains it: still success
    assert len(ring.zones) == 3
    vm.unregister_coalesced_mmio(MMIO + 0x18, 4)  # inside both MMIO zones
    assert [(z.addr, z.size, z.pio) for z in ring.zones] == [(MMIO, 0x100, 1)]


def test_zone_count_is_bounded_per_bus():
    vm, _ = new_vm()
    for n in range(NR_IOBUS_DEVS):
        vm.register_coalesced_mmio(MMIO + 8 * n, 8)
    with pytest.raises(KvmError) as err:
        vm.register_coalesced_mmio(MMIO, 8)
    assert err.value.errno == errno.ENOSPC
    vm.register_coalesced_mmio(MMIO, 8, pio=1)  # the PIO bus is another bus


def test_destroyed_vm_is_ebadf():
    vm, _ = new_vm()
    vm.destroy()
    with pytest.raises(KvmError) as err:
        vm.register_coalesced_mmio(MMIO, 8)
    assert err.value.errno == errno.EBADF
