"""The extra accept loops (server/rpc/accept.py): calls of one method are
accepted by several waiting call requests, not one; a grpcio whose private
API differs leaves grpc's own loop serving alone; shutdown ends the loops."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rvkvm.client import Kvm, KvmError
from rvkvm.server.rpc import ServerConfig, accept

from .conftest import ServerThread, _test_config

RAM = 0x8000_0000


def _config(**kw: object) -> ServerConfig:
    config = _test_config("fast")
    for key, value in kw.items():
        setattr(config, key, value)
    return config


@pytest.fixture
def loops_server() -> Iterator[ServerThread]:
    thread = ServerThread(_config(accept_loops=4, run_accept_loops=1)).start()
    yield thread
    thread.stop()


def test_this_grpcio_has_the_private_api_the_loops_use() -> None:
    # If grpcio changes what its accept loop calls, this fails in CI
    # instead of the loops silently going away.
    assert accept.supported() is None, accept.supported()


def test_loops_per_method_follow_the_policy(loops_server: ServerThread) -> None:
    loops = loops_server.server.accept
    assert loops is not None and loops.installed
    methods = loops._recorder.registered
    runs = [m for m in methods if m.rsplit("/", 1)[1].startswith("Run")]
    assert {"/rvkvm.v1.Kvm/Run", "/rvkvm.v1.Kvm/RunStream", "/rvkvm.v1.Kvm/RunMany"} <= set(runs)
    assert "/grpc.health.v1.Health/Check" in methods
    assert loops.loops == 4 * (len(methods) - len(runs)) + 1 * len(runs)


def test_concurrent_calls_of_one_method_are_accepted_by_the_extra_loops(
        loops_server: ServerThread) -> None:
    channel = grpc.insecure_channel(loops_server.address)
    try:
        kvm = Kvm(channel, timeout=30)
        vm = kvm.create_vm()
        vm.set_user_memory_region(0, RAM, 1 << 16)
        vcpu = vm.create_vcpu(0)
        vcpu.set_reg("core a0", 0x1234)
        before = loops_server.server.accept.accepted
        with ThreadPoolExecutor(16) as pool:
            values = list(pool.map(lambda _: vcpu.get_reg("core a0"), range(400)))
        assert values == [0x1234] * 400
        # grpc's own loop takes some; with 16 callers at once the others do
        assert loops_server.server.accept.accepted - before > 0
        # errors still become statuses through the same interceptors
        with pytest.raises(KvmError) as err:
            kvm.vm("no-such-vm").vcpu(0).get_reg("core a0")
        assert err.value.code == grpc.StatusCode.NOT_FOUND
        stub = health_pb2_grpc.HealthStub(channel)
        assert stub.Check(health_pb2.HealthCheckRequest(), timeout=10).status == \
            health_pb2.HealthCheckResponse.SERVING
    finally:
        channel.close()


def test_a_grpcio_without_the_api_leaves_grpcs_own_loop_serving(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(accept._EXPECTED, "_handle_rpc", ("something", "else"))
    assert "cygrpc._handle_rpc" in (accept.supported() or "")
    _serves_with_grpcs_loop_alone(reason="expected")


def _serves_with_grpcs_loop_alone(reason: str) -> None:
    """A server started now has no accept loops of its own, says ``reason``
    why, and serves concurrent calls with grpc's loop."""
    thread = ServerThread(_config(accept_loops=4)).start()
    try:
        loops = thread.server.accept
        assert loops is not None and not loops.installed and loops.loops == 0
        assert reason in (loops.unsupported or "")
        channel = grpc.insecure_channel(thread.address)
        kvm = Kvm(channel, timeout=30)
        vcpu = kvm.create_vm().create_vcpu(0)
        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(lambda _: vcpu.get_reg("core pc"), range(50))) == {0}
        channel.close()
    finally:
        thread.stop()


def test_stop_ends_every_loop_and_later_calls_fail_cleanly() -> None:
    thread = ServerThread(_config(accept_loops=3)).start()
    loops = thread.server.accept
    assert loops is not None and loops.loops > 0
    tasks = list(loops._tasks)
    channel = grpc.insecure_channel(thread.address)
    kvm = Kvm(channel, timeout=5)
    kvm.get_host_info()
    done = threading.Event()
    thread.call(_stop_then(thread, done), timeout=30)
    assert done.is_set()
    assert all(t.done() for t in tasks)
    with pytest.raises(KvmError) as err:
        kvm.get_host_info()
    assert err.value.code == grpc.StatusCode.UNAVAILABLE
    channel.close()
    thread._loop.call_soon_threadsafe(thread._loop.stop)
    thread._thread.join(10)


async def _stop_then(thread: ServerThread, done: threading.Event) -> None:
    await asyncio.wait_for(thread.server.stop(None), 20)
    done.set()


def test_the_flags_set_the_loops_and_refuse_bad_counts(capsys: pytest.CaptureFixture) -> None:
    from rvkvm.server.__main__ import MAX_ACCEPT_LOOPS, _parse

    args = _parse(["--accept-loops", "3", "--run-accept-loops", "0"])
    assert (args.accept_loops, args.run_accept_loops) == (3, 0)
    defaults = _parse([])
    assert (defaults.accept_loops, defaults.run_accept_loops) == (
        ServerConfig.accept_loops, ServerConfig.run_accept_loops)
    for flag, value in (("--accept-loops", "-1"), ("--run-accept-loops", "x"),
                        ("--accept-loops", str(MAX_ACCEPT_LOOPS + 1))):
        with pytest.raises(SystemExit) as exit_:
            _parse([flag, value])
        assert exit_.value.code == 2
        assert f"argument {flag}:" in capsys.readouterr().err


def test_a_failed_request_is_made_again_and_a_refused_one_ends_the_loop() -> None:
    class RequestFailed(Exception):
        pass

    class Refused(Exception):
        pass

    handled = []

    class FakeCygrpc:
        _RequestCallError = RequestFailed

        @staticmethod
        def _handle_rpc(method, resolver, interceptors, rpc_state, loop, exceeded):
            async def handle() -> None:
                handled.append((method, rpc_state, exceeded))
            return handle()

        @staticmethod
        async def _schedule_rpc_coro(coro, rpc_state, loop, method):
            await coro

    outcomes = [RequestFailed(), "call-1", RequestFailed(), "call-2", Refused(), "never"]

    class FakeAio:
        def is_running(self) -> bool:
            return True

        async def _request_registered_call(self, name: bytes) -> str:
            assert name == b"/svc/M"
            outcome = outcomes.pop(0)
            if isinstance(outcome, Exception):
                raise outcome
            return outcome

    loops = accept.AcceptLoops(None, accept.HandlerRecorder(None), (), lambda m: 1)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        await loops._accept(FakeCygrpc, FakeAio(), None, "/svc/M", loop)
        await asyncio.gather(*loops._calls)

    asyncio.run(main())
    assert handled == [("/svc/M", "call-1", False), ("/svc/M", "call-2", False)]
    assert (loops.accepted, loops.failures) == (2, 1)
    assert outcomes == ["never"]


def test_the_metrics_show_the_loops_and_the_calls_they_took(loops_server: ServerThread) -> None:
    from rvkvm.server.rpc.accept import AcceptCollector

    loops = loops_server.server.accept
    channel = grpc.insecure_channel(loops_server.address)
    try:
        kvm = Kvm(channel, timeout=30)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: kvm.get_host_info(), range(100)))
    finally:
        channel.close()
    families = {f.name: f for f in AcceptCollector(loops).collect()}
    assert families["rvkvm_accept_loops"].samples[0].value == loops.loops > 0
    taken = families["rvkvm_accept_loop_calls"].samples[0].value
    assert taken == loops.accepted > 0
    # the server's registry serves them
    text = loops_server.server.metrics.registry.get_sample_value("rvkvm_accept_loops")
    assert text == loops.loops


def test_a_resolver_that_cannot_be_built_leaves_grpcs_own_loop_serving(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from grpc._cython import cygrpc

    class Different:
        def __init__(self, only_one: object) -> None:
            pass

    monkeypatch.setattr(cygrpc, "_MethodResolver", Different)
    _serves_with_grpcs_loop_alone(reason="_MethodResolver")
