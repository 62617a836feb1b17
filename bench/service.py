"""The service under stress: lost exits and fair time, figures side by side.

    python -m bench.service exits [--runs N] [--no-seq] [--server-src DIR]
    python -m bench.service fair [--adversaries N] [--seconds S] [--tenants] [--server-src DIR]

Prints figures (never asserts), against an rvkvm server started as a
subprocess on loopback; ``--server-src DIR`` runs the server from another
checkout (for example the main worktree, to show the figures before a change).

``exits``: Runs with client deadlines of 0.5-4 ms, each retried with the same
completion after DEADLINE_EXCEEDED (the issue's scenario), on two guests:
the bundled hello guest (``Run{budget: 0, idle_timeout_ms: 1000}``: is its
console text complete?) and an MMIO echo loop (each load answered with a new
number, each store must carry back the number just answered: every exit
arrives, in order, exactly once, and every completion is applied once).

``fair``: while N vCPUs (``j .`` loops and, half by default or ``--smc``,
loops storing into their own code) run in one RunMany of another client,
the latency of a hello-guest run, of GetOneReg and of a health check from a
second client; the same without the adversaries first. ``--tenants``: the
two clients are two tenants of a tenants file (else both are the open
server's one tenant).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rvkvm.client import Kvm, KvmError
from rvkvm.client import exits as X
from rvkvm.client.channels import Credentials, open_channel
from rvkvm.client.vmm import Vmm
from rvkvm.v1 import kvm_pb2 as pb

from .server import (
    A0,
    A1,
    MMIO,
    RAM_BASE,
    ServerProcess,
    _b,
    _i,
    _j,
    _s,
    li,
    li_u32,
    mmio_loop,
    source_tree,
    words,
)

HELLO = os.path.join(os.path.dirname(X.__file__), "guests", "hello_sbi.elf")
T0, T1 = 5, 6


def _server(src: Optional[str], extra: Optional[List[str]] = None) -> ServerProcess:
    if src is None:
        return ServerProcess(extra)
    # a tree with the installed layout of another checkout, first on the path
    tree = source_tree(src)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (tree, os.environ.get("PYTHONPATH", "")) if p)
    return ServerProcess(extra)


def _no_seq(vcpu) -> None:
    """Make this client an old one: no Completion.exit_seq."""
    build = vcpu._run_request

    def request(*args: object) -> pb.RunRequest:
        msg = build(*args)
        msg.completion.ClearField("exit_seq")
        return msg
    vcpu._run_request = request


def _run_retrying(vcpu, rng: random.Random, stats: Dict[str, int], **kw) -> X.Exit:
    """One Run with a 0.5-4 ms deadline, retried with the same completion
    until it returns (an idle exit after 500 tries: a guest left waiting)."""
    for _ in range(500):
        stats["runs"] += 1
        try:
            return vcpu.run(timeout=rng.uniform(0.0005, 0.004), **kw)
        except KvmError as err:
            if err.code != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
            stats["deadline_exceeded"] += 1
    return X.IntrExit(X.INTR_IDLE)


def _hello(kvm: Kvm, rng: Optional[random.Random], stats: Dict[str, int],
           no_seq: bool = False) -> bytes:
    console = io.BytesIO()
    vmm = Vmm(kvm, console=console)
    try:
        vmm.boot(vmm.load_elf(HELLO), vmm.place_dtb(vmm.device_tree()))
        if no_seq:
            _no_seq(vmm.vcpu)
        idle = 0
        while idle < 3:  # a guest idle for 3 s will not go on: its exit was lost
            if rng is None:
                exit_ = vmm.vcpu.run(idle_timeout=1.0)
            else:
                exit_ = _run_retrying(vmm.vcpu, rng, stats, idle_timeout=1.0)
            idle = idle + 1 if isinstance(exit_, X.IntrExit) else 0
            if isinstance(exit_, X.SbiExit):
                handler = vmm.sbi_handlers.get(exit_.extension_id)
                if handler is not None:
                    handler(vmm, exit_)
            elif not isinstance(exit_, X.IntrExit):
                return console.getvalue()
        stats["stuck"] = stats.get("stuck", 0) + 1
        return console.getvalue()
    finally:
        vmm.close()


def echo_loop(spin: int) -> List[int]:
    """a0 = MMIO; loop: count t0 down from ``spin`` (about a millisecond
    per 10,000); a1 = *(u64 *)a0; *(u64 *)(a0 + 8) = a1; j loop."""
    body = li(T0, spin) + [_i(0x13, 0, T0, T0, -1), _b(1, T0, 0, -4),
                           _i(0x03, 3, A1, A0, 0), _s(3, A0, A1, 8)]
    return li(A0, MMIO) + body + [_j(-4 * len(body))]


def echo_vm(kvm: Kvm, spin: int = 10_000):
    vm = kvm.create_vm()
    vm.set_user_memory_region(0, RAM_BASE, 0x1_0000)
    vcpu = vm.create_vcpu(0)
    vm.write_memory(RAM_BASE, words(echo_loop(spin) if spin else mmio_loop()))
    vcpu.set_reg("core pc", RAM_BASE)
    return vm, vcpu


def echo_runs(kvm: Kvm, runs: int, seed: int, no_seq: bool = False,
              spin: int = 10_000) -> Dict[str, int]:
    """Runs of the MMIO echo loop with random short deadlines; counts what
    went wrong (nothing, if exits are exactly-once)."""
    rng = random.Random(seed)
    stats = {"runs": 0, "deadline_exceeded": 0, "exits": 0, "seq_gaps": 0,
             "wrong_echo": 0, "errors": 0}
    vm, vcpu = echo_vm(kvm, spin)
    if no_seq:
        _no_seq(vcpu)
    answered = 0
    last_seq = 0
    try:
        while stats["runs"] < runs:
            stats["runs"] += 1
            try:
                exit_ = vcpu.run(timeout=rng.uniform(0.0005, 0.004))
            except KvmError as err:
                if err.code == grpc.StatusCode.DEADLINE_EXCEEDED:
                    stats["deadline_exceeded"] += 1
                    continue
                stats["errors"] += 1
                print(f"  Run failed: {err}", file=sys.stderr)
                break
            stats["exits"] += 1
            if not no_seq and vcpu.last_seq != last_seq + 1:
                stats["seq_gaps"] += 1
            last_seq = vcpu.last_seq
            if isinstance(exit_, X.MmioExit) and not exit_.is_write:
                answered += 1
                exit_.value = answered
            elif isinstance(exit_, X.MmioExit):
                if exit_.value != answered:
                    stats["wrong_echo"] += 1
                    answered = exit_.value
    finally:
        vm.destroy()
    return stats


def cmd_exits(args: argparse.Namespace) -> None:
    server = _server(args.server_src)
    try:
        with grpc.insecure_channel(server.address) as channel:
            kvm = Kvm(channel, timeout=30)
            expected = _hello(kvm, None, {})
            lost = 0
            stats = {"runs": 0, "deadline_exceeded": 0}
            errors: Dict[str, int] = {}
            for trial in range(args.trials):
                try:
                    text = _hello(kvm, random.Random(trial), stats, args.no_seq)
                except KvmError as err:
                    errors[err.name] = errors.get(err.name, 0) + 1
                    continue
                lost += text != expected
            print(f"hello guest, {args.trials} trials (Run budget 0, idle 1000 ms, "
                  f"deadlines 0.5-4 ms, completion re-sent after DEADLINE_EXCEEDED"
                  f"{', no exit_seq' if args.no_seq else ''}):")
            print(f"  Runs {stats['runs']}, DEADLINE_EXCEEDED {stats['deadline_exceeded']}, "
                  f"trials with console text lost or garbled {lost} (guest stuck "
                  f"{stats.get('stuck', 0)}), failed trials {errors}")
            t0 = time.perf_counter()
            echo = echo_runs(kvm, args.runs, 1, args.no_seq)
            took = time.perf_counter() - t0
            print(f"MMIO echo loop, {args.runs} Runs with deadlines 0.5-4 ms "
                  f"({took:.1f} s):")
            print("  " + ", ".join(f"{k} {v}" for k, v in echo.items()))
    finally:
        server.stop()


# -- fair time -----------------------------------------------------------------


def self_modifying_loop(at: int) -> List[int]:
    """For code at ``at``: t0 = at; t1 = *t0; loop: *t0 = t1 (a store into
    its own code, so the translation of the page is dropped each time); j loop."""
    return li_u32(T0, at) + [_i(0x03, 2, T1, T0, 0), _s(2, T0, T1, 0), _j(-4)]


# ``fair --tenants``: the adversary and the measured client are two tenants.
TENANT_TOKENS = {"adversary": "bench-adversary-token", "probe": "bench-probe-token"}


def _tenants_file() -> str:
    fd, path = tempfile.mkstemp(prefix="rvkvm-fair-", suffix=".toml")
    with os.fdopen(fd, "w") as f:
        for name, token in TENANT_TOKENS.items():
            f.write(f'[tenants.{name}]\ntoken_sha256 = "{hashlib.sha256(token.encode()).hexdigest()}"\n')
    return path


def _channel(address: str, token: Optional[str]) -> grpc.Channel:
    return open_channel(address, Credentials(token=token)) if token else grpc.insecure_channel(address)


def _adversary(address: str, n: int, smc: int, stop: threading.Event,
               ready: threading.Event, token: Optional[str] = None) -> None:
    with _channel(address, token) as channel:
        kvm = Kvm(channel, timeout=600)
        vm = kvm.create_vm()
        vm.set_user_memory_region(0, RAM_BASE, 0x1_0000)
        vm.write_memory(RAM_BASE, words([_j(0)]))
        vm.write_memory(RAM_BASE + 0x1000, words(self_modifying_loop(RAM_BASE + 0x1000)))
        vcpus = []
        for i in range(n):
            vcpu = vm.create_vcpu(i)
            vcpu.set_reg("core pc", RAM_BASE + (0x1000 if i < smc else 0))
            vcpus.append(vcpu)
        ready.set()

        def kick_all() -> None:
            stop.wait()
            for vcpu in vcpus:
                try:
                    vcpu.kick()
                except KvmError:
                    pass
        threading.Thread(target=kick_all, daemon=True).start()
        while not stop.is_set():
            vm.run_many(vcpus)  # no budget: until the kicks
        vm.destroy()


def _percentile(values: List[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def _measure(address: str, seconds: float, token: Optional[str] = None) -> Dict[str, float]:
    with _channel(address, token) as channel:
        kvm = Kvm(channel, timeout=120)
        health = health_pb2_grpc.HealthStub(channel)
        hello: List[float] = []
        onereg: List[float] = []
        checks: List[float] = []
        vm, vcpu = echo_vm(kvm, 0)
        end = time.monotonic() + seconds
        while time.monotonic() < end or len(hello) < 3:
            t0 = time.perf_counter()
            _hello(kvm, None, {})
            hello.append(time.perf_counter() - t0)
            for _ in range(50):
                t0 = time.perf_counter()
                vcpu.get_reg("core pc")
                onereg.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            health.Check(health_pb2.HealthCheckRequest(service=""), timeout=30)
            checks.append(time.perf_counter() - t0)
        vm.destroy()
    return {"hello p50": statistics.median(hello), "hello max": max(hello),
            "ONE_REG p50": statistics.median(onereg), "ONE_REG p99": _percentile(onereg, 0.99),
            "health max": max(checks), "hello runs": len(hello)}


def cmd_fair(args: argparse.Namespace) -> None:
    smc = args.adversaries // 2 if args.smc is None else min(args.smc, args.adversaries)
    tenants = _tenants_file() if args.tenants else None
    server = _server(args.server_src, ["--tenants", tenants] if tenants else None)
    probe = TENANT_TOKENS["probe"] if tenants else None
    try:
        quiet = _measure(server.address, args.seconds, probe)
        stop, ready = threading.Event(), threading.Event()
        adversary = threading.Thread(target=_adversary, args=(
            server.address, args.adversaries, smc, stop, ready,
            TENANT_TOKENS["adversary"] if tenants else None))
        adversary.start()
        ready.wait(60)
        time.sleep(1.0)
        try:
            busy = _measure(server.address, args.seconds, probe)
        finally:
            stop.set()
            adversary.join(120)
    finally:
        server.stop()
        if tenants:
            os.unlink(tenants)
    print(f"another client's latencies, without and with {args.adversaries} adversary vCPUs "
          f"({args.adversaries - smc} `j .`, {smc} storing into their own code, one RunMany"
          f"{', of another tenant' if tenants else ', same tenant'}):")
    print(f"  {'':12} {'quiet':>10} {'busy':>10}")
    for key in quiet:
        unit = "" if key == "hello runs" else " ms"
        scale = 1 if key == "hello runs" else 1000
        print(f"  {key:12} {quiet[key] * scale:>8.1f}{unit:3} {busy[key] * scale:>8.1f}{unit}")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.service")
    parser.add_argument("--server-src", help="run the server from this checkout")
    sub = parser.add_subparsers(dest="cmd", required=True)
    exits = sub.add_parser("exits", help="lost exits under short deadlines")
    exits.add_argument("--trials", type=int, default=25)
    exits.add_argument("--runs", type=int, default=1000)
    exits.add_argument("--no-seq", action="store_true", help="send no Completion.exit_seq")
    fair = sub.add_parser("fair", help="latency under adversarial guests")
    fair.add_argument("--adversaries", type=int, default=40)
    fair.add_argument("--seconds", type=float, default=5.0)
    fair.add_argument("--smc", type=int, help="adversaries storing into their own code "
                      "(default: half)")
    fair.add_argument("--tenants", action="store_true",
                      help="the adversary and the measured client are two tenants")
    args = parser.parse_args(argv)
    {"exits": cmd_exits, "fair": cmd_fair}[args.cmd](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

