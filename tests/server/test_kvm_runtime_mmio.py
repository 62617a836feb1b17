"""MMIO exits: accesses outside every slot, stores to read-only slots
(kvm-riscv-uapi.md sections 4 and 5.1), and the CSR exit for Zkr seed."""

from __future__ import annotations

import errno

import pytest

from rvkvm.server.kvm import HostProfile, KvmError, parse_name
from rvkvm.server.kvm.exits import CsrExit, DebugExit, MmioExit
from rvkvm.uapi.kvm import KVM_MEM_READONLY
from tests.emulator import rvasm as A
from tests.server.kvm_runtime_guest import (
    A1,
    EBREAK,
    MMIO,
    PC,
    RAM_BASE,
    REG_A0,
    REG_A1,
    REG_A2,
    csrrw,
    ld,
    li,
    load,
    lw,
    new_vm,
    run_to_end,
    sd,
    sw,
)

U64 = (1 << 64) - 1
ROM = 0x2000_0000
SEED = 0x015


def test_mmio_load_exit_and_completion():
    vm, (vcpu,) = new_vm()
    load(vm, vcpu, li(REG_A0, MMIO + 0x10) + [ld(REG_A1, REG_A0, 8), lw(REG_A2, REG_A0, 0),
                                               EBREAK])
    exit_ = vcpu.run()
    assert isinstance(exit_, MmioExit)
    assert (exit_.phys_addr, exit_.len, exit_.is_write) == (MMIO + 0x18, 8, False)
    exit_.data[:] = (0x1122334455667788).to_bytes(8, "little")
    exit_ = vcpu.run()
    assert isinstance(exit_, MmioExit) and (exit_.phys_addr, exit_.len) == (MMIO + 0x10, 4)
    exit_.data[:4] = (0x8000_0001).to_bytes(4, "little")
    run_to_end(vcpu)
    assert vcpu.get_value(A1) == 0x1122334455667788
    assert vcpu.get_value(parse_name("core a2")) == 0xFFFF_FFFF_8000_0001  # lw sign-extends


def test_mmio_store_exit_carries_the_data():
    vm, (vcpu,) = new_vm()
    load(vm, vcpu, li(REG_A0, MMIO) + li(REG_A1, 0xCAFEF00D) + [sw(REG_A1, REG_A0, 4), EBREAK])
    exit_ = vcpu.run()
    assert isinstance(exit_, MmioExit) and exit_.is_write
    assert (exit_.phys_addr, exit_.len) == (MMIO + 4, 4)
    assert bytes(exit_.data[:4]) == (0xCAFEF00D).to_bytes(4, "little")
    run_to_end(vcpu)


def test_compressed_mmio_load():
    vm, (vcpu,) = new_vm()
    c_ld_a1_0_a0 = (0b011 << 13) | ((REG_A0 - 8) << 7) | ((REG_A1 - 8) << 2)
    code = A.words(li(REG_A0, MMIO)) + c_ld_a1_0_a0.to_bytes(2, "little") + b"\x01\x00"
    vm.write_memory(RAM_BASE, code + A.words([EBREAK]))
    vcpu.set_value(PC, RAM_BASE)
    vcpu.set_guest_debug(1)
    exit_ = vcpu.run()
    assert isinstance(exit_, MmioExit) and exit_.len == 8
    exit_.data[:] = (42).to_bytes(8, "little")
    run_to_end(vcpu)
    assert vcpu.get_value(A1) == 42


def test_read_only_slot_reads_as_ram_and_writes_exit():
    vm, (vcpu,) = new_vm()
    vm.set_user_memory_region(1, KVM_MEM_READONLY, ROM, 0x1000)
    vm.write_memory(ROM, (77).to_bytes(8, "little"))  # the VMM fills its ROM
    load(vm, vcpu, li(REG_A0, ROM) + [ld(REG_A1, REG_A0, 0), sd(REG_A1, REG_A0, 8), EBREAK])
    exit_ = vcpu.run()
    assert isinstance(exit_, MmioExit) and exit_.is_write
    assert (exit_.phys_addr, exit_.len) == (ROM + 8, 8)
    assert int.from_bytes(exit_.data, "little") == 77
    run_to_end(vcpu)
    assert vm.read_memory(ROM + 8, 8) == bytes(8)  # ROM unchanged


def test_fetch_outside_ram_fails_with_eopnotsupp():
    vm, (vcpu,) = new_vm()
    vcpu.set_value(PC, MMIO)
    with pytest.raises(KvmError) as info:
        vcpu.run()
    assert info.value.errno == errno.EOPNOTSUPP


def test_fp_load_from_mmio_cannot_be_emulated():
    vm, (vcpu,) = new_vm()
    fld = A.i(0x07, 3, 1, REG_A0, 0)
    load(vm, vcpu, li(REG_A0, MMIO) + [fld, EBREAK])
    with pytest.raises(KvmError) as info:
        vcpu.run()
    assert info.value.errno == errno.EOPNOTSUPP


def test_seed_csr_exits_to_userspace():
    vm, (vcpu,) = new_vm(host=HostProfile.default().plus("zkr"))
    load(vm, vcpu, [csrrw(REG_A1, SEED, 0), EBREAK])
    exit_ = vcpu.run()
    assert isinstance(exit_, CsrExit)
    assert (exit_.csr_num, exit_.new_value, exit_.write_mask) == (SEED, 0, U64)
    exit_.ret_value = 0x8000_ABCD
    run_to_end(vcpu)
    assert vcpu.get_value(A1) == 0x8000_ABCD


def test_seed_csr_without_zkr_is_an_illegal_instruction_for_the_guest():
    vm, (vcpu,) = new_vm()
    handler = RAM_BASE + 0x800
    vm.write_memory(handler, A.words([EBREAK]))
    load(vm, vcpu, li(5, handler) + [csrrw(0, 0x105, 5), csrrw(REG_A1, SEED, 0), EBREAK])
    assert isinstance(vcpu.run(), DebugExit)
    assert vcpu.get_value(PC) == handler
    assert vcpu.get_value(parse_name("csr scause")) == 2
