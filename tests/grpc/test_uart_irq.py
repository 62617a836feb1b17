"""The interrupt path end to end over gRPC: terminal input fed to the UART
raises its PLIC source, the PLIC's S context raises the vCPU's external
interrupt (KVM_INTERRUPT), the guest's handler claims, reads RBR, echoes
through THR and completes; 'q' makes it shut down."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import threading

import pytest

from rvkvm.client.devices import UART_BASE, UART_IRQ
from rvkvm.client.exits import INTR_IDLE, DebugExit, IntrExit
from rvkvm.client.fdt import to_dtb
from rvkvm.client.kvm import KVM_INTERRUPT_SET
from rvkvm.client.plic import (
    CONTEXT_BASE,
    CONTEXT_CLAIM,
    CONTEXT_STRIDE,
    ENABLE_BASE,
    ENABLE_STRIDE,
    PLIC_BASE,
)
from rvkvm.client.vmm import RAM_BASE, Vmm
from tests.emulator import rvasm as A

from .dtb import cells, parse_dtb
from .guest import li, load, new_vm, sbi_call

T0, T1, T2, T3, A0 = 5, 6, 7, 28, 10
STVEC, SIE, SSTATUS = 0x105, 0x104, 0x100
SEIE, SSTATUS_SIE = 1 << 9, 1 << 1
SBI_EXT_SRST = 0x53525354
HANDLER = RAM_BASE + 0x400
S_CONTEXT = 1  # hart 0's S-mode context (2 * hart + 1)


def sb(rs2: int, rs1: int, off: int) -> int:
    return A.s(0x23, 0, rs1, rs2, off)


def sw(rs2: int, rs1: int, off: int) -> int:
    return A.s(0x23, 2, rs1, rs2, off)


def lw(rd: int, rs1: int, off: int) -> int:
    return A.i(0x03, 2, rd, rs1, off)


def lbu(rd: int, rs1: int, off: int) -> int:
    return A.i(0x03, 4, rd, rs1, off)


def main_program() -> list:
    return (li(T0, HANDLER) + [A.csrrw(0, STVEC, T0)]
            + li(A0, UART_BASE)
            + li(T2, PLIC_BASE + 4 * UART_IRQ) + li(T1, 1) + [sw(T1, T2, 0)]  # priority 1
            + li(T2, PLIC_BASE + ENABLE_BASE + ENABLE_STRIDE * S_CONTEXT)
            + li(T1, 1 << UART_IRQ) + [sw(T1, T2, 0)]  # enable source 10
            # threshold 0, as Linux's PLIC driver sets it (firmware may leave 7)
            + li(T2, PLIC_BASE + CONTEXT_BASE + CONTEXT_STRIDE * S_CONTEXT) + [sw(0, T2, 0)]
            + li(T1, 1) + [sb(T1, A0, 1)]  # IER = ERBFI
            + li(T1, SEIE) + [A.csrrs(0, SIE, T1)]
            + li(T1, SSTATUS_SIE) + [A.csrrs(0, SSTATUS, T1)]
            + li(T1, ord(">")) + [sb(T1, A0, 0)]  # a prompt: ready for input
            + [A.WFI, A.j(0, -4)])  # wait for interrupts forever


def handler_program() -> list:
    claim = PLIC_BASE + CONTEXT_BASE + CONTEXT_STRIDE * S_CONTEXT + CONTEXT_CLAIM
    shutdown = sbi_call(SBI_EXT_SRST, 0, 0, 0)
    return A.assemble(
        li(T2, claim) + [lw(T1, T2, 0),  # claim
                         lbu(T3, A0, 0)]  # RBR
        + li(T0, ord("q")) + [A.br(0, T3, T0, "quit"),
                              sb(T3, A0, 0),  # echo through THR
                              sw(T1, T2, 0),  # complete
                              A.SRET,
                              A.lbl("quit")]
        + shutdown)


def _echo_vmm(kvm):
    """A VMM with the PLIC, the UART and the echo guest, booted: (vmm, uart, console)."""
    console = io.BytesIO()
    vmm = Vmm(kvm, ram_size=1 << 20, console=console)
    vmm.add_plic()
    uart = vmm.add_uart()
    vmm.vm.write_memory(RAM_BASE, A.words(main_program()))
    vmm.vm.write_memory(HANDLER, A.words(handler_program()))
    vmm.boot(RAM_BASE, vmm.place_dtb(vmm.device_tree()))
    return vmm, uart, console


def _run_typing(vmm, console, typist, timeout: float):
    """Run ``vmm`` while ``typist(stop)`` types from another thread once
    the guest's prompt is out; the run's result."""
    stop = threading.Event()

    def at_prompt() -> None:
        while not console.getvalue().endswith(b">"):  # type once the guest prompts
            if stop.wait(0.01):
                return
        typist(stop)

    thread = threading.Thread(target=at_prompt)
    thread.start()
    result = vmm.run(timeout=timeout)
    stop.set()
    thread.join()
    vmm.close()
    return result


def test_typed_input_reaches_the_guest_through_the_plic(kvm):
    vmm, uart, console = _echo_vmm(kvm)

    def type_keys(stop: threading.Event) -> None:
        for byte in b"hi\nq":
            while uart.rx_room == 0:  # the guest has not read the last one yet
                if stop.wait(0.01):
                    return
            uart.feed(bytes([byte]))

    result = _run_typing(vmm, console, type_keys, 20)
    assert result.clean_shutdown, result.exit
    assert console.getvalue() == b">hi\n"


def test_pasted_input_waits_for_the_guest_instead_of_overrunning(kvm):
    # A whole line at once (a paste, typing ahead of a slow guest): far more
    # than the receiver holds (1 byte with the FIFOs off, as this guest has
    # them). The VMM keeps what does not fit and feeds it as the guest reads
    # RBR, so every byte arrives, in order, and none is lost to an overrun.
    vmm, uart, console = _echo_vmm(kvm)
    line = b"echo pasted-at-once; uname -a; cat /proc/cpuinfo\n"
    result = _run_typing(vmm, console, lambda stop: vmm.feed_console(line + b"q"), 30)
    assert result.clean_shutdown, result.exit
    assert console.getvalue() == b">" + line
    assert uart.rx_room == uart.rx_capacity  # nothing left over


def test_device_tree_wires_the_uart_to_the_plic(kvm):
    vmm = Vmm(kvm, ram_size=1 << 20, console=io.BytesIO())
    vmm.add_plic()
    vmm.add_uart()
    nodes = parse_dtb(to_dtb(vmm.device_tree()))
    vmm.close()
    plic = nodes["/plic@c000000"]
    intc = nodes["/cpus/cpu@0/interrupt-controller"]
    phandle = cells(intc["phandle"])[0]
    assert cells(plic["interrupts-extended"]) == [phandle, 0xFFFF_FFFF, phandle, 9]
    assert plic["compatible"] == b"sifive,plic-1.0.0\0riscv,plic0\0"
    serial = nodes["/serial@10000000"]
    assert cells(serial["interrupts"]) == [UART_IRQ]
    assert cells(serial["interrupt-parent"]) == cells(plic["phandle"])


def test_run_request_carries_kvm_interrupt(kvm):
    vm, (vcpu,) = new_vm(kvm)
    load(vm, vcpu, li(T0, RAM_BASE + 0x100) + [A.csrrw(0, STVEC, T0)]
         + li(T1, SEIE) + [A.csrrs(0, SIE, T1)] + li(T1, SSTATUS_SIE)
         + [A.csrrs(0, SSTATUS, T1), A.WFI, A.j(0, -4)])
    vm.write_memory(RAM_BASE + 0x100, A.words([A.EBREAK]))
    exit_ = vcpu.run(budget=100_000, idle_timeout=0.2)
    assert isinstance(exit_, IntrExit) and exit_.why == INTR_IDLE  # nothing pending: waits
    exit_ = vcpu.run(budget=100_000, idle_timeout=0.2, interrupt=KVM_INTERRUPT_SET)
    assert isinstance(exit_, DebugExit)  # the external interrupt reached stvec
    assert vcpu.get_reg("csr scause") == (1 << 63) | 9
    vm.destroy()


QEMU = shutil.which("qemu-system-riscv64")
QEMU_LOAD = 0x8020_0000  # where QEMU virt's OpenSBI enters S-mode


@pytest.mark.skipif(QEMU is None, reason="qemu-system-riscv64 (Debian qemu-system-misc) "
                    "is not installed")
def test_the_same_guest_echoes_on_qemu_virt(tmp_path, monkeypatch):
    """Differential check of the devices: the guest above, linked for QEMU's
    virt machine (OpenSBI enters it in S-mode at 0x80200000), echoes the
    same input through QEMU's own 16550 and PLIC and shuts down."""
    monkeypatch.setattr(sys.modules[__name__], "HANDLER", QEMU_LOAD + 0x400)
    image = A.words(main_program()).ljust(0x400, b"\0") + A.words(handler_program())
    path = tmp_path / "echo.bin"
    path.write_bytes(image)
    assert QEMU is not None
    proc = subprocess.Popen([QEMU, "-M", "virt", "-m", "128M", "-nographic", "-bios", "default",
                             "-kernel", str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        seen = b""
        while not seen.endswith(b"\n>"):  # type only once the guest prompts (the
            chunk = proc.stdout.read1(4096)  # firmware resets the UART FIFOs before)
            assert chunk, seen[-200:]
            seen += chunk
        proc.stdin.write(b"hi\nq")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    assert out == b"hi\n"
