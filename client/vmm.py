"""A small VMM on top of the client library: guest RAM, an ELF loader, a
device tree, and a run loop that serves SBI calls (the DBCN console) and
MMIO devices from tables.

    vmm = Vmm(Kvm.connect("127.0.0.1:50051"), ram_size=256 << 20)
    entry = vmm.load_elf("guest.elf")
    vmm.boot(entry, vmm.place_dtb(vmm.device_tree()))
    result = vmm.run()          # until a system event, a failure or the timeout

``read_elf`` checks a guest file before any VM exists (``GuestImageError``
with a one-line reason for anything that is not a loadable RV64 ELF);
``Vmm.crash_report`` reads the vCPU's registers after a failure and says
what the guest did (trap cause, sepc, stval, privilege).
"""

from __future__ import annotations

import bisect
import struct
import sys
import threading
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Dict, List, Optional, Protocol, Sequence, Tuple

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from . import exits as X
from .devices import UART_BASE, UART_IRQ, UART_SIZE, Uart16550
from .errors import KvmError
from .fdt import Node, to_dtb
from .kvm import Kvm
from .plic import PLIC_BASE, PLIC_SIZE, Plic, VcpuInterruptLine
from .report import CRASH_REGS, describe_crash

RAM_BASE = 0x8000_0000
PAGE = 4096
DTB_ALIGN = 0x1000
DTB_ROOM = 0x10000  # the device tree goes into the last 64 KiB of RAM
PHANDLE_CPU0_INTC = 1
PHANDLE_PLIC = 2

SBI_SUCCESS = 0
SBI_ERR_INVALID_PARAM = -3
SBI_EXT_0_1_CONSOLE_PUTCHAR = 0x01
SBI_EXT_DBCN = 0x4442434E
DBCN_CONSOLE_WRITE, DBCN_CONSOLE_READ, DBCN_CONSOLE_WRITE_BYTE = 0, 1, 2
SRST_REASON_NONE = 0
EM_RISCV = 243
# e_machine values a user may hand over by mistake (elf.h EM_*).
ELF_MACHINES = {3: "x86", 8: "MIPS", 20: "PowerPC", 21: "PowerPC64", 22: "S/390", 40: "ARM",
                62: "x86-64", 183: "AArch64", 243: "RISC-V", 258: "LoongArch"}
ELFCLASS64 = 2


class MmioDevice(Protocol):
    """An MMIO device: accesses with offsets relative to its base."""

    def read(self, offset: int, size: int) -> int:
        """A guest load of ``size`` bytes at ``offset``: the value."""
        ...

    def write(self, offset: int, size: int, value: int) -> None:
        """A guest store of ``size`` bytes at ``offset``."""
        ...


@dataclass
class RunResult:
    """Why the VM stopped: the last exit, whether that is a clean shutdown
    (SRST shutdown with reason "none"), and whether ``run``'s timeout ended
    it (``exit`` is then the INTR exit of the kick)."""

    exit: X.Exit
    timed_out: bool = False

    @property
    def clean_shutdown(self) -> bool:
        """True for an SBI SRST shutdown with reason "none"."""
        e = self.exit
        return (isinstance(e, X.SystemEventExit) and e.type == X.KVM_SYSTEM_EVENT_SHUTDOWN
                and (e.data or [0])[0] == SRST_REASON_NONE)


SbiHandler = Callable[["Vmm", X.SbiExit], None]


class Vmm:
    """A one-vCPU VMM, as ``rvkvm run`` uses it: creates a VM on ``kvm``
    (``abi_profile``: see ``Kvm.create_vm``), maps ``ram_size`` bytes of RAM
    at ``ram_base`` (slot 0), creates vCPU 0 (``self.vcpu``) and turns its
    SBI DBCN console on; ``console`` receives the guest's output (default
    stdout). ``sbi_handlers`` maps SBI extension ids to handlers of
    forwarded calls (DBCN and the legacy putchar are preset); ``add_mmio``
    and ``add_uart`` add devices served from MMIO exits. Raises
    ``KvmError`` from the calls it makes; ``close()`` destroys the VM.

        vmm = Vmm(Kvm.connect(address))
        vmm.add_uart()
        entry = vmm.load_elf("client/guests/uart.elf")
        vmm.boot(entry, vmm.place_dtb(vmm.device_tree()))
        result = vmm.run(timeout=10)
        vmm.close()
    """

    def __init__(self, kvm: Kvm, ram_size: int = 256 << 20, ram_base: int = RAM_BASE,
                 abi_profile: str = "", console: Optional[BinaryIO] = None) -> None:
        self.kvm = kvm
        self.ram_base = ram_base
        self.ram_size = ram_size
        self.console = console if console is not None else sys.stdout.buffer
        self.vm = kvm.create_vm(abi_profile)
        self.vm.set_user_memory_region(0, ram_base, ram_size)
        self.vcpu = self.vm.create_vcpu(0)
        self.vcpu.set_reg("sbi_ext DBCN", 1)  # KVM leaves DBCN to the VMM, off by default
        self._mmio_starts: List[int] = []
        self._mmio: List[Tuple[int, int, MmioDevice]] = []
        self._dt_devices: List[Node] = []
        self._stdout_path = ""
        self.plic: Optional[Plic] = None
        self._irq_line: Optional[VcpuInterruptLine] = None
        self.sbi_handlers: Dict[int, SbiHandler] = {
            SBI_EXT_DBCN: Vmm._sbi_dbcn,
            SBI_EXT_0_1_CONSOLE_PUTCHAR: Vmm._sbi_legacy_putchar,
        }

    # -- setup -----------------------------------------------------------

    def add_mmio(self, base: int, size: int, device: MmioDevice) -> None:
        """Serve guest accesses to [base, base + size) with ``device``."""
        i = bisect.bisect(self._mmio_starts, base)
        if (i and self._mmio[i - 1][1] > base) or (i < len(self._mmio) and
                                                   self._mmio[i][0] < base + size):
            raise ValueError(f"MMIO range at {base:#x} overlaps another device")
        self._mmio_starts.insert(i, base)
        self._mmio.insert(i, (base, base + size, device))

    def add_plic(self) -> Plic:
        """A PLIC at QEMU virt's address whose S context of hart 0 drives
        vCPU 0's external interrupt (KVM_INTERRUPT), as kvmtool wires it."""
        plic = Plic(1)
        self.add_mmio(PLIC_BASE, PLIC_SIZE, plic)
        self._irq_line = plic.connect_vcpu(0, self.vcpu)
        self.plic = plic
        return plic

    def add_uart(self, base: int = UART_BASE, coalesce_thr: bool = False,
                 irq: Optional[int] = None) -> Uart16550:
        """An NS16550A at ``base`` (QEMU virt's address by default) writing
        to the console, listed in the device tree as the stdout device.
        ``coalesce_thr``: THR writes go through the coalesced-MMIO ring
        (no exit per transmitted byte; LSR polls still exit). ``irq``: its
        PLIC source (QEMU virt: 10); default 10 when ``add_plic`` came first."""
        if irq is None and self.plic is not None:
            irq = UART_IRQ
        line = None
        if irq is not None:
            if self.plic is None:
                raise ValueError("a UART interrupt needs add_plic() first")
            line = self.plic.irq_line(irq)
        uart = Uart16550(self._write_console, irq=line)
        self.add_mmio(base, UART_SIZE, uart)
        if coalesce_thr:
            self.vm.register_coalesced_mmio(base, 1)
        node = uart.dt_node(base, irq=irq,
                            interrupt_parent=PHANDLE_PLIC if irq is not None else None)
        self._dt_devices.append(node)
        self._stdout_path = self._stdout_path or "/" + node.name
        return uart

    def load_elf(self, path: str) -> int:
        """Copy the PT_LOAD segments of an ELF file to guest RAM (at their
        physical addresses); returns the entry point. ``GuestImageError``
        if the file is not a loadable RV64 ELF for this RAM."""
        return self.load_image(read_elf(path))

    def load_image(self, image: GuestImage) -> int:
        """Copy a ``read_elf`` image to guest RAM; returns its entry point."""
        image.check_fits(self.ram_base, self.ram_size)
        for addr, data, memsz in image.segments:
            self.vm.write_memory(addr, data)
            if memsz > len(data):
                self.vm.write_memory(addr + len(data), bytes(memsz - len(data)))
        return image.entry

    def device_tree(self, bootargs: str = "") -> Node:
        """A minimal device tree: one cpu, the RAM, the devices added with
        ``add_plic`` and ``add_uart``, /chosen."""
        info = self.kvm.get_host_info()
        mmu = {8: "riscv,sv39", 9: "riscv,sv48", 10: "riscv,sv57"}.get(info.satp_mode,
                                                                      "riscv,sv39")
        root = Node("", {"#address-cells": 2, "#size-cells": 2, "compatible": "rvkvm,virt",
                         "model": "rvkvm virtual machine"})
        chosen = root.add(Node("chosen", {"bootargs": bootargs}))
        if self._stdout_path:
            chosen.props["stdout-path"] = self._stdout_path
        cpus = root.add(Node("cpus", {"#address-cells": 1, "#size-cells": 0,
                                      "timebase-frequency": info.timebase_frequency}))
        cpu = cpus.add(Node("cpu@0", {"device_type": "cpu", "reg": 0, "status": "okay",
                                      "compatible": "riscv", "riscv,isa": info.isa,
                                      "mmu-type": mmu}))
        cpu.add(Node("interrupt-controller", {"#address-cells": 0, "#interrupt-cells": 1,
                                              "interrupt-controller": True,
                                              "compatible": "riscv,cpu-intc",
                                              "phandle": PHANDLE_CPU0_INTC}))
        base, size = self.ram_base, self.ram_size
        root.add(Node(f"memory@{base:x}", {
            "device_type": "memory",
            "reg": [base >> 32, base & 0xFFFF_FFFF, size >> 32, size & 0xFFFF_FFFF]}))
        if self.plic is not None:
            root.add(self.plic.dt_node([PHANDLE_CPU0_INTC], PHANDLE_PLIC))
        for node in self._dt_devices:
            root.add(node)
        return root

    def place_dtb(self, tree: Node) -> int:
        """Write the DTB into the end of RAM; returns its address."""
        blob = to_dtb(tree)
        if len(blob) > DTB_ROOM:
            raise ValueError("device tree too large")
        addr = self.ram_base + self.ram_size - DTB_ROOM
        self.vm.write_memory(addr, blob)
        return addr

    def boot(self, entry: int, dtb_addr: int, hart_id: int = 0) -> None:
        """Linux boot protocol: S-mode at ``entry``, a0 = hart id, a1 = DTB."""
        self.vcpu.set_reg("core pc", entry)
        self.vcpu.set_reg("core a0", hart_id)
        self.vcpu.set_reg("core a1", dtb_addr)

    # -- running ---------------------------------------------------------

    def run(self, timeout: Optional[float] = None) -> RunResult:
        """Run vCPU 0 until a system event or an exit the VMM cannot serve;
        ``timeout``: seconds of wall time, after which the vCPU is kicked
        (as a VMM signals its vCPU thread) and the result says ``timed_out``.
        A failed KVM_RUN raises its ``KvmError`` (see ``crash_report``)."""
        timed_out = threading.Event()
        timer: Optional[threading.Timer] = None
        if timeout is not None:
            def expire() -> None:
                timed_out.set()
                try:
                    self.vcpu.kick()  # sticky: ends the current or the next Run
                except KvmError:
                    pass  # the run ended meanwhile (the VM is gone)
            timer = threading.Timer(timeout, expire)
            timer.daemon = True
            timer.start()
        line = self._irq_line
        if line is not None:
            line.run_thread = threading.get_ident()
        try:
            with self.vcpu.run_stream() as stream:
                while True:
                    irq = line.take() if line is not None else None
                    exit_ = stream.run(interrupt=irq)
                    self.apply_coalesced(exit_.coalesced_mmio)
                    if isinstance(exit_, X.SbiExit):
                        handler = self.sbi_handlers.get(exit_.extension_id)
                        if handler is not None:
                            handler(self, exit_)
                    elif isinstance(exit_, X.MmioExit):
                        self._serve_mmio(exit_)
                    elif isinstance(exit_, X.IntrExit):
                        if timed_out.is_set():
                            return RunResult(exit_, timed_out=True)
                    else:
                        return RunResult(exit_)
        finally:
            if timer is not None:
                timer.cancel()
            if line is not None:
                line.run_thread = None

    def crash_report(self, error: Optional[Exception] = None,
                     exit_: Optional[X.Exit] = None) -> List[str]:
        """Lines saying why the guest stopped: the failed KVM_RUN (``error``)
        or the exit, pc, the last trap (cause by name, sepc, stval), ra, sp
        and the privilege, read from vCPU 0 through ONE_REG."""
        try:
            values = self.vm.batch_one_reg([(self.vcpu.id, name, None) for name in CRASH_REGS])
        except KvmError:
            values = []  # the server is gone too: say what is known
        regs = {name: int.from_bytes(v, "little") for name, v in zip(CRASH_REGS, values)
                if isinstance(v, bytes)}
        return describe_crash(regs, error=error, exit_=exit_)

    def _device_at(self, phys_addr: int) -> Optional[Tuple[int, MmioDevice]]:
        i = bisect.bisect(self._mmio_starts, phys_addr) - 1
        if i < 0 or phys_addr >= self._mmio[i][1]:
            return None
        base, _, device = self._mmio[i]
        return base, device

    def _serve_mmio(self, exit_: X.MmioExit) -> None:
        found = self._device_at(exit_.phys_addr)
        if found is None:
            return  # no device: reads return 0, writes are dropped
        base, device = found
        offset = exit_.phys_addr - base
        if exit_.is_write:
            device.write(offset, exit_.len, exit_.value)
        else:
            exit_.value = device.read(offset, exit_.len)

    def apply_coalesced(self, entries: Sequence[X.CoalescedMmio]) -> None:
        """Replay coalesced-MMIO ring entries as device writes, in order
        (before the exit that carried them is served)."""
        for entry in entries:
            found = self._device_at(entry.phys_addr)
            if found is not None:
                base, device = found
                device.write(entry.phys_addr - base, entry.len, entry.value)

    def _write_console(self, data: bytes) -> None:
        self.console.write(data)
        self.console.flush()

    def _sbi_dbcn(self, exit_: X.SbiExit) -> None:
        fid, args = exit_.function_id, exit_.args
        if fid == DBCN_CONSOLE_WRITE:
            num_bytes, base = args[0], args[1] | (args[2] << 64)
            try:
                self._write_console(self.vm.read_memory(base, num_bytes))
            except KvmError:
                exit_.ret = [SBI_ERR_INVALID_PARAM, 0]
                return
            exit_.ret = [SBI_SUCCESS, num_bytes]
        elif fid == DBCN_CONSOLE_READ:
            exit_.ret = [SBI_SUCCESS, 0]  # no console input
        elif fid == DBCN_CONSOLE_WRITE_BYTE:
            self._write_console(bytes([args[0] & 0xFF]))
            exit_.ret = [SBI_SUCCESS, 0]

    def _sbi_legacy_putchar(self, exit_: X.SbiExit) -> None:
        self._write_console(bytes([exit_.args[0] & 0xFF]))
        exit_.ret = [SBI_SUCCESS, 0]

    def close(self) -> None:
        """Destroy the VM (DestroyVm)."""
        self.vm.destroy()


class GuestImageError(ValueError):
    """A guest file that cannot be loaded; the message is one line that
    names the file and says why."""


@dataclass
class GuestImage:
    """A checked guest ELF: entry point and (paddr, file bytes, memsz) of
    each PT_LOAD segment; ``htif`` when it has the ``tohost`` symbol of a
    bare-metal (M-mode, HTIF) program."""

    path: str
    entry: int
    segments: List[Tuple[int, bytes, int]] = field(default_factory=list)
    htif: bool = False

    def check_fits(self, ram_base: int, ram_size: int) -> None:
        """``GuestImageError`` unless every segment lies in the RAM."""
        end = ram_base + ram_size
        for addr, _, memsz in self.segments:
            if not (ram_base <= addr and addr + memsz <= end):
                raise GuestImageError(
                    f"{self.path}: segment at {addr:#x}..{addr + memsz:#x} is outside RAM "
                    f"({ram_base:#x}..{end:#x})")


def read_elf(path: str) -> GuestImage:
    """Read and check a 64-bit RISC-V executable; ``GuestImageError`` (one
    line) for anything else, ``OSError`` if the file cannot be read."""
    with open(path, "rb") as f:
        head = f.read(20)
        if not head:
            raise GuestImageError(f"{path}: empty file, not an ELF file")
        if head[:4] != b"\x7fELF":
            raise GuestImageError(f"{path}: not an ELF file (bad magic)")
        if len(head) < 20:
            raise GuestImageError(f"{path}: truncated ELF header")
        machine = struct.unpack_from("<H", head, 18)[0]
        if head[4] != ELFCLASS64 or machine != EM_RISCV:
            bits = {1: "32-bit", 2: "64-bit"}.get(head[4], "malformed")
            arch = ELF_MACHINES.get(machine, f"machine {machine}")
            raise GuestImageError(f"{path}: a {bits} {arch} ELF, not a 64-bit RISC-V one")
        f.seek(0)
        try:
            elf = ELFFile(f)
            image = GuestImage(path, int(elf.header["e_entry"]))
            for seg in elf.iter_segments():
                if seg["p_type"] == "PT_LOAD" and seg["p_memsz"]:
                    image.segments.append((seg["p_paddr"], seg.data(), seg["p_memsz"]))
            symtab = elf.get_section_by_name(".symtab")
            image.htif = bool(symtab is not None and hasattr(symtab, "get_symbol_by_name")
                              and symtab.get_symbol_by_name("tohost"))
        except (ELFError, struct.error) as err:
            raise GuestImageError(f"{path}: malformed ELF file ({err})") from None
    if not image.segments:
        raise GuestImageError(f"{path}: no loadable segment")
    return image
