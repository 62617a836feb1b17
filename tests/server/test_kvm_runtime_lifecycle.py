"""System, VM and vCPU lifecycle: capabilities, memory slots (Linux
``__kvm_set_memory_region``), dirty log, vCPU creation, ONE_REG on a real
hart, run() budgets, kicks, idle, interrupts, guest debug, MP state."""

from __future__ import annotations

import errno
import threading
import time

import pytest

from rvkvm.server.kvm import KvmError, parse_name
from rvkvm.server.kvm.exits import InternalErrorExit, IntrExit
from rvkvm.server.kvm.system import KvmSystem
from rvkvm.uapi.kvm import (
    KVM_CAP_RISCV_MP_STATE_RESET,
    KVM_INTERRUPT_SET,
    KVM_INTERRUPT_UNSET,
    KVM_MEM_LOG_DIRTY_PAGES,
    KVM_MEM_READONLY,
    KVM_MP_STATE_INIT_RECEIVED,
    KVM_MP_STATE_RUNNABLE,
    KVM_MP_STATE_STOPPED,
)
from tests.emulator import rvasm as A
from tests.server.kvm_runtime_guest import (
    A0,
    A1,
    DATA,
    EBREAK,
    MODE,
    PC,
    RAM_BASE,
    RAM_SIZE,
    REG_A0,
    REG_A1,
    WFI,
    jump_self,
    li,
    load,
    new_vm,
    run_to_end,
    sbi_call,
    sd,
)

PAGE = 0x1000


def errno_of(fn, *args, **kwargs):
    with pytest.raises(KvmError) as info:
        fn(*args, **kwargs)
    return info.value.errno


def test_system_ioctls():
    kvm = KvmSystem()
    assert kvm.get_api_version() == 12
    assert kvm.get_vcpu_mmap_size() == 8192
    assert kvm.check_extension(70) == 1  # ONE_REG
    assert kvm.check_extension(81) == 1  # READONLY_MEM
    assert kvm.check_extension(0) == 0  # no in-kernel irqchip
    assert kvm.check_extension(207) == 59  # Sv57x4
    assert kvm.check_extension(242) == 0  # MP_STATE_RESET is not reported
    vm = kvm.create_vm()
    assert vm.check_extension(66) == 1024
    vm.enable_cap(KVM_CAP_RISCV_MP_STATE_RESET)
    assert errno_of(vm.enable_cap, 70) == errno.EINVAL
    assert errno_of(vm.enable_cap, KVM_CAP_RISCV_MP_STATE_RESET, 1) == errno.EINVAL


def test_memory_region_rules():
    vm = KvmSystem().create_vm()
    add = vm.set_user_memory_region
    add(0, 0, 0x8000_0000, 4 * PAGE)
    assert errno_of(add, 1, 0, 0x8000_1000, PAGE) == errno.EEXIST  # overlap
    assert errno_of(add, 1, 4, 0x9000_0000, PAGE) == errno.EINVAL  # flags
    assert errno_of(add, 1, 0, 0x9000_0800, PAGE) == errno.EINVAL  # unaligned gpa
    assert errno_of(add, 1, 0, 0x9000_0000, 0x800) == errno.EINVAL  # unaligned size
    assert errno_of(add, 1, 0, 0x9000_0000, PAGE, 0x10) == errno.EINVAL  # unaligned uaddr
    assert errno_of(add, 1 << 16, 0, 0x9000_0000, PAGE) == errno.EINVAL  # address space 1
    assert errno_of(add, 32767, 0, 0x9000_0000, PAGE) == errno.EINVAL
    assert errno_of(add, 2, 0, 0, 0) == errno.EINVAL  # delete a missing slot
    assert errno_of(add, 1, 0, (1 << 59) - PAGE, PAGE) == errno.EFAULT  # beyond GPA bits
    # modify slot 0: size, read-only flag or uaddr may not change
    assert errno_of(add, 0, 0, 0x8000_0000, 8 * PAGE) == errno.EINVAL
    assert errno_of(add, 0, KVM_MEM_READONLY, 0x8000_0000, 4 * PAGE) == errno.EINVAL
    assert errno_of(add, 0, 0, 0x8000_0000, 4 * PAGE, PAGE) == errno.EINVAL
    add(0, KVM_MEM_LOG_DIRTY_PAGES, 0x8000_0000, 4 * PAGE)  # flags only
    vm.write_memory(0x8000_0000, b"abc")
    add(0, KVM_MEM_LOG_DIRTY_PAGES, 0x4000_0000, 4 * PAGE)  # move keeps contents
    assert vm.read_memory(0x4000_0000, 3) == b"abc"
    assert errno_of(vm.read_memory, 0x8000_0000, 1) == errno.EFAULT
    add(1, 0, 0x8000_0000, PAGE)  # the old place is free again
    add(0, 0, 0x4000_0000, 0)  # delete
    assert errno_of(vm.read_memory, 0x4000_0000, 1) == errno.EFAULT
    add(0, 0, 0x4000_0000, PAGE)  # the id is free again


def test_dirty_log():
    vm, (vcpu,) = new_vm()
    assert errno_of(vm.get_dirty_log, 0) == errno.ENOENT
    vm.set_user_memory_region(0, KVM_MEM_LOG_DIRTY_PAGES, RAM_BASE, RAM_SIZE)
    vm.get_dirty_log(0)
    load(vm, vcpu, li(REG_A0, DATA) + li(REG_A1, DATA + PAGE)
         + [sd(REG_A0, REG_A0, 0), sd(REG_A0, REG_A1, 0), EBREAK])
    vm.get_dirty_log(0)  # forget the program load
    run_to_end(vcpu)
    bitmap = int.from_bytes(vm.get_dirty_log(0), "little")
    page = (DATA - RAM_BASE) // PAGE
    assert bitmap == (1 << page) | (1 << (page + 1))
    assert len(vm.get_dirty_log(0)) == 8  # 16 pages, padded to one u64
    assert vm.get_dirty_log(0) == bytes(8)
    vcpu.set_value(PC, RAM_BASE)
    run_to_end(vcpu)  # cached translations must not hide the second round
    assert int.from_bytes(vm.get_dirty_log(0), "little") == bitmap


def test_vcpu_creation_rules():
    vm = KvmSystem().create_vm()
    assert errno_of(vm.create_vcpu, 1024) == errno.EINVAL
    first = vm.create_vcpu(5)
    assert errno_of(vm.create_vcpu, 5) == errno.EEXIST
    second = vm.create_vcpu(0)
    assert first.get_mp_state() == KVM_MP_STATE_RUNNABLE
    assert second.get_mp_state() == KVM_MP_STATE_STOPPED
    vm.destroy()
    assert errno_of(vm.create_vcpu, 1) == errno.EBADF
    assert errno_of(first.run) == errno.EBADF


def test_initial_state_and_one_reg_on_a_real_hart():
    vm, (vcpu,) = new_vm()
    assert vcpu.get_value(PC) == 0
    assert all(vcpu.get_value(parse_name(f"core a{i}")) == 0 for i in range(8))
    assert vcpu.get_value(MODE) == 1
    assert vcpu.get_value(parse_name("csr satp")) == 0
    load(vm, vcpu, [A.r(0x33, 0, 0, REG_A0, REG_A0, REG_A1), EBREAK])  # add a0, a0, a1
    vcpu.set_value(A0, 40)
    vcpu.set_value(A1, 2)
    run_to_end(vcpu)
    assert vcpu.get_value(A0) == 42
    assert vcpu.get_value(PC) == RAM_BASE + 4
    assert parse_name("core pc") in vcpu.get_reg_list()


def test_isa_and_sbi_registers_are_fixed_after_the_first_run():
    vm, (vcpu,) = new_vm()
    svpbmt, dbcn = parse_name("isa_ext SVPBMT"), parse_name("sbi_ext DBCN")
    vcpu.set_value(svpbmt, 0)
    vcpu.set_value(svpbmt, 1)
    vcpu.kick()
    assert isinstance(vcpu.run(), IntrExit)  # even an immediate exit counts
    assert errno_of(vcpu.set_value, svpbmt, 0) == errno.EBUSY
    assert errno_of(vcpu.set_value, dbcn, 1) == errno.EBUSY
    vcpu.set_value(svpbmt, 1)  # writing the current value is fine
    vcpu.set_value(parse_name("fwft pointer_masking.value"), 7)  # FWFT state stays writable


def test_endless_guest_returns_after_the_budget():
    vm, (vcpu,) = new_vm()
    load(vm, vcpu, [jump_self()])
    started = time.monotonic()
    exit_ = vcpu.run(budget=20_000)
    assert isinstance(exit_, IntrExit) and exit_.why == "budget"
    assert time.monotonic() - started < 5


def test_endless_trap_loop_returns_after_the_budget():
    vm, (vcpu,) = new_vm()
    # stvec points at an illegal instruction: every trap traps again
    load(vm, vcpu, li(5, DATA) + [A.csrrw(0, 0x105, 5), 0])
    exit_ = vcpu.run(budget=5_000)
    assert isinstance(exit_, IntrExit) and exit_.why == "budget"


def test_kick_from_another_thread():
    vm, (vcpu,) = new_vm()
    load(vm, vcpu, [jump_self()])
    timer = threading.Timer(0.2, vcpu.kick)
    timer.start()
    exit_ = vcpu.run(budget=10 ** 12)
    timer.join()
    assert isinstance(exit_, IntrExit) and exit_.why == "kick"


def test_wfi_sleeps_until_an_external_interrupt():
    vm, (vcpu,) = new_vm()
    handler = RAM_BASE + 0x800
    vm.write_memory(handler, A.words([EBREAK]))
    load(vm, vcpu, li(5, handler) + [A.csrrw(0, 0x105, 5)]
         + li(5, 1 << 9) + [A.csrrs(0, 0x104, 5), WFI, jump_self()])
    exit_ = vcpu.run(idle_timeout=0.05)
    assert isinstance(exit_, IntrExit) and exit_.why == "idle"
    threading.Timer(0.1, vcpu.interrupt, (KVM_INTERRUPT_SET,)).start()
    exit_ = vcpu.run(budget=10_000, idle_timeout=None)  # blocks like KVM until woken
    # sstatus.SIE is off: WFI resumes without a trap and the guest spins
    assert isinstance(exit_, IntrExit) and exit_.why == "budget"
    assert vcpu.get_value(parse_name("csr sip")) & (1 << 9)
    vcpu.interrupt(KVM_INTERRUPT_UNSET)
    assert vcpu.get_value(parse_name("csr sip")) & (1 << 9) == 0


def test_external_interrupt_reaches_the_guest_handler():
    vm, (vcpu,) = new_vm()
    handler = RAM_BASE + 0x800
    vm.write_memory(handler, A.words([EBREAK]))
    load(vm, vcpu, li(5, handler) + [A.csrrw(0, 0x105, 5)]
         + li(5, 1 << 9) + [A.csrrs(0, 0x104, 5)]  # sie.SEIE
         + li(6, 2) + [A.csrrs(0, 0x100, 6), WFI, jump_self()])
    vcpu.interrupt(KVM_INTERRUPT_SET)
    run_to_end(vcpu)
    assert vcpu.get_value(PC) == handler
    assert vcpu.get_value(parse_name("csr scause")) == (1 << 63) | 9


def test_ebreak_goes_to_the_guest_without_guest_debug():
    vm, (vcpu,) = new_vm()
    handler = RAM_BASE + 0x800
    vm.write_memory(handler, A.words([jump_self()]))
    load(vm, vcpu, li(5, handler) + [A.csrrw(0, 0x105, 5), EBREAK])
    vcpu.set_guest_debug(0)
    assert isinstance(vcpu.run(budget=1000), IntrExit)
    assert vcpu.get_value(PC) == handler
    assert vcpu.get_value(parse_name("csr scause")) == 3


def test_mp_state():
    vm, (vcpu,) = new_vm()
    vcpu.set_mp_state(KVM_MP_STATE_STOPPED)
    assert isinstance(vcpu.run(idle_timeout=0.0), IntrExit)
    vcpu.set_mp_state(KVM_MP_STATE_RUNNABLE)
    assert errno_of(vcpu.set_mp_state, KVM_MP_STATE_INIT_RECEIVED) == errno.EINVAL
    assert errno_of(vcpu.set_mp_state, 3) == errno.EINVAL
    vm.enable_cap(KVM_CAP_RISCV_MP_STATE_RESET)
    vcpu.set_value(A0, 9)
    vcpu.set_mp_state(KVM_MP_STATE_INIT_RECEIVED)
    assert vcpu.get_value(A0) == 0


def test_an_emulator_failure_is_an_internal_error_exit():
    vm, (vcpu,) = new_vm()
    load(vm, vcpu, [jump_self()])

    def broken(max_insns):
        raise RuntimeError("emulator bug")

    vcpu.hart.run = broken
    exit_ = vcpu.run()
    assert isinstance(exit_, InternalErrorExit) and exit_.suberror == 1
    assert "emulator bug" in exit_.message


def test_immediate_exit_still_applies_the_completion():
    vm, (vcpu,) = new_vm()
    vcpu.set_value(parse_name("sbi_ext DBCN"), 1)
    load(vm, vcpu, sbi_call(0x4442434E, 2, ord("!")) + [EBREAK])
    exit_ = vcpu.run()
    assert vcpu.pending_exit is exit_
    exit_.ret[:] = [0, 0]
    vcpu.kick()
    assert isinstance(vcpu.run(), IntrExit)
    assert vcpu.get_value(A0) == 0  # a0 written before the immediate exit
    run_to_end(vcpu)
