"""``create_server``: a ``grpc.aio`` server with the KVM service, health,
reflection and the interceptors, bound but not started."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Optional, Tuple

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from rvkvm_proto.rvkvm.v1 import kvm_pb2 as pb
from rvkvm_proto.rvkvm.v1 import kvm_pb2_grpc as pb_grpc
from server.kvm import KvmSystem

from .config import ServerConfig
from .interceptors import KvmErrorInterceptor, LoggingInterceptor
from .registry import Pacing, VmRegistry
from .servicer import KvmServicer

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Kvm"].full_name


class Server:
    """The running service: the ``grpc.aio`` server plus what it owns (the
    VMs and the worker threads), stopped together."""

    def __init__(self, grpc_server: grpc.aio.Server, registry: VmRegistry,
                 health_servicer: health.aio.HealthServicer,
                 pools: Tuple[ThreadPoolExecutor, ...]) -> None:
        self.grpc_server = grpc_server
        self.registry = registry
        self._health = health_servicer
        self._pools = pools

    async def start(self) -> None:
        await self.grpc_server.start()

    async def wait_for_termination(self, timeout: Optional[float] = None) -> bool:
        return await self.grpc_server.wait_for_termination(timeout)

    async def stop(self, grace: Optional[float] = None) -> None:
        """Report NOT_SERVING, destroy every VM (running vCPUs are kicked, so
        their Runs end), stop the server and the threads."""
        await self._health.enter_graceful_shutdown()
        self.registry.destroy_all()
        await self.grpc_server.stop(grace)
        for pool in self._pools:
            pool.shutdown(wait=False, cancel_futures=True)


async def create_server(address: str,
                        config: Optional[ServerConfig] = None) -> Tuple[Server, int]:
    """A server for ``address`` (``host:port``; port 0 picks one) and the
    port it bound; call ``await server.start()``."""
    config = config or ServerConfig()
    system = KvmSystem(config.host, engine=config.engine)
    registry = VmRegistry(system, config.max_vms,
                          Pacing(config.run_slice, config.idle_slice, config.run_quantum,
                                 config.inline_slice))
    ops_pool = ThreadPoolExecutor(config.ops_threads, thread_name_prefix="rvkvm-ops")
    run_pool = ThreadPoolExecutor(config.run_threads, thread_name_prefix="rvkvm-run")
    server = grpc.aio.server(
        # the first is outermost: logging sees the KvmError before it becomes a status
        interceptors=[KvmErrorInterceptor(), LoggingInterceptor()],
        options=config.grpc_options,
    )
    pb_grpc.add_KvmServicer_to_server(
        KvmServicer(registry, config.max_transfer, config.max_vms, ops_pool, run_pool), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    if config.reflection:
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    return Server(server, registry, health_servicer, (run_pool, ops_pool)), port
