"""Boot benchmark: a real Linux kernel on the in-process KVM model.

    python -m tests.bench.boot --kernel PATH/TO/Image [--seconds 60] [--engine fast]

Runs a raw RISC-V ``Image`` (Debian's stock riscv64 kernel, say; the
``rvkvm boot`` fetcher will provide a default later) on ``server.kvm``:
one vCPU in S-mode, RAM as one memory slot at 0x80000000, the Image at RAM
+ ``text_offset`` from its header, a device tree built here in RAM, a0 =
hart id, a1 = the DTB. The console is SBI DBCN (enabled through ONE_REG, as a
VMM does) and the legacy putchar; MMIO of absent devices reads as zero.
There is no initramfs, so the kernel ends its boot with a panic when it
cannot mount a root file system: that, or ``--until TEXT``, or
``--seconds`` of wall time, is the finish line.

Prints instructions retired, MIPS, wall and CPU time (on a shared machine
compare CPU seconds for a fixed ``--insns``); the share of CPU time spent
translating (the fast engine's own counters), running guest code and
serving exits; region translations and translation cost per guest
instruction; ``fence.i`` and ``sfence.vma`` counts, code flushes; the last
console lines.
"""

from __future__ import annotations

import argparse
import platform
import struct
import sys
import time
from typing import List, Optional

from rvkvm.client.fdt import Node, to_dtb
from rvkvm.server.kvm import exits as X
from rvkvm.server.kvm.system import KvmSystem
from rvkvm.uapi.onereg import parse_name

RAM_BASE = 0x8000_0000
IMAGE_MAGIC2 = b"RSC\x05"
DEFAULT_TEXT_OFFSET = 0x20_0000
SBI_EXT_DBCN = 0x4442434E
SBI_EXT_0_1_CONSOLE_PUTCHAR = 0x01
DEFAULT_APPEND = "earlycon=sbi keep_bootcon console=hvc0 cryptomgr.notests"
# zicbom/zicboz as rvkvm boot's device tree has them (clear_page uses cbo.zero)
EXTENSIONS = ("i", "m", "a", "f", "d", "c", "zicbom", "zicboz", "zicntr", "zicsr", "zifencei",
              "zihintpause", "zba", "zbb", "zbs", "sstc")
CBO_BLOCK_SIZE = 64
ISA = "rv64imafdc_" + "_".join(e for e in EXTENSIONS if len(e) > 1)
FINISH = ("Kernel panic", "VFS: Unable to mount root", "Run /init")


def load_offset(image: bytes) -> int:
    """The Image header's text_offset (RISC-V boot image header)."""
    if len(image) >= 64 and image[56:60] == IMAGE_MAGIC2:
        return struct.unpack_from("<Q", image, 8)[0]
    return DEFAULT_TEXT_OFFSET


RNG_SEED = bytes(range(32))  # /chosen rng-seed as rvkvm boot gives one (fixed: repeatable)


def device_tree(ram_size: int, bootargs: str, timebase: int, rng_seed: bytes = RNG_SEED) -> bytes:
    root = Node("", {"#address-cells": 2, "#size-cells": 2, "compatible": "riscv-virtio",
                     "model": "rvkvm boot benchmark"})
    chosen = root.add(Node("chosen", {"bootargs": bootargs}))
    if rng_seed:
        chosen.props["rng-seed"] = rng_seed
    cpus = root.add(Node("cpus", {"#address-cells": 1, "#size-cells": 0,
                                  "timebase-frequency": timebase}))
    cpu = cpus.add(Node("cpu@0", {"device_type": "cpu", "reg": 0, "status": "okay",
                                  "compatible": "riscv", "riscv,isa": ISA, "riscv,isa-base": "rv64i",
                                  "riscv,isa-extensions": b"".join(
                                      e.encode() + b"\0" for e in EXTENSIONS),
                                  "riscv,cbom-block-size": CBO_BLOCK_SIZE,
                                  "riscv,cboz-block-size": CBO_BLOCK_SIZE,
                                  "mmu-type": "riscv,sv39"}))
    cpu.add(Node("interrupt-controller", {"#address-cells": 0, "#interrupt-cells": 1,
                                          "interrupt-controller": True,
                                          "compatible": "riscv,cpu-intc"}))
    root.add(Node(f"memory@{RAM_BASE:x}", {
        "device_type": "memory",
        "reg": [RAM_BASE >> 32, RAM_BASE & 0xFFFF_FFFF, ram_size >> 32, ram_size & 0xFFFF_FFFF]}))
    return to_dtb(root)


class Boot:
    def __init__(self, kernel: str, engine: str, ram_mib: int, append: str,
                 rng_seed: bytes = RNG_SEED) -> None:
        with open(kernel, "rb") as f:
            image = f.read()
        self.system = KvmSystem(engine=engine)
        self.vm = self.system.create_vm()
        ram_size = ram_mib << 20
        self.vm.set_user_memory_region(0, 0, RAM_BASE, ram_size)
        entry = RAM_BASE + load_offset(image)
        self.vm.write_memory(entry, image)
        dtb = device_tree(ram_size, append, self.vm.platform.host.timebase_frequency, rng_seed)
        dtb_addr = RAM_BASE + ram_size - (2 << 20)
        self.vm.write_memory(dtb_addr, dtb)
        self.vcpu = self.vm.create_vcpu(0)
        self.vcpu.set_value(parse_name("sbi_ext DBCN"), 1)
        self.vcpu.set_value(parse_name("core pc"), entry)
        self.vcpu.set_value(parse_name("core a0"), 0)
        self.vcpu.set_value(parse_name("core a1"), dtb_addr)
        self.console = bytearray()
        self.echo = False
        self.exits = 0
        self.exit_seconds = 0.0

    def _out(self, data: bytes) -> None:
        self.console += data
        if self.echo:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()

    def serve(self, exit_: X.Exit) -> bool:
        """Answer an exit as a VMM would; False when the guest stopped."""
        if isinstance(exit_, X.SbiExit):
            fid, args = exit_.function_id, exit_.args
            if exit_.extension_id == SBI_EXT_DBCN:
                if fid == 0:
                    n, base = args[0], args[1] | (args[2] << 64)
                    try:
                        self._out(self.vm.read_memory(base, n))
                        exit_.ret = [0, n]
                    except Exception:
                        exit_.ret = [(-3) & (2**64 - 1), 0]
                elif fid == 1:
                    exit_.ret = [0, 0]
                elif fid == 2:
                    self._out(bytes([args[0] & 0xFF]))
                    exit_.ret = [0, 0]
            elif exit_.extension_id == SBI_EXT_0_1_CONSOLE_PUTCHAR:
                self._out(bytes([args[0] & 0xFF]))
                exit_.ret = [0, 0]
            return True
        if isinstance(exit_, X.MmioExit):
            if not exit_.is_write:
                exit_.data[:] = bytes(8)  # no device here: reads as zero
            return True
        return isinstance(exit_, X.IntrExit)

    def run(self, seconds: float, until: List[str], insns: int = 0) -> str:
        """Run until a finish marker, the time limit, ``insns`` retired (0: no
        limit) or a stop; why it ended."""
        deadline = time.perf_counter() + seconds
        seen = 0
        hart = self.vcpu.hart
        while True:
            exit_ = self.vcpu.run(budget=100_000, idle_timeout=0.01)
            t0 = time.perf_counter()
            c0 = time.process_time()
            self.exits += not isinstance(exit_, X.IntrExit)
            ok = self.serve(exit_)
            self.exit_seconds += time.process_time() - c0
            if insns and hart.instret >= insns:
                return f"{insns:,} instructions"
            if not ok:
                return f"stopped: {exit_!r}"
            if len(self.console) > seen:
                text = self.console[max(0, seen - 64):].decode("utf-8", "replace")
                seen = len(self.console)
                for marker in until:
                    if marker in text:
                        return f"marker {marker!r}"
            if t0 >= deadline:
                return "time limit"


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kernel", required=True, help="a raw RISC-V Image")
    ap.add_argument("--seconds", type=float, default=60.0, help="wall-time limit")
    ap.add_argument("--insns", type=int, default=0,
                    help="stop after this many instructions (a fixed amount of work: compare"
                    " CPU seconds on a busy machine)")
    ap.add_argument("--ns-per-insn", default=None,
                    help="guest time per instruction in ns (default: one 10 MHz tick, 100 ns)")
    ap.add_argument("--engine", choices=("fast", "reference"), default="fast")
    ap.add_argument("--ram", type=int, default=512, help="MiB of guest RAM")
    ap.add_argument("--append", default=DEFAULT_APPEND, help="kernel command line")
    ap.add_argument("--until", action="append", default=None,
                    help="finish when the console shows this text (repeatable)")
    ap.add_argument("--lines", type=int, default=8, help="console lines to print at the end")
    ap.add_argument("--echo", action="store_true", help="copy the console to stdout")
    ap.add_argument("--no-rng-seed", action="store_true",
                    help="no /chosen rng-seed (the kernel then gathers entropy itself, "
                    "a third more instructions to the shell)")
    args = ap.parse_args(argv)
    try:  # PyPy: the JIT parameters a worker process sets (older trees have none)
        from rvkvm.emulator.pypy import tune_pypy_jit
    except ImportError:
        pass
    else:
        tune_pypy_jit()
    boot = Boot(args.kernel, args.engine, args.ram, args.append,
                b"" if args.no_rng_seed else RNG_SEED)
    if args.ns_per_insn:
        from fractions import Fraction
        boot.vm.ns_per_insn = Fraction(args.ns_per_insn)
    boot.echo = args.echo
    hart = boot.vcpu.hart
    tr = hart.translator
    t0 = time.perf_counter()
    c0 = time.process_time()
    why = boot.run(args.seconds, args.until or list(FINISH), args.insns)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    insns = hart.instret
    tier1 = getattr(tr, "tier1_seconds", 0.0)
    # getattr: the counters are new; older trees run this file too (compare)
    trans = getattr(tr, "translate_seconds", 0.0) + tier1
    running = cpu - trans - boot.exit_seconds
    print(f"python            {platform.python_implementation()} {platform.python_version()}")
    print(f"engine            {args.engine}")
    print(f"finished          {why}")
    print(f"instructions      {insns:,}")
    print(f"wall              {wall:.1f} s")
    print(f"CPU               {cpu:.1f} s (shares below are of CPU time)")
    print(f"MIPS              {insns / wall / 1e6:.3f} per wall second,"
          f" {insns / cpu / 1e6:.3f} per CPU second")
    print(f"time translating  {trans:.1f} s ({100 * trans / cpu:.1f}%), of which first-tier"
          f" blocks {tier1:.1f} s")
    print(f"time running      {running:.1f} s ({100 * running / cpu:.1f}%)")
    print(f"time in exits     {boot.exit_seconds:.2f} s ({100 * boot.exit_seconds / cpu:.1f}%)"
          f", {boot.exits:,} exits")
    done = getattr(tr, "insns_translated", 0)
    print(f"translations      {tr.blocks_built:,} regions, {done:,} insns"
          f" ({1e6 * getattr(tr, 'translate_seconds', 0.0) / max(1, done):.1f} us per insn"
          f" translated)")
    print(f"fence.i           {getattr(hart, 'n_fence_i', '?')}")
    print(f"sfence.vma        {getattr(hart, 'n_sfence_vma', '?')}")
    print(f"code flushes      {getattr(hart, 'n_code_flushes', '?')} (budget flushes"
          f" {tr.code_flushes:,})")
    if hasattr(tr, "tier1_built"):
        print(f"first tier        {tr.tier1_built:,} blocks, {tr.tier1_insns:,} insns"
              f" ({1e6 * tier1 / max(1, tr.tier1_insns):.1f} us per insn)")
    if hasattr(tr, "blocks_adopted"):
        print(f"shared code       {tr.blocks_adopted:,} blocks entered from another context"
              f" ({getattr(tr, 'adopt_seconds', 0.0):.1f} s)")
    if hasattr(tr, "evictions"):
        print(f"evictions         {tr.evictions:,} regions, {tr.chars_evicted:,} characters"
              f" (held {tr.code_chars:,} of {tr.code_budget():,})")
    lines = boot.console.decode("utf-8", "replace").splitlines()
    print(f"console           {len(boot.console):,} bytes, last lines:")
    for line in lines[-args.lines:]:
        print("  | " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
