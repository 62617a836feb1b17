"""MMIO devices a VMM serves from the guest's MMIO exits.

``Uart16550``: the NS16550A serial port of QEMU's and kvmtool's RISC-V
machines (one byte-wide register per address, ``reg-shift`` 0), for polled
drivers (OpenSBI, Linux's earlycon, bare-metal code) and for interrupt
driven ones (Linux's 8250 driver with ``console=ttyS0``).

Transmitted bytes go straight to ``output``: the transmitter is always
empty (LSR.THRE and LSR.TEMT set), so a THR write re-arms the THR-empty
interrupt at once, as QEMU's serial.c does with a character backend that
never blocks. Since it never fills, the device tree offers a transmit FIFO
of ``TX_FIFO`` (128) bytes (``fifo-size``, ``tx-threshold`` 0, the 8250
binding's properties) instead of a real 16550A's 16: Linux's 8250 driver
then writes up to 128 bytes per THR-empty interrupt and per LSR poll of its
console, where every interrupt and poll costs the VMM register exits
(IIR, LSR, MSR, PLIC claim and complete). 128 stays below the coalesced
MMIO ring's 169 entries, so a whole burst of THR writes waits in the ring.

Received bytes come from ``feed`` into the receive FIFO (16 bytes with
FCR.FIFO on, else the one-byte RBR; beyond that the byte is lost and LSR.OE
set). No line time is modelled: the character-timeout interrupt
(FIFO below its trigger level) is reported as soon as data waits.

Interrupts (IER, IIR, 16550 data sheet): IIR reports the highest-priority
source that is enabled and pending, in the order receiver line status
(ELSI: LSR.OE) > received data (ERBFI: trigger level reached, or the
character timeout below it) > THR empty (ETBEI) > modem status (EDSSI: an
MSR delta bit, which only loopback changes here). The THR-empty source
is raised when ETBEI goes from 0 to 1 with THR empty and whenever THR
becomes empty, and cleared by a THR write or by an IIR read that reports
it (Linux's 8250 driver tests this at startup, UART_BUG_THRE). ``irq`` is
the interrupt output, a level: it is called with the new level whenever
the level changes (OUT2 does not gate it, as on QEMU's virt machine).

The device is safe to drive from several threads (``feed`` from an input
thread while the run loop serves register accesses); ``irq`` is called with
the device's lock held, so level changes reach it in order.
"""

from __future__ import annotations

import collections
import threading
from typing import Callable, Deque, Optional

from .fdt import Node

UART_BASE = 0x1000_0000  # QEMU virt / kvmtool
UART_SIZE = 0x100
UART_CLOCK = 3_686_400  # Hz, as QEMU's virt machine advertises
UART_IRQ = 10  # the UART's PLIC source on QEMU virt (VIRT_UART0_IRQ)
TX_FIFO = 128  # transmit FIFO bytes the device tree offers (see the module docstring)

# register offsets
RBR_THR_DLL, IER_DLM, IIR_FCR, LCR, MCR, LSR, MSR, SCR = range(8)

IER_ERBFI, IER_ETBEI, IER_ELSI, IER_EDSSI = 0x01, 0x02, 0x04, 0x08
# IIR interrupt ids (bits 3..1) and the FIFO-enabled bits 7..6
IIR_NO_INT, IIR_MSI, IIR_THRI, IIR_RDI, IIR_RLSI, IIR_CTI = 0x01, 0x00, 0x02, 0x04, 0x06, 0x0C
IIR_FIFO = 0xC0
FCR_FIFO_ON, FCR_CLEAR_RX, FCR_CLEAR_TX = 0x01, 0x02, 0x04
FCR_TRIGGER = (1, 4, 8, 14)  # receive trigger levels, FCR bits 7..6
LCR_DLAB = 0x80
MCR_LOOP = 0x10
LSR_DR, LSR_OE, LSR_PE, LSR_FE, LSR_BI, LSR_THRE, LSR_TEMT = 1, 2, 4, 8, 0x10, 0x20, 0x40
LSR_ERRORS = LSR_OE | LSR_PE | LSR_FE | LSR_BI
MSR_DCTS, MSR_DDSR, MSR_TERI, MSR_DDCD = 0x01, 0x02, 0x04, 0x08
MSR_DELTAS = MSR_DCTS | MSR_DDSR | MSR_TERI | MSR_DDCD
MSR_CTS, MSR_DSR, MSR_RI, MSR_DCD = 0x10, 0x20, 0x40, 0x80
RX_FIFO = 16

IrqLine = Callable[[bool], None]


def _modem_inputs(mcr: int) -> int:
    """MSR bits 7..4 as the modem lines give them: in loopback MCR's outputs
    (DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD); otherwise a terminal that is
    always there (CTS, DSR, DCD)."""
    if mcr & MCR_LOOP:
        return ((mcr & 2) << 3) | ((mcr & 1) << 5) | ((mcr & 4) << 4) | ((mcr & 8) << 4)
    return MSR_CTS | MSR_DSR | MSR_DCD


class Uart16550:
    """An NS16550A register file (see the module docstring)."""

    def __init__(self, output: Callable[[bytes], None], irq: Optional[IrqLine] = None) -> None:
        self.output = output
        self.irq = irq
        self.irq_level = False
        self.rx: Deque[int] = collections.deque()
        self.ier = 0
        self.fcr = 0
        self.lcr = 0
        self.mcr = 0
        self.scr = 0
        self.divisor = 12  # 9600 baud at 1.8432 MHz, the usual reset value
        self.lsr_errors = 0  # LSR.OE (PE, FE, BI never happen on this line)
        self.msr_deltas = 0
        self.thr_ipending = False  # the THR-empty interrupt is raised
        self._lock = threading.RLock()

    # -- the outside world ---------------------------------------------------

    @property
    def rx_capacity(self) -> int:
        """Bytes the receiver holds: the 16-byte FIFO when enabled, else 1."""
        return RX_FIFO if self.fcr & FCR_FIFO_ON else 1

    @property
    def rx_room(self) -> int:
        """Bytes ``feed`` can take now without an overrun (for a VMM that
        paces its input instead of dropping it)."""
        return max(0, self.rx_capacity - len(self.rx))

    def feed(self, data: bytes) -> None:
        """Bytes arriving on the receive line (beyond the FIFO: overrun)."""
        with self._lock:
            self._receive(data)
            self._update_irq()

    def _receive(self, data: bytes) -> None:
        capacity = self.rx_capacity
        for byte in data:
            if len(self.rx) < capacity:
                self.rx.append(byte)
            else:
                self.lsr_errors |= LSR_OE

    # -- interrupts ------------------------------------------------------------

    def _iir_id(self) -> int:
        ier = self.ier
        if ier & IER_ELSI and self.lsr_errors:
            return IIR_RLSI
        if ier & IER_ERBFI and self.rx:
            if not self.fcr & FCR_FIFO_ON or len(self.rx) >= FCR_TRIGGER[self.fcr >> 6]:
                return IIR_RDI
            return IIR_CTI
        if ier & IER_ETBEI and self.thr_ipending:
            return IIR_THRI
        if ier & IER_EDSSI and self.msr_deltas:
            return IIR_MSI
        return IIR_NO_INT

    def _update_irq(self) -> None:
        level = self._iir_id() != IIR_NO_INT
        if level != self.irq_level:
            self.irq_level = level
            if self.irq is not None:
                self.irq(level)

    def _set_mcr(self, value: int) -> None:
        before = _modem_inputs(self.mcr)
        self.mcr = value & 0x1F
        after = _modem_inputs(self.mcr)
        changed = before ^ after
        # DCTS, DDSR, DDCD on any change; TERI only on RI's trailing edge
        deltas = (changed >> 4) & (MSR_DCTS | MSR_DDSR | MSR_DDCD)
        if before & MSR_RI and not after & MSR_RI:
            deltas |= MSR_TERI
        self.msr_deltas |= deltas

    # -- registers -------------------------------------------------------------

    def read(self, offset: int, size: int) -> int:
        """A guest load of register ``offset`` (an MMIO exit's value)."""
        with self._lock:
            value = self._read(offset)
            self._update_irq()
            return value

    def _read(self, offset: int) -> int:
        dlab = self.lcr & LCR_DLAB
        if offset == RBR_THR_DLL:
            if dlab:
                return self.divisor & 0xFF
            return self.rx.popleft() if self.rx else 0
        if offset == IER_DLM:
            return (self.divisor >> 8) & 0xFF if dlab else self.ier
        if offset == IIR_FCR:
            iir = self._iir_id()
            if iir == IIR_THRI:
                self.thr_ipending = False  # reading IIR clears THRE as the source
            return iir | (IIR_FIFO if self.fcr & FCR_FIFO_ON else 0)
        if offset == LCR:
            return self.lcr
        if offset == MCR:
            return self.mcr
        if offset == LSR:
            lsr = LSR_THRE | LSR_TEMT | (LSR_DR if self.rx else 0) | self.lsr_errors
            self.lsr_errors = 0  # reading LSR clears the error bits
            return lsr
        if offset == MSR:
            msr = _modem_inputs(self.mcr) | self.msr_deltas
            self.msr_deltas = 0  # reading MSR clears the deltas
            return msr
        if offset == SCR:
            return self.scr
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        """A guest store to register ``offset``; THR bytes go to ``output``."""
        with self._lock:
            self._write(offset, value & 0xFF)
            self._update_irq()

    def _write(self, offset: int, value: int) -> None:
        dlab = self.lcr & LCR_DLAB
        if offset == RBR_THR_DLL:
            if dlab:
                self.divisor = (self.divisor & 0xFF00) | value
                return
            self.thr_ipending = False  # writing THR clears THRE as the source ...
            if self.mcr & MCR_LOOP:
                self._receive(bytes([value]))
            else:
                self.output(bytes([value]))
            self.thr_ipending = True  # ... and it is empty again at once
        elif offset == IER_DLM:
            if dlab:
                self.divisor = (self.divisor & 0xFF) | (value << 8)
                return
            old, self.ier = self.ier, value & 0x0F
            if (old ^ self.ier) & IER_ETBEI:
                # raised on ETBEI's rising edge (THR is always empty), as QEMU does
                self.thr_ipending = bool(self.ier & IER_ETBEI)
        elif offset == IIR_FCR:
            if (value ^ self.fcr) & FCR_FIFO_ON:
                self.rx.clear()  # switching the FIFOs on or off empties them
            if value & FCR_CLEAR_RX:
                self.rx.clear()
            if value & FCR_CLEAR_TX:
                self.thr_ipending = True  # the (already empty) transmitter FIFO
            self.fcr = value & 0xC9 if value & FCR_FIFO_ON else 0  # enable, DMA, trigger
        elif offset == LCR:
            self.lcr = value
        elif offset == MCR:
            self._set_mcr(value)
        elif offset == SCR:
            self.scr = value

    # -- device tree -------------------------------------------------------------

    def dt_node(self, base: int = UART_BASE, size: int = UART_SIZE,
                irq: Optional[int] = None, interrupt_parent: Optional[int] = None,
                tx_fifo: int = TX_FIFO) -> Node:
        """The ``serial@...`` node; with ``irq`` and the interrupt
        controller's phandle, its ``interrupts``/``interrupt-parent``.
        ``tx_fifo``: the ``fifo-size`` offered, with ``tx-threshold`` 0 so
        the driver fills all of it per burst (16: a plain 16550A's node)."""
        if not 1 <= tx_fifo <= 0xFFFF_FFFF:
            raise ValueError(f"tx_fifo must be a positive u32, not {tx_fifo}")
        node = Node(f"serial@{base:x}", {
            "compatible": "ns16550a",
            "reg": [base >> 32, base & 0xFFFF_FFFF, size >> 32, size & 0xFFFF_FFFF],
            "clock-frequency": UART_CLOCK,
        })
        if tx_fifo != 16:
            node.props["fifo-size"] = tx_fifo
            node.props["tx-threshold"] = 0
        if irq is not None:
            if interrupt_parent is None:
                raise ValueError("an interrupt needs the interrupt controller's phandle")
            node.props["interrupts"] = [irq]
            node.props["interrupt-parent"] = interrupt_parent
        return node
