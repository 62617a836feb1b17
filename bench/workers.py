"""Benchmark of worker processes (``rvkvm-server --workers N``), figures
side by side in one run.

    python -m bench.workers [--quick] [--kernel IMAGE] [--vms 1000]

Prints (never asserts), against servers started as subprocesses on
loopback (``python -m rvkvm.server --workers N --worker-python P``):

1. The IPC codec: pickle (protocol 5, what ``rvkvm.server.worker.protocol``
   uses) against marshal of the hot messages (a GetOneReg request and its
   reply, a run request and a run reply with an MMIO exit; marshal needs
   the exit flattened to a tuple), microseconds to encode and decode.
2. ONE_REG: GetOneReg round trips through the gRPC server, p50/p99, with
   the vCPUs in-process (``--workers 0``) and in a CPython and a PyPy worker.
3. Guest MIPS through the server of the crc32 benchmark guest of
   ``python -m rvkvm.emulator.bench`` (run in S-mode from ``main``, a fixed
   instruction budget) with a CPython worker and a PyPy worker, and their
   ratio; with ``--kernel``, instructions a Linux boot (``rvkvm boot``)
   retires in a bounded time on each.
4. Aggregate MIPS of 2 busy VMs (crc32 each) with 1 worker and with 2.
5. Memory of N idle 256 MiB VMs (one vCPU each) through 2 workers: the
   proportional set size (PSS, /proc/PID/smaps_rollup: shared pages counted
   once) of the front end plus the workers.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional, Tuple

import grpc
from elftools.elf.elffile import ELFFile

from rvkvm.bootstrap import python_command
from rvkvm.client import Kvm, Vcpu, Vm
from rvkvm.client.exits import IntrExit
from rvkvm.emulator.bench import GUEST_DIR
from rvkvm.uapi.onereg import reg_id

from .server import ServerProcess, source_tree

RAM_BASE = 0x8000_0000
RAM = 16 << 20
# An S-mode trap handler for the guest's M-mode CSR reads (minstret):
# sscratch = t0; t0 = sepc + 4; sepc = t0; t0 = sscratch; sret.
SKIP_TRAP = [0x14029073, 0x141022F3, 0x00428293, 0x14129073, 0x140022F3, 0x10200073]
HANDLER = RAM_BASE + RAM - 0x1000
CPYTHON = sys.executable


def _python_label(python: str) -> str:
    return "PyPy" if "pypy" in os.path.basename(python) else "CPython"


def server(workers: int, python: str = "", extra: Optional[List[str]] = None) -> ServerProcess:
    args = ["--workers", str(workers), "--max-memory", "0"]
    if python:
        args += ["--worker-python", python]
    return ServerProcess(args + (extra or []))


def connect(proc: ServerProcess) -> Tuple[grpc.Channel, Kvm]:
    channel = grpc.insecure_channel(proc.address)
    kvm = Kvm(channel, timeout=120)
    kvm.get_api_version()
    return channel, kvm


# -- 1. the codec ------------------------------------------------------------------


CODEC = """
import marshal, pickle, sys, time
from rvkvm.server.kvm import exits as X

def per_call(fn, n):
    for _ in range(n):  # warm up (PyPy's JIT)
        fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6

n = int(sys.argv[1])
exit_ = X.MmioExit(0x1000_0000, 4, False)
flat = (exit_.reason, exit_.phys_addr, exit_.len, exit_.is_write, bytes(exit_.data))
messages = [
    ("GetOneReg request", (17, "get_one_reg", (3, 0), (0x8030_0000_0200_0000,)), None),
    ("GetOneReg reply", (17, True, b"\\x00" * 8), None),
    ("run request", (18, "run", (3, 0), (200_000, 0.0, 12345.678, None)), None),
    ("run reply (MMIO exit)", (18, True, (exit_, 200_000, 123456789, None)),
     (18, True, (flat, 200_000, 123456789, None))),
]
for name, msg, flat_msg in messages:
    p = per_call(lambda: pickle.loads(pickle.dumps(msg, 5)), n)
    m = per_call(lambda: marshal.loads(marshal.dumps(flat_msg or msg, 4)), n)
    print(name, p, m, sep="\\t")
"""


def bench_codec(python: str, n: int) -> List[Tuple[str, float, float]]:
    """(message, pickle us, marshal us) in ``python``; a run reply's exit
    flattened to a tuple for marshal."""
    out = subprocess.run(python_command(python, CODEC, [str(n)]), capture_output=True,
                         text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        name, p, m = line.split("\t")
        rows.append((name, float(p), float(m)))
    return rows


# -- 2. ONE_REG --------------------------------------------------------------------


def bench_health(channel: grpc.Channel, n: int) -> Tuple[float, float]:
    """p50/p99 of a gRPC health check (us): the transport's own round trip,
    the floor under any RPC of this server."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    stub = health_pb2_grpc.HealthStub(channel)
    for _ in range(200):
        stub.Check(health_pb2.HealthCheckRequest())
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        stub.Check(health_pb2.HealthCheckRequest())
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2] * 1e6, times[int(len(times) * 0.99)] * 1e6


IPC = """
import asyncio, sys, time
from rvkvm.server.rpc.workers import WorkerPool
from rvkvm.uapi.onereg import reg_id

pool = WorkerPool(1, sys.argv[1])
vm, _ = pool.create_vm(0, "latest")
vcpu = vm.create_vcpu(0)
rid, n = reg_id("core a0"), int(sys.argv[2])

async def main():
    for _ in range(200):
        await vcpu.get_one_reg.aio(rid)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        await vcpu.get_one_reg.aio(rid)
        times.append(time.perf_counter() - t0)
    times.sort()
    print(times[len(times) // 2] * 1e6, times[int(len(times) * 0.99)] * 1e6)

asyncio.run(main())
pool.shutdown()
"""


def bench_ipc(python: str, n: int) -> Tuple[float, float]:
    """p50/p99 (us) of a GetOneReg the front end's event loop awaits from a
    worker on ``python``, without gRPC (``WorkerPool`` driven directly)."""
    out = subprocess.run([sys.executable, "-c", IPC, python, str(n)], capture_output=True,
                         text=True, check=True).stdout.split()
    return float(out[0]), float(out[1])


def bench_onereg(kvm: Kvm, n: int) -> Tuple[float, float]:
    vm = kvm.create_vm()
    vm.set_user_memory_region(0, RAM_BASE, 1 << 16)
    vcpu = vm.create_vcpu(0)
    rid = reg_id("core a0")
    for _ in range(200):
        vcpu.get_one_reg(rid)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        vcpu.get_one_reg(rid)
        times.append(time.perf_counter() - t0)
    vm.destroy()
    times.sort()
    return times[len(times) // 2] * 1e6, times[int(len(times) * 0.99)] * 1e6


# -- 3./4. guest MIPS --------------------------------------------------------------


def load_crc32(kvm: Kvm) -> Tuple[Vm, Vcpu]:
    """The crc32 guest in S-mode from ``main`` (its M-mode start-up skipped;
    its one M-mode CSR read, minstret, traps to a handler that skips it)."""
    path = os.path.join(GUEST_DIR, "crc32.elf")
    vm = kvm.create_vm()
    vm.set_user_memory_region(0, RAM_BASE, RAM)
    vcpu = vm.create_vcpu(0)
    with open(path, "rb") as f:
        elf = ELFFile(f)
        for seg in elf.iter_segments("PT_LOAD"):
            vm.write_memory(seg["p_paddr"], seg.data().ljust(seg["p_memsz"], b"\0"))
        symbols = {s.name: s["st_value"] for s in elf.get_section_by_name(".symtab").iter_symbols()}
    vm.write_memory(HANDLER, b"".join(w.to_bytes(4, "little") for w in SKIP_TRAP))
    vcpu.set_reg("csr stvec", HANDLER)
    vcpu.set_reg("core pc", symbols["main"])
    vcpu.set_reg("core sp", symbols["__stack_top"])
    vcpu.set_reg("core gp", symbols["__global_pointer$"])
    vcpu.set_reg("core ra", symbols["rt_exit"])
    return vm, vcpu


def run_budget(vcpu: Vcpu, budget: int) -> float:
    """Seconds for ``budget`` instructions (one Run)."""
    t0 = time.perf_counter()
    exit_ = vcpu.run(budget=budget)
    dt = time.perf_counter() - t0
    if not (isinstance(exit_, IntrExit) and exit_.why == "budget"):
        raise RuntimeError(f"crc32 stopped early: {exit_}")
    return dt


def bench_mips(kvm: Kvm, budget: int, repeat: int) -> float:
    best = 0.0
    for _ in range(repeat):
        vm, vcpu = load_crc32(kvm)
        best = max(best, budget / run_budget(vcpu, budget) / 1e6)
        vm.destroy()
    return best


def cpu_seconds(pids: List[int]) -> float:
    """User + system CPU time of ``pids`` so far (/proc/PID/stat)."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def bench_aggregate(kvm: Kvm, budget: int, pids: List[int]) -> Tuple[float, float]:
    """MIPS of 2 VMs running crc32 at once (after a warm-up run of each),
    and the CPU seconds the workers (``pids``) used meanwhile."""
    pairs = [load_crc32(kvm) for _ in range(2)]
    for _, vcpu in pairs:
        run_budget(vcpu, budget // 4)
    threads = [threading.Thread(target=run_budget, args=(v, budget)) for _, v in pairs]
    cpu0 = cpu_seconds(pids)
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dt = time.perf_counter() - t0
    cpu = cpu_seconds(pids) - cpu0
    for vm, _ in pairs:
        vm.destroy()
    return 2 * budget / dt / 1e6, cpu


def bench_boot(kernel: str, python: str, seconds: float) -> Tuple[float, float]:
    """(M instructions, MIPS) of ``rvkvm boot`` in ``seconds`` with one worker on ``python``."""
    proc = server(1, python)
    try:
        out = subprocess.run(
            [sys.executable, "-m", "rvkvm.client", "boot", "--kernel", kernel, "--server",
             proc.address, "--no-initrd", "--timeout", str(seconds)],
            capture_output=True, text=True, timeout=seconds + 120)
    finally:
        proc.stop()
    match = re.search(r"([\d.]+) M instructions in ([\d.]+) s", out.stderr)
    if match is None:
        raise RuntimeError(f"no figures from rvkvm boot: {out.stderr[-500:]}")
    insns, secs = float(match.group(1)), float(match.group(2))
    return insns, insns / secs


# -- 5. memory ---------------------------------------------------------------------


def pss(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    return 0


def worker_pids(pid: int) -> List[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                         text=True).stdout
    return [int(p) for p in out.split()]


def bench_memory(vms: int, python: str) -> Dict[str, float]:
    proc = server(2, python, ["--max-vms", str(vms + 8)])
    try:
        channel, kvm = connect(proc)
        with channel:
            pids = [proc.pid] + worker_pids(proc.pid)
            before = sum(pss(p) for p in pids)
            t0 = time.perf_counter()
            for _ in range(vms):
                vm = kvm.create_vm()
                vm.set_user_memory_region(0, RAM_BASE, 256 << 20)
                vm.create_vcpu(0)
            dt = time.perf_counter() - t0
            time.sleep(0.5)
            front = pss(proc.pid)
            workers = sum(pss(p) for p in pids[1:])
    finally:
        proc.stop()
    return {"vms": vms, "before": before, "front": front, "workers": workers,
            "total": front + workers, "create_s": dt, "nworkers": len(pids) - 1}


# -- main --------------------------------------------------------------------------


def _mib(n: float) -> str:
    return f"{n / (1 << 20):,.0f} MiB"


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.workers")
    ap.add_argument("--quick", action="store_true", help="a small run (smoke test)")
    ap.add_argument("--kernel", help="a RISC-V Linux Image: also time a bounded boot")
    ap.add_argument("--boot-seconds", type=float, default=60.0)
    ap.add_argument("--vms", type=int, default=1000, help="idle VMs for the memory figure")
    ap.add_argument("--budget", type=int, default=0,
                    help="crc32 instructions per measurement (default 20M, --quick 2M)")
    ap.add_argument("--sections", default="1,2,3,4,5",
                    help="which sections to run, e.g. 2,4 (all)")
    ap.add_argument("--server-src", metavar="DIR",
                    help="run the servers (and workers) of another checkout, for before/after "
                         "figures")
    args = ap.parse_args(argv)
    sections = {int(x) for x in args.sections.split(",")}
    if args.server_src:
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (source_tree(args.server_src), os.environ.get("PYTHONPATH", "")) if p)
    pypy = shutil.which("pypy3")
    budget = args.budget or (2_000_000 if args.quick else 20_000_000)
    calls = 300 if args.quick else 3000
    print(f"# rvkvm worker processes: {platform.python_implementation()} "
          f"{platform.python_version()} front end, {os.cpu_count()} cores; "
          f"PyPy: {pypy or 'not installed'}")

    pythons = [CPYTHON] + ([pypy] if pypy else [])
    if 1 in sections:
        print("\n## 1. IPC codec, encode+decode per message (us)")
        codecs = {p: bench_codec(p, 2000 if args.quick else 20000) for p in pythons}
        labels = " | ".join(f"{_python_label(p)} pickle 5 | {_python_label(p)} marshal"
                            for p in pythons)
        print(f"| message | {labels} |\n|---|" + "---:|" * (2 * len(pythons)))
        for i, (name, _, _) in enumerate(codecs[CPYTHON]):
            cells = " | ".join(f"{codecs[p][i][1]:.2f} | {codecs[p][i][2]:.2f}" for p in pythons)
            print(f"| {name} | {cells} |")
    if 2 in sections:
        print("\n## 2. GetOneReg round trip through the gRPC server (us)")
        print("| vCPUs | p50 | p99 | health check p50 (the gRPC floor) |\n|---|---:|---:|---:|")
        for label, workers, python in ([("in-process (--workers 0)", 0, "")]
                                       + [(f"{_python_label(p)} worker", 1, p) for p in pythons]):
            proc = server(workers, python)
            try:
                channel, kvm = connect(proc)
                with channel:
                    p50, p99 = bench_onereg(kvm, calls)
                    h50, _ = bench_health(channel, calls)
            finally:
                proc.stop()
            print(f"| {label} | {p50:.0f} | {p99:.0f} | {h50:.0f} |")
        print("\nThe worker hop alone (the front end's event loop awaiting a GetOneReg "
              "from a worker, no gRPC):\n| worker | p50 | p99 |\n|---|---:|---:|")
        for python in pythons:
            p50, p99 = bench_ipc(python, calls)
            print(f"| {_python_label(python)} | {p50:.0f} | {p99:.0f} |")

    if 3 in sections:
        print(f"\n## 3. crc32 guest MIPS through the server ({budget / 1e6:g} M instructions, "
              "best of 2)")
        print("| worker | MIPS |\n|---|---:|")
        mips: Dict[str, float] = {}
        for python in pythons:
            proc = server(1, python)
            try:
                channel, kvm = connect(proc)
                with channel:
                    mips[python] = bench_mips(kvm, budget, 2)
            finally:
                proc.stop()
            print(f"| {_python_label(python)} | {mips[python]:.1f} |")
        if pypy:
            print(f"| PyPy / CPython | {mips[pypy] / mips[CPYTHON]:.1f}x |")
        if args.kernel:
            print(f"\n### Linux boot, {args.boot_seconds:g} s (rvkvm boot --no-initrd)")
            print("| worker | M instructions | MIPS |\n|---|---:|---:|")
            for python in pythons:
                insns, rate = bench_boot(args.kernel, python, args.boot_seconds)
                print(f"| {_python_label(python)} | {insns:.1f} | {rate:.2f} |")

    best = pypy or CPYTHON
    if 4 in sections:
        print(f"\n## 4. Aggregate MIPS of 2 busy VMs (crc32, {_python_label(best)} workers)")
        print("| workers | MIPS | worker CPU s | M instructions per worker CPU s |\n|---|---:|---:|---:|")
        agg: Dict[int, float] = {}
        scale = 5 if best == pypy else 1
        for workers in (1, 2):
            proc = server(workers, best)
            try:
                channel, kvm = connect(proc)
                with channel:
                    agg[workers], cpu = bench_aggregate(kvm, budget * scale, worker_pids(proc.pid))
            finally:
                proc.stop()
            print(f"| {workers} | {agg[workers]:.1f} | {cpu:.1f} | "
                  f"{2 * budget * scale / 1e6 / cpu:.1f} |")
        print(f"| 2 / 1 | {agg[2] / agg[1]:.2f}x | | |")

    if 5 in sections:
        vms = 20 if args.quick else args.vms
        print(f"\n## 5. Memory of {vms} idle 256 MiB VMs through 2 {_python_label(best)} workers "
              "(PSS)")
        mem = bench_memory(vms, best)
        print("| | PSS |\n|---|---:|")
        print(f"| front end + workers before | {_mib(mem['before'])} |")
        print(f"| front end after | {_mib(mem['front'])} |")
        print(f"| {mem['nworkers']:.0f} workers after | {_mib(mem['workers'])} |")
        print(f"| total after | {_mib(mem['total'])} |")
        print(f"(created in {mem['create_s']:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
