"""``rvkvm boot`` beside ``qemu-system-riscv64``, in one run: the same kernel
and the same generated initramfs, booted to the shell's command and powered
off.

    python -m tests.bench.rvkvm_boot [--kernel IMAGE] [--timeout 600] [--cpus 1]

QEMU (TCG, its own virt device tree, ``-initrd``/``-append``) runs first,
then ``rvkvm boot --run true`` through the embedded server (a fresh server
process, as a new user gets it). Prints, per system: wall seconds to the end
of the command (or to the timeout), and for rvkvm the guest instructions and
MIPS of its final line and the last kernel line reached.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from typing import List, Optional

from rvkvm.client.boot import DEFAULT_APPEND, initramfs_programs
from rvkvm.client.debian import Fetcher
from rvkvm.client.initramfs import RUN_STATUS, busybox_initramfs

_FIGURES = re.compile(r"rvkvm: (.*); ([\d.]+) M instructions in ([\d.]+) s \(([\d.]+) MIPS\)")
_KERNEL_LINE = re.compile(r"^\[\s*\d+\.\d+\] .*$", re.MULTILINE)


def run_qemu(kernel: str, initrd: str, cpus: int, timeout: float) -> str:
    start = time.monotonic()
    try:
        proc = subprocess.run(
            ["qemu-system-riscv64", "-M", "virt", "-m", "256M", "-smp", str(cpus),
             "-nographic", "-no-reboot", "-kernel", kernel, "-initrd", initrd,
             "-append", DEFAULT_APPEND + " quiet"],
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return "not installed"
    except subprocess.TimeoutExpired:
        return f"not done after {timeout:.0f} s"
    took = time.monotonic() - start
    done = RUN_STATUS in proc.stdout
    return f"{took:.1f} s to the command's end" if done else f"{took:.1f} s, no command status"


def run_rvkvm(kernel: str, cpus: int, timeout: float) -> List[str]:
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "rvkvm.client", "boot", "--kernel", kernel, "--cpus", str(cpus),
         "--run", "true", "--timeout", str(timeout)],
        capture_output=True, text=True, timeout=timeout + 300, stdin=subprocess.DEVNULL)
    took = time.monotonic() - start
    m = _FIGURES.search(proc.stderr)
    lines = _KERNEL_LINE.findall(proc.stderr)
    out = [f"{took:.1f} s wall, exit {proc.returncode}"]
    if m:
        out.append(f"{m.group(1)}: {m.group(2)} M instructions in {m.group(3)} s of running, "
                   f"{m.group(4)} MIPS")
    if proc.returncode != 0 and lines:
        out.append(f"last kernel line: {lines[-1].strip()}")
    return out


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kernel", help="kernel Image (default: Debian's, fetched)")
    p.add_argument("--cpus", type=int, default=1)
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per boot")
    args = p.parse_args(argv)
    files = Fetcher().ensure()
    kernel = args.kernel or files.kernel
    with open(files.busybox, "rb") as f:
        initrd = busybox_initramfs(f.read(), extra=initramfs_programs(), run_command="true")
    with tempfile.NamedTemporaryFile(suffix=".cpio") as tmp:
        tmp.write(initrd)
        tmp.flush()
        print(f"kernel {kernel}, initramfs {len(initrd)} bytes, {args.cpus} vCPU")
        print(f"qemu-system-riscv64 (TCG): {run_qemu(kernel, tmp.name, args.cpus, args.timeout)}")
    for line in run_rvkvm(kernel, args.cpus, args.timeout):
        print(f"rvkvm boot (CPython, embedded server): {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
