"""What the comments of proto/rvkvm/v1/kvm.proto promise a client author,
checked against a real server: the worked ONE_REG ids, the errno of a value
of the wrong length, an MMIO load without a completion, Run after a
shutdown, the FWFT lock and ONE_REG, and the error detail type URLs."""

from __future__ import annotations

import errno
import os
import re

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from rvkvm.client import KvmError
from rvkvm.client.kvm import KVM_MP_STATE_RUNNABLE, KVM_MP_STATE_STOPPED
from rvkvm.uapi import onereg
from rvkvm.uapi.onereg import parse_name
from rvkvm.v1 import errors_pb2
from rvkvm.v1 import kvm_pb2 as pb
from rvkvm.v1 import kvm_pb2_grpc as pb_grpc

from .guest import EBREAK, load, mmio_loads, new_vm, sbi_call

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTO = os.path.join(ROOT, "proto", "rvkvm", "v1", "kvm.proto")
SBI_EXT_SRST = 0x53525354
FWFT_PMLEN = 5
SBI_FWFT_SET_FLAG_LOCK = 1


def proto_text() -> str:
    with open(PROTO, encoding="utf-8") as f:
        return f.read()


def worked_examples() -> dict:
    """``name -> id`` from the worked-example table of the header comment."""
    table = proto_text().split("// Worked examples", 1)[1].split("// GetRegList", 1)[0]
    found = {}
    for line in table.splitlines():
        m = re.match(r"//   ((?:core|config|isa_ext|sbi_ext|timer) [a-z0-9, A-Z]+?)\s+"
                     r"(0x[0-9a-f]{16})(?:, (0x[0-9a-f]{16}))?", line)
        if m is None:
            continue
        cls, _, regs = m.group(1).partition(" ")
        for reg, value in zip(regs.split(", "), (m.group(2), m.group(3))):
            found[f"{cls} {reg}"] = int(value, 16)
    return found


def test_worked_onereg_ids_are_the_servers():
    examples = worked_examples()
    assert set(examples) >= {"core pc", "core a0", "core a1", "core mode", "config isa",
                             "isa_ext SMNPM", "sbi_ext DBCN", "timer frequency"}
    for name, reg_id in examples.items():
        assert onereg.parse_name(name) == reg_id, name
        assert onereg.short_name(reg_id) == name


def test_core_mode_selects_the_privilege(kvm):
    vm, (vcpu,) = new_vm(kvm)
    assert vcpu.get_reg(0x8030000002000020) == 1  # a new vCPU is in S-mode
    vcpu.set_reg(0x8030000002000020, 0)
    assert vcpu.get_reg("core mode") == 0
    vm.destroy()


def test_a_value_of_the_wrong_length_is_efault_an_id_of_the_wrong_size_einval(kvm):
    vm, (vcpu,) = new_vm(kvm)
    pc = parse_name("core pc")
    pc_u32 = (pc & ~(0xF << 52)) | (2 << 52)  # KVM_REG_SIZE_U32
    cases = [
        (lambda: vcpu.set_one_reg(pc, b"\0" * 4), errno.EFAULT),  # short buffer
        (lambda: vcpu.set_one_reg(pc, b"\0" * 9), errno.EFAULT),  # long buffer
        (lambda: vcpu.set_one_reg(pc_u32, b"\0" * 4), errno.EINVAL),  # size in the id
        (lambda: vcpu.get_one_reg(pc_u32), errno.EINVAL),
        # the length is checked before the id is looked at
        (lambda: vcpu.set_one_reg(0x8030_0000_7F00_0000, b"\0"), errno.EFAULT),
        (lambda: vcpu.set_one_reg(0x8030_0000_7F00_0000, b"\0" * 8), errno.ENOENT),
    ]
    for call, expected in cases:
        with pytest.raises(KvmError) as info:
            call()
        assert info.value.errno == expected
    vm.destroy()


def test_mmio_load_without_a_completion_reads_zero(kvm, channel):
    vm, (vcpu,) = new_vm(kvm)
    load(vm, vcpu, mmio_loads())
    vcpu.set_reg("core a1", 0x1234)
    vcpu.set_reg("core a2", 0x5678)
    stub = pb_grpc.KvmStub(channel)
    first = stub.Run(pb.RunRequest(vcpu=vcpu.ref), timeout=30)
    assert first.WhichOneof("kind") == "mmio" and not first.mmio.is_write
    second = stub.Run(pb.RunRequest(vcpu=vcpu.ref), timeout=30)  # no completion
    assert second.WhichOneof("kind") == "mmio" and second.mmio.len == 4
    # a completion shorter than the access fills its low bytes (lw: sign-extended)
    third = stub.Run(pb.RunRequest(vcpu=vcpu.ref, completion=pb.Completion(
        mmio=pb.MmioCompletion(data=b"\xff\xff\xff\xff"))), timeout=30)
    assert third.WhichOneof("kind") == "debug"
    assert vcpu.get_reg("core a1") == 0
    assert vcpu.get_reg("core a2") == (1 << 64) - 1
    vm.destroy()


def test_run_after_a_shutdown(kvm):
    vm, (vcpu,) = new_vm(kvm)
    load(vm, vcpu, sbi_call(SBI_EXT_SRST, 0, 0, 0) + [EBREAK])
    first = vcpu.run()
    assert first.type == 1 and first.data == [0]  # SHUTDOWN, reason none
    ecall_pc = vcpu.get_reg("core pc")
    assert vcpu.get_mp_state() == KVM_MP_STATE_STOPPED
    # no guest instruction runs: an INTR exit once the idle timeout passes
    assert vcpu.run(idle_timeout=0.05).why == "idle"
    # without an idle timeout, only a kick (or the deadline) ends the Run
    vcpu.kick()
    assert vcpu.run().why == "kick"
    assert vcpu.get_reg("core pc") == ecall_pc
    # made runnable again, the vCPU resumes at the ecall: the same SRST call
    vcpu.set_mp_state(KVM_MP_STATE_RUNNABLE)
    again = vcpu.run()
    assert again.type == 1 and vcpu.get_reg("core pc") == ecall_pc
    vm.destroy()


def test_fwft_lock_does_not_block_onereg(kvm, channel):
    vm, (vcpu,) = new_vm(kvm)
    locked = vcpu.set_fwft(FWFT_PMLEN, enable=True, value=7, flags=SBI_FWFT_SET_FLAG_LOCK)
    assert (locked.enable, locked.value, locked.flags) == (True, 7, SBI_FWFT_SET_FLAG_LOCK)
    after = vcpu.set_fwft(FWFT_PMLEN, value=0)
    assert (after.value, after.flags) == (0, SBI_FWFT_SET_FLAG_LOCK)
    assert vcpu.set_fwft(FWFT_PMLEN, flags=0).flags == 0
    vm.destroy()


def test_error_details_type_urls(kvm, channel):
    vm, (vcpu,) = new_vm(kvm)
    stub = pb_grpc.KvmStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.SetOneReg(pb.SetOneRegRequest(vcpu=vcpu.ref, id=parse_name("core pc"),
                                           value=b"\0"))
    status = rpc_status.from_call(info.value)
    assert status is not None
    urls = [d.type_url for d in status.details]
    assert urls == ["type.googleapis.com/google.rpc.ErrorInfo",
                    "type.googleapis.com/rvkvm.v1.KvmErrno"]
    text = proto_text()
    for url in urls:
        assert url in text
    # errors.proto's RpcErrorDetails holds the decoded trailer
    details = errors_pb2.RpcErrorDetails(status=status)
    assert status.details[0].Unpack(details.error_info)
    assert status.details[1].Unpack(details.kvm_errno)
    assert details.kvm_errno.errno == errno.EFAULT
    assert isinstance(details.error_info, error_details_pb2.ErrorInfo)
    vm.destroy()
