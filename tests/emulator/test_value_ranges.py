"""Known value bounds in the translator (Emitter.known): instructions whose
results have known bounds (andi, zero- and sign-extending loads, slt, shifts,
li, W operations, bitwise operations of bounded values) let later ones in the
block skip sign extension, wrap-around masks and the signed-compare bias.
Random blocks built from such producers and consumers, with edge values in
the registers, must give the reference interpreter's state; and the cheap
forms must actually be used where the bounds allow."""

from __future__ import annotations

from typing import List, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rvkvm.emulator.hart import Hart
from rvkvm.emulator.memory import PhysMemory

from . import rvasm as A
from .harts import make_hart, translated_source

BASE = 0x8000_0000
DATA = BASE + 0x8000
DATA_REG = 31
REGS = st.integers(1, 6)  # few registers: values flow from producer to consumer

EDGE = [0, 1, 2, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 0x1_0000_0000, (1 << 63) - 1, 1 << 63,
        (1 << 64) - 1, (1 << 64) - 2, 0xFFFF_FFFF_8000_0000, 0xFFFF_FFFF_7FFF_FFFF]
values = st.one_of(st.sampled_from(EDGE), st.integers(0, (1 << 64) - 1))
imm12 = st.one_of(st.sampled_from([0, 1, -1, 2047, -2048, 255, 0x7FF]), st.integers(-2048, 2047))


@st.composite
def producer(draw: st.DrawFn) -> List[int]:
    rd, rs1, rs2 = draw(REGS), draw(REGS), draw(REGS)
    k = draw(st.integers(0, 10))
    if k == 0:
        return [A.i(0x13, 7, rd, rs1, draw(imm12))]  # andi
    if k == 1:  # a load of 1, 2 or 4 bytes, either extension
        f3 = draw(st.sampled_from([0, 1, 2, 4, 5, 6]))
        return [A.i(0x03, f3, rd, DATA_REG, draw(st.integers(0, len(DATA_WORDS) - 1)) * 4)]
    if k == 2:  # slt / sltu / slti / sltiu
        if draw(st.booleans()):
            return [A.r(0x33, draw(st.sampled_from([2, 3])), 0, rd, rs1, rs2)]
        return [A.i(0x13, draw(st.sampled_from([2, 3])), rd, rs1, draw(imm12))]
    if k == 3:  # srliw / sraiw / srli
        sh = draw(st.integers(0, 31))
        kind = draw(st.integers(0, 2))
        if kind == 0:
            return [A.i(0x1B, 5, rd, rs1, sh)]
        if kind == 1:
            return [A.i(0x1B, 5, rd, rs1, 0x400 | sh)]
        return [A.i(0x13, 5, rd, rs1, draw(st.integers(0, 63)))]
    if k in (4, 10):  # li, lui
        if draw(st.booleans()):
            return [A.addi(rd, 0, draw(imm12))]
        return [A.u(0x37, rd, draw(st.integers(0, (1 << 20) - 1)))]
    if k == 5:  # xor / or / and, register and immediate forms
        f3 = draw(st.sampled_from([4, 6, 7]))
        if draw(st.booleans()):
            return [A.r(0x33, f3, 0, rd, rs1, rs2)]
        return [A.i(0x13, f3, rd, rs1, draw(imm12))]
    if k == 6:  # mv, addi
        return [A.addi(rd, rs1, draw(st.sampled_from([0, draw(imm12)])))]
    return consumer_of(draw, rd, rs1, rs2)


def consumer_of(draw: st.DrawFn, rd: int, rs1: int, rs2: int) -> List[int]:
    k = draw(st.integers(0, 4))
    if k == 0:
        return [A.i(0x1B, 0, rd, rs1, draw(imm12))]  # addiw (sext.w when 0)
    if k == 1:
        return [A.r(0x3B, 0, 0, rd, rs1, rs2)]  # addw
    if k == 2:
        return [A.r(0x3B, 0, 0x20, rd, draw(st.sampled_from([0, rs1])), rs2)]  # subw / negw
    if k == 3:
        return [A.r(0x33, 0, draw(st.sampled_from([0, 0x20])), rd, rs1, rs2)]  # add / sub
    return [A.addi(rd, rs1, draw(imm12))]


@st.composite
def program(draw: st.DrawFn) -> List[int]:
    """Several blocks, each a run of producers and consumers that ends in a
    compare-and-branch over an increment of x13 by a block-specific amount
    (so every branch outcome shows in x13)."""
    out: List[int] = []
    for k in range(draw(st.integers(1, 4))):
        for _ in range(draw(st.integers(2, 10))):
            out += draw(producer())
        out.append(A.b(draw(st.sampled_from([4, 5, 6, 7])), draw(REGS), draw(REGS), 8))
        out.append(A.addi(13, 13, 1 << k))  # runs when the branch falls through
    return out + [A.EBREAK]


# The data the loads read: words with edge values at every offset they use.
DATA_WORDS = [0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 0, 1, 0x0000_7FFF, 0x0000_8000, 0x0000_00FF,
              0x0000_0080, 0x1234_5678, 0xFFFF_7F80, 0x8000_7FFF]


def hart(engine: str, code: List[int], init: List[int], data: bytes = b"") -> Tuple[Hart, PhysMemory]:
    """x1.. from ``init``, DATA_REG at DATA holding ``data`` (DATA_WORDS by default)."""
    regs = {n + 1: v for n, v in enumerate(init)}
    regs[DATA_REG] = DATA
    return make_hart(engine, code, regs, data or A.words(DATA_WORDS), DATA)


def run(engine: str, code: List[int], init: List[int]) -> tuple:
    h, _ = hart(engine, code, init)
    stop = h.run(10_000)
    return stop.reason, stop.cause, h.pc, h.instret, tuple(h.x)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(code=program(), init=st.lists(values, min_size=13, max_size=13))
def test_bounded_values_match_reference(code: List[int], init: List[int]) -> None:
    assert run("fast", code, init) == run("reference", code, init)


def block_source(code: List[int]) -> str:
    return translated_source(code + [A.EBREAK], 100)


def test_cheap_forms_are_used() -> None:
    src = block_source([
        A.i(0x13, 7, 5, 6, 1),            # andi x5, x6, 1        x5 in [0, 1]
        A.r(0x3B, 0, 0x20, 7, 0, 5),      # negw x7, x5           no sign extension
        A.i(0x03, 4, 8, DATA_REG, 0),     # lbu x8                x8 in [0, 255]
        A.r(0x3B, 0, 0, 9, 8, 5),         # addw x9, x8, x5       a plain sum
        A.i(0x1B, 0, 10, 9, 0),           # sext.w x10, x9        a copy
        A.b(4, 9, 8, 8),                  # blt x9, x8            no bias
    ])
    assert "x7 = -x5\n" in src and "x7 &= 18446744073709551615" in src
    assert "x9 = x8 + x5\n" in src
    assert "x10 = x9\n" in src
    assert "x9 < x8" in src and "9223372036854775808" not in src
    assert "0xFFFFFFFF" not in src  # no sign extension anywhere


def test_unknown_or_overflowing_bounds_keep_full_forms() -> None:
    src = block_source([
        A.r(0x3B, 0, 0, 9, 8, 5),         # addw of unknown values
        A.i(0x1B, 5, 5, 6, 0),            # srliw x5, x6, 0       (a W value, no bound)
        A.i(0x1B, 0, 7, 5, 1),            # addiw x7, x5, 1       may overflow 32 bits
    ])
    assert src.count("if x") == 3  # three sign extensions


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(code=st.lists(producer(), min_size=1, max_size=6),
       init=st.lists(values, min_size=13, max_size=13))
def test_known_bounds_hold(code: List[List[int]], init: List[int]) -> None:
    """Every bound the translator records for a register holds for the value
    the reference interpreter computes (edge values reach the bounds)."""
    from rvkvm.emulator.isa import decode
    from rvkvm.emulator.region.emit import BlockEmitter, gen_insn

    words = [w for seq in code for w in seq]
    mem = PhysMemory()
    mem.add_ram(BASE, 1 << 16)
    h = Hart(mem, engine="reference")
    e = BlockEmitter(h.ctx)
    for k, w in enumerate(words):
        gen_insn(e, decode(w, BASE + 4 * k))
    facts = dict(e.rng)
    state = run("reference", words + [A.EBREAK], init)
    for reg, (lo, hi) in facts.items():
        v = state[4][reg]
        signed = v - (1 << 64) if v >> 63 else v
        assert lo <= signed <= hi, (reg, hex(v), lo, hi)


# -- facts that hold on every lap of a one-block loop (guarded on entry) ------
@st.composite
def counted_loop(draw: st.DrawFn) -> List[int]:
    """A one-block loop: bounded-value work, a counter stepped down by an
    addi / addiw / addw of a negative step, closed by bne/beq against x0 (so
    a counter that skips zero or starts at zero runs until the budget)."""
    body: List[int] = []
    for _ in range(draw(st.integers(1, 6))):
        body += draw(producer())
    counter = draw(REGS)
    step = draw(st.sampled_from([-1, -1, -2, -3, 1]))
    how = draw(st.integers(0, 2))
    if how == 0:
        body.append(A.addi(counter, counter, step))
    elif how == 1:
        body.append(A.i(0x1B, 0, counter, counter, step))
    else:
        body += [A.addi(7, 0, -step), A.r(0x3B, 0, 0x20, counter, counter, 7)]  # subw
    f3 = draw(st.sampled_from([1, 1, 1, 0]))  # bne, or beq (loops while zero)
    body.append(A.b(f3, counter, 0, -4 * len(body)))
    return [A.addi(8, 8, 0)] + body + [A.EBREAK]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(code=counted_loop(), init=st.lists(values, min_size=13, max_size=13),
       budget=st.sampled_from([5000, 9, 50]))
def test_loop_facts_match_reference(code: List[int], init: List[int], budget: int) -> None:
    def steps(engine: str) -> list:
        h, _ = hart(engine, code, init)
        trace = []
        for _ in range(5000 // budget + 1):
            stop = h.run(budget)
            trace.append((stop.reason, h.pc, h.instret, tuple(h.x)))
            if stop.reason != "budget":
                break
        return trace

    assert steps("fast") == steps("reference")


def test_loop_facts_guard_and_use() -> None:
    # crc32's inner loop: a counter, an invariant sign-extended constant
    loop = [
        A.i(0x13, 7, 15, 13, 1),          # andi a5, a3, 1
        A.r(0x3B, 0, 0x20, 15, 0, 15),    # negw a5, a5
        A.i(0x1B, 5, 13, 13, 1),          # srliw a3, a3, 1
        A.r(0x33, 7, 0, 15, 15, 10),      # and a5, a5, a0
        A.r(0x33, 4, 0, 15, 15, 13),      # xor a5, a5, a3
        A.i(0x1B, 0, 12, 12, -1),         # addiw a2, a2, -1
        A.i(0x1B, 0, 13, 15, 0),          # sext.w a3, a5
        A.b(1, 12, 0, -28),               # bnez a2, loop
    ]
    h, _ = make_hart("fast", [A.addi(8, 8, 0)] + loop + [A.EBREAK],
                     {10: 0xFFFF_FFFF_EDB8_8320, 12: 8, 13: 0xFFFF_FFFF})
    h.run(1000)
    src = h.ctx.blocks[BASE].src
    assert "if (x10 + 2147483648) & 18446744073709551615 <= 4294967295 and 1 <= x12 <= " in src
    guarded = src.split("<= 2147483647:", 1)[1].split("else:", 1)[0]
    assert "x12 = x12 + -1\n" in guarded and "x13 = x15\n" in guarded
    assert "0xFFFFFFFF" not in guarded


@pytest.mark.parametrize("entry", [0, 1, 2, 3, 0x7FFF_FFFF, 0x8000_0000, (1 << 64) - 1])
@pytest.mark.parametrize("step", [-1, -2, 1])
@pytest.mark.parametrize("f3", [1, 0])  # bne, beq
@pytest.mark.parametrize("word", [False, True])
def test_counter_edges(entry: int, step: int, f3: int, word: bool) -> None:
    """Counters that start at the edges of the guessed range, skip zero,
    count up, or close the loop on equality: where the facts do not hold
    the guard or the laps must notice."""
    body = [
        A.i(0x1B, 0, 6, 12, 0),                                   # sext.w x6, x12
        A.r(0x3B, 0, 0, 7, 7, 12),                                # addw x7, x7, x12
        A.i(0x13, 7, 9, 7, 255),                                  # andi x9, x7, 255
        A.r(0x33, 0, 0, 8, 12, 9),                                # add x8, x12, x9
        A.i(0x13, 5, 10, 8, 1),                                   # srli x10, x8, 1
        A.r(0x33, 4, 0, 11, 11, 10),                              # xor x11, x11, x10
        A.i(0x1B, 0, 12, 12, step) if word else A.addi(12, 12, step),
    ]
    code = body + [A.b(f3, 12, 0, -4 * len(body)), A.EBREAK]
    out = []
    for engine in ("reference", "fast"):
        h, _ = make_hart(engine, code, {12: entry})
        stop = h.run(400)
        out.append((stop.reason, h.pc, h.instret, tuple(h.x)))
    assert out[1] == out[0]


@pytest.mark.parametrize("f3", [0, 2, 3, 4])  # lb lw ld lbu
def test_zero_offset_access_through_its_own_destination(f3: int) -> None:
    """``lw x5, 0(x5)``: the translator uses the register itself as the
    address (no copy); the load must read it before writing x5, on the TLB
    hit path (second lap) and the miss path (first lap) alike."""
    code = [
        A.s(0x23, 3, 6, 6, 0),           # sd x6, 0(x6)       (x6 = DATA + 8: stores itself)
        A.addi(5, 6, 0),                 # mv x5, x6
        A.i(0x03, f3, 5, 5, 0),          # load x5, 0(x5)
        A.s(0x23, 0, 5, 5, 0) if f3 == 3 else A.addi(0, 0, 0),  # sb x5, 0(x5) where x5 is a pointer
        A.addi(7, 7, -1),
        A.b(1, 7, 0, -20),
        A.EBREAK,
    ]
    out = []
    for engine in ("reference", "fast"):
        h, mem = make_hart(engine, code, {6: DATA + 8, 7: 3})
        stop = h.run(1000)
        out.append((stop.reason, h.pc, h.instret, tuple(h.x), mem.read_bytes(DATA, 64)))
    assert out[1] == out[0]
    assert out[0][0] == "trap"


# -- values held in a congruent form (negw of a bounded value) ----------------
@st.composite
def lazy_block(draw: st.DrawFn) -> List[int]:
    """negw of bounded values, then every kind of use: AND with a canonical
    value, AND with itself or another such value, sums, compares, stores,
    a load that may fault while such a value is live, and the block's end."""
    out: List[int] = []
    for _ in range(draw(st.integers(2, 10))):
        rd, rs1, rs2 = draw(REGS), draw(REGS), draw(REGS)
        k = draw(st.integers(0, 8))
        if k <= 1:
            out += [A.i(0x13, 7, rs1, rs1, draw(st.sampled_from([1, 3, 255, 0x7FF]))),
                    A.r(0x3B, 0, 0x20, rd, 0, rs1)]                       # andi; negw
        elif k == 2:
            out.append(A.r(0x33, 7, 0, rd, rs1, rs2))                     # and
        elif k == 3:
            out.append(A.i(0x13, 7, rd, rs1, draw(imm12)))                # andi
        elif k == 4:
            out.append(A.r(0x33, draw(st.sampled_from([0, 4, 6])), 0, rd, rs1, rs2))  # add xor or
        elif k == 5:
            out.append(A.s(0x23, 3, DATA_REG, rs1, draw(st.integers(0, 7)) * 8))   # sd
        elif k == 6:  # a load through x14: faults when x14 points outside RAM
            out.append(A.i(0x03, 3, rd, 14, 0))
        elif k == 7:
            out.append(A.r(0x33, 2, 0, rd, rs1, rs2))                     # slt
        else:
            out.append(A.b(draw(st.sampled_from([0, 1, 4, 5, 6, 7])), rs1, rs2, 8))
            out.append(A.addi(13, 13, 1))
    return out + [A.EBREAK]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(code=lazy_block(), init=st.lists(values, min_size=14, max_size=14),
       faults=st.booleans())
def test_congruent_values_match_reference(code: List[int], init: List[int],
                                          faults: bool) -> None:
    init = list(init)
    init[13] = 0x1_0000_0000 if faults else DATA + 64  # x14 (init[k] is x(k + 1))
    results = []
    for engine in ("reference", "fast"):
        h, mem = hart(engine, code, init, A.words(DATA_WORDS * 8))
        stop = h.run(10_000)
        results.append((stop.reason, stop.cause, h.pc, h.instret, tuple(h.x),
                        mem.read_bytes(DATA, 64)))
    assert results[1] == results[0]
    assert all(0 <= v < 1 << 64 for v in results[1][4])


def test_negw_then_and_keeps_no_mask() -> None:
    src = block_source([
        A.i(0x13, 7, 5, 6, 1),            # andi x5, x6, 1
        A.r(0x3B, 0, 0x20, 7, 0, 5),      # negw x7, x5
        A.r(0x33, 7, 0, 8, 7, 10),        # and x8, x7, x10
    ])
    assert "x7 = -x5\n" in src
    assert "x8 = x7 & x10\n" in src
    assert "x7 &= 18446744073709551615" in src  # reduced at the end of the block
