"""``python -m bench.server --quick`` runs and prints its tables (figures
are printed, never checked: timing depends on the machine)."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HEADINGS = ("== ONE_REG over gRPC", "== MMIO exits", "== Console through the UART", "== Guest MIPS",
            "== Server memory")


def test_bench_quick_runs_and_prints_its_tables():
    proc = subprocess.run([sys.executable, "-m", "bench.server", "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for heading in HEADINGS:
        assert heading in proc.stdout, proc.stdout
    for column in ("BatchOneReg regs/s", "RunStream exits/s", "THR coalesced B/s", "server/bare",
                   "RSS after MiB"):
        assert column in proc.stdout, proc.stdout
