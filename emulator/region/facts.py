"""Value facts: bounds of register values the region compiler knows.

Within a basic block the emitter (region.emit) records bounds as it writes
registers (a sign-extended word, a narrow load, what ``Emitter.known``
gives the ISA's generators) and drops them when a register is written
again; facts hold from a write to the end of its block, since blocks are
entered only at their start.

Across the laps of a one-block loop, ``loop_facts`` guesses bounds for the
registers the loop reads and settles them: the loop structurer
(region.loops) then emits the loop twice, once generated knowing the facts
behind a ``guard`` on entry, once as it is. The unsigned flavour uses
facts; the signed one (PyPy) keeps none.
"""

from __future__ import annotations

import re
from typing import Callable, Dict, List, NamedTuple, Optional, Set, Tuple

from ..bits import M64
from ..isa import Decoded
from ..isa.rv64i import fits
from .exits import BlockExit, ExitKind

Bounds = Tuple[int, int]  # lo, hi: inclusive, in the signed view
Facts = Dict[int, Bounds]  # register -> bounds

W_RANGE = (-(1 << 31), (1 << 31) - 1)  # a sign-extended 32-bit value
_TEMP = re.compile(r"\bt\d+\b")


def load_range(size: int, signed: bool) -> Bounds:
    """Bounds of the value a load of ``size`` < 8 bytes gives."""
    bits = 8 * size
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


class Specialised(NamedTuple):
    """A block generated knowing facts on entry (see region.build)."""
    lines: List[str]
    exit: BlockExit
    end: Facts  # the facts at its end
    read: Set[int]  # registers it reads before writing them
    written: Set[int]


Specialise = Callable[[int, Facts], Specialised]


class LoopFacts(NamedTuple):
    facts: Facts  # what the guard tests on entry
    lines: List[str]  # the loop's block generated knowing them
    exit: BlockExit


def _shape(lines: List[str], exit_: BlockExit) -> Tuple[str, BlockExit]:
    """Generated code compared up to the names of its temporaries."""
    return _TEMP.sub("t", "\n".join(lines)), exit_


def loop_facts(insns: List[Decoded], exit_: BlockExit,
               specialise: Specialise) -> Optional[LoopFacts]:
    """For a one-block loop (its block ``insns``, which end with
    ``exit_``): bounds of the registers it reads that hold on every lap if
    they hold on entry, with the block generated knowing them; None if
    there are none worth a guard.

    The guess: a register the loop writes is a positive 32-bit counter,
    one it only reads a sign-extended 32-bit value; laps through the
    block then widen to the sign-extended 32-bit range, or drop, what
    its back edge does not keep within the guess, and facts that do not
    change the code are left out of the guard (a pointer the loop reads
    would make the guard fail every time)."""
    head = insns[0].pc
    if exit_.kind != ExitKind.BRANCH or exit_.target != head or exit_.fall == head:
        return None  # only loops closed by a conditional branch back to their start
    plain = specialise(head, {})
    guess: Facts = {}
    for r in plain.read:
        # a counter? the laps below settle it
        guess[r] = (1, W_RANGE[1]) if r in plain.written else W_RANGE
    settled = _settle(insns, guess, specialise)
    if settled is None:
        return None
    # keep only the facts that change the code (each is a test on entry)
    shape = _shape(settled.lines, settled.exit)
    if shape == _shape(plain.lines, exit_):
        return None
    guess = settled.facts
    for r in sorted(guess):
        fewer = {k: v for k, v in guess.items() if k != r}
        again = _settle(insns, fewer, specialise, 1) if fewer else None
        if again is not None and _shape(again.lines, again.exit) == shape:
            guess = again.facts
    return LoopFacts(guess, settled.lines, settled.exit)


def _settle(insns: List[Decoded], guess: Facts, specialise: Specialise,
            laps: int = 4) -> Optional[LoopFacts]:
    """Laps of the one-block loop ``insns`` from the facts ``guess`` until
    they hold again on its back edge: those facts, the block generated
    knowing them and its exit; None if nothing is left."""
    head = insns[0].pc
    last = insns[-1]
    for _ in range(laps):
        if not guess:
            return None
        got_block = specialise(head, guess)
        # the back edge is the branch taken: after a bne against x0 the
        # register is not zero there
        back = dict(got_block.end)
        zero_tested = last.rs1 if last.rs2 == 0 else last.rs2 if last.rs1 == 0 else 0
        if last.insn.name == "bne" and zero_tested in back:
            lo, hi = back[zero_tested]
            back[zero_tested] = (1 if lo == 0 else lo, -1 if hi == 0 else hi)
        keep = {}
        for r, (lo, hi) in guess.items():
            got = back.get(r) if r in got_block.written else (lo, hi)
            if got is not None and lo <= got[0] and got[1] <= hi:
                keep[r] = (lo, hi)
            elif got is not None and fits(got) and (lo, hi) != W_RANGE:
                keep[r] = W_RANGE  # widen once
        if keep == guess:
            return LoopFacts(guess, got_block.lines, got_block.exit)
        guess = keep
    return None


def guard(facts: Facts) -> str:
    """A test that the register locals are within ``facts``."""
    tests = []
    for r, (lo, hi) in sorted(facts.items()):
        if lo >= 0:
            tests.append(f"{lo} <= x{r} <= {hi}")
        else:
            tests.append(f"(x{r} + {-lo}) & {M64} <= {hi - lo}")
    return " and ".join(tests)
