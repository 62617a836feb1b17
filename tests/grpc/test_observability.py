"""Observability (issue 11 item 9): one JSON log line per RPC with its
fields, Prometheus metrics on --metrics-listen with bounded labels, and the
settings from flags, environment and a config file."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any, Dict

import grpc
import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families

from rvkvm.client import Kvm, KvmError
from rvkvm.server.rpc import ServerConfig

from .conftest import ServerThread
from .guest import EBREAK, RAM_BASE, RAM_SIZE, load

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _samples(port: int) -> Dict[tuple, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_count_rpcs_exits_instructions_and_usage():
    thread = ServerThread(ServerConfig(metrics_listen="127.0.0.1:0", run_slice=20_000)).start()
    try:
        port = thread.server.metrics_port
        assert port
        with grpc.insecure_channel(thread.address) as channel:
            kvm = Kvm(channel, timeout=30)
            vm = kvm.create_vm()
            vm.set_user_memory_region(0, RAM_BASE, RAM_SIZE)
            vcpu = vm.create_vcpu(0)
            load(vm, vcpu, [0x13] * 99 + [EBREAK])  # 99 nops, then a DEBUG exit
            assert vcpu.run().reason == 4
            with pytest.raises(KvmError):
                vm.vcpu(7).get_reg("core pc")
            s = _samples(port)
            unary = (("grpc_method", "CreateVm"), ("grpc_service", "rvkvm.v1.Kvm"),
                     ("grpc_type", "unary"))
            assert s[("grpc_server_started_total", unary)] == 1
            assert s[("grpc_server_handled_total",
                      tuple(sorted(unary + (("grpc_code", "OK"),))))] == 1
            missing = (("grpc_code", "NOT_FOUND"), ("grpc_method", "GetOneReg"),
                       ("grpc_service", "rvkvm.v1.Kvm"), ("grpc_type", "unary"))
            assert s[("grpc_server_handled_total", missing)] == 1
            assert s[("grpc_server_handling_seconds_count", unary)] == 1
            tenant = (("tenant", "default"),)
            assert s[("rvkvm_exits_total", (("reason", "DEBUG"), ("tenant", "default")))] == 1
            assert s[("rvkvm_instructions_retired_total", tenant)] == 99
            assert s[("rvkvm_run_slices_total", ())] >= 1
            assert s[("rvkvm_vms", tenant)] == 1 and s[("rvkvm_vcpus", tenant)] == 1
            assert s[("rvkvm_guest_memory_bytes", tenant)] == RAM_SIZE
            vm.destroy()
            s = _samples(port)
            assert s[("rvkvm_vms", tenant)] == 0 and s[("rvkvm_guest_memory_bytes", tenant)] == 0
            # bounded label sets: only the tenants known, only rvkvm.v1 methods
            tenants = {dict(k[1]).get("tenant") for k in s if "tenant" in dict(k[1])}
            assert tenants == {"default"}
            services = {dict(k[1]).get("grpc_service") for k in s
                        if "grpc_service" in dict(k[1])}
            assert services == {"rvkvm.v1.Kvm"}
    finally:
        thread.stop()


def test_one_json_line_per_rpc_on_stderr():
    """The real server process at its default log level and format."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "rvkvm.server", "--listen", "127.0.0.1:0"], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("rvkvm-server listening on 127.0.0.1:")
        address = line.split()[-1]
        with grpc.insecure_channel(address) as channel:
            vm = Kvm(channel, timeout=30).create_vm()
            vm.create_vcpu(2)
            stub_md = [("x-request-id", "req-42")]
            from rvkvm.v1 import kvm_pb2 as pb
            from rvkvm.v1 import kvm_pb2_grpc as pb_grpc
            with pytest.raises(grpc.RpcError):
                pb_grpc.KvmStub(channel).GetMpState(
                    pb.GetMpStateRequest(vcpu=pb.VcpuRef(vm_id=vm.id, vcpu_id=3)),
                    metadata=stub_md)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    lines = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
    assert any(x["event"].startswith("open server") and x["level"] == "info" for x in lines)
    rpcs = [x for x in lines if x["event"] == "rpc"]
    assert [x["method"].rsplit("/", 1)[1] for x in rpcs] == ["CreateVm", "CreateVcpu",
                                                              "GetMpState"]
    last = rpcs[-1]
    assert last["level"] == "info" and last["code"] == "NOT_FOUND" and last["errno"] == "EBADF"
    assert last["request_id"] == "req-42" and last["tenant"] == "default"
    assert last["vm_id"] == vm.id and last["vcpu_id"] == 3
    assert last["duration_ms"] >= 0 and "timestamp" in last
    assert rpcs[1]["vcpu_id"] == 2 and rpcs[0]["vm_id"] == vm.id
    assert len({x["request_id"] for x in rpcs}) == 3


def test_settings_flags_over_environment_over_config_file(tmp_path, monkeypatch):
    from rvkvm.server.__main__ import _parse
    config = tmp_path / "rvkvm.toml"
    config.write_text('lease = 7\nmax-memory = "2G"\nmetrics_listen = "127.0.0.1:9"\n'
                      'insecure-open = true\nengine = "reference"\n')
    monkeypatch.setenv("RVKVM_CONFIG", str(config))
    monkeypatch.setenv("RVKVM_LEASE", "5")
    args = _parse([])
    assert args.lease == 5.0 and args.max_memory == 2 << 30 and args.insecure_open is True
    assert args.metrics_listen == "127.0.0.1:9" and args.engine == "reference"
    assert args.listen == "127.0.0.1:50051"  # untouched default
    args = _parse(["--lease", "9", "--max-memory", "1M"])
    assert args.lease == 9.0 and args.max_memory == 1 << 20
    monkeypatch.setenv("RVKVM_INSECURE_OPEN", "no")
    assert _parse([]).insecure_open is False


@pytest.mark.parametrize("env, text, message", [
    ({"RVKVM_LEASE": "soon"}, "", "--lease"),
    ({"RVKVM_ENGINE": "turbo"}, "", "turbo"),
    ({}, "leese = 3\n", "unknown settings leese"),
    ({}, "insecure-open = 3\n", "true or false"),
])
def test_bad_settings_fail_as_a_bad_flag(tmp_path, monkeypatch, capsys, env, text, message):
    from rvkvm.server.__main__ import _parse
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    argv = []
    if text:
        (tmp_path / "c.toml").write_text(text)
        argv = ["--config", str(tmp_path / "c.toml")]
    with pytest.raises(SystemExit) as info:
        _parse(argv)
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_log_lines_carry_tenant_with_structlog_capture(server):
    with grpc.insecure_channel(server.address) as channel:
        kvm = Kvm(channel, timeout=30)
        with structlog.testing.capture_logs() as logs:
            kvm.list_vms()
        entry = [x for x in logs if x.get("method") == "/rvkvm.v1.Kvm/ListVms"][0]
        assert entry["tenant"] == "default" and entry["code"] == "OK"
        assert "vm_id" not in entry


def test_a_stream_the_client_drops_is_still_logged_and_counted():
    from rvkvm.v1 import kvm_pb2 as pb
    from rvkvm.v1 import kvm_pb2_grpc as pb_grpc

    from .guest import jump_self
    thread = ServerThread(ServerConfig(metrics_listen="127.0.0.1:0", run_slice=5_000)).start()
    try:
        with grpc.insecure_channel(thread.address) as channel:
            kvm = Kvm(channel, timeout=30)
            vm = kvm.create_vm()
            vm.set_user_memory_region(0, RAM_BASE, RAM_SIZE)
            vcpu = vm.create_vcpu(0)
            load(vm, vcpu, [jump_self()])
            ref = pb.VcpuRef(vm_id=vm.id, vcpu_id=0)
            with structlog.testing.capture_logs() as logs:
                for _ in range(5):
                    done = threading.Event()

                    def requests(done: threading.Event = done) -> Any:
                        yield pb.RunRequest(vcpu=ref, budget=1000)
                        done.wait(30)  # the stream stays open until cancelled

                    call = pb_grpc.KvmStub(channel).RunStream(requests())
                    next(call)
                    call.cancel()
                    done.set()
                # each dropped stream ends in one log line; wait for the fifth
                deadline = time.monotonic() + 30
                while len([x for x in logs if x.get("method", "").endswith("RunStream")]) < 5:
                    assert time.monotonic() < deadline
                    time.sleep(0.01)
            lines = [x for x in logs if x.get("method", "").endswith("RunStream")]
            # CANCELLED, or OK when the cancel reached the handler as the end
            # of its request stream (it returned before grpc saw the cancel)
            assert len(lines) == 5 and {x["code"] for x in lines} <= {"CANCELLED", "OK"}
            assert all(x["vm_id"] == vm.id and x["vcpu_id"] == 0 for x in lines)
            s = _samples(thread.server.metrics_port)
            handled = sum(v for (name, labels), v in s.items()
                          if name == "grpc_server_handled_total"
                          and ("grpc_method", "RunStream") in labels)
            assert handled == 5
            # the VM's lease is not held by the dropped streams
            assert [v.open_calls for v in kvm.list_vms().vms] == [0]
            vm.destroy()
    finally:
        thread.stop()


def test_malformed_requests_and_drain_refusals_are_logged_and_counted():
    """Bad request bytes (EINVAL, innermost interceptor) and the calls a
    draining server refuses (ESHUTDOWN) reach the call interceptor: one log
    line each with the errno, and grpc_server_handled_total by code."""
    thread = ServerThread(ServerConfig(metrics_listen="127.0.0.1:0")).start()
    try:
        with grpc.insecure_channel(thread.address) as channel:
            kvm = Kvm(channel, timeout=30)
            raw = channel.unary_unary("/rvkvm.v1.Kvm/DestroyVm", request_serializer=None,
                                      response_deserializer=None)
            with structlog.testing.capture_logs() as logs:
                with pytest.raises(grpc.RpcError) as bad:
                    raw(b"\x0a\x03\xff\xfe\xfd", timeout=10)  # vm_id not UTF-8
                assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                thread.call(thread.server.drain(0.0))
                with pytest.raises(KvmError) as refused:
                    kvm.create_vm()
                assert refused.value.code == grpc.StatusCode.UNAVAILABLE
            rpc = {x["method"]: x for x in logs if x.get("event") == "rpc"}
            destroy, create = rpc["/rvkvm.v1.Kvm/DestroyVm"], rpc["/rvkvm.v1.Kvm/CreateVm"]
            assert destroy["code"] == "INVALID_ARGUMENT" and destroy["errno"] == "EINVAL"
            # logged once: the call's line says why
            assert destroy["error"].startswith("malformed request of 5 bytes")
            assert [x for x in logs if "malformed" in str(x)] == [destroy]
            assert create["code"] == "UNAVAILABLE" and create["errno"] == "ESHUTDOWN"
            s = _samples(thread.server.metrics_port)

            def handled(method: str, code: str) -> float:
                return s[("grpc_server_handled_total", (
                    ("grpc_code", code), ("grpc_method", method),
                    ("grpc_service", "rvkvm.v1.Kvm"), ("grpc_type", "unary")))]
            assert handled("DestroyVm", "INVALID_ARGUMENT") == 1
            assert handled("CreateVm", "UNAVAILABLE") == 1
    finally:
        thread.stop()


def test_the_request_id_is_echoed_in_the_trailers_and_bound_to_the_calls_logs(server):
    from rvkvm.v1 import kvm_pb2 as pb
    from rvkvm.v1 import kvm_pb2_grpc as pb_grpc
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.KvmStub(channel)
        with structlog.testing.capture_logs() as logs:
            _, call = stub.GetApiVersion.with_call(pb.GetApiVersionRequest(),
                                                   metadata=[("x-request-id", "req-7")])
            assert ("x-request-id", "req-7") in call.trailing_metadata()
            assert "x-request-id" not in dict(call.initial_metadata())  # no header batch
            _, call = stub.GetApiVersion.with_call(pb.GetApiVersionRequest())
            made = dict(call.trailing_metadata())["x-request-id"]
            assert len(made) == 32 and made != "req-7"
            # a failing call keeps it beside its error details, and so does a stream
            failing = stub.GetMpState.future(pb.GetMpStateRequest(
                vcpu=pb.VcpuRef(vm_id="vm-none")), metadata=[("x-request-id", "req-8")])
            with pytest.raises(grpc.RpcError) as err:
                failing.result(timeout=10)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            trailers = dict(failing.trailing_metadata())
            assert trailers["x-request-id"] == "req-8" and "grpc-status-details-bin" in trailers
            stream = stub.ReadMemoryStream(pb.ReadMemoryRequest(vm_id="vm-none", size=8),
                                           metadata=[("x-request-id", "req-9")])
            with pytest.raises(grpc.RpcError):
                list(stream)
            assert dict(stream.trailing_metadata())["x-request-id"] == "req-9"
        ids = [x["request_id"] for x in logs if x.get("event") == "rpc"]
        assert ids == ["req-7", made, "req-8", "req-9"]


async def test_the_request_id_is_bound_while_the_call_runs():
    from rvkvm.server.rpc.calls import CallInterceptor

    class Context:
        sent: list = []

        def invocation_metadata(self):
            return (("x-request-id", "req-9"),)

        def peer(self):
            return "ipv4:127.0.0.1:1"

        def set_trailing_metadata(self, metadata):
            self.sent.append(tuple(metadata))

        def cancelled(self):
            return False

    context = Context()
    with structlog.testing.capture_logs():
        async with CallInterceptor(None).around("/rvkvm.v1.Kvm/GetApiVersion", context):
            assert structlog.contextvars.get_contextvars()["request_id"] == "req-9"
    assert "request_id" not in structlog.contextvars.get_contextvars()
    assert context.sent == [(("x-request-id", "req-9"),)]


def test_a_request_id_the_server_makes_is_a_version_4_uuid():
    """Without a usable x-request-id the server makes a random RFC 4122
    version-4 UUID (its 32-digit hex form), a new one per call."""
    import uuid

    from rvkvm.server.rpc.calls import _request_id

    made = {_request_id([("x-request-id", "bad id with spaces")]) for _ in range(2000)}
    assert len(made) == 2000
    for text in made:
        parsed = uuid.UUID(hex=text)
        assert parsed.hex == text
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
    # every other bit varies: no bit outside the version and variant is fixed
    ored = anded = None
    for text in made:
        value = int(text, 16)
        ored = value if ored is None else ored | value
        anded = value if anded is None else anded & value
    fixed = (0xF << 76) | (0x3 << 62)
    assert ored | fixed == (1 << 128) - 1
    assert anded & ~fixed == 0


def test_server_tls_settings_have_their_own_environment_names(monkeypatch):
    """The client library's RVKVM_TLS_* never configure a server (the
    embedded one `rvkvm run` starts inherits the client's environment)."""
    from rvkvm.server.__main__ import _parse
    monkeypatch.setenv("RVKVM_TLS_CERT", "/client/cert.pem")
    monkeypatch.setenv("RVKVM_TLS_KEY", "/client/key.pem")
    monkeypatch.setenv("RVKVM_TLS_CA", "/client/ca.pem")
    args = _parse([])
    assert (args.tls_cert, args.tls_key, args.tls_client_ca) == (None, None, None)
    monkeypatch.setenv("RVKVM_SERVER_TLS_CERT", "/server/cert.pem")
    monkeypatch.setenv("RVKVM_SERVER_TLS_KEY", "/server/key.pem")
    monkeypatch.setenv("RVKVM_SERVER_TLS_CLIENT_CA", "/server/ca.pem")
    args = _parse([])
    assert (args.tls_cert, args.tls_key, args.tls_client_ca) == (
        "/server/cert.pem", "/server/key.pem", "/server/ca.pem")


def test_the_loop_watch_measures_how_late_the_event_loop_runs():
    from rvkvm.server.rpc.scheduler import LoopWatch

    seen: list = []

    async def main() -> None:
        watch = LoopWatch(lag_period=0.01)
        watch.lag_observers.append(seen.append)
        watch.start()
        await asyncio.sleep(0.05)
        quiet = len(seen)
        time.sleep(0.2)  # the loop is held: the next timer runs ~0.2 s late
        await asyncio.sleep(0.05)
        await watch.stop()
        after = len(seen)
        await asyncio.sleep(0.05)
        assert quiet >= 2
        assert len(seen) == after  # stopped: no more samples
        assert max(seen) >= 0.15
        assert min(seen) < 0.05

    asyncio.run(main())


def test_the_server_exports_its_event_loop_lag():
    thread = ServerThread(ServerConfig(engine="fast", workers=0)).start()
    try:
        registry = thread.server.metrics.registry
        deadline = time.monotonic() + 10
        while (registry.get_sample_value("rvkvm_event_loop_lag_seconds_count") or 0) < 3:
            assert time.monotonic() < deadline, "no loop lag samples"
            time.sleep(0.05)
        assert registry.get_sample_value("rvkvm_event_loop_lag_seconds_sum") >= 0
        # an idle loop runs its timers in time
        assert registry.get_sample_value("rvkvm_event_loop_lag_seconds_bucket",
                                         {"le": "0.5"}) >= 1
    finally:
        thread.stop()


def test_gc_pauses_are_counted_by_generation_into_their_buckets():
    from rvkvm.server.rpc.heap import GcPauses

    pauses = GcPauses(buckets=(0.001, 0.01))
    clock = iter([0.0, 0.0005, 1.0, 1.005, 2.0, 2.5])
    real = time.perf_counter
    try:
        time.perf_counter = lambda: next(clock)  # type: ignore[assignment]
        pauses.callback("start", {"generation": 0})
        pauses.callback("stop", {"generation": 0})  # 0.5 ms
        pauses.callback("start", {"generation": 2})
        pauses.callback("stop", {"generation": 2})  # 5 ms
        pauses.callback("start", {"generation": 2})
        pauses.callback("stop", {"generation": 2})  # 500 ms: above every bound
    finally:
        time.perf_counter = real  # type: ignore[assignment]
    assert pauses.counts == [[1, 0, 0], [0, 0, 0], [0, 1, 1]]
    family = pauses.family()
    samples = {(s.name, s.labels.get("generation"), s.labels.get("le")): s.value
               for s in family.samples}
    assert samples["rvkvm_gc_pause_seconds_bucket", "2", "0.001"] == 0
    assert samples["rvkvm_gc_pause_seconds_bucket", "2", "0.01"] == 1
    assert samples["rvkvm_gc_pause_seconds_bucket", "2", "+Inf"] == 2
    assert samples["rvkvm_gc_pause_seconds_count", "2", None] == 2
    assert abs(samples["rvkvm_gc_pause_seconds_sum", "2", None] - 0.505) < 1e-9
    assert samples["rvkvm_gc_pause_seconds_count", "0", None] == 1


def test_the_server_exports_its_collectors_pauses():
    import gc

    thread = ServerThread(ServerConfig(engine="fast", workers=0)).start()
    try:
        registry = thread.server.metrics.registry

        def full() -> float:
            return registry.get_sample_value("rvkvm_gc_pause_seconds_count",
                                             {"generation": "2"}) or 0

        before = full()
        gc.collect()
        assert full() == before + 1
        assert registry.get_sample_value("rvkvm_gc_pause_seconds_sum", {"generation": "2"}) > 0
    finally:
        thread.stop()


def test_freezing_the_startup_heap_keeps_later_garbage_collectable():
    import gc
    import weakref

    from rvkvm.server.rpc.heap import freeze_startup_heap

    class Node:
        pass

    def cycle() -> weakref.ref[Node]:
        a, b = Node(), Node()
        a.other, b.other = b, a  # type: ignore[attr-defined]
        return weakref.ref(a)

    try:
        # a cycle that is garbage only after the freeze stays: the
        # collector no longer walks what was frozen (other threads may
        # free frozen objects by reference count meanwhile, so the
        # freeze count itself is not steady)
        holder = [Node()]
        holder[0].other = holder  # type: ignore[attr-defined]
        kept_ref = weakref.ref(holder[0])
        assert freeze_startup_heap() > 0
        del holder
        gc.collect()
        assert kept_ref() is not None
        # a cycle made after the freeze is still collected
        gone = cycle()
        gc.collect()
        assert gone() is None
    finally:
        gc.unfreeze()
        gc.collect()
    assert kept_ref() is None  # unfrozen, the old cycle goes too
