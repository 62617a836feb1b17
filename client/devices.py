"""MMIO devices a VMM serves from the guest's MMIO exits.

``Uart16550``: the NS16550A serial port of QEMU's and kvmtool's RISC-V
machines (one byte-wide register per address, ``reg-shift`` 0), enough for
polled drivers: OpenSBI's and Linux's 8250 console, Linux's earlycon and
bare-metal code. Transmitted bytes go straight to ``output``, so the
transmitter is always empty (LSR.THRE and LSR.TEMT set); received bytes
come from ``feed``. There is no interrupt line (the VMM has no interrupt
controller), so IIR always reads "no interrupt pending"; drivers poll.
"""

from __future__ import annotations

import collections
from typing import Callable, Deque

from .fdt import Node

UART_BASE = 0x1000_0000  # QEMU virt / kvmtool
UART_SIZE = 0x100
UART_CLOCK = 3_686_400  # Hz, as QEMU's virt machine advertises

# register offsets
RBR_THR_DLL, IER_DLM, IIR_FCR, LCR, MCR, LSR, MSR, SCR = range(8)

LCR_DLAB = 0x80
MCR_LOOP = 0x10
LSR_DR, LSR_OE, LSR_THRE, LSR_TEMT = 0x01, 0x02, 0x20, 0x40
IIR_NO_INT, IIR_FIFO = 0x01, 0xC0
FCR_FIFO_ON, FCR_CLEAR_RX = 0x01, 0x02
MSR_CTS, MSR_DSR, MSR_DCD = 0x10, 0x20, 0x80
RX_FIFO = 16


class Uart16550:
    """An NS16550A register file (see the module docstring)."""

    def __init__(self, output: Callable[[bytes], None]) -> None:
        self.output = output
        self.rx: Deque[int] = collections.deque()
        self.ier = 0
        self.fcr = 0
        self.lcr = 0
        self.mcr = 0
        self.scr = 0
        self.divisor = 12  # 9600 baud at 1.8432 MHz, the usual reset value
        self.overrun = False

    def feed(self, data: bytes) -> None:
        """Bytes arriving on the receive line (beyond the FIFO: overrun)."""
        for byte in data:
            if len(self.rx) < (RX_FIFO if self.fcr & FCR_FIFO_ON else 1):
                self.rx.append(byte)
            else:
                self.overrun = True

    def read(self, offset: int, size: int) -> int:
        """A guest load of register ``offset`` (an MMIO exit's value)."""
        dlab = self.lcr & LCR_DLAB
        if offset == RBR_THR_DLL:
            if dlab:
                return self.divisor & 0xFF
            return self.rx.popleft() if self.rx else 0
        if offset == IER_DLM:
            return (self.divisor >> 8) & 0xFF if dlab else self.ier
        if offset == IIR_FCR:
            return IIR_NO_INT | (IIR_FIFO if self.fcr & FCR_FIFO_ON else 0)
        if offset == LCR:
            return self.lcr
        if offset == MCR:
            return self.mcr
        if offset == LSR:
            lsr = LSR_THRE | LSR_TEMT | (LSR_DR if self.rx else 0)
            if self.overrun:
                lsr |= LSR_OE
                self.overrun = False  # cleared by reading LSR
            return lsr
        if offset == MSR:
            if self.mcr & MCR_LOOP:  # loopback: MCR's outputs come back as inputs
                m = self.mcr
                return (m & 2) << 3 | (m & 1) << 5 | (m & 4) << 4 | (m & 8) << 4
            return MSR_CTS | MSR_DSR | MSR_DCD
        if offset == SCR:
            return self.scr
        return 0

    def write(self, offset: int, size: int, value: int) -> None:
        """A guest store to register ``offset``; THR bytes go to ``output``."""
        value &= 0xFF
        dlab = self.lcr & LCR_DLAB
        if offset == RBR_THR_DLL:
            if dlab:
                self.divisor = (self.divisor & 0xFF00) | value
            elif self.mcr & MCR_LOOP:
                self.feed(bytes([value]))
            else:
                self.output(bytes([value]))
        elif offset == IER_DLM:
            if dlab:
                self.divisor = (self.divisor & 0xFF) | (value << 8)
            else:
                self.ier = value & 0x0F
        elif offset == IIR_FCR:
            self.fcr = value & 0xC9  # FIFO enable, DMA mode, trigger level
            if value & FCR_CLEAR_RX:
                self.rx.clear()
        elif offset == LCR:
            self.lcr = value
        elif offset == MCR:
            self.mcr = value & 0x1F
        elif offset == SCR:
            self.scr = value

    def dt_node(self, base: int = UART_BASE, size: int = UART_SIZE) -> Node:
        """Its device tree node (``compatible = "ns16550a"``)."""
        return Node(f"serial@{base:x}", {
            "compatible": "ns16550a",
            "reg": [base >> 32, base & 0xFFFF_FFFF, size >> 32, size & 0xFFFF_FFFF],
            "clock-frequency": UART_CLOCK,
        })
