"""A real rvkvm server on an ephemeral loopback port, in its own thread and
event loop, so both the sync and the asyncio client can talk to it.

``server``/``kvm`` run the fast engine; ``engine_server``/``engine_kvm`` are
parametrized over both engines (``emulator.hart.ENGINES``), for the tests
that run guests quickly enough on the reference interpreter too.

``RVKVM_TEST_WORKERS=N`` runs these servers' vCPUs in N worker processes
(``RVKVM_TEST_WORKER_PYTHON``: their interpreter, default as rvkvm-server's)
instead of in-process; ``workers_server`` always has 2."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from typing import Any, Iterator, Optional

import grpc
import pytest
import structlog

from rvkvm.client import Kvm
from rvkvm.emulator.hart import ENGINES
from rvkvm.server.rpc import Server, ServerConfig, create_server
from rvkvm.server.rpc.limits import RequestLimits

# The in-process servers log every RPC at info level; on stderr, as
# rvkvm-server does, so that stdout stays what the CLI under test prints.
# (structlog.testing.capture_logs still sees every line.)
structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))


class ServerThread:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.port = 0
        self.server: Optional[Server] = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        self.server, self.port = await create_server("127.0.0.1:0", self.config)
        await self.server.start()

    def start(self) -> ServerThread:
        self._thread.start()
        self._ready.wait(60)  # PyPy workers start slowly on a loaded machine
        return self

    def stop(self) -> None:
        assert self.server is not None
        asyncio.run_coroutine_threadsafe(self.server.stop(None), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def call(self, coro: Any, timeout: float = 60) -> Any:
        """Run a coroutine on the server's event loop (grpc.aio is happiest
        with one event loop per process)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def _test_workers() -> int:
    return int(os.environ.get("RVKVM_TEST_WORKERS", "0") or 0)


def _test_config(engine: str, workers: Optional[int] = None) -> ServerConfig:
    return ServerConfig(engine=engine, run_slice=20_000,
                        limits=RequestLimits(max_transfer=64 * 1024),
                        workers=_test_workers() if workers is None else workers,
                        worker_python=os.environ.get("RVKVM_TEST_WORKER_PYTHON", ""))


@pytest.fixture(scope="session")
def server() -> Iterator[ServerThread]:
    thread = ServerThread(_test_config("fast")).start()
    yield thread
    thread.stop()


@pytest.fixture(scope="session")
def reference_server() -> Iterator[ServerThread]:
    thread = ServerThread(_test_config("reference")).start()
    yield thread
    thread.stop()


@pytest.fixture(params=ENGINES)
def engine_server(request: pytest.FixtureRequest) -> ServerThread:
    """The session's server of each engine in turn."""
    name = "server" if request.param == "fast" else f"{request.param}_server"
    thread = request.getfixturevalue(name)
    assert thread.config.engine == request.param
    return thread


@pytest.fixture
def engine_kvm(engine_server: ServerThread) -> Iterator[Kvm]:
    with grpc.insecure_channel(engine_server.address) as ch:
        yield Kvm(ch, timeout=30, max_transfer=64 * 1024)


@pytest.fixture
def channel(server: ServerThread) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.address) as ch:
        yield ch


@pytest.fixture
def kvm(channel: grpc.Channel) -> Kvm:
    return Kvm(channel, timeout=30, max_transfer=64 * 1024)
