"""``rvkvm-server``'s command line: a port in use is refused in one line
(another rvkvm-server's too: ports are never shared), bad options are
usage errors, both engines serve guests under their one spelling."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from importlib import metadata

import pytest

from rvkvm.client.cli import HELLO_GUEST
from rvkvm.server.__main__ import main as server_main
from rvkvm.server.rpc import ServerConfig, create_server

from .test_cli import HELLO_TEXT, ROOT, rvkvm


def rvkvm_server(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rvkvm.server", *args], cwd=ROOT, timeout=timeout,
                          capture_output=True, text=True)


def test_a_second_server_on_the_same_port_is_refused(server):
    result = rvkvm_server("--listen", server.address)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (f"rvkvm-server: cannot listen on {server.address}: "
                             "EADDRINUSE (Address already in use)\n")


def test_a_port_held_by_another_program_is_one_line():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        address = f"127.0.0.1:{sock.getsockname()[1]}"
        result = rvkvm_server("--listen", address)
    assert result.returncode == 1
    assert result.stderr == (f"rvkvm-server: cannot listen on {address}: "
                             "EADDRINUSE (Address already in use)\n")


def test_create_server_never_shares_a_port():
    # gRPC sets SO_REUSEPORT by default: two servers would split the clients
    async def twice() -> None:
        first, port = await create_server("127.0.0.1:0", ServerConfig())
        try:
            with pytest.raises(OSError, match="cannot listen on"):
                await create_server(f"127.0.0.1:{port}", ServerConfig())
        finally:
            await first.stop(None)

    asyncio.run(twice())


@pytest.mark.parametrize("listen", ["50051", "localhost", "127.0.0.1:99999", "a b:1", ":1"])
def test_bad_listen_syntax_is_a_usage_error(capsys, listen):
    if listen == "50051":
        result = rvkvm_server("--listen", listen)
    else:  # the variants in this process
        with pytest.raises(SystemExit) as exit_:
            server_main(["--listen", listen])
        result = subprocess.CompletedProcess([], exit_.value.code, "", capsys.readouterr().err)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"rvkvm-server: error: argument --listen: not a host:port address: {listen!r} "
        "(e.g. 127.0.0.1:50051, [::1]:0)")


def test_unknown_engine_is_a_usage_error():
    result = rvkvm_server("--engine", "turbo")
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "rvkvm-server: error: argument --engine: invalid choice: 'turbo' "
        "(choose from fast, reference)")


def test_create_server_refuses_an_unknown_engine():
    with pytest.raises(ValueError, match="engine must be one of fast, reference, not 'interp'"):
        asyncio.run(create_server("127.0.0.1:0", ServerConfig(engine="interp")))


def test_version():
    result = rvkvm_server("--version")
    assert result.returncode == 0
    assert result.stdout == f"rvkvm-server {metadata.version('rvkvm')}\n"


@pytest.mark.parametrize("engine", ["reference", "interp"])
def test_the_reference_engine_serves_guests(engine):
    # `--engine interp` (the old spelling) made every CreateVcpu fail with UNKNOWN
    proc = subprocess.Popen([sys.executable, "-m", "rvkvm.server", "--listen", "127.0.0.1:0",
                             "--engine", engine, "--log-level", "warning"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().split()[-1]
        result = rvkvm("run", HELLO_GUEST, "--server", address)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(HELLO_TEXT)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    deprecated = "rvkvm-server: warning: --engine interp is deprecated, use --engine reference\n"
    assert err == (deprecated if engine == "interp" else "")


def test_unexpected_errors_are_one_line(capsys, monkeypatch):
    def broken(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("rvkvm.server.__main__.serve", broken)
    # structlog's configuration is process-wide: keep the other tests' one
    monkeypatch.setattr("rvkvm.server.__main__._configure_logging", lambda *args: None)
    monkeypatch.delenv("RVKVM_DEBUG", raising=False)
    assert server_main(["--listen", "127.0.0.1:0"]) == 1
    assert capsys.readouterr().err == "rvkvm-server: error: RuntimeError: boom\n"


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 0)])
def test_signals_stop_the_server_quietly(sig, status):
    proc = subprocess.Popen([sys.executable, "-m", "rvkvm.server", "--listen", "127.0.0.1:0"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert "listening on" in proc.stdout.readline()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == status and "Traceback" not in err


def test_exit_on_stdin_eof():
    proc = subprocess.Popen([sys.executable, "-m", "rvkvm.server", "--listen", "127.0.0.1:0",
                             "--exit-on-stdin-eof"], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdin is not None
    assert "listening on" in proc.stdout.readline()
    proc.stdin.close()
    assert proc.wait(30) == 0
    assert proc.stderr is not None and "Traceback" not in proc.stderr.read()
