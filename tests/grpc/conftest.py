"""A real rvkvm server on an ephemeral loopback port, in its own thread and
event loop, so both the sync and the asyncio client can talk to it."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Iterator, Optional

import grpc
import pytest

from rvkvm.client import Kvm
from rvkvm.server.rpc import Server, ServerConfig, create_server
from rvkvm.server.rpc.limits import RequestLimits


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
        self._ready.wait(10)
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


@pytest.fixture(scope="session")
def server() -> Iterator[ServerThread]:
    thread = ServerThread(ServerConfig(run_slice=20_000,
                                       limits=RequestLimits(max_transfer=64 * 1024))).start()
    yield thread
    thread.stop()


@pytest.fixture
def channel(server: ServerThread) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.address) as ch:
        yield ch


@pytest.fixture
def kvm(channel: grpc.Channel) -> Kvm:
    return Kvm(channel, timeout=30, max_transfer=64 * 1024)
