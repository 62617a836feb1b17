"""vCPUs in worker processes (``ServerConfig.workers``): placement, guest
RAM shared with the front end, a worker killed during a Run (its VMs
answer UNAVAILABLE / EHOSTDOWN, everyone else goes on, a replacement
takes new VMs), a hung worker detected by its heartbeat and replaced.

The workers run on ``RVKVM_TEST_WORKER_PYTHON`` (default: as
rvkvm-server picks, pypy3 when present); CI runs this file on both."""

from __future__ import annotations

import errno
import os
import signal
import threading
import time
from typing import Any, Iterator, List

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rvkvm.client import Kvm, KvmError
from rvkvm.client.exits import DebugExit, IntrExit, MmioExit
from rvkvm.server.rpc.workers import VmProxy, WorkerCollector, WorkerPool
from tests.emulator import rvasm as A

from .conftest import ServerThread, _test_config
from .guest import EBREAK, MMIO, RAM_BASE, REG_A0, jump_self, li, load, mmio_loads, new_vm

BNE = 1
# a0 = 3000; do a0 -= 1 while a0 != 0; ebreak
LOOP_EBREAK = li(REG_A0, 3000) + [A.addi(REG_A0, REG_A0, -1), A.b(BNE, REG_A0, 0, -4), EBREAK]


@pytest.fixture
def workers_server() -> Iterator[ServerThread]:
    config = _test_config("fast", workers=2)
    config.worker_heartbeat, config.worker_timeout = 0.2, 5.0
    thread = ServerThread(config).start()
    yield thread
    thread.stop()


@pytest.fixture
def wkvm(workers_server: ServerThread) -> Iterator[Kvm]:
    with grpc.insecure_channel(workers_server.address) as ch:
        yield Kvm(ch, timeout=60, max_transfer=64 * 1024)


def _proxy(server: ServerThread, vm: Any) -> VmProxy:
    assert server.server is not None
    proxy = server.server.registry.get(vm.id).vm
    assert isinstance(proxy, VmProxy)
    return proxy


def _serving(server: ServerThread) -> int:
    with grpc.insecure_channel(server.address) as ch:
        return health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(),
                                                    timeout=5).status


def _stop(pid: int) -> None:
    """SIGSTOP ``pid`` and wait until every one of its threads is stopped
    (the signal is queued at once, the group stop takes effect later: on a
    busy machine a thread of the worker could still answer a call first)."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        states = []
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    states.append(f.read().rpartition(")")[2].split()[0])
            except FileNotFoundError:
                continue  # a thread that ended meanwhile
        if states and all(state in "tT" for state in states):
            return
        time.sleep(0.005)
    raise AssertionError(f"worker {pid} did not stop")


def _lost(call: Any) -> KvmError:
    with pytest.raises(KvmError) as info:
        call()
    assert info.value.code == grpc.StatusCode.UNAVAILABLE
    assert info.value.errno == errno.EHOSTDOWN
    assert "VM lost" in info.value.message
    return info.value


def test_vms_spread_over_the_workers_and_run_there(workers_server, wkvm):
    vm_a, (a,) = new_vm(wkvm)
    vm_b, (b,) = new_vm(wkvm)
    pa, pb = _proxy(workers_server, vm_a), _proxy(workers_server, vm_b)
    assert pa.worker is not pb.worker and pa.worker.pid != os.getpid()
    for vm, vcpu in ((vm_a, a), (vm_b, b)):
        load(vm, vcpu, [jump_self()])
        vcpu.set_guest_debug(0)
        exit_ = vcpu.run(budget=100_000)
        assert isinstance(exit_, IntrExit)
        assert vcpu.get_reg("core pc") == RAM_BASE


def test_memory_is_shared_and_host_writes_drop_translated_code(workers_server, wkvm):
    vm, (vcpu,) = new_vm(wkvm)
    load(vm, vcpu, li(REG_A0, 5) + [EBREAK])
    assert isinstance(vcpu.run(), DebugExit)
    assert vcpu.get_reg("core a0") == 5
    # the front end reads the worker's RAM without asking it
    proxy = _proxy(workers_server, vm)
    assert vm.read_memory(RAM_BASE, 8) == proxy.read_memory(RAM_BASE, 8)
    # rewrite the code the worker translated: the next run sees the new code
    load(vm, vcpu, li(REG_A0, 7) + [EBREAK])
    assert isinstance(vcpu.run(), DebugExit)
    assert vcpu.get_reg("core a0") == 7


def test_mmio_completion_and_kick_through_a_worker(workers_server, wkvm):
    vm, (vcpu,) = new_vm(wkvm)
    load(vm, vcpu, mmio_loads())
    exit_ = vcpu.run()
    assert isinstance(exit_, MmioExit) and exit_.phys_addr == MMIO + 8
    exit_.value = 0x1122334455667788
    exit_ = vcpu.run()
    assert isinstance(exit_, MmioExit) and exit_.phys_addr == MMIO
    exit_.value = 0xFFFFFFFF
    assert isinstance(vcpu.run(), DebugExit)
    assert vcpu.get_reg("core a1") == 0x1122334455667788
    assert vcpu.get_reg("core a2") == (1 << 64) - 1
    vm2, (spin,) = new_vm(wkvm)
    load(vm2, spin, [jump_self()])
    timer = threading.Timer(0.5, spin.kick)
    timer.start()
    try:
        exit_ = spin.run()  # no budget: only the kick ends it
    finally:
        timer.join()
    assert isinstance(exit_, IntrExit) and exit_.why == "kick"


def test_sigkill_of_a_worker_during_a_run(workers_server, wkvm):
    doomed, (spin,) = new_vm(wkvm)
    other, (busy,) = new_vm(wkvm)
    pd, po = _proxy(workers_server, doomed), _proxy(workers_server, other)
    assert pd.worker is not po.worker
    load(doomed, spin, [jump_self()])
    load(other, busy, LOOP_EBREAK)
    outcome: List[BaseException] = []

    def run_forever() -> None:
        try:
            spin.run()
        except BaseException as exc:  # noqa: BLE001 (inspected below)
            outcome.append(exc)

    runner = threading.Thread(target=run_forever)
    runner.start()
    time.sleep(0.5)  # the Run is in its worker's slices now
    victim = pd.worker.pid
    os.kill(victim, signal.SIGKILL)
    runner.join(30)
    assert not runner.is_alive()
    err = outcome[0]
    assert isinstance(err, KvmError) and err.code == grpc.StatusCode.UNAVAILABLE
    assert err.errno == errno.EHOSTDOWN and "signal 9" in err.message
    # the other worker's VM runs to its end, health stays SERVING
    assert isinstance(busy.run(), DebugExit)
    assert _serving(workers_server) == health_pb2.HealthCheckResponse.SERVING
    # the lost VM answers UNAVAILABLE (not NOT_FOUND) until destroyed
    _lost(lambda: spin.get_reg("core pc"))
    _lost(lambda: doomed.read_memory(RAM_BASE, 4))
    _lost(spin.run)
    doomed.destroy()
    with pytest.raises(KvmError) as info:
        spin.get_reg("core pc")
    assert info.value.code == grpc.StatusCode.NOT_FOUND
    # a replacement worker takes new VMs
    assert workers_server.server is not None
    pool = workers_server.server.workers
    assert pool is not None
    deadline = time.monotonic() + 30
    while victim in pool.pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert victim not in pool.pids() and sorted(pool.restarts) == [0, 1]
    fresh, (vcpu,) = new_vm(wkvm)
    load(fresh, vcpu, LOOP_EBREAK)
    assert isinstance(vcpu.run(), DebugExit)


def test_a_hung_worker_is_detected_and_replaced(workers_server, wkvm):
    vm, (vcpu,) = new_vm(wkvm)
    proxy = _proxy(workers_server, vm)
    victim = proxy.worker.pid
    _stop(victim)
    try:
        err = _lost(lambda: vcpu.get_reg("core pc"))  # waits until the heartbeat gives up
        assert "heartbeat" in err.message
    finally:
        try:
            os.kill(victim, signal.SIGCONT)
        except ProcessLookupError:
            pass
    assert workers_server.server is not None
    pool = workers_server.server.workers
    assert pool is not None
    deadline = time.monotonic() + 30
    while victim in pool.pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert victim not in pool.pids()
    fresh, (v2,) = new_vm(wkvm)
    load(fresh, v2, LOOP_EBREAK)
    assert isinstance(v2.run(), DebugExit)
    assert _serving(workers_server) == health_pb2.HealthCheckResponse.SERVING


def test_a_worker_python_that_is_not_there_fails_the_server_start():
    with pytest.raises(OSError):
        WorkerPool(1, "/nonexistent/python")


def test_per_worker_gauges(workers_server, wkvm):
    vm, (vcpu,) = new_vm(wkvm)
    load(vm, vcpu, LOOP_EBREAK)
    assert isinstance(vcpu.run(), DebugExit)
    assert workers_server.server is not None and workers_server.server.workers is not None
    families = {f.name: f for f in WorkerCollector(workers_server.server.workers).collect()}
    vms = {s.labels["worker"]: s.value for s in families["rvkvm_worker_vms"].samples}
    busy = {s.labels["worker"]: s.value for s in families["rvkvm_worker_busy_vcpus"].samples}
    index = str(_proxy(workers_server, vm).worker.index)
    assert vms[index] == 1 and sum(vms.values()) == 1
    assert busy[index] == 1  # it ran a slice within the last second
    assert {s.value for s in families["rvkvm_worker_restarts"].samples} == {0}


def test_server_flags_choose_the_workers():
    from rvkvm.server.__main__ import _parse

    args = _parse(["--workers", "3", "--worker-python", "/usr/bin/python3"])
    assert (args.workers, args.worker_python) == (3, "/usr/bin/python3")
    assert _parse(["--workers", "0"]).workers == 0
    with pytest.raises(SystemExit):
        _parse(["--workers", "-1"])
