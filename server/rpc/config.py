"""Server settings (``create_server``'s ``config``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from rvkvm.server.kvm import HostProfile

from .tenants import Tenants


@dataclass
class ServerConfig:
    # The emulated host; None: HostProfile.default().
    host: Optional[HostProfile] = None
    # Emulator engine of every hart: "fast" (block translator) or "reference"
    # (the interpreter), emulator.hart.ENGINES.
    engine: str = "fast"
    # Instructions a vCPU runs per slice before its Run loop looks for
    # cancellation (and other RPCs on that vCPU get their turn).
    run_slice: int = 200_000
    # Seconds a slice sleeps while the vCPU is idle before looking again.
    idle_slice: float = 0.05
    # Seconds of slices a running vCPU keeps its run thread before giving
    # it back (the event loop is woken once per quantum, not per slice).
    run_quantum: float = 0.05
    # Instructions a Run first tries on the event loop itself when the
    # vCPU's last exit was a guest event (MMIO, SBI, ...): a device-bound
    # guest exits again within it, without two thread hops (0: never).
    inline_slice: int = 4096
    # Largest ReadMemory/WriteMemory payload and stream chunk.
    max_transfer: int = 1 << 20
    # VMs hosted at once (0: no limit).
    max_vms: int = 0
    # Threads running vCPU slices, and threads for the other model calls.
    run_threads: int = 32
    ops_threads: int = 8
    # Register the reflection service (for grpcurl and friends).
    reflection: bool = True
    # Extra grpc.aio.server options.
    grpc_options: list = field(default_factory=list)
    # Tenants (tenants.Tenants, e.g. Tenants.load(path)); None: an open
    # server (every call is tenant "default"), allowed on loopback only
    # unless insecure_open.
    tenants: Optional[Tenants] = None
    insecure_open: bool = False
    # TLS: PEM files of the server's certificate chain and key; with a
    # client CA, clients must present a certificate it signed (mTLS).
    tls_cert: Optional[str] = None
    tls_key: Optional[str] = None
    tls_client_ca: Optional[str] = None
    # Seconds a VM lives without a call of its tenant (0: forever).
    lease: float = 600.0
    # Guest memory mapped in memory slots, all tenants together, in bytes;
    # None: the host's physical memory; 0: no limit.
    max_memory: Optional[int] = None
    # host:port for Prometheus' /metrics ("" : no metrics endpoint).
    metrics_listen: str = ""
