"""The RISC-V PLIC (``sifive,plic-1.0.0`` / ``riscv,plic0``) of QEMU's virt
machine, served by the VMM from MMIO exits, as kvmtool's ``riscv/plic.c``
does on hosts without an in-kernel interrupt controller.

Register map (RISC-V PLIC specification 1.0.0, chapter 3), 32-bit
registers only (other sizes read 0 and are ignored on write, as QEMU's
``sifive_plic`` refuses them):

    0x000000 + 4*source        priority (0 = never interrupts; 0..7)
    0x001000 + 4*word          pending bits (read only)
    0x002000 + 0x80*context    enable bits of a context
    0x200000 + 0x1000*context  priority threshold; +4: claim (read) / complete (write)

Sources 1..``ndev`` (QEMU virt: 95, ``VIRT_IRQCHIP_NUM_SOURCES`` - 1;
the UART is source 10) are level triggered: ``set_irq`` (or the line from
``irq_line``) gives a source's level. The gateway forwards a request once:
a source is pending while its level is high and it is not in service; a
claim takes the pending source of highest priority above the context's
threshold that the context enables (ties: the lowest id) and puts it in
service (pending clears, for every context: the pending bits are global);
a completion, for a source the context enables, ends the service, and a
level still high makes the source pending again. A level going low clears
pending (as QEMU does), so a device that drops its request before the claim
causes no spurious interrupt.

Contexts: ``hart_modes`` "MS" gives each hart two contexts, 2*hart for
M-mode and 2*hart+1 for S-mode, the numbering of QEMU's virt machine and
of kvmtool, whose KVM guests (which have no M-mode) see the M contexts
unwired (``interrupts-extended`` <&intc 0xffffffff>). "S" gives one
context per hart (hart = context), as QEMU's virt machine builds its PLIC
under KVM. Each context has an output (``connect``), a level called when
it changes: the VMM wires a hart's S context to KVM_INTERRUPT on that vCPU
(``connect_vcpu``), which raises or lowers the guest's external interrupt.

Thread safe (devices raise lines from other threads than the run loop's);
outputs are called with the lock held, so level changes reach them in order.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, List, Optional, Sequence

from .fdt import Node

PLIC_BASE = 0x0C00_0000  # QEMU virt (VIRT_PLIC)
PLIC_SIZE = 0x60_0000  # VIRT_PLIC_SIZE(VIRT_CPUS_MAX * 2)
PLIC_NDEV = 95  # riscv,ndev on QEMU virt
PLIC_MAX_PRIORITY = 7  # VIRT_IRQCHIP_NUM_PRIO_BITS = 3

PRIORITY_BASE = 0x0
PENDING_BASE = 0x1000
ENABLE_BASE = 0x2000
ENABLE_STRIDE = 0x80
CONTEXT_BASE = 0x20_0000
CONTEXT_STRIDE = 0x1000
CONTEXT_THRESHOLD = 0x0
CONTEXT_CLAIM = 0x4

IRQ_S_EXT = 9  # the hart-local interrupt a context drives (riscv,cpu-intc cell)
IRQ_M_EXT = 11
UNWIRED = 0xFFFF_FFFF  # interrupts-extended cell of a context the guest cannot use

# struct kvm_interrupt.irq
KVM_INTERRUPT_SET = 0xFFFF_FFFF
KVM_INTERRUPT_UNSET = 0xFFFF_FFFE

Output = Callable[[bool], None]


class Plic:
    """A PLIC with ``num_harts`` harts (see the module docstring)."""

    def __init__(self, num_harts: int, ndev: int = PLIC_NDEV, hart_modes: str = "MS",
                 max_priority: int = PLIC_MAX_PRIORITY) -> None:
        if hart_modes not in ("MS", "S"):
            raise ValueError(f"hart_modes must be 'MS' or 'S', not {hart_modes!r}")
        if not 1 <= ndev <= 1023:
            raise ValueError("a PLIC has 1..1023 sources")
        self.num_harts = num_harts
        self.ndev = ndev
        self.hart_modes = hart_modes
        self.max_priority = max_priority
        self.num_contexts = num_harts * len(hart_modes)
        if CONTEXT_BASE + self.num_contexts * CONTEXT_STRIDE > PLIC_SIZE:
            raise ValueError(f"{num_harts} harts do not fit the PLIC's register space")
        self._words = (ndev + 1 + 31) // 32  # enable / pending words (source 0 included)
        self._sources = ((1 << (ndev + 1)) - 1) & ~1  # bit mask of sources 1..ndev
        self.priority = [0] * (ndev + 1)
        self.level = 0  # bit per source: its line is high
        self.pending = 0
        self.claimed = 0  # in service: claimed, not yet completed
        self.enable = [0] * self.num_contexts
        self.threshold = [0] * self.num_contexts
        self.outputs: List[Optional[Output]] = [None] * self.num_contexts
        self.output_level = [False] * self.num_contexts
        self._lock = threading.RLock()

    # -- wiring ----------------------------------------------------------------

    def s_context(self, hart: int) -> int:
        """The context of ``hart``'s supervisor mode (the one a KVM guest uses)."""
        return 2 * hart + 1 if self.hart_modes == "MS" else hart

    def connect(self, context: int, output: Output) -> None:
        """Call ``output(level)`` whenever ``context``'s interrupt changes."""
        with self._lock:
            self.outputs[context] = output
            output(self.output_level[context])

    def connect_vcpu(self, hart: int, vcpu: Any) -> VcpuInterruptLine:
        """Drive ``vcpu`` (a client ``Vcpu`` on a blocking channel) from the
        S context of ``hart``: KVM_INTERRUPT SET when the context's line goes
        high, UNSET when it goes low, as kvmtool does (see
        ``VcpuInterruptLine`` for how a VMM's run loop saves round trips)."""
        line = VcpuInterruptLine(vcpu)
        self.connect(self.s_context(hart), line)
        return line

    def set_irq(self, source: int, level: bool) -> None:
        """The level of interrupt source ``source`` (1..ndev)."""
        if not 1 <= source <= self.ndev:
            raise ValueError(f"no PLIC source {source}")
        bit = 1 << source
        with self._lock:
            if level:
                self.level |= bit
                if not self.claimed & bit:
                    self.pending |= bit
            else:
                self.level &= ~bit
                self.pending &= ~bit
            self._update_all()

    def irq_line(self, source: int) -> Output:
        """A device's interrupt output wired to ``source`` (e.g. for
        ``Uart16550(..., irq=plic.irq_line(UART_IRQ))``)."""
        if not 1 <= source <= self.ndev:
            raise ValueError(f"no PLIC source {source}")
        return lambda level: self.set_irq(source, level)

    # -- the core --------------------------------------------------------------

    def _best(self, context: int) -> int:
        """The source a claim by ``context`` would take (0: none)."""
        candidates = self.pending & self.enable[context]
        best, best_priority = 0, self.threshold[context]
        while candidates:
            low = candidates & -candidates
            source = low.bit_length() - 1
            if self.priority[source] > best_priority:  # strictly: ties keep the lower id
                best, best_priority = source, self.priority[source]
            candidates ^= low
        return best

    def _update(self, context: int) -> None:
        level = self._best(context) != 0
        if level != self.output_level[context]:
            self.output_level[context] = level
            output = self.outputs[context]
            if output is not None:
                output(level)

    def _update_all(self) -> None:
        for context in range(self.num_contexts):
            self._update(context)

    def claim(self, context: int) -> int:
        with self._lock:
            source = self._best(context)
            if source:
                bit = 1 << source
                self.pending &= ~bit
                self.claimed |= bit
                self._update_all()
            return source

    def complete(self, context: int, source: int) -> None:
        with self._lock:
            if not 0 < source <= self.ndev or not self.enable[context] >> source & 1:
                return  # spec: a completion for a source not enabled is ignored
            bit = 1 << source
            self.claimed &= ~bit
            if self.level & bit:
                self.pending |= bit
            self._update_all()

    # -- registers ---------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        if size != 4 or offset & 3:
            return 0
        with self._lock:
            if offset < PENDING_BASE:
                source = offset >> 2
                return self.priority[source] if 0 < source <= self.ndev else 0
            if offset < ENABLE_BASE:
                word = (offset - PENDING_BASE) >> 2
                return (self.pending >> (32 * word)) & 0xFFFF_FFFF if word < self._words else 0
            if offset < CONTEXT_BASE:
                context, rest = divmod(offset - ENABLE_BASE, ENABLE_STRIDE)
                word = rest >> 2
                if context < self.num_contexts and word < self._words:
                    return (self.enable[context] >> (32 * word)) & 0xFFFF_FFFF
                return 0
            context, rest = divmod(offset - CONTEXT_BASE, CONTEXT_STRIDE)
            if context >= self.num_contexts:
                return 0
            if rest == CONTEXT_THRESHOLD:
                return self.threshold[context]
            if rest == CONTEXT_CLAIM:
                return self.claim(context)
            return 0

    def write(self, offset: int, size: int, value: int) -> None:
        if size != 4 or offset & 3:
            return
        value &= 0xFFFF_FFFF
        with self._lock:
            if offset < PENDING_BASE:
                source = offset >> 2
                # values above the maximum are ignored, as QEMU's sifive_plic does
                if 0 < source <= self.ndev and value <= self.max_priority:
                    self.priority[source] = value
                    self._update_all()
            elif offset < ENABLE_BASE:
                return  # pending bits are read only
            elif offset < CONTEXT_BASE:
                context, rest = divmod(offset - ENABLE_BASE, ENABLE_STRIDE)
                word = rest >> 2
                if context < self.num_contexts and word < self._words:
                    mask = 0xFFFF_FFFF << (32 * word)
                    bits = (self.enable[context] & ~mask) | (value << (32 * word))
                    self.enable[context] = bits & self._sources
                    self._update(context)
            else:
                context, rest = divmod(offset - CONTEXT_BASE, CONTEXT_STRIDE)
                if context >= self.num_contexts:
                    return
                if rest == CONTEXT_THRESHOLD:
                    if value <= self.max_priority:
                        self.threshold[context] = value
                        self._update(context)
                elif rest == CONTEXT_CLAIM:
                    self.complete(context, value)

    # -- device tree -------------------------------------------------------------

    def dt_node(self, cpu_intc_phandles: Sequence[int], phandle: int,
                base: int = PLIC_BASE, size: int = PLIC_SIZE) -> Node:
        """The PLIC's node (QEMU virt's ``plic@c000000``), ``phandle`` its
        own; ``cpu_intc_phandles[hart]`` names each hart's
        ``riscv,cpu-intc``. M contexts are listed unwired (a KVM guest has no
        M-mode), S contexts on the hart's supervisor external interrupt."""
        if len(cpu_intc_phandles) != self.num_harts:
            raise ValueError(f"{len(cpu_intc_phandles)} cpu interrupt controllers "
                             f"for {self.num_harts} harts")
        cells: List[int] = []
        for intc in cpu_intc_phandles:
            if self.hart_modes == "MS":
                cells += [intc, UNWIRED]
            cells += [intc, IRQ_S_EXT]
        return Node(f"plic@{base:x}", {
            "compatible": b"sifive,plic-1.0.0\0riscv,plic0\0",
            "reg": [base >> 32, base & 0xFFFF_FFFF, size >> 32, size & 0xFFFF_FFFF],
            "#address-cells": 0,
            "#interrupt-cells": 1,
            "interrupt-controller": True,
            "interrupts-extended": cells,
            "riscv,ndev": self.ndev,
            "phandle": phandle,
        })


class VcpuInterruptLine:
    """A vCPU's external interrupt line (KVM_INTERRUPT) as a PLIC context
    drives it, level by level.

    Without a run loop (``run_thread`` None) every change is an Interrupt
    RPC. While a VMM thread runs the vCPU it sets ``run_thread`` to its
    thread id and sends ``take()`` with each Run (RunRequest.interrupt):
    changes made on that thread (serving the vCPU's exits: a claim, a
    device register) then ride on the next Run, and a change from another
    thread (terminal input) kicks the vCPU so the run loop sends it. All
    changes reach the server through one thread, in order, so a late
    message can never leave the line at an old level.
    """

    def __init__(self, vcpu: Any) -> None:
        self.vcpu = vcpu
        self.run_thread: Optional[int] = None
        self._wanted = False
        self._sent: Optional[bool] = None
        self._lock = threading.Lock()

    def __call__(self, level: bool) -> None:
        with self._lock:
            self._wanted = level
            if self._sent == level:
                return
            run_thread = self.run_thread
            if run_thread is None:
                self.vcpu.interrupt(KVM_INTERRUPT_SET if level else KVM_INTERRUPT_UNSET)
                self._sent = level
                return
        if threading.get_ident() != run_thread:
            self.vcpu.kick()  # the run loop's next Run carries the change

    def take(self) -> Optional[int]:
        """The KVM_INTERRUPT value the next Run must carry (None: no change)."""
        with self._lock:
            if self._sent == self._wanted:
                return None
            self._sent = self._wanted
            return KVM_INTERRUPT_SET if self._wanted else KVM_INTERRUPT_UNSET
