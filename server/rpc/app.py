"""``create_server``: a ``grpc.aio`` server with the KVM service, health,
reflection and the interceptors, bound but not started."""

from __future__ import annotations

import asyncio
import ipaddress
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Optional, Tuple

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from rvkvm.emulator.hart import ENGINES
from rvkvm.server.kvm import KvmSystem
from rvkvm.v1 import kvm_pb2 as pb
from rvkvm.v1 import kvm_pb2_grpc as pb_grpc

from .accept import AcceptCollector, AcceptLoops, HandlerRecorder, default_policy
from .calls import CallInterceptor
from .config import ServerConfig
from .interceptors import (
    ActivityInterceptor,
    ChainedInterceptor,
    KvmErrorInterceptor,
    MalformedRequestInterceptor,
)
from .leases import LeaseReaper
from .metrics import Metrics
from .quotas import Ledger, host_memory
from .registry import Pacing, VmEntry, VmRegistry
from .scheduler import FairScheduler
from .servicer import KvmServicer
from .tenants import OPEN_TENANT
from .workers import WorkerCollector, WorkerPool

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Kvm"].full_name
# A port is never shared: a second server on it must fail, not split the clients.
NO_PORT_REUSE = [("grpc.so_reuseport", 0)]
# Instructions a slice in a worker may run by default: its wall-time bound
# (slice_time) ends it first, as each slice costs an IPC round trip.
WORKER_RUN_SLICE = 20_000_000
# Calls that arrived and wait for the application to take them: grpc-core
# cancels the ones older than grpc.server_max_unrequested_time_in_server
# (30 s) while more than max_pending_requests (1,000) wait, and refuses
# beyond the hard limit (3,000). Under load (16 clients x 64 vCPUs, each
# with a Run in flight: over 1,000 calls) that cancelled Runs whose callers
# were still waiting within their own deadline. The caller's deadline is
# what bounds a call; the server sheds load (RESOURCE_EXHAUSTED) only past
# this many waiting calls.
MAX_PENDING_CALLS = 1 << 16
PENDING_CALLS = [("grpc.server.max_pending_requests", MAX_PENDING_CALLS),
                 ("grpc.server.max_pending_requests_hard_limit", MAX_PENDING_CALLS)]


class Server:
    """The running service: the ``grpc.aio`` server plus what it owns (the
    VMs and the worker threads), stopped together."""

    def __init__(self, grpc_server: grpc.aio.Server, registry: VmRegistry,
                 health_servicer: health.aio.HealthServicer,
                 pools: Tuple[ThreadPoolExecutor, ...], activity: ActivityInterceptor,
                 ledger: Ledger, metrics: Metrics, reaper: LeaseReaper,
                 metrics_listen: str = "", workers: Optional[WorkerPool] = None,
                 accept: Optional[AcceptLoops] = None) -> None:
        self.grpc_server = grpc_server
        self.accept = accept
        self.registry = registry
        self.ledger = ledger
        self.metrics = metrics
        self.reaper = reaper
        self._metrics_listen = metrics_listen
        self.metrics_port = 0
        self._health = health_servicer
        self._pools = pools
        self._activity = activity
        self.workers = workers

    async def start(self) -> None:
        if self._metrics_listen:
            self.metrics_port = self.metrics.serve(self._metrics_listen)
        await self.grpc_server.start()
        if self.accept is not None:
            self.accept.start()
        self.reaper.start()
        self.registry.scheduler.watch.start()

    async def wait_for_termination(self, timeout: Optional[float] = None) -> bool:
        return await self.grpc_server.wait_for_termination(timeout)

    async def drain(self, grace: float, quiet: float = 1.0) -> None:
        """The first half of a graceful stop (SIGTERM): NOT_SERVING at once,
        no new VMs or Runs, running Runs end with an INTR SHUTDOWN exit at
        their next slice boundary; then wait until ``grace`` seconds passed
        or no client has had a call in flight for ``quiet`` seconds (the
        clients are gone). The VMs stay readable meanwhile."""
        await self._health.enter_graceful_shutdown()
        self.registry.begin_drain()
        loop = asyncio.get_running_loop()
        end = loop.time() + grace
        while loop.time() < end:
            if self._activity.quiet_for() >= quiet:
                break
            await asyncio.sleep(min(0.05, max(0.0, end - loop.time())))

    async def stop(self, grace: Optional[float] = None) -> None:
        """Report NOT_SERVING, stop the server (new calls are refused, calls
        in flight get ``grace`` seconds), destroy every VM, stop the lease
        reaper, the metrics endpoint and the threads."""
        await self._health.enter_graceful_shutdown()
        await self.reaper.stop()
        await self.registry.scheduler.watch.stop()
        self.registry.begin_drain()
        await self.grpc_server.stop(grace)  # fails the accept loops' requests too
        if self.accept is not None:
            await self.accept.stop()
        self.registry.destroy_all()
        self.metrics.close()
        self.registry.scheduler.shutdown()
        if self.workers is not None:
            self.workers.shutdown()
        for pool in self._pools:
            pool.shutdown(wait=False, cancel_futures=True)


async def create_server(address: str,
                        config: Optional[ServerConfig] = None) -> Tuple[Server, int]:
    """A server for ``address`` (``host:port``; port 0 picks one) and the
    port it bound; call ``await server.start()``."""
    config = config or ServerConfig()
    if config.engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {config.engine!r}")
    log = structlog.get_logger("rvkvm.server")
    if config.tenants is None:
        if not is_loopback(address) and not config.insecure_open:
            raise OSError(f"refusing to listen on {address} without a tenants file: anyone "
                          "who can reach it could use every VM (give --tenants FILE, or "
                          "--insecure-open to do it anyway)")
        log.info("open server: no tenants file, no authentication; every call is "
                 f"tenant {OPEN_TENANT!r}", address=address)
    if config.switch_interval:
        # process-wide: how long a thread running guest code may keep the
        # interpreter lock while the event loop or an ops thread waits for it
        sys.setswitchinterval(config.switch_interval)
    system = KvmSystem(config.host, engine=config.engine, clock=config.guest_clock())
    run_slice = config.run_slice
    if run_slice is None:
        run_slice = WORKER_RUN_SLICE if config.workers > 0 else Pacing.run_slice
    pacing = Pacing(run_slice, config.slice_time, config.inline_slice,
                    config.inline_time)
    workers: Optional[WorkerPool] = None
    if config.workers > 0:
        workers = await asyncio.get_running_loop().run_in_executor(None, lambda: WorkerPool(
            config.workers, config.worker_python, config.host, config.engine,
            config.guest_clock(), config.worker_heartbeat, config.worker_timeout))
        log.info("workers started", workers=config.workers, python=workers.python,
                 pids=workers.pids())
    registry = VmRegistry(system, config.max_vms, FairScheduler(config.run_threads), pacing,
                          workers.create_vm if workers is not None else None)
    ledger = Ledger(host_memory() if config.max_memory is None else config.max_memory)
    registry.on_destroy.append(lambda entry: ledger.release_vm(entry.vm_id))
    tenants = config.tenants
    metrics = Metrics(ledger, lambda: tenants.names if tenants else [OPEN_TENANT])
    if workers is not None:
        metrics.registry.register(WorkerCollector(workers))
    registry.scheduler.watch.lag_observers.append(metrics.loop_lag.observe)

    def destroy_expired(entry: VmEntry) -> bool:
        try:
            return registry.destroy(entry.vm_id, only_if=lambda e: _expired(e, config.lease))
        except Exception:  # gone already (DestroyVm won the race), or the server stopped
            return False

    reaper = LeaseReaper(config.lease, registry.list, destroy_expired,
                         lambda e: metrics.lease_expirations.labels(e.owner).inc())
    ops_pool = ThreadPoolExecutor(config.ops_threads, thread_name_prefix="rvkvm-ops")
    limits = config.limits
    activity = ActivityInterceptor()
    interceptors = [ChainedInterceptor(activity, KvmErrorInterceptor(),
                                       CallInterceptor(tenants, metrics),
                                       MalformedRequestInterceptor())]
    server = grpc.aio.server(
        # the first is outermost: activity counts every call a drain waits
        # on; the call interceptor (logs, metrics) sees the KvmError before
        # it becomes a status; bad request bytes become EINVAL before anything else.
        # One interceptor for grpc to run per call, the layers built into each
        # method's handler once.
        interceptors=interceptors,
        options=NO_PORT_REUSE + PENDING_CALLS + [
                 ("grpc.max_receive_message_length", limits.max_message),
                 ("grpc.max_send_message_length", limits.max_message),
                 *config.grpc_options],
    )
    # services register through the recorder: the extra accept loops
    # resolve handlers from the same tables as grpc's own loop
    recorder = HandlerRecorder(server)
    pb_grpc.add_KvmServicer_to_server(
        KvmServicer(registry, limits, config.max_vms, pacing, ops_pool,
                    ledger=ledger, metrics=metrics, lease=config.lease), recorder)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, recorder)
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    if config.reflection:
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), recorder)
    try:
        if config.tls_cert or config.tls_key:
            port = server.add_secure_port(address, server_credentials(config))
        elif config.tls_client_ca:
            raise ValueError("--tls-client-ca needs --tls-cert and --tls-key")
        else:
            port = server.add_insecure_port(address)
    except RuntimeError as err:  # grpc's "Failed to bind to address"
        raise OSError(f"cannot listen on {address}: {err}") from None
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    log.info("listening", address=address, port=port,
             tls=bool(config.tls_cert), mtls=bool(config.tls_client_ca),
             tenants=tenants.names if tenants else None, lease_s=config.lease,
             max_memory=ledger.max_memory)
    accept = AcceptLoops(server, recorder, interceptors,
                         default_policy(config.accept_loops, config.run_accept_loops))
    metrics.registry.register(AcceptCollector(accept))
    return Server(server, registry, health_servicer, (ops_pool,), activity, ledger, metrics,
                  reaper, config.metrics_listen, workers, accept), port


def _expired(entry: VmEntry, lease: float) -> bool:
    idle = entry.lease.idle()
    return idle is not None and idle >= lease


def is_loopback(address: str) -> bool:
    """Whether ``host:port`` listens on loopback only."""
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def server_credentials(config: ServerConfig) -> grpc.ServerCredentials:
    """TLS (and, with a client CA, mTLS) credentials from PEM files."""
    if not (config.tls_cert and config.tls_key):
        raise ValueError("TLS needs both --tls-cert and --tls-key")
    ca = _read(config.tls_client_ca) if config.tls_client_ca else None
    return grpc.ssl_server_credentials([(_read(config.tls_key), _read(config.tls_cert))],
                                       root_certificates=ca, require_client_auth=ca is not None)
