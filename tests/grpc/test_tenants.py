"""Tenants (issue 11 items 4-6): authentication, every VM-scoped RPC across
tenants answering NOT_FOUND exactly as for a VM that does not exist,
quotas with google.rpc.QuotaFailure, the server-wide memory ceiling, leases,
ListVms, the open-on-loopback rule, and `rvkvm ps` / `rvkvm destroy`."""

from __future__ import annotations

import concurrent.futures
import errno
import hashlib
import queue
import time
import uuid
from typing import Any, Callable, Dict, Iterator, List, Tuple

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from rvkvm.client import Kvm, KvmError
from rvkvm.client.channels import Credentials, open_channel
from rvkvm.server.rpc import ServerConfig, create_server
from rvkvm.server.rpc.tenants import Tenants
from rvkvm.uapi.onereg import parse_name
from rvkvm.v1 import kvm_pb2 as pb
from rvkvm.v1 import kvm_pb2_grpc as pb_grpc

from .conftest import ServerThread
from .guest import RAM_BASE, RAM_SIZE, jump_self, load

TOKENS = {"team-a": "token-of-a", "team-b": "token-of-b", "small": "token-of-small"}


def tenants_toml(extra: str = "") -> str:
    def sha(t: str) -> str:
        return hashlib.sha256(t.encode()).hexdigest()
    return f"""
[tenants.team-a]
token_sha256 = "{sha(TOKENS['team-a'])}"

[tenants.team-b]
token_sha256 = "{sha(TOKENS['team-b'])}"
client_cn = "team-b-client"

[tenants.small]
token_sha256 = "{sha(TOKENS['small'])}"
max_vms = 2
max_vcpus = 2
max_memory = "128K"
max_runs = 1
""" + extra


def md(tenant: str) -> List[Tuple[str, str]]:
    return [("authorization", f"Bearer {TOKENS[tenant]}")]


@pytest.fixture(scope="module")
def tserver() -> Iterator[ServerThread]:
    thread = ServerThread(ServerConfig(run_slice=20_000,
                                       tenants=Tenants.from_toml(tenants_toml()))).start()
    yield thread
    thread.stop()


def kvm_of(server: ServerThread, tenant: str) -> Tuple[grpc.Channel, Kvm]:
    channel = open_channel(server.address, Credentials(token=TOKENS[tenant]))
    return channel, Kvm(channel, timeout=30)


def test_a_token_channel_sends_the_token_with_every_call_form(tserver):
    """open_channel's token goes with unary calls made every way (call,
    with_call, future) and with streams both ways, beside the caller's
    own metadata."""
    channel, kvm = kvm_of(tserver, "team-a")
    with channel:
        stub = pb_grpc.KvmStub(channel)
        mine = (("x-request-id", "token-channel-1"),)
        assert stub.ListVms(pb.ListVmsRequest(), timeout=30).tenant == "team-a"
        reply, call = stub.ListVms.with_call(pb.ListVmsRequest(), timeout=30, metadata=mine)
        assert reply.tenant == "team-a"
        assert ("x-request-id", "token-channel-1") in tuple(call.trailing_metadata())
        assert stub.ListVms.future(pb.ListVmsRequest(), timeout=30).result().tenant == "team-a"
        vm = kvm.create_vm()
        vm.set_user_memory_region(0, RAM_BASE, RAM_SIZE)
        # client streaming (WriteMemoryStream) and server streaming (ReadMemoryStream)
        chunks = [pb.WriteMemoryRequest(vm_id=vm.id, gpa=RAM_BASE + 8 * i, data=bytes([i]) * 8)
                  for i in range(4)]
        stub.WriteMemoryStream(iter(chunks), timeout=30)
        got = b"".join(c.data for c in stub.ReadMemoryStream(
            pb.ReadMemoryRequest(vm_id=vm.id, gpa=RAM_BASE, size=32), timeout=30))
        assert got == b"".join(bytes([i]) * 8 for i in range(4))
        vm.destroy()
    # the same stub without the token: refused
    with grpc.insecure_channel(tserver.address) as bare:
        with pytest.raises(grpc.RpcError) as info:
            pb_grpc.KvmStub(bare).ListVms(pb.ListVmsRequest(), timeout=30)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


# -- every VM-scoped RPC across tenants ------------------------------------

REG_PC = parse_name("core pc")
VCPU0 = 0

# method -> (kind, build(vm_id) -> request or list of requests)
Build = Callable[[str], Any]
TABLE: Dict[str, Tuple[str, Build]] = {
    "CheckExtension": ("unary", lambda v: pb.CheckExtensionRequest(vm_id=v, cap=1)),
    "DestroyVm": ("unary", lambda v: pb.DestroyVmRequest(vm_id=v)),
    "EnableCap": ("unary", lambda v: pb.EnableCapRequest(vm_id=v, cap=242)),
    "SetUserMemoryRegion": ("unary", lambda v: pb.SetUserMemoryRegionRequest(
        vm_id=v, slot=1, guest_phys_addr=0x9000_0000, memory_size=4096)),
    "GetDirtyLog": ("unary", lambda v: pb.GetDirtyLogRequest(vm_id=v, slot=0)),
    "ReadMemory": ("unary", lambda v: pb.ReadMemoryRequest(vm_id=v, gpa=RAM_BASE, size=8)),
    "WriteMemory": ("unary", lambda v: pb.WriteMemoryRequest(vm_id=v, gpa=RAM_BASE,
                                                              data=b"x")),
    "ReadMemoryStream": ("server_stream", lambda v: pb.ReadMemoryRequest(
        vm_id=v, gpa=RAM_BASE, size=8)),
    "WriteMemoryStream": ("client_stream", lambda v: [pb.WriteMemoryRequest(
        vm_id=v, gpa=RAM_BASE, data=b"x")]),
    "CreateVcpu": ("unary", lambda v: pb.CreateVcpuRequest(vm_id=v, vcpu_id=5)),
    "GetOneReg": ("unary", lambda v: pb.GetOneRegRequest(
        vcpu=pb.VcpuRef(vm_id=v, vcpu_id=VCPU0), id=REG_PC)),
    "SetOneReg": ("unary", lambda v: pb.SetOneRegRequest(
        vcpu=pb.VcpuRef(vm_id=v, vcpu_id=VCPU0), id=REG_PC, value=bytes(8))),
    "GetRegList": ("unary", lambda v: pb.GetRegListRequest(
        vcpu=pb.VcpuRef(vm_id=v, vcpu_id=VCPU0))),
    "Run": ("unary", lambda v: pb.RunRequest(vcpu=pb.VcpuRef(vm_id=v, vcpu_id=VCPU0),
                                             budget=10)),
    "RunStream": ("bidi_stream", lambda v: [pb.RunRequest(
        vcpu=pb.VcpuRef(vm_id=v, vcpu_id=VCPU0), budget=10)]),
    "Interrupt": ("unary", lambda v: pb.InterruptRequest(
        vcpu=pb.VcpuRef(vm_id=v, vcpu_id=VCPU0), irq=0)),
    "GetMpState": ("unary", lambda v: pb.GetMpStateRequest(
        vcpu=pb.VcpuRef(vm_id=v, vcpu_id=VCPU0))),
    "SetMpState": ("unary", lambda v: pb.SetMpStateRequest(
        vcpu=pb.VcpuRef(vm_id=v, vcpu_id=VCPU0), mp_state=0)),
    "SetGuestDebug": ("unary", lambda v: pb.SetGuestDebugRequest(
        vcpu=pb.VcpuRef(vm_id=v, vcpu_id=VCPU0), control=0)),
    "Kick": ("unary", lambda v: pb.KickRequest(vcpu=pb.VcpuRef(vm_id=v, vcpu_id=VCPU0))),
    "GetFwft": ("unary", lambda v: pb.GetFwftRequest(
        vcpu=pb.VcpuRef(vm_id=v, vcpu_id=VCPU0), feature_id=0)),
    "SetFwft": ("unary", lambda v: pb.SetFwftRequest(
        vcpu=pb.VcpuRef(vm_id=v, vcpu_id=VCPU0), feature_id=0, enable=False)),
    "BatchOneReg": ("unary", lambda v: pb.BatchOneRegRequest(
        vm_id=v, ops=[pb.RegOp(vcpu_id=VCPU0, id=REG_PC)])),
    "RunMany": ("unary", lambda v: pb.RunManyRequest(vm_id=v, runs=[pb.RunRequest(
        vcpu=pb.VcpuRef(vm_id=v, vcpu_id=VCPU0), budget=10)])),
    "RegisterCoalescedMmio": ("unary", lambda v: pb.RegisterCoalescedMmioRequest(
        vm_id=v, zone=pb.CoalescedMmioZone(addr=0x1000_0000, size=8))),
    "UnregisterCoalescedMmio": ("unary", lambda v: pb.UnregisterCoalescedMmioRequest(
        vm_id=v, zone=pb.CoalescedMmioZone(addr=0x1000_0000, size=8))),
    "DrainCoalescedMmio": ("unary", lambda v: pb.DrainCoalescedMmioRequest(vm_id=v)),
    "GetStats": ("unary", lambda v: pb.GetStatsRequest(vcpu=pb.VcpuRef(vm_id=v, vcpu_id=VCPU0))),
}
NOT_VM_SCOPED = {"GetApiVersion", "GetHostInfo", "CreateVm", "ListVms"}


def test_the_table_covers_every_vm_scoped_rpc():
    methods = set(pb.DESCRIPTOR.services_by_name["Kvm"].methods_by_name)
    assert methods - NOT_VM_SCOPED == set(TABLE), "add the new RPC to TABLE"


def _call(stub: Any, method: str, request: Any, metadata: Any) -> Any:
    kind, _ = TABLE[method]
    rpc = getattr(stub, method)
    if kind == "unary":
        return rpc(request, metadata=metadata, timeout=30)
    if kind == "server_stream":
        return list(rpc(request, metadata=metadata, timeout=30))
    if kind == "client_stream":
        return rpc(iter(request), metadata=metadata, timeout=30)
    return list(rpc(iter(request), metadata=metadata, timeout=30))


def _failure(stub: Any, method: str, vm_id: str, metadata: Any) -> Tuple[Any, bytes]:
    """The status code and the google.rpc.Status (bytes, the id masked)."""
    _, build = TABLE[method]
    with pytest.raises(grpc.RpcError) as info:
        _call(stub, method, build(vm_id), metadata)
    status = rpc_status.from_call(info.value)
    assert status is not None, f"{method}: no rich status"
    masked = status.SerializeToString().replace(vm_id.encode(), b"<vm>")
    return info.value.code(), masked


@pytest.mark.parametrize("method", sorted(TABLE))
def test_another_tenants_vm_is_not_found_exactly_as_an_unknown_one(tserver, method):
    chan_a, kvm_a = kvm_of(tserver, "team-a")
    with chan_a, grpc.insecure_channel(tserver.address) as chan_b:
        vm = kvm_a.create_vm()
        vm.set_user_memory_region(0, RAM_BASE, RAM_SIZE)
        vcpu = vm.create_vcpu(VCPU0)
        load(vm, vcpu, [jump_self()])
        stub_b = pb_grpc.KvmStub(chan_b)
        unknown = "vm-" + uuid.uuid4().hex  # the same shape as a real handle
        assert len(unknown) == len(vm.id)
        theirs = _failure(stub_b, method, vm.id, md("team-b"))
        nobody = _failure(stub_b, method, unknown, md("team-b"))
        assert theirs[0] == grpc.StatusCode.NOT_FOUND
        assert theirs == nobody
        # and team-a's VM is untouched: still listed, same pc, still runnable
        assert [v.vm_id for v in kvm_a.list_vms().vms] == [vm.id]
        assert vcpu.get_reg("core pc") == RAM_BASE
        if method not in ("DestroyVm",):
            _call(pb_grpc.KvmStub(chan_a), "GetRegList", TABLE["GetRegList"][1](vm.id),
                  md("team-a"))
        vm.destroy()


def test_list_vms_shows_only_ones_own(tserver):
    chan_a, kvm_a = kvm_of(tserver, "team-a")
    chan_b, kvm_b = kvm_of(tserver, "team-b")
    with chan_a, chan_b:
        a1, a2 = kvm_a.create_vm(), kvm_a.create_vm()
        b1 = kvm_b.create_vm()
        a1.set_user_memory_region(0, RAM_BASE, RAM_SIZE)
        a1.create_vcpu(0)
        a1.create_vcpu(3)
        listing = kvm_a.list_vms()
        assert listing.tenant == "team-a"
        assert [v.vm_id for v in listing.vms] == [a1.id, a2.id]
        first = listing.vms[0]
        assert list(first.vcpu_ids) == [0, 3] and first.memory_bytes == RAM_SIZE
        assert first.HasField("expire_time")  # leases on (600 s), no call open
        assert listing.usage.vms == 2 and listing.usage.vcpus == 2
        assert listing.usage.memory_bytes == RAM_SIZE
        assert [v.vm_id for v in kvm_b.list_vms().vms] == [b1.id]
        for vm in (a1, a2, b1):
            vm.destroy()
        assert kvm_a.list_vms().usage == pb.QuotaAmounts()


# -- authentication ------------------------------------------------------------

@pytest.mark.parametrize("metadata", [
    [], [("authorization", "Bearer wrong")], [("authorization", f"Basic {TOKENS['team-a']}")],
    [("authorization", "Bearer ")], [("authorization", TOKENS["team-a"])],
], ids=["none", "wrong", "basic", "empty", "no-scheme"])
def test_calls_without_a_valid_token_are_unauthenticated(tserver, metadata):
    with grpc.insecure_channel(tserver.address) as channel:
        stub = pb_grpc.KvmStub(channel)
        for call in (lambda: stub.CreateVm(pb.CreateVmRequest(), metadata=metadata),
                     lambda: stub.ListVms(pb.ListVmsRequest(), metadata=metadata),
                     lambda: list(stub.RunStream(iter([pb.RunRequest()]), metadata=metadata))):
            with pytest.raises(grpc.RpcError) as info:
                call()
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert KvmError.from_rpc_error(info.value).errno == errno.EACCES
        # the health service needs no token (load balancers, docker HEALTHCHECK)
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_token_comparison_uses_the_digest_only():
    tenants = Tenants.from_toml(tenants_toml())
    assert tenants.by_token(TOKENS["small"]).name == "small"
    assert tenants.by_token(TOKENS["small"] + "x") is None
    assert tenants.by_token(hashlib.sha256(TOKENS["small"].encode()).hexdigest()) is None


@pytest.mark.parametrize("text, message", [
    ("[tenants.a]\nmax_vms = 1\n", "needs token_sha256"),
    ('[tenants.a]\ntoken_sha256 = "abc"\n', "64 hex"),
    ('[tenants.a]\ntoken_sha256 = "' + "0" * 64 + '"\nmax_vms = -1\n', "non-negative"),
    ('[tenants.a]\ntoken_sha256 = "' + "0" * 64 + '"\nmax_memory = "lots"\n', "not a size"),
    ('[tenants.a]\ntoken_sha256 = "' + "0" * 64 + '"\nmax_vm = 1\n', "unknown keys"),
    ('[tenants.a]\ntoken_sha256 = "' + "0" * 64 + '"\n[tenants.b]\ntoken_sha256 = "'
     + "0" * 64 + '"\n', "same token"),
    ("", "no tenant"),
    ("[tenants.a\n", "tenants file"),
])
def test_bad_tenants_files_are_refused(text, message):
    with pytest.raises(ValueError, match=message):
        Tenants.from_toml(text)


# -- quotas --------------------------------------------------------------------

def _quota_violation(err: grpc.RpcError) -> error_details_pb2.QuotaFailure.Violation:
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    status = rpc_status.from_call(err)
    failures = []
    for detail in status.details:
        if detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
            failure = error_details_pb2.QuotaFailure()
            detail.Unpack(failure)
            failures.append(failure)
    assert len(failures) == 1 and len(failures[0].violations) == 1
    return failures[0].violations[0]


def _raw_error(fn: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        fn()
    return info.value


def test_quotas_answer_resource_exhausted_with_quota_failure(tserver):
    with grpc.insecure_channel(tserver.address) as channel:
        stub = pb_grpc.KvmStub(channel)
        m = md("small")
        vm1 = stub.CreateVm(pb.CreateVmRequest(), metadata=m).vm_id
        vm2 = stub.CreateVm(pb.CreateVmRequest(), metadata=m).vm_id
        # VMs: a third is refused, a fourth after a DestroyVm is not
        v = _quota_violation(_raw_error(lambda: stub.CreateVm(pb.CreateVmRequest(), metadata=m)))
        assert v.subject == "tenant:small" and v.quota_id == "max_vms" and v.quota_value == 2
        assert KvmError.from_rpc_error(
            _raw_error(lambda: stub.CreateVm(pb.CreateVmRequest(), metadata=m))
        ).errno == errno.ENOSPC
        # other tenants are not affected by small's quota
        other = stub.CreateVm(pb.CreateVmRequest(), metadata=md("team-a")).vm_id
        stub.DestroyVm(pb.DestroyVmRequest(vm_id=other), metadata=md("team-a"))
        # vCPUs across VMs
        stub.CreateVcpu(pb.CreateVcpuRequest(vm_id=vm1, vcpu_id=0), metadata=m)
        stub.CreateVcpu(pb.CreateVcpuRequest(vm_id=vm2, vcpu_id=0), metadata=m)
        v = _quota_violation(_raw_error(lambda: stub.CreateVcpu(
            pb.CreateVcpuRequest(vm_id=vm1, vcpu_id=1), metadata=m)))
        assert v.quota_id == "max_vcpus"
        # memory: 64K + 64K fit in 128K, another 4K does not; deleting gives back
        def region(vm: str, slot: int, gpa: int, size: int) -> Any:
            return stub.SetUserMemoryRegion(pb.SetUserMemoryRegionRequest(
                vm_id=vm, slot=slot, guest_phys_addr=gpa, memory_size=size), metadata=m)
        region(vm1, 0, RAM_BASE, 64 << 10)
        region(vm2, 0, RAM_BASE, 64 << 10)
        err = _raw_error(lambda: region(vm1, 1, RAM_BASE + (1 << 20), 4096))
        v = _quota_violation(err)
        assert v.quota_id == "max_memory" and KvmError.from_rpc_error(err).errno == errno.ENOMEM
        region(vm2, 0, RAM_BASE, 0)  # delete
        region(vm1, 1, RAM_BASE + (1 << 20), 4096)
        region(vm2, 3, RAM_BASE, 28 << 10)  # 96K in all
        # a failed region change gives its charge back (EEXIST: overlaps slot 3)
        err = _raw_error(lambda: region(vm2, 2, RAM_BASE, 28 << 10))
        assert err.code() == grpc.StatusCode.ALREADY_EXISTS
        region(vm2, 2, RAM_BASE + (1 << 20), 32 << 10)  # fits only if that was given back
        usage = stub.ListVms(pb.ListVmsRequest(), metadata=m).usage
        assert usage.memory_bytes == 128 << 10
        # runs: one Run may be in progress; a second is refused until it ends
        load_loop(stub, m, vm1)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            running = pool.submit(stub.Run, pb.RunRequest(
                vcpu=pb.VcpuRef(vm_id=vm1, vcpu_id=0)), metadata=m, timeout=60)
            wait_for(lambda: stub.ListVms(pb.ListVmsRequest(), metadata=m).usage.runs == 1)
            v = _quota_violation(_raw_error(lambda: stub.Run(pb.RunRequest(
                vcpu=pb.VcpuRef(vm_id=vm2, vcpu_id=0), budget=10), metadata=m, timeout=30)))
            assert v.quota_id == "max_runs"
            v = _quota_violation(_raw_error(lambda: stub.RunMany(pb.RunManyRequest(
                vm_id=vm2, runs=[pb.RunRequest(vcpu=pb.VcpuRef(vm_id=vm2, vcpu_id=0),
                                               budget=10)]), metadata=m, timeout=30)))
            assert v.quota_id == "max_runs"
            stub.Kick(pb.KickRequest(vcpu=pb.VcpuRef(vm_id=vm1, vcpu_id=0)), metadata=m)
            assert running.result(30).WhichOneof("kind") == "intr"
        load_loop(stub, m, vm2)
        assert stub.Run(pb.RunRequest(vcpu=pb.VcpuRef(vm_id=vm2, vcpu_id=0), budget=10),
                        metadata=m, timeout=30).WhichOneof("kind") == "intr"
        for vm in (vm1, vm2):
            stub.DestroyVm(pb.DestroyVmRequest(vm_id=vm), metadata=m)
        assert stub.ListVms(pb.ListVmsRequest(), metadata=m).usage == pb.QuotaAmounts()


def load_loop(stub: Any, m: Any, vm_id: str) -> None:
    """vCPU 0 of ``vm_id`` at an infinite loop at RAM_BASE."""
    from tests.emulator import rvasm as A
    stub.WriteMemory(pb.WriteMemoryRequest(vm_id=vm_id, gpa=RAM_BASE,
                                           data=A.words([jump_self()])), metadata=m)
    stub.SetOneReg(pb.SetOneRegRequest(vcpu=pb.VcpuRef(vm_id=vm_id, vcpu_id=0), id=REG_PC,
                                       value=RAM_BASE.to_bytes(8, "little")), metadata=m)


def wait_for(predicate: Callable[[], bool], limit: float = 30.0) -> None:
    """Poll until ``predicate()`` (a state the test waits for, not a timing)."""
    end = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < end, "state not reached"
        time.sleep(0.01)


def test_server_memory_ceiling():
    thread = ServerThread(ServerConfig(max_memory=128 << 10)).start()
    try:
        with grpc.insecure_channel(thread.address) as channel:
            kvm = Kvm(channel, timeout=30)
            assert kvm.get_host_info().limits.max_memory == 128 << 10
            vm1, vm2 = kvm.create_vm(), kvm.create_vm()
            vm1.set_user_memory_region(0, RAM_BASE, 64 << 10)
            vm2.set_user_memory_region(0, RAM_BASE, 64 << 10)
            stub = pb_grpc.KvmStub(channel)
            err = _raw_error(lambda: stub.SetUserMemoryRegion(pb.SetUserMemoryRegionRequest(
                vm_id=vm1.id, slot=1, guest_phys_addr=1 << 32, memory_size=1 << 40)))
            v = _quota_violation(err)
            assert v.subject == "server" and v.quota_value == 128 << 10
            vm2.destroy()  # its memory comes back
            vm1.set_user_memory_region(1, 1 << 32, 64 << 10)
            vm1.destroy()
    finally:
        thread.stop()


def test_default_memory_ceiling_is_the_hosts_memory(server):
    from rvkvm.server.rpc.quotas import host_memory
    with grpc.insecure_channel(server.address) as channel:
        assert Kvm(channel).get_host_info().limits.max_memory == host_memory() > 0


# -- leases --------------------------------------------------------------------

def test_an_unused_vm_is_destroyed_when_its_lease_ends_and_calls_hold_it():
    thread = ServerThread(ServerConfig(lease=0.3, run_slice=20_000)).start()
    try:
        with grpc.insecure_channel(thread.address) as channel:
            kvm = Kvm(channel, timeout=30)
            assert kvm.get_host_info().limits.lease.ToNanoseconds() == 300_000_000
            idle = kvm.create_vm()
            busy = kvm.create_vm()
            busy.set_user_memory_region(0, RAM_BASE, RAM_SIZE)
            vcpu = busy.create_vcpu(0)
            load(busy, vcpu, [jump_self()])
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                running = pool.submit(vcpu.run)  # holds `busy` while it runs
                wait_for(lambda: [v.open_calls for v in kvm.list_vms().vms
                                  if v.vm_id == busy.id] == [1])
                wait_for(lambda: idle.id not in [v.vm_id for v in kvm.list_vms().vms])
                with pytest.raises(KvmError) as info:
                    idle.create_vcpu(0)
                assert info.value.code == grpc.StatusCode.NOT_FOUND
                # the Run went on for longer than the lease: its VM is still there
                time.sleep(0.9)
                assert busy.id in [v.vm_id for v in kvm.list_vms().vms]
                vcpu.kick()
                assert running.result(30).reason == 10  # KVM_EXIT_INTR
            # no call holds it now: it goes too
            wait_for(lambda: kvm.list_vms().vms == [])
            assert kvm.list_vms().usage == pb.QuotaAmounts()
    finally:
        thread.stop()


# -- open servers listen on loopback only -----------------------------------------

@pytest.mark.parametrize("address, loopback", [
    ("127.0.0.1:0", True), ("127.1.2.3:50051", True), ("[::1]:0", True),
    ("localhost:50051", True), ("0.0.0.0:0", False), ("[::]:0", False),
    ("10.0.0.1:50051", False), (":50051", False), ("example.com:1", False),
])
def test_is_loopback(address, loopback):
    from rvkvm.server.rpc.app import is_loopback
    assert is_loopback(address) is loopback


async def test_an_open_server_refuses_a_non_loopback_address():
    with pytest.raises(OSError, match="--insecure-open"):
        await create_server("0.0.0.0:0", ServerConfig())


def test_rvkvm_server_refuses_open_non_loopback(capsys, monkeypatch):
    from rvkvm.server.__main__ import main
    # main() configures structlog for the whole process (level error here):
    # later tests capture info-level lines
    monkeypatch.setattr("rvkvm.server.__main__._configure_logging", lambda *args: None)
    assert main(["--listen", "0.0.0.0:0", "--log-level", "error"]) == 1
    assert "--insecure-open" in capsys.readouterr().err


# -- rvkvm ps / rvkvm destroy ------------------------------------------------------

def test_cli_ps_and_destroy(tserver, capsys, monkeypatch):
    from rvkvm.client.cli import main
    chan, kvm = kvm_of(tserver, "team-a")
    with chan:
        vm = kvm.create_vm()
        vm.set_user_memory_region(0, RAM_BASE, 1 << 20)
        vm.create_vcpu(0)
        monkeypatch.setenv("RVKVM_TOKEN", TOKENS["team-a"])
        assert main(["ps", "--server", tserver.address]) == 0
        out = capsys.readouterr().out
        assert out.startswith("tenant team-a: vms 1/-  vcpus 1/-  memory 1M/-")
        assert vm.id in out and " 1M " in out
        # team-b sees none of it and cannot destroy it
        assert main(["ps", "--server", tserver.address, "--token", TOKENS["team-b"]]) == 0
        assert vm.id not in capsys.readouterr().out
        assert main(["destroy", "--server", tserver.address, "--token", TOKENS["team-b"],
                     vm.id]) == 1
        assert f"rvkvm: {vm.id}: " in capsys.readouterr().err
        assert [v.vm_id for v in kvm.list_vms().vms] == [vm.id]
        assert main(["destroy", "--server", tserver.address, vm.id]) == 0
        assert capsys.readouterr().out == f"destroyed {vm.id}\n"
        assert kvm.list_vms().vms == []
        monkeypatch.delenv("RVKVM_TOKEN")
        assert main(["ps", "--server", tserver.address]) == 1
        assert "credentials" in capsys.readouterr().err


# -- fair share per tenant ---------------------------------------------------------


def test_the_slices_of_a_run_take_turns_as_the_vms_tenant(tserver, monkeypatch):
    """Each Run's slices are FairScheduler jobs of the VM's tenant (not of
    the caller's connection), so tenants share run time equally."""
    scheduler = tserver.server.registry.scheduler
    owners: List[Tuple[Any, Any]] = []
    submit = scheduler.submit

    def recording(owner: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        owners.append((owner, fn.__self__.vcpu.vm))
        return submit(owner, fn, *args, **kwargs)

    monkeypatch.setattr(scheduler, "submit", recording)
    vms = {}
    for tenant in ("team-a", "team-b"):
        chan, kvm = kvm_of(tserver, tenant)
        with chan:
            vm = kvm.create_vm()
            vm.set_user_memory_region(0, RAM_BASE, RAM_SIZE)
            vcpu = vm.create_vcpu(0)
            load(vm, vcpu, [jump_self()])
            vcpu.run(budget=50_000)
            vm.run_many([vcpu], budget=30_000)
            vms[tenant] = tserver.server.registry.get(vm.id).vm
            vm.destroy()
    for tenant, model_vm in vms.items():
        of_vm = [owner for owner, vm in owners if vm is model_vm]
        assert len(of_vm) >= 2 and set(of_vm) == {tenant}  # Run, RunMany: a job or more


# -- TLS and mTLS (certificates made by the openssl command) -----------------------

def _openssl(*args: str, cwd: Any) -> None:
    import subprocess
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Any:
    import shutil
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed (needed to make test certificates)")
    d = tmp_path_factory.mktemp("certs")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=rvkvm test CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    (d / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                                  "extendedKeyUsage=serverAuth\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, cn in (("server", "localhost"), ("client", "team-b-client"),
                     ("stranger", "nobody-we-know")):
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={cn}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-out", f"{name}.pem",
                 "-extfile", "server.ext" if name == "server" else "client.ext", cwd=d)
    return d


def _tls_server(certs: Any, mtls: bool) -> ServerThread:
    return ServerThread(ServerConfig(
        tenants=Tenants.from_toml(tenants_toml()), tls_cert=str(certs / "server.pem"),
        tls_key=str(certs / "server.key"),
        tls_client_ca=str(certs / "ca.pem") if mtls else None)).start()


def test_tls_with_a_bearer_token(certs):
    thread = _tls_server(certs, mtls=False)
    try:
        creds = Credentials(token=TOKENS["team-a"], tls_ca=str(certs / "ca.pem"))
        with open_channel(thread.address, creds) as channel:
            assert Kvm(channel, timeout=30).list_vms().tenant == "team-a"
        no_token = Credentials(tls_ca=str(certs / "ca.pem"))
        with open_channel(thread.address, no_token) as channel:
            with pytest.raises(KvmError) as info:
                Kvm(channel, timeout=30).list_vms()
            assert info.value.code == grpc.StatusCode.UNAUTHENTICATED
        # plaintext to a TLS port does not get through
        with open_channel(thread.address, Credentials(token=TOKENS["team-a"])) as channel:
            with pytest.raises(KvmError) as info:
                Kvm(channel, timeout=10).list_vms()
            assert info.value.code == grpc.StatusCode.UNAVAILABLE
    finally:
        thread.stop()


def test_mtls_client_certificate_names_the_tenant(certs):
    thread = _tls_server(certs, mtls=True)
    ca = str(certs / "ca.pem")
    try:
        client = Credentials(tls_ca=ca, tls_cert=str(certs / "client.pem"),
                             tls_key=str(certs / "client.key"))
        with open_channel(thread.address, client) as channel:
            kvm = Kvm(channel, timeout=30)
            assert kvm.list_vms().tenant == "team-b"  # CN team-b-client = team-b's client_cn
            vm = kvm.create_vm()
            assert [v.vm_id for v in kvm.list_vms().vms] == [vm.id]
            vm.destroy()
        # a token still takes precedence over the certificate
        with open_channel(thread.address, Credentials(
                token=TOKENS["team-a"], tls_ca=ca, tls_cert=str(certs / "client.pem"),
                tls_key=str(certs / "client.key"))) as channel:
            assert Kvm(channel, timeout=30).list_vms().tenant == "team-a"
        # a certificate the CA signed but naming no tenant, and no token
        stranger = Credentials(tls_ca=ca, tls_cert=str(certs / "stranger.pem"),
                               tls_key=str(certs / "stranger.key"))
        with open_channel(thread.address, stranger) as channel:
            with pytest.raises(KvmError) as info:
                Kvm(channel, timeout=30).list_vms()
            assert info.value.code == grpc.StatusCode.UNAUTHENTICATED
        # no client certificate: the handshake fails
        with open_channel(thread.address, Credentials(token=TOKENS["team-a"],
                                                      tls_ca=ca)) as channel:
            with pytest.raises(KvmError) as info:
                Kvm(channel, timeout=10).list_vms()
            assert info.value.code == grpc.StatusCode.UNAVAILABLE
    finally:
        thread.stop()


def test_an_open_stream_holds_its_vm_while_it_waits_between_messages():
    thread = ServerThread(ServerConfig(lease=0.3, run_slice=20_000)).start()
    try:
        with grpc.insecure_channel(thread.address) as channel:
            kvm = Kvm(channel, timeout=30)
            vm = kvm.create_vm()
            vm.set_user_memory_region(0, RAM_BASE, RAM_SIZE)
            vcpu = vm.create_vcpu(0)
            load(vm, vcpu, [jump_self()])
            stub = pb_grpc.KvmStub(channel)
            requests: queue.Queue = queue.Queue()
            replies = stub.RunStream(iter(requests.get, None), timeout=60)
            requests.put(pb.RunRequest(vcpu=vcpu.ref, budget=1000))
            assert next(replies).WhichOneof("kind") == "intr"
            # the stream is idle for three leases: its VM stays
            time.sleep(0.9)
            assert [v.open_calls for v in kvm.list_vms().vms if v.vm_id == vm.id] == [1]
            requests.put(pb.RunRequest(vcpu=vcpu.ref, budget=1000,
                                       completion=pb.Completion(exit_seq=1)))
            assert next(replies).seq == 2
            chunks: queue.Queue = queue.Queue()
            writer = stub.WriteMemoryStream.future(iter(chunks.get, None), timeout=60)
            chunks.put(pb.WriteMemoryRequest(vm_id=vm.id, gpa=RAM_BASE + 0x100, data=b"x"))
            wait_for(lambda: [v.open_calls for v in kvm.list_vms().vms] == [2])
            requests.put(None)  # the RunStream ends; the write stream waits on
            assert list(replies) == []
            time.sleep(0.9)
            assert [v.open_calls for v in kvm.list_vms().vms if v.vm_id == vm.id] == [1]
            chunks.put(None)
            assert writer.result(30).bytes_written == 1
            wait_for(lambda: kvm.list_vms().vms == [])  # no call holds it now
    finally:
        thread.stop()
