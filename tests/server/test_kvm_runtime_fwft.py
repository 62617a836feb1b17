"""SBI FWFT with real effect on the guest: POINTER_MASKING_PMLEN masks the
guest's S-mode data addresses, MISALIGNED_EXC_DELEG moves hedeleg bits, the
LOCK flag is honoured, and FWFT state migrates through ONE_REG
(kvm-riscv-sbi.md section 7, DESIGN.md "The seed problem")."""

from __future__ import annotations

import pytest

from rvkvm.server.kvm import HostProfile, parse_name
from rvkvm.server.kvm.exits import DebugExit, MmioExit
from tests.emulator import rvasm as A
from tests.server.kvm_runtime_guest import (
    A1,
    DATA,
    EBREAK,
    PC,
    RAM_BASE,
    REG_A0,
    REG_A1,
    T0,
    ld,
    li,
    load,
    new_vm,
    run_to_end,
    sbi_call,
)

U64 = (1 << 64) - 1
FWFT = 0x46574654
SET, GET = 0, 1
MISALIGNED_EXC_DELEG, LANDING_PAD, PMLEN = 0, 1, 5
LOCK = 1
S1, S2, S3 = 9, 18, 19
TAGGED = DATA | (0x5A << 57)  # tag in the top 7 bits
SECRET = 0x0123_4567_89AB_CDEF
SMNPM = parse_name("isa_ext SMNPM")
PMLEN_REGS = [parse_name(f"fwft pointer_masking.{f}") for f in ("enable", "flags", "value")]


def sbi_err(value: int) -> int:
    return value - (1 << 64) if value >> 63 else value


def tagged_load() -> list:
    return li(T0, TAGGED) + [ld(REG_A1, T0, 0)]


def set_pmlen_then_load(pmlen: int) -> list:
    return (sbi_call(FWFT, SET, PMLEN, pmlen, 0) + [A.addi(S1, REG_A0, 0)]
            + sbi_call(FWFT, GET, PMLEN) + [A.addi(S2, REG_A1, 0)]
            + tagged_load() + [EBREAK])


def reg(vcpu, name: str) -> int:
    return vcpu.get_value(parse_name(name))


@pytest.mark.parametrize("pmlen", [7, 16])
def test_pmlen_set_masks_the_guest_s_mode_loads(pmlen):
    vm, (vcpu,) = new_vm()
    vm.write_memory(DATA, SECRET.to_bytes(8, "little"))
    load(vm, vcpu, set_pmlen_then_load(pmlen))
    run_to_end(vcpu)
    assert reg(vcpu, "core s1") == 0
    assert reg(vcpu, "core s2") == pmlen
    assert vcpu.get_value(A1) == SECRET
    assert vcpu.get_value(PMLEN_REGS[2]) == pmlen


def test_without_pmlen_the_tagged_address_is_elsewhere():
    vm, (vcpu,) = new_vm()
    load(vm, vcpu, tagged_load() + [EBREAK])
    exit_ = vcpu.run()
    assert isinstance(exit_, MmioExit) and exit_.phys_addr == TAGGED


def test_pmlen_not_supported_when_smnpm_disabled_before_the_first_run():
    vm, (vcpu,) = new_vm("latest")
    vcpu.set_value(SMNPM, 0)
    load(vm, vcpu, sbi_call(FWFT, SET, PMLEN, 7, 0) + [A.addi(S1, REG_A0, 0)]
         + sbi_call(FWFT, GET, PMLEN) + [A.addi(S2, REG_A0, 0)] + tagged_load() + [EBREAK])
    exit_ = vcpu.run()
    assert isinstance(exit_, MmioExit)  # the load was not masked
    assert sbi_err(reg(vcpu, "core s1")) == -2
    assert sbi_err(reg(vcpu, "core s2")) == -2


def test_linux_6_18_keeps_pmlen_after_smnpm_is_disabled():
    # 6.18 fixed FWFT support at vCPU creation (kvm-riscv-sbi.md 7.4)
    vm, (vcpu,) = new_vm("linux-6.18")
    vcpu.set_value(SMNPM, 0)
    vm.write_memory(DATA, SECRET.to_bytes(8, "little"))
    load(vm, vcpu, set_pmlen_then_load(7))
    run_to_end(vcpu)
    assert reg(vcpu, "core s1") == 0 and vcpu.get_value(A1) == SECRET


def test_pmlen_not_supported_on_a_host_without_ssnpm():
    vm, (vcpu,) = new_vm(host=HostProfile.default().without("ssnpm"))
    load(vm, vcpu, sbi_call(FWFT, SET, PMLEN, 7, 0) + [EBREAK])
    run_to_end(vcpu)
    assert sbi_err(reg(vcpu, "core a0")) == -2


def test_hidden_by_the_vmm_is_not_supported():
    vm, (vcpu,) = new_vm()
    vcpu.set_value(PMLEN_REGS[0], 0)
    load(vm, vcpu, sbi_call(FWFT, SET, PMLEN, 7, 0) + [EBREAK])
    run_to_end(vcpu)
    assert sbi_err(reg(vcpu, "core a0")) == -2


def test_error_precedence_and_lock():
    vm, (vcpu,) = new_vm()
    program = []
    calls = [
        (SET, 0x100, 0, 0),  # undefined feature: DENIED
        (SET, LANDING_PAD, 1, 0),  # defined, not implemented: NOT_SUPPORTED
        (SET, PMLEN, 7, 2),  # reserved flag bit: INVALID_PARAM
        (SET, PMLEN, 8, 0),  # no PMLEN 8 (exact values only): INVALID_PARAM
        (SET, PMLEN, 16, LOCK),  # ok, locked
        (SET, PMLEN, 16, 0),  # even the same value: DENIED_LOCKED
        (GET, PMLEN, 0, 0),
        (7, PMLEN, 0, 0),  # unknown function
    ]
    for fid, feature, value, flags in calls:
        program += sbi_call(FWFT, fid, feature, value, flags)
        program += [A.s(0x23, 3, 8, REG_A0, 0), A.s(0x23, 3, 8, REG_A1, 8), A.addi(8, 8, 16)]
    load(vm, vcpu, li(8, DATA) + program + [EBREAK])
    run_to_end(vcpu)
    raw = vm.read_memory(DATA, 16 * len(calls))
    got = [(sbi_err(int.from_bytes(raw[i:i + 8], "little")),
            int.from_bytes(raw[i + 8:i + 16], "little")) for i in range(0, len(raw), 16)]
    errors = [e for e, _ in got]
    assert errors == [-4, -2, -3, -3, 0, -14, 0, -2]
    assert got[6][1] == 16
    assert vcpu.get_value(PMLEN_REGS[1]) == LOCK
    vcpu.set_value(PMLEN_REGS[2], 0)  # ONE_REG ignores the lock


def test_misaligned_delegation():
    vm, (vcpu,) = new_vm()
    handler = RAM_BASE + 0x800
    vm.write_memory(handler, A.words([EBREAK]))
    load(vm, vcpu, li(5, handler) + [A.csrrw(0, 0x105, 5)]
         + sbi_call(FWFT, SET, MISALIGNED_EXC_DELEG, 1, 0) + [A.addi(S1, REG_A0, 0)]
         + sbi_call(FWFT, GET, MISALIGNED_EXC_DELEG) + [A.addi(S2, REG_A1, 0)]
         + li(T0, DATA + 1) + [ld(REG_A1, T0, 0), EBREAK])
    vcpu.set_guest_debug(1)
    exit_ = vcpu.run()
    assert isinstance(exit_, DebugExit)
    assert (reg(vcpu, "core s1"), reg(vcpu, "core s2")) == (0, 1)
    assert vcpu.hart.medeleg & 0x50 == 0x50
    assert vcpu.get_value(PC) == handler
    assert (reg(vcpu, "csr scause"), reg(vcpu, "csr stval")) == (4, DATA + 1)
    assert vcpu.get_value(parse_name("fwft misaligned_deleg.value")) == 1


def test_fwft_state_migrates_through_one_reg():
    """Source guest turns on PMLEN 16; a VMM copies the vCPU (core, CSRs,
    FWFT state) to a fresh VM; the destination guest's tagged load still
    hits the untagged address."""
    src_vm, (src,) = new_vm()
    load(src_vm, src, sbi_call(FWFT, SET, PMLEN, 16, LOCK) + [EBREAK])
    run_to_end(src)
    dst_vm, (dst,) = new_vm()
    for reg_id in src.get_reg_list():
        kind = (reg_id >> 24) & 0xFF
        if kind in (2, 3, 10):  # CORE, CSR, SBI_STATE
            dst.set_one_reg(reg_id, src.get_one_reg(reg_id))
    assert dst.get_value(PMLEN_REGS[2]) == 16
    assert dst.get_value(PMLEN_REGS[1]) == LOCK
    dst_vm.write_memory(DATA, SECRET.to_bytes(8, "little"))
    pc = dst.get_value(PC)
    dst_vm.write_memory(pc, A.words(tagged_load() + [EBREAK]))
    dst.set_guest_debug(1)
    run_to_end(dst)
    assert dst.get_value(A1) == SECRET
