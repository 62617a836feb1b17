"""Property-based fuzzing of every rvkvm.v1 RPC against a live server.

Requests are built from the service's own descriptors (every field of every
request message, nested messages included), with ids that name a real VM
and vCPU or nothing, values at and around the edges of their types; and raw
bytes, valid or not. Every answer is OK or a proper status with an errno
detail, never UNKNOWN or INTERNAL, and the server is healthy afterwards.
"""

from __future__ import annotations

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rvkvm.v1 import kvm_pb2 as pb

from .guest import RAM_BASE, new_vm

SERVICE = pb.DESCRIPTOR.services_by_name["Kvm"]
METHODS = sorted(SERVICE.methods_by_name)
# Calls that may legitimately wait past the client's deadline (a vCPU left
# idle or spinning by an earlier field, or a stream the client stops reading).
WAITING = {"Run", "RunStream", "RunMany"}
DEADLINE = 3.0
T = FieldDescriptor

_INTS = {
    T.TYPE_UINT32: (0, 2**32 - 1), T.TYPE_UINT64: (0, 2**64 - 1),
    T.TYPE_INT32: (-2**31, 2**31 - 1), T.TYPE_INT64: (-2**63, 2**63 - 1),
}


def _int(lo: int, hi: int) -> st.SearchStrategy[int]:
    edges = [v for v in (0, 1, 2, 7, 8, 0xFF, 0x1000, RAM_BASE, RAM_BASE + 0x1000,
                         2**31 - 1, 2**32 - 1, 2**63 - 1, 2**64 - 1, -1, -2**63)
             if lo <= v <= hi]
    return st.one_of(st.sampled_from(edges), st.integers(lo, hi))


def _value(field: FieldDescriptor, vm_id: str, depth: int) -> st.SearchStrategy:
    if field.type == T.TYPE_MESSAGE:
        return _message(field.message_type, vm_id, depth + 1)
    if field.type == T.TYPE_STRING:
        if field.name == "vm_id":
            return st.one_of(st.just(vm_id), st.just(""), st.text(max_size=20),
                             st.just("vm-" + "x" * 300))
        return st.one_of(st.sampled_from(["", "linux-6.18", "latest"]), st.text(max_size=20))
    if field.type == T.TYPE_BYTES:
        return st.binary(max_size=64)
    if field.type == T.TYPE_BOOL:
        return st.booleans()
    if field.type == T.TYPE_ENUM:
        return st.integers(0, 8)
    if field.name == "vcpu_id":
        return st.one_of(st.just(0), st.integers(0, 2**32 - 1))
    if field.name in ("size", "budget") or field.name.endswith("_size"):
        return _int(0, 2**64 - 1 if field.type == T.TYPE_UINT64 else 2**32 - 1).filter(
            lambda v: v <= 1 << 20 or v >= 1 << 62)
    if field.name == "idle_timeout_ms":
        return st.integers(1, 200)
    return _int(*_INTS.get(field.type, (0, 2**32 - 1)))


def _message(descriptor, vm_id: str, depth: int = 0) -> st.SearchStrategy:
    fields = [f for f in descriptor.fields if depth < 3 or f.type != T.TYPE_MESSAGE]

    @st.composite
    def build(draw):
        msg = message_factory.GetMessageClass(descriptor)()
        for field in fields:
            if not draw(st.booleans()):
                continue
            if field.is_repeated:
                getattr(msg, field.name).extend(
                    draw(st.lists(_value(field, vm_id, depth), max_size=3)))
            elif field.type == T.TYPE_MESSAGE:
                getattr(msg, field.name).CopyFrom(draw(_value(field, vm_id, depth)))
            elif field.containing_oneof is None or not msg.WhichOneof(
                    field.containing_oneof.name):
                setattr(msg, field.name, draw(_value(field, vm_id, depth)))
        return msg
    return build()


def _check_status(method: str, err: grpc.RpcError) -> None:
    code = err.code()
    assert code not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), (method, err)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED and method in WAITING:
        return
    status = rpc_status.from_call(err)
    assert status is not None and any(d.Is(pb.KvmErrno.DESCRIPTOR) for d in status.details), \
        (method, code, err.details())


def _call(channel: grpc.Channel, method: str, payload: bytes) -> None:
    desc = SERVICE.methods_by_name[method]
    path = f"/{SERVICE.full_name}/{method}"
    kw = {"request_serializer": None, "response_deserializer": None}
    try:
        if desc.client_streaming and desc.server_streaming:
            responses = channel.stream_stream(path, **kw)(iter([payload]), timeout=DEADLINE)
            for _ in zip(range(4), responses):
                pass
            responses.cancel()
        elif desc.client_streaming:
            channel.stream_unary(path, **kw)(iter([payload, payload]), timeout=DEADLINE)
        elif desc.server_streaming:
            responses = channel.unary_stream(path, **kw)(payload, timeout=DEADLINE)
            for _ in zip(range(4), responses):
                pass
            responses.cancel()
        else:
            channel.unary_unary(path, **kw)(payload, timeout=DEADLINE)
    except grpc.RpcError as err:
        if err.code() != grpc.StatusCode.CANCELLED:  # our own cancel of a stream
            _check_status(method, err)


@st.composite
def _requests(draw, vm_id: str):
    method = draw(st.sampled_from(METHODS))
    msg = draw(_message(SERVICE.methods_by_name[method].input_type, vm_id))
    return method, msg.SerializeToString()


_SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.function_scoped_fixture,
                                            HealthCheck.too_slow])


def _healthy(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    answer = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_every_rpc_with_fuzzed_fields(channel, kvm):
    vm, (vcpu,) = new_vm(kvm)

    @_SETTINGS
    @given(st.data())
    def fuzz(data):
        method, payload = data.draw(_requests(vm.id))
        _call(channel, method, payload)

    try:
        fuzz()
    finally:
        try:
            vm.destroy()
        except Exception:  # a fuzzed DestroyVm may have got there first
            pass
    _healthy(channel)


@_SETTINGS
@given(method=st.sampled_from(METHODS), payload=st.binary(max_size=48))
def test_every_rpc_with_random_bytes(channel, method, payload):
    _call(channel, method, payload)


def test_server_healthy_after_random_bytes(channel):
    _healthy(channel)
