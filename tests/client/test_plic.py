"""The VMM's PLIC against the RISC-V PLIC specification, through its registers."""

from __future__ import annotations

import threading
from typing import Dict, List

import pytest

from rvkvm.client.devices import IER_DLM, IER_ERBFI, RBR_THR_DLL, UART_IRQ, Uart16550
from rvkvm.client.fdt import to_dtb
from rvkvm.client.plic import (
    CONTEXT_BASE,
    CONTEXT_CLAIM,
    CONTEXT_STRIDE,
    CONTEXT_THRESHOLD,
    ENABLE_BASE,
    ENABLE_STRIDE,
    IRQ_S_EXT,
    KVM_INTERRUPT_SET,
    KVM_INTERRUPT_UNSET,
    PENDING_BASE,
    UNWIRED,
    Plic,
)


def plic_with(harts: int = 1, **kw) -> tuple:
    plic = Plic(harts, **kw)
    lines: Dict[int, List[bool]] = {c: [] for c in range(plic.num_contexts)}
    for c in range(plic.num_contexts):
        plic.connect(c, lines[c].append)
        lines[c].clear()  # connect reports the current level once
    return plic, lines


def prio(plic: Plic, source: int, value: int) -> None:
    plic.write(4 * source, 4, value)


def enable(plic: Plic, context: int, *sources: int) -> None:
    words: Dict[int, int] = {}
    for s in sources:
        words[s // 32] = words.get(s // 32, 0) | 1 << (s % 32)
    for w in range(3):
        plic.write(ENABLE_BASE + ENABLE_STRIDE * context + 4 * w, 4, words.get(w, 0))


def claim(plic: Plic, context: int) -> int:
    return plic.read(CONTEXT_BASE + CONTEXT_STRIDE * context + CONTEXT_CLAIM, 4)


def complete(plic: Plic, context: int, source: int) -> None:
    plic.write(CONTEXT_BASE + CONTEXT_STRIDE * context + CONTEXT_CLAIM, 4, source)


def threshold(plic: Plic, context: int, value: int) -> None:
    plic.write(CONTEXT_BASE + CONTEXT_STRIDE * context + CONTEXT_THRESHOLD, 4, value)


def test_claim_takes_the_highest_priority_and_ties_go_to_the_lowest_id():
    plic, lines = plic_with()
    s = plic.s_context(0)
    for source, p in ((3, 2), (5, 6), (7, 6), (40, 1)):
        prio(plic, source, p)
        plic.set_irq(source, True)
    enable(plic, s, 3, 5, 7, 40)
    assert lines[s] == [True]
    assert [claim(plic, s) for _ in range(5)] == [5, 7, 3, 40, 0]
    assert lines[s] == [True, False]  # everything in service: the line drops


def test_pending_bits_are_readable_and_claim_clears_them():
    plic, _ = plic_with()
    s = plic.s_context(0)
    prio(plic, 33, 1)
    plic.set_irq(33, True)
    plic.set_irq(2, True)
    assert plic.read(PENDING_BASE, 4) == 1 << 2 and plic.read(PENDING_BASE + 4, 4) == 1 << 1
    enable(plic, s, 33)
    assert claim(plic, s) == 33
    assert plic.read(PENDING_BASE + 4, 4) == 0
    plic.write(PENDING_BASE, 4, 0)  # read only
    assert plic.read(PENDING_BASE, 4) == 1 << 2


def test_priority_zero_never_interrupts_and_the_threshold_masks():
    plic, lines = plic_with()
    s = plic.s_context(0)
    enable(plic, s, 4)
    plic.set_irq(4, True)
    assert claim(plic, s) == 0 and lines[s] == []  # priority 0
    prio(plic, 4, 3)
    assert lines[s] == [True]
    threshold(plic, s, 3)  # masks priorities <= 3
    assert lines[s] == [True, False] and claim(plic, s) == 0
    threshold(plic, s, 2)
    assert lines[s][-1] is True and claim(plic, s) == 4
    threshold(plic, s, 9)  # above the maximum priority: ignored
    assert plic.read(CONTEXT_BASE + CONTEXT_STRIDE * s + CONTEXT_THRESHOLD, 4) == 2
    prio(plic, 4, 8)
    assert plic.read(4 * 4, 4) == 3


def test_gateway_holds_a_claimed_source_until_complete_and_rearms_a_level_still_high():
    plic, lines = plic_with()
    s = plic.s_context(0)
    prio(plic, UART_IRQ, 1)
    enable(plic, s, UART_IRQ)
    plic.set_irq(UART_IRQ, True)
    assert claim(plic, s) == UART_IRQ
    plic.set_irq(UART_IRQ, False)
    plic.set_irq(UART_IRQ, True)  # a new request while in service: held
    assert claim(plic, s) == 0 and plic.read(PENDING_BASE, 4) == 0
    complete(plic, s, UART_IRQ)  # the level is still high: pending again
    assert plic.read(PENDING_BASE, 4) == 1 << UART_IRQ and claim(plic, s) == UART_IRQ
    plic.set_irq(UART_IRQ, False)
    complete(plic, s, UART_IRQ)  # the device dropped its request: nothing pending
    assert claim(plic, s) == 0
    assert lines[s] == [True, False, True, False]


def test_a_level_dropped_before_the_claim_is_no_interrupt():
    plic, lines = plic_with()
    s = plic.s_context(0)
    prio(plic, 1, 1)
    enable(plic, s, 1)
    plic.set_irq(1, True)
    plic.set_irq(1, False)
    assert claim(plic, s) == 0 and lines[s] == [True, False]


def test_enables_are_per_context_and_completion_needs_the_enable():
    plic, lines = plic_with(harts=2)
    s0, s1 = plic.s_context(0), plic.s_context(1)
    assert (s0, s1) == (1, 3)
    prio(plic, 6, 1)
    prio(plic, 8, 1)
    enable(plic, s0, 6)
    enable(plic, s1, 8)
    plic.set_irq(6, True)
    assert lines[s0] == [True] and lines[s1] == []
    assert claim(plic, s1) == 0 and claim(plic, s0) == 6
    plic.set_irq(8, True)
    assert claim(plic, s1) == 8
    complete(plic, s1, 6)  # not enabled in context s1: ignored
    assert claim(plic, s0) == 0
    complete(plic, s0, 6)
    assert claim(plic, s0) == 6
    assert plic.read(ENABLE_BASE + ENABLE_STRIDE * s0, 4) == 1 << 6
    enable(plic, s0, 0, 6)  # source 0 does not exist: its enable bit stays 0
    assert plic.read(ENABLE_BASE + ENABLE_STRIDE * s0, 4) == 1 << 6


def test_a_claim_by_one_context_takes_the_source_from_all():
    plic, lines = plic_with(harts=2)
    s0, s1 = plic.s_context(0), plic.s_context(1)
    prio(plic, 6, 1)
    enable(plic, s0, 6)
    enable(plic, s1, 6)
    plic.set_irq(6, True)
    assert lines[s0] == [True] and lines[s1] == [True]
    assert claim(plic, s1) == 6
    assert lines[s0] == [True, False] and claim(plic, s0) == 0


def test_only_32_bit_accesses_and_unknown_sources():
    plic, _ = plic_with()
    prio(plic, 2, 5)
    assert plic.read(8, 1) == 0 and plic.read(8, 8) == 0
    plic.write(8, 1, 1)
    assert plic.read(8, 4) == 5
    prio(plic, 96, 5)  # beyond riscv,ndev
    assert plic.read(4 * 96, 4) == 0
    with pytest.raises(ValueError):
        plic.set_irq(96, True)
    assert plic.read(CONTEXT_BASE + CONTEXT_STRIDE * plic.num_contexts, 4) == 0


def test_one_context_per_hart_as_qemu_builds_it_under_kvm():
    plic, lines = plic_with(harts=2, hart_modes="S")
    assert plic.num_contexts == 2 and plic.s_context(1) == 1
    node = plic.dt_node([7, 8], phandle=3)
    assert node.props["interrupts-extended"] == [7, IRQ_S_EXT, 8, IRQ_S_EXT]


def test_device_tree_node_as_kvmtool_lists_the_contexts():
    plic = Plic(2)
    node = plic.dt_node([11, 12], phandle=3)
    assert node.props["interrupts-extended"] == [11, UNWIRED, 11, IRQ_S_EXT,
                                                 12, UNWIRED, 12, IRQ_S_EXT]
    assert node.props["riscv,ndev"] == 95 and node.props["phandle"] == 3
    assert node.props["compatible"] == b"sifive,plic-1.0.0\0riscv,plic0\0"
    assert node.name == "plic@c000000"
    assert to_dtb(node)  # encodable
    with pytest.raises(ValueError):
        plic.dt_node([11], phandle=3)


class FakeVcpu:
    def __init__(self) -> None:
        self.irqs: List[int] = []

    def interrupt(self, irq: int) -> None:
        self.irqs.append(irq)


def test_uart_interrupt_reaches_the_vcpu_through_the_plic():
    plic = Plic(1)
    vcpu = FakeVcpu()
    plic.connect_vcpu(0, vcpu)
    assert vcpu.irqs == [KVM_INTERRUPT_UNSET]  # connect states the current level
    uart = Uart16550(lambda data: None, irq=plic.irq_line(UART_IRQ))
    s = plic.s_context(0)
    prio(plic, UART_IRQ, 1)
    enable(plic, s, UART_IRQ)
    uart.write(IER_DLM, 1, IER_ERBFI)
    uart.feed(b"k")
    assert vcpu.irqs[-1] == KVM_INTERRUPT_SET
    assert claim(plic, s) == UART_IRQ  # the guest's handler: claim, drain, complete
    assert vcpu.irqs[-1] == KVM_INTERRUPT_UNSET
    assert uart.read(RBR_THR_DLL, 1) == ord("k")
    complete(plic, s, UART_IRQ)
    assert vcpu.irqs == [KVM_INTERRUPT_UNSET, KVM_INTERRUPT_SET, KVM_INTERRUPT_UNSET]


class FakeKickableVcpu(FakeVcpu):
    def __init__(self) -> None:
        super().__init__()
        self.kicks = 0

    def kick(self) -> None:
        self.kicks += 1


def test_interrupt_line_defers_to_the_run_loop_and_kicks_it_from_other_threads():
    vcpu = FakeKickableVcpu()
    plic = Plic(1)
    line = plic.connect_vcpu(0, vcpu)
    assert vcpu.irqs == [KVM_INTERRUPT_UNSET] and line.take() is None
    line.run_thread = threading.get_ident()  # a run loop on this thread
    prio(plic, 3, 1)
    enable(plic, plic.s_context(0), 3)
    plic.set_irq(3, True)  # raised while serving an exit: rides on the next Run
    assert vcpu.irqs == [KVM_INTERRUPT_UNSET] and vcpu.kicks == 0
    assert line.take() == KVM_INTERRUPT_SET and line.take() is None
    claim(plic, plic.s_context(0))
    plic.set_irq(3, False)
    complete(plic, plic.s_context(0), 3)
    assert line.take() == KVM_INTERRUPT_UNSET
    other = threading.Thread(target=plic.set_irq, args=(3, True))  # terminal input
    other.start()
    other.join()
    assert vcpu.kicks == 1 and vcpu.irqs == [KVM_INTERRUPT_UNSET]  # no RPC besides the run loop
    assert line.take() == KVM_INTERRUPT_SET
    line.run_thread = None  # no run loop: straight to the Interrupt RPC
    plic.set_irq(3, False)
    assert vcpu.irqs[-1] == KVM_INTERRUPT_UNSET and line.take() is None
