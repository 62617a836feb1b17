"""Loops translated as Python loops (region.loops.Structurer): nested loops,
if/else inside loop bodies, early exits and ``continue`` edges, budgets that
run out inside an inner loop, traps inside nested loops, and loops that are
not natural. The fast engine must match the reference interpreter step for
step, and the shapes that should become Python control flow must."""

from __future__ import annotations

import itertools
import re
from typing import List, Tuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from . import rvasm as A
from .harts import make_hart, translated_source
from .rvasm import Item, assemble, br, jmp, lbl

BASE = 0x8000_0000
RAM = 1 << 16
DATA = BASE + 0x8000
PTR = 24  # walks through RAM by STRIDE per load; runs off its end, so loads fault
STRIDE = 8
CAUSE_LOAD_ACCESS = 5

def ld(rd: int, rs1: int, imm: int) -> int:
    return A.i(0x03, 3, rd, rs1, imm)


def addw(rd: int, rs1: int, rs2: int) -> int:
    return A.r(0x3B, 0, 0, rd, rs1, rs2)


def run_in_steps(code: List[int], init: List[int], budgets: List[int], ptr: int) -> Tuple:
    out = []
    for engine in ("reference", "fast"):
        regs = {5 + n: v for n, v in enumerate(init)}
        regs[PTR] = ptr
        h, mem = make_hart(engine, code, regs, bytes((i * 89 + 7) & 0xFF for i in range(4096)),
                           DATA, RAM)
        trace = []
        for budget in itertools.cycle(budgets):
            stop = h.run(budget)
            trace.append((h.pc, h.instret, tuple(h.x)))
            if stop.reason != "budget" or len(trace) > 5000:
                break
        out.append((stop.reason, stop.cause, stop.tval, h.pc, h.instret, tuple(h.x), trace,
                    mem.read_bytes(DATA, 4096)))
    return out[0], out[1]


# -- random structured programs ----------------------------------------------
WORK = st.integers(5, 15)  # registers the bodies compute on
CONDS = st.sampled_from([0, 1, 4, 5, 6, 7])  # beq bne blt bge bltu bgeu


class Gen:
    def __init__(self) -> None:
        self.n = 0

    def label(self, what: str) -> str:
        self.n += 1
        return f"{what}{self.n}"


@st.composite
def simple(draw: st.DrawFn) -> List[Item]:
    rd, rs1, rs2 = draw(WORK), draw(WORK), draw(WORK)
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return [A.addi(rd, rs1, draw(st.integers(-2048, 2047)))]
    if kind == 1:
        return [addw(rd, rs1, rs2)]
    if kind == 2:  # xor / sltu / srl
        f3 = draw(st.sampled_from([4, 3, 5]))
        return [A.r(0x33, f3, 0, rd, rs1, rs2)]
    if kind == 3:  # a store and a load in the data area
        off = draw(st.integers(0, 500)) * 8
        return [A.s(0x23, 3, 25, rs1, off), ld(rd, 25, off)]
    if kind == 4:  # the walking load: may fault once PTR leaves RAM
        return [ld(rd, PTR, 0), A.addi(PTR, PTR, STRIDE)]
    return [A.i(0x13, 1, rd, rs1, draw(st.integers(0, 63)))]  # slli


def stmts(draw: st.DrawFn, g: Gen, depth: int, loop_end: str, latch: str) -> List[Item]:
    out: List[Item] = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.integers(0, 6 if depth < 3 else 3))
        if kind <= 1:
            out += draw(simple())
        elif kind == 2 and loop_end:
            # early exit from the loop (break) or to its latch (continue)
            target = draw(st.sampled_from([loop_end, latch]))
            if draw(st.booleans()):
                out.append(br(draw(CONDS), draw(WORK), draw(WORK), target))
            else:
                # the same, with the way out on the fall-through side
                stay = g.label("stay")
                out.append(br(draw(CONDS), draw(WORK), draw(WORK), stay))
                out.append(jmp(target))
                out.append(lbl(stay))
        elif kind == 3:
            # if / else
            els, end = g.label("else"), g.label("endif")
            out.append(br(draw(CONDS), draw(WORK), draw(WORK), els))
            out += stmts(draw, g, depth + 1, loop_end, latch)
            if draw(st.booleans()):
                out.append(jmp(end))
                out.append(lbl(els))
                out += stmts(draw, g, depth + 1, loop_end, latch)
                out.append(lbl(end))
            else:
                out.append(lbl(els))
        else:
            # counted loop on its own counter register
            counter = 20 + depth
            head, tail, end = g.label("loop"), g.label("latch"), g.label("end")
            out.append(A.addi(counter, 0, draw(st.integers(1, 6))))
            out.append(lbl(head))
            out += stmts(draw, g, depth + 1, end, tail)
            out.append(lbl(tail))
            out.append(A.addi(counter, counter, -1))
            out.append(br(1, counter, 0, head))
            out.append(lbl(end))
    return out


@st.composite
def structured_program(draw: st.DrawFn) -> List[int]:
    g = Gen()
    body = stmts(draw, g, 0, "", "")
    return assemble([A.addi(25, 0, 0)] + [A.u(0x37, 25, DATA >> 12)] + body + [A.EBREAK])


values = st.one_of(st.integers(0, (1 << 64) - 1), st.sampled_from(
    [0, 1, 2, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, (1 << 63), (1 << 64) - 1]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(code=structured_program(), init=st.lists(values, min_size=11, max_size=11),
       budgets=st.sampled_from([[1_000_000], [7], [33, 5], [150, 2, 61]]),
       ptr_left=st.integers(0, 60))
def test_structured_loops_match_reference(code: List[int], init: List[int],
                                          budgets: List[int], ptr_left: int) -> None:
    # the walking load faults after ``ptr_left`` loads succeed
    ref, fast = run_in_steps(code, init, budgets, BASE + RAM - STRIDE * ptr_left)
    assert fast == ref


# -- hand-written shapes -------------------------------------------------------
def nest_with_diamond() -> List[int]:
    """for i in 5: for j in 7: if x5 & 1: x6 += j else: x7 ^= x6; x5 >>= 1
    (x5 reloaded from a counter so both arms run)."""
    return assemble([
        A.addi(20, 0, 5),
        lbl("outer"),
        A.addi(21, 0, 7),
        A.addi(5, 20, 0),
        lbl("inner"),
        A.i(0x13, 7, 8, 5, 1),          # andi x8, x5, 1
        br(0, 8, 0, "else"),            # beq x8, x0, else
        A.r(0x33, 0, 0, 6, 6, 21),      # add x6, x6, x21
        jmp("join"),
        lbl("else"),
        A.r(0x33, 4, 0, 7, 7, 6),       # xor x7, x7, x6
        lbl("join"),
        A.i(0x13, 5, 5, 5, 1),          # srli x5, x5, 1
        A.addi(5, 5, 3),
        A.addi(21, 21, -1),
        br(1, 21, 0, "inner"),
        A.addi(20, 20, -1),
        br(1, 20, 0, "outer"),
        A.EBREAK,
    ])


def region_source(code: List[int]) -> str:
    return translated_source(code, 1_000_000)


def test_nested_loop_with_if_else_becomes_python_loops() -> None:
    src = region_source(nest_with_diamond())
    outer = BASE + 4
    # the outer loop's arm holds the inner loop and the if/else: two nested
    # while loops, the branch as if/else, the inner back edge as continue
    arm = src.split(f"pc == {outer - BASE}:", 1)[1]
    assert re.search(r"while True:\n\s+x21 = 7\n(.|\n)*?while True:\n", arm)
    assert "else:\n" in arm.split("while True:", 3)[2]
    inner_while = arm.split("while True:", 3)[2]
    assert "pc = " not in inner_while.split("n <= lim2", 1)[0]  # no dispatch inside


def model_nest_with_diamond() -> Tuple[int, int, int]:
    """(instructions retired before the ebreak, x6, x7) worked out by hand."""
    n, x6, x7 = 1, 0, 0
    for i in range(5, 0, -1):
        n += 2
        x5 = i
        for j in range(7, 0, -1):
            if x5 & 1:
                x6 += j
                n += 4
            else:
                x7 ^= x6
                n += 3
            x5 = (x5 >> 1) + 3
            n += 4
        n += 2
    return n, x6, x7


def test_nested_loop_with_if_else_counts_exactly() -> None:
    code = nest_with_diamond()
    n, x6, x7 = model_nest_with_diamond()
    for budgets in ([1_000_000], [3], [7, 11], [40]):
        ref, fast = run_in_steps(code, [0] * 11, budgets, BASE + RAM)
        assert fast == ref
        assert fast[0] == "trap" and fast[1] == 3  # ebreak
        assert (fast[4], fast[5][6], fast[5][7]) == (n, x6, x7)


def test_trap_in_inner_loop_after_outer_laps() -> None:
    # outer: 4 laps; inner: 6 walking loads each; PTR leaves RAM in lap 3
    code = assemble([
        A.addi(20, 0, 4),
        lbl("outer"),
        A.addi(21, 0, 6),
        lbl("inner"),
        ld(6, PTR, 0),
        A.addi(PTR, PTR, STRIDE),
        A.addi(21, 21, -1),
        br(1, 21, 0, "inner"),
        A.addi(7, 7, 1),
        A.addi(20, 20, -1),
        br(1, 20, 0, "outer"),
        A.EBREAK,
    ])
    loads_ok = 6 * 2 + 3
    for budgets in ([1_000_000], [5], [13, 4]):
        ref, fast = run_in_steps(code, [0] * 11, budgets, BASE + RAM - STRIDE * loads_ok)
        assert fast == ref
        assert (fast[0], fast[1], fast[2]) == ("trap", CAUSE_LOAD_ACCESS, BASE + RAM)
        assert fast[3] == BASE + 8  # the load
        # 1 + per outer lap (1 + 6 * 4 + 3) for two laps, then 1 + 3 inner laps
        assert fast[4] == 1 + 2 * (1 + 6 * 4 + 3) + 1 + 3 * 4
        assert fast[5][7] == 2


def test_loop_entered_in_two_places_still_runs() -> None:
    # Not a natural loop (the jump into its middle): blocks stay with the
    # dispatcher and the result must still match.
    code = assemble([
        A.addi(20, 0, 9),
        br(0, 5, 0, "mid"),     # beq x5, x0, mid
        lbl("top"),
        A.addi(6, 6, 5),
        lbl("mid"),
        A.addi(7, 7, 1),
        A.addi(20, 20, -1),
        br(1, 20, 0, "top"),
        A.EBREAK,
    ])
    for x5 in (0, 1):
        for budgets in ([1_000_000], [4], [9, 2]):
            ref, fast = run_in_steps(code, [x5] + [0] * 10, budgets, BASE + RAM)
            assert fast == ref
            assert fast[5][7] == 9
            assert fast[5][6] == 5 * (9 if x5 else 8)


def test_compiler_limits_fall_back_to_the_dispatcher(monkeypatch) -> None:
    """If Python refuses a structured region (its compiler limits nesting),
    the region is built again with its loops run by the dispatcher."""
    import rvkvm.emulator.translator as tr

    real = tr.compile_function
    refused = []

    def refuse_nested(name, params, body, glb, filename):
        src = "\n".join(body)
        if src.count("while True:") > 1:  # a loop besides the dispatcher's
            refused.append(filename)
            raise SyntaxError("too many statically nested blocks")
        return real(name, params, body, glb, filename)

    monkeypatch.setattr(tr, "compile_function", refuse_nested)
    code = nest_with_diamond()
    n, x6, x7 = model_nest_with_diamond()
    for budgets in ([1_000_000], [7, 11]):
        ref, fast = run_in_steps(code, [0] * 11, budgets, BASE + RAM)
        assert fast == ref
        assert (fast[4], fast[5][6], fast[5][7]) == (n, x6, x7)
    assert refused


def two_unrolled_loops() -> List[int]:
    """Two one-block loops in a row (each unrolled), then an outer lap."""
    return assemble([
        A.addi(22, 0, 3),
        lbl("outer"),
        A.addi(20, 0, 8),  # a multiple of the unroll factor: its last lap is whole
        lbl("a"),
        A.addi(5, 5, 1), A.addi(6, 6, 2), A.addi(7, 7, 3),
        A.addi(20, 20, -1),
        br(1, 20, 0, "a"),
        A.addi(21, 0, 9),
        lbl("b"),
        A.addi(8, 8, 1), A.addi(9, 9, 2), A.addi(10, 10, 3),
        A.addi(21, 21, -1),
        br(1, 21, 0, "b"),
        A.addi(22, 22, -1),
        br(1, 22, 0, "outer"),
        A.EBREAK,
    ])


def test_budget_is_exact_across_consecutive_unrolled_loops() -> None:
    """Between two budget checks a lap of one unrolled loop can run into the
    first lap of the next: the region's slack must cover both, so no run
    retires more than asked."""
    code = two_unrolled_loops()
    for budget in range(1, 70):
        ref, fast = run_in_steps(code, [0] * 11, [budget], BASE + RAM)
        assert fast == ref, budget


def test_one_block_loops_only(monkeypatch) -> None:
    """With NESTED_LOOPS off (PyPy's setting) only one-block loops become
    Python loops; everything else goes through the dispatcher, exactly."""
    import rvkvm.emulator.translator as tr

    monkeypatch.setattr(tr, "NESTED_LOOPS", False)
    code = two_unrolled_loops()
    for budgets in ([1_000_000], [5], [13, 4]):
        ref, fast = run_in_steps(code, [0] * 11, budgets, BASE + RAM)
        assert fast == ref
    src = region_source(code)
    assert "pc == 4:" in src  # the outer loop's header is a dispatcher arm ...
    outer = src.split("pc == 4:", 1)[1].split("elif", 1)[0]
    assert "while True:" not in outer  # ... not a Python loop
    monkeypatch.setattr(tr, "NESTED_LOOPS", True)
    assert 3 <= src.count("while True:") < region_source(code).count("while True:")


def counted_loop(trips: int, read_counter: bool) -> List[int]:
    """x5 += 3; x6 ^= x5 (and x7 += the counter), ``trips`` times, counted
    down in x20 by ``addiw``."""
    body = [A.addi(5, 5, 3), A.r(0x33, 4, 0, 6, 6, 5)]
    if read_counter:
        body.append(A.r(0x33, 0, 0, 7, 7, 20))  # add x7, x7, x20
    return assemble([A.addi(20, 0, trips), lbl("top")] + body + [
        A.i(0x1B, 0, 20, 20, -1),               # addiw x20, x20, -1
        br(1, 20, 0, "top"),
        A.EBREAK,
    ])


def test_counted_loops_step_their_counter_once_per_lap_of_copies() -> None:
    """A one-block loop whose counter only counts runs its copies without
    exit tests while the count covers them, and the rest one at a time:
    every trip count (multiples of the copies and remainders) and every
    budget gives what the reference gives."""
    src = region_source(counted_loop(9, False))
    assert "if x20 >= 4:" in src and "x20 = x20 - 4" in src
    assert "if x20 >= " not in region_source(counted_loop(9, True))  # the counter is read
    for read in (False, True):
        for trips in range(1, 12):
            code = counted_loop(trips, read)
            for budgets in ([1_000_000], [5], [13, 4], [29]):
                ref, fast = run_in_steps(code, [0] * 11, budgets, BASE + RAM)
                assert fast == ref, (read, trips, budgets)
                assert fast[5][5] == 3 * trips and fast[4] == 1 + trips * (4 + read)
    code = counted_loop(11, False)
    for budget in range(1, 60):
        ref, fast = run_in_steps(code, [0] * 11, [budget], BASE + RAM)
        assert fast == ref, budget
