"""KVM_RUN over gRPC: exits, completions (unary and RunStream), kicks,
cancellation and deadlines, the asyncio client."""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from rvkvm.client import Kvm, KvmError
from rvkvm.client.exits import (
    INTR_BUDGET,
    INTR_IDLE,
    INTR_KICK,
    DebugExit,
    IntrExit,
    MmioExit,
    SbiExit,
    SystemEventExit,
)
from tests.emulator import rvasm as A

from .guest import (
    EBREAK,
    MMIO,
    RAM_BASE,
    REG_A0,
    REG_A1,
    REG_A2,
    WFI,
    jump_self,
    li,
    load,
    mmio_loads,
    new_vm,
    sbi_call,
    sw,
)

SBI_EXT_DBCN = 0x4442434E
SBI_EXT_SRST = 0x53525354


def _answer_mmio_loads(run):
    exit_ = run()
    assert isinstance(exit_, MmioExit) and not exit_.is_write
    assert (exit_.phys_addr, exit_.len) == (MMIO + 8, 8)
    exit_.value = 0x1122334455667788
    exit_ = run()
    assert isinstance(exit_, MmioExit) and (exit_.phys_addr, exit_.len) == (MMIO, 4)
    exit_.value = 0x8000_0001
    assert isinstance(run(), DebugExit)


def test_mmio_exit_and_completion_unary(engine_kvm):
    vm, (vcpu,) = new_vm(engine_kvm)
    load(vm, vcpu, mmio_loads())
    _answer_mmio_loads(vcpu.run)
    assert vcpu.get_reg("core a1") == 0x1122334455667788
    assert vcpu.get_reg("core a2") == 0xFFFF_FFFF_8000_0001  # lw sign-extends
    vm.destroy()


def test_mmio_exit_and_completion_run_stream(engine_kvm):
    vm, (vcpu,) = new_vm(engine_kvm)
    load(vm, vcpu, mmio_loads())
    with vcpu.run_stream() as stream:
        _answer_mmio_loads(stream.run)
    assert vcpu.get_reg("core a1") == 0x1122334455667788
    vm.destroy()


def test_mmio_store_carries_the_data(engine_kvm):
    vm, (vcpu,) = new_vm(engine_kvm)
    load(vm, vcpu, li(REG_A0, MMIO) + li(REG_A1, 0xCAFEF00D) + [sw(REG_A1, REG_A0, 4), EBREAK])
    exit_ = vcpu.run()
    assert isinstance(exit_, MmioExit) and exit_.is_write
    assert (exit_.phys_addr, exit_.len, exit_.value) == (MMIO + 4, 4, 0xCAFEF00D)
    assert isinstance(vcpu.run(), DebugExit)
    vm.destroy()


def test_sbi_exit_and_system_event(engine_kvm):
    vm, (vcpu,) = new_vm(engine_kvm)
    vcpu.set_reg("sbi_ext DBCN", 1)
    save_a1 = A.addi(REG_A2, REG_A1, 0)
    load(vm, vcpu, sbi_call(SBI_EXT_DBCN, 2, ord("!")) + [save_a1] + sbi_call(SBI_EXT_SRST, 0, 0, 1))
    exit_ = vcpu.run()
    assert isinstance(exit_, SbiExit)
    assert (exit_.extension_id, exit_.function_id, exit_.args[0]) == (SBI_EXT_DBCN, 2, ord("!"))
    exit_.ret = [0, 42]
    exit_ = vcpu.run()
    assert exit_ == SystemEventExit(type=1, data=[1])  # shutdown, reason system failure
    assert vcpu.get_reg("core a2") == 42
    vm.destroy()


def test_completion_for_the_wrong_exit_is_einval(kvm):
    vm, (vcpu,) = new_vm(kvm)
    load(vm, vcpu, mmio_loads())
    vcpu.last_exit = SbiExit(0, 0, [])  # pretend the last exit was an SBI call
    with pytest.raises(KvmError) as info:
        vcpu.run()
    assert info.value.errno == 22
    vm.destroy()


def test_budget_and_idle_exits(engine_kvm):
    vm, (vcpu,) = new_vm(engine_kvm)
    load(vm, vcpu, [jump_self()])
    assert vcpu.run(budget=50_000) == IntrExit(INTR_BUDGET)
    load(vm, vcpu, [WFI, jump_self()])
    assert vcpu.run(idle_timeout=0.05) == IntrExit(INTR_IDLE)
    vm.destroy()


def test_kick_ends_a_running_vcpu(kvm):
    vm, (vcpu,) = new_vm(kvm)
    load(vm, vcpu, [jump_self()])
    timer = threading.Timer(0.3, vcpu.kick)
    timer.start()
    start = time.monotonic()
    assert vcpu.run() == IntrExit(INTR_KICK)  # no budget: only the kick ends it
    assert time.monotonic() - start < 20
    vm.destroy()


def test_deadline_kicks_the_vcpu_and_keeps_it_usable(kvm):
    vm, (vcpu,) = new_vm(kvm)
    load(vm, vcpu, [jump_self()])
    with pytest.raises(KvmError) as info:
        vcpu.run(timeout=0.3)
    assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    # the cancelled Run left the vCPU consistent: other ioctls and Run work
    assert vcpu.get_reg("core pc") == RAM_BASE
    exit_ = vcpu.run(budget=1000)
    assert isinstance(exit_, IntrExit)
    vm.destroy()


def test_cancelled_run_resumes_where_it_stopped(kvm):
    vm, (vcpu,) = new_vm(kvm)
    # spin for a while, then do an MMIO load
    spin = li(REG_A0, 300_000) + [0xFFF50513, 0xFE051EE3]  # addi a0,a0,-1; bnez a0,-4
    load(vm, vcpu, spin + mmio_loads())
    with pytest.raises(KvmError):
        vcpu.run(timeout=0.001)  # cancelled while spinning

    def run():  # the kick of the cancellation may still end one Run, as a late signal does
        exit_ = vcpu.run()
        return vcpu.run() if exit_ == IntrExit(INTR_KICK) else exit_

    _answer_mmio_loads(run)
    assert vcpu.get_reg("core a1") == 0x1122334455667788
    vm.destroy()


def test_asyncio_client(server):
    server.call(_asyncio_client(server.address))


async def _asyncio_client(address):
    async with grpc.aio.insecure_channel(address) as channel:
        kvm = Kvm(channel, timeout=30)
        vm = await kvm.create_vm()
        await vm.set_user_memory_region(0, RAM_BASE, 0x10000)
        vcpu = await vm.create_vcpu(0)
        await vm.write_memory(RAM_BASE, bytes(16))
        await vcpu.set_reg("core pc", RAM_BASE)
        assert await vcpu.get_reg("core pc") == RAM_BASE
        await vm.write_memory(RAM_BASE, A.words(mmio_loads()))
        await vcpu.set_guest_debug(1)
        async with vcpu.run_stream() as stream:
            exit_ = await stream.run()
            assert isinstance(exit_, MmioExit)
            exit_.value = 7
            exit_ = await stream.run()
            exit_.value = 9
            assert isinstance(await stream.run(), DebugExit)
        assert await vcpu.get_reg("core a1") == 7
        with pytest.raises(KvmError) as info:
            await vcpu.get_one_reg(0x1)
        assert info.value.code == grpc.StatusCode.NOT_FOUND
        await vm.destroy()


def test_other_rpcs_stay_responsive_while_a_vcpu_runs(kvm):
    vm, (vcpu,) = new_vm(kvm)
    load(vm, vcpu, [jump_self()])
    result = []
    runner = threading.Thread(target=lambda: result.append(vcpu.run()))
    runner.start()
    time.sleep(0.2)
    start = time.monotonic()
    assert kvm.get_api_version() == 12
    assert vcpu.get_reg("core pc") == RAM_BASE  # waits for the end of one slice at most
    other, (other_vcpu,) = new_vm(kvm)
    assert other_vcpu.get_reg("core pc") == 0
    assert time.monotonic() - start < 5
    vcpu.kick()
    runner.join(20)
    assert result == [IntrExit(INTR_KICK)]
    vm.destroy()
    other.destroy()
