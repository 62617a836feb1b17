"""The run session of the gRPC adapter, without a network: slices, and the
exit a cancelled Run produced but could not deliver."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from rvkvm.server.kvm import exits as X
from rvkvm.server.rpc.registry import Pacing, VcpuSession
from rvkvm.v1 import kvm_pb2 as pb
from tests.server.kvm_runtime_guest import A1, PC, WFI, jump_self, load, new_vm

from .guest import mmio_loads

NO_COMPLETION = pb.Completion()


@pytest.fixture
def pool():
    with ThreadPoolExecutor(2) as executor:
        yield executor


def _session(program):
    vm, (vcpu,) = new_vm()
    load(vm, vcpu, program)
    return VcpuSession(vcpu, Pacing(run_slice=1000, idle_slice=0.01))


def _mmio_data(value):
    return pb.Completion(mmio=pb.MmioCompletion(data=value.to_bytes(8, "little")))


async def test_exit_of_a_cancelled_run_is_delivered_by_the_next_run(pool):
    session = _session(mmio_loads())
    vcpu = session.vcpu
    # The race under test: the client cancels while a slice runs, and the
    # slice still ends in a real exit (the kick came too late for it).
    gate = threading.Event()
    real_run = vcpu.run
    vcpu.run = lambda *args: gate.wait(10) and real_run(*args)
    vcpu.kick = lambda: None
    task = asyncio.ensure_future(session.run(NO_COMPLETION, 0, 0.0, pool))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gate.set()
    lost = await session.run(_mmio_data(1), 0, 0.0, pool)
    assert isinstance(lost, X.MmioExit) and lost.len == 8  # delivered, not run again
    nxt = await session.run(_mmio_data(6), 0, 0.0, pool)
    assert isinstance(nxt, X.MmioExit) and nxt.len == 4
    assert vcpu.get_value(A1) == 6  # the completion sent with the stale Run was not applied


async def test_budget_is_split_into_slices(pool):
    session = _session([jump_self()])
    exit_ = await session.run(NO_COMPLETION, 5500, 0.0, pool)
    assert isinstance(exit_, X.IntrExit) and exit_.why == X.INTR_BUDGET


async def test_cancellation_kicks_the_vcpu(pool):
    session = _session([jump_self()])
    task = asyncio.ensure_future(session.run(NO_COMPLETION, 0, 0.0, pool))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    exit_ = await session.run(NO_COMPLETION, 1000, 0.0, pool)
    assert isinstance(exit_, X.IntrExit)  # the kick, or the budget: nothing was lost
    assert session.vcpu.get_value(PC) == 0x8000_0000


async def test_idle_vcpus_do_not_hold_threads(pool):
    # more idle vCPUs than threads, all waiting at once; a busy one still runs
    idle = [_session([WFI, jump_self()]) for _ in range(4)]
    waiting = [asyncio.ensure_future(s.run(NO_COMPLETION, 0, 0.3, pool)) for s in idle]
    busy = _session([jump_self()])
    exit_ = await asyncio.wait_for(busy.run(NO_COMPLETION, 3000, 0.0, pool), 10)
    assert exit_.why == X.INTR_BUDGET
    for exit_ in await asyncio.gather(*waiting):
        assert exit_.why == X.INTR_IDLE


def test_a_quantum_runs_slices_back_to_back_on_its_thread():
    vm, (vcpu,) = new_vm()
    load(vm, vcpu, [jump_self()])
    session = VcpuSession(vcpu, Pacing(run_slice=1000, idle_slice=0.01, quantum=0.2))
    exit_, used = session._run_quantum(None)
    # one hand-off to the event loop per quantum, not per slice
    assert exit_.why == X.INTR_BUDGET and used >= 3000 and used % 1000 == 0
    exit_, used = session._run_quantum(2500)
    assert exit_.why == X.INTR_BUDGET and used == 2500  # the last slice is cut to fit


def test_a_quantum_ends_at_the_first_real_exit():
    vm, (vcpu,) = new_vm()
    load(vm, vcpu, mmio_loads())
    session = VcpuSession(vcpu, Pacing(run_slice=1000, idle_slice=0.01, quantum=5.0))
    exit_, used = session._run_quantum(None)
    assert isinstance(exit_, X.MmioExit) and used == 0
