"""Server settings (``create_server``'s ``config``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Optional

from rvkvm.server.kvm import HostProfile
from rvkvm.server.kvm.clock import DETERMINISTIC, SERVER_DEFAULT, GuestClock

from .limits import RequestLimits
from .tenants import Tenants


@dataclass
class ServerConfig:
    # The emulated host; None: HostProfile.default().
    host: Optional[HostProfile] = None
    # Emulator engine of every hart: "fast" (block translator) or "reference"
    # (the interpreter), emulator.hart.ENGINES.
    engine: str = "fast"
    # A vCPU slice ends after this many instructions or this many seconds
    # of wall time, whichever comes first; then the next runnable vCPU
    # (round-robin over owners) gets the thread.
    # None: 200,000 in-process; with workers 20,000,000, so that wall time
    # bounds a slice (one IPC round trip each) of a fast engine on PyPy.
    run_slice: Optional[int] = None
    slice_time: float = 0.02
    # Instructions a Run first tries on the event loop itself when the
    # vCPU's last exit was a guest event (MMIO, SBI, ...): a device-bound
    # guest exits again within it, without two thread hops (0: never).
    # Bounded in wall time too (inline_time seconds).
    inline_slice: int = 4096
    inline_time: float = 0.002
    # Threads running vCPU slices (slices are pure Python: more threads than
    # cores only lengthen every wait for the interpreter lock), and threads
    # for the other model calls.
    run_threads: int = 2
    ops_threads: int = 8
    # sys.setswitchinterval for the server process (0: leave it): with 1 ms
    # instead of CPython's 5 ms, other callers' ONE_REG p99 while 40 vCPUs
    # run busy guests fell from 105 to 29 ms (bench.service fair).
    switch_interval: float = 0.001
    # Accept loops per method beside grpc's own one (``accept.AcceptLoops``):
    # ``accept_loops`` for the calls that answer at once, ``run_accept_loops``
    # for Run, RunStream and RunMany (every Run accepted costs event-loop
    # time while it waits for a slice; the rest wait in grpc's core).
    accept_loops: int = 8
    run_accept_loops: int = 1
    # Per-request limits (transfer sizes, batch sizes, message size, ids).
    limits: RequestLimits = field(default_factory=RequestLimits)
    # Guest time per retired instruction in nanoseconds (None: one timebase
    # tick per instruction, 100 ns at the default 10 MHz). Timer-driven
    # guest work grows with it (QEMU, Debian's boot to the shell: 452 M
    # instructions at 1 ns, 610 M at 64 ns, 1,650 M at 256 ns).
    ns_per_insn: Optional[Fraction] = None
    # The guest clock of VMs created without one (CreateVmRequest.clock);
    # None: deterministic at ``ns_per_insn`` if set, else clock.SERVER_DEFAULT
    # (1 ns per instruction).
    clock: Optional[GuestClock] = None
    # VMs hosted at once (0: no limit).
    max_vms: int = 0
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
    # Worker processes running the VMs' vCPUs (0: all in this process).
    # A VM lives in one worker, placed on the least loaded.
    workers: int = 0
    # The interpreter of the workers ("": pypy3 from PATH if present, else
    # this Python); any Python >= 3.9, no packages needed.
    worker_python: str = ""
    # A worker that does not answer a heartbeat (sent every
    # worker_heartbeat seconds) for worker_timeout seconds, or whose run
    # slice is worker_timeout seconds past its wall-time bound, is killed
    # and replaced; its VMs are lost (EHOSTDOWN). Generous: compiling a
    # large translated region holds the worker's interpreter lock, and a
    # loaded host stretches that.
    worker_heartbeat: float = 1.0
    worker_timeout: float = 30.0

    def guest_clock(self) -> GuestClock:
        """The default guest clock of new VMs (see ``clock``)."""
        if self.clock is not None:
            return self.clock
        if self.ns_per_insn is not None:
            return GuestClock(DETERMINISTIC, self.ns_per_insn)
        return SERVER_DEFAULT
