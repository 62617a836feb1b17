"""Prometheus metrics of one server (``prometheus-client``).

Names follow the ecosystem's conventions: the gRPC server metrics of
go-grpc-prometheus (``grpc_server_started_total``,
``grpc_server_handled_total``, ``grpc_server_handling_seconds`` with
``grpc_service``, ``grpc_method``, ``grpc_type``, ``grpc_code``), and
``rvkvm_*`` for the KVM model. Every label set is bounded: methods are the
rvkvm.v1 methods (the interceptor only sees those), codes the 17 gRPC codes,
tenants the names in the tenants file (or ``default``), exit reasons the
KVM_EXIT_* names this model produces. Each server has its own
``CollectorRegistry`` (several servers in one process stay apart).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, Optional, Tuple

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from rvkvm.uapi import kvm as U

from .heap import GcPauseCollector, gc_pauses
from .quotas import Ledger, Usage

EXIT_NAMES: Dict[int, str] = {
    getattr(U, name): name[len("KVM_EXIT_"):] for name in dir(U) if name.startswith("KVM_EXIT_")
}
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0, 30.0, 60.0)

LAG_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def rpc_type(client_streaming: bool, server_streaming: bool) -> str:
    if client_streaming and server_streaming:
        return "bidi_stream"
    if client_streaming:
        return "client_stream"
    if server_streaming:
        return "server_stream"
    return "unary"


def split_method(method: str) -> Tuple[str, str]:
    """``/rvkvm.v1.Kvm/Run`` -> (``rvkvm.v1.Kvm``, ``Run``)."""
    service, _, name = method.lstrip("/").partition("/")
    return service, name


class _UsageCollector(Collector):
    def __init__(self, ledger: Ledger, tenants: Callable[[], Iterable[str]]) -> None:
        self._ledger = ledger
        self._tenants = tenants

    def collect(self) -> Iterable[Any]:
        usage = self._ledger.usage_by_tenant()
        families = {
            "vms": GaugeMetricFamily("rvkvm_vms", "VMs hosted, by tenant", labels=["tenant"]),
            "vcpus": GaugeMetricFamily("rvkvm_vcpus", "vCPUs hosted, by tenant",
                                       labels=["tenant"]),
            "memory": GaugeMetricFamily("rvkvm_guest_memory_bytes",
                                        "guest memory mapped in memory slots, by tenant",
                                        labels=["tenant"]),
            "runs": GaugeMetricFamily("rvkvm_runs_in_progress", "Runs in progress, by tenant",
                                      labels=["tenant"]),
        }
        for tenant in self._tenants():
            u = usage.get(tenant, Usage())
            for what, family in families.items():
                family.add_metric([tenant], getattr(u, what))
        yield from families.values()
        ceiling = GaugeMetricFamily("rvkvm_guest_memory_limit_bytes",
                                    "server-wide ceiling of mapped guest memory (0: none)")
        ceiling.add_metric([], self._ledger.max_memory)
        yield ceiling


class Metrics:
    def __init__(self, ledger: Ledger, tenants: Callable[[], Iterable[str]]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.started = Counter("grpc_server_started", "RPCs started on the server",
                               ["grpc_service", "grpc_method", "grpc_type"], registry=r)
        self.handled = Counter("grpc_server_handled", "RPCs completed on the server, "
                               "by status code",
                               ["grpc_service", "grpc_method", "grpc_type", "grpc_code"],
                               registry=r)
        self.handling = Histogram("grpc_server_handling_seconds",
                                  "time from the start of an RPC to its end",
                                  ["grpc_service", "grpc_method", "grpc_type"],
                                  buckets=LATENCY_BUCKETS, registry=r)
        self.instructions = Counter("rvkvm_instructions_retired",
                                    "guest instructions retired in Runs, by tenant",
                                    ["tenant"], registry=r)
        self.exits = Counter("rvkvm_exits", "exits Runs returned, by tenant and KVM_EXIT reason",
                             ["tenant", "reason"], registry=r)
        self.runs = Counter("rvkvm_runs", "Runs completed (each vCPU of a RunMany counts)",
                            ["tenant"], registry=r)
        self.run_slices = Counter("rvkvm_run_slices", "slices of Vcpu.run executed",
                                  registry=r)
        self.lease_expirations = Counter("rvkvm_lease_expirations",
                                         "VMs destroyed because their lease ran out",
                                         ["tenant"], registry=r)
        self.unauthenticated = Counter("rvkvm_unauthenticated",
                                       "calls refused for missing or invalid credentials",
                                       registry=r)
        self.loop_lag = Histogram(
            "rvkvm_event_loop_lag_seconds",
            "how late the server's event loop ran a timer (sampled every 50 ms): how long "
            "a call that is ready waits for the loop, the front end's own queue",
            buckets=LAG_BUCKETS, registry=r)
        r.register(_UsageCollector(ledger, tenants))
        r.register(GcPauseCollector(gc_pauses()))
        self._http: Optional[Any] = None

    def exit(self, tenant: str, reason: int, instructions: int) -> None:
        self.exits.labels(tenant, EXIT_NAMES.get(reason, "UNKNOWN")).inc()
        self.runs.labels(tenant).inc()
        if instructions > 0:
            self.instructions.labels(tenant).inc(instructions)

    def serve(self, address: str) -> int:
        """Serve ``/metrics`` on ``host:port`` (port 0: any); returns the port."""
        host, _, port = address.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        server, _thread = start_http_server(int(port), addr=host, registry=self.registry)
        self._http = server
        return int(server.server_address[1])

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
