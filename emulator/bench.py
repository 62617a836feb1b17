"""Benchmark: guest MIPS of both engines, side by side in one run.

    python -m emulator.bench [--programs crc32,nqueens,qsort] [--ref-insns N] [--no-pypy]

Each bundled guest runs to completion on the fast engine, and for its first
``--ref-insns`` instructions on the reference interpreter (the interpreter is
slow; MIPS are comparable because both engines run the same instruction
stream). When ``pypy3`` is installed (and this is CPython), the same
benchmark is re-run under PyPy and its table printed too.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

from .machine import Machine

GUEST_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "guests")
PROGRAMS = ("crc32", "nqueens", "qsort")


def run_once(path: str, engine: str, max_insns: Optional[int]) -> Tuple[int, float, str]:
    """(instructions, seconds, outcome) for one run; console output discarded."""
    with open(path, "rb") as fh:
        data = fh.read()
    m = Machine(engine=engine, out=lambda b: None)
    m.load(data)
    t0 = time.perf_counter()
    outcome = m.run(max_insns)
    dt = time.perf_counter() - t0
    if outcome == "exit":
        outcome = "pass" if not m.exit_code else f"FAIL {m.exit_code}"
    return m.instret, dt, outcome


def bench(programs: List[str], ref_insns: int, repeat: int) -> List[Dict[str, object]]:
    rows = []
    for name in programs:
        path = os.path.join(GUEST_DIR, name + ".elf")
        best_fast: Optional[Tuple[int, float, str]] = None
        for _ in range(repeat):
            r = run_once(path, "fast", None)
            if best_fast is None or r[1] < best_fast[1]:
                best_fast = r
        assert best_fast is not None
        ref = run_once(path, "reference", ref_insns)
        fast_mips = best_fast[0] / best_fast[1] / 1e6
        ref_mips = ref[0] / ref[1] / 1e6
        rows.append({
            "program": name, "instructions": best_fast[0], "seconds": best_fast[1],
            "fast_mips": fast_mips, "outcome": best_fast[2], "ref_instructions": ref[0],
            "ref_seconds": ref[1], "ref_mips": ref_mips, "ratio": fast_mips / ref_mips,
        })
    return rows


def print_table(rows: List[Dict[str, object]], title: str) -> None:
    print(title)
    print(f"{'program':<9} {'result':<7} {'instructions':>13} {'fast s':>8} {'fast MIPS':>10} "
          f"{'ref insns':>10} {'ref s':>7} {'ref MIPS':>9} {'fast/ref':>9}")
    for r in rows:
        print(f"{r['program']:<9} {r['outcome']:<7} {r['instructions']:>13,} {r['seconds']:>8.2f} "
              f"{r['fast_mips']:>10.2f} {r['ref_instructions']:>10,} {r['ref_seconds']:>7.2f} "
              f"{r['ref_mips']:>9.3f} {r['ratio']:>8.1f}x")
    sys.stdout.flush()


def pypy_site() -> Optional[str]:
    """A directory with a pyelftools that PyPy's Python 3.9 can import
    (releases from 0.32 on use 3.10 syntax), installed on first use."""
    site = os.path.join(os.path.expanduser("~"), ".cache", "rvkvm", "pypy-site")
    if os.path.isdir(os.path.join(site, "elftools")):
        return site
    rc = subprocess.call([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                          "--no-deps", "--target", site, "pyelftools>=0.29,<0.32"])
    return site if rc == 0 else None


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m emulator.bench")
    ap.add_argument("--programs", default=",".join(PROGRAMS))
    ap.add_argument("--ref-insns", type=int, default=3_000_000,
                    help="instructions run on the reference interpreter per program")
    ap.add_argument("--repeat", type=int, default=1, help="fast-engine runs per program (best is kept)")
    ap.add_argument("--no-pypy", action="store_true", help="do not re-run under pypy3")
    args = ap.parse_args(argv)
    programs = [p for p in args.programs.split(",") if p]
    impl = f"{platform.python_implementation()} {platform.python_version()}"
    rows = bench(programs, args.ref_insns, args.repeat)
    print_table(rows, f"== {impl} ==")
    failed = [r for r in rows if r["outcome"] != "pass"]
    if platform.python_implementation() == "CPython" and not args.no_pypy:
        pypy = shutil.which("pypy3")
        if pypy is None:
            print("(pypy3 not installed: PyPy figures skipped)")
        else:
            env = dict(os.environ)
            root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
            site = pypy_site()
            env["PYTHONPATH"] = os.pathsep.join([root] + ([site] if site else []))
            cmd = [pypy, "-m", "emulator.bench", "--no-pypy", "--programs", args.programs,
                   "--ref-insns", str(args.ref_insns * 10), "--repeat", str(max(args.repeat, 2))]
            rc = subprocess.call(cmd, env=env)
            if rc:
                print(f"(PyPy run failed with status {rc})")
                return rc
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
