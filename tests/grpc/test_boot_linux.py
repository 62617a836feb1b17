"""End to end: ``rvkvm boot`` runs Debian's stock riscv64 kernel to the
busybox shell on the embedded server and runs commands there: ``uname -m``,
``/proc/cpuinfo`` (the ISA the VM was configured with, read back from the
device tree the same options give), the tagged-pointer program, the
command's exit status, and ``--cpus 2`` (``nproc`` says 2, both harts up
through SBI HSM).

A full boot is about 0.37 G guest instructions at the default clock (1 ns
per instruction, an rng-seed in /chosen); at the engine's speed now (about
1.8 MIPS on CPython) that is 3.5-4 minutes per boot, so these tests run
when RVKVM_BOOT=1 or RVKVM_REQUIRE_BOOT=1 is set and otherwise report
themselves skipped with that reason. Each boot checks as much as one boot
can (three boots in all); ``--run`` boots with ``quiet``. ``.ci/run`` runs
them after the README's suite, with RVKVM_REQUIRE_BOOT=1 (a kernel that
cannot be fetched fails there). RVKVM_BOOT_TIMEOUT (seconds, default 1800)
bounds each boot."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from typing import List, Set

import pytest

from .boot_kernel import debian_files
from .dtb import parse_dtb

ENABLED = os.environ.get("RVKVM_BOOT") == "1" or os.environ.get("RVKVM_REQUIRE_BOOT") == "1"
TIMEOUT = float(os.environ.get("RVKVM_BOOT_TIMEOUT", "1800"))

pytestmark = pytest.mark.skipif(
    not ENABLED, reason="a Linux boot takes ~4 min at today's ~1.8 MIPS; "
                        "set RVKVM_BOOT=1 to run them (.ci/run does)")

# A disabled extension must vanish from the guest's view (ONE_REG -> DT -> Linux).
DISABLED = "ZICBOZ"


def boot(*args: str, server: str = "") -> subprocess.CompletedProcess:
    debian_files()  # skipped (or failed under RVKVM_REQUIRE_BOOT) without a kernel
    cmd = [sys.executable, "-m", "rvkvm.client", "boot", "--timeout", str(TIMEOUT), *args]
    if server:
        cmd += ["--server", server]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT + 120,
                          stdin=subprocess.DEVNULL)


def configured_isas(*args: str, server: str = "") -> List[str]:
    """Each cpu node's ``riscv,isa`` in the device tree these boot options
    give (``--dump-dtb``: built from the vCPUs' ONE_REG state, no boot)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "vm.dtb")
        r = boot("--dump-dtb", path, *args, server=server)
        assert r.returncode == 0, r.stderr[-3000:]
        with open(path, "rb") as f:
            tree = parse_dtb(f.read())
    cpus = sorted(p for p in tree if p.startswith("/cpus/cpu@") and p.count("/") == 2)
    return [tree[p]["riscv,isa"].rstrip(b"\0").decode() for p in cpus]


def extensions(isa: str) -> Set[str]:
    """``rv64imafdc_zba_...`` as a set: single letters and named extensions."""
    base, *named = isa.strip().split("_")
    assert base.startswith("rv64"), isa
    return set(base[4:]) | set(named)


def cpuinfo_isas(out: str, key: str = "isa") -> List[str]:
    return [line.split(":", 1)[1].strip() for line in out.splitlines()
            if line.split(":", 1)[0].strip() == key]


def test_uname_cpuinfo_tagged_pointers_and_exit_status():
    opts = ("--disable-isa-ext", DISABLED)
    (configured,) = configured_isas(*opts)
    r = boot(*opts, "--run", "uname -m; grep '^isa' /proc/cpuinfo; tagptr; "
             "echo tagptr=$?; exit 7")
    assert r.returncode == 7, r.stderr[-3000:]  # the command's status is rvkvm's
    lines = r.stdout.splitlines()
    assert lines[0] == "riscv64"
    (isa,) = cpuinfo_isas(r.stdout)
    assert extensions(isa) == extensions(configured)
    assert DISABLED.lower() not in extensions(isa)
    assert {"ssnpm", "sstc", "zbb"} <= extensions(isa)
    assert "tagptr: stores and loads through tagged pointers work" in lines
    assert "tagptr=0" in lines


def test_two_vcpus():
    configured = configured_isas("--cpus", "2")
    assert len(configured) == 2
    r = boot("--cpus", "2", "--run", "nproc; cat /sys/devices/system/cpu/online; "
             "grep -E '^(processor|hart|isa)' /proc/cpuinfo; uname -m; tagptr")
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.splitlines()
    assert lines[:2] == ["2", "0-1"]
    assert cpuinfo_isas(r.stdout, "processor") == ["0", "1"]
    assert sorted(cpuinfo_isas(r.stdout, "hart")) == ["0", "1"]
    # the ISA every hart has in common, and each hart's own
    (common,) = set(cpuinfo_isas(r.stdout))
    assert extensions(common) == extensions(configured[0])
    assert "riscv64" in lines and "tagptr: ok" in lines
    assert "2 vCPU" in r.stderr


def test_tagged_pointers_refused_without_ssnpm_on_the_host():
    from rvkvm.server.kvm.profiles import HostProfile
    from rvkvm.server.rpc.config import ServerConfig

    from .conftest import ServerThread

    thread = ServerThread(ServerConfig(host=HostProfile.default().without("ssnpm"))).start()
    try:
        (configured,) = configured_isas(server=thread.address)
        r = boot("--run", "grep -m1 '^isa' /proc/cpuinfo; tagptr; echo tagptr=$?",
                 server=thread.address)
    finally:
        thread.stop()
    assert r.returncode == 0, r.stderr[-3000:]
    isa = r.stdout.splitlines()[0].split(":", 1)[1]
    assert extensions(isa) == extensions(configured)
    assert "ssnpm" not in extensions(isa)
    assert "tagptr=2" in r.stdout.splitlines()
