"""vCPU and VM statistics (KVM_GET_STATS_FD): each counter counts what its
KVM namesake counts, the descriptors carry KVM's flags, and rvkvm's own
counters report the retired instructions and the engine's work."""

from __future__ import annotations

import threading
import time

from rvkvm.server.kvm import exits as X
from rvkvm.server.kvm import parse_name
from rvkvm.server.kvm.stats import (
    KVM_STATS_TYPE_CUMULATIVE,
    KVM_STATS_TYPE_INSTANT,
    KVM_STATS_UNIT_BOOLEAN,
    KVM_STATS_UNIT_BYTES,
    KVM_STATS_UNIT_SECONDS,
    VCPU_STATS,
    VM_STATS,
)
from rvkvm.server.kvm.vcpu import BUSY
from tests.emulator import rvasm as A

from .kvm_runtime_guest import (
    A0,
    DATA,
    EBREAK,
    MMIO,
    RAM_BASE,
    RAM_SIZE,
    REG_A0,
    REG_A1,
    WFI,
    jump_self,
    ld,
    li,
    load,
    new_vm,
    run_to_end,
    sbi_call,
    sd,
)

SBI_BASE, SBI_GET_SPEC_VERSION = 0x10, 0
SEIE = 1 << 9


def _by_name(descs):
    return {d.name: d for d in descs}


def test_descriptors_carry_kvms_flags_and_exponents():
    descs = _by_name(VCPU_STATS)
    # KVM_GENERIC_VCPU_STATS: STATS_DESC_TIME_NSEC, STATS_DESC_IBOOLEAN, STATS_DESC_COUNTER
    assert (descs["halt_wait_ns"].flags, descs["halt_wait_ns"].exponent) == (
        KVM_STATS_TYPE_CUMULATIVE | KVM_STATS_UNIT_SECONDS, -9)
    assert descs["blocking"].flags == KVM_STATS_TYPE_INSTANT | KVM_STATS_UNIT_BOOLEAN == 0x41
    assert descs["exits"].flags == 0 and descs["exits"].exponent == 0
    assert _by_name(VM_STATS)["rvkvm_memory_bytes"].flags == (
        KVM_STATS_TYPE_INSTANT | KVM_STATS_UNIT_BYTES)
    # KVM's own rows keep Linux's order; rvkvm's follow them
    names = [d.name for d in VCPU_STATS]
    assert names.index("ecall_exit_stat") < names.index("mmio_exit_user") < names.index(
        "exits") < names.index("store_access_exits") < names.index("rvkvm_instructions")


def test_stats_are_in_descriptor_order_and_start_at_zero():
    vm, (vcpu,) = new_vm()
    stats = vcpu.stats()
    assert list(stats) == [d.name for d in VCPU_STATS]
    assert set(stats.values()) == {0}
    assert list(vm.stats()) == [d.name for d in VM_STATS]
    assert vm.stats() == {"rvkvm_vcpus": 1, "rvkvm_memory_slots": 1,
                          "rvkvm_memory_bytes": RAM_SIZE, "rvkvm_instructions": 0}


def test_exits_are_counted_by_kind():
    vm, (vcpu,) = new_vm()
    handler = RAM_BASE + 0x800
    vm.write_memory(handler, A.words([EBREAK]))
    vcpu.set_value(parse_name("csr stvec"), handler)
    vm.register_coalesced_mmio(MMIO + 0x100, 8)
    program = (sbi_call(SBI_BASE, SBI_GET_SPEC_VERSION)  # in-kernel SBI
               + li(REG_A0, MMIO) + [ld(REG_A1, REG_A0, 0)]  # MMIO load: a user exit
               + [sd(REG_A1, REG_A0, 0x100)]  # into the coalesced zone: a kernel one
               + li(REG_A0, DATA) + [ld(REG_A1, REG_A0, 1)])  # misaligned: KVM
    # redirects it to stvec (since 6.18 illegal instructions go there directly),
    # whose ebreak ends the run
    load(vm, vcpu, program)
    exit_ = vcpu.run(budget=10_000, idle_timeout=0.0)
    assert isinstance(exit_, X.MmioExit) and not exit_.is_write
    run_to_end(vcpu)
    stats = vcpu.stats()
    assert stats["ecall_exit_stat"] == 1
    assert (stats["mmio_exit_user"], stats["mmio_exit_kernel"]) == (1, 1)
    assert stats["load_misaligned_exits"] == 1
    assert stats["instr_illegal_exits"] == stats["store_misaligned_exits"] == 0
    # ecall, MMIO load, coalesced store, misaligned load, ebreak: each
    # stopped the guest for the host
    assert stats["exits"] == 5
    assert stats["rvkvm_runs"] == 2 and stats["signal_exits"] == 0
    assert stats["rvkvm_instructions"] == vm.stats()["rvkvm_instructions"] > len(program) - 5


def test_instructions_retired_are_counted_exactly():
    vm, (vcpu,) = new_vm()
    load(vm, vcpu, [A.addi(REG_A0, REG_A0, 1), A.j(0, -4)])
    for _ in range(3):
        exit_ = vcpu.run(budget=10_000, idle_timeout=0.0)
        assert isinstance(exit_, X.IntrExit) and exit_.why == X.INTR_BUDGET
    assert vcpu.stats()["rvkvm_instructions"] == 30_000
    # the loop's addi ran 15,000 times
    assert vcpu.get_value(A0) == 15_000


def test_the_fast_engine_reports_its_work():
    vm, (vcpu,) = new_vm()
    assert vm.engine == "fast"
    load(vm, vcpu, [A.addi(REG_A0, REG_A0, 1), A.j(0, -4)])
    vcpu.run(budget=200_000, idle_timeout=0.0)
    stats = vcpu.stats()
    assert stats["rvkvm_tier1_blocks"] + stats["rvkvm_regions_translated"] > 0
    assert stats["rvkvm_tier1_ns"] + stats["rvkvm_translate_ns"] > 0


def test_a_halted_vcpu_is_blocking_and_its_halt_time_grows():
    vm, (vcpu,) = new_vm()
    load(vm, vcpu, [WFI, EBREAK])
    exit_ = vcpu.run(budget=1000, idle_timeout=0.0)
    assert isinstance(exit_, X.IntrExit) and exit_.why == X.INTR_IDLE
    first = vcpu.stats()
    assert first["blocking"] == 1 and first["wfi_exit_stat"] == 1
    time.sleep(0.01)
    second = vcpu.stats()
    assert second["halt_wait_ns"] >= first["halt_wait_ns"] + 10_000_000
    assert second["halt_wakeup"] == 0
    # runs of a halted vCPU are no new exits
    assert vcpu.run(budget=1000, idle_timeout=0.0).why == X.INTR_IDLE
    assert vcpu.stats()["exits"] == first["exits"] == 1
    # an interrupt ends the halt (pending and enabled in sie is enough: WFI
    # resumes on it with sstatus.SIE clear, and ebreak ends the run)
    vcpu.set_value(parse_name("csr sie"), SEIE)
    vcpu.interrupt(0xFFFF_FFFF)
    run_to_end(vcpu)
    third = vcpu.stats()
    assert third["blocking"] == 0 and third["halt_wakeup"] == 1
    assert third["halt_wait_ns"] >= second["halt_wait_ns"]


def test_a_kick_in_the_guest_is_a_signal_exit():
    vm, (vcpu,) = new_vm()
    load(vm, vcpu, [jump_self()])
    vcpu.kick()  # before entry: immediate_exit, not a signal exit
    assert vcpu.run(budget=1000).why == X.INTR_KICK
    assert vcpu.stats()["signal_exits"] == 0
    # a kick once the vCPU is in the guest is a signal exit
    def kick_when_entered() -> None:
        while vcpu.stats()["rvkvm_runs"] < 1:  # the kicked run above did not enter
            time.sleep(0.001)
        vcpu.kick()
    kicker = threading.Thread(target=kick_when_entered)
    kicker.start()
    assert vcpu.run(budget=10**12, idle_timeout=0.0).why == X.INTR_KICK
    kicker.join()
    assert vcpu.stats()["signal_exits"] == 1


def test_call_nowait_answers_at_once_or_says_busy():
    vm, (vcpu,) = new_vm()
    vcpu.set_value(A0, 7)
    assert vcpu.call_nowait(vcpu.get_value, A0) == 7
    with vcpu._mutex:  # as a running slice holds it, from another thread
        result = []
        t = threading.Thread(target=lambda: result.append(vcpu.call_nowait(vcpu.get_value, A0)))
        t.start()
        t.join()
    assert result == [BUSY]
