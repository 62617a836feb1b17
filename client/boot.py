"""``rvkvm boot``: a Linux kernel with an initramfs on the VMM, as QEMU
virt's ``-kernel/-initrd/-append`` and kvmtool's ``lkvm run -k/-i/-p`` do.

Memory layout (QEMU's ``riscv_load_kernel``/``riscv_load_initrd``): the
kernel where its image format says (``client/image.py``), the initrd
``min(RAM / 2, 128 MiB)`` above the kernel's start (and never inside the
kernel's ``image_size``), the device tree in the last 64 KiB of RAM. The
boot vCPU starts at the kernel's entry with a0 = 0 and a1 = the DTB; the
others wait STOPPED until the kernel starts them through SBI HSM.

``--run CMD``: the command is stored as ``/etc/rvkvm.run`` in the generated
initramfs (its ``/init`` runs it and powers off) or, with an initrd of the
user's, typed at the first shell prompt. Either way the guest prints
``rvkvm-run: begin`` before and ``rvkvm-run: status N`` after the command;
what lies between goes to stdout and N becomes the exit status.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import termios
import threading
import time
import tty
from dataclasses import dataclass
from typing import IO, Any, Callable, Dict, Iterator, List, Optional, Tuple

from . import exits as X
from .debian import DebianFiles, Fetcher, FetchError
from .errors import KvmError
from .image import Kernel, load_kernel
from .initramfs import RUN_BEGIN, RUN_STATUS, busybox_initramfs
from .kvm import Kvm, clock_message
from .vmm import DTB_ROOM, PAGE, RunResult, Vmm, stop_on_sigint

DEFAULT_APPEND = "earlycon=sbi console=ttyS0 cryptomgr.notests"
INITRD_ALIGN = PAGE
INITRD_MAX_OFFSET = 128 << 20  # QEMU: the initrd at most 128 MiB above the kernel
RUN_BUDGET = 50_000_000  # instructions per Run call at most (progress updates)
ESCAPE = 0x01  # Ctrl-A, then x: leave the console (as QEMU's -nographic)
_STATUS = re.compile(rb"rvkvm-run: status (\d+)\r?\n")
# a shell prompt at the end of the output, maybe followed by terminal queries
# (busybox ash asks for the cursor position with ESC [ 6 n)
_PROMPT = re.compile(rb"[#$] (?:\x1b\[[0-9;?]*[A-Za-z])*$")


@dataclass
class Layout:
    """Where the kernel, the initrd ([start, end)) and the DTB sit in guest RAM."""
    kernel: Kernel
    initrd: Optional[Tuple[int, int]]  # [start, end)
    dtb: int


def place_initrd(kernel: Kernel, initrd_size: int, ram_base: int, ram_size: int) -> int:
    """Where the initrd goes (QEMU's rule, kept above the kernel and below
    the device tree's room)."""
    start = kernel.start + min(ram_size // 2, INITRD_MAX_OFFSET)
    start = max(start, kernel.end)
    start += -start % INITRD_ALIGN
    limit = ram_base + ram_size - DTB_ROOM
    if start + initrd_size > limit:
        start = (limit - initrd_size) & ~(INITRD_ALIGN - 1)
        if start < kernel.end:
            raise ValueError(f"initrd of {initrd_size} bytes does not fit in RAM above the "
                             f"kernel (ends {kernel.end:#x}); give more --ram")
    return start


def load_linux(vmm: Vmm, kernel_data: bytes, initrd: Optional[bytes], bootargs: str) -> Layout:
    """Place kernel, initrd and device tree in the VM and set up the boot vCPU."""
    kernel = load_kernel(kernel_data, vmm.ram_base, vmm.ram_size)
    for addr, data in kernel.pieces:
        vmm.vm.write_memory(addr, data)
    span = None
    if initrd is not None:
        start = place_initrd(kernel, len(initrd), vmm.ram_base, vmm.ram_size)
        vmm.vm.write_memory(start, initrd)
        span = (start, start + len(initrd))
    dtb = vmm.place_dtb(vmm.device_tree(bootargs, span))
    vmm.boot(kernel.entry, dtb)
    return Layout(kernel, span, dtb)


class Progress:
    """A one-line status on a terminal while the kernel boots: guest
    instructions retired, MIPS, seconds. Console output clears it; it is redrawn
    once the console is quiet, until a shell prompt shows (or a key is
    typed), so it never sits on the interactive shell's line."""

    def __init__(self, vmm: Vmm, stream: IO[str], enabled: bool) -> None:
        self.vmm = vmm
        self.stream = stream
        self.enabled = enabled
        self.start = time.monotonic()
        self._shown = False
        self._last_output = 0.0
        self._tail = b""
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)

    def instructions(self) -> int:
        """Guest instructions the vCPUs retired (their ``rvkvm_instructions``
        statistic, read with GetStats while they run)."""
        return self.vmm.instructions_retired()

    def line(self) -> str:
        """The status text: guest instructions, MIPS, seconds, vCPUs."""
        elapsed = time.monotonic() - self.start
        n = self.instructions()
        mips = n / elapsed / 1e6 if elapsed > 0 else 0.0
        return (f"rvkvm: {n / 1e6:.1f} M instructions, {mips:.2f} MIPS, {elapsed:.1f} s, "
                f"{len(self.vmm.vcpus)} vCPU")

    def __enter__(self) -> Progress:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()
        self.clear()

    def clear(self) -> None:
        """Erase the status line (before console output is written)."""
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False

    def console_output(self, data: bytes) -> None:
        """Note console output: clears the line; a shell prompt ends the progress display."""
        self._last_output = time.monotonic()
        self.clear()
        self._tail = (self._tail + data)[-16:]
        if _PROMPT.search(self._tail):
            self.booted()

    def booted(self) -> None:
        """The shell is up: no more progress lines."""
        self.enabled = False

    def _loop(self) -> None:
        while not self._done.wait(0.5):
            if self.enabled and time.monotonic() - self._last_output >= 1.0:
                self.stream.write("\r\x1b[K" + self.line())
                self.stream.flush()
                self._shown = True


class RunCapture:
    """Console output of a ``--run`` boot: kept until the begin marker,
    then passed to ``out`` up to the status marker, whose number it keeps."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.buffer = bytearray()
        self.started = False
        self.status: Optional[int] = None
        self.log = bytearray()  # everything, for the error message when no status came

    def write(self, data: bytes) -> int:
        """Console bytes of the guest: kept, passed on or parsed for the status marker."""
        self.log += data
        del self.log[:-65536]
        if self.status is not None:
            return len(data)
        self.buffer += data
        if not self.started:
            at = self.buffer.find(RUN_BEGIN.encode())
            nl = self.buffer.find(b"\n", at)
            if at < 0 or nl < 0:
                return len(data)
            self.started = True
            del self.buffer[:nl + 1]
        match = _STATUS.search(self.buffer)
        if match:
            self.status = int(match.group(1))
            self._emit(bytes(self.buffer[:match.start()]))
            self.buffer.clear()
        else:
            keep = len(RUN_STATUS) + 8  # a marker may be arriving in pieces
            self._emit(bytes(self.buffer[:-keep]))
            del self.buffer[:-keep]
        return len(data)

    def _emit(self, data: bytes) -> None:
        self.out.write(data.replace(b"\r\n", b"\n"))
        self.out.flush()

    def flush(self) -> None:
        """Flush what was passed on to ``out``."""
        pass


class PromptTyper:
    """Types a command once the console shows a shell prompt (for ``--run``
    with an initrd that does not read /etc/rvkvm.run). The markers are split
    with an empty quote so the echo of the typed line does not match them."""

    def __init__(self, vmm: Vmm, command: str) -> None:
        self.vmm = vmm
        begin = RUN_BEGIN.replace("begin", 'be""gin')
        status = RUN_STATUS.replace("status", 'sta""tus')
        self.line = f"echo {begin}; {command}\necho {status} $?; poweroff -f\n".encode()
        self.tail = b""
        self.typed = False

    def console_output(self, data: bytes) -> None:
        """Watch console output; at the first shell prompt, type the command."""
        if self.typed:
            return
        self.tail = (self.tail + data)[-64:]
        if _PROMPT.search(self.tail):
            self.typed = True
            self.vmm.feed_console(self.line)


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[bool]:
    """The terminal on ``fd`` in raw mode (restored afterwards); yields
    whether it is a terminal."""
    if not os.isatty(fd):
        yield False
        return
    saved = termios.tcgetattr(fd)
    tty.setraw(fd, termios.TCSADRAIN)  # keep what was typed ahead (TCSAFLUSH drops it)
    try:
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _forward_input(vmm: Vmm, fd: int, progress: Progress) -> None:
    """Terminal bytes to the guest's console; Ctrl-A x ends the VM."""
    escape = False
    while True:
        try:
            data = os.read(fd, 256)
        except OSError:
            return
        if not data:
            return
        out = bytearray()
        for byte in data:
            if escape:
                escape = False
                if byte in b"xX":
                    vmm.stop()
                    return
                out.append(byte)
            elif byte == ESCAPE:
                escape = True
            else:
                out.append(byte)
        if out:
            progress.booted()
            vmm.feed_console(bytes(out))


@dataclass
class BootOptions:
    """What to boot: kernel and initrd bytes, command line, vCPUs, RAM, ``--run`` command."""
    kernel: bytes
    initrd: Optional[bytes]
    append: str
    cpus: int = 1
    ram: int = 256 << 20
    run: Optional[str] = None
    run_in_initrd: bool = False  # the initrd's /init runs ``run`` itself (else: typed)
    progress: Optional[bool] = None  # None: when stderr is a terminal
    timeout: Optional[float] = None
    abi: str = ""
    disable_isa_ext: Tuple[str, ...] = ()
    dump_dtb: Optional[str] = None  # write the DTB here and stop before running
    dump_initrd: Optional[str] = None  # write the initrd here and stop before running
    clock: Optional[str] = None  # the guest clock (Kvm.create_vm); None: the server's
    rng_seed: Optional[bytes] = None  # /chosen rng-seed (None: random; b"": none)


def boot(kvm: Kvm, opts: BootOptions, stdin_fd: Optional[int] = None,
         stdout: Optional[IO[bytes]] = None, stderr: IO[str] = sys.stderr) -> int:
    """Boot and run to the end; returns the command's exit status."""
    stdout = stdout if stdout is not None else sys.stdout.buffer
    capture = RunCapture(stdout) if opts.run is not None else None
    vmm = Vmm(kvm, ram_size=opts.ram, abi_profile=opts.abi, cpus=opts.cpus,
              console=capture if capture is not None else stdout, clock=opts.clock,
              rng_seed=opts.rng_seed)
    interrupted = threading.Event()  # set by Ctrl-C while the guest runs
    try:
        for name in opts.disable_isa_ext:
            for vcpu in vmm.vcpus:
                vcpu.set_reg(f"isa_ext {name.upper()}", 0)
        vmm.add_plic()
        vmm.add_uart(coalesce_thr=True)  # on PLIC source 10, as on QEMU virt
        layout = load_linux(vmm, opts.kernel, opts.initrd, opts.append)
        if opts.dump_dtb or opts.dump_initrd:
            return _dump(vmm, layout, opts, stderr)
        enabled = opts.progress if opts.progress is not None else stderr.isatty()
        progress = Progress(vmm, stderr, enabled)
        vmm.console_hooks.append(progress.console_output)
        if opts.run is not None and not opts.run_in_initrd:
            vmm.console_hooks.append(PromptTyper(vmm, opts.run).console_output)
        interactive = opts.run is None and stdin_fd is not None
        with raw_terminal(stdin_fd if interactive and stdin_fd is not None else -1):
            if interactive and stdin_fd is not None:
                threading.Thread(target=_forward_input, args=(vmm, stdin_fd, progress),
                                 name="console-input", daemon=True).start()
            # at a raw terminal Ctrl-C is the guest's byte; else it stops the VM
            with progress, (contextlib.nullcontext(interrupted) if interactive
                            else stop_on_sigint(vmm)) as interrupted:
                result = vmm.run(timeout=opts.timeout, budget=RUN_BUDGET)
        elapsed = time.monotonic() - progress.start
        n = progress.instructions()
        print(f"rvkvm: {_why(result)}; {n / 1e6:.1f} M instructions in {elapsed:.1f} s "
              f"({n / elapsed / 1e6 if elapsed else 0:.2f} MIPS), kernel {layout.kernel.kind} "
              f"at {layout.kernel.entry:#x}, {opts.cpus} vCPU{_clock_figures(vmm)}",
              file=stderr)
        costs = cost_figures(vmm, elapsed)
        if costs:
            print(f"rvkvm: {costs}", file=stderr)
    finally:
        vmm.close()
    if interrupted.is_set():  # Ctrl-C: the summary above, then the shell's status for it
        from .cli import EXIT_INTERRUPTED
        return EXIT_INTERRUPTED
    if capture is not None:
        if capture.status is None:
            tail = capture.log[-2000:].decode(errors="replace")
            print(f"rvkvm: the guest stopped before the command's status came\n{tail}",
                  file=stderr)
            return 1
        return capture.status
    return 0 if result.clean_shutdown else 1


def _dump(vmm: Vmm, layout: Layout, opts: BootOptions, stderr: IO[str]) -> int:
    """--dump-dtb/--dump-initrd: the files and where they would go."""
    if opts.dump_dtb:
        dtb = vmm.vm.read_memory(layout.dtb, 8)
        size = int.from_bytes(dtb[4:8], "big")
        with open(opts.dump_dtb, "wb") as f:
            f.write(vmm.vm.read_memory(layout.dtb, size))
    if opts.dump_initrd and opts.initrd is not None:
        with open(opts.dump_initrd, "wb") as f:
            f.write(opts.initrd)
    k = layout.kernel
    initrd = "none" if layout.initrd is None else f"{layout.initrd[0]:#x}-{layout.initrd[1]:#x}"
    print(f"kernel {k.kind} {k.start:#x}-{k.end:#x} entry {k.entry:#x}; initrd {initrd}; "
          f"dtb {layout.dtb:#x}", file=stderr)
    return 0


def _clock_figures(vmm: Vmm) -> str:
    """``; guest time 0.53 s`` (vCPU 0's clock), and with several vCPUs what
    each retired (``vCPU 0 400.1 M, vCPU 1 120.3 M``); empty if the VM
    cannot say."""
    try:
        ticks = int(vmm.vcpu.get_reg("timer time"))
        freq = int(vmm.vcpu.get_reg("timer frequency"))
        text = f"; guest time {ticks / freq:.2f} s" if freq else ""
        if len(vmm.vcpus) > 1:
            text += ", " + ", ".join(
                f"vCPU {v.id} {v.get_stats()['rvkvm_instructions'] / 1e6:.1f} M"
                for v in vmm.vcpus)
        return text
    except (KvmError, KeyError, TypeError, ValueError):
        return ""


def cost_figures(vmm: Vmm, elapsed: float) -> str:
    """Where the boot's time went, from the vCPUs' statistics: the CPU time
    spent building code (regions and first-tier blocks) against the wall
    time, what was built, the MMIO exits the VMM served, the SBI calls
    (in-kernel and forwarded) and the fences. Empty if the server cannot
    say."""
    try:
        total: Dict[str, int] = {}
        for v in vmm.vcpus:
            for name, value in v.get_stats().items():
                if isinstance(value, int):
                    total[name] = total.get(name, 0) + value
        translate = (total["rvkvm_translate_ns"] + total["rvkvm_tier1_ns"]) / 1e9
    except (KvmError, KeyError, TypeError, ValueError):
        return ""
    share = f" ({100 * translate / elapsed:.0f}% of the wall time)" if elapsed > 0 else ""
    return (f"building code {translate:.1f} s{share}: "
            f"{total.get('rvkvm_regions_translated', 0):,} regions, "
            f"{total.get('rvkvm_tier1_blocks', 0):,} first-tier blocks, "
            f"{total.get('rvkvm_code_evictions', 0):,} evicted; "
            f"{total.get('mmio_exit_user', 0):,} MMIO exits to the VMM, "
            f"{total.get('ecall_exit_stat', 0):,} SBI calls, "
            f"fence.i {total.get('rvkvm_fence_i', 0):,}, "
            f"sfence.vma {total.get('rvkvm_sfence_vma', 0):,}")


def _why(result: RunResult) -> str:
    e = result.exit
    if result.clean_shutdown:
        return "guest powered off"
    if isinstance(e, X.SystemEventExit):
        what = {X.KVM_SYSTEM_EVENT_SHUTDOWN: "shutdown", X.KVM_SYSTEM_EVENT_RESET: "reset"}
        return f"guest {what.get(e.type, e.type)} with reason {(e.data or [0])[0]}"
    if isinstance(e, X.IntrExit):
        return "stopped"
    return f"VM stopped: {e!r}"


TAGPTR_GUEST = os.path.join(os.path.dirname(__file__), "linux", "tagptr.elf")


def initramfs_programs() -> List[Tuple[str, bytes, int]]:
    """The project's Linux programs for the initramfs: (name, data, mode)."""
    with open(TAGPTR_GUEST, "rb") as f:
        return [("bin/tagptr", f.read(), 0o755)]


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as err:
        raise OSError(f"{what} {path}: {err.strerror}") from None


def boot_options(args: argparse.Namespace) -> BootOptions:
    """Kernel and initrd bytes from the arguments, Debian's where none given."""
    debian: Optional[DebianFiles] = None
    if args.kernel is None or (args.initrd is None and not args.no_initrd
                               and args.busybox is None):
        debian = Fetcher().ensure()
    kernel = _read(args.kernel or (debian.kernel if debian else ""), "kernel")
    initrd: Optional[bytes] = None
    if args.initrd is not None:
        initrd = _read(args.initrd, "initrd")
    elif not args.no_initrd:
        busybox = _read(args.busybox or (debian.busybox if debian else ""), "busybox")
        initrd = busybox_initramfs(busybox, extra=initramfs_programs(), run_command=args.run)
    append = args.append
    if append is None:
        append = DEFAULT_APPEND + (" quiet" if args.run is not None else "")
    return BootOptions(kernel=kernel, initrd=initrd, append=append, cpus=args.cpus,
                       ram=args.ram, run=args.run,
                       run_in_initrd=args.initrd is None and not args.no_initrd,
                       progress=args.progress,
                       timeout=args.timeout, abi=args.abi,
                       disable_isa_ext=tuple(args.disable_isa_ext),
                       dump_dtb=args.dump_dtb, dump_initrd=args.dump_initrd,
                       clock=args.clock, rng_seed=args.rng_seed)


def _clock_arg(text: str) -> str:
    try:
        clock_message(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def _rng_seed_arg(text: str) -> bytes:
    if text == "none":
        return b""
    try:
        seed = bytes.fromhex(text)
    except ValueError:
        raise argparse.ArgumentTypeError("an rng seed is hex bytes, or 'none'") from None
    if not seed:
        raise argparse.ArgumentTypeError("an rng seed is hex bytes, or 'none'")
    return seed


def cmd_boot(args: argparse.Namespace) -> int:
    """``rvkvm boot``: boot a kernel on a VM and attach the console (or run ``--run``)."""
    from .cli import connect

    try:
        opts = boot_options(args)
    except FetchError as err:
        print(f"rvkvm: {err}", file=sys.stderr)
        return 1
    stdin_fd = sys.stdin.fileno() if sys.stdin is not None and not sys.stdin.closed else None
    with connect(args) as kvm:
        return boot(kvm, opts, stdin_fd=stdin_fd)


def cmd_fetch_debian(args: argparse.Namespace) -> int:
    """``rvkvm fetch-debian``: fetch Debian's riscv64 kernel and busybox into the cache."""
    fetcher = Fetcher()
    try:
        files = fetcher.fetch() if args.refresh else fetcher.ensure()
    except FetchError as err:
        print(f"rvkvm: {err}", file=sys.stderr)
        return 1
    print(f"kernel   {files.kernel}\nbusybox  {files.busybox}\nversion  {files.version}")
    return 0


def register(sub: Any, add_command: Callable[..., argparse.ArgumentParser],
             add_abi_option: Callable[[argparse.ArgumentParser], None],
             parse_size: Callable[[str], int]) -> None:
    """The ``boot`` and ``fetch-debian`` subcommands (``add_command`` gives
    them the options and the error handling every subcommand has)."""
    p = add_command(
        sub, "boot", cmd_boot,
        help="boot Linux (Debian's riscv64 kernel and busybox by default)",
        description="Boot a kernel as QEMU virt's -kernel/-initrd/-append do: a RISC-V "
        "Image, an ELF vmlinux, a gzip-compressed Image or a flat binary; the initrd and "
        "command line in /chosen; one thread per vCPU. Without --kernel, Debian's stock "
        "riscv64 kernel (fetched once with apt-get into ~/.cache/rvkvm). Without --initrd, "
        "a busybox initramfs. Ctrl-A x leaves the console.")
    # Kernel code runs faster on CPython workers than on PyPy's today (the
    # first 100 M instructions of Debian's boot: 58.6 CPU s against 86.1):
    # kernel addresses are >= 2**63, big integers on PyPy. So a boot's
    # embedded server runs its workers on this interpreter unless told.
    p.set_defaults(worker_python=sys.executable)
    p.add_argument("--kernel", metavar="IMAGE", help="kernel (default: Debian's)")
    p.add_argument("--initrd", metavar="FILE",
                   help="initrd (default: a busybox initramfs with /bin/tagptr)")
    p.add_argument("--no-initrd", action="store_true", help="boot without an initrd")
    p.add_argument("--busybox", metavar="FILE",
                   help="static riscv64 busybox for the initramfs (default: Debian's)")
    p.add_argument("--append", metavar="ARGS",
                   help=f"kernel command line (default: {DEFAULT_APPEND!r}, "
                        "plus 'quiet' with --run)")
    p.add_argument("--cpus", type=int, default=1, metavar="N", help="vCPUs (1)")
    p.add_argument("--ram", type=parse_size, default=256 << 20, help="RAM size (256M)")
    p.add_argument("--run", metavar="CMD",
                   help="run CMD in the guest's shell, print its output, power off and "
                        "exit with its status")
    p.add_argument("--progress", action="store_true", default=None,
                   help="progress line on stderr (default: when stderr is a terminal)")
    p.add_argument("--timeout", type=float, default=None, help="seconds before giving up")
    p.add_argument("--clock", metavar="host|NS", type=_clock_arg, default=None,
                   help="guest clock: NS nanoseconds of deterministic guest time per "
                        "instruction, or 'host' (real time, for an interactive shell where "
                        "'sleep 1' should take a second). Default: the server's (1 ns per "
                        "instruction on rvkvm-server, the rate at which a boot does the "
                        "least timer work)")
    p.add_argument("--rng-seed", metavar="HEX|none", type=_rng_seed_arg, default=None,
                   help="the device tree's /chosen rng-seed, as QEMU virt gives it (default: "
                        "32 random bytes; a fixed HEX seed makes a deterministic boot "
                        "repeatable; 'none' leaves the kernel to gather entropy itself, which "
                        "costs it a third more instructions)")
    add_abi_option(p)
    p.add_argument("--disable-isa-ext", action="append", default=[], metavar="NAME",
                   help="turn an ISA extension off on every vCPU (ONE_REG) before boot")
    p.add_argument("--dump-dtb", metavar="FILE",
                   help="write the device tree to FILE and exit without running")
    p.add_argument("--dump-initrd", metavar="FILE",
                   help="write the initrd to FILE and exit without running")

    f = add_command(sub, "fetch-debian", cmd_fetch_debian,
                    help="fetch Debian's riscv64 kernel and busybox-static into the cache")
    f.add_argument("--refresh", action="store_true", help="fetch again even when cached")
