"""A small VMM on top of the client library: guest RAM, an ELF loader, a
device tree built from the vCPUs' ONE_REG state, and a run loop (one thread
and one RunStream per vCPU) that serves SBI calls (the DBCN console) and
MMIO devices from tables.

    vmm = Vmm(Kvm.connect("127.0.0.1:50051"), ram_size=256 << 20, cpus=2)
    entry = vmm.load_elf("guest.elf")
    vmm.boot(entry, vmm.place_dtb(vmm.device_tree()))
    result = vmm.run()          # until a system event, a failure or the timeout

As KVM does, vCPU 0 starts RUNNABLE and the others STOPPED: the guest
starts them through SBI HSM, which the server handles.
``read_elf`` checks a guest file before any VM exists (``GuestImageError``
with a one-line reason for anything that is not a loadable RV64 ELF);
``Vmm.crash_report`` reads the vCPU's registers after a failure and says
what the guest did (trap cause, sepc, stval, privilege).
"""

from __future__ import annotations

import bisect
import contextlib
import os
import signal
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable, Dict, Iterator, List, Optional, Protocol, Sequence, Tuple, Union

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from . import exits as X
from .devices import UART_BASE, UART_IRQ, UART_SIZE, Uart16550
from .errors import KvmError
from .fdt import Node, to_dtb
from .kvm import Kvm, Vcpu, reg_bytes
from .plic import PLIC_BASE, PLIC_SIZE, Plic, VcpuInterruptLine
from .report import CRASH_REGS, describe_crash

RAM_BASE = 0x8000_0000
PAGE = 4096
DTB_ALIGN = 0x1000
DTB_ROOM = 0x10000  # the device tree goes into the last 64 KiB of RAM
RNG_SEED_BYTES = 32  # /chosen rng-seed: 256 bits, what QEMU virt gives and the CRNG needs

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
BUDGET_MIN = 50_000  # instructions: the smallest Run budget when budgets are on
BUDGET_PERIOD = 0.5  # seconds a budgeted Run aims to last
DBCN_INPUT_MAX = 4096  # console input bytes kept for SBI DBCN reads
# Console input held for a UART while its receive FIFO is full (typed
# ahead, pasted): moved into the FIFO as the guest reads it, so nothing is
# lost to an overrun; beyond this many bytes, newer input is dropped.
UART_INPUT_MAX = 1 << 16

# satp modes (config satp_mode) to the device tree's mmu-type.
MMU_TYPES = {0: "riscv,none", 8: "riscv,sv39", 9: "riscv,sv48", 10: "riscv,sv57"}
# Single-letter extensions in the order the ISA manual's naming chapter
# (and Linux's riscv_isa_ext parser) expects them after "rv64".
SINGLE_LETTER_ORDER = "imafdqcbkjtpvh"
# Multi-letter Z extensions are ordered by the category letter after the Z
# (the same canonical order), then alphabetically; S extensions follow.
_Z_CATEGORY = "imafdqlcbkjtpvh"
# Device-tree cache-block-size properties and the extension each needs.
CBO_BLOCK_SIZES = (("ZICBOM", "zicbom_block_size", "riscv,cbom-block-size"),
                   ("ZICBOZ", "zicboz_block_size", "riscv,cboz-block-size"),
                   ("ZICBOP", "zicbop_block_size", "riscv,cbop-block-size"))


def isa_order(name: str) -> Tuple[int, int, str]:
    """Sort key putting extension names (lower case) in canonical order."""
    if len(name) == 1:
        return (0, SINGLE_LETTER_ORDER.find(name) % 64, name)
    if name[0] == "z":
        return (1, _Z_CATEGORY.find(name[1]) % 64, name)
    return (2 if name[0] == "s" else 3, 0, name)


def isa_string(extensions: List[str], xlen: int = 64) -> str:
    """``riscv,isa`` of a set of lower-case extension names."""
    names = sorted(extensions, key=isa_order)
    singles = "".join(n for n in names if len(n) == 1)
    multi = "".join("_" + n for n in names if len(n) > 1)
    return f"rv{xlen}{singles}{multi}"


def _reg_int(value: Any) -> int:
    """A register value from ``batch_one_reg`` (raising its error, if any)."""
    if isinstance(value, KvmError):
        raise value
    return int.from_bytes(value, "little")


@dataclass
class CpuConfig:
    """What the device tree says about one vCPU, read back through ONE_REG."""

    extensions: List[str]  # lower-case names of the ISA_EXT registers that read 1
    satp_mode: int
    timebase_frequency: int
    block_sizes: Dict[str, int] = field(default_factory=dict)  # dt property -> bytes

    @property
    def isa(self) -> str:
        """The ``riscv,isa`` string of these extensions, in canonical order."""
        return isa_string(self.extensions)


class Console(Protocol):
    """Where guest console output goes (a binary file, or anything with these)."""

    def write(self, data: bytes, /) -> int:
        """Take console bytes from the guest; returns how many were taken."""
        ...

    def flush(self) -> None:
        """Push what was written out to the terminal or file."""
        ...


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
                 abi_profile: str = "", console: Optional[Console] = None,
                 cpus: int = 1, clock: Union[None, str, int, Fraction] = None,
                 rng_seed: Optional[bytes] = None) -> None:
        if cpus < 1:
            raise ValueError("a VM needs at least one vCPU")
        self.kvm = kvm
        self.ram_base = ram_base
        self.ram_size = ram_size
        self.console: Console = console if console is not None else sys.stdout.buffer
        self.vm = kvm.create_vm(abi_profile, clock=clock)
        self.vm.set_user_memory_region(0, ram_base, ram_size)
        self.vcpus: List[Vcpu] = [self.vm.create_vcpu(i) for i in range(cpus)]
        self.vcpu = self.vcpus[0]
        for vcpu in self.vcpus:
            vcpu.set_reg("sbi_ext DBCN", 1)  # KVM leaves DBCN to the VMM, off by default
        self.console_hooks: List[Callable[[bytes], None]] = []  # see the console output too
        self._lock = threading.Lock()  # devices and the console are shared by vCPU threads
        self._dbcn_input = bytearray()
        self._uart_input: Dict[Uart16550, bytearray] = {}  # input waiting for FIFO room
        self._stop = threading.Event()
        self._result: Optional[RunResult] = None
        self._mmio_starts: List[int] = []
        self._mmio: List[Tuple[int, int, MmioDevice]] = []
        self._dt_devices: List[Node] = []
        self.uarts: List[Uart16550] = []
        self.plic: Optional[Plic] = None
        self._irq_lines: Dict[int, VcpuInterruptLine] = {}  # vCPU id -> its external line
        self.error: Optional[BaseException] = None
        self._stdout_path = ""
        # /chosen's rng-seed, as QEMU's virt machine gives it (None: fresh
        # random bytes; b"": none). Without it Linux has no entropy early
        # and spends a third of its boot in the CRNG's blake2s mixing jitter
        # it collects before "crng init done".
        self.rng_seed = os.urandom(RNG_SEED_BYTES) if rng_seed is None else rng_seed
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
        """A PLIC at QEMU virt's address whose S context of each hart drives
        that vCPU's external interrupt (KVM_INTERRUPT), as kvmtool wires it
        on hosts without the in-kernel AIA."""
        plic = Plic(len(self.vcpus))
        self.add_mmio(PLIC_BASE, PLIC_SIZE, plic)
        for vcpu in self.vcpus:
            self._irq_lines[vcpu.id] = plic.connect_vcpu(vcpu.id, vcpu)
        self.plic = plic
        return plic

    @property
    def plic_phandle(self) -> int:
        """The PLIC's phandle (after the cpu interrupt controllers')."""
        return self.cpu_intc_phandle(len(self.vcpus))

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
        self.uarts.append(uart)
        if coalesce_thr:
            self.vm.register_coalesced_mmio(base, 1)
        node = uart.dt_node(base, irq=irq,
                            interrupt_parent=self.plic_phandle if irq is not None else None)
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

    def cpu_configs(self) -> List[CpuConfig]:
        """Each vCPU's ISA extensions, MMU mode, timer frequency and cache
        block sizes as its ONE_REG registers give them (as kvmtool's
        riscv/fdt.c reads them), in one batch."""
        # "isa_ext ZBB" (one extension each), not "isa_ext multi_en 0" (bitmaps)
        isa_regs = [name for _, name in self.vcpu.get_reg_names()
                    if name.startswith("isa_ext ") and len(name.split()) == 2]
        per_cpu = isa_regs + ["config satp_mode", "timer frequency"] + [
            f"config {reg}" for _, reg, _ in CBO_BLOCK_SIZES]
        values = self.vm.batch_one_reg([(v.id, reg, None) for v in self.vcpus for reg in per_cpu])
        configs = []
        for n in range(len(self.vcpus)):
            got: Dict[str, Any] = dict(zip(per_cpu, values[n * len(per_cpu):]))
            enabled = [reg.split()[1] for reg in isa_regs if _reg_int(got[reg])]
            sizes = {prop: _reg_int(got[f"config {reg}"]) for ext, reg, prop in CBO_BLOCK_SIZES
                     if ext in enabled and not isinstance(got[f"config {reg}"], KvmError)}
            configs.append(CpuConfig([e.lower() for e in enabled],
                                     _reg_int(got["config satp_mode"]),
                                     _reg_int(got["timer frequency"]), sizes))
        return configs

    def device_tree(self, bootargs: str = "", initrd: Optional[Tuple[int, int]] = None) -> Node:
        """The device tree of this VM: one cpu node per vCPU (from its
        ONE_REG state), the RAM, the devices added with ``add_uart``,
        /chosen with ``bootargs``, the initrd's [start, end) and the
        ``rng-seed``."""
        configs = self.cpu_configs()
        root = Node("", {"#address-cells": 2, "#size-cells": 2, "compatible": "rvkvm,virt",
                         "model": "rvkvm virtual machine"})
        chosen = root.add(Node("chosen", {"bootargs": bootargs}))
        if self._stdout_path:
            chosen.props["stdout-path"] = self._stdout_path
        if self.rng_seed:
            chosen.props["rng-seed"] = bytes(self.rng_seed)
        if initrd is not None:
            chosen.props["linux,initrd-start"] = [initrd[0] >> 32, initrd[0] & 0xFFFF_FFFF]
            chosen.props["linux,initrd-end"] = [initrd[1] >> 32, initrd[1] & 0xFFFF_FFFF]
        cpus = root.add(Node("cpus", {"#address-cells": 1, "#size-cells": 0,
                                      "timebase-frequency": configs[0].timebase_frequency}))
        for vcpu, config in zip(self.vcpus, configs):
            cpu = cpus.add(Node(f"cpu@{vcpu.id}", {
                "device_type": "cpu", "reg": vcpu.id, "status": "okay", "compatible": "riscv",
                "riscv,isa": config.isa, "riscv,isa-base": "rv64i",
                "riscv,isa-extensions": sorted(config.extensions, key=isa_order),
                "mmu-type": MMU_TYPES.get(config.satp_mode, "riscv,none"),
                **config.block_sizes}))
            cpu.add(Node("interrupt-controller", {
                "#address-cells": 0, "#interrupt-cells": 1, "interrupt-controller": True,
                "compatible": "riscv,cpu-intc", "phandle": self.cpu_intc_phandle(vcpu.id)}))
        base, size = self.ram_base, self.ram_size
        root.add(Node(f"memory@{base:x}", {
            "device_type": "memory",
            "reg": [base >> 32, base & 0xFFFF_FFFF, size >> 32, size & 0xFFFF_FFFF]}))
        if self.plic is not None:
            root.add(self.plic.dt_node([self.cpu_intc_phandle(v.id) for v in self.vcpus],
                                       self.plic_phandle))
        for node in self._dt_devices:
            root.add(node)
        return root

    @staticmethod
    def cpu_intc_phandle(vcpu_id: int) -> int:
        """phandle of a vCPU's interrupt controller node (1, 2, ...)."""
        return 1 + vcpu_id

    def place_dtb(self, tree: Node) -> int:
        """Write the DTB into the end of RAM; returns its address."""
        blob = to_dtb(tree)
        if len(blob) > DTB_ROOM:
            raise ValueError("device tree too large")
        addr = self.ram_base + self.ram_size - DTB_ROOM
        self.vm.write_memory(addr, blob)
        return addr

    def boot(self, entry: int, dtb_addr: int, hart_id: int = 0) -> None:
        """Linux boot protocol: S-mode at ``entry``, a0 = hart id, a1 = DTB
        (on the boot vCPU; the others wait STOPPED for SBI HSM)."""
        # one BatchOneReg, not three SetOneReg calls; the first failure
        # stops it and is raised as SetOneReg's would be
        for done in self.vm.batch_one_reg(
                [(hart_id, name, reg_bytes(name, value)) for name, value in
                 (("core pc", entry), ("core a0", hart_id), ("core a1", dtb_addr))],
                stop_on_error=True):
            if isinstance(done, KvmError):
                raise done

    # -- running ---------------------------------------------------------

    def run(self, timeout: Optional[float] = None, budget: int = 0) -> RunResult:
        """Run every vCPU (each in its own thread with its own RunStream,
        vCPU 0 in the calling thread) until one of them reaches a system
        event or an exit the VMM cannot serve; the others are then kicked
        out of their runs. ``timeout``: seconds of wall time, after which
        every vCPU is kicked (as a VMM signals its vCPU threads) and the
        result says ``timed_out``. A failed KVM_RUN raises its ``KvmError``
        (see ``crash_report``). ``budget``: at most this many
        instructions per Run call (0: unbounded); each vCPU sizes its Runs
        to end about every ``BUDGET_PERIOD`` seconds."""
        self._stop.clear()
        self._result = None
        self.error = None
        threads = [threading.Thread(target=self._run_vcpu, args=(vcpu, budget),
                                    name=f"vcpu{vcpu.id}", daemon=True)
                   for vcpu in self.vcpus[1:]]
        timer = None
        if timeout is not None:
            timer = threading.Timer(timeout, self._time_out)
            timer.daemon = True
            timer.start()
        for thread in threads:
            thread.start()
        try:
            self._run_vcpu(self.vcpu, budget)
        finally:
            if timer is not None:
                timer.cancel()
            for thread in threads:
                thread.join()
        if self.error is not None:
            raise self.error
        assert self._result is not None
        return self._result

    def stop(self) -> None:
        """End ``run`` from another thread (it returns an INTR exit)."""
        self._finish(RunResult(X.IntrExit(why=X.INTR_KICK)))

    def _time_out(self) -> None:
        self._finish(RunResult(X.IntrExit(why=X.INTR_KICK), timed_out=True))

    def _finish(self, result: RunResult) -> None:
        with self._lock:
            if self._stop.is_set():
                return
            self._result = result
            self._stop.set()
        for vcpu in self.vcpus:
            try:
                vcpu.kick()  # a vCPU not in Run returns from its next Run at once
            except KvmError:
                pass

    def _run_vcpu(self, vcpu: Vcpu, max_budget: int) -> None:
        budget = min(max_budget, BUDGET_MIN) if max_budget else 0
        line = self._irq_lines.get(vcpu.id)
        if line is not None:
            line.run_thread = threading.get_ident()  # line changes ride on this thread's Runs
        try:
            with vcpu.run_stream() as stream:
                while not self._stop.is_set():
                    started = time.monotonic()
                    irq = line.take() if line is not None else None
                    exit_ = stream.run(budget=budget, interrupt=irq)
                    with self._lock:
                        self.apply_coalesced(exit_.coalesced_mmio)
                    if self._stop.is_set():
                        return
                    if isinstance(exit_, X.SbiExit):
                        handler = self.sbi_handlers.get(exit_.extension_id)
                        if handler is not None:
                            handler(self, exit_)
                    elif isinstance(exit_, X.MmioExit):
                        with self._lock:
                            self._serve_mmio(exit_)
                    elif isinstance(exit_, X.IntrExit):
                        if exit_.why == X.INTR_BUDGET:
                            took = max(time.monotonic() - started, 1e-3)
                            budget = max(BUDGET_MIN, min(max_budget,
                                                         int(budget * BUDGET_PERIOD / took)))
                    else:
                        self._finish(RunResult(exit_))
        except BaseException as err:  # a failed RPC ends the whole run; run() raises it
            self.error = self.error or err
            self._finish(RunResult(X.IntrExit(why=X.INTR_KICK)))
        finally:
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
        if self._uart_input and device in self._uart_input:
            self._top_up(device)  # type: ignore[arg-type]

    def _top_up(self, uart: Uart16550) -> None:
        """Move held console input into ``uart``'s receive FIFO as far as it
        has room (after each access of the guest's: a read of RBR frees a
        byte, enabling the FIFOs makes 16), as a terminal with flow control
        would. Under ``_lock``."""
        held = self._uart_input.get(uart)
        if not held:
            return
        room = uart.rx_room
        if room:
            uart.feed(bytes(held[:room]))
            del held[:room]

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
        for hook in self.console_hooks:
            hook(data)

    def feed_console(self, data: bytes) -> None:
        """Console input (typed keys, pasted text): to the UARTs' receive
        lines, paced by their FIFOs (held beyond what they have room for,
        fed as the guest reads: ``_top_up``), and to SBI DBCN reads."""
        with self._lock:
            for uart in self.uarts:
                held = self._uart_input.setdefault(uart, bytearray())
                held += data[:max(0, UART_INPUT_MAX - len(held))]
                self._top_up(uart)
            self._dbcn_input += data
            del self._dbcn_input[:-DBCN_INPUT_MAX]

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
            num_bytes, base = args[0], args[1] | (args[2] << 64)
            with self._lock:
                data = bytes(self._dbcn_input[:num_bytes])
            try:
                self.vm.write_memory(base, data)
            except KvmError:
                exit_.ret = [SBI_ERR_INVALID_PARAM, 0]
                return
            with self._lock:
                del self._dbcn_input[:len(data)]
            exit_.ret = [SBI_SUCCESS, len(data)]
        elif fid == DBCN_CONSOLE_WRITE_BYTE:
            self._write_console(bytes([args[0] & 0xFF]))
            exit_.ret = [SBI_SUCCESS, 0]

    def _sbi_legacy_putchar(self, exit_: X.SbiExit) -> None:
        self._write_console(bytes([exit_.args[0] & 0xFF]))
        exit_.ret = [SBI_SUCCESS, 0]

    def instructions_retired(self) -> int:
        """Guest instructions all vCPUs retired so far (the vCPUs'
        ``rvkvm_instructions`` statistic; read while they run)."""
        return sum(vcpu.get_stats()["rvkvm_instructions"] for vcpu in self.vcpus)

    def close(self) -> None:
        """Destroy the VM (DestroyVm)."""
        self.vm.destroy()


@contextlib.contextmanager
def stop_on_sigint(vmm: Vmm) -> Iterator[threading.Event]:
    """While the guest runs, Ctrl-C (SIGINT) stops it as a VMM stops its
    vCPUs (``Vmm.stop``, from a thread of its own: the handler only starts
    it) instead of raising KeyboardInterrupt wherever the main thread is,
    which inside grpc's locks can surface as a RuntimeError ("cannot
    release un-acquired lock"). The event says it happened; a second
    Ctrl-C raises KeyboardInterrupt as before. Off the main thread (no
    signal handler there): nothing changes."""
    interrupted = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return

    def on_sigint(signum: int, frame: Any) -> None:
        if interrupted.is_set():
            raise KeyboardInterrupt
        interrupted.set()
        threading.Thread(target=vmm.stop, name="rvkvm-sigint", daemon=True).start()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


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
