"""More than one waiting call request per method on the ``grpc.aio`` server.

grpc's core hands a new call to the application only against a call
request the application made beforehand, one per registered method. The
``grpc.aio`` server of recent grpcio (since grpc/grpc#41796; 1.85.3 here)
keeps exactly one such request per method and makes the next only after
the event loop has gone round for the last (a task, an ``asyncio.wait``
over every method's request, another task): under load every method accepts about one call per few loop
iterations, and the calls beyond that wait inside the core, in arrival
order, unseen by the server's own scheduling. Measured with
``bench.load`` (16 client processes x 64 busy VMs on 2 cores, grpcio
1.85.3): GetOneReg p50 264 ms at the client while the server took 6 ms
from accepting it to answering it; 1,024 Runs waiting in the core for a
worker pool that was three quarters idle. (grpc/grpc#43461, open, proposes
a persistent accept loop upstream.)

``AcceptLoops`` adds, per method, a number of persistent accept loops of
its own beside grpc's: each makes a call request for its method, hands the
call it gets to grpc's own per-call handling (the interceptors, the
handler lookup, cancellation: the functions grpc's accept loop calls) and
makes the next request at once. It uses grpc's private Cython API, so it
checks that API first and, where the installed grpcio differs, does
nothing but say so (``installed`` is False; grpc's own loop serves alone).

How many loops a method gets is a policy: calls that answer at once (ONE_REG,
health, VM calls) get many, so they never queue behind others in the core;
``Run*`` gets few, because every Run accepted costs event-loop time while it
waits for a slice, time the quick calls would otherwise get: Runs beyond
what the workers can run wait in the core, which is back-pressure, not loss
(the client sees a slower Run, not an error).
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set

import grpc
import structlog

# What grpc's accept loop calls, with the parameters it passes: checked by
# name before anything is used (``supported``).
_EXPECTED = {
    "_handle_rpc": ("method_name", "method_resolver", "interceptors", "rpc_state", "loop",
                    "concurrency_exceeded"),
    "_schedule_rpc_coro": ("rpc_coro", "rpc_state", "loop", "method_name"),
}


def _cygrpc() -> Any:
    from grpc._cython import cygrpc
    return cygrpc


def supported() -> Optional[str]:
    """None when this grpcio has the private API the loops use, else why not."""
    try:
        cygrpc = _cygrpc()
    except ImportError as err:  # pragma: no cover - grpc without its Cython core
        return f"grpc._cython.cygrpc: {err}"
    for name, params in _EXPECTED.items():
        fn = getattr(cygrpc, name, None)
        if fn is None:
            return f"grpcio {grpc.__version__} has no cygrpc.{name}"
        try:
            found = tuple(inspect.signature(fn).parameters)
        except (TypeError, ValueError):
            return f"grpcio {grpc.__version__}: cygrpc.{name} has no signature"
        if found != params:
            return f"grpcio {grpc.__version__}: cygrpc.{name}{found}, expected {params}"
    if not hasattr(getattr(cygrpc, "AioServer", None), "_request_registered_call"):
        return f"grpcio {grpc.__version__} has no AioServer._request_registered_call"
    if getattr(cygrpc, "_MethodResolver", None) is None:
        return f"grpcio {grpc.__version__} has no cygrpc._MethodResolver"
    return None


class HandlerRecorder:
    """Stands in for the server while services register (``add_*_to_server``,
    ``enable_server_reflection``): forwards every registration to it and
    keeps a copy, since the loops must resolve handlers exactly as grpc's
    own loop does."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server
        self.generic: List[Any] = []
        self.registered: Dict[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, handlers: Sequence[Any]) -> None:
        self._server.add_generic_rpc_handlers(handlers)
        self.generic.extend(handlers)

    def add_registered_method_handlers(self, service: str,
                                       handlers: Dict[str, grpc.RpcMethodHandler]) -> None:
        self._server.add_registered_method_handlers(service, handlers)
        for name, handler in handlers.items():
            self.registered[f"/{service}/{name}"] = handler

    def __getattr__(self, name: str) -> Any:  # anything else a helper may call
        return getattr(self._server, name)


def default_policy(quick: int, run: int) -> Callable[[str], int]:
    """``quick`` loops for every method, ``run`` for those named ``Run*``."""
    def loops(method: str) -> int:
        return run if method.rsplit("/", 1)[-1].startswith("Run") else quick
    return loops


class AcceptLoops:
    """The extra accept loops of one started server (``start``/``stop``)."""

    def __init__(self, server: grpc.aio.Server, recorder: HandlerRecorder,
                 interceptors: Sequence[Any], loops_for: Callable[[str], int]) -> None:
        self._server = server
        self._recorder = recorder
        self._interceptors = tuple(interceptors)
        self._loops_for = loops_for
        self._tasks: List[asyncio.Task] = []
        self._calls: Set[asyncio.Task] = set()
        self.accepted = 0
        self.failures = 0  # loops that ended on a request the core refused at once
        self.installed = False
        self.unsupported: Optional[str] = None

    def start(self) -> None:
        """Start the loops (after ``server.start()``), or say why not."""
        reason = supported()
        if reason is not None:
            self._unavailable(reason)
            return
        cygrpc = _cygrpc()
        aio = getattr(self._server, "_server", None)
        if not isinstance(aio, cygrpc.AioServer):
            self._unavailable("not a grpc.aio server")
            return
        try:
            resolver = cygrpc._MethodResolver(self._recorder.generic,
                                              self._recorder.registered)
        except Exception as exc:  # a grpcio whose resolver is built otherwise
            self._unavailable(f"grpcio {grpc.__version__}: cygrpc._MethodResolver: {exc}")
            return
        loop = asyncio.get_running_loop()
        for method in self._recorder.registered:
            for _ in range(max(0, self._loops_for(method))):
                self._tasks.append(loop.create_task(
                    self._accept(cygrpc, aio, resolver, method, loop),
                    name=f"rvkvm-accept {method}"))
        self.installed = True
        structlog.get_logger("rvkvm.server").debug("accept loops", loops=len(self._tasks),
                                                   grpcio=grpc.__version__)

    def _unavailable(self, reason: str) -> None:
        self.unsupported = reason
        structlog.get_logger("rvkvm.server").warning(
            "extra accept loops unavailable: grpc's own accept loop alone "
            "(one call request per method)", reason=reason)

    async def _accept(self, cygrpc: Any, aio: Any, resolver: Any, method: str,
                      loop: asyncio.AbstractEventLoop) -> None:
        name = method.encode()
        failed = getattr(cygrpc, "_RequestCallError", None)
        while aio.is_running():
            try:
                rpc_state = await aio._request_registered_call(name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The core failed the request: at a shutdown every request
                # fails so; while serving, ask again (as grpc's loop does).
                # A request refused at once (grpc's InternalError) would be
                # refused again: this loop ends, grpc's own goes on.
                if failed is not None and isinstance(exc, failed):
                    continue
                self.failures += 1
                return
            self.accepted += 1
            coro = cygrpc._handle_rpc(method, resolver, self._interceptors, rpc_state, loop,
                                      False)
            task = loop.create_task(cygrpc._schedule_rpc_coro(coro, rpc_state, loop, method),
                                    name="rpc_task")
            self._calls.add(task)  # the loop keeps only a weak reference
            task.add_done_callback(self._calls.discard)

    async def stop(self) -> None:
        """Cancel the loops' waiting requests (grpc's shutdown fails them
        anyway; calls already accepted run on)."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def loops(self) -> int:
        """Loops started."""
        return len(self._tasks)

    @property
    def running(self) -> int:
        """Loops still taking calls."""
        return sum(1 for task in self._tasks if not task.done())


class AcceptCollector:
    """Prometheus figures of the accept loops: how many run (0 where this
    grpcio lacks the API they use: an upgrade that drops it shows here)
    and the calls they took."""

    def __init__(self, loops: AcceptLoops) -> None:
        self._loops = loops

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        running = GaugeMetricFamily("rvkvm_accept_loops",
                                    "accept loops beside grpc's own (0: grpc's loop alone)")
        running.add_metric([], self._loops.running)
        taken = CounterMetricFamily("rvkvm_accept_loop_calls",
                                    "calls the accept loops took from gRPC's core")
        taken.add_metric([], self._loops.accepted)
        yield running
        yield taken
