"""In-kernel SBI and forwarded SBI calls on a running vCPU (kvm-riscv-sbi.md)."""

from __future__ import annotations

import threading
import time

import pytest

from rvkvm.server.kvm import parse_name
from rvkvm.server.kvm.exits import (
    KVM_SYSTEM_EVENT_RESET,
    KVM_SYSTEM_EVENT_SHUTDOWN,
    DebugExit,
    IntrExit,
    SbiExit,
    SystemEventExit,
)
from rvkvm.server.kvm.system import KvmSystem
from rvkvm.uapi.kvm import KVM_MP_STATE_RUNNABLE, KVM_MP_STATE_STOPPED
from tests.emulator import rvasm as A
from tests.server.kvm_runtime_guest import (
    A0,
    A1,
    DATA,
    EBREAK,
    RAM_BASE,
    RAM_SIZE,
    REG_A0,
    REG_A1,
    REG_A2,
    REG_A3,
    WFI,
    li,
    load,
    new_vm,
    run_to_end,
    sbi_call,
    sd,
)

U64 = (1 << 64) - 1
DBCN, SRST, HSM, BASE, IPI, TIME = 0x4442434E, 0x53525354, 0x48534D, 0x10, 0x735049, 0x54494D45
NOT_SUPPORTED = (-2) & U64


def test_dbcn_is_off_by_default_and_answered_in_kernel():
    vm, (vcpu,) = new_vm()
    load(vm, vcpu, sbi_call(DBCN, 0, 5, DATA, 0) + [EBREAK])
    run_to_end(vcpu)
    assert vcpu.get_value(A0) == NOT_SUPPORTED
    assert vcpu.get_value(A1) == 0


def test_dbcn_write_is_forwarded_and_completed():
    vm, (vcpu,) = new_vm()
    vcpu.set_value(parse_name("sbi_ext DBCN"), 1)
    vm.write_memory(DATA, b"hello")
    load(vm, vcpu, sbi_call(DBCN, 0, 5, DATA, 0) + [A.addi(REG_A2, REG_A0, 100), EBREAK])
    exit_ = vcpu.run()
    assert isinstance(exit_, SbiExit)
    assert (exit_.extension_id, exit_.function_id) == (DBCN, 0)
    assert exit_.args[:3] == [5, DATA, 0]
    assert exit_.ret == [NOT_SUPPORTED, 0]
    num, base = exit_.args[0], exit_.args[1]
    assert vm.read_memory(base, num) == b"hello"
    exit_.ret[:] = [0, num]  # the VMM wrote every byte
    run_to_end(vcpu)
    assert vcpu.get_value(A0) == 0
    assert vcpu.get_value(A1) == 5
    assert vcpu.get_value(parse_name("core a2")) == 100  # resumed after the ecall


def test_legacy_console_putchar_is_forwarded():
    vm, (vcpu,) = new_vm()
    load(vm, vcpu, sbi_call(0x01, 0, ord("x")) + [EBREAK])
    exit_ = vcpu.run()
    assert isinstance(exit_, SbiExit) and exit_.extension_id == 1 and exit_.args[0] == ord("x")
    exit_.ret[0] = 0
    run_to_end(vcpu)
    assert vcpu.get_value(A0) == 0


def test_base_extension_identity_and_probe():
    vm, (vcpu,) = new_vm()
    program = []
    for fid, arg in ((0, 0), (1, 0), (3, 0x46574654), (3, DBCN), (3, 0x12345)):
        program += sbi_call(BASE, fid, arg) + [sd(REG_A1, 8, 0), A.addi(8, 8, 8)]
    load(vm, vcpu, li(8, DATA) + program + [EBREAK])
    run_to_end(vcpu)
    words = [int.from_bytes(vm.read_memory(DATA + 8 * i, 8), "little") for i in range(5)]
    assert words == [0x0300_0000, 3, 1, 0, 0]


def test_srst_shutdown_and_reboot_are_system_events():
    for reset_type, event in ((0, KVM_SYSTEM_EVENT_SHUTDOWN), (1, KVM_SYSTEM_EVENT_RESET)):
        vm, vcpus = new_vm(vcpus=2)
        vcpu = vcpus[0]
        load(vm, vcpu, sbi_call(SRST, 0, reset_type, 7) + [EBREAK])
        exit_ = vcpu.run()
        assert isinstance(exit_, SystemEventExit)
        assert (exit_.type, exit_.ndata, exit_.data) == (event, 1, [7])
        assert all(v.get_mp_state() == KVM_MP_STATE_STOPPED for v in vcpus)
        # a stopped vCPU sleeps in run(); it does not execute the guest
        assert isinstance(vcpu.run(idle_timeout=0.0), IntrExit)


def test_hsm_start_second_vcpu():
    vm, (boot, second) = new_vm(vcpus=2)
    assert second.get_mp_state() == KVM_MP_STATE_STOPPED
    entry = RAM_BASE + 0x1000
    load(vm, boot, sbi_call(HSM, 2, 1) + [A.addi(REG_A3, REG_A1, 0)]  # status -> a3
         + sbi_call(HSM, 0, 1, entry, 0x1234)
         + sbi_call(HSM, 0, 1, entry, 0) + [A.addi(REG_A2, REG_A0, 0)]  # again: a2
         + sbi_call(HSM, 2, 1) + [EBREAK])
    run_to_end(boot)
    assert boot.get_value(parse_name("core a3")) == 1  # STOPPED before the start
    assert boot.get_value(parse_name("core a2")) == (-6) & U64  # ALREADY_AVAILABLE
    assert boot.get_value(A1) == 0  # STARTED
    assert second.get_mp_state() == KVM_MP_STATE_RUNNABLE
    vm.write_memory(entry, A.words([A.addi(REG_A2, REG_A0, 0), EBREAK]))
    second.set_guest_debug(1)
    run_to_end(second)
    assert second.get_value(parse_name("core pc")) == entry + 4
    assert second.get_value(parse_name("core a2")) == 1  # a0 = hart id
    assert second.get_value(A1) == 0x1234  # a1 = opaque


def test_hsm_stop_powers_the_caller_off():
    vm, (vcpu,) = new_vm()
    load(vm, vcpu, sbi_call(HSM, 1) + [EBREAK])
    exit_ = vcpu.run(idle_timeout=0.0)
    assert isinstance(exit_, IntrExit) and exit_.why == "idle"
    assert vcpu.get_mp_state() == KVM_MP_STATE_STOPPED


def test_ipi_sets_the_target_software_interrupt():
    vm, (boot, second) = new_vm(vcpus=2)
    load(vm, boot, sbi_call(IPI, 0, 0b10, 0) + [A.addi(REG_A2, REG_A0, 0)]
         + sbi_call(IPI, 0, 0b100, 0) + [EBREAK])
    run_to_end(boot)
    assert boot.get_value(parse_name("core a2")) == 0
    assert boot.get_value(A0) == (-3) & U64  # vCPU 2 does not exist
    assert second.get_value(parse_name("csr sip")) & 0x2


def test_sbi_timer_wakes_a_waiting_guest():
    vm, (vcpu,) = new_vm()
    handler = RAM_BASE + 0x800
    vm.write_memory(handler, A.words([EBREAK]))
    program = (li(5, handler) + [A.csrrw(0, 0x105, 5)]  # stvec
               + li(5, 1 << 5) + [A.csrrs(0, 0x104, 5)]  # sie.STIE
               + li(6, 2) + [A.csrrs(0, 0x100, 6)]  # sstatus.SIE
               + [A.csrrs(REG_A3, 0xC01, 0)]  # time now
               + [A.addi(REG_A0, REG_A3, 1000)]
               + li(17, TIME) + li(16, 0) + [A.ECALL, WFI, A.j(0, 0)])
    load(vm, vcpu, program)
    run_to_end(vcpu)
    assert vcpu.get_value(parse_name("csr scause")) == (1 << 63) | 5  # timer interrupt
    assert vcpu.get_value(parse_name("timer time")) >= vcpu.get_value(parse_name("core a0"))


SUSP, STA = 0x53555350, 0x535441


def test_system_suspend_is_checked_then_forwarded_and_resumes():
    vm, (vcpu, other) = new_vm(vcpus=2)
    vcpu.set_value(parse_name("sbi_ext SUSP"), 1)
    resume = RAM_BASE + 0x1000
    vm.write_memory(resume, A.words([EBREAK]))
    s1, s2 = 9, 18
    load(vm, vcpu, sbi_call(SUSP, 0, 1, resume, 0) + [A.addi(s1, REG_A0, 0)]  # bad type
         + sbi_call(SUSP, 0, 0, 0x10, 0) + [A.addi(s2, REG_A0, 0)]  # not RAM
         + sbi_call(SUSP, 0, 0, resume, 0) + [EBREAK])  # another vCPU runs
    other.set_mp_state(KVM_MP_STATE_RUNNABLE)
    run_to_end(vcpu)
    assert vcpu.get_value(parse_name("core s1")) == (-3) & U64
    assert vcpu.get_value(parse_name("core s2")) == (-5) & U64
    assert vcpu.get_value(A0) == (-4) & U64  # DENIED
    other.set_mp_state(KVM_MP_STATE_STOPPED)
    load(vm, vcpu, sbi_call(SUSP, 0, 0, resume, 0x55) + [EBREAK], at=RAM_BASE + 0x2000)
    exit_ = vcpu.run()
    assert isinstance(exit_, SbiExit) and exit_.extension_id == SUSP
    exit_.ret[0] = 0  # the VMM suspended and woke the system
    run_to_end(vcpu)
    assert vcpu.get_value(parse_name("core pc")) == resume
    assert (vcpu.get_value(A0), vcpu.get_value(A1)) == (0, 0x55)


def test_steal_time_shared_memory():
    vm, (vcpu,) = new_vm()
    vm.write_memory(DATA, b"\xff" * 64)
    load(vm, vcpu, sbi_call(STA, 0, DATA + 8, 0, 0) + [A.addi(9, REG_A0, 0)]
         + sbi_call(STA, 0, DATA, 0, 0) + [EBREAK])
    run_to_end(vcpu)
    assert vcpu.get_value(parse_name("core s1")) == (-3) & U64  # not 64-byte aligned
    assert vcpu.get_value(A0) == 0
    assert vm.read_memory(DATA, 64) == bytes(64)
    assert vcpu.get_value(parse_name("sta shmem_lo")) == DATA


def test_unknown_extension_and_disabled_extension_are_not_supported():
    vm, (vcpu,) = new_vm()
    vcpu.set_value(parse_name("sbi_ext HSM"), 0)
    load(vm, vcpu, sbi_call(0x0A00_0000, 0) + [A.addi(REG_A2, REG_A0, 0)]
         + sbi_call(HSM, 2, 0) + [EBREAK])
    run_to_end(vcpu)
    assert vcpu.get_value(parse_name("core a2")) == NOT_SUPPORTED
    assert vcpu.get_value(A0) == NOT_SUPPORTED


def test_experimental_range_and_its_probe_are_forwarded():
    vm, (vcpu,) = new_vm()
    load(vm, vcpu, sbi_call(BASE, 3, 0x0800_0001) + sbi_call(0x0800_0001, 4, 9) + [EBREAK])
    exit_ = vcpu.run()
    assert isinstance(exit_, SbiExit) and (exit_.extension_id, exit_.function_id) == (BASE, 3)
    exit_.ret[:] = [0, 1]
    exit_ = vcpu.run()
    assert isinstance(exit_, SbiExit) and exit_.extension_id == 0x0800_0001
    assert exit_.args[0] == 9
    run_to_end(vcpu)
    assert vcpu.get_value(A0) == NOT_SUPPORTED  # preset answer of an ignored exit


def test_hsm_start_wakes_a_vcpu_sleeping_in_another_thread():
    vm, (boot, second) = new_vm(vcpus=2)
    entry = RAM_BASE + 0x1000
    vm.write_memory(entry, A.words([EBREAK]))
    second.set_guest_debug(1)
    results = []
    worker = threading.Thread(target=lambda: results.append(second.run(idle_timeout=5.0)))
    worker.start()
    time.sleep(0.05)  # the second vCPU is powered off: it sleeps in run()
    load(vm, boot, sbi_call(HSM, 0, 1, entry, 7) + [EBREAK])
    run_to_end(boot)
    worker.join(5)
    assert results and isinstance(results[0], DebugExit)
    assert second.get_value(parse_name("core pc")) == entry
    assert second.get_value(A1) == 7


def test_hsm_retentive_suspend_waits_like_wfi():
    vm, (vcpu,) = new_vm()
    load(vm, vcpu, li(5, 1 << 9) + [A.csrrs(0, 0x104, 5)]  # sie.SEIE, sstatus.SIE off
         + sbi_call(HSM, 3, 0, 0, 0) + [EBREAK])
    exit_ = vcpu.run(idle_timeout=0.0)
    assert isinstance(exit_, IntrExit) and exit_.why == "idle"
    vcpu.interrupt(0xFFFF_FFFF)
    run_to_end(vcpu)
    assert vcpu.get_value(A0) == 0


def _vm_with_vcpu_ids(profile, ids):
    vm = KvmSystem().create_vm(profile=profile)
    vm.set_user_memory_region(0, 0, RAM_BASE, RAM_SIZE)
    return vm, [vm.create_vcpu(i) for i in ids]


@pytest.mark.parametrize("profile,error,delivered", [
    ("linux-6.13", 0, True), ("linux-6.18", -3, False), ("latest", -3, False)])
def test_ipi_scan_stops_at_the_first_vcpu_past_xlen(profile, error, delivered):
    """Since 6.14 the IPI scan (in vCPU creation order) ends at the first vCPU
    whose bit is >= XLEN, so vCPU 1 created after vCPU 70 is not reached."""
    vm, (boot, _, one) = _vm_with_vcpu_ids(profile, [0, 70, 1])
    load(vm, boot, sbi_call(IPI, 0, 0b10, 0) + [EBREAK])
    run_to_end(boot)
    assert boot.get_value(A0) == error & U64
    assert bool(one.get_value(parse_name("csr sip")) & 0x2) == delivered


RFENCE = 0x52464E43


def _record_fences(vcpu):
    calls = []
    real = vcpu.hart.fence_vma

    def fence_vma(vaddr=None, asid=None):
        calls.append((vaddr, asid))
        real(vaddr, asid)

    vcpu.hart.fence_vma = fence_vma
    return calls


@pytest.mark.parametrize("fid, start, size, asid, expected", [
    # a range: each of its pages, nothing else (one page straddled on each end)
    (1, 0xFFFF_FFD8_0000_1FF8, 0x1010, 0, [(0xFFFF_FFD8_0000_1000, None),
                                            (0xFFFF_FFD8_0000_2000, None),
                                            (0xFFFF_FFD8_0000_3000, None)]),
    (2, 0x4000, 0x1000, 0x1_0007, [(0x4000, 7)]),     # ASID: its 16 bits
    (1, 0, 0, 0, [(None, None)]),                      # start = size = 0: everything
    (1, 0x4000, U64, 0, [(None, None)]),               # size all-ones: everything
    (2, 0x4000, 513 << 12, 5, [(None, 5)]),            # past PTRS_PER_PTE pages: the ASID whole
    (1, 0x4000, 0, 0, []),                             # an empty range flushes nothing
])
def test_remote_sfence_vma_flushes_what_it_names(fid, start, size, asid, expected):
    vm, (boot, second) = new_vm(vcpus=2)
    calls = _record_fences(second)
    load(vm, boot, sbi_call(RFENCE, fid, 0b10, 0, start, size, asid) + [EBREAK])
    run_to_end(boot)
    assert boot.get_value(A0) == 0
    second.get_value(A0)  # applies the queued requests, as an entry does
    assert calls == expected


def test_remote_sfence_queue_overflow_becomes_one_whole_flush():
    vm, (boot, second) = new_vm(vcpus=2)
    calls = _record_fences(second)
    code = []
    for n in range(65):  # KVM queues 64 ranged requests per vCPU
        code += sbi_call(RFENCE, 1, 0b10, 0, 0x10_0000 + (n << 12), 0x1000)
    load(vm, boot, code + [EBREAK])
    run_to_end(boot)
    second.get_value(A0)
    assert calls == [(None, None)]


def test_legacy_remote_sfence_vma_asid_takes_its_range():
    vm, (boot, second) = new_vm(vcpus=2)
    calls = _record_fences(second)
    load(vm, boot, li(REG_A2, DATA) + li(REG_A3, 0b10) + [sd(REG_A3, REG_A2)]
         + sbi_call(0x07, 0, DATA, 0x8000, 0x2000, 3) + [EBREAK])
    run_to_end(boot)
    second.get_value(A0)
    assert calls == [(0x8000, 3), (0x9000, 3)]
