"""The ``rvkvm`` command: run a guest, show the host, list registers.

    rvkvm run GUEST.elf [--server ADDR] [--ram 256M] [--abi PROFILE]
              [--disable-isa-ext NAME]... [--disable-sbi-ext NAME]...
    rvkvm info [--server ADDR]
    rvkvm regs [--server ADDR] [--abi PROFILE]
    rvkvm ps --server ADDR
    rvkvm destroy --server ADDR VM_ID...

``--token`` (or ``$RVKVM_TOKEN``) authenticates to a server with tenants;
``--tls-ca``, ``--tls-cert``, ``--tls-key`` (or ``$RVKVM_TLS_*``) use TLS/mTLS.

Without ``--server`` an embedded server (``python -m rvkvm.server``) is started on
a free loopback port for the duration of the command.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import time
from typing import Any, Iterator, List, Optional

import grpc

from . import exits as X
from .channels import Credentials, open_channel
from .errors import KvmError
from .kvm import Kvm
from .vmm import Vmm

HELLO_GUEST = os.path.join(os.path.dirname(__file__), "guests", "hello_sbi.elf")
_LISTENING = re.compile(r"listening on (\S+)")
_SIZE = re.compile(r"^(\d+)([KMG]?)i?B?$", re.IGNORECASE)


def parse_size(text: str) -> int:
    match = _SIZE.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 256M)")
    shift = {"": 0, "K": 10, "M": 20, "G": 30}[match.group(2).upper()]
    return int(match.group(1)) << shift


@contextlib.contextmanager
def embedded_server() -> Iterator[str]:
    """Start ``python -m rvkvm.server`` on a free loopback port; yields its address."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "rvkvm.server", "--listen", "127.0.0.1:0", "--log-level", "warning"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = _LISTENING.search(line)
        if not match:
            raise RuntimeError(f"embedded server did not start: {line!r}")
        yield match.group(1)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextlib.contextmanager
def connect(address: Optional[str], creds: Optional[Credentials] = None) -> Iterator[Kvm]:
    with contextlib.ExitStack() as stack:
        if address is None:
            address = stack.enter_context(embedded_server())
            creds = None  # the embedded server is open, on loopback
        channel = stack.enter_context(open_channel(address, creds))
        grpc.channel_ready_future(channel).result(timeout=30)
        yield Kvm(channel)


def cmd_run(args: argparse.Namespace) -> int:
    with connect(args.server, credentials(args)) as kvm:
        vmm = Vmm(kvm, ram_size=args.ram, abi_profile=args.abi)
        try:
            for name in args.disable_isa_ext:
                vmm.vcpu.set_reg(f"isa_ext {name.upper()}", 0)
            for name in args.disable_sbi_ext:
                vmm.vcpu.set_reg(f"sbi_ext {name.upper()}", 0)
            vmm.add_uart()
            entry = vmm.load_elf(args.guest)
            vmm.boot(entry, vmm.place_dtb(vmm.device_tree()))
            result = vmm.run(timeout=args.timeout)
        finally:
            vmm.close()
    if result.clean_shutdown:
        return 0
    exit_ = result.exit
    if isinstance(exit_, X.SystemEventExit):
        what = {X.KVM_SYSTEM_EVENT_SHUTDOWN: "shutdown", X.KVM_SYSTEM_EVENT_RESET: "reset"}
        print(f"rvkvm: guest {what.get(exit_.type, exit_.type)} with reason "
              f"{(exit_.data or [0])[0]}", file=sys.stderr)
    else:
        print(f"rvkvm: VM stopped: {exit_!r}", file=sys.stderr)
    return 1


def cmd_info(args: argparse.Namespace) -> int:
    with connect(args.server, credentials(args)) as kvm:
        info = kvm.get_host_info()
    print(f"KVM API version  {info.api_version}")
    print(f"host ISA         {info.isa}")
    print(f"capabilities     {' '.join(info.capabilities)}")
    print(f"timebase         {info.timebase_frequency} Hz, satp mode {info.satp_mode}")
    on_host = [e.name for e in info.isa_exts if e.on_host]
    print(f"ONE_REG isa_ext  {' '.join(on_host)}")
    print("SBI extensions   " + " ".join(
        e.name + ("" if e.default_enabled else "(off)") for e in info.sbi_exts))
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
    return 0


def cmd_regs(args: argparse.Namespace) -> int:
    with connect(args.server, credentials(args)) as kvm:
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
    return 0


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


def cmd_ps(args: argparse.Namespace) -> int:
    """The calling tenant's VMs, its quota and usage."""
    with connect(args.server, credentials(args)) as kvm:
        listing = kvm.list_vms()
    q, u = listing.quota, listing.usage

    def of(used: int, limit: int, fmt: Any = str) -> str:
        return f"{fmt(used)}/{fmt(limit) if limit else '-'}"

    print(f"tenant {listing.tenant}: vms {of(u.vms, q.vms)}  vcpus {of(u.vcpus, q.vcpus)}  "
          f"memory {of(u.memory_bytes, q.memory_bytes, _size)}  runs {of(u.runs, q.runs)}")
    print(f"{'VM ID':<36}  {'VCPUS':<8}  {'MEMORY':>7}  {'AGE':>7}  {'IDLE':>7}  {'EXPIRES':>7}")
    now = time.time()
    for vm in listing.vms:
        vcpus = ",".join(map(str, vm.vcpu_ids)) or "-"
        idle = "busy" if vm.open_calls else _age(now - vm.last_use_time.ToNanoseconds() / 1e9)
        expires = (_age(vm.expire_time.ToNanoseconds() / 1e9 - now)
                   if vm.HasField("expire_time") else "-")
        print(f"{vm.vm_id:<36}  {vcpus:<8}  {_size(vm.memory_bytes):>7}  "
              f"{_age(now - vm.create_time.ToNanoseconds() / 1e9):>7}  {idle:>7}  "
              f"{expires:>7}")
    return 0


def cmd_destroy(args: argparse.Namespace) -> int:
    """DestroyVm each id; 1 if any failed (each failure on its own line)."""
    status = 0
    with connect(args.server, credentials(args)) as kvm:
        for vm_id in args.vm_ids:
            try:
                kvm.destroy_vm(vm_id)
                print(f"destroyed {vm_id}")
            except KvmError as err:
                print(f"rvkvm: {vm_id}: {err}", file=sys.stderr)
                status = 1
    return status


def _add_auth_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--token", help="bearer token of your tenant (default: $RVKVM_TOKEN)")
    p.add_argument("--token-file", metavar="FILE", help="read the bearer token from FILE")
    p.add_argument("--tls-ca", metavar="PEM",
                   help="use TLS, trusting this CA for the server (default: $RVKVM_TLS_CA)")
    p.add_argument("--tls-cert", metavar="PEM", help="client certificate (mTLS)")
    p.add_argument("--tls-key", metavar="PEM", help="client private key (mTLS)")


def _add_tenant_commands(sub: Any) -> None:
    ps = sub.add_parser("ps", help="list your VMs on a server, with your quota and usage")
    ps.add_argument("--server", metavar="ADDR", required=True, help="host:port of the server")
    _add_auth_arguments(ps)
    ps.set_defaults(func=cmd_ps)
    destroy = sub.add_parser("destroy", help="destroy VMs of yours by id")
    destroy.add_argument("--server", metavar="ADDR", required=True,
                         help="host:port of the server")
    destroy.add_argument("vm_ids", nargs="+", metavar="VM_ID")
    _add_auth_arguments(destroy)
    destroy.set_defaults(func=cmd_destroy)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rvkvm", description="rvkvm client")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--server", metavar="ADDR",
                       help="host:port of an rvkvm server (default: start one on loopback)")

    run = sub.add_parser("run", help="boot an S-mode guest ELF and print its console",
                         description="Boot an S-mode guest ELF as kvmtool and QEMU virt do: "
                         "RAM at 0x80000000, a0 = hart id, a1 = device tree, SBI DBCN "
                         "console, an NS16550A UART at 0x10000000.")
    run.add_argument("guest", nargs="?", default=HELLO_GUEST,
                     help="guest ELF (default: the bundled hello_sbi.elf)")
    common(run)
    run.add_argument("--ram", type=parse_size, default=256 << 20, help="RAM size (256M)")
    run.add_argument("--abi", default="", help="kernel ABI profile (default: the server's)")
    run.add_argument("--timeout", type=float, default=None, help="seconds before giving up")
    run.add_argument("--disable-isa-ext", action="append", default=[], metavar="NAME",
                     help="turn an ISA extension off before boot (ONE_REG isa_ext NAME = 0), "
                          "e.g. SMNPM; repeatable")
    run.add_argument("--disable-sbi-ext", action="append", default=[], metavar="NAME",
                     help="turn an SBI extension off before boot (ONE_REG sbi_ext NAME = 0), "
                          "e.g. FWFT; repeatable")
    run.set_defaults(func=cmd_run)

    info = sub.add_parser("info", help="show the emulated host")
    common(info)
    info.set_defaults(func=cmd_info)

    regs = sub.add_parser("regs", help="ONE_REG registers of a fresh vCPU with their values")
    common(regs)
    regs.add_argument("--abi", default="", help="kernel ABI profile")
    regs.set_defaults(func=cmd_regs)
    for p in (run, info, regs):
        _add_auth_arguments(p)
    _add_tenant_commands(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KvmError as err:
        print(f"rvkvm: {err}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as err:
        print(f"rvkvm: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
