"""The server process and its edges: rvkvm-server options, quotas, logging."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys

import grpc
import pytest
import structlog

from rvkvm.client import Kvm, KvmError
from rvkvm.server.rpc import ServerConfig

from .conftest import ServerThread

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_rvkvm_server_listens_serves_and_stops_on_sigterm():
    proc = subprocess.Popen(
        [sys.executable, "-m", "rvkvm.server", "--listen", "127.0.0.1:0", "--log-level", "warning",
         "--host-minus", "ssnpm"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("rvkvm-server listening on 127.0.0.1:")
        with grpc.insecure_channel(line.split()[-1]) as channel:
            info = Kvm(channel, timeout=30).get_host_info()
        assert "ssnpm" not in info.isa_extensions
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        proc.kill()


def test_unknown_host_extension_is_a_usage_error():
    result = subprocess.run([sys.executable, "-m", "rvkvm.server", "--host-plus", "nope"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "nope" in result.stderr


def test_vm_quota():
    thread = ServerThread(ServerConfig(max_vms=1)).start()
    try:
        with grpc.insecure_channel(thread.address) as channel:
            kvm = Kvm(channel, timeout=30)
            vm = kvm.create_vm()
            with pytest.raises(KvmError) as info:
                kvm.create_vm()
            assert info.value.errno == errno.ENOSPC
            assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            vm.destroy()
            kvm.create_vm().destroy()
    finally:
        thread.stop()


def test_every_rpc_is_logged_with_its_errno(kvm):
    vm = kvm.create_vm()
    with structlog.testing.capture_logs() as logs:
        with pytest.raises(KvmError):
            vm.vcpu(9).get_reg("core pc")
    entries = [e for e in logs if e.get("method") == "/rvkvm.v1.Kvm/GetOneReg"]
    assert entries and entries[0]["code"] == "NOT_FOUND" and entries[0]["errno"] == "EBADF"
    assert entries[0]["log_level"] == "info" and entries[0]["vm_id"] == vm.id
    assert entries[0]["vcpu_id"] == 9 and entries[0]["tenant"] == "default"
    assert "duration_ms" in entries[0] and entries[0]["request_id"]
    vm.destroy()
