"""The service under hostile callers: exits that arrive exactly once under
short deadlines and disconnects, completions for the wrong exit, bounded
requests, malformed request bytes and over-long ids."""

from __future__ import annotations

import errno
import time

import grpc
import pytest
from grpc_status import rpc_status

from bench.service import echo_runs, echo_vm
from rvkvm.client import Kvm, KvmError
from rvkvm.client import exits as X
from rvkvm.server.rpc import ServerConfig
from rvkvm.server.rpc.limits import RequestLimits
from rvkvm.v1 import kvm_pb2 as pb
from rvkvm.v1 import kvm_pb2_grpc as pb_grpc

from .conftest import ServerThread
from .guest import RAM_BASE, new_vm


def _kvm_errno(err: grpc.RpcError) -> pb.KvmErrno:
    status = rpc_status.from_call(err)
    assert status is not None, err
    for detail in status.details:
        if detail.Is(pb.KvmErrno.DESCRIPTOR):
            msg = pb.KvmErrno()
            detail.Unpack(msg)
            return msg
    raise AssertionError(f"no KvmErrno detail in {err}")


# -- exactly-once exits ----------------------------------------------------------


def test_the_exits_of_1000_runs_with_short_deadlines_arrive_once_in_order(kvm):
    # each load is answered with a new number and the store after it must
    # carry that number back: a lost, repeated or misapplied exit shows
    # a million-instruction spin before each exit (a few ms): enough that the
    # 0.5-4 ms deadlines really expire on a fast, quiet machine too (with 20,000
    # the Runs finished inside grpc's deadline slack and none timed out)
    stats = echo_runs(kvm, 1000, seed=11, spin=1_000_000)
    assert stats["errors"] == 0 and stats["seq_gaps"] == 0 and stats["wrong_echo"] == 0, stats
    # the scenario happened: Runs timed out and Runs returned
    assert stats["deadline_exceeded"] > 0 and stats["exits"] > 0, stats


def _stopped_at_first_load(kvm):
    vm, vcpu = echo_vm(kvm, spin=0)
    exit_ = vcpu.run()
    assert isinstance(exit_, X.MmioExit) and not exit_.is_write and vcpu.last_seq == 1
    return vm, vcpu


def test_a_completion_for_another_exit_is_failed_precondition(channel, kvm):
    vm, vcpu = _stopped_at_first_load(kvm)
    stub = pb_grpc.KvmStub(channel)
    wrong = pb.RunRequest(vcpu=vcpu.ref, completion=pb.Completion(
        exit_seq=7, mmio=pb.MmioCompletion(data=bytes(8))))
    with pytest.raises(grpc.RpcError) as info:
        stub.Run(wrong)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    detail = _kvm_errno(info.value)
    assert (detail.errno, detail.name, detail.exit_seq) == (errno.EPROTO, "EPROTO", 1)
    with pytest.raises(grpc.RpcError) as info:
        list(stub.RunStream(iter([wrong])))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert _kvm_errno(info.value).errno == errno.EPROTO
    result, = stub.RunMany(pb.RunManyRequest(vm_id=vm.id, runs=[wrong])).results
    assert (result.status.errno, result.status.exit_seq) == (errno.EPROTO, 1)
    # nothing was applied: the right completion still answers exit 1
    exit_ = vcpu.run()
    assert isinstance(exit_, X.MmioExit) and exit_.is_write and vcpu.last_seq == 2
    vm.destroy()


def test_a_retried_run_gets_the_same_exit_again(channel, kvm):
    vm, vcpu = _stopped_at_first_load(kvm)
    stub = pb_grpc.KvmStub(channel)
    retry = pb.RunRequest(vcpu=vcpu.ref, completion=pb.Completion(exit_seq=0))
    for _ in range(3):  # as if three replies were lost
        exit_ = stub.Run(retry)
        assert exit_.seq == 1 and exit_.WhichOneof("kind") == "mmio"
    vm.destroy()


def _disconnect_mid_call(address, start):
    channel = grpc.insecure_channel(address)
    future = start(pb_grpc.KvmStub(channel))
    time.sleep(0.05)  # the server is running the guest now
    channel.close()  # the client goes away without a word
    return future


@pytest.mark.parametrize("how", ["unary", "stream"])
def test_a_disconnect_mid_run_loses_no_exit(server, kvm, how):
    # spin long enough that the exit comes after the client is gone
    vm, vcpu = echo_vm(kvm, spin=2_000_000)
    request = pb.RunRequest(vcpu=vcpu.ref, completion=pb.Completion(exit_seq=0))
    if how == "unary":
        _disconnect_mid_call(server.address, lambda stub: stub.Run.future(request))
    else:
        _disconnect_mid_call(server.address, lambda stub: stub.RunStream(iter([request])))
    exit_ = vcpu.run(timeout=60)  # answers exit 0 again: the retry rule
    assert isinstance(exit_, X.MmioExit) and not exit_.is_write and vcpu.last_seq == 1
    exit_.value = 42
    exit_ = vcpu.run(timeout=60)
    assert isinstance(exit_, X.MmioExit) and exit_.is_write and exit_.value == 42
    assert vcpu.last_seq == 2
    vm.destroy()


# -- bounded requests --------------------------------------------------------------


def test_limits_are_reported(kvm):
    limits = kvm.get_host_info().limits
    assert limits.max_batch_ops == 1024 and limits.max_id_bytes == 128
    assert limits.max_message_bytes == 4 << 20 and limits.max_transfer == 64 * 1024
    assert limits.run_slice_insns == 20_000 and limits.run_slice_ms == 20


def test_a_batch_over_the_limit_is_refused_before_any_op(kvm):
    vm, (vcpu,) = new_vm(kvm)
    pc, value = "core pc", RAM_BASE.to_bytes(8, "little")
    n = kvm.get_host_info().limits.max_batch_ops
    with pytest.raises(KvmError) as info:
        vm.batch_one_reg([(0, pc, value)] + [(0, pc, None)] * n)
    assert info.value.errno == errno.E2BIG and info.value.code == grpc.StatusCode.OUT_OF_RANGE
    assert vcpu.get_reg(pc) == 0  # the first op was not applied
    results = vm.batch_one_reg([(0, pc, value)] + [(0, pc, None)] * (n - 1))
    assert len(results) == n and results[-1] == value
    vm.destroy()


def test_a_huge_memory_stream_fails_at_once(channel, kvm):
    vm = kvm.create_vm()
    vm.set_user_memory_region(0, RAM_BASE, 256 << 20)
    stub = pb_grpc.KvmStub(channel)
    start = time.monotonic()
    stream = stub.ReadMemoryStream(pb.ReadMemoryRequest(vm_id=vm.id, gpa=RAM_BASE,
                                                        size=2**64 - 1))
    with pytest.raises(grpc.RpcError) as info:
        next(stream)  # the error comes first: no chunk of the slot was read
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _kvm_errno(info.value).errno == errno.EFAULT
    print(f"refused in {(time.monotonic() - start) * 1000:.1f} ms")
    with pytest.raises(grpc.RpcError) as info:
        stub.ReadMemory(pb.ReadMemoryRequest(vm_id=vm.id, gpa=RAM_BASE, size=(64 << 10) + 1))
    assert _kvm_errno(info.value).errno == errno.E2BIG
    vm.destroy()


# -- bad bytes -----------------------------------------------------------------------


def _raw(channel, method):
    return channel.unary_unary(f"/rvkvm.v1.Kvm/{method}", request_serializer=None,
                               response_deserializer=None)


@pytest.mark.parametrize("payload", [
    b"\x0a\x03\xff\xfe\xfd",  # vm_id (field 1) that is not UTF-8
    b"\x08" + b"\xff" * 11,  # a varint longer than ten bytes
    b"\x0a\x10abc",  # a string that runs past the end
    b"\x0b",  # a group start (wire type 3) never closed
])
def test_malformed_request_bytes_are_invalid_argument(channel, payload):
    for method in ("DestroyVm", "ReadMemory", "GetDirtyLog", "EnableCap"):  # vm_id = 1
        with pytest.raises(grpc.RpcError) as info:
            _raw(channel, method)(payload, timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, info.value)
        assert _kvm_errno(info.value).errno == errno.EINVAL


def test_malformed_bytes_in_a_stream_are_invalid_argument(channel):
    call = channel.stream_stream("/rvkvm.v1.Kvm/RunStream", request_serializer=None,
                                 response_deserializer=None)
    with pytest.raises(grpc.RpcError) as info:
        list(call(iter([b"\x0a\x03\xff\xfe\xfd"]), timeout=10))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _kvm_errno(info.value).errno == errno.EINVAL


def test_an_overlong_id_is_refused_and_not_echoed(channel, kvm):
    stub = pb_grpc.KvmStub(channel)
    long_id = "vm-" + "x" * 5000
    calls = [
        lambda: stub.DestroyVm(pb.DestroyVmRequest(vm_id=long_id)),
        lambda: stub.GetOneReg(pb.GetOneRegRequest(vcpu=pb.VcpuRef(vm_id=long_id), id=1)),
        lambda: stub.ReadMemory(pb.ReadMemoryRequest(vm_id=long_id, size=1)),
        lambda: stub.CreateVm(pb.CreateVmRequest(abi_profile="linux-" + "9" * 5000)),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value
        assert _kvm_errno(info.value).errno == errno.EINVAL
        trailer = sum(len(k) + len(v) for k, v in info.value.trailing_metadata())
        assert trailer < 2000 and "x" * 100 not in info.value.details()
    assert Kvm(channel).get_api_version() == 12


def test_a_dirty_log_too_large_for_a_reply_is_refused_before_harvest():
    limits = RequestLimits(max_transfer=64 << 10, max_batch_ops=64, max_message=128 << 10)
    server = ServerThread(ServerConfig(limits=limits)).start()
    try:
        with grpc.insecure_channel(server.address) as channel:
            vm = Kvm(channel, timeout=30).create_vm()
            # 8 GiB, mapped lazily: a bitmap of 256 KiB does not fit in 128 KiB
            vm.set_user_memory_region(0, 1 << 40, 8 << 30,
                                      flags=pb.MEMORY_FLAG_LOG_DIRTY_PAGES)
            vm.set_user_memory_region(1, RAM_BASE, 1 << 20,
                                      flags=pb.MEMORY_FLAG_LOG_DIRTY_PAGES)
            with pytest.raises(KvmError) as info:
                vm.get_dirty_log(0)
            assert info.value.errno == errno.E2BIG
            assert info.value.code == grpc.StatusCode.OUT_OF_RANGE
            assert len(vm.get_dirty_log(1)) == 256 // 8  # a small slot's log still comes
            vm.destroy()
    finally:
        server.stop()
