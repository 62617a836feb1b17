"""rvkvm boot's pieces that need no server: initrd placement, --run output
capture."""

from __future__ import annotations

import io

import pytest

from rvkvm.client.boot import RunCapture, place_initrd
from rvkvm.client.image import Kernel

RAM = 0x8000_0000


def kernel(start: int, end: int) -> Kernel:
    return Kernel("image", start, end, [(start, b"")])


def test_initrd_goes_where_qemu_puts_it():
    k = kernel(RAM + 0x20_0000, RAM + 0x120_0000)
    assert place_initrd(k, 1 << 20, RAM, 256 << 20) == RAM + 0x20_0000 + (128 << 20)
    assert place_initrd(k, 1 << 20, RAM, 64 << 20) == RAM + 0x20_0000 + (32 << 20)


def test_initrd_stays_above_the_kernel_and_below_the_dtb():
    big = kernel(RAM + 0x20_0000, RAM + 0x20_0000 + (40 << 20) + 123)
    start = place_initrd(big, 1 << 20, RAM, 64 << 20)  # half of RAM is inside the kernel
    assert start >= big.end and start % 4096 == 0
    start = place_initrd(kernel(RAM, RAM + 0x1000), 60 << 20, RAM, 64 << 20)
    assert start + (60 << 20) <= RAM + (64 << 20) - 0x10000
    with pytest.raises(ValueError, match="does not fit"):
        place_initrd(big, 30 << 20, RAM, 64 << 20)


def test_run_capture_keeps_only_the_commands_output_and_status():
    out = io.BytesIO()
    cap = RunCapture(out)
    stream = (b"[    0.1] boot noise\r\nrvkvm-run: begin\r\nriscv64\r\nline two\r\n"
              b"rvkvm-run: status 42\r\n[ 9.0] reboot: Power down\r\n")
    for i in range(0, len(stream), 5):  # markers arrive split across writes
        cap.write(stream[i:i + 5])
    assert out.getvalue() == b"riscv64\nline two\n"
    assert cap.status == 42


def test_run_capture_without_status():
    cap = RunCapture(io.BytesIO())
    cap.write(b"rvkvm-run: begin\nstill running\n")
    assert cap.status is None and cap.started


class _FedVmm:
    def __init__(self) -> None:
        self.fed = b""

    def feed_console(self, data: bytes) -> None:
        self.fed += data


def test_prompt_typer_types_once_at_the_first_prompt_and_its_echo_is_no_marker():
    from rvkvm.client.boot import PromptTyper

    vmm = _FedVmm()
    typer = PromptTyper(vmm, "uname -m")  # type: ignore[arg-type]
    typer.console_output(b"[ 1.0] Run /init as init process\r\n")
    assert vmm.fed == b""
    typer.console_output(b"~ #")
    typer.console_output(b" \x1b[6n")  # ash asks where the cursor is
    assert b"uname -m\n" in vmm.fed and vmm.fed.endswith(b"poweroff -f\n")
    typer.console_output(b"\r\n/ # ")
    assert vmm.fed.count(b"uname -m") == 1
    # the shell echoes the typed line: RunCapture must not take it for the markers
    out = io.BytesIO()
    cap = RunCapture(out)
    cap.write(vmm.fed.replace(b"\n", b"\r\n"))
    assert not cap.started and cap.status is None
    cap.write(b"rvkvm-run: begin\r\nriscv64\r\nrvkvm-run: status 0\r\n")
    assert (out.getvalue(), cap.status) == (b"riscv64\n", 0)
