"""The VMM's NS16550A model, register by register."""

from __future__ import annotations

from typing import List

from rvkvm.client.devices import (
    IER_DLM,
    IIR_FCR,
    LCR,
    LSR,
    LSR_DR,
    LSR_OE,
    LSR_TEMT,
    LSR_THRE,
    MCR,
    MSR,
    RBR_THR_DLL,
    SCR,
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
