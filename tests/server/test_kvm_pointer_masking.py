"""The seed problem: Smnpm/Ssnpm through ONE_REG and FWFT POINTER_MASKING_PMLEN.

DESIGN.md "The seed problem"; kvm-riscv-uapi.md section 8 (Smnpm/Ssnpm
detail), kvm-riscv-sbi.md sections 7.4 and 7.7.
"""

from __future__ import annotations

import errno

import pytest

from rvkvm.server.kvm import HostProfile, KvmError, make_id, parse_name
from rvkvm.uapi.onereg import RegType
from tests.server.kvm_helpers import new_vcpu

SMNPM = parse_name("isa_ext SMNPM")
SSNPM = parse_name("isa_ext SSNPM")
PMLEN_REGS = [make_id(RegType.SBI_STATE, i, 1) for i in (3, 4, 5)]
PMLEN_VALUE = PMLEN_REGS[2]
ALL_KERNELS = ("linux-6.13", "linux-6.18", "latest")


def errno_of(fn, *args):
    with pytest.raises(KvmError) as info:
        fn(*args)
    return info.value.errno


@pytest.mark.parametrize("kernel", ALL_KERNELS)
def test_guest_smnpm_is_backed_by_host_ssnpm(kernel):
    # Host Smnpm (M-mode masking for HS) is irrelevant; host Ssnpm decides.
    vcpu = new_vcpu(kernel, HostProfile.default().without("smnpm"))
    assert vcpu.get_value(SMNPM) == 1
    vcpu = new_vcpu(kernel, HostProfile.default().without("ssnpm"))
    for reg in (SMNPM, SSNPM):
        assert errno_of(vcpu.get_value, reg) == errno.ENOENT
        assert reg not in vcpu.get_reg_list()


@pytest.mark.parametrize("kernel", ALL_KERNELS)
def test_ssnpm_cannot_be_disabled(kernel):
    vcpu = new_vcpu(kernel)
    assert errno_of(vcpu.set_value, SSNPM, 0) == errno.EINVAL
    assert vcpu.get_value(SSNPM) == 1


@pytest.mark.parametrize("kernel,may_disable", [
    ("linux-6.13", False), ("linux-6.18", True), ("latest", True),
])
def test_smnpm_disable_per_kernel(kernel, may_disable):
    vcpu = new_vcpu(kernel)
    if may_disable:
        vcpu.set_value(SMNPM, 0)
        assert vcpu.get_value(SMNPM) == 0
        assert vcpu.get_value(SSNPM) == 1  # distinct guest bits (Jan 2025 fix)
        assert SMNPM in vcpu.get_reg_list()  # disabled, still listed
        vcpu.set_value(SMNPM, 1)
    else:
        assert errno_of(vcpu.set_value, SMNPM, 0) == errno.EINVAL
    vcpu.config.mark_ran()
    assert errno_of(vcpu.set_value, SMNPM, 0) == errno.EBUSY


def test_linux_6_13_has_no_fwft():
    vcpu = new_vcpu("linux-6.13")
    assert errno_of(vcpu.get_value, parse_name("sbi_ext FWFT")) == errno.ENOENT
    assert errno_of(vcpu.get_value, PMLEN_VALUE) == errno.EINVAL
    assert not set(PMLEN_REGS) & set(vcpu.get_reg_list())


def test_latest_disabling_smnpm_hides_pmlen():
    vcpu = new_vcpu("latest")
    assert all(r in vcpu.get_reg_list() for r in PMLEN_REGS)
    vcpu.set_value(SMNPM, 0)
    assert not set(PMLEN_REGS) & set(vcpu.get_reg_list())
    for reg in PMLEN_REGS:
        assert errno_of(vcpu.get_value, reg) == errno.ENOENT
    vcpu.set_value(SMNPM, 1)
    assert all(r in vcpu.get_reg_list() for r in PMLEN_REGS)


def test_linux_6_18_pmlen_support_is_fixed_at_vcpu_creation():
    vcpu = new_vcpu("linux-6.18")
    vcpu.set_value(SMNPM, 0)
    assert all(r in vcpu.get_reg_list() for r in PMLEN_REGS)
    vcpu.set_value(PMLEN_VALUE, 7)
    assert vcpu.get_value(PMLEN_VALUE) == 7


@pytest.mark.parametrize("kernel", ("linux-6.18", "latest"))
def test_no_pmlen_without_host_ssnpm(kernel):
    vcpu = new_vcpu(kernel, HostProfile.default().without("ssnpm"))
    assert not set(PMLEN_REGS) & set(vcpu.get_reg_list())
    assert errno_of(vcpu.get_value, PMLEN_VALUE) == errno.ENOENT


@pytest.mark.parametrize("kernel", ("linux-6.18", "latest"))
def test_no_pmlen_when_henvcfg_accepts_no_pmlen(kernel):
    vcpu = new_vcpu(kernel, HostProfile.default().without("pmlen7", "pmlen16"))
    assert vcpu.get_value(SMNPM) == 1
    assert errno_of(vcpu.get_value, PMLEN_VALUE) == errno.ENOENT


def test_migration_to_a_host_without_pointer_masking():
    """A source VMM that disables Smnpm produces SBI state the destination accepts."""
    destination = new_vcpu("latest", HostProfile.default().without("ssnpm"))
    dest_regs = set(destination.get_reg_list())

    def sbi_state(vcpu):
        return {r for r in vcpu.get_reg_list() if (r >> 24) & 0xFF == RegType.SBI_STATE}

    source = new_vcpu("latest")
    assert not sbi_state(source) <= dest_regs  # PMLEN state has nowhere to go
    source.set_value(SMNPM, 0)
    assert sbi_state(source) <= dest_regs
    for reg in sbi_state(source):
        destination.set_one_reg(reg, source.get_one_reg(reg))
