"""ONE_REG over gRPC: values as little-endian bytes, errno -> status code
with the errno in the rich error details, GetRegList, typed FWFT."""

from __future__ import annotations

import errno
import os
import re

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from rvkvm.client import KvmError, parse_name
from rvkvm.client.exits import INTR_BUDGET, IntrExit
from rvkvm.client.kvm import KVM_CAP_RISCV_MP_STATE_RESET, KVM_MP_STATE_INIT_RECEIVED
from rvkvm.server.kvm import ENOTSUPP
from rvkvm.server.rpc.errors import ERRNO_TO_CODE
from rvkvm.v1 import kvm_pb2 as pb
from rvkvm.v1 import kvm_pb2_grpc as pb_grpc

from .guest import jump_self, load, new_vm

PROTO = os.path.join(os.path.dirname(__file__), "..", "..", "proto", "rvkvm", "v1", "kvm.proto")
PMLEN = 5  # FWFT POINTER_MASKING_PMLEN


def test_get_and_set_one_reg(kvm):
    vm, (vcpu,) = new_vm(kvm)
    vcpu.set_one_reg("core a0", (0x1122334455667788).to_bytes(8, "little"))
    assert vcpu.get_one_reg("core a0") == bytes.fromhex("8877665544332211")
    vcpu.set_reg(parse_name("csr sscratch"), 0xDEAD_BEEF)
    assert vcpu.get_reg("csr sscratch") == 0xDEAD_BEEF
    assert vcpu.get_reg("isa_ext SMNPM") == 1
    vm.destroy()


def test_status_carries_the_errno(channel, kvm):
    vm, (vcpu,) = new_vm(kvm)
    stub = pb_grpc.KvmStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.GetOneReg(pb.GetOneRegRequest(vcpu=vcpu.ref, id=parse_name("core pc") + 0x100))
    call = info.value
    assert call.code() == grpc.StatusCode.NOT_FOUND
    status = rpc_status.from_call(call)
    error_info, kvm_errno = error_details_pb2.ErrorInfo(), pb.KvmErrno()
    assert status.details[0].Unpack(error_info) and status.details[1].Unpack(kvm_errno)
    assert error_info.reason == "ENOENT" and error_info.domain == "rvkvm.v1"
    assert dict(error_info.metadata) == {"errno": str(errno.ENOENT), "name": "ENOENT"}
    assert (kvm_errno.errno, kvm_errno.name) == (errno.ENOENT, "ENOENT")
    vm.destroy()


@pytest.mark.parametrize("call, expected_errno, code", [
    # value of the wrong size for the id
    (lambda v: v.set_one_reg("core pc", b"\0" * 4), errno.EFAULT,
     grpc.StatusCode.INVALID_ARGUMENT),
    # a register class that does not exist
    (lambda v: v.get_one_reg(0x8030_0000_7F00_0000), errno.ENOENT, grpc.StatusCode.NOT_FOUND),
    # an ISA extension register holds 0 or 1
    (lambda v: v.set_reg("isa_ext ZBB", 2), errno.EINVAL, grpc.StatusCode.INVALID_ARGUMENT),
    # KVM_INTERRUPT is fine, but an MP state RISC-V does not have is not
    (lambda v: v.set_mp_state(3), errno.EINVAL, grpc.StatusCode.INVALID_ARGUMENT),
])
def test_errno_to_status(kvm, call, expected_errno, code):
    vm, (vcpu,) = new_vm(kvm)
    with pytest.raises(KvmError) as info:
        call(vcpu)
    assert (info.value.errno, info.value.code) == (expected_errno, code)
    vm.destroy()


def test_isa_ext_after_first_run_is_ebusy(kvm):
    vm, (vcpu,) = new_vm(kvm)
    load(vm, vcpu, [jump_self()])
    assert vcpu.run(budget=10) == IntrExit(INTR_BUDGET)
    with pytest.raises(KvmError) as info:
        vcpu.set_reg("isa_ext ZBB", 0)
    assert info.value.errno == errno.EBUSY
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
    vm.destroy()


def test_reg_list_with_names_and_e2big(kvm):
    vm, (vcpu,) = new_vm(kvm)
    named = vcpu.get_reg_names()
    ids = [reg for reg, _ in named]
    assert vcpu.get_reg_list() == ids
    assert named[0][1] == "config isa" and ("core pc" in dict(named).values())
    assert vcpu.get_reg_list(n=len(ids)) == ids
    with pytest.raises(KvmError) as info:
        vcpu.get_reg_list(n=len(ids) - 1)
    assert info.value.errno == errno.E2BIG and info.value.count == len(ids)
    assert info.value.code == grpc.StatusCode.OUT_OF_RANGE
    vm.destroy()


def test_fwft_typed_state_mirrors_onereg(kvm):
    vm, (vcpu,) = new_vm(kvm)
    state = vcpu.get_fwft(PMLEN)
    assert (state.name, state.enable, state.flags, state.value) == (
        "POINTER_MASKING_PMLEN", True, 0, 0)
    state = vcpu.set_fwft(PMLEN, value=7, flags=1)
    assert (state.value, state.flags) == (7, 1)
    assert vcpu.get_reg("fwft pointer_masking.value") == 7
    assert vcpu.get_reg("fwft pointer_masking.flags") == 1
    with pytest.raises(KvmError) as info:
        vcpu.get_fwft(1)  # LANDING_PAD: KVM keeps no ONE_REG state for it
    assert info.value.errno == errno.ENOENT
    vm.destroy()


def test_proto_documents_the_mapping():
    """The table in kvm.proto's header comment is ERRNO_TO_CODE."""
    text = open(PROTO).read()
    documented = {}
    for names, code in re.findall(r"^//   ([E][A-Z0-9, ]+?)\s{2,}([A-Z_]+)\s", text, re.M):
        for name in names.split(", "):
            documented[name.strip()] = code
    numbers = {name: ENOTSUPP if name == "ENOTSUPP" else getattr(errno, name)
               for name in documented}
    assert {numbers[n]: code for n, code in documented.items()} == {
        e: c.name for e, c in ERRNO_TO_CODE.items()}


def test_enable_cap_mp_state_reset(kvm):
    vm, (vcpu,) = new_vm(kvm)
    with pytest.raises(KvmError) as info:
        vcpu.set_mp_state(KVM_MP_STATE_INIT_RECEIVED)  # needs the capability
    assert info.value.errno == errno.EINVAL
    vm.enable_cap(KVM_CAP_RISCV_MP_STATE_RESET)
    vcpu.set_reg("core a0", 5)
    vcpu.set_mp_state(KVM_MP_STATE_INIT_RECEIVED)  # resets the vCPU
    assert vcpu.get_reg("core a0") == 0
    with pytest.raises(KvmError) as info:
        vm.enable_cap(1)
    assert info.value.errno == errno.EINVAL
    vm.destroy()
