"""A client that is not Python, written from proto/ alone:
``clients/node/run_hello.js`` (@grpc/grpc-js + @grpc/proto-loader) runs every
bundled guest against a real server process (its own, started by
``npm run hello``, or a given one), serving the DBCN console and the UART's
MMIO exits and decoding the errno detail of a failed call; and ``buf lint``
(the @bufbuild/buf devDependency) passes on proto/.

These tests need Node.js and ``npm ci`` in clients/node (CI does both); when
either is missing they fail, saying what to run, rather than skip.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import struct
import subprocess
import sys
import time
from typing import Callable, Dict, Iterator, List, Optional

import pytest

from tests.emulator import rvasm as A
from tests.server.kvm_runtime_guest import jump_self, li, sbi_call

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NODE_DIR = os.path.join(ROOT, "clients", "node")
RUN_HELLO = os.path.join(NODE_DIR, "run_hello.js")
BUF = os.path.join(NODE_DIR, "node_modules", ".bin", "buf")
HELLO_TEXT = ("Hello from an S-mode guest on rvkvm (SBI DBCN console)\n"
              "Device tree found at a1; shutting down through SBI SRST.\n")
SBI_EXT_SRST = 0x53525354
SBI_EXT_DBCN = 0x4442434E
DBCN_CONSOLE_WRITE_BYTE = 2
ENTRY = 0x8020_0000
INSTALL_HINT = "run `(cd clients/node && npm ci --no-audit --no-fund)`"
GUEST_TEXT = {
    "hello_sbi.elf": HELLO_TEXT,
    "pmlen.elf": ("pmlen: asking SBI FWFT for POINTER_MASKING_PMLEN = 7\n"
                  "pmlen: PMLEN is 7 (fwft_get agrees)\n"
                  "pmlen: tagged pointers work: bits 63:57 of data addresses are ignored\n"
                  "pmlen: PMLEN back to 0; done\n"),
    "uart.elf": ("Hello from an MMIO device guest: this text went byte by byte through "
                 "the NS16550A at 0x10000000\n"),
}


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


def run_node(*args: str, env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    return subprocess.run([node(), RUN_HELLO, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=env)


def env_without_rvkvm_server(python: str) -> Dict[str, str]:
    """The environment with no ``rvkvm-server`` on PATH and PYTHON set, so
    run_hello.js starts ``PYTHON -m rvkvm.server`` (as without an activated venv)."""
    path = [d for d in os.environ.get("PATH", "").split(os.pathsep)
            if d and not os.path.exists(os.path.join(d, "rvkvm-server"))]
    return {**os.environ, "PATH": os.pathsep.join(path), "PYTHON": python}


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


def test_node_client_runs_every_bundled_guest(server_process: ServerProcess) -> None:
    guests = sorted(n for n in os.listdir(os.path.join(ROOT, "client", "guests"))
                    if n.endswith(".elf"))
    assert guests == sorted(GUEST_TEXT)
    result = run_node(server_process.address, "--all")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "".join(f"==> client/guests/{g}\n{GUEST_TEXT[g]}" for g in guests)
    assert result.stderr == ""


def test_uart_guest_through_mmio_exits(server_process: ServerProcess) -> None:
    result = run_node(server_process.address, "client/guests/uart.elf")
    assert result.returncode == 0, result.stderr
    assert result.stdout == GUEST_TEXT["uart.elf"]


def test_npm_run_hello_starts_its_own_server() -> None:
    node()
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is not on PATH; the Node client tests need it")
    result = subprocess.run([npm, "run", "-s", "hello"], cwd=NODE_DIR, capture_output=True,
                            text=True, timeout=120, env=env_without_rvkvm_server(sys.executable))
    assert result.returncode == 0, result.stderr
    assert result.stdout == HELLO_TEXT


def test_a_server_that_does_not_start_is_one_line() -> None:
    result = run_node(env=env_without_rvkvm_server(sys.executable + "-no-such-python"))
    assert result.returncode == 2
    assert result.stderr.startswith("run_hello: cannot start ") and result.stderr.count("\n") == 1


def children_of(pid: int) -> List[int]:
    """Pids whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(predicate: Callable[[], bool], seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_its_own_server_ends_with_it(tmp_path: pathlib.Path) -> None:
    # prints one line (so the server is up and the guest running), then spins
    code = sbi_call(SBI_EXT_DBCN, DBCN_CONSOLE_WRITE_BYTE, ord("\n")) + [jump_self()]
    (tmp_path / "spin.elf").write_bytes(tiny_elf(A.words(code)))
    server_pid = 0
    proc = subprocess.Popen([node(), RUN_HELLO, str(tmp_path / "spin.elf")], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env_without_rvkvm_server(sys.executable))
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "\n", proc.stderr
        (server_pid,) = children_of(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 143
        assert wait_for(lambda: not alive(server_pid)), "the server outlived its client"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if server_pid and alive(server_pid):  # orphaned: the assertion above failed
            os.kill(server_pid, signal.SIGKILL)


def test_node_client_reports_the_errno_detail(server_process: ServerProcess,
                                              tmp_path: pathlib.Path) -> None:
    jump_to_non_ram = A.words(li(5, 0x1000) + [A.i(0x67, 0, 0, 5, 0)])  # jr 0x1000
    (tmp_path / "jump.elf").write_bytes(tiny_elf(jump_to_non_ram))
    result = run_node(server_process.address, str(tmp_path / "jump.elf"))
    assert result.returncode == 2
    assert "RunStream: UNIMPLEMENTED:" in result.stderr
    assert result.stderr.rstrip().endswith("[EOPNOTSUPP (95)]")


def test_node_client_usage_errors() -> None:
    for args in (["--bogus"], ["--timeout", "-1"], ["no-such-guest.elf"]):
        result = run_node(*args)
        assert result.returncode == 2, args
        assert result.stderr.startswith("run_hello: "), args


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
