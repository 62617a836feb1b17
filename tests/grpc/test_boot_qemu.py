"""The device tree, initrd placement and initramfs of ``rvkvm boot`` are
right independently of rvkvm's speed: the same DTB (made by the VMM from
ONE_REG state, 2 vCPUs, PLIC, UART on IRQ 10) and initramfs, at the same
addresses, boot Debian's kernel under qemu-system-riscv64 -M virt to the
shell's command.

QEMU's OpenSBI needs two M-mode devices the KVM guest never sees (the CLINT
for its timer and IPIs, the SiFive test device to power off); they are added
to the tree for QEMU only. The emulated host leaves out the extensions QEMU
7.2 (Debian 12's qemu-system-misc) lacks, so the guest is not told about
instructions QEMU would not run."""

from __future__ import annotations

import io
import shutil
import subprocess

import pytest

from rvkvm.client.boot import DEFAULT_APPEND, initramfs_programs, load_linux
from rvkvm.client.fdt import Node, to_dtb
from rvkvm.client.initramfs import busybox_initramfs
from rvkvm.client.kvm import Kvm
from rvkvm.client.vmm import Vmm
from rvkvm.server.kvm.profiles import HostProfile
from rvkvm.server.rpc.config import ServerConfig

from .boot_kernel import debian_files
from .conftest import ServerThread

QEMU = "qemu-system-riscv64"
NOT_IN_QEMU_7_2 = ("zawrs", "zicond", "svadu", "ssnpm", "smnpm", "zicbop", "zicbom", "zicboz")
COMMAND = "uname -m; nproc; grep '^isa' /proc/cpuinfo | head -1; tagptr; echo tagptr=$?"


def qemu_only_nodes(cpus: int) -> list:
    irqs = []
    for hart in range(cpus):
        irqs += [Vmm.cpu_intc_phandle(hart), 3, Vmm.cpu_intc_phandle(hart), 7]
    return [Node("clint@2000000", {"compatible": ["sifive,clint0", "riscv,clint0"],
                                   "reg": [0, 0x200_0000, 0, 0x1_0000],
                                   "interrupts-extended": irqs}),
            Node("test@100000", {"compatible": ["sifive,test1", "sifive,test0", "syscon"],
                                 "reg": [0, 0x10_0000, 0, 0x1000]})]


@pytest.fixture(scope="module")
def qemu_host_server():
    thread = ServerThread(ServerConfig(host=HostProfile.default().without(*NOT_IN_QEMU_7_2))
                          ).start()
    yield thread
    thread.stop()


def test_debian_kernel_boots_with_our_dtb_and_initramfs_under_qemu(qemu_host_server, tmp_path):
    if shutil.which(QEMU) is None:
        pytest.skip(f"{QEMU} not installed")
    files = debian_files()
    with open(files.kernel, "rb") as f:
        kernel = f.read()
    with open(files.busybox, "rb") as f:
        initrd = busybox_initramfs(f.read(), extra=initramfs_programs(), run_command=COMMAND)
    import grpc

    with grpc.insecure_channel(qemu_host_server.address) as channel:
        vmm = Vmm(Kvm(channel, timeout=60), ram_size=256 << 20, console=io.BytesIO(), cpus=2)
        try:
            vmm.add_plic()
            vmm.add_uart()
            layout = load_linux(vmm, kernel, initrd, DEFAULT_APPEND)
            assert layout.initrd is not None
            tree = vmm.device_tree(DEFAULT_APPEND, layout.initrd)
        finally:
            vmm.close()
    isa = tree.children[1].children[0].props["riscv,isa"]  # /cpus/cpu@0
    assert isinstance(isa, str) and "zicbom" not in isa
    tree.children.extend(qemu_only_nodes(2))
    (tmp_path / "rvkvm.dtb").write_bytes(to_dtb(tree))
    (tmp_path / "initrd").write_bytes(initrd)
    proc = subprocess.run(
        [QEMU, "-M", "virt", "-cpu", "rv64,svpbmt=on,svinval=on,svnapot=on", "-m", "256M",
         "-smp", "2", "-nographic", "-no-reboot", "-kernel", files.kernel,
         "-dtb", str(tmp_path / "rvkvm.dtb"), "-device",
         f"loader,file={tmp_path / 'initrd'},addr={layout.initrd[0]:#x},force-raw=on"],
        capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    out = proc.stdout
    assert "rvkvm-run: begin" in out, out[-3000:]
    lines = out.split("rvkvm-run: begin", 1)[1].splitlines()[1:]
    assert lines[0] == "riscv64"
    assert lines[1] == "2"
    assert lines[2].split(":", 1)[1].strip() == isa
    # QEMU 7.2 has no Ssnpm, so user pointer masking is refused cleanly
    assert any(line.startswith("tagptr: prctl(PR_SET_TAGGED_ADDR_CTRL") for line in lines)
    assert "tagptr=2" in lines
    assert "rvkvm-run: status 0" in out
    assert "reboot: Power down" in out  # SBI SRST through the test device
