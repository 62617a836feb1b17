"""A client that is not Python: ``clients/node/run_hello.js`` (@grpc/grpc-js +
@grpc/proto-loader) runs guests against a real server process, and
``buf lint`` (the @bufbuild/buf devDependency) passes on proto/.

These tests need Node.js and ``npm ci`` in clients/node (CI does both); when
either is missing they fail, saying what to run, rather than skip.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import struct
import subprocess
import sys
from typing import Iterator, List

import pytest

from tests.emulator import rvasm as A
from tests.server.kvm_runtime_guest import sbi_call

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NODE_DIR = os.path.join(ROOT, "clients", "node")
RUN_HELLO = os.path.join(NODE_DIR, "run_hello.js")
BUF = os.path.join(NODE_DIR, "node_modules", ".bin", "buf")
HELLO_TEXT = ("Hello from an S-mode guest on rvkvm (SBI DBCN console)\n"
              "Device tree found at a1; shutting down through SBI SRST.\n")
SBI_EXT_SRST = 0x53525354
ENTRY = 0x8020_0000
INSTALL_HINT = "run `(cd clients/node && npm ci --no-audit --no-fund)`"


def node() -> str:
    path = shutil.which("node")
    if path is None:
        pytest.fail("Node.js (`node`, >= 18) is not on PATH; the Node client tests need it")
    for module in ("@grpc/grpc-js", "@grpc/proto-loader"):
        if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", *module.split("/"))):
            pytest.fail(f"{module} is not installed in clients/node: {INSTALL_HINT}")
    return path


class ServerProcess:
    """``python -m rvkvm.server`` on an ephemeral loopback port."""

    def __init__(self, log_path: str) -> None:
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rvkvm.server", "--listen", "127.0.0.1:0", "--log-level", "warning"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=self.log, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # "" if the server died
        prefix = "rvkvm-server listening on "
        if not line.startswith(prefix):
            self.stop()
            with open(log_path, encoding="utf-8", errors="replace") as f:
                pytest.fail(f"server did not start: {line!r}\n{f.read()}")
        self.address = line[len(prefix):].strip()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.log.close()


@pytest.fixture(scope="module")
def server_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(str(tmp_path_factory.mktemp("node") / "server.log"))
    yield server
    server.stop()


def run_node(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([node(), RUN_HELLO, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def tiny_elf(code: bytes, entry: int = ENTRY) -> bytes:
    """An ELF64 RISC-V executable with one PT_LOAD segment holding ``code``."""
    ehdr = struct.pack("<16sHHIQQQIHHHHHH", b"\x7fELF\x02\x01\x01" + bytes(9), 2, 243, 1,
                       entry, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0x1000, entry, entry, len(code), len(code), 0x1000)
    return (ehdr + phdr).ljust(0x1000, b"\0") + code


def test_node_client_runs_the_hello_guest(server_process: ServerProcess) -> None:
    result = run_node(server_process.address)
    assert result.returncode == 0, result.stderr
    assert result.stdout == HELLO_TEXT
    assert result.stderr == ""


def test_node_client_fails_on_a_failure_shutdown(server_process: ServerProcess,
                                                 tmp_path: pathlib.Path) -> None:
    elf = str(tmp_path / "fail.elf")
    code: List[int] = sbi_call(SBI_EXT_SRST, 0, 0, 1)  # shutdown, reason: system failure
    (tmp_path / "fail.elf").write_bytes(tiny_elf(A.words(code)))
    result = run_node(server_process.address, elf)
    assert result.returncode == 1
    assert "system event 1 with reason 1" in result.stderr


def test_node_client_reports_an_unreachable_server() -> None:
    result = run_node("127.0.0.1:1", "--timeout", "5")
    assert result.returncode == 2
    assert "UNAVAILABLE" in result.stderr


def test_buf_lint_is_clean() -> None:
    if not os.path.exists(BUF):
        pytest.fail(f"buf (@bufbuild/buf) is not installed in clients/node: {INSTALL_HINT}")
    result = subprocess.run([BUF, "lint"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
