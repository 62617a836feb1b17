"""The run session of the gRPC adapter, without a network: slices bounded in
instructions and wall time, numbered exits kept until answered, the fair
scheduler, idle vCPUs that hold no thread."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from rvkvm.server.kvm import KvmError
from rvkvm.server.kvm import exits as X
from rvkvm.server.rpc.registry import Lifecycle, Pacing, VcpuSession
from rvkvm.server.rpc.scheduler import Account, FairScheduler, LoopWatch
from rvkvm.v1 import kvm_pb2 as pb
from tests.emulator import rvasm as A
from tests.server.kvm_runtime_guest import (
    A1,
    PC,
    RAM_BASE,
    T0,
    T1,
    WFI,
    jump_self,
    li,
    load,
    lw,
    new_vm,
    sw,
)

from .guest import mmio_loads

OWNER = "test"


@pytest.fixture
def scheduler():
    sched = FairScheduler(2)
    yield sched
    sched.shutdown()


def _session(scheduler, program, lifecycle=None):
    vm, (vcpu,) = new_vm()
    load(vm, vcpu, program)
    return VcpuSession(vcpu, scheduler, lifecycle or Lifecycle(), Pacing(run_slice=1000))


def _completion(seq=None, mmio=None):
    msg = pb.Completion()
    if seq is not None:
        msg.exit_seq = seq
    if mmio is not None:
        msg.mmio.data = mmio.to_bytes(8, "little")
    return msg


def self_modifying_loop():
    """Stores into its own code forever (each store drops the translation)."""
    return li(T0, RAM_BASE) + [lw(T1, T0, 0), sw(T1, T0, 0), A.j(0, -4)]


async def test_exit_of_a_cancelled_run_is_delivered_by_the_next_run(scheduler):
    session = _session(scheduler, mmio_loads())
    vcpu = session.vcpu
    # The race under test: the client cancels while a slice runs, and the
    # slice still ends in a real exit (the preemption came too late for it).
    gate = threading.Event()
    real_run = vcpu.run
    vcpu.run = lambda *args: gate.wait(10) and real_run(*args)
    vcpu.preempt = lambda: None
    task = asyncio.ensure_future(session.run(_completion(0), 0, 0.0, OWNER))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gate.set()
    # the retry names exit 0 again: it gets exit 1, not run again
    lost, seq, _ = await session.run(_completion(0), 0, 0.0, OWNER)
    assert isinstance(lost, X.MmioExit) and lost.len == 8 and seq == 1
    again, seq, _ = await session.run(_completion(0), 0, 0.0, OWNER)
    assert again is lost and seq == 1  # as often as the reply is lost
    nxt, seq, _ = await session.run(_completion(1, mmio=6), 0, 0.0, OWNER)
    assert isinstance(nxt, X.MmioExit) and nxt.len == 4 and seq == 2
    assert vcpu.get_value(A1) == 6


async def test_a_completion_for_another_exit_is_eproto(scheduler):
    session = _session(scheduler, mmio_loads())
    exit_, seq, _ = await session.run(_completion(0), 0, 0.0, OWNER)
    assert seq == 1
    for wrong in (2, 5, 1 << 63):
        with pytest.raises(KvmError) as info:
            await session.run(_completion(wrong, mmio=1), 0, 0.0, OWNER)
        assert info.value.name == "EPROTO" and info.value.exit_seq == 1
    exit_, seq, _ = await session.run(_completion(1, mmio=3), 0, 0.0, OWNER)
    assert seq == 2 and session.vcpu.get_value(A1) == 3  # the right one still applies


async def test_without_exit_seq_the_old_rule_holds(scheduler):
    session = _session(scheduler, mmio_loads())
    gate = threading.Event()
    real_run = session.vcpu.run
    session.vcpu.run = lambda *args: gate.wait(10) and real_run(*args)
    session.vcpu.preempt = lambda: None
    task = asyncio.ensure_future(session.run(_completion(), 0, 0.0, OWNER))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gate.set()
    lost, _, _ = await session.run(_completion(mmio=1), 0, 0.0, OWNER)
    assert isinstance(lost, X.MmioExit) and lost.len == 8  # undelivered: returned, not run
    nxt, _, _ = await session.run(_completion(mmio=6), 0, 0.0, OWNER)
    assert isinstance(nxt, X.MmioExit) and nxt.len == 4
    assert session.vcpu.get_value(A1) == 6  # the stale Run's completion was not applied


async def test_cancellation_preempts_without_an_exit(scheduler):
    session = _session(scheduler, [jump_self()])
    task = asyncio.ensure_future(session.run(_completion(0), 0, 0.0, OWNER))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # the cancelled Run made no exit: the retry (answered exit 0) runs on, and
    # the next exit is number 1, a budget exit, not a kick
    exit_, seq, _ = await session.run(_completion(0), 1000, 0.0, OWNER)
    assert exit_.why == X.INTR_BUDGET and seq == 1
    assert session.vcpu.get_value(PC) == RAM_BASE


async def test_budget_is_split_into_slices(scheduler):
    session = _session(scheduler, [jump_self()])
    exit_, seq, _ = await session.run(_completion(0), 5500, 0.0, OWNER)
    assert exit_.why == X.INTR_BUDGET and seq == 1


async def test_idle_vcpus_do_not_hold_threads():
    # more idle vCPUs than threads, all waiting at once; a busy one still runs
    sched = FairScheduler(1)
    try:
        idle = [_session(sched, [WFI, jump_self()]) for _ in range(4)]
        waiting = [asyncio.ensure_future(s.run(_completion(0), 0, 0.3, OWNER)) for s in idle]
        busy = _session(sched, [jump_self()])
        exit_, _, _ = await asyncio.wait_for(busy.run(_completion(0), 3000, 0.0, OWNER), 10)
        assert exit_.why == X.INTR_BUDGET
        assert sched.waiting() == 0
        for exit_, seq, _ in await asyncio.gather(*waiting):
            assert exit_.why == X.INTR_IDLE and seq == 1
    finally:
        sched.shutdown()


async def test_an_interrupt_wakes_a_waiting_run(scheduler):
    session = _session(scheduler, [WFI, jump_self()])
    task = asyncio.ensure_future(session.run(_completion(0), 0, 0.0, OWNER))
    await asyncio.sleep(0.1)
    assert not task.done() and session.vcpu.idle  # waiting, no slice queued
    session.vcpu.kick()
    exit_, seq, _ = await asyncio.wait_for(task, 10)
    assert exit_.why == X.INTR_KICK and seq == 1


async def test_drain_ends_runs_with_a_shutdown_exit(scheduler):
    lifecycle = Lifecycle()
    busy = _session(scheduler, [jump_self()], lifecycle)
    idle = _session(scheduler, [WFI, jump_self()], lifecycle)
    tasks = [asyncio.ensure_future(s.run(_completion(0), 0, 0.0, OWNER)) for s in (busy, idle)]
    await asyncio.sleep(0.1)
    lifecycle.draining = True
    for session in (busy, idle):
        session.wake()
        session.vcpu.preempt()
    for exit_, seq, _ in await asyncio.wait_for(asyncio.gather(*tasks), 10):
        assert exit_.why == X.INTR_SHUTDOWN and seq == 1
    with pytest.raises(KvmError) as info:
        await busy.run(_completion(1), 0, 0.0, OWNER)
    assert info.value.name == "ESHUTDOWN"
    assert busy.vcpu.get_value(PC) == RAM_BASE  # state stays readable


def test_a_slice_is_bounded_in_wall_time():
    vm, (vcpu,) = new_vm()
    load(vm, vcpu, self_modifying_loop())
    # far more instructions than this guest retires in the slice's time
    exit_ = vcpu.run(10_000_000, 0, time.monotonic() + 0.05)
    assert exit_.why == X.INTR_SLICE
    assert 0 < vcpu.last_run_insns < 10_000_000
    pc = vcpu.get_value(PC)
    assert RAM_BASE <= pc < RAM_BASE + 0x40


def test_preempt_ends_only_the_current_slice():
    vm, (vcpu,) = new_vm()
    load(vm, vcpu, [jump_self()])
    threading.Timer(0.05, vcpu.preempt).start()
    assert vcpu.run(1 << 60, 0).why == X.INTR_SLICE
    assert vcpu.run(5000, 0).why == X.INTR_BUDGET  # forgotten: not a sticky kick


def test_scheduler_takes_turns_by_owner():
    sched = FairScheduler(1)
    order = []
    gate = threading.Event()
    try:
        blocker = sched.submit("x", gate.wait, 10)
        futures = [sched.submit(owner, order.append, f"{owner}{i}")
                   for owner, i in (("a", 1), ("a", 2), ("a", 3), ("b", 1), ("c", 1),
                                    ("b", 2))]
        gate.set()
        blocker.result(10)
        for future in futures:
            future.result(10)
    finally:
        sched.shutdown()
    # round-robin over owners, in order within an owner
    assert order == ["a1", "b1", "c1", "a2", "b2", "a3"]


def test_a_hundred_busy_jobs_of_one_owner_do_not_starve_another_owners_one():
    """A tenant with 100 busy vCPUs and another with one: every job
    resubmits itself when it ran (as a busy session's next slice does), and
    the turns alternate between the two owners."""
    sched = FairScheduler(1)
    order = []
    done = threading.Event()
    gate = threading.Event()

    def slice_of(owner, vcpu):
        order.append(owner)
        if len(order) >= 400:
            done.set()
        elif not done.is_set():
            sched.submit(owner, slice_of, owner, vcpu)

    try:
        blocker = sched.submit("x", gate.wait, 10)
        for vcpu in range(100):
            sched.submit("busy", slice_of, "busy", vcpu)
        sched.submit("lone", slice_of, "lone", 0)
        gate.set()
        blocker.result(10)
        assert done.wait(30)
    finally:
        sched.shutdown()
    first = order[:400]
    assert first.count("lone") == 200
    assert all(a != b for a, b in zip(first, first[1:]))  # strictly alternating


class _FakeClock:
    """What jobs' run time is measured with: each job advances it by what
    it says it ran (binary fractions: the sums are exact)."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


SLICE = 1 / 512


def test_a_vcpu_that_ran_little_goes_before_the_busy_ones_of_its_owner():
    """Within an owner the job whose account ran least goes first: 50 busy
    sessions take turns; a new one (a hello guest's first Run), placed at
    the owner's floor less the latency credit, goes next instead of behind
    the 50, runs until it has caught up (credit / slice turns), then takes
    its turn like the others."""
    clock = _FakeClock()
    sched = FairScheduler(1, latency_credit=5 * SLICE, clock=clock)
    order = []
    gate = threading.Event()
    done = threading.Event()
    busy = [Account() for _ in range(50)]
    fresh = Account()

    def slice_of(name):
        order.append(name)
        clock.now += SLICE

    def session(name, account):
        """A busy session: its next slice is submitted when the last one
        ended (and was charged), as a Run's next turn is."""
        def again(_future):
            if name == "busy0" and len(order) > 500 and "fresh" not in order:
                session("fresh", fresh)  # the fresh session arrives while the busy ones run
            if len(order) >= 800:
                done.set()
            else:
                session(name, account)
        sched.submit(OWNER, slice_of, name, account=account).add_done_callback(again)

    try:
        blocker = sched.submit("x", gate.wait, 10)
        for i, account in enumerate(busy):
            session(f"busy{i}", account)
        gate.set()
        blocker.result(10)
        assert done.wait(30)
    finally:
        sched.shutdown()
    arrived = order.index("fresh")
    assert arrived == 501 and order[arrived - 1] == "busy0"  # right after the slice that woke it
    # the busy sessions took turns, each once in every 50 of theirs
    for start in range(0, 500, 50):
        assert sorted(order[start:start + 50]) == sorted(f"busy{i}" for i in range(50))
    # 5 turns to catch up, then one in every 51
    assert order[arrived:arrived + 6] == ["fresh"] * 5 + ["busy1"]
    later = order[arrived + 5:arrived + 5 + 51 * 5]
    assert later.count("fresh") == 5 and all(later.count(f"busy{i}") == 5 for i in range(50))


def test_an_account_left_behind_while_idle_is_raised_to_the_owners_floor():
    sched = FairScheduler(1, latency_credit=0.01)
    gate = threading.Event()
    try:
        blocker = sched.submit("x", gate.wait, 10)
        ahead = Account()
        ahead.vruntime = 5.0
        sched.submit(OWNER, lambda: None, account=ahead)
        gate.set()
        blocker.result(10)
        sched.submit(OWNER, lambda: None, account=ahead).result(10)  # the floor is 5 now
        sleeper = Account()  # idle for long: 0 s
        sched.submit(OWNER, lambda: None, account=sleeper).result(10)
    finally:
        sched.shutdown()
    assert 5.0 - 0.01 <= sleeper.vruntime < 5.0


async def test_a_run_thread_waits_while_the_event_loop_has_work():
    # the loop accepts calls and answers ONE_REG: a slice taken while it is
    # busy starts only when it waits for I/O again
    scheduler = FairScheduler(1, watch=LoopWatch(max_pause=30.0))
    scheduler.watch.start()
    loop_busy = [True]
    try:
        await asyncio.sleep(0.01)  # the worker is waiting for a job
        job = scheduler.submit(OWNER, lambda: loop_busy[0])
        end = time.monotonic() + 0.05
        while time.monotonic() < end:  # 50 ms of work on the loop, no await
            pass
        loop_busy[0] = False
        assert await asyncio.wrap_future(job) is False
        assert scheduler.watch.pauses == 1
    finally:
        await scheduler.watch.stop()
        scheduler.shutdown()
