"""The VMM's NS16550A model, register by register."""

from __future__ import annotations

from typing import List

import pytest

from rvkvm.client.devices import (
    FCR_CLEAR_RX,
    FCR_FIFO_ON,
    IER_DLM,
    IER_EDSSI,
    IER_ELSI,
    IER_ERBFI,
    IER_ETBEI,
    IIR_CTI,
    IIR_FCR,
    IIR_FIFO,
    IIR_MSI,
    IIR_NO_INT,
    IIR_RDI,
    IIR_RLSI,
    IIR_THRI,
    LCR,
    LSR,
    LSR_DR,
    LSR_OE,
    LSR_TEMT,
    LSR_THRE,
    MCR,
    MCR_LOOP,
    MSR,
    MSR_DCTS,
    RBR_THR_DLL,
    SCR,
    UART_IRQ,
    Uart16550,
)


def uart() -> tuple:
    out: List[bytes] = []
    return Uart16550(out.append), out


def test_transmit_goes_to_the_output_and_the_line_is_always_free():
    u, out = uart()
    for ch in b"ok\n":
        assert u.read(LSR, 1) & (LSR_THRE | LSR_TEMT) == LSR_THRE | LSR_TEMT
        u.write(RBR_THR_DLL, 1, ch)
    assert b"".join(out) == b"ok\n"


def test_divisor_latch_shadows_thr_and_ier():
    u, out = uart()
    u.write(LCR, 1, 0x83)
    u.write(RBR_THR_DLL, 1, 0x34)
    u.write(IER_DLM, 1, 0x12)
    assert (u.read(RBR_THR_DLL, 1), u.read(IER_DLM, 1)) == (0x34, 0x12)
    assert u.divisor == 0x1234 and out == []  # DLL writes are not output
    u.write(LCR, 1, 0x03)
    u.write(IER_DLM, 1, 0xFF)
    assert u.read(IER_DLM, 1) == 0x0F  # IER has four bits
    assert u.divisor == 0x1234


def test_scratch_lcr_and_iir():
    u, _ = uart()
    u.write(SCR, 1, 0x5A)
    assert u.read(SCR, 1) == 0x5A
    assert u.read(IIR_FCR, 1) == 0x01  # no interrupt pending, FIFOs off
    u.write(IIR_FCR, 1, 0x07)
    assert u.read(IIR_FCR, 1) == 0xC1  # FIFOs on


def test_receive_fifo_data_ready_and_overrun():
    u, _ = uart()
    u.write(IIR_FCR, 1, 0x01)
    u.feed(bytes(range(20)))  # 16 fit
    lsr = u.read(LSR, 1)
    assert lsr & LSR_DR and lsr & LSR_OE
    assert not u.read(LSR, 1) & LSR_OE  # reading LSR clears the overrun
    assert [u.read(RBR_THR_DLL, 1) for _ in range(16)] == list(range(16))
    assert not u.read(LSR, 1) & LSR_DR
    u.feed(b"x")
    u.write(IIR_FCR, 1, 0x03)  # clear the receive FIFO
    assert not u.read(LSR, 1) & LSR_DR


def test_loopback_returns_transmitted_bytes_and_modem_lines():
    u, out = uart()
    u.write(MCR, 1, 0x10 | 0x0B)  # loop, DTR, RTS, OUT2
    u.write(RBR_THR_DLL, 1, ord("q"))
    assert out == [] and u.read(RBR_THR_DLL, 1) == ord("q")
    assert u.read(MSR, 1) == 0x10 | 0x20 | 0x80  # CTS <- RTS, DSR <- DTR, DCD <- OUT2
    u.write(MCR, 1, 0)
    assert u.read(MSR, 1) == 0xB0  # not looped: carrier, DSR and CTS asserted


# -- interrupts --------------------------------------------------------------

def irq_uart() -> tuple:
    levels: List[bool] = []
    out: List[bytes] = []
    return Uart16550(out.append, irq=levels.append), levels, out


def iir(u: Uart16550) -> int:
    return u.read(IIR_FCR, 1) & 0x0F


def test_no_interrupt_without_ier_and_the_line_starts_low():
    u, levels, _ = irq_uart()
    u.feed(b"a")
    u.write(RBR_THR_DLL, 1, ord("b"))
    assert iir(u) == IIR_NO_INT and levels == [] and not u.irq_level


def test_received_data_raises_the_line_until_the_fifo_is_read():
    u, levels, _ = irq_uart()
    u.write(IER_DLM, 1, IER_ERBFI)
    assert levels == []
    u.feed(b"hi")
    assert levels == [True] and iir(u) == IIR_RDI
    assert u.read(RBR_THR_DLL, 1) == ord("h")  # FIFOs off: one byte held, "i" overran
    assert levels == [True, False] and iir(u) == IIR_NO_INT
    assert u.read(LSR, 1) & LSR_OE


def test_fifo_trigger_level_and_character_timeout():
    u, levels, _ = irq_uart()
    u.write(IIR_FCR, 1, 0x81)  # FIFOs on, trigger 8
    u.write(IER_DLM, 1, IER_ERBFI)
    u.feed(b"abc")
    assert u.read(IIR_FCR, 1) == IIR_FIFO | IIR_CTI  # below the trigger: timeout
    u.feed(b"defgh")
    assert iir(u) == IIR_RDI
    assert bytes(u.read(RBR_THR_DLL, 1) for _ in range(8)) == b"abcdefgh"
    assert levels == [True, False]


def test_thre_interrupt_as_linux_8250_startup_tests_it():
    u, levels, out = irq_uart()
    u.write(IER_DLM, 1, IER_ETBEI)  # rising edge with THR empty: raised
    assert levels == [True]
    assert iir(u) == IIR_THRI  # reading IIR that reports THRE clears it
    assert levels == [True, False] and iir(u) == IIR_NO_INT
    u.write(IER_DLM, 1, 0)
    u.write(IER_DLM, 1, IER_ETBEI)  # re-asserted on the next rising edge (no UART_BUG_THRE)
    assert iir(u) == IIR_THRI
    u.write(RBR_THR_DLL, 1, ord("x"))  # THR empty again after the byte went out
    assert levels == [True, False, True, False, True] and out == [b"x"]
    u.write(IER_DLM, 1, 0)  # ETBEI off: the source goes away
    assert levels[-1] is False and iir(u) == IIR_NO_INT


def test_iir_priority_line_status_then_data_then_thre_then_modem():
    u, _, _ = irq_uart()
    u.write(MCR, 1, MCR_LOOP)
    u.write(MCR, 1, MCR_LOOP | 0x02)  # RTS -> CTS: a modem status change
    u.write(IER_DLM, 1, IER_EDSSI | IER_ETBEI | IER_ERBFI | IER_ELSI)
    u.feed(b"ab")  # FIFOs off: overrun on "b"
    assert iir(u) == IIR_RLSI
    assert u.read(LSR, 1) & LSR_OE  # reading LSR clears the line status source
    assert iir(u) == IIR_RDI
    u.read(RBR_THR_DLL, 1)
    assert iir(u) == IIR_THRI  # the read clears THRE as the source ...
    assert iir(u) == IIR_MSI  # ... so the modem status shows
    assert u.read(MSR, 1) & MSR_DCTS  # reading MSR clears the deltas
    assert iir(u) == IIR_NO_INT


def test_clearing_the_receive_fifo_drops_the_interrupt():
    u, levels, _ = irq_uart()
    u.write(IIR_FCR, 1, FCR_FIFO_ON)
    u.write(IER_DLM, 1, IER_ERBFI)
    u.feed(b"zz")
    assert u.rx_room == 14
    u.write(IIR_FCR, 1, FCR_FIFO_ON | FCR_CLEAR_RX)
    assert levels == [True, False] and not u.read(LSR, 1) & LSR_DR


def test_polled_transmit_with_interrupts_enabled_loses_no_byte():
    u, _, out = irq_uart()
    u.write(IER_DLM, 1, IER_ETBEI | IER_ERBFI)
    for ch in b"boot\n":
        assert u.read(LSR, 1) & LSR_THRE
        u.write(RBR_THR_DLL, 1, ch)
    assert b"".join(out) == b"boot\n"


def test_device_tree_node_names_its_interrupt():
    u, _, _ = irq_uart()
    node = u.dt_node(irq=UART_IRQ, interrupt_parent=3)
    assert node.props["interrupts"] == [10] and node.props["interrupt-parent"] == 3
    assert "interrupts" not in u.dt_node().props


def test_device_tree_offers_the_transmit_fifo_the_model_never_fills():
    u, _, _ = irq_uart()
    props = u.dt_node().props
    assert props["fifo-size"] == 128 and props["tx-threshold"] == 0
    plain = u.dt_node(tx_fifo=16).props
    assert "fifo-size" not in plain and "tx-threshold" not in plain
    with pytest.raises(ValueError):
        u.dt_node(tx_fifo=0)
