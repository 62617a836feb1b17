"""Load test of one rvkvm server: N client processes x M VMs for S seconds.

    python -m bench.load [--clients 16] [--vms 64] [--seconds 60] [--server ADDR]

Not part of the test suite; loopback only; bounded in time (the server and
every client stop by ``--seconds`` plus a grace of a few seconds). Unless
``--server`` names one, it starts ``python -m rvkvm.server`` on a free
loopback port with a tenants file of two tenants (``load-a``, ``load-b``;
client processes alternate between them) and ``--lease 0``.

Each client process opens one channel and, with one thread each:
- ``run``: every one of its M VMs (64 KiB RAM, one vCPU) runs an endless
  ALU loop, one ``Run{budget}`` after another (ops: Runs returned);
- ``onereg``: ``--onereg-threads`` threads issue ``GetOneReg`` (``core a0``)
  round robin over its running vCPUs (ops: registers read);
- ``hello``: boots the bundled hello guest (SBI DBCN console, SRST
  shutdown) in a fresh VM, again and again (ops: guests that shut down
  cleanly; its latency is the whole boot-to-shutdown; one that does not
  shut down within ``HELLO_TIMEOUT`` counts ``hello:TIMEOUT``, one that
  ends with another exit ``hello:EXIT_<class>``).
Two probe processes measure the server's answer time without a client's
interpreter lock in it: one reads ``core a0`` of the clients' running
vCPUs with ``--probe-threads`` threads, one runs a health check every
``HEALTH_PERIOD`` s. The parent samples the server's resident memory
(``/proc/PID/status``) and times a gRPC health check every 0.5 s. It prints
ops/s and latency percentiles per kind (in-client and probe figures side
by side), errors by status code, and the server's memory; for a server it
started (with ``--metrics-listen``), also the server's own view from its
metrics over the same time: its handling time of GetOneReg and Run, and
how late its event loop ran (``rvkvm_event_loop_lag_seconds``), so that
time spent in the front end's queue shows apart from time in the clients.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import io
import multiprocessing as mp
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

RAM_BASE = 0x8000_0000
LOOP = [0x00128293, 0xFFDFF06F]  # addi t0, t0, 1 ; j -4
TENANTS = ("load-a", "load-b")
# Seconds a hello boot may take before the bench kicks it and counts
# hello:TIMEOUT (p50 is about 5 s under 16 x 64 on 2 cores).
HELLO_TIMEOUT = 60.0
# Seconds between the health probe's checks (per probe thread).
HEALTH_PERIOD = 0.05


def _token(tenant: str) -> str:
    return f"bench-token-{tenant}"


def _tenants_file() -> str:
    fd, path = tempfile.mkstemp(prefix="rvkvm-load-", suffix=".toml")
    with os.fdopen(fd, "w") as f:
        for name in TENANTS:
            digest = hashlib.sha256(_token(name).encode()).hexdigest()
            f.write(f'[tenants.{name}]\ntoken_sha256 = "{digest}"\n\n')
    return path


# -- a client process ----------------------------------------------------------

class _Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: Dict[str, List[float]] = collections.defaultdict(list)
        self.errors: Dict[str, int] = collections.Counter()
        self.examples: Dict[str, str] = {}
        self.counts: Dict[str, int] = collections.Counter()

    def ok(self, kind: str, seconds: float) -> None:
        with self.lock:
            self.latencies[kind].append(seconds)

    def error(self, kind: str, err: BaseException) -> None:
        code = getattr(err, "code", None)
        name = getattr(code, "name", None) or type(err).__name__
        self.fail(kind, name, str(err))

    def fail(self, kind: str, name: str, example: str) -> None:
        with self.lock:
            self.errors[f"{kind}:{name}"] += 1
            self.examples.setdefault(f"{kind}:{name}", example[:300])

    def count(self, name: str) -> None:
        with self.lock:
            self.counts[name] += 1


def _hello_reason(result: Any) -> str:
    """Why a hello boot ended without a clean shutdown: TIMEOUT (the
    bench's own bound, ``HELLO_TIMEOUT``) or the exit's class name."""
    if result.timed_out:
        return "TIMEOUT"
    return "EXIT_" + type(result.exit).__name__


def _onereg_probe(stats: _Stats, vcpus: List[Any], first: int, step: int,
                  until: float) -> None:
    """GetOneReg of ``core a0`` round the vCPUs (every ``step``-th from
    ``first``) until ``time.monotonic()`` passes ``until``, timed."""
    from rvkvm.client import KvmError

    i = first
    while time.monotonic() < until and vcpus:
        vcpu = vcpus[i % len(vcpus)]
        i += step
        t = time.perf_counter()
        try:
            vcpu.get_reg("core a0")
            stats.ok("onereg", time.perf_counter() - t)
        except KvmError as err:
            stats.error("onereg", err)


def _client(index: int, address: str, token: Optional[str], vms: int, seconds: float,
            budget: int, onereg_threads: int, start_at: float, out: Any,
            nice: int = 0, ready: Any = None) -> None:
    if nice:
        os.nice(nice)
    import grpc  # noqa: F401 (imported in the child)

    from rvkvm.client import Kvm, KvmError
    from rvkvm.client.channels import Credentials, open_channel
    from rvkvm.client.cli import HELLO_GUEST
    from rvkvm.client.vmm import Vmm

    stats = _Stats()
    channel = open_channel(address, Credentials(token=token))
    kvm = Kvm(channel, timeout=seconds + 60)
    vcpus = []
    machines = []
    try:
        for _ in range(vms):
            vm = kvm.create_vm()
            machines.append(vm)
            vm.set_user_memory_region(0, RAM_BASE, 64 << 10)
            vcpu = vm.create_vcpu(0)
            vm.write_memory(RAM_BASE, b"".join(w.to_bytes(4, "little") for w in LOOP))
            vcpu.set_reg("core pc", RAM_BASE)
            vcpus.append(vcpu)
    except KvmError as err:
        stats.error("setup", err)
    if ready is not None:  # the probe processes read these vCPUs' registers too
        ready.put((index, token, [vcpu.vm.id for vcpu in vcpus]))
    while time.time() < start_at:
        time.sleep(0.01)
    deadline = time.monotonic() + seconds
    cpu_start = time.process_time()

    def runner(vcpu: Any) -> None:
        while time.monotonic() < deadline:
            t = time.perf_counter()
            try:
                vcpu.run(budget=budget)
                stats.ok("run", time.perf_counter() - t)
            except KvmError as err:
                stats.error("run", err)

    def onereg(k: int) -> None:
        _onereg_probe(stats, vcpus, k, onereg_threads, deadline)

    def hello() -> None:
        while time.monotonic() < deadline:
            t = time.perf_counter()
            # what the bench gave a boot before: the time left plus 5 s
            old_bound = max(1.0, deadline - time.monotonic() + 5)
            try:
                vmm = Vmm(kvm, ram_size=4 << 20, console=io.BytesIO())
                try:
                    vmm.boot(vmm.load_elf(HELLO_GUEST), vmm.place_dtb(vmm.device_tree()))
                    # a fixed bound, not the time left: a boot started near the
                    # end still gets HELLO_TIMEOUT (the load ends, it finishes)
                    result = vmm.run(timeout=HELLO_TIMEOUT)
                finally:
                    vmm.close()
                took = time.perf_counter() - t
                if result.clean_shutdown:
                    stats.ok("hello", took)
                    if time.monotonic() > deadline:
                        stats.count("hello_after_end")
                    if took > old_bound:  # counted hello:NO_SHUTDOWN before
                        stats.count("hello_past_old_bound")
                else:
                    stats.fail("hello", _hello_reason(result),
                               f"{result.exit!r} after {took:.1f} s")
            except KvmError as err:
                stats.error("hello", err)

    threads = ([threading.Thread(target=runner, args=(v,)) for v in vcpus]
               + [threading.Thread(target=onereg, args=(k,)) for k in range(onereg_threads)]
               + [threading.Thread(target=hello)])
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    cpu = time.process_time() - cpu_start
    for vm in machines:
        try:
            vm.destroy()
        except KvmError as err:
            stats.error("destroy", err)
    channel.close()
    out.put((index, dict(stats.latencies), dict(stats.errors), stats.examples, cpu,
             dict(stats.counts)))


# -- the probe processes -----------------------------------------------------------

def _probe(kind: str, address: str, targets: List[Tuple[Optional[str], str]], threads: int,
           start_at: float, end_at: float, out: Any) -> None:
    """Measures the server's answer time from a process of its own (a few
    threads, no run traffic, so no client interpreter lock in the figure):
    ``onereg``: ``GetOneReg`` (``core a0``) round robin over ``targets``
    ((token, vm_id) of the clients' running vCPUs); ``health``: a gRPC
    health check every ``HEALTH_PERIOD`` s per thread."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from rvkvm.client import Kvm
    from rvkvm.client.channels import Credentials, open_channel

    stats = _Stats()
    channels: Dict[Optional[str], Any] = {}
    vcpus = []
    for token, vm_id in targets:
        if token not in channels:
            channels[token] = open_channel(address, Credentials(token=token))
        vcpus.append(Kvm(channels[token], timeout=30).vm(vm_id).vcpu(0))
    health_channel = grpc.insecure_channel(address)
    stub = health_pb2_grpc.HealthStub(health_channel)
    while time.time() < start_at:
        time.sleep(0.01)
    end = time.monotonic() + max(0.0, end_at - time.time())
    cpu_start = time.process_time()

    def onereg(k: int) -> None:
        _onereg_probe(stats, vcpus, k, threads, end)

    def health() -> None:
        while time.monotonic() < end:
            t = time.perf_counter()
            try:
                stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
                stats.ok("health", time.perf_counter() - t)
            except grpc.RpcError as err:
                stats.fail("health", err.code().name, str(err.details()))
            time.sleep(HEALTH_PERIOD)

    body = onereg if kind == "onereg" else health
    pool = [threading.Thread(target=body, args=(k,) if kind == "onereg" else ())
            for k in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    cpu = time.process_time() - cpu_start
    for channel in [health_channel, *channels.values()]:
        channel.close()
    out.put((kind, dict(stats.latencies), dict(stats.errors), stats.examples, cpu))


# -- the parent ------------------------------------------------------------------

def _rss(pid: int) -> Tuple[int, int]:
    """VmRSS and VmHWM of ``pid`` in bytes (0, 0 if unreadable)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            text = f.read()
    except OSError:
        return 0, 0
    values = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", text, re.M))
    return int(values.get("VmRSS", 0)) << 10, int(values.get("VmHWM", 0)) << 10


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` (0 if unreadable)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> List[int]:
    """The server's worker processes (its children)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(name))
            except (OSError, IndexError, ValueError):
                continue
    return found


def _percentiles(values: List[float]) -> str:
    if not values:
        return "-"
    values = sorted(values)

    def p(q: float) -> float:
        return values[min(len(values) - 1, int(q * len(values)))] * 1000
    return (f"p50 {p(0.50):8.1f}  p90 {p(0.90):8.1f}  p99 {p(0.99):8.1f}  "
            f"max {values[-1] * 1000:8.1f} ms")


def _free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


Buckets = Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]


def _scrape(port: int) -> Buckets:
    """The server's histogram buckets and counts: (sample name, labels) -> value
    (empty if it does not answer)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            text = r.read().decode()
    except OSError:
        return {}
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name.endswith(("_bucket", "_count"))}


def _quantiles(before: Buckets, after: Buckets, name: str,
               labels: Dict[str, str]) -> Optional[Tuple[float, float, int]]:
    """(p50, p99, count) in ms of histogram ``name`` with ``labels``
    between two scrapes, interpolated within buckets as Prometheus's
    histogram_quantile does; None if it has no samples then."""
    want = set(labels.items())
    cumulative = []
    for (sample, lab), value in after.items():
        if sample != name + "_bucket" or not want <= set(lab):
            continue
        le = dict(lab)["le"]
        bound = float("inf") if le in ("+Inf", "inf") else float(le)
        cumulative.append((bound, value - before.get((sample, lab), 0.0)))
    cumulative.sort()
    if not cumulative or cumulative[-1][1] <= 0:
        return None
    total = cumulative[-1][1]

    def q(fraction: float) -> float:
        rank, lower, below = fraction * total, 0.0, 0.0
        for bound, count in cumulative:
            if count >= rank:
                if bound == float("inf"):
                    return lower * 1000
                inside = count - below
                return (lower + (bound - lower) * ((rank - below) / inside if inside else 1)) * 1000
            lower, below = bound, count
        return lower * 1000
    return q(0.5), q(0.99), int(total)


def _server_side(before: Buckets, after: Buckets) -> List[str]:
    """Lines of the server's own view: its handling time of GetOneReg, Run
    and health, how late its event loop ran (rvkvm_event_loop_lag_seconds) and
    its full garbage collections (rvkvm_gc_pause_seconds, generation 2)."""
    lines = []
    for title, name, labels in (
            ("GetOneReg", "grpc_server_handling_seconds", {"grpc_method": "GetOneReg"}),
            ("Run", "grpc_server_handling_seconds", {"grpc_method": "Run"}),
            ("loop lag", "rvkvm_event_loop_lag_seconds", {}),
            ("full GC", "rvkvm_gc_pause_seconds", {"generation": "2"})):
        got = _quantiles(before, after, name, labels)
        if got is not None:
            lines.append(f"  {title:<12} p50 {got[0]:8.1f}  p99 {got[1]:8.1f} ms "
                         f"({got[2]} samples)")
    return lines


def _start_server(tenants: str, log: Optional[str], extra: List[str],
                  src: Optional[str] = None) -> Tuple[subprocess.Popen, str]:
    stderr = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115
    env = dict(os.environ)
    if src:
        from .server import source_tree
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (source_tree(src), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.Popen(
        [sys.executable, "-m", "rvkvm.server", "--listen", "127.0.0.1:0", "--log-level",
         "info" if log else "warning", "--tenants", tenants, "--lease", "0", *extra],
        stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"listening on (\S+)", line)
    if not match:
        proc.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return proc, match.group(1)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=16, help="client processes (16)")
    ap.add_argument("--vms", type=int, default=64, help="VMs per client process (64)")
    ap.add_argument("--seconds", type=float, default=60.0, help="duration (60)")
    ap.add_argument("--budget", type=int, default=100_000, help="instructions per Run")
    ap.add_argument("--onereg-threads", type=int, default=2,
                    help="GetOneReg threads per client process (2)")
    ap.add_argument("--client-nice", type=int, default=0, metavar="N",
                    help="run the client processes at nice N (0): on a small machine their "
                         "thousand threads otherwise take the CPU the server is measured on")
    ap.add_argument("--server", metavar="ADDR",
                    help="a running loopback server (default: start one)")
    ap.add_argument("--server-pid", type=int, help="its pid, to report its memory")
    ap.add_argument("--server-src", metavar="DIR",
                    help="start the server of another checkout (before/after figures)")
    ap.add_argument("--token", help="bearer token for --server")
    ap.add_argument("--server-log", metavar="FILE",
                    help="the started server's JSON log lines (info level) to FILE")
    ap.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                    help="an argument for the started server, e.g. --server-arg=--run-threads=1 "
                         "(repeatable)")
    ap.add_argument("--probe-threads", type=int, default=2,
                    help="threads of the GetOneReg probe process, which reads the clients' "
                         "running vCPUs from a process of its own (2; 0: no probe processes)")
    args = ap.parse_args(argv)
    if args.server and not re.match(r"^(127\.\d+\.\d+\.\d+|localhost|\[::1\]):\d+$",
                                    args.server):
        ap.error("--server must be a loopback address")

    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    load_start = os.getloadavg()[0]
    tenants_path = None
    proc = None
    metrics_port = 0  # the started server's /metrics (0: none)
    scraped: Dict[str, Buckets] = {}
    if args.server:
        address, pid = args.server, args.server_pid
        tokens = [args.token]
    else:
        tenants_path = _tenants_file()
        metrics_port = _free_port()
        proc, address = _start_server(
            tenants_path, args.server_log,
            [f"--metrics-listen=127.0.0.1:{metrics_port}", *args.server_arg], args.server_src)
        pid = proc.pid
        tokens = [_token(t) for t in TENANTS]
    rss_start = _rss(pid)[0] if pid else 0
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    ready = ctx.Queue()
    probe_out = ctx.Queue()
    setup_allowance = 2.0 + 0.05 * args.vms * args.clients  # creating the VMs
    start_at = time.time() + setup_allowance
    workers = [ctx.Process(target=_client, args=(
        i, address, tokens[i % len(tokens)], args.vms, args.seconds, args.budget,
        args.onereg_threads, start_at, out, args.client_nice, ready))
        for i in range(args.clients)]
    for w in workers:
        w.start()
    probes: List[Any] = []
    if args.probe_threads > 0:
        targets: List[Tuple[Optional[str], str]] = []
        for _ in workers:  # every client's vCPUs, once its VMs exist
            _, token, vm_ids = ready.get(timeout=setup_allowance + args.seconds)
            targets.extend((token, vm_id) for vm_id in vm_ids)
        probes = [ctx.Process(target=_probe, args=(
            kind, address, targets, threads, start_at, start_at + args.seconds, probe_out))
            for kind, threads in (("onereg", args.probe_threads), ("health", 1))]
        for p in probes:
            p.start()
    health: List[float] = []
    health_errors: Dict[str, int] = collections.Counter()
    peak_rss = 0
    server_cpu = workers_cpu = workers_at_start = 0.0
    worker_pids: List[int] = []
    results = []
    probe_results: List[Any] = []
    try:
        with grpc.insecure_channel(address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            end = start_at + args.seconds
            cpu_at_start: Optional[float] = None
            while time.time() < end + 1:
                if pid and cpu_at_start is None and time.time() >= start_at:
                    cpu_at_start = _cpu_seconds(pid)
                    if metrics_port:
                        scraped["start"] = _scrape(metrics_port)
                if pid:
                    peak_rss = max(peak_rss, _rss(pid)[0])
                if time.time() >= start_at:
                    t = time.perf_counter()
                    try:
                        stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
                        health.append(time.perf_counter() - t)
                    except grpc.RpcError as err:
                        health_errors[err.code().name] += 1
                time.sleep(0.5)
                if pid and time.time() >= start_at and not worker_pids:
                    worker_pids = _children(pid)
                    workers_at_start = sum(_cpu_seconds(p) for p in worker_pids)
            if metrics_port and "start" in scraped:
                scraped["end"] = _scrape(metrics_port)
            if pid and cpu_at_start is not None:
                server_cpu = _cpu_seconds(pid) - cpu_at_start
                workers_cpu = sum(_cpu_seconds(p) for p in worker_pids) - workers_at_start
        limit = args.seconds + setup_allowance + 120
        for _ in workers:
            results.append(out.get(timeout=limit))
        probe_results = [probe_out.get(timeout=60) for _ in probes]
        for w in [*workers, *probes]:
            w.join(30)
    finally:
        for w in [*workers, *probes]:
            if w.is_alive():
                w.kill()
        rss_end, hwm = _rss(pid) if pid else (0, 0)
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if tenants_path:
            os.unlink(tenants_path)

    latencies: Dict[str, List[float]] = collections.defaultdict(list)
    errors: Dict[str, int] = collections.Counter()
    examples: Dict[str, str] = {}
    counts: Dict[str, int] = collections.Counter()
    clients_cpu = 0.0
    for _, lat, errs, ex, cpu, cnt in results:
        clients_cpu += cpu
        counts.update(cnt)
        for kind, values in lat.items():
            latencies[kind].extend(values)
        errors.update(errs)
        for key, text in ex.items():
            examples.setdefault(key, text)
    print(f"rvkvm load: {args.clients} client processes x {args.vms} VMs, "
          f"{args.seconds:g} s, Run budget {args.budget}, {args.onereg_threads} GetOneReg "
          f"threads per client, server {address} {' '.join(args.server_arg)}"
          f"{' from ' + args.server_src if args.server_src else ''}, "
          f"{os.cpu_count()} CPUs, load average {load_start:.1f} at start")
    probe_latencies: Dict[str, List[float]] = collections.defaultdict(list)
    probes_cpu = 0.0
    for _, lat, errs, ex, cpu in probe_results:
        probes_cpu += cpu
        for kind, values in lat.items():
            probe_latencies[kind].extend(values)
        errors.update({f"probe-{k}": v for k, v in errs.items()})
        for key, text in ex.items():
            examples.setdefault(f"probe-{key}", text)
    print(f"{'kind':<14} {'ops':>9} {'ops/s':>9}  latency")
    rows = [("run", latencies.get("run", [])),
            ("onereg", latencies.get("onereg", [])),
            ("hello", latencies.get("hello", []))]
    if probe_results:
        rows.append(("onereg probe", probe_latencies.get("onereg", [])))
    for kind, values in rows:
        print(f"{kind:<14} {len(values):>9} {len(values) / args.seconds:>9.1f}  "
              f"{_percentiles(values)}")
    print(f"{'health':<14} {len(health):>9} {'':>9}  {_percentiles(health)}")
    if probe_results:
        values = probe_latencies.get("health", [])
        print(f"{'health probe':<14} {len(values):>9} {'':>9}  {_percentiles(values)}")
        print("  (onereg: in each client process beside its run threads; onereg probe: "
              f"{args.probe_threads} threads in a process of its own; health: the parent "
              f"every 0.5 s; health probe: its own process every {HEALTH_PERIOD} s)")
    if latencies.get("hello"):
        print(f"  hello boots that finished after the load ended: "
              f"{counts.get('hello_after_end', 0)}; that took longer than the old bound "
              f"(the time left + 5 s, counted hello:NO_SHUTDOWN before): "
              f"{counts.get('hello_past_old_bound', 0)}")
    total_errors = sum(errors.values()) + sum(health_errors.values())
    print(f"errors: {total_errors}" + "".join(
        f"\n  {k}: {v}" for k, v in sorted({**errors, **{f'health:{k}': v for k, v in
                                                         health_errors.items()}}.items())))
    for key, text in sorted(examples.items()):
        print(f"  e.g. {key}: {text}")
    if pid:
        mib = 1 << 20
        print(f"server memory: VmRSS {rss_start / mib:.0f} MiB at start, peak sampled "
              f"{peak_rss / mib:.0f} MiB, VmHWM {hwm / mib:.0f} MiB, "
              f"{rss_end / mib:.0f} MiB at the end")
    print(f"CPU while running: server {server_cpu:.1f} s "
          f"({100 * server_cpu / args.seconds:.0f}% of one core), its {len(worker_pids)} "
          f"workers {workers_cpu:.1f} s, client processes "
          f"{clients_cpu:.1f} s (nice {args.client_nice}), probes {probes_cpu:.1f} s, "
          f"machine load average "
          f"{os.getloadavg()[0]:.1f} at the end")
    if latencies.get("onereg"):
        print(f"ONE_REG mean {statistics.fmean(latencies['onereg']) * 1000:.1f} ms")
    side = _server_side(scraped.get("start", {}), scraped.get("end", {}))
    if side:
        print("the server's own view while running (its metrics, within their buckets):")
        print("\n".join(side))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
