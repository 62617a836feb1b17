"""GetStats (KVM_GET_STATS_FD) over gRPC: VM and vCPU statistics with
KVM's descriptors, read while the vCPU runs; the client library and the
boot progress line count retired instructions with it."""

from __future__ import annotations

import io
import threading
import time

import grpc
import pytest

from rvkvm.client import KvmError
from rvkvm.client.boot import Progress
from rvkvm.client.cli import HELLO_GUEST
from rvkvm.client.exits import INTR_BUDGET, INTR_KICK, IntrExit
from rvkvm.client.vmm import Vmm
from rvkvm.v1 import kvm_pb2 as pb
from rvkvm.v1 import kvm_pb2_grpc as pb_grpc
from tests.emulator import rvasm as A

from .guest import RAM_SIZE, REG_A0, jump_self, load, new_vm

LOOP = [A.addi(REG_A0, REG_A0, 1), A.j(0, -4)]


def test_vcpu_and_vm_statistics_count_a_guests_work(kvm):
    vm, (vcpu,) = new_vm(kvm)
    load(vm, vcpu, LOOP)
    exit_ = vcpu.run(budget=50_000)
    assert isinstance(exit_, IntrExit) and exit_.why == INTR_BUDGET
    stats = vcpu.get_stats()
    assert stats["rvkvm_instructions"] == 50_000 and stats["rvkvm_runs"] >= 1
    assert stats["exits"] >= 1 and stats["ecall_exit_stat"] == 0
    assert vm.get_stats() == {"rvkvm_vcpus": 1, "rvkvm_memory_slots": 1,
                              "rvkvm_memory_bytes": RAM_SIZE, "rvkvm_instructions": 50_000}
    vm.destroy()


def test_descriptors_and_ids_are_kvms(channel, kvm):
    vm, (vcpu,) = new_vm(kvm)
    stub = pb_grpc.KvmStub(channel)
    reply = stub.GetStats(pb.GetStatsRequest(vcpu=vcpu.ref))
    assert reply.id == f"kvm-{vm.id}/vcpu_0"
    by_name = {s.name: s for s in reply.stats}
    halt = by_name["halt_wait_ns"]
    assert (halt.type, halt.unit, halt.exponent, halt.base_pow2, halt.flags) == (
        pb.STAT_TYPE_CUMULATIVE, pb.STAT_UNIT_SECONDS, -9, False, 0x20)
    blocking = by_name["blocking"]
    assert (blocking.type, blocking.unit, blocking.flags) == (
        pb.STAT_TYPE_INSTANT, pb.STAT_UNIT_BOOLEAN, 0x41)
    assert by_name["exits"].help and by_name["rvkvm_instructions"].unit == pb.STAT_UNIT_NONE
    reply = stub.GetStats(pb.GetStatsRequest(vm_id=vm.id))
    assert reply.id == f"kvm-{vm.id}"
    assert [s.name for s in reply.stats][:1] == ["rvkvm_vcpus"]
    assert {s.name: s.unit for s in reply.stats}["rvkvm_memory_bytes"] == pb.STAT_UNIT_BYTES
    vm.destroy()


def test_unknown_targets_fail_as_other_calls_do(kvm):
    vm, (vcpu,) = new_vm(kvm)
    with pytest.raises(KvmError) as info:
        kvm.vm("vm-nonesuch").get_stats()
    assert info.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(KvmError) as info:
        vm.vcpu(7).get_stats()
    assert info.value.code == grpc.StatusCode.NOT_FOUND
    vm.destroy()


def test_statistics_answer_while_the_vcpu_runs(kvm):
    vm, (vcpu,) = new_vm(kvm)
    load(vm, vcpu, [jump_self()])
    done = []
    runner = threading.Thread(target=lambda: done.append(vcpu.run(budget=0, timeout=120)))
    runner.start()
    try:
        seen = []
        end = time.monotonic() + 60
        while len(set(seen)) < 3 and time.monotonic() < end and not done:
            seen.append(vcpu.get_stats()["rvkvm_instructions"])
        assert not done, "the Run ended by itself"
        assert len(set(seen)) >= 3 and seen == sorted(seen), seen  # it grew while running
    finally:
        vcpu.kick()
        runner.join(60)
    assert isinstance(done[0], IntrExit) and done[0].why == INTR_KICK
    vm.destroy()


def test_the_boot_progress_counts_retired_instructions(kvm):
    vmm = Vmm(kvm, ram_size=4 << 20, console=io.BytesIO())
    try:
        vmm.boot(vmm.load_elf(HELLO_GUEST), vmm.place_dtb(vmm.device_tree()))
        assert vmm.run(timeout=60).clean_shutdown
        retired = sum(v.get_stats()["rvkvm_instructions"] for v in vmm.vcpus)
        assert retired > 0 and vmm.instructions_retired() == retired
        progress = Progress(vmm, io.StringIO(), enabled=False)
        assert progress.instructions() == retired
        assert progress.line().startswith(f"rvkvm: {retired / 1e6:.1f} M instructions, ")
        # the hello guest prints through SBI DBCN: ecalls the stats saw
        assert vmm.vcpus[0].get_stats()["ecall_exit_stat"] > 0
    finally:
        vmm.close()
