"""``rvkvm-server`` / ``python -m rvkvm.server``: run the rvkvm gRPC service.

Every failure is one line on stderr and a non-zero status: 2 for bad
options (``--listen`` syntax, host extensions), 1 when the address cannot
be bound (already in use, by another rvkvm-server too: the port is never
shared) or for an unexpected error (``--debug`` or ``RVKVM_DEBUG=1`` adds
its traceback); 130 after Ctrl-C, 0 after SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import re
import signal
import socket
import sys
import threading
from fractions import Fraction
from typing import List, Optional

import structlog

from rvkvm.emulator.cmdline import EXIT_INTERRUPTED, debug_wanted, guarded, version
from rvkvm.emulator.hart import ENGINES

from .kvm import HostProfile
from .kvm.clock import GuestClock, parse_clock
from .rpc import ServerConfig, create_server, settings
from .rpc.app import is_loopback
from .rpc.heap import freeze_startup_heap
from .rpc.tenants import Tenants, TenantsError, parse_size

PROG = "rvkvm-server"
EXIT_USAGE = 2
MAX_ACCEPT_LOOPS = 256  # per method: each is a task and a call request in the core
ENGINE_ALIASES = {"interp": "reference"}  # the spelling of older releases
# After the drain, the calls still in flight (short ones: Runs ended at the
# drain) get this long to finish before they are cancelled; a loaded server
# may take more than half a second to answer one.
STOP_GRACE = 5.0


class ListenError(Exception):
    """The address cannot be bound; the message says why in one line."""


def listen_address(text: str) -> str:
    """An argparse type: ``host:port`` or ``[v6addr]:port`` with a port in
    0..65535 (0: any free port)."""
    match = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})", text.strip())
    if not match or int(match.group(2)) > 65535:
        raise argparse.ArgumentTypeError(
            f"not a host:port address: {text!r} (e.g. 127.0.0.1:50051, [::1]:0)")
    return text.strip()


def engine_name(text: str) -> str:
    """An argparse type: an engine of ``ENGINES`` (``interp``: deprecated
    alias of ``reference``)."""
    if text in ENGINE_ALIASES:
        print(f"{PROG}: warning: --engine {text} is deprecated, use "
              f"--engine {ENGINE_ALIASES[text]}", file=sys.stderr)
        return ENGINE_ALIASES[text]
    if text not in ENGINES:
        raise argparse.ArgumentTypeError(
            f"invalid choice: {text!r} (choose from {', '.join(ENGINES)})")
    return text


def _parse(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG,
                                     description="Serve a virtual RISC-V KVM host over gRPC.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    parser.add_argument("--listen", default="127.0.0.1:50051", type=listen_address,
                        help="host:port to listen on (port 0: any free port); a port in use, "
                             "by another rvkvm-server too, is refused")
    parser.add_argument("--engine", type=engine_name, default="fast", metavar="{fast,reference}",
                        help="emulator engine of the harts: the block translator (fast) or "
                             "the reference interpreter, as in `python -m rvkvm.emulator run`")
    parser.add_argument("--max-vms", type=int, default=0, help="VMs at once (0: no limit)")
    parser.add_argument("--host-plus", default="", metavar="EXT,...",
                        help="add host ISA extensions or capabilities (e.g. v,ssaia)")
    parser.add_argument("--host-minus", default="", metavar="EXT,...",
                        help="remove host ISA extensions or capabilities (e.g. ssnpm)")
    parser.add_argument("--inline-slice", type=int, default=ServerConfig.inline_slice,
                        metavar="N", help="instructions a Run tries on the event loop after "
                        "a guest exit before using a run thread (0: never)")
    parser.add_argument("--log-level", default="info",
                        choices=("debug", "info", "warning", "error"))
    parser.add_argument("--json-logs", action="store_true", help="log JSON lines")
    parser.add_argument("--exit-on-stdin-eof", action="store_true",
                        help="stop when standard input reaches end of file (a parent that "
                             "starts the server with a pipe as its stdin: the server ends "
                             "with the parent, however it ends)")
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of an unexpected error (also RVKVM_DEBUG=1)")
    parser.add_argument("--clock", type=_clock, default=None, metavar="host|tick|NS",
                        help="the guest clock of VMs created without one: 'host' (the "
                             "host's monotonic clock, as KVM; interactive use), 'tick' (one "
                             "timebase tick per instruction, 100 ns at 10 MHz) or NS "
                             "nanoseconds of deterministic guest time per retired instruction "
                             "(a fraction such as 1 or 1/4). Default: 1 ns per instruction "
                             "(QEMU's -icount shift=0): timer work in a guest grows with the "
                             "rate (QEMU, Debian's boot to the shell: 452 M instructions at 1 "
                             "ns, 610 M at 64 ns, 1,650 M at 256 ns)")
    parser.add_argument("--ns-per-insn", type=_ns_per_insn, default=None, metavar="NS",
                        help="the same as --clock NS")
    parser.add_argument("--grace", type=float, default=30.0, metavar="SECONDS",
                        help="on SIGTERM, keep VM state readable this long (or until "
                             "the clients are gone) before exiting")
    _tenancy_arguments(parser)
    _worker_arguments(parser)
    _run_arguments(parser)
    return settings.parse(parser, argv)


def _worker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=_workers, default=os.cpu_count() or 1, metavar="N",
                        help="worker processes running the vCPUs (default: the number of "
                             "cores; 0: all in the server's own process)")
    parser.add_argument("--worker-python", default="", metavar="PATH",
                        help="interpreter of the workers, any Python >= 3.9 (default: pypy3 "
                             "from PATH if present, else this Python)")
    parser.add_argument("--worker-timeout", type=float, default=ServerConfig.worker_timeout,
                        metavar="SECONDS", help="a worker that does not answer a heartbeat "
                        "this long is killed and replaced (its VMs are lost)")


def _loops(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of accept loops: {text!r}") from None
    if not 0 <= value <= MAX_ACCEPT_LOOPS:
        raise argparse.ArgumentTypeError(f"must be 0..{MAX_ACCEPT_LOOPS}, not {value}")
    return value


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of workers: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {value}")
    return value


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    """How vCPU slices share the process (ServerConfig's run fields)."""
    parser.add_argument("--run-threads", type=int, default=ServerConfig.run_threads,
                        metavar="N", help="threads running vCPU slices (slices are pure "
                        f"Python: more than one only adds lock contention; {ServerConfig.run_threads})")
    parser.add_argument("--run-slice", type=int, default=ServerConfig.run_slice, metavar="N",
                        help="instructions per vCPU slice (default: 200,000 in-process, "
                        "20,000,000 in a worker, where its wall time ends it first)")
    parser.add_argument("--slice-ms", type=float, default=ServerConfig.slice_time * 1000,
                        metavar="MS", help="wall time per vCPU slice in milliseconds "
                        f"({ServerConfig.slice_time * 1000:g})")
    parser.add_argument("--switch-interval-ms", type=float,
                        default=ServerConfig.switch_interval * 1000, metavar="MS",
                        help="sys.setswitchinterval of the server process in milliseconds "
                        f"(0: leave Python's; {ServerConfig.switch_interval * 1000:g})")
    parser.add_argument("--accept-loops", type=_loops, default=ServerConfig.accept_loops,
                        metavar="N", help="call requests each method keeps waiting in grpc's "
                        "core beside grpc's own, so that quick calls are not held there "
                        f"behind others ({ServerConfig.accept_loops}; 0: grpc's alone)")
    parser.add_argument("--run-accept-loops", type=_loops, default=ServerConfig.run_accept_loops,
                        metavar="N", help="the same for Run, RunStream and RunMany: Runs "
                        "beyond what the vCPU slices can take wait in grpc's core "
                        f"({ServerConfig.run_accept_loops})")


def _tenancy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-format", choices=("json", "console"), default="json",
                        help="log lines on stderr: JSON (one object a line) or console")
    parser.add_argument("--tenants", metavar="FILE",
                        help="TOML file of tenants (bearer token SHA-256, client_cn, quotas); "
                             "without it the server is open (tenant 'default') and listens "
                             "on loopback only")
    parser.add_argument("--insecure-open", action="store_true",
                        help="allow an open server (no tenants file) on a non-loopback address")
    parser.add_argument("--tls-cert", metavar="PEM", help="TLS certificate chain of the server")
    parser.add_argument("--tls-key", metavar="PEM", help="TLS private key of the server")
    parser.add_argument("--tls-client-ca", metavar="PEM",
                        help="require client certificates signed by this CA (mTLS); a "
                             "certificate whose CN is a tenant's client_cn authenticates it")
    parser.add_argument("--lease", type=float, default=600.0, metavar="SECONDS",
                        help="destroy a VM no call has used for this long (0: never; 600)")
    parser.add_argument("--max-memory", type=parse_size, default=None, metavar="SIZE",
                        help="guest memory of all VMs together, e.g. 16G (default: the "
                             "host's physical memory; 0: no limit)")
    parser.add_argument("--metrics-listen", default="", metavar="ADDR",
                        help="host:port serving Prometheus metrics at /metrics")


def _configure_logging(level: str, json_logs: bool) -> None:
    renderer = (structlog.processors.JSONRenderer() if json_logs
                else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars,
                    structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso", utc=True),
                    structlog.processors.format_exc_info, renderer],
        # stderr: stdout carries the "listening on" line scripts wait for
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelName(level.upper())),
        # a logger is built once, not on every call through its proxy (the
        # per-RPC log line: once per call, also when its level is filtered out)
        cache_logger_on_first_use=True,
    )


def _bind_failure(listen: str) -> Optional[str]:
    """Why ``listen`` cannot be bound, from a plain socket's errno (None:
    it can). Options as gRPC's: SO_REUSEADDR, never SO_REUSEPORT."""
    host, port = listen.rsplit(":", 1)
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        return f"cannot resolve {host!r}: {err.strerror}"
    failures = []
    for family, kind, proto, _, sockaddr in infos:
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(sockaddr)
        except OSError as err:
            failures.append(err)
    # gRPC listens if any address binds, but refuses a port in use on any.
    in_use = [err for err in failures if err.errno == errno.EADDRINUSE]
    if in_use or (failures and len(failures) == len(infos)):
        first = (in_use or failures)[0]
        return f"{errno.errorcode.get(first.errno or 0, str(first.errno))} ({first.strerror})"
    return None


def _watch_parent(stop: asyncio.Event, loop: asyncio.AbstractEventLoop) -> None:
    """End the server with the process that started it: stdin is a pipe
    from the parent, which closes however the parent ends (SIGKILL too)."""

    def wait_eof() -> None:
        with os.fdopen(sys.stdin.fileno(), "rb", buffering=0, closefd=False) as stdin:
            while stdin.read(4096):
                pass
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait_eof, name="rvkvm-parent-watch", daemon=True).start()


async def serve(listen: str, config: ServerConfig, exit_on_stdin_eof: bool = False,
                grace: float = 30.0) -> int:
    """Serve until SIGINT (status 130), SIGTERM (a drain of up to ``grace``
    seconds first, status 0) or, with ``exit_on_stdin_eof``, the end of
    stdin (status 0)."""
    # Checked first so that a port in use is one line, not gRPC's log lines too.
    reason = _bind_failure(listen)
    if reason is not None:
        raise ListenError(f"cannot listen on {listen}: {reason}")
    try:
        server, port = await create_server(listen, config)
    except OSError as err:
        raise ListenError(f"cannot listen on {listen}: {_bind_failure(listen) or err}") from err
    await server.start()
    # everything loaded: later full collections need not walk it (rpc.heap)
    frozen = freeze_startup_heap()
    structlog.get_logger("rvkvm.server").debug("startup heap frozen", objects=frozen)
    host = listen.rsplit(":", 1)[0]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    interrupted = asyncio.Event()

    def on_sigint() -> None:
        interrupted.set()
        stop.set()

    terminated = asyncio.Event()

    def on_sigterm() -> None:
        terminated.set()
        stop.set()

    loop.add_signal_handler(signal.SIGINT, on_sigint)
    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    if exit_on_stdin_eof:
        _watch_parent(stop, loop)
    # The port line is what scripts (and `rvkvm run` without --server) wait for.
    print(f"rvkvm-server listening on {host}:{port}", flush=True)
    await stop.wait()
    if terminated.is_set():
        structlog.get_logger("rvkvm.server").info("draining", grace=grace)
        await server.drain(grace)
    await server.stop(grace=STOP_GRACE)
    return EXIT_INTERRUPTED if interrupted.is_set() else 0


def _clock(text: str) -> GuestClock:
    try:
        return parse_clock(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _ns_per_insn(text: str) -> Fraction:
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"not a number of nanoseconds: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def _host(plus: str, minus: str) -> HostProfile:
    """The default host with the listed extensions added and removed."""
    host = HostProfile.default()
    names = [n.strip().lower() for n in plus.split(",") if n.strip()]
    if names:
        host = host.plus(*names)
    names = [n.strip().lower() for n in minus.split(",") if n.strip()]
    if names:
        host = host.without(*names)
    return host


def main(argv: Optional[List[str]] = None) -> int:
    args = _parse(argv)
    _configure_logging(args.log_level, args.json_logs or args.log_format == "json")
    try:
        host = _host(args.host_plus, args.host_minus)
    except ValueError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return EXIT_USAGE
    config = ServerConfig(host=host, engine=args.engine, max_vms=args.max_vms,
                          inline_slice=args.inline_slice, ns_per_insn=args.ns_per_insn,
                          clock=args.clock, workers=args.workers,
                          worker_python=args.worker_python, worker_timeout=args.worker_timeout,
                          run_threads=args.run_threads, run_slice=args.run_slice,
                          slice_time=args.slice_ms / 1000,
                          switch_interval=args.switch_interval_ms / 1000,
                          accept_loops=args.accept_loops,
                          run_accept_loops=args.run_accept_loops)
    try:
        _tenancy_config(args, config)
    except (TenantsError, ValueError) as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return EXIT_USAGE
    if config.tenants is None and not config.insecure_open and not is_loopback(args.listen):
        # before anything binds: an open server never listens beyond loopback
        print(f"{PROG}: refusing to listen on {args.listen} without a tenants file: anyone "
              "who can reach it could use every VM (give --tenants FILE, or --insecure-open "
              "to do it anyway)", file=sys.stderr)
        return 1

    def run() -> int:
        try:
            return asyncio.run(serve(args.listen, config, args.exit_on_stdin_eof, args.grace))
        except ListenError as err:
            if debug_wanted(args.debug):
                raise
            print(f"{PROG}: {err}", file=sys.stderr)
            return 1

    return guarded(PROG, run, args.debug)


def _tenancy_config(args: argparse.Namespace, config: ServerConfig) -> None:
    """Tenants, TLS, leases, memory ceiling and metrics from the arguments."""
    config.tenants = Tenants.load(args.tenants) if args.tenants else None
    config.insecure_open = args.insecure_open
    config.tls_cert, config.tls_key = args.tls_cert, args.tls_key
    config.tls_client_ca = args.tls_client_ca
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ValueError("--tls-cert and --tls-key go together")
    if args.tls_client_ca and not args.tls_cert:
        raise ValueError("--tls-client-ca needs --tls-cert and --tls-key")
    if args.lease < 0:
        raise ValueError("--lease must be >= 0")
    config.lease = args.lease
    config.max_memory = args.max_memory
    config.metrics_listen = args.metrics_listen


if __name__ == "__main__":
    raise SystemExit(main())
