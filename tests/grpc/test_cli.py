"""End to end: the ``rvkvm`` command and the VMM helper on real guests."""

from __future__ import annotations

import errno
import io
import os
import struct
import subprocess
import sys

import pytest

from rvkvm.client import KvmError
from rvkvm.client.cli import HELLO_GUEST
from rvkvm.client.exits import SystemEventExit
from rvkvm.client.fdt import Node, to_dtb
from rvkvm.client.vmm import Vmm
from tests.emulator import rvasm as A

from .dtb import cells, parse_dtb
from .guest import MMIO, REG_A0, REG_A1, REG_A2, WFI, ld, li, sbi_call, sd

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GUESTS = os.path.join(ROOT, "client", "guests")
HELLO_TEXT = "Hello from an S-mode guest on rvkvm (SBI DBCN console)\n"
SBI_EXT_SRST = 0x53525354
ENTRY = 0x8020_0000


def rvkvm(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rvkvm.client", *args], cwd=ROOT, timeout=timeout,
                          capture_output=True, text=True)


def tiny_elf(code: bytes, entry: int = ENTRY) -> bytes:
    """An ELF64 RISC-V executable with one PT_LOAD segment holding ``code``."""
    ehdr = struct.pack("<16sHHIQQQIHHHHHH", b"\x7fELF\x02\x01\x01" + bytes(9), 2, 243, 1,
                       entry, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0x1000, entry, entry, len(code), len(code), 0x1000)
    return (ehdr + phdr).ljust(0x1000, b"\0") + code


def test_run_hello_with_embedded_server():
    result = rvkvm("run", HELLO_GUEST)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(HELLO_TEXT)
    assert "Device tree found at a1" in result.stdout


def test_run_hello_on_a_server(engine_server):
    result = rvkvm("run", HELLO_GUEST, "--server", engine_server.address, "--ram", "64M")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(HELLO_TEXT)


def test_run_exit_status_1_on_system_failure(server, tmp_path):
    elf = tmp_path / "fail.elf"
    elf.write_bytes(tiny_elf(A.words(sbi_call(SBI_EXT_SRST, 0, 0, 1))))  # reason: failure
    result = rvkvm("run", str(elf), "--server", server.address)
    assert result.returncode == 1
    assert "shutdown with reason 1" in result.stderr


def test_info_and_regs(server):
    info = rvkvm("info", "--server", server.address)
    assert info.returncode == 0 and "host ISA         rv64imafdc" in info.stdout
    regs = rvkvm("regs", "--server", server.address)
    assert regs.returncode == 0
    lines = regs.stdout.splitlines()
    assert lines[0].split()[1:3] == ["config", "isa"]
    assert any(line.split()[1:] == ["sbi_ext", "DBCN", "0x0000000000000000"] for line in lines)


class Counter:
    """An MMIO device: reads count up, writes set the counter."""

    def __init__(self) -> None:
        self.value = 100
        self.writes = []

    def read(self, offset: int, size: int) -> int:
        self.value += 1
        return self.value + offset

    def write(self, offset: int, size: int, value: int) -> None:
        self.writes.append((offset, size, value))
        self.value = value


def test_vmm_serves_mmio_devices_from_a_map(kvm):
    vmm = Vmm(kvm, ram_size=4 << 20, console=io.BytesIO())
    device = Counter()
    vmm.add_mmio(MMIO, 0x100, device)
    program = (li(REG_A0, MMIO) + [ld(REG_A1, REG_A0, 8)] + li(REG_A2, 7)
               + [sd(REG_A2, REG_A0, 0), ld(REG_A2, REG_A0, 0)] + sbi_call(SBI_EXT_SRST, 0, 0, 0))
    vmm.vm.write_memory(ENTRY, A.words(program))
    vmm.boot(ENTRY, vmm.place_dtb(vmm.device_tree()))
    result = vmm.run(timeout=60)
    assert result.clean_shutdown and isinstance(result.exit, SystemEventExit)
    assert device.writes == [(0, 8, 7)]
    assert vmm.vcpu.get_reg("core a2") == 8  # 7 written, then one more read
    vmm.close()


def test_vmm_boot_sets_the_linux_boot_registers(kvm):
    """The boot protocol's registers (pc = entry, a0 = hart id, a1 = DTB),
    set in one batch; a hart that does not exist fails as KVM would."""
    vmm = Vmm(kvm, ram_size=4 << 20, cpus=2, console=io.BytesIO())
    dtb = vmm.place_dtb(vmm.device_tree())
    vmm.boot(ENTRY + 0x40, dtb, hart_id=1)
    boot = vmm.vm.vcpu(1)
    assert (boot.get_reg("core pc"), boot.get_reg("core a0"), boot.get_reg("core a1")) == (
        ENTRY + 0x40, 1, dtb)
    assert vmm.vcpu.get_reg("core pc") != ENTRY + 0x40  # the other vCPU is untouched
    with pytest.raises(KvmError) as info:
        vmm.boot(ENTRY, dtb, hart_id=5)
    assert info.value.errno == errno.EBADF  # as SetOneReg on it answers
    vmm.close()


def test_run_timeout_ends_a_busy_guest(server, tmp_path):
    elf = tmp_path / "spin.elf"
    elf.write_bytes(tiny_elf(A.words([A.j(0, 0)])))
    result = rvkvm("run", str(elf), "--server", server.address, "--timeout", "0.5")
    assert result.returncode == 124, result.stderr
    assert result.stderr == "rvkvm: guest timed out after 0.5 s (still running, pc=0x80200000)\n"


def test_run_timeout_ends_a_waiting_guest(server, tmp_path):
    elf = tmp_path / "wfi.elf"
    elf.write_bytes(tiny_elf(A.words([WFI, A.j(0, -4)])))
    result = rvkvm("run", str(elf), "--server", server.address, "--timeout", "0.5")
    assert result.returncode == 124 and "guest timed out after 0.5 s" in result.stderr


def test_illegal_instruction_at_entry_says_why(engine_server, tmp_path):
    elf = tmp_path / "illegal.elf"
    elf.write_bytes(tiny_elf(bytes(4)))  # 0x00000000 is an illegal instruction
    result = rvkvm("run", str(elf), "--server", engine_server.address)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == ("rvkvm: guest failed: KVM_RUN failed: EOPNOTSUPP (95): "
                        "instruction fetch from non-RAM at 0x0")
    assert lines[1] == ("rvkvm: guest trapped to stvec=0x0 (no trap handler): scause=0x2 "
                        "(illegal instruction) at sepc=0x80200000, stval=0x0")
    assert lines[2].startswith("rvkvm: registers: pc=0x0 ra=0x0 sp=0x0 ")
    assert lines[2].endswith(" privilege=S")


def test_trap_to_a_handler_outside_ram_says_where(server, tmp_path):
    program = li(REG_A0, 0x1000) + [A.csrrw(0, 0x105, REG_A0)]  # stvec = 0x1000
    elf = tmp_path / "stvec.elf"
    elf.write_bytes(tiny_elf(A.words(program) + bytes(4)))
    result = rvkvm("run", str(elf), "--server", server.address)
    assert result.returncode == 1
    sepc = ENTRY + 4 * len(program)
    assert result.stderr.splitlines()[1] == (
        f"rvkvm: guest trapped to stvec=0x1000: scause=0x2 (illegal instruction) at "
        f"sepc={sepc:#x}, stval=0x0")


def test_fdt_reads_back(tmp_path):
    root = Node("", {"#address-cells": 2, "model": "m"})
    root.add(Node("cpus", {"flag": True, "cells": [1, 2]}))
    nodes = parse_dtb(to_dtb(root))
    assert nodes["/"] == {"#address-cells": b"\0\0\0\2", "model": b"m\0"}
    assert nodes["/cpus"] == {"flag": b"", "cells": b"\0\0\0\1\0\0\0\2"}


PMLEN_GUEST = os.path.join(GUESTS, "pmlen.elf")
UART_GUEST = os.path.join(GUESTS, "uart.elf")


def test_pointer_masking_example_guest(engine_server):
    result = rvkvm("run", PMLEN_GUEST, "--server", engine_server.address)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PMLEN is 7 (fwft_get agrees)" in result.stdout
    assert "tagged pointers work" in result.stdout
    assert "PMLEN back to 0; done" in result.stdout


def test_pointer_masking_example_without_smnpm(server):
    # the VMM turns SMNPM off before boot: FWFT answers NOT_SUPPORTED
    result = rvkvm("run", PMLEN_GUEST, "--server", server.address, "--disable-isa-ext", "SMNPM")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "NOT_SUPPORTED" in result.stdout and "tagged" not in result.stdout


@pytest.mark.parametrize("how", [["--disable-sbi-ext", "FWFT"], ["--abi", "linux-6.13"]])
def test_pointer_masking_example_without_fwft(server, how):
    # without FWFT (disabled, or a kernel ABI older than FWFT) the guest says so
    result = rvkvm("run", PMLEN_GUEST, "--server", server.address, *how)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ("pmlen: SBI FWFT is absent (sbi_probe_extension says 0): this VM "
                             "cannot ask for pointer masking\n")


def test_disabling_ssnpm_is_refused(server):
    result = rvkvm("run", PMLEN_GUEST, "--server", server.address, "--disable-isa-ext", "SSNPM")
    assert result.returncode == 1
    assert "EINVAL" in result.stderr and result.stdout == ""


def test_mmio_device_example_guest(engine_server):
    result = rvkvm("run", UART_GUEST, "--server", engine_server.address)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ("Hello from an MMIO device guest: this text went byte by byte "
                             "through the NS16550A at 0x10000000\n")


def test_uart_is_in_the_device_tree(kvm):
    vmm = Vmm(kvm, ram_size=4 << 20, console=io.BytesIO())
    vmm.add_uart()
    nodes = parse_dtb(to_dtb(vmm.device_tree()))
    serial = nodes["/serial@10000000"]
    assert serial["compatible"] == b"ns16550a\0"
    assert cells(serial["reg"]) == [0, 0x1000_0000, 0, 0x100]
    assert nodes["/chosen"]["stdout-path"] == b"/serial@10000000\0"
    vmm.close()
