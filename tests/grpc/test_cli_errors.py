"""What a new user types wrong, typed again: every failure of ``rvkvm`` is
one line on stderr with a non-zero status, never a traceback; the embedded
server ends with its parent however the parent ends."""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from importlib import metadata
from typing import List

import pytest

from rvkvm.client import cli
from rvkvm.client.errors import KvmError
from tests.emulator import rvasm as A

from .guest import jump_self, sbi_call
from .test_cli import ROOT, rvkvm, tiny_elf

SBI_EXT_DBCN = 0x4442434E
HTIF_GUEST = os.path.join(ROOT, "emulator", "guests", "hello.elf")


def in_process(capsys: pytest.CaptureFixture, *args: str) -> subprocess.CompletedProcess:
    """``rvkvm ARGS`` run by ``cli.main`` in this process (quicker than a
    subprocess for the variants of a case a subprocess test covers)."""
    try:
        status = cli.main(list(args))
    except SystemExit as exit_:
        status = exit_.code if isinstance(exit_.code, int) else 1
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), status, out, err)


def one_line(result: subprocess.CompletedProcess) -> str:
    """The single stderr line of a failed command."""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spin_elf_bytes() -> bytes:
    """Prints '!' through DBCN (so the caller knows it runs), then spins."""
    return tiny_elf(A.words(sbi_call(SBI_EXT_DBCN, 2, ord("!")) + [jump_self()]))


# -- guest files that cannot be run: checked before any server starts ------

def _x86_elf() -> bytes:
    data = bytearray(tiny_elf(A.words([jump_self()])))
    data[18:20] = struct.pack("<H", 62)  # EM_X86_64
    return bytes(data)


BAD_GUESTS = {
    "text": (b"# a README\n", "not an ELF file (bad magic)"),
    "empty": (b"", "empty file, not an ELF file"),
    "raw": (bytes(range(256)) * 4, "not an ELF file (bad magic)"),
    "x86": (_x86_elf(), "a 64-bit x86-64 ELF, not a 64-bit RISC-V one"),
    "rv32": (b"\x7fELF\x01\x01\x01" + bytes(11) + struct.pack("<H", 243) + bytes(40),
             "a 32-bit RISC-V ELF, not a 64-bit RISC-V one"),
    "truncated": (tiny_elf(A.words([jump_self()]))[:70], "malformed ELF file"),
    "outside_ram": (tiny_elf(A.words([jump_self()]), entry=0x1000),
                    "segment at 0x1000..0x1004 is outside RAM (0x80000000..0x90000000)"),
}


@pytest.mark.parametrize("kind", BAD_GUESTS)
def test_a_file_that_is_not_a_guest_is_one_line(tmp_path, capsys, kind):
    data, reason = BAD_GUESTS[kind]
    path = tmp_path / f"{kind}.bin"
    path.write_bytes(data)
    result = in_process(capsys, "run", str(path))
    assert result.returncode == cli.EXIT_BAD_GUEST
    assert one_line(result).startswith(f"rvkvm: {path}: {reason}")


def test_readme_is_not_a_guest():
    result = rvkvm("run", "README.md")
    assert result.returncode == 3
    assert one_line(result) == "rvkvm: README.md: not an ELF file (bad magic)"


def test_a_missing_file_is_one_line(tmp_path, capsys):
    result = in_process(capsys, "run", str(tmp_path / "nope.elf"))
    assert result.returncode == 1
    assert one_line(result) == f"rvkvm: {tmp_path / 'nope.elf'}: No such file or directory"


def test_an_htif_program_points_to_the_emulator(capsys):
    result = in_process(capsys, "run", HTIF_GUEST)
    assert result.returncode == 3
    line = one_line(result)
    assert "bare-metal HTIF program (it has a 'tohost' symbol)" in line
    assert line.endswith(f"run it with `python -m rvkvm.emulator run {HTIF_GUEST}`")


# -- reaching a server -----------------------------------------------------

@pytest.mark.parametrize("command", ["run", "info", "regs"])
def test_every_command_fails_fast_on_a_closed_port(capsys, command):
    port = closed_port()
    result = (rvkvm(command, "--server", f"127.0.0.1:{port}", timeout=30) if command == "info"
              else in_process(capsys, command, "--server", f"127.0.0.1:{port}"))
    assert result.returncode == 1
    assert one_line(result) == (f"rvkvm: cannot reach an rvkvm server at 127.0.0.1:{port}: "
                                "ECONNREFUSED (Connection refused)")


def test_an_unknown_host_is_named():
    result = rvkvm("info", "--server", "nosuchhost.invalid:50051", timeout=30)
    assert result.returncode == 1
    assert one_line(result).startswith(
        "rvkvm: cannot reach an rvkvm server at nosuchhost.invalid:50051: "
        "cannot resolve host 'nosuchhost.invalid'")


def test_a_silent_listener_hits_the_connect_timeout(capsys):
    with socket.socket() as sock:  # accepts TCP, never speaks HTTP/2
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        address = f"127.0.0.1:{sock.getsockname()[1]}"
        result = in_process(capsys, "info", "--server", address, "--connect-timeout", "0.5")
    assert result.returncode == 1
    assert one_line(result) == (f"rvkvm: cannot reach an rvkvm server at {address}: "
                                "no gRPC answer within 0.5 s")


# -- usage -------------------------------------------------------------------

@pytest.mark.parametrize("value", ["-1", "0", "nan", "soon"])
def test_timeout_must_be_positive(capsys, value):
    result = (rvkvm("run", "--timeout", value) if value == "-1"
              else in_process(capsys, "run", "--timeout", value))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("usage: rvkvm run ")
    assert "rvkvm run: error: argument --timeout:" in result.stderr.splitlines()[-1]


@pytest.mark.parametrize("command", ["run", "info", "regs"])
def test_unknown_options_show_the_subcommands_usage(capsys, command):
    result = rvkvm(command, "--bogus") if command == "run" else in_process(capsys, command, "--bogus")
    assert result.returncode == 2
    assert result.stderr.startswith(f"usage: rvkvm {command} ")
    assert result.stderr.splitlines()[-1] == (
        f"rvkvm {command}: error: unrecognized arguments: --bogus")


def test_version_comes_from_the_package():
    result = rvkvm("--version")
    assert result.returncode == 0
    assert result.stdout == f"rvkvm {metadata.version('rvkvm')}\n"


# -- errors from the server ----------------------------------------------------

def test_a_grpc_error_is_code_errno_and_message(server, capsys):
    result = in_process(capsys, "regs", "--server", server.address, "--abi", "bogus")
    assert result.returncode == 1
    assert one_line(result) == ("rvkvm: INVALID_ARGUMENT EINVAL (22): unknown kernel profile "
                                "'bogus' (known: linux-6.13, linux-6.18, latest)")


@pytest.mark.parametrize("command", ["run", "regs"])
def test_abi_list_prints_the_servers_profiles(server, kvm, capsys, command):
    result = in_process(capsys, command, "--server", server.address, "--abi", "list")
    assert result.returncode == 0, result.stderr
    info = kvm.get_host_info()
    lines = [line for line in result.stdout.splitlines()  # not the in-process server's logs
             if re.match(r"[\w.-]+( \(default\))?: Linux ", line)]
    names = [line.split(":")[0].replace(" (default)", "") for line in lines]
    assert names == [p.name for p in info.abi_profiles]
    assert f"{info.default_abi_profile} (default): Linux" in result.stdout


def test_info_explains_off(server, capsys):
    result = in_process(capsys, "info", "--server", server.address)
    assert "DBCN(off)" in result.stdout
    assert ("(off): disabled by default, as in KVM; a VMM turns it on (ONE_REG sbi_ext NAME = 1; "
            "rvkvm run does so for DBCN)") in result.stdout


def test_unexpected_errors_are_one_line(capsys, monkeypatch):
    def broken(args):
        raise RuntimeError("something\nunexpected")

    args = cli.build_parser().parse_args(["info"])
    monkeypatch.delenv("RVKVM_DEBUG", raising=False)
    assert cli.run_command(broken, args) == 1
    assert capsys.readouterr().err == "rvkvm: error: RuntimeError: something unexpected\n"
    monkeypatch.setenv("RVKVM_DEBUG", "1")
    assert cli.run_command(broken, args) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and err.endswith(
        "rvkvm: error: RuntimeError: something unexpected\n")


def test_an_error_without_errno_says_its_code():
    import grpc
    err = KvmError(None, "failed to connect\n to all addresses", grpc.StatusCode.UNAVAILABLE)
    assert cli.kvm_error_line(err) == "UNAVAILABLE: failed to connect to all addresses"


# -- signals and the embedded server -------------------------------------------

def _start_spinning(tmp_path, *extra: str) -> subprocess.Popen:
    elf = tmp_path / "spin.elf"
    elf.write_bytes(spin_elf_bytes())
    proc = subprocess.Popen([sys.executable, "-m", "rvkvm.client", "run", str(elf), *extra], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.read(1) == b"!"  # the guest runs
    return proc


def _children(pid: int) -> List[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def _gone(pid: int, within: float) -> bool:
    """The process ended (or is a zombie) within ``within`` seconds."""
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_the_embedded_server_dies_with_its_parent(tmp_path, sig):
    proc = _start_spinning(tmp_path)
    (child,) = _children(proc.pid)
    with open(f"/proc/{child}/cmdline", "rb") as f:
        assert b"server\0--listen" in f.read()
    proc.send_signal(sig)
    assert proc.wait(30) == -sig
    gone = _gone(child, within=20)
    if not gone:
        os.kill(child, signal.SIGKILL)
    assert gone, "the embedded server outlived rvkvm run"


def test_ctrl_c_is_quiet(server, tmp_path):
    proc = _start_spinning(tmp_path, "--server", server.address)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert (proc.returncode, err) == (130, b"")


def test_ctrl_c_stops_the_vm_and_a_second_one_interrupts():
    """stop_on_sigint: the first SIGINT stops the VMM (from a thread of its
    own) and says so; a second raises KeyboardInterrupt; afterwards the
    previous handler is back."""
    import threading

    from rvkvm.client.vmm import stop_on_sigint

    class FakeVmm:
        def __init__(self) -> None:
            self.stopped = threading.Event()
            self.thread = None

        def stop(self) -> None:
            self.thread = threading.current_thread()
            self.stopped.set()

    vmm = FakeVmm()
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        with stop_on_sigint(vmm) as interrupted:
            assert not interrupted.is_set()
            os.kill(os.getpid(), signal.SIGINT)
            assert vmm.stopped.wait(10) and interrupted.is_set()
            assert vmm.thread is not threading.main_thread()
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the handler raises before this ends
            raise AssertionError("a second SIGINT did not interrupt")
    assert signal.getsignal(signal.SIGINT) is before
