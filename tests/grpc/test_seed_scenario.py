"""The seed scenario (DESIGN.md) end to end over gRPC, as a remote VMM sees
it: SMNPM/SSNPM ONE_REG rules, FWFT POINTER_MASKING_PMLEN answered by the
in-kernel SBI, tagged pointers really masked in the guest, EBUSY after the
first run, and FWFT state migrated to a fresh VM through ONE_REG."""

from __future__ import annotations

import errno

import grpc
import pytest

from rvkvm.client import Kvm, KvmError
from rvkvm.client.exits import DebugExit, MmioExit
from rvkvm.server.kvm import HostProfile
from rvkvm.server.rpc import ServerConfig
from tests.emulator import rvasm as A

from .conftest import ServerThread
from .guest import EBREAK, RAM_BASE, REG_A0, REG_A1, ld, li, load, new_vm, sbi_call

FWFT, SET, GET, PMLEN = 0x46574654, 0, 1, 5
S1, S2 = 9, 18
DATA = RAM_BASE + 0x8000
TAGGED = DATA | (0x5A << 57)  # tag in the top 7 bits
SECRET = 0x0123_4567_89AB_CDEF
SBI_ERR_NOT_SUPPORTED = -2


def signed(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


def set_pmlen_then_tagged_load(pmlen: int) -> list:
    return (sbi_call(FWFT, SET, PMLEN, pmlen, 0) + [A.addi(S1, REG_A0, 0)]
            + li(5, TAGGED) + [ld(REG_A1, 5, 0), EBREAK])


def test_smnpm_enabled_pmlen_set_masks_tagged_pointers(kvm: Kvm) -> None:
    vm, (vcpu,) = new_vm(kvm)
    vm.write_memory(DATA, SECRET.to_bytes(8, "little"))
    load(vm, vcpu, set_pmlen_then_tagged_load(7))
    assert isinstance(vcpu.run(budget=100_000), DebugExit)
    assert signed(vcpu.get_reg("core s1")) == 0  # SBI_SUCCESS
    assert vcpu.get_reg("core a1") == SECRET  # the tagged load hit the untagged address
    assert vcpu.get_reg("fwft pointer_masking.value") == 7


def test_smnpm_disabled_before_first_run_makes_pmlen_not_supported(kvm: Kvm) -> None:
    vm, (vcpu,) = new_vm(kvm)
    vcpu.set_reg("isa_ext SMNPM", 0)
    load(vm, vcpu, set_pmlen_then_tagged_load(7))
    exit_ = vcpu.run(budget=100_000)
    # Without masking the tagged address is outside every slot: an MMIO exit.
    assert isinstance(exit_, MmioExit) and exit_.phys_addr == TAGGED
    assert signed(vcpu.get_reg("core s1")) == SBI_ERR_NOT_SUPPORTED


def test_ssnpm_cannot_be_disabled_and_extensions_are_busy_after_first_run(kvm: Kvm) -> None:
    vm, (vcpu,) = new_vm(kvm)
    with pytest.raises(KvmError) as info:
        vcpu.set_reg("isa_ext SSNPM", 0)
    assert info.value.errno == errno.EINVAL and info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    load(vm, vcpu, [EBREAK])
    assert isinstance(vcpu.run(budget=1000), DebugExit)
    for name in ("isa_ext SMNPM", "sbi_ext FWFT"):
        with pytest.raises(KvmError) as info:
            vcpu.set_reg(name, 0)
        assert info.value.errno == errno.EBUSY
        assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION


def test_fwft_state_migrates_to_a_fresh_vm_through_one_reg(kvm: Kvm) -> None:
    src_vm, (src,) = new_vm(kvm)
    load(src_vm, src, sbi_call(FWFT, SET, PMLEN, 16, 0) + [EBREAK])
    assert isinstance(src.run(budget=100_000), DebugExit)
    names = [f"fwft pointer_masking.{f}" for f in ("enable", "flags", "value")]
    state = {n: src.get_reg(n) for n in names}
    assert state["fwft pointer_masking.value"] == 16

    dst_vm, (dst,) = new_vm(kvm)
    for n, v in state.items():
        dst.set_reg(n, v)
    dst_vm.write_memory(DATA, SECRET.to_bytes(8, "little"))
    tagged16 = DATA | (0xBEEF << 48)
    load(dst_vm, dst, li(5, tagged16) + [ld(REG_A1, 5, 0), EBREAK])
    assert isinstance(dst.run(budget=100_000), DebugExit)
    assert dst.get_reg("core a1") == SECRET  # resumed with the same masking


def test_host_without_ssnpm_hides_both_registers() -> None:
    server = ServerThread(ServerConfig(host=HostProfile.default().without("ssnpm"))).start()
    try:
        with grpc.insecure_channel(server.address) as channel:
            kvm = Kvm(channel, timeout=30)
            vm, (vcpu,) = new_vm(kvm)
            for name in ("isa_ext SMNPM", "isa_ext SSNPM"):
                with pytest.raises(KvmError) as info:
                    vcpu.get_reg(name)
                assert info.value.errno == errno.ENOENT
                assert info.value.code == grpc.StatusCode.NOT_FOUND
            load(vm, vcpu, set_pmlen_then_tagged_load(7))
            assert isinstance(vcpu.run(budget=100_000), MmioExit)
            assert signed(vcpu.get_reg("core s1")) == SBI_ERR_NOT_SUPPORTED
    finally:
        server.stop()
