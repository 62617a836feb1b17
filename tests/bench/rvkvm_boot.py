"""``rvkvm boot`` beside ``qemu-system-riscv64``, in one run: the same kernel
and the same generated initramfs, booted to the shell's command and powered
off.

    python -m tests.bench.rvkvm_boot [--kernel IMAGE] [--timeout 600] [--cpus 1]
                                     [--console BYTES]

QEMU (TCG, its own virt device tree, ``-initrd``/``-append``) runs first,
then ``rvkvm boot --run true`` through the embedded server (a fresh server
process, as a new user gets it). Prints, per system: wall seconds to the end
of the command (or to the timeout), and for rvkvm the guest instructions and
MIPS of its final line and the last kernel line reached.

``--console BYTES``: the command is ``yes LINE | head -c BYTES`` instead of
``true``, a console-bound workload (Linux's 8250 driver through the PLIC,
every register access an MMIO exit to the VMM except the coalesced THR
writes). Both systems' output is read as it arrives, and the console rate
is the command's bytes over the time from its first byte to its last;
for rvkvm also the MMIO exits of the whole run and per KiB of output.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import threading
import time
from typing import IO, List, Optional, Tuple

from rvkvm.client.boot import DEFAULT_APPEND, initramfs_programs
from rvkvm.client.debian import Fetcher
from rvkvm.client.initramfs import RUN_BEGIN, RUN_STATUS, busybox_initramfs

_FIGURES = re.compile(r"rvkvm: (.*); ([\d.]+) M instructions in ([\d.]+) s \(([\d.]+) MIPS\)")
_KERNEL_LINE = re.compile(r"^\[\s*\d+\.\d+\] .*$", re.MULTILINE)
_MMIO_EXITS = re.compile(r"([\d,]+) MMIO exits")
YES_LINE = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcde"


def console_command(nbytes: int) -> str:
    """The guest command: ``true``, or ``nbytes`` of ``yes`` output."""
    return f"yes {YES_LINE} | head -c {nbytes}" if nbytes else "true"


class Timed:
    """Reads a pipe in a thread, keeping each chunk with its arrival time."""

    def __init__(self, pipe: IO[bytes]) -> None:
        self.chunks: List[Tuple[float, bytes]] = []
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe: IO[bytes]) -> None:
        while True:
            data = pipe.read1(65536)  # type: ignore[attr-defined]
            if not data:
                return
            self.chunks.append((time.monotonic(), data))

    def join(self) -> bytes:
        self._thread.join()
        return b"".join(data for _, data in self.chunks)

    def rate(self, begin: bytes, end: bytes) -> Optional[Tuple[int, float]]:
        """The command's output rate: bytes after the first chunk that
        completes the ``begin`` line (any first chunk when ``begin`` is
        empty) up to ``end`` (or to the last chunk), over the time from that
        chunk to the last one. None when the output came in one chunk."""
        seen = bytearray()
        first: Optional[float] = None
        start = 0
        last = 0.0
        for at, data in self.chunks:
            before = len(seen)
            seen += data
            if first is None:
                if begin:
                    i = seen.find(begin)
                    if i < 0 or seen.find(b"\n", i) < 0:
                        continue
                    if seen.find(end, i) >= 0:
                        return None
                first, start = at, len(seen)
                continue
            stop = seen.find(end, max(start, before - len(end)))
            if stop >= 0:
                return stop - start, (stop - start) / max(at - first, 1e-6)
            last = at
        if first is None or last <= first:
            return None
        return len(seen) - start, (len(seen) - start) / (last - first)


def run_qemu(kernel: str, initrd: str, cpus: int, timeout: float, console: int = 0) -> str:
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            ["qemu-system-riscv64", "-M", "virt", "-m", "256M", "-smp", str(cpus),
             "-nographic", "-no-reboot", "-kernel", kernel, "-initrd", initrd,
             "-append", DEFAULT_APPEND + " quiet"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return "not installed"
    assert proc.stdout is not None
    out = Timed(proc.stdout)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return f"not done after {timeout:.0f} s"
    took = time.monotonic() - start
    text = out.join()
    if RUN_STATUS.encode() not in text:
        return f"{took:.1f} s, no command status"
    line = f"{took:.1f} s to the command's end"
    if console:
        rate = out.rate(RUN_BEGIN.encode(), RUN_STATUS.encode())
        line += (f"; console {rate[0]:,} bytes at {rate[1]:,.0f} bytes/s" if rate else
                 "; console output in one piece, too fast to time")
    return line


def run_rvkvm(kernel: str, cpus: int, timeout: float, console: int = 0) -> List[str]:
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rvkvm.client", "boot", "--kernel", kernel, "--cpus", str(cpus),
         "--run", console_command(console), "--timeout", str(timeout)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None and proc.stderr is not None
    out, err = Timed(proc.stdout), Timed(proc.stderr)
    try:
        proc.wait(timeout + 300)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    took = time.monotonic() - start
    out.join()
    stderr = err.join().decode(errors="replace")
    m = _FIGURES.search(stderr)
    lines = _KERNEL_LINE.findall(stderr)
    res = [f"{took:.1f} s wall, exit {proc.returncode}"]
    if m:
        res.append(f"{m.group(1)}: {m.group(2)} M instructions in {m.group(3)} s of running, "
                   f"{m.group(4)} MIPS")
    rate = out.rate(b"", RUN_STATUS.encode()) if console else None
    exits = _MMIO_EXITS.search(stderr)
    if rate is not None:
        line = f"console {rate[0]:,} bytes at {rate[1]:,.0f} bytes/s"
        if exits:
            n = int(exits.group(1).replace(",", ""))
            line += f"; {n:,} MMIO exits in the run, {n / max(rate[0] / 1024, 1e-9):,.0f} per KiB"
        res.append(line)
    if proc.returncode != 0 and lines:
        res.append(f"last kernel line: {lines[-1].strip()}")
    return res


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kernel", help="kernel Image (default: Debian's, fetched)")
    p.add_argument("--cpus", type=int, default=1)
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per boot")
    p.add_argument("--console", type=int, default=0, metavar="BYTES",
                   help="run `yes | head -c BYTES` and print the console rate")
    args = p.parse_args(argv)
    if args.console < 0:
        p.error("--console must be 0 or more bytes")
    files = Fetcher().ensure()
    kernel = args.kernel or files.kernel
    with open(files.busybox, "rb") as f:
        initrd = busybox_initramfs(f.read(), extra=initramfs_programs(),
                                   run_command=console_command(args.console))
    with tempfile.NamedTemporaryFile(suffix=".cpio") as tmp:
        tmp.write(initrd)
        tmp.flush()
        print(f"kernel {kernel}, initramfs {len(initrd)} bytes, {args.cpus} vCPU")
        print(f"qemu-system-riscv64 (TCG): {run_qemu(kernel, tmp.name, args.cpus, args.timeout, args.console)}")
    for line in run_rvkvm(kernel, args.cpus, args.timeout, args.console):
        print(f"rvkvm boot (CPython, embedded server): {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
