"""The ``rvkvm`` command: run a guest, show the host, list registers.

    rvkvm run GUEST.elf [--server ADDR] [--connect-timeout S] [--ram 256M]
              [--abi PROFILE] [--timeout S]
              [--disable-isa-ext NAME]... [--disable-sbi-ext NAME]...
    rvkvm info [--server ADDR] [--connect-timeout S]
    rvkvm regs [--server ADDR] [--connect-timeout S] [--abi PROFILE]
    rvkvm ps --server ADDR
    rvkvm destroy --server ADDR VM_ID...

``--token`` (or ``$RVKVM_TOKEN``, or ``--token-file``) authenticates to a
server with tenants; ``--tls-ca``, ``--tls-cert``, ``--tls-key`` (or
``$RVKVM_TLS_CA`` ...) use TLS / mTLS.

Without ``--server`` an embedded server (``python -m rvkvm.server``) is started on
a free loopback port for the duration of the command; it exits with its
parent however the parent ends (it watches a pipe from it).

Every failure is one line on stderr (``--debug`` or ``RVKVM_DEBUG=1`` adds
the traceback of an unexpected one). Exit status: 0 a clean guest shutdown
(or a command that worked), 1 a guest failure or an error, 2 a usage error,
3 a guest file that cannot be run, 124 ``--timeout`` ran out, 130 Ctrl-C.

Each subcommand is one ``cmd_*`` function registered with ``add_command``;
``main`` runs it inside ``run_command``, which turns every exception into
that one line.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import selectors
import socket
import subprocess
import sys
import threading
import time
import traceback
from importlib import metadata
from typing import Any, Callable, Iterator, List, Optional

import grpc

from . import boot
from . import exits as X
from .channels import Credentials, open_channel
from .errors import KvmError, errno_name
from .kvm import Kvm
from .vmm import RAM_BASE, GuestImageError, Vmm, read_elf, stop_on_sigint

PROG = "rvkvm"
HELLO_GUEST = os.path.join(os.path.dirname(__file__), "guests", "hello_sbi.elf")
DEFAULT_CONNECT_TIMEOUT = 3.0
SERVER_START_TIMEOUT = 60.0  # an embedded server imports grpc and the emulator first

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_BAD_GUEST = 0, 1, 2, 3
EXIT_TIMEOUT = 124  # as timeout(1)
EXIT_INTERRUPTED = 130  # 128 + SIGINT

SRST_REASONS = {0: "no reason", 1: "system failure"}
ABI_LIST_WORDS = ("help", "list")

_LISTENING = re.compile(r"listening on (\S+)")
_SIZE = re.compile(r"^(\d+)([KMG]?)i?B?$", re.IGNORECASE)

Command = Callable[[argparse.Namespace], int]


class CliError(Exception):
    """A failure the command explains in one line, with its exit status."""

    def __init__(self, message: str, status: int = EXIT_FAIL) -> None:
        super().__init__(message)
        self.status = status


def version() -> str:
    """The installed rvkvm distribution's version."""
    try:
        return metadata.version("rvkvm")
    except metadata.PackageNotFoundError:
        return "unknown (not installed as a package)"


def parse_size(text: str) -> int:
    match = _SIZE.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 256M)")
    shift = {"": 0, "K": 10, "M": 20, "G": 30}[match.group(2).upper()]
    return int(match.group(1)) << shift


def positive_seconds(text: str) -> float:
    """An argparse type: a finite number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def kvm_error_line(err: KvmError) -> str:
    """A failed RPC in one line: gRPC code, errno name and number, message."""
    parts = []
    if err.code is not None:
        parts.append(err.code.name)
    if err.errno is not None:
        parts.append(f"{err.name} ({err.errno})")
    head = " ".join(parts) or "error"
    return f"{head}: {one_line(err.message)}" if err.message else head


# -- reaching a server -----------------------------------------------------


def _split_host_port(address: str) -> Optional[tuple]:
    """(host, port) of a ``host:port`` or ``[v6]:port`` address, else None
    (a gRPC target such as ``unix:path`` or ``dns:///...``)."""
    match = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:/\[\]]+):(\d+)", address)
    if not match:
        return None
    host = match.group(1) or match.group(3)
    return host, int(match.group(2) or match.group(4))


def _probe(address: str, timeout: float) -> Optional[str]:
    """Why a TCP connection to ``address`` fails (None: it connects, or the
    address is not host:port), so that the error names the cause."""
    target = _split_host_port(address)
    if target is None:
        return None
    host, port = target
    outcome: List[Optional[str]] = []

    def attempt() -> None:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as err:
            outcome.append(f"cannot resolve host {host!r}: {err.strerror}")
            return
        reason = None
        for family, kind, proto, _, sockaddr in infos:
            try:
                with socket.socket(family, kind, proto) as sock:
                    sock.settimeout(timeout)
                    sock.connect(sockaddr)
                outcome.append(None)
                return
            except OSError as err:
                code = err.errno
                reason = (f"{errno_name(code)} ({os.strerror(code)})" if code
                          else "no answer")
        outcome.append(reason)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        return f"no answer within {timeout:g} s"
    return outcome[0]


def wait_ready(channel: grpc.Channel, address: str, timeout: float) -> None:
    """Wait until the channel connects; ``CliError`` saying what could not
    be reached (and why, where a TCP probe tells) after ``timeout`` s."""
    start = time.monotonic()
    reason = _probe(address, timeout)
    if reason is not None:
        raise CliError(f"cannot reach an rvkvm server at {address}: {reason}")
    left = max(0.1, timeout - (time.monotonic() - start))
    try:
        grpc.channel_ready_future(channel).result(timeout=left)
    except grpc.FutureTimeoutError:
        raise CliError(f"cannot reach an rvkvm server at {address}: no gRPC answer within "
                       f"{timeout:g} s") from None


@contextlib.contextmanager
def embedded_server(workers: Optional[int] = None,
                    worker_python: Optional[str] = None) -> Iterator[str]:
    """Start ``python -m rvkvm.server`` on a free loopback port; yields its address.
    ``workers``: its ``--workers`` (None: the server's default, one worker
    process per core); ``worker_python``: its ``--worker-python`` (None: the
    server's default, PyPy when it is installed).

    The server's stdin is a pipe from this process, and it exits when the
    pipe closes: whatever ends this process (a signal, even SIGKILL, or a
    crash) ends the server too."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "rvkvm.server", "--listen", "127.0.0.1:0", "--log-level", "warning",
         "--exit-on-stdin-eof"] + ([] if workers is None else ["--workers", str(workers)])
        + ([] if not worker_python else ["--worker-python", worker_python]),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        address = _listening_address(proc)
        # later output (the server's logs) goes on to stderr, so that a full
        # pipe never blocks the server
        threading.Thread(target=_forward, args=(proc.stdout,), daemon=True).start()
        yield address
    finally:
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()  # the server's cue to stop
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _forward(stream: Any) -> None:
    for line in stream:
        sys.stderr.write(line)


def _listening_address(proc: subprocess.Popen) -> str:
    """The address in the server's ``listening on`` line."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(SERVER_START_TIMEOUT):
            raise CliError(f"the embedded server did not start within {SERVER_START_TIMEOUT:g} s")
    line = proc.stdout.readline()
    match = _LISTENING.search(line)
    if not match:
        status = proc.poll()
        raise CliError("the embedded server did not start"
                       + (f" (exit status {status})" if status is not None else
                          f": {one_line(line)!r}"))
    return match.group(1)


@contextlib.contextmanager
def connect(args: argparse.Namespace) -> Iterator[Kvm]:
    """A ``Kvm`` on ``--server`` (or on an embedded server), connected
    within ``--connect-timeout``."""
    with contextlib.ExitStack() as stack:
        address = args.server
        if address is None:  # an open server on loopback: no credentials
            address = stack.enter_context(embedded_server(
                getattr(args, "workers", None), getattr(args, "worker_python", None)))
            channel = stack.enter_context(grpc.insecure_channel(address))
        else:
            channel = stack.enter_context(open_channel(address, credentials(args)))
        wait_ready(channel, address, args.connect_timeout)
        yield Kvm(channel)


def credentials(args: argparse.Namespace) -> Credentials:
    """Credentials from ``--token``/``--token-file``/``--tls-*``, else ``$RVKVM_*``."""
    token = getattr(args, "token", None)
    token_file = getattr(args, "token_file", None)
    if token is None and token_file:
        with open(token_file, encoding="utf-8") as f:
            token = f.read().strip()
    return Credentials.from_env(token=token, tls_ca=getattr(args, "tls_ca", None),
                                tls_cert=getattr(args, "tls_cert", None),
                                tls_key=getattr(args, "tls_key", None))


def _size(n: int) -> str:
    for shift, unit in ((40, "T"), (30, "G"), (20, "M"), (10, "K")):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return str(n)


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


def _need_server(args: argparse.Namespace) -> None:
    if args.server is None:
        raise CliError(f"{args.command} needs --server ADDR (an embedded server has no VMs)",
                       EXIT_USAGE)


def cmd_ps(args: argparse.Namespace) -> int:
    """The calling tenant's VMs, its quota and usage (ListVms)."""
    _need_server(args)
    with connect(args) as kvm:
        listing = kvm.list_vms()
    q, u = listing.quota, listing.usage

    def of(used: int, limit: int, fmt: Any = str) -> str:
        return f"{fmt(used)}/{fmt(limit) if limit else '-'}"

    print(f"tenant {listing.tenant}: vms {of(u.vms, q.vms)}  vcpus {of(u.vcpus, q.vcpus)}  "
          f"memory {of(u.memory_bytes, q.memory_bytes, _size)}  runs {of(u.runs, q.runs)}")
    print(f"{'VM ID':<35}  {'VCPUS':<8}  {'MEMORY':>7}  {'AGE':>7}  {'IDLE':>7}  {'EXPIRES':>7}")
    now = time.time()
    for vm in listing.vms:
        vcpus = ",".join(map(str, vm.vcpu_ids)) or "-"
        idle = "busy" if vm.open_calls else _age(now - vm.last_use_time.ToNanoseconds() / 1e9)
        expires = (_age(vm.expire_time.ToNanoseconds() / 1e9 - now)
                   if vm.HasField("expire_time") else "-")
        print(f"{vm.vm_id:<35}  {vcpus:<8}  {_size(vm.memory_bytes):>7}  "
              f"{_age(now - vm.create_time.ToNanoseconds() / 1e9):>7}  {idle:>7}  "
              f"{expires:>7}")
    return EXIT_OK


def cmd_destroy(args: argparse.Namespace) -> int:
    """DestroyVm each id; 1 if any failed (each failure one line)."""
    _need_server(args)
    status = EXIT_OK
    with connect(args) as kvm:
        for vm_id in args.vm_ids:
            try:
                kvm.destroy_vm(vm_id)
                print(f"destroyed {vm_id}")
            except KvmError as err:
                report([one_line(f"{vm_id}: {kvm_error_line(err)}")])
                status = EXIT_FAIL
    return status


def add_auth_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--token", help="bearer token of your tenant (default: $RVKVM_TOKEN)")
    p.add_argument("--token-file", metavar="FILE", help="read the bearer token from FILE")
    p.add_argument("--tls-ca", metavar="PEM",
                   help="use TLS, trusting this CA for the server (default: $RVKVM_TLS_CA)")
    p.add_argument("--tls-cert", metavar="PEM", help="client certificate (mTLS; $RVKVM_TLS_CERT)")
    p.add_argument("--tls-key", metavar="PEM", help="client private key (mTLS; $RVKVM_TLS_KEY)")


def add_tenant_commands(sub: Any) -> None:
    add_command(sub, "ps", cmd_ps, help="list your VMs on a server, your quota and usage")
    destroy = add_command(sub, "destroy", cmd_destroy, help="destroy VMs of yours by id")
    destroy.add_argument("vm_ids", nargs="+", metavar="VM_ID")


def print_abi_profiles(kvm: Kvm) -> None:
    """The server's kernel ABI profiles, one a line."""
    info = kvm.get_host_info()
    for p in info.abi_profiles:
        mark = " (default)" if p.name == info.default_abi_profile else ""
        print(f"{p.name}{mark}: Linux {p.linux_version}, SBI {p.sbi_spec_version}, "
              f"{' '.join(p.flags) or '-'}")


# -- subcommands ------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    if args.abi in ABI_LIST_WORDS:
        with connect(args) as kvm:
            print_abi_profiles(kvm)
        return EXIT_OK
    image = read_elf(args.guest)  # a bad file fails before any server starts
    if image.htif:
        raise GuestImageError(
            f"{args.guest}: a bare-metal HTIF program (it has a 'tohost' symbol), written "
            f"for M-mode, not a KVM guest: run it with `python -m rvkvm.emulator run {args.guest}`")
    image.check_fits(RAM_BASE, args.ram)
    with connect(args) as kvm:
        vmm = Vmm(kvm, ram_size=args.ram, abi_profile=args.abi)
        try:
            for name in args.disable_isa_ext:
                vmm.vcpu.set_reg(f"isa_ext {name.upper()}", 0)
            for name in args.disable_sbi_ext:
                vmm.vcpu.set_reg(f"sbi_ext {name.upper()}", 0)
            vmm.add_uart()
            entry = vmm.load_image(image)
            vmm.boot(entry, vmm.place_dtb(vmm.device_tree()))
            try:
                with stop_on_sigint(vmm) as interrupted:
                    result = vmm.run(timeout=args.timeout)
            except KvmError as err:
                report(vmm.crash_report(error=err))
                return EXIT_FAIL
            if interrupted.is_set():
                return EXIT_INTERRUPTED
            if result.clean_shutdown:
                return EXIT_OK
            exit_ = result.exit
            if result.timed_out:
                pc = vmm.vcpu.get_reg("core pc")
                report([f"guest timed out after {args.timeout:g} s (still running, "
                        f"pc={pc:#x})"])
                return EXIT_TIMEOUT
            if isinstance(exit_, X.SystemEventExit):
                what = {X.KVM_SYSTEM_EVENT_SHUTDOWN: "shutdown",
                        X.KVM_SYSTEM_EVENT_RESET: "reset"}.get(exit_.type, f"event {exit_.type}")
                reason = (exit_.data or [0])[0]
                report([f"guest {what} with reason {reason} "
                        f"({SRST_REASONS.get(reason, 'unknown reason')})"])
            else:
                report(vmm.crash_report(exit_=exit_))
            return EXIT_FAIL
        finally:
            vmm.close()


def cmd_info(args: argparse.Namespace) -> int:
    with connect(args) as kvm:
        info = kvm.get_host_info()
    print(f"KVM API version  {info.api_version}")
    print(f"host ISA         {info.isa}")
    print(f"capabilities     {' '.join(info.capabilities)}")
    print(f"timebase         {info.timebase_frequency} Hz, satp mode {info.satp_mode}")
    on_host = [e.name for e in info.isa_exts if e.on_host]
    print(f"ONE_REG isa_ext  {' '.join(on_host)}")
    print("SBI extensions   " + " ".join(
        e.name + ("" if e.default_enabled else "(off)") for e in info.sbi_exts))
    print("                 (off): disabled by default, as in KVM; a VMM turns it on "
          "(ONE_REG sbi_ext NAME = 1; rvkvm run does so for DBCN)")
    print("FWFT features    " + " ".join(
        f"{f.feature_id}:{f.name}" + (f"[{f.onereg}]" if f.onereg else "")
        for f in info.fwft_features))
    for p in info.abi_profiles:
        mark = " (default)" if p.name == info.default_abi_profile else ""
        print(f"ABI profile      {p.name}{mark}: Linux {p.linux_version}, SBI "
              f"{p.sbi_spec_version}, {' '.join(p.flags) or '-'}")
    lim = info.limits
    print(f"limits           {lim.max_vcpus} vCPUs, {lim.mem_slots} memslots, "
          f"{lim.gpa_bits}-bit GPA, {lim.max_transfer} B per transfer")
    return EXIT_OK


def cmd_regs(args: argparse.Namespace) -> int:
    with connect(args) as kvm:
        if args.abi in ABI_LIST_WORDS:
            print_abi_profiles(kvm)
            return EXIT_OK
        vm = kvm.create_vm(args.abi)
        try:
            vm.create_vcpu(0)
            named = vm.vcpu(0).get_reg_names()
            values = vm.batch_one_reg([(0, reg, None) for reg, _ in named])
        finally:
            vm.destroy()
    for (reg, name), value in zip(named, values):
        text = value.name if isinstance(value, KvmError) else "0x" + value[::-1].hex()
        print(f"0x{reg:016x}  {name:36} {text}")
    return EXIT_OK


# -- the parser and the error wrapper --------------------------------------


class SubcommandParser(argparse.ArgumentParser):
    """A subcommand's parser: it reports unknown options itself, with its
    own usage (argparse otherwise hands them up to the top-level parser)."""

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras


def add_server_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", metavar="ADDR",
                   help="host:port of a running rvkvm-server (default: start one on loopback)")
    p.add_argument("--connect-timeout", type=positive_seconds, default=DEFAULT_CONNECT_TIMEOUT,
                   metavar="S", help="seconds to wait for the server to answer "
                   f"(default {DEFAULT_CONNECT_TIMEOUT:g})")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes of the embedded server (default: one per core, on "
                        "PyPy when installed; 0: vCPUs in the server process)")
    p.add_argument("--worker-python", metavar="PATH", default=None,
                   help="interpreter of the embedded server's workers (default: pypy3 when "
                        "installed, else this one; for `boot` this one: kernel code runs "
                        "slower on PyPy today)")


def add_abi_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--abi", default="", metavar="PROFILE",
                   help="kernel ABI profile of the VM (default: the server's); "
                        "`--abi list` prints the server's profiles, as `rvkvm info` does")


def add_command(sub: Any, name: str, func: Command, help: str, **kwargs: Any
                ) -> argparse.ArgumentParser:
    """A subcommand with the options every subcommand has (``--server``,
    ``--connect-timeout``, ``--debug``) that runs ``func``."""
    p = sub.add_parser(name, help=help, **kwargs)
    add_server_options(p)
    add_auth_options(p)
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="print the traceback of an unexpected error")
    p.set_defaults(func=func)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="rvkvm client: run RISC-V KVM "
                                     "guests on an rvkvm server")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of an unexpected error (also RVKVM_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=SubcommandParser)

    run = add_command(sub, "run", cmd_run, help="boot an S-mode guest ELF and print its console",
                      description="Boot an S-mode guest ELF as kvmtool and QEMU virt do: "
                      "RAM at 0x80000000, a0 = hart id, a1 = device tree, SBI DBCN "
                      "console, an NS16550A UART at 0x10000000. Exit status: 0 clean "
                      "shutdown, 1 guest failure, 3 a file that is not an RV64 KVM guest, "
                      "124 --timeout ran out.")
    run.add_argument("guest", nargs="?", default=HELLO_GUEST,
                     help="guest ELF (default: the bundled hello_sbi.elf)")
    run.add_argument("--ram", type=parse_size, default=256 << 20, help="RAM size (256M)")
    add_abi_option(run)
    run.add_argument("--timeout", type=positive_seconds, default=None, metavar="S",
                     help="seconds of wall time before the guest is stopped (exit status 124)")
    run.add_argument("--disable-isa-ext", action="append", default=[], metavar="NAME",
                     help="turn an ISA extension off before boot (ONE_REG isa_ext NAME = 0), "
                          "e.g. SMNPM; repeatable")
    run.add_argument("--disable-sbi-ext", action="append", default=[], metavar="NAME",
                     help="turn an SBI extension off before boot (ONE_REG sbi_ext NAME = 0), "
                          "e.g. FWFT; repeatable")

    add_command(sub, "info", cmd_info, help="show the emulated host")

    regs = add_command(sub, "regs", cmd_regs,
                       help="ONE_REG registers of a fresh vCPU with their values")
    add_abi_option(regs)

    boot.register(sub, add_command, add_abi_option, parse_size)
    add_tenant_commands(sub)
    return parser


def report(lines: List[str]) -> None:
    for line in lines:
        print(f"{PROG}: {line}", file=sys.stderr)


def run_command(func: Command, args: argparse.Namespace) -> int:
    """Run a subcommand; every exception becomes one line on stderr and an
    exit status (the traceback too with ``--debug`` or RVKVM_DEBUG=1)."""
    debug = bool(getattr(args, "debug", False)) or os.environ.get("RVKVM_DEBUG") == "1"
    try:
        return int(func(args))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_FAIL  # stdout closed early (`| head`)
    except Exception as err:  # noqa: BLE001 - the one place that reports them all
        if debug:
            traceback.print_exc()
        if isinstance(err, CliError):
            line, status = str(err), err.status
        elif isinstance(err, GuestImageError):
            line, status = str(err), EXIT_BAD_GUEST
        elif isinstance(err, KvmError):
            line, status = kvm_error_line(err), EXIT_FAIL
        elif isinstance(err, OSError) and err.strerror:
            name = f"{err.filename}: " if err.filename else ""
            line, status = f"{name}{err.strerror}", EXIT_FAIL
        else:
            line, status = f"error: {type(err).__name__}: {err}", EXIT_FAIL
        report([one_line(line)])
        return status


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(args.func, args)


if __name__ == "__main__":
    raise SystemExit(main())
