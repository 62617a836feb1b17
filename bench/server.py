"""Benchmark of the rvkvm service, figures side by side in one run.

    python -m bench.server [--quick] [--vms N] [--seconds S]

Prints (never asserts) four tables, measured against rvkvm servers started
as subprocesses (``python -m rvkvm.server --listen 127.0.0.1:0``) on loopback:

1. ONE_REG: single GetOneReg RPCs per second vs BatchOneReg gets per second
   (registers per second) and their ratio (target: batched >= 20x single).
2. MMIO exits per second of a guest looping on MMIO loads and stores outside
   any memory slot, answered by the client: unary Run vs RunStream, each
   against this server and against a second one started with
   ``--inline-slice 0`` (every Run slice on a run thread, the server before
   Runs started inline), alternating, with the median ratios of the pairs.
2b. Console bytes per second of a guest printing through the NS16550A as
   Linux's 8250 console does (an LSR read, then a THR write, per byte),
   served by the client's ``Vmm`` over RunStream: every access an exit, vs
   THR writes through the coalesced-MMIO ring (the LSR reads still exit),
   pairs run back to back and the median of their ratios.
3. Guest MIPS of one ALU loop (S-mode, ends in an SBI SRST shutdown) through
   the server's Run vs directly on an emulator ``Hart`` with
   ``intercept_mtraps``, and the ratio (target: >= 90%).
4. Server resident memory (VmRSS, VmHWM) before and after creating N idle
   VMs of 256 MiB RAM with one vCPU each (target: < 1 GiB for 1,000).

``--quick`` is a small run (a smoke test uses it).
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import grpc

from rvkvm.client import Kvm, Vcpu, Vm
from rvkvm.client.devices import UART_BASE
from rvkvm.client.exits import IntrExit, MmioExit, SystemEventExit
from rvkvm.client.kvm import Reg
from rvkvm.client.vmm import Vmm
from rvkvm.emulator.hart import PRV_S, Hart
from rvkvm.emulator.memory import PhysMemory
from rvkvm.uapi.onereg import reg_id

RAM_BASE = 0x8000_0000
MMIO = 0x1000_0000  # no memory slot there
SBI_EXT_SRST = 0x53525354
CAUSE_ECALL_S = 9
MIB = 1 << 20

# x registers
T0, T2, A0, A1, A2, A3, A4, A6, A7 = 5, 7, 10, 11, 12, 13, 14, 16, 17

# -- a tiny RV64 encoder (no toolchain) --------------------------------------


def _r(f3: int, f7: int, rd: int, rs1: int, rs2: int) -> int:
    return (f7 << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | 0x33


def _i(op: int, f3: int, rd: int, rs1: int, imm: int) -> int:
    return ((imm & 0xFFF) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op


def _s(f3: int, rs1: int, rs2: int, imm: int) -> int:
    imm &= 0xFFF
    return ((imm >> 5) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | ((imm & 31) << 7) | 0x23


def _b(f3: int, rs1: int, rs2: int, off: int) -> int:
    off &= 0x1FFF
    return ((((off >> 12) & 1) << 31) | (((off >> 5) & 63) << 25) | (rs2 << 20) | (rs1 << 15)
            | (f3 << 12) | (((off >> 1) & 15) << 8) | (((off >> 11) & 1) << 7) | 0x63)


def _j(off: int) -> int:
    off &= 0x1FFFFF
    return ((((off >> 20) & 1) << 31) | (((off >> 1) & 0x3FF) << 21) | (((off >> 11) & 1) << 20)
            | (((off >> 12) & 0xFF) << 12) | 0x6F)


def li(rd: int, value: int) -> List[int]:
    """lui + addiw: a 32-bit signed constant (sign-extended to 64 bits)."""
    value &= 0xFFFF_FFFF
    lo = value & 0xFFF
    if lo >= 0x800:
        lo -= 0x1000
    hi = ((value - lo) >> 12) & 0xFFFFF
    return [(hi << 12) | (rd << 7) | 0x37, _i(0x1B, 0, rd, rd, lo)]


def li_u32(rd: int, value: int) -> List[int]:
    """A zero-extended 32-bit constant."""
    return li(rd, value) + [_i(0x13, 1, rd, rd, 32), _i(0x13, 5, rd, rd, 32)]


ECALL = 0x00000073


def words(program: Iterable[int]) -> bytes:
    return b"".join(struct.pack("<I", w & 0xFFFF_FFFF) for w in program)


def alu_loop(iterations: int) -> Tuple[List[int], int]:
    """A counted loop of ALU ops ending in SBI SRST shutdown; returns the
    program and the instructions it retires up to and including the ecall."""
    head = li(T0, iterations)
    body = [
        _i(0x13, 0, A1, A1, 1),  # addi a1, a1, 1
        _r(4, 0, A2, A2, A1),  # xor a2, a2, a1
        _r(0, 0, A3, A3, A2),  # add a3, a3, a2
        _i(0x13, 1, A4, A3, 3),  # slli a4, a3, 3
        _r(0, 0x20, A3, A4, A3),  # sub a3, a4, a3
        _i(0x13, 0, T0, T0, -1),  # addi t0, t0, -1
    ]
    body.append(_b(1, T0, 0, -4 * len(body)))  # bnez t0, loop
    tail = li_u32(A7, SBI_EXT_SRST) + li(A6, 0) + li(A0, 0) + li(A1, 0) + [ECALL]
    program = head + body + tail
    return program, len(head) + iterations * len(body) + len(tail)


def uart_print_loop(nbytes: int, uart: int) -> List[int]:
    """Print ``nbytes`` through an NS16550A at ``uart`` as Linux's 8250
    console does: poll LSR until THRE, write THR; then SBI SRST shutdown."""
    head = li(A0, uart) + li(T0, nbytes) + li(A2, ord("x"))
    body = [
        _i(0x03, 4, A1, A0, 5),  # poll: lbu a1, 5(a0)    (LSR)
        _i(0x13, 7, A1, A1, 0x20),  # andi a1, a1, THRE
        _b(0, A1, 0, -8),  # beqz a1, poll
        _s(0, A0, A2, 0),  # sb a2, 0(a0)    (THR)
        _i(0x13, 0, T0, T0, -1),  # addi t0, t0, -1
        _b(1, T0, 0, -20),  # bnez t0, poll
    ]
    tail = li_u32(A7, SBI_EXT_SRST) + li(A6, 0) + li(A0, 0) + li(A1, 0) + [ECALL]
    return head + body + tail


def mmio_loop() -> List[int]:
    """a0 = MMIO; loop: a1 = *(u64 *)a0; *(u64 *)(a0 + 8) = a1; j loop."""
    return li(A0, MMIO) + [_i(0x03, 3, A1, A0, 0), _s(3, A0, A1, 8), _j(-8)]


# -- the server subprocess -----------------------------------------------------


def source_tree(src: str) -> str:
    """A directory with the installed layout (``rvkvm.server``, ...) of the
    checkout ``src``, to put first on PYTHONPATH: runs that checkout's
    server for before/after figures."""
    tree = tempfile.mkdtemp(prefix="rvkvm-src-")
    os.makedirs(os.path.join(tree, "rvkvm"))
    for name in os.listdir(os.path.join(src, "pkg", "rvkvm")):  # __init__, bootstrap, v1
        os.symlink(os.path.join(src, "pkg", "rvkvm", name), os.path.join(tree, "rvkvm", name))
    for name in ("emulator", "server", "client", "uapi"):
        os.symlink(os.path.join(src, name), os.path.join(tree, "rvkvm", name))
    return tree


class ServerProcess:
    """``python -m rvkvm.server --listen 127.0.0.1:0`` as a child process."""

    def __init__(self, extra: Optional[List[str]] = None) -> None:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        cmd = [sys.executable, "-m", "rvkvm.server", "--listen", "127.0.0.1:0",
               "--log-level", "warning"] + (extra or [])
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, cwd=root, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.proc.kill()
            raise RuntimeError(f"server did not start: {line!r}")
        self.address = line.strip().rsplit(" ", 1)[1]
        self.pid = self.proc.pid
        # keep reading its output (log lines) so that the pipe never fills up
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for _ in self.proc.stdout:
            pass

    def status(self) -> Dict[str, int]:
        """VmRSS and VmHWM in bytes."""
        out: Dict[str, int] = {}
        with open(f"/proc/{self.pid}/status") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(rest.split()[0]) * 1024
        return out

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _vm(kvm: Kvm, program: List[int], ram: int = 0x1_0000) -> Tuple[Vm, Vcpu]:
    vm = kvm.create_vm()
    vm.set_user_memory_region(0, RAM_BASE, ram)
    vcpu = vm.create_vcpu(0)
    vm.write_memory(RAM_BASE, words(program))
    vcpu.set_reg("core pc", RAM_BASE)
    return vm, vcpu


# -- 1. ONE_REG ------------------------------------------------------------------


def bench_onereg(kvm: Kvm, seconds: float, batch: int) -> Dict[str, float]:
    vm, vcpu = _vm(kvm, [0])
    ops: List[Tuple[int, Reg, Optional[bytes]]] = [
        (0, reg_id(f"core a{i % 8}"), None) for i in range(batch)]
    rid = reg_id("core a0")
    for _ in range(50):  # warm up
        vcpu.get_one_reg(rid)
    n = 0
    t0 = time.perf_counter()
    while True:
        for _ in range(100):
            vcpu.get_one_reg(rid)
        n += 100
        dt = time.perf_counter() - t0
        if dt >= seconds:
            break
    single = n / dt
    vm.batch_one_reg(ops)
    calls = 0
    t0 = time.perf_counter()
    while True:
        results = vm.batch_one_reg(ops)
        calls += 1
        dt = time.perf_counter() - t0
        if dt >= seconds:
            break
    assert len(results) == batch
    batched = calls * batch / dt
    vm.destroy()
    return {"single": single, "batched": batched, "calls": calls / dt, "ratio": batched / single}


# -- 2. MMIO exits ---------------------------------------------------------------


def _mmio_exits(run: Callable[[], Any], seconds: float) -> float:
    n = 0
    t0 = time.perf_counter()
    while True:
        for _ in range(50):
            exit_ = run()
            if not isinstance(exit_, MmioExit):
                raise RuntimeError(f"unexpected exit {exit_!r}")
            if not exit_.is_write:
                exit_.value = n
        n += 50
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return n / dt


def bench_mmio(kvm: Kvm, seconds: float) -> Dict[str, float]:
    vm, vcpu = _vm(kvm, mmio_loop())
    unary = _mmio_exits(vcpu.run, seconds)
    with vcpu.run_stream() as stream:
        streamed = _mmio_exits(stream.run, seconds)
    vm.destroy()
    return {"unary": unary, "stream": streamed, "ratio": streamed / unary}


def bench_mmio_inline(kvm: Kvm, pooled: Kvm, seconds: float, rounds: int) -> Dict[str, float]:
    """``bench_mmio`` against this server (Runs start inline after a guest
    exit) and one started with ``--inline-slice 0`` (every slice on a run
    thread, as before), alternating: best rates, median ratios of pairs."""
    res: Dict[str, List[float]] = {"unary": [], "stream": [], "unary0": [], "stream0": []}
    for _ in range(rounds):
        a = bench_mmio(pooled, seconds)
        b = bench_mmio(kvm, seconds)
        res["unary0"].append(a["unary"])
        res["stream0"].append(a["stream"])
        res["unary"].append(b["unary"])
        res["stream"].append(b["stream"])
    ratio = {k: statistics.median(n / o for n, o in zip(res[k], res[k + "0"]))
             for k in ("unary", "stream")}
    out = {k: max(v) for k, v in res.items()}
    out.update({"unary_ratio": ratio["unary"], "stream_ratio": ratio["stream"]})
    return out


# -- 2b. console bytes through the UART ----------------------------------------


def console_run(kvm: Kvm, nbytes: int, coalesce: bool) -> Tuple[float, int]:
    """Bytes per second of ``uart_print_loop`` through the client's ``Vmm``
    (RunStream, the NS16550A model answering each exit), and the bytes the
    console got; ``coalesce``: THR writes through the coalesced-MMIO ring."""
    out = io.BytesIO()
    vmm = Vmm(kvm, ram_size=1 << 20, console=out)
    vmm.add_uart(coalesce_thr=coalesce)
    vmm.vm.write_memory(RAM_BASE, words(uart_print_loop(nbytes, UART_BASE)))
    vmm.boot(RAM_BASE, 0)
    t0 = time.perf_counter()
    result = vmm.run(timeout=600)
    dt = time.perf_counter() - t0
    vmm.close()
    if not result.clean_shutdown:
        raise RuntimeError(f"console guest ended with {result.exit!r}")
    return len(out.getvalue()) / dt, len(out.getvalue())


def bench_console(kvm: Kvm, nbytes: int, rounds: int) -> Dict[str, float]:
    """``rounds`` pairs (plain, then coalesced THR): best rates and the
    median of the pairs' ratios."""
    plain, coalesced, ratios = [], [], []
    for _ in range(rounds):
        p, n1 = console_run(kvm, nbytes, False)
        c, n2 = console_run(kvm, nbytes, True)
        if n1 != nbytes or n2 != nbytes:
            raise RuntimeError(f"console got {n1} / {n2} bytes of {nbytes}")
        plain.append(p)
        coalesced.append(c)
        ratios.append(c / p)
    return {"bytes": nbytes, "plain": max(plain), "coalesced": max(coalesced),
            "ratio": statistics.median(ratios)}


# -- 3. guest MIPS -------------------------------------------------------------


def mips_server(kvm: Kvm, program: List[int], expected: int,
                budget: int) -> Tuple[float, float]:
    vm, vcpu = _vm(kvm, program)
    t0 = time.perf_counter()
    while True:
        exit_ = vcpu.run(budget=budget)
        if isinstance(exit_, SystemEventExit):
            break
        if not isinstance(exit_, IntrExit):
            raise RuntimeError(f"unexpected exit {exit_!r}")
    dt = time.perf_counter() - t0
    vm.destroy()
    return expected / dt / 1e6, dt


def mips_bare(program: List[int], expected: int, engine: str = "fast") -> Tuple[float, float]:
    mem = PhysMemory()
    mem.add_ram(RAM_BASE, 0x1_0000)
    mem.write_bytes(RAM_BASE, words(program))
    hart = Hart(mem, hartid=0, engine=engine, misaligned="trap")
    hart.intercept_mtraps = True
    hart.priv = PRV_S
    hart.update_ctx()
    hart.pc = RAM_BASE
    t0 = time.perf_counter()
    while True:
        stop = hart.run(1 << 30)
        if stop.reason == "trap":
            break
    dt = time.perf_counter() - t0
    if stop.cause != CAUSE_ECALL_S or hart.instret + 1 < expected:
        raise RuntimeError(f"bare run stopped at {stop.reason} cause {stop.cause} "
                           f"after {hart.instret} instructions (expected {expected})")
    return expected / dt / 1e6, dt


def bench_mips(kvm: Kvm, iterations: int, budget: int, repeat: int) -> Dict[str, float]:
    """``repeat`` pairs of runs, bare then served: the best MIPS of each and
    the median of the pairs' ratios (the machine's speed drifts, a pair run
    back to back sees about the same machine)."""
    program, expected = alu_loop(iterations)
    mips_bare(*alu_loop(1000))  # warm up imports and the translator
    bare: Tuple[float, float] = (0.0, 0.0)
    served: Tuple[float, float] = (0.0, 0.0)
    ratios = []
    for _ in range(repeat):
        b = mips_bare(program, expected)
        s = mips_server(kvm, program, expected, budget)
        ratios.append(s[0] / b[0])
        bare, served = max(bare, b), max(served, s)
    return {"insns": expected, "bare": bare[0], "bare_s": bare[1], "server": served[0],
            "server_s": served[1], "ratio": statistics.median(ratios),
            "ratio_min": min(ratios), "ratio_max": max(ratios)}


# -- 4. memory -----------------------------------------------------------------


def bench_memory(vms: int, ram: int) -> Dict[str, float]:
    server = ServerProcess(["--max-vms", str(vms + 8)])
    try:
        with grpc.insecure_channel(server.address) as channel:
            kvm = Kvm(channel, timeout=60)
            kvm.get_api_version()
            before = server.status()
            t0 = time.perf_counter()
            for _ in range(vms):
                vm = kvm.create_vm()
                vm.set_user_memory_region(0, RAM_BASE, ram)
                vm.create_vcpu(0)
            dt = time.perf_counter() - t0
            time.sleep(0.2)
            after = server.status()
    finally:
        server.stop()
    per_vm = (after["VmRSS"] - before["VmRSS"]) / max(vms, 1)
    return {"vms": vms, "ram": ram, "rss0": before["VmRSS"], "hwm0": before["VmHWM"],
            "rss1": after["VmRSS"], "hwm1": after["VmHWM"], "per_vm": per_vm,
            "create_s": dt, "projected_1000": before["VmRSS"] + 1000 * per_vm}


# -- main ----------------------------------------------------------------------


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.server")
    ap.add_argument("--quick", action="store_true", help="a small run (seconds, not minutes)")
    ap.add_argument("--seconds", type=float, default=None,
                    help="measuring time of each rate (default 2, quick 0.3)")
    ap.add_argument("--batch", type=int, default=256, help="gets per BatchOneReg call")
    ap.add_argument("--iterations", type=int, default=None,
                    help="ALU loop iterations (default 1,000,000, quick 100,000)")
    ap.add_argument("--budget", type=int, default=100_000_000, help="Run budget for the MIPS run")
    ap.add_argument("--repeat", type=int, default=None,
                    help="bare/server MIPS run pairs (default 9, quick 1)")
    ap.add_argument("--vms", type=int, default=None, help="idle VMs (default 1000, quick 50)")
    ap.add_argument("--ram-mib", type=int, default=256, help="RAM of each idle VM")
    args = ap.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else (0.3 if args.quick else 2.0)
    iterations = args.iterations or (100_000 if args.quick else 1_000_000)
    repeat = args.repeat or (1 if args.quick else 9)
    vms = args.vms if args.vms is not None else (50 if args.quick else 1000)
    console_bytes = 300 if args.quick else 3000
    rounds = 1 if args.quick else 3

    print(f"rvkvm server benchmark ({platform.python_implementation()} "
          f"{platform.python_version()}, {'quick' if args.quick else 'full'} run)")
    server = ServerProcess()
    try:
        with grpc.insecure_channel(server.address) as channel:
            kvm = Kvm(channel, timeout=600)
            kvm.get_api_version()

            r = bench_onereg(kvm, seconds, args.batch)
            print(f"\n== ONE_REG over gRPC (loopback, {args.batch} gets per BatchOneReg) ==")
            print(f"{'single GetOneReg regs/s':>24} {'BatchOneReg regs/s':>19} "
                  f"{'batch calls/s':>14} {'batched/single':>15}")
            print(f"{r['single']:>24,.0f} {r['batched']:>19,.0f} {r['calls']:>14,.0f} "
                  f"{r['ratio']:>14.1f}x   (target >= 20x)", flush=True)

            pooled_server = ServerProcess(["--inline-slice", "0"])
            try:
                with grpc.insecure_channel(pooled_server.address) as pooled_channel:
                    pooled = Kvm(pooled_channel, timeout=600)
                    m = bench_mmio_inline(kvm, pooled, seconds, rounds)
            finally:
                pooled_server.stop()
            print("\n== MMIO exits (guest loop of ld/sd outside any slot, client answers; "
                  f"{rounds} alternating pairs against a server with --inline-slice 0) ==")
            print(f"{'':>22} {'unary Run exits/s':>18} {'RunStream exits/s':>18} "
                  f"{'stream/unary':>13}")
            print(f"{'every slice pooled':>22} {m['unary0']:>18,.0f} {m['stream0']:>18,.0f} "
                  f"{m['stream0'] / m['unary0']:>12.2f}x")
            print(f"{'inline after an exit':>22} {m['unary']:>18,.0f} {m['stream']:>18,.0f} "
                  f"{m['stream'] / m['unary']:>12.2f}x")
            print(f"{'inline/pooled (median)':>22} {m['unary_ratio']:>17.2f}x "
                  f"{m['stream_ratio']:>17.2f}x", flush=True)

            c = bench_console(kvm, console_bytes, rounds)
            print(f"\n== Console through the UART ({c['bytes']:,} bytes, LSR poll + THR write "
                  f"per byte, Vmm over RunStream, {rounds} pairs) ==")
            print(f"{'every access exits B/s':>23} {'THR coalesced B/s':>18} "
                  f"{'coalesced/plain (median of pairs)':>34}")
            print(f"{c['plain']:>23,.0f} {c['coalesced']:>18,.0f} {c['ratio']:>33.2f}x",
                  flush=True)

            p = bench_mips(kvm, iterations, args.budget, repeat)
            print(f"\n== Guest MIPS (ALU loop, {p['insns']:,.0f} instructions, S-mode, "
                  f"SRST at the end, {repeat} pairs) ==")
            print(f"{'best bare Hart MIPS':>20} {'best server Run MIPS':>21} "
                  f"{'server/bare (median of pairs)':>30} {'min..max':>15}")
            spread = f"{100 * p['ratio_min']:.0f}..{100 * p['ratio_max']:.0f}%"
            print(f"{p['bare']:>20.2f} {p['server']:>21.2f} {100 * p['ratio']:>29.1f}% "
                  f"{spread:>15}   (target >= 90%)", flush=True)
    finally:
        server.stop()

    mem = bench_memory(vms, args.ram_mib * MIB)
    print(f"\n== Server memory ({vms} idle VMs x {args.ram_mib} MiB RAM + 1 vCPU) ==")
    print(f"{'RSS before MiB':>15} {'RSS after MiB':>14} {'HWM after MiB':>14} "
          f"{'per VM KiB':>11} {'projected 1000 VMs MiB':>23} {'create s':>9}")
    print(f"{mem['rss0'] / MIB:>15.1f} {mem['rss1'] / MIB:>14.1f} {mem['hwm1'] / MIB:>14.1f} "
          f"{mem['per_vm'] / 1024:>11.1f} {mem['projected_1000'] / MIB:>23.1f} "
          f"{mem['create_s']:>9.2f}   (target < 1024 MiB)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
