"""``python -m rvkvm.emulator run``: the bare-metal runner."""

from __future__ import annotations

import argparse
import sys
import time
from typing import List, Optional

from .cmdline import SubcommandParser, guarded, version
from .elf import ElfError
from .hart import ENGINES
from .machine import Machine

PROG = "python -m rvkvm.emulator"

EXIT_FAIL = 1
EXIT_BUDGET = 2
EXIT_ERROR = 3


def _parse_size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().rstrip("ib")
    if t and t[-1] in units:
        return int(t[:-1], 0) * units[t[-1]]
    return int(t, 0)


def _positive_int(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description="rvkvm bare-metal RV64GC emulator")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of an unexpected error (also RVKVM_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=SubcommandParser)
    run = sub.add_parser("run", help="run a bare-metal ELF (HTIF tohost/fromhost)",
                         description="Run a bare-metal RV64 ELF in M-mode (the spike machine's "
                         "layout) until it writes tohost. Exit status: 0 pass, 1 FAIL, "
                         "2 --max-insns used up, 3 bad input, 130 Ctrl-C.")
    run.add_argument("elf", help="RV64 ELF to load")
    run.add_argument("--engine", choices=ENGINES, default="fast",
                     help="block translator (fast) or reference interpreter")
    run.add_argument("--max-insns", type=_positive_int, default=None, help="instruction budget (exit status 2 when used up)")
    run.add_argument("--stats", action="store_true", help="print instructions, seconds and MIPS to stderr")
    run.add_argument("--ram", default="256M", help="RAM size at 0x80000000 (default 256M)")
    run.add_argument("--harts", type=int, default=1, help="number of harts (default 1)")
    args = parser.parse_args(argv)
    return guarded(PROG, lambda: _run(args), args.debug)


def _run(args: argparse.Namespace) -> int:
    try:
        with open(args.elf, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        print(f"{PROG}: error: cannot read {args.elf}: {exc.strerror}", file=sys.stderr)
        return EXIT_ERROR
    try:
        ram = _parse_size(args.ram)
    except ValueError:
        print(f"{PROG}: error: bad RAM size {args.ram!r}", file=sys.stderr)
        return EXIT_ERROR
    if ram <= 0 or ram & 0xFFF or not 1 <= args.harts <= 64:
        print(f"{PROG}: error: RAM must be a positive multiple of 4 KiB and harts 1..64", file=sys.stderr)
        return EXIT_ERROR
    machine = Machine(ram_size=ram, engine=args.engine, nharts=args.harts)
    try:
        image = machine.load(data)
    except ElfError as exc:
        print(f"{PROG}: error: {args.elf}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if image.symbol("tohost") is None:
        print(f"{PROG}: error: {args.elf}: no 'tohost' symbol (HTIF is how the guest reports its result)",
              file=sys.stderr)
        return EXIT_ERROR
    start = time.perf_counter()
    try:
        outcome = machine.run(args.max_insns)
    except KeyboardInterrupt:
        outcome = "interrupted"
    seconds = time.perf_counter() - start
    sys.stdout.flush()
    status = 0
    if outcome == "exit":
        code = machine.exit_code or 0
        if code:
            print(f"FAIL: test {code}", file=sys.stderr)
            status = EXIT_FAIL
    elif outcome == "budget":
        print(f"{PROG}: error: instruction budget of {args.max_insns} used up", file=sys.stderr)
        status = EXIT_BUDGET
    elif outcome == "wfi":
        print(f"{PROG}: error: every hart waits for an interrupt that nothing will raise", file=sys.stderr)
        status = EXIT_ERROR
    else:
        print("interrupted", file=sys.stderr)
        status = 130
    if args.stats:
        n = machine.instret
        mips = n / seconds / 1e6 if seconds > 0 else 0.0
        print(f"instructions={n} seconds={seconds:.3f} mips={mips:.2f}", file=sys.stderr)
    return status
