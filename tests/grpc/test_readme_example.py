"""The README's library example runs, as written, against a real server,
and prints what both guests print; ``Kvm.connect`` and
``Kvm.connect_async`` connect, close their channel, and fail fast with one
``KvmError`` when nothing listens."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys

import grpc
import pytest

from rvkvm.client import Kvm, KvmError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
README_ADDRESS = "127.0.0.1:50051"
HELLO_TEXT = ("Hello from an S-mode guest on rvkvm (SBI DBCN console)\n"
              "Device tree found at a1; shutting down through SBI SRST.\n")
UART_TEXT = ("Hello from an MMIO device guest: this text went byte by byte through "
             "the NS16550A at 0x10000000\n")


def readme_example() -> str:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    section = text.split("## The client library", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the library section has one python example"
    assert README_ADDRESS in blocks[0]
    return blocks[0]


def test_readme_library_example_runs(server):
    code = readme_example().replace(README_ADDRESS, server.address)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == HELLO_TEXT + UART_TEXT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connect_and_close(server):
    with Kvm.connect(server.address, timeout=10) as kvm:
        assert kvm.get_api_version() == 12
    with pytest.raises(ValueError):  # the channel is closed
        kvm.get_api_version()


def test_connect_fails_with_one_error():
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(KvmError) as info:
        Kvm.connect(address, timeout=0.5)
    err = info.value
    assert err.errno is None and err.code == grpc.StatusCode.UNAVAILABLE
    assert str(err) == f"StatusCode.UNAVAILABLE: cannot reach an rvkvm server at {address} within 0.5 s"


def test_connect_async(server):
    async def main() -> int:
        async with await Kvm.connect_async(server.address, timeout=10) as kvm:
            vm = await kvm.create_vm()
            await vm.destroy()
            return await kvm.get_api_version()

    assert asyncio.run(main()) == 12


def test_connect_async_fails_with_one_error():
    address = f"127.0.0.1:{free_port()}"

    async def main() -> None:
        await Kvm.connect_async(address, timeout=0.5)

    with pytest.raises(KvmError) as info:
        asyncio.run(main())
    assert "cannot reach an rvkvm server at" in str(info.value)
