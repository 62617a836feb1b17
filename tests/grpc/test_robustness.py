"""Bad input never crashes the server: unknown or destroyed handles, wrong
sizes, nonsense values; the server keeps serving and stays healthy."""

from __future__ import annotations

import errno
import threading

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from rvkvm.client import KvmError
from rvkvm.v1 import kvm_pb2 as pb
from rvkvm.v1 import kvm_pb2_grpc as pb_grpc

from .guest import jump_self, load, new_vm


def _fails(call, expected_errno, code=None):
    with pytest.raises(KvmError) as info:
        call()
    assert info.value.errno == expected_errno, info.value
    if code is not None:
        assert info.value.code == code
    return info.value


def test_unknown_vm_id(kvm):
    vm = kvm.vm("vm-does-not-exist")
    _fails(lambda: vm.read_memory(0, 1), errno.EBADF, grpc.StatusCode.NOT_FOUND)
    _fails(lambda: vm.create_vcpu(0), errno.EBADF)
    _fails(lambda: vm.vcpu(0).get_reg("core pc"), errno.EBADF)
    _fails(vm.destroy, errno.EBADF)
    _fails(lambda: vm.batch_one_reg([(0, "core pc", None)]), errno.EBADF)


def test_unknown_vcpu_and_duplicate_vcpu(kvm):
    vm, (vcpu,) = new_vm(kvm)
    _fails(lambda: vm.vcpu(3).run(), errno.EBADF, grpc.StatusCode.NOT_FOUND)
    _fails(lambda: vm.create_vcpu(0), errno.EEXIST, grpc.StatusCode.ALREADY_EXISTS)
    _fails(lambda: vm.create_vcpu(1 << 20), errno.EINVAL)
    vm.destroy()


def test_unknown_abi_profile(kvm):
    _fails(lambda: kvm.create_vm("linux-2.6"), errno.EINVAL, grpc.StatusCode.INVALID_ARGUMENT)


def test_destroyed_vm(kvm):
    vm, (vcpu,) = new_vm(kvm)
    vm.destroy()
    _fails(lambda: vcpu.get_reg("core pc"), errno.EBADF)
    _fails(lambda: vcpu.run(), errno.EBADF)
    _fails(lambda: vm.write_memory(0x8000_0000, b"x"), errno.EBADF)


def test_destroying_a_vm_ends_its_running_vcpu(kvm):
    vm, (vcpu,) = new_vm(kvm)
    load(vm, vcpu, [jump_self()])
    timer = threading.Timer(0.2, vm.destroy)
    timer.start()
    with pytest.raises(KvmError) as info:
        while True:
            vcpu.run()  # a kick (INTR) or EBADF once the VM is gone
    assert info.value.errno == errno.EBADF
    # the Run can fail before DestroyVm's own reply is back: wait for it, so
    # that it does not outlive this test's channel
    timer.join()


def test_malformed_requests(channel, kvm):
    stub = pb_grpc.KvmStub(channel)
    vm, (vcpu,) = new_vm(kvm)
    bad = [
        lambda: stub.SetOneReg(pb.SetOneRegRequest(vcpu=vcpu.ref, id=(1 << 64) - 1, value=b"")),
        lambda: stub.SetOneReg(pb.SetOneRegRequest(vcpu=vcpu.ref, id=0, value=b"x" * 10_000)),
        lambda: stub.Run(pb.RunRequest(vcpu=vcpu.ref, completion=pb.Completion(
            mmio=pb.MmioCompletion(data=b"x" * 100)))),
        lambda: stub.SetUserMemoryRegion(pb.SetUserMemoryRegionRequest(
            vm_id=vm.id, slot=0xFFFF_FFFF, guest_phys_addr=(1 << 64) - 4096,
            memory_size=1 << 63)),
        lambda: stub.ReadMemory(pb.ReadMemoryRequest(vm_id=vm.id, gpa=(1 << 64) - 1, size=2)),
        lambda: stub.GetDirtyLog(pb.GetDirtyLogRequest(vm_id=vm.id, slot=0xFFFF_FFFF)),
        lambda: stub.GetFwft(pb.GetFwftRequest(vcpu=vcpu.ref, feature_id=0xFFFF_FFFF)),
        lambda: stub.SetMpState(pb.SetMpStateRequest(vcpu=vcpu.ref, mp_state=0xFFFF_FFFF)),
        lambda: stub.RunMany(pb.RunManyRequest(vm_id=vm.id, runs=[
            pb.RunRequest(vcpu=vcpu.ref), pb.RunRequest(vcpu=vcpu.ref)])),
        lambda: stub.CheckExtension(pb.CheckExtensionRequest(cap=0xFFFF_FFFF, vm_id="nope")),
    ]
    for call in bad:
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL,
                                          grpc.StatusCode.UNAVAILABLE), info.value
    assert vcpu.get_reg("core pc") == 0  # the VM is still fine
    vm.destroy()


def test_health_and_reflection(channel):
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "rvkvm.v1.Kvm"):
        response = health.Check(health_pb2.HealthCheckRequest(service=service))
        assert response.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert "rvkvm.v1.Kvm" in names
