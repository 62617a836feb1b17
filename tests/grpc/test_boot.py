"""rvkvm boot's VMM side over gRPC: the device tree from ONE_REG state, the
PLIC, several vCPUs brought up through SBI HSM, and --run plumbing with a
small bare-metal guest (a flat binary, loaded at RAM + 2 MiB)."""

from __future__ import annotations

import io
import os
import pty
import re
import shutil
import struct
import subprocess
import sys

import pytest

from rvkvm.client.boot import load_linux
from rvkvm.client.fdt import to_dtb
from rvkvm.client.vmm import MMU_TYPES, Vmm
from tests.emulator import rvasm as A

from .dtb import cells, parse_dtb
from .guest import REG_A0, ld, li, sbi_call, sd

KERNEL_AT = 0x8020_0000  # where a flat binary lands
DATA = KERNEL_AT + 0x800
FLAG = KERNEL_AT + 0xF00
SBI_DBCN, SBI_HSM, SBI_SRST, SBI_IPI = 0x4442434E, 0x48534D, 0x53525354, 0x735049
CSR_SIE, CSR_SIP, SIP_SSIP = 0x104, 0x144, 2
T0, T1 = 5, 6
BEQ, BNE = 0, 1
BEGIN, HART1, STATUS3, NOHART = (b"rvkvm-run: begin\n", b"hart 1 up\n",
                                 b"rvkvm-run: status 3\n", b"rvkvm-run: status 4\n")


def _strings() -> dict:
    at, out = DATA, {}
    for s in (BEGIN, HART1, STATUS3, NOHART):
        out[s] = at
        at += len(s) + 8
    return out


def wait_flag(value: int, label: str) -> list:
    return ([A.lbl(label)] + li(T0, FLAG) + [ld(T0, T0, 0)] + li(T1, value)
            + [A.br(BNE, T0, T1, label)])


def set_flag(value: int) -> list:
    return li(T0, FLAG) + li(T1, value) + [sd(T1, T0, 0)]


def print_(text: bytes) -> list:
    return sbi_call(SBI_DBCN, 0, len(text), _strings()[text], 0)


def two_hart_guest() -> bytes:
    """Hart 0 prints the begin marker and starts hart 1 through SBI HSM
    (status 4 if it cannot). Hart 1 prints a line, says it is ready (flag
    1) and waits in WFI for a software interrupt; hart 0 sends it an IPI
    through SBI; hart 1 clears sip.SSIP, sets flag 2 and stops; hart 0
    prints status 3 and shuts down."""
    entry1 = KERNEL_AT + 0x400  # hart 1's entry, named in hart 0's hart_start
    hart0 = (print_(BEGIN) + sbi_call(SBI_HSM, 0, 1, entry1, 0)
             + [A.br(BNE, REG_A0, 0, "nohart")] + wait_flag(1, "ready")
             + sbi_call(SBI_IPI, 0, 0b10, 0) + wait_flag(2, "done") + print_(STATUS3)
             + [A.jmp("off"), A.lbl("nohart")] + print_(NOHART)
             + [A.lbl("off")] + sbi_call(SBI_SRST, 0, 0, 0) + [A.lbl("spin"), A.jmp("spin")])
    second = (print_(HART1) + li(T1, SIP_SSIP) + [A.csrrs(0, CSR_SIE, T1)] + set_flag(1)
              + [A.lbl("sleep"), A.WFI, A.csrrs(T1, CSR_SIP, 0), A.i(0x13, 7, T1, T1, SIP_SSIP),
                 A.br(BEQ, T1, 0, "sleep"), A.i(0x73, 3, 0, T1, CSR_SIP)]  # csrc sip, t1
              + set_flag(2) + sbi_call(SBI_HSM, 1) + [A.lbl("spin1"), A.jmp("spin1")])
    code0 = A.assemble(hart0)
    assert len(code0) * 4 <= 0x400
    blob = bytearray(0x1000)
    blob[0:len(code0) * 4] = A.words(code0)
    code1 = A.words(A.assemble(second))
    blob[0x400:0x400 + len(code1)] = code1
    for text, addr in _strings().items():
        blob[addr - KERNEL_AT:addr - KERNEL_AT + len(text)] = text
    return bytes(blob)


def rvkvm(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rvkvm.client", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_run_two_vcpus_through_hsm_and_an_ipi_and_exit_with_the_status(server, tmp_path):
    kernel = tmp_path / "smp.bin"
    kernel.write_bytes(two_hart_guest())
    result = rvkvm("boot", "--server", server.address, "--kernel", str(kernel), "--no-initrd",
                   "--cpus", "2", "--run", "true", "--timeout", "60")
    assert result.returncode == 3, result.stderr
    assert result.stdout == "hart 1 up\n"  # only what lies between the markers
    assert "kernel flat at 0x80200000, 2 vCPU" in result.stderr
    # where the time went, summed over both vCPUs: hart_start, the IPI, both
    # prints' DBCN writes, hart_stop and the shutdown are SBI calls at least
    costs = re.search(r"rvkvm: building code [\d.]+ s \(\d+% of the wall time\): ([\d,]+) "
                      r"regions, ([\d,]+) first-tier blocks, \d+ evicted; ([\d,]+) MMIO exits "
                      r"to the VMM, ([\d,]+) SBI calls", result.stderr)
    assert costs is not None, result.stderr
    regions, blocks, _, sbi = (int(g.replace(",", "")) for g in costs.groups())
    assert regions + blocks > 0 and sbi >= 6


def test_run_with_one_vcpu_gets_the_guests_other_status(server, tmp_path):
    kernel = tmp_path / "smp.bin"
    kernel.write_bytes(two_hart_guest())
    result = rvkvm("boot", "--server", server.address, "--kernel", str(kernel), "--no-initrd",
                   "--run", "true", "--timeout", "60")
    assert result.returncode == 4, result.stderr  # hart_start(1) failed: no such vCPU
    assert result.stdout == ""


def test_a_kernel_that_is_not_one_is_refused(server, tmp_path):
    bad = tmp_path / "arm64.img"
    bad.write_bytes(bytes(56) + b"ARM\x64" + bytes(8))
    result = rvkvm("boot", "--server", server.address, "--kernel", str(bad), "--no-initrd")
    assert result.returncode == 1 and "arm64 Image" in result.stderr


def _tree(vmm: Vmm) -> dict:
    return parse_dtb(to_dtb(vmm.device_tree("console=ttyS0", (0x8800_0000, 0x8810_0000))))


def test_device_tree_follows_each_vcpus_one_reg_state(kvm):
    vmm = Vmm(kvm, ram_size=64 << 20, console=io.BytesIO(), cpus=2)
    try:
        vmm.vcpus[1].set_reg("isa_ext SVPBMT", 0)
        vmm.vcpus[1].set_reg("isa_ext ZICBOM", 0)
        nodes = _tree(vmm)
        cpu0, cpu1 = nodes["/cpus/cpu@0"], nodes["/cpus/cpu@1"]
        isa0, isa1 = (cpu["riscv,isa"].rstrip(b"\0").decode() for cpu in (cpu0, cpu1))
        assert isa0.startswith("rv64imafdc") and "_svpbmt" in isa0 and "_zicbom" in isa0
        assert "_svpbmt" not in isa1 and "_zicbom" not in isa1
        exts1 = cpu1["riscv,isa-extensions"].split(b"\0")[:-1]
        assert b"svpbmt" not in exts1 and b"i" in exts1 and b"zicboz" in exts1
        assert isa1 == "rv64" + "".join(e.decode() for e in exts1 if len(e) == 1) + "".join(
            "_" + e.decode() for e in exts1 if len(e) > 1)
        # cache-block sizes only where the extension is on, from the config registers
        size = vmm.vcpus[0].get_reg("config zicbom_block_size")
        assert cells(cpu0["riscv,cbom-block-size"]) == [size]
        assert "riscv,cbom-block-size" not in cpu1 and "riscv,cboz-block-size" in cpu1
        satp = vmm.vcpus[0].get_reg("config satp_mode")
        assert cpu0["mmu-type"] == MMU_TYPES[satp].encode() + b"\0"
        freq = vmm.vcpus[0].get_reg("timer frequency")
        assert cells(nodes["/cpus"]["timebase-frequency"]) == [freq]
        assert cells(nodes["/chosen"]["linux,initrd-start"]) == [0, 0x8800_0000]
        assert cells(nodes["/chosen"]["linux,initrd-end"]) == [0, 0x8810_0000]
        assert nodes["/chosen"]["bootargs"] == b"console=ttyS0\0"
        intc = [cells(nodes[f"/cpus/cpu@{i}/interrupt-controller"]["phandle"])[0]
                for i in range(2)]
        assert len(set(intc)) == 2
    finally:
        vmm.close()


def test_chosen_has_a_fresh_rng_seed_unless_told_otherwise(kvm, tmp_path):
    seeds = []
    for _ in range(2):
        vmm = Vmm(kvm, ram_size=16 << 20, console=io.BytesIO())
        try:
            seeds.append(_tree(vmm)["/chosen"]["rng-seed"])
        finally:
            vmm.close()
    assert [len(s) for s in seeds] == [32, 32] and seeds[0] != seeds[1]
    for given, expected in ((bytes(range(40)), bytes(range(40))), (b"", None)):
        vmm = Vmm(kvm, ram_size=16 << 20, console=io.BytesIO(), rng_seed=given)
        try:
            assert _tree(vmm)["/chosen"].get("rng-seed") == expected
        finally:
            vmm.close()


def test_boot_takes_an_rng_seed_in_hex_or_none(server, tmp_path):
    kernel = tmp_path / "smp.bin"
    kernel.write_bytes(two_hart_guest())
    dtb = tmp_path / "vm.dtb"
    for seed, expected in (("00ff10", b"\x00\xff\x10"), ("none", None)):
        result = rvkvm("boot", "--server", server.address, "--kernel", str(kernel),
                       "--no-initrd", "--rng-seed", seed, "--dump-dtb", str(dtb))
        assert result.returncode == 0, result.stderr
        assert parse_dtb(dtb.read_bytes())["/chosen"].get("rng-seed") == expected
    result = rvkvm("boot", "--server", server.address, "--kernel", str(kernel), "--no-initrd",
                   "--rng-seed", "xyz")
    assert result.returncode == 2 and "hex bytes" in result.stderr


def test_plic_and_uart_interrupt_in_the_device_tree(kvm):
    vmm = Vmm(kvm, ram_size=64 << 20, console=io.BytesIO(), cpus=2)
    try:
        vmm.add_plic()
        vmm.add_uart()
        nodes = _tree(vmm)
        plic = nodes["/plic@c000000"]
        intc = [cells(nodes[f"/cpus/cpu@{i}/interrupt-controller"]["phandle"])[0]
                for i in range(2)]
        # kvmtool's layout: per hart an unwired M context, then S on cpu-intc line 9
        assert cells(plic["interrupts-extended"]) == [intc[0], 0xFFFF_FFFF, intc[0], 9,
                                                      intc[1], 0xFFFF_FFFF, intc[1], 9]
        serial = nodes["/serial@10000000"]
        assert cells(serial["interrupts"]) == [10]
        assert cells(serial["interrupt-parent"]) == cells(plic["phandle"])
        assert cells(plic["phandle"])[0] not in intc
    finally:
        vmm.close()


def test_load_linux_places_kernel_initrd_and_dtb(kvm):
    vmm = Vmm(kvm, ram_size=64 << 20, console=io.BytesIO())
    try:
        image = bytearray(64)
        struct.pack_into("<QQ", image, 8, 0x20_0000, 0x10_0000)
        image[48:56] = b"RISCV\0\0\0"
        image[56:60] = b"RSC\x05"
        layout = load_linux(vmm, bytes(image), b"initrd-bytes", "quiet")
        assert layout.kernel.entry == 0x8020_0000
        assert layout.initrd == (0x8020_0000 + (32 << 20), 0x8020_0000 + (32 << 20) + 12)
        assert vmm.vm.read_memory(layout.initrd[0], 12) == b"initrd-bytes"
        assert vmm.vcpu.get_reg("core pc") == 0x8020_0000
        assert vmm.vcpu.get_reg("core a1") == layout.dtb
        blob = vmm.vm.read_memory(layout.dtb, 4096)
        total = struct.unpack_from(">I", blob, 4)[0]
        nodes = parse_dtb(vmm.vm.read_memory(layout.dtb, total))
        assert cells(nodes["/chosen"]["linux,initrd-start"]) == [0, layout.initrd[0]]
    finally:
        vmm.close()


ECHO_BUF = KERNEL_AT + 0xF80
BYE = b"bye\n"


def dbcn_echo_guest() -> bytes:
    """Reads the console through SBI DBCN console_read one byte at a time
    and echoes it with console_write_byte; 'q' prints bye and shuts down."""
    t2 = 7
    code = A.assemble(
        [A.lbl("poll")] + sbi_call(SBI_DBCN, 1, 1, ECHO_BUF, 0)
        + [A.br(BNE, REG_A0, 0, "poll"), A.br(BEQ, REG_A0 + 1, 0, "poll")]
        + li(T0, ECHO_BUF) + [A.i(0x03, 4, T1, T0, 0)]  # lbu t1, 0(t0)
        + li(t2, ord("q")) + [A.br(BEQ, T1, t2, "quit")]
        + li(17, SBI_DBCN) + li(16, 2) + [A.addi(REG_A0, T1, 0), A.ECALL, A.jmp("poll"),
                                          A.lbl("quit")]
        + sbi_call(SBI_DBCN, 0, len(BYE), ECHO_BUF + 0x40, 0)
        + sbi_call(SBI_SRST, 0, 0, 0) + [A.lbl("spin"), A.jmp("spin")])
    blob = bytearray(0x1000)
    blob[:len(code) * 4] = A.words(code)
    blob[0xFC0:0xFC0 + len(BYE)] = BYE
    return bytes(blob)


def _on_a_terminal(server, tmp_path, typed: bytes, then: bytes = b"") -> subprocess.CompletedProcess:
    """rvkvm boot of the echo guest with a pty as stdin: types ``typed``;
    with ``then``, waits for the echo of ``typed`` and types ``then``."""
    kernel = tmp_path / "echo.bin"
    kernel.write_bytes(dbcn_echo_guest())
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rvkvm.client", "boot", "--server", server.address, "--kernel",
             str(kernel), "--no-initrd", "--timeout", "60"],
            stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        os.write(master, typed)
        echoed = b""
        if then:
            assert proc.stdout is not None
            echoed = proc.stdout.read(len(typed))
            os.write(master, then)
        out, err = proc.communicate(timeout=90)
        out = echoed + out
    finally:
        os.close(master)
        os.close(slave)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_terminal_input_reaches_the_guest(server, tmp_path):
    r = _on_a_terminal(server, tmp_path, b"hi there q")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"hi there bye\n"  # typed ahead of the boot, not lost


def test_ctrl_a_x_leaves_the_console(server, tmp_path):
    r = _on_a_terminal(server, tmp_path, b"ab", then=b"\x01x")
    assert r.returncode == 1 and r.stdout == b"ab"
    assert b"stopped" in r.stderr


def test_dtc_reads_the_device_tree_without_warnings(kvm, tmp_path):
    if shutil.which("dtc") is None:
        pytest.skip("dtc (device-tree-compiler) not installed")
    vmm = Vmm(kvm, ram_size=64 << 20, console=io.BytesIO(), cpus=2)
    try:
        vmm.add_plic()
        vmm.add_uart()
        (tmp_path / "vm.dtb").write_bytes(
            to_dtb(vmm.device_tree("console=ttyS0", (0x8800_0000, 0x8810_0000))))
    finally:
        vmm.close()
    r = subprocess.run(["dtc", "-I", "dtb", "-O", "dts", str(tmp_path / "vm.dtb")],
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == ""
    assert 'riscv,isa-extensions = "i\\0m\\0a\\0f\\0d\\0c\\0' in r.stdout
    assert "interrupts-extended = <0x01 0xffffffff 0x01 0x09 0x02 0xffffffff 0x02 0x09>" in r.stdout


def test_boot_runs_its_embedded_workers_on_this_interpreter_unless_told():
    from rvkvm.client.cli import build_parser
    parser = build_parser()
    assert parser.parse_args(["boot"]).worker_python == sys.executable
    assert parser.parse_args(["boot", "--worker-python", "/x/pypy3"]).worker_python == "/x/pypy3"
    assert parser.parse_args(["run", "guest.elf"]).worker_python is None  # the server's default
