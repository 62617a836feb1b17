"""Benchmark: guest MIPS of both engines, side by side in one run.

    python -m emulator.bench [--programs crc32,nqueens,qsort,smc] [--ref-insns N] [--no-pypy]

Each bundled guest runs ``--repeat`` rounds (default 3), each round one run
to completion on the fast engine and one of its first ``--ref-insns``
instructions on the reference interpreter (the interpreter is slow; MIPS are
comparable because both engines run the same instruction stream), each run
a fresh machine. Interleaving the engines keeps a slow spell of a shared
machine from landing on one engine only.

"cold" is a fast run in a process that has run no guest code yet: it
includes translating the guest's code and, on PyPy, the JIT's warm-up. The
first fast run of each program is one such run; each later round adds one
in a fresh process of the same interpreter, and "cold" is the best of
them. "warm" is the best of the later in-process runs: the process-wide
code cache already holds the translated regions (and on PyPy their JIT
traces), as for a second VM or vCPU running the same guest code. "ref" is
the best reference run; ratios are to it. When ``pypy3`` is installed (and
this is CPython), the same benchmark is re-run under PyPy and its table
printed too.
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
PROGRAMS = ("crc32", "nqueens", "qsort", "smc")


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


def run_cold(path: str) -> Tuple[int, float, str]:
    """``run_once`` on the fast engine in a fresh process of this interpreter."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
    out = subprocess.run([sys.executable, "-m", "emulator.bench", "--cold-run", path],
                         env=env, capture_output=True, text=True, check=False)
    try:
        insns, seconds, outcome = out.stdout.split()
        return int(insns), float(seconds), outcome
    except ValueError:
        return 0, 1.0, f"cold-run-failed:{out.returncode}"


def bench(programs: List[str], ref_insns: int, repeat: int) -> List[Dict[str, object]]:
    rows = []
    for name in programs:
        path = os.path.join(GUEST_DIR, name + ".elf")
        fast_runs, ref_runs, cold_runs = [], [], []
        for k in range(max(repeat, 1)):
            if k:
                cold_runs.append(run_cold(path))
            fast_runs.append(run_once(path, "fast", None))
            ref_runs.append(run_once(path, "reference", ref_insns))
        cold_runs.append(fast_runs[0])
        later = fast_runs[1:]
        failed = [r[2] for r in cold_runs + later if r[2] != "pass"]
        cold = min(cold_runs, key=lambda r: r[1])
        warm = min(later, key=lambda r: r[1]) if later else None
        ref = min(ref_runs, key=lambda r: r[1])
        ref_mips = ref[0] / ref[1] / 1e6
        row: Dict[str, object] = {
            "program": name, "instructions": fast_runs[0][0],
            "outcome": failed[0] if failed else "pass",
            "cold_seconds": cold[1], "cold_mips": cold[0] / cold[1] / 1e6,
            "ref_instructions": ref[0], "ref_seconds": ref[1], "ref_mips": ref_mips,
        }
        row["cold_ratio"] = float(row["cold_mips"]) / ref_mips  # type: ignore[arg-type]
        if warm is not None:
            row["warm_seconds"] = warm[1]
            row["warm_mips"] = warm[0] / warm[1] / 1e6
            row["warm_ratio"] = float(row["warm_mips"]) / ref_mips  # type: ignore[arg-type]
        rows.append(row)
    return rows


def print_table(rows: List[Dict[str, object]], title: str) -> None:
    print(title)
    print(f"{'program':<9} {'result':<7} {'instructions':>13} {'cold s':>7} {'cold MIPS':>10} "
          f"{'warm s':>7} {'warm MIPS':>10} {'ref MIPS':>9} {'cold/ref':>9} {'warm/ref':>9}")
    for r in rows:
        warm = "warm_mips" in r
        print(f"{r['program']:<9} {r['outcome']:<7} {r['instructions']:>13,} "
              f"{r['cold_seconds']:>7.2f} {r['cold_mips']:>10.2f} "
              + (f"{r['warm_seconds']:>7.2f} {r['warm_mips']:>10.2f} " if warm else
                 f"{'-':>7} {'-':>10} ")
              + f"{r['ref_mips']:>9.3f} {r['cold_ratio']:>8.1f}x "
              + (f"{r['warm_ratio']:>8.1f}x" if warm else f"{'-':>9}"))
    print(f"(reference: best of the runs of the first {rows[0]['ref_instructions']:,} "
          "instructions of each)" if rows else "")
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
    ap.add_argument("--repeat", type=int, default=3,
                    help="rounds per program, each a fast-engine run and a reference run "
                         "(and after the first, a fast run in a fresh process): cold is the "
                         "best fresh-process run, warm the best later in-process run, the "
                         "reference the best reference run (default 3)")
    ap.add_argument("--no-pypy", action="store_true", help="do not re-run under pypy3")
    ap.add_argument("--cold-run", metavar="ELF", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.cold_run:
        try:
            insns, seconds, outcome = run_once(args.cold_run, "fast", None)
        except (OSError, ValueError) as exc:
            print(f"bench: {args.cold_run}: {exc}", file=sys.stderr)
            return 2
        print(insns, seconds, outcome.replace(" ", "_"))
        return 0
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
                   "--ref-insns", str(args.ref_insns * 3), "--repeat", str(max(args.repeat, 3))]
            rc = subprocess.call(cmd, env=env)
            if rc:
                print(f"(PyPy run failed with status {rc})")
                return rc
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
