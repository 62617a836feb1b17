"""SBI-initiated and userspace vCPU resets per kernel ABI profile
(kvm-riscv-uapi.md 11.5, kvm-riscv-sbi.md 3.6/3.10/7.6)."""

from __future__ import annotations

import errno
import threading
import time

import pytest

from rvkvm.server.kvm import parse_name
from rvkvm.server.kvm.errors import KvmError
from rvkvm.server.kvm.exits import SbiExit
from rvkvm.server.kvm.vcpu import KVM_MP_STATE_INIT_RECEIVED, KVM_MP_STATE_RUNNABLE
from rvkvm.server.kvm.vm import KVM_CAP_RISCV_MP_STATE_RESET
from tests.emulator import rvasm as A
from tests.server.kvm_runtime_guest import (
    A0,
    A1,
    EBREAK,
    RAM_BASE,
    WFI,
    load,
    new_vm,
    run_to_end,
    sbi_call,
)

HSM, SUSP = 0x48534D, 0x53555350
S1 = parse_name("core s1")
PC = parse_name("core pc")
WITH_CAP = ["linux-6.18", "latest"]


def _errno(fn, *args) -> int:
    with pytest.raises(KvmError) as info:
        fn(*args)
    return info.value.errno


@pytest.mark.parametrize("profile", WITH_CAP)
def test_hsm_start_is_a_full_reset_with_mp_state_reset(profile):
    vm, (boot, second) = new_vm(profile, vcpus=2)
    vm.enable_cap(KVM_CAP_RISCV_MP_STATE_RESET)
    entry = RAM_BASE + 0x1000
    vm.write_memory(entry, A.words([EBREAK]))
    second.set_value(S1, 0x77)  # state the reset must clear
    load(vm, boot, sbi_call(HSM, 0, 1, entry, 0x1234) + [EBREAK])
    run_to_end(boot)
    second.set_guest_debug(1)
    run_to_end(second)
    assert second.get_value(PC) == entry
    assert (second.get_value(A0), second.get_value(A1)) == (1, 0x1234)
    assert second.get_value(S1) == 0


@pytest.mark.parametrize("profile", WITH_CAP)
def test_system_suspend_resumes_through_a_full_reset_with_mp_state_reset(profile):
    vm, (vcpu,) = new_vm(profile)
    vm.enable_cap(KVM_CAP_RISCV_MP_STATE_RESET)
    vcpu.set_value(parse_name("sbi_ext SUSP"), 1)
    resume = RAM_BASE + 0x1000
    vm.write_memory(resume, A.words([EBREAK]))
    load(vm, vcpu, [A.addi(9, 0, 0x55)] + sbi_call(SUSP, 0, 0, resume, 0x66) + [EBREAK])
    exit_ = vcpu.run()
    assert isinstance(exit_, SbiExit) and exit_.extension_id == SUSP
    exit_.ret[0] = 0  # the VMM suspended and woke the system
    run_to_end(vcpu)
    assert vcpu.get_value(PC) == resume
    assert (vcpu.get_value(A0), vcpu.get_value(A1)) == (0, 0x66)
    assert vcpu.get_value(S1) == 0  # s1 was 0x55 before the suspend


def test_mp_state_reset_cap_exists_since_6_16():
    vm, (vcpu,) = new_vm("linux-6.13")
    assert _errno(vm.enable_cap, KVM_CAP_RISCV_MP_STATE_RESET) == errno.EINVAL
    assert _errno(vcpu.set_mp_state, KVM_MP_STATE_INIT_RECEIVED) == errno.EINVAL
    vm, (vcpu,) = new_vm("linux-6.18")
    vm.enable_cap(KVM_CAP_RISCV_MP_STATE_RESET)
    vcpu.set_value(S1, 5)
    vcpu.set_mp_state(KVM_MP_STATE_INIT_RECEIVED)
    assert vcpu.get_value(S1) == 0


@pytest.mark.parametrize("profile,expected", [("linux-6.13", 7), ("linux-6.18", 0), ("latest", 0)])
def test_scounteren_after_a_reset(profile, expected):
    # the reset context set scounteren = CY|TM|IR before 6.16
    _, (vcpu,) = new_vm(profile)
    assert vcpu.get_value(parse_name("csr scounteren")) == expected


@pytest.mark.parametrize("profile", WITH_CAP)
@pytest.mark.parametrize("fwft_enabled,expected", [(True, (0, 0)), (False, (7, 1))])
def test_fwft_reset_hook_runs_only_while_fwft_is_enabled(profile, fwft_enabled, expected):
    vm, (vcpu,) = new_vm(profile)
    vm.enable_cap(KVM_CAP_RISCV_MP_STATE_RESET)
    vcpu.set_value(parse_name("fwft pointer_masking.value"), 7)
    vcpu.set_value(parse_name("fwft misaligned_deleg.value"), 1)
    fwft = parse_name("sbi_ext FWFT")
    if not fwft_enabled:
        vcpu.set_value(fwft, 0)
    vcpu.set_mp_state(KVM_MP_STATE_INIT_RECEIVED)
    vcpu.set_value(fwft, 1)  # visible again (before the first run)
    assert (vcpu.get_value(parse_name("fwft pointer_masking.value")),
            vcpu.get_value(parse_name("fwft misaligned_deleg.value"))) == expected


def test_sta_reset_hook_runs_unconditionally_before_6_16():
    vm, (boot, second) = new_vm("linux-6.13", vcpus=2)
    second.set_value(parse_name("sbi_ext STA"), 0)
    second.set_value(parse_name("sta shmem_lo"), RAM_BASE + 0x2000)  # no enabled check in 6.13
    entry = RAM_BASE + 0x1000
    vm.write_memory(entry, A.words([EBREAK]))
    load(vm, boot, sbi_call(HSM, 0, 1, entry, 0) + [EBREAK])
    run_to_end(boot)
    second.set_guest_debug(1)
    run_to_end(second)  # the HSM reset is applied at entry
    assert second.get_value(parse_name("sta shmem_lo")) == (1 << 64) - 1


@pytest.mark.parametrize("profile,expected", [("linux-6.13", 0), ("linux-6.18", 4), ("latest", 4)])
def test_hsm_status_of_a_blocked_target(profile, expected):
    """SUSPENDED (4) for a vCPU blocked in KVM_RUN since 6.14; before, KVM
    tested the caller's blocking flag and answered STARTED (0)."""
    vm, (boot, second) = new_vm(profile, vcpus=2)
    second.set_mp_state(KVM_MP_STATE_RUNNABLE)
    load(vm, second, [WFI, A.j(0, -4)], at=RAM_BASE + 0x1000)
    results = []
    worker = threading.Thread(target=lambda: results.append(second.run(idle_timeout=5.0)))
    worker.start()
    for _ in range(500):  # wait (bounded) until the second vCPU sleeps in WFI
        if second.idle:
            break
        time.sleep(0.01)
    assert second.idle
    load(vm, boot, sbi_call(HSM, 2, 1) + [EBREAK])
    run_to_end(boot)
    second.kick()
    worker.join(5)
    assert not worker.is_alive()
    assert (boot.get_value(A0), boot.get_value(A1)) == (0, expected)



def test_interrupts_raised_before_an_hsm_start_are_cleared_by_its_reset():
    """An IPI (and the external line) sent to a STOPPED vCPU is pending until
    HSM hart_start's reset clears irqs_pending (vcpu.c kvm_riscv_reset_vcpu)."""
    vm, (boot, second) = new_vm(vcpus=2)
    entry = RAM_BASE + 0x1000
    vm.write_memory(entry, A.words([A.csrrs(12, 0x144, 0), EBREAK]))  # a2 = sip
    second.interrupt(0xFFFF_FFFF)
    load(vm, boot, sbi_call(0x735049, 0, 0b10, 0) + sbi_call(HSM, 0, 1, entry, 0) + [EBREAK])
    run_to_end(boot)
    second.set_guest_debug(1)
    run_to_end(second)
    assert second.get_value(parse_name("core a2")) & 0x222 == 0
    second.interrupt(0xFFFF_FFFF)  # raised after the reset: delivered
    load(vm, second, [A.csrrs(12, 0x144, 0), EBREAK], at=entry)
    run_to_end(second)
    assert second.get_value(parse_name("core a2")) & 0x200


@pytest.mark.parametrize("profile", WITH_CAP)
def test_an_ipi_queued_before_a_userspace_reset_is_lost(profile):
    vm, (boot, second) = new_vm(profile, vcpus=2)
    vm.enable_cap(KVM_CAP_RISCV_MP_STATE_RESET)
    load(vm, boot, sbi_call(0x735049, 0, 0b10, 0) + [EBREAK])
    run_to_end(boot)
    second.set_mp_state(KVM_MP_STATE_INIT_RECEIVED)
    assert second.get_value(parse_name("csr sip")) & 0x2 == 0
