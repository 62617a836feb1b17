"""Property test: both engines produce the same architectural state on
random instruction streams (integer, M, A, memory, forward branches and
counted loops)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rvkvm.emulator.hart import Hart
from rvkvm.emulator.memory import PhysMemory

from . import rvasm as A

BASE = 0x8000_0000
DATA = BASE + 0x8000
DATA_REG = 31  # holds DATA; never written by random instructions
LOOP_REG = 30  # loop counter of counted loops

regs = st.integers(1, 29)
imm12 = st.integers(-2048, 2047)

R_OPS = [  # (funct3, funct7, opcode)
    (0, 0, 0x33), (0, 0x20, 0x33), (1, 0, 0x33), (2, 0, 0x33), (3, 0, 0x33), (4, 0, 0x33),
    (5, 0, 0x33), (5, 0x20, 0x33), (6, 0, 0x33), (7, 0, 0x33),
    (0, 0, 0x3B), (0, 0x20, 0x3B), (1, 0, 0x3B), (5, 0, 0x3B), (5, 0x20, 0x3B),
] + [(f3, 1, 0x33) for f3 in range(8)] + [(f3, 1, 0x3B) for f3 in (0, 4, 5, 6, 7)]


@st.composite
def alu(draw: st.DrawFn) -> list:
    kind = draw(st.integers(0, 5))
    rd, rs1, rs2 = draw(regs), draw(regs), draw(regs)
    if kind == 0:
        f3, f7, op = draw(st.sampled_from(R_OPS))
        return [A.r(op, f3, f7, rd, rs1, rs2)]
    if kind == 1:
        f3 = draw(st.sampled_from([0, 2, 3, 4, 6, 7]))
        return [A.i(0x13, f3, rd, rs1, draw(imm12))]
    if kind == 2:
        sh = draw(st.integers(0, 63))
        f = draw(st.sampled_from([(1, 0), (5, 0), (5, 0x400)]))
        return [A.i(0x13, f[0], rd, rs1, f[1] | sh)]
    if kind == 3:
        sh = draw(st.integers(0, 31))
        f = draw(st.sampled_from([(0, None), (1, 0), (5, 0), (5, 0x400)]))
        if f[1] is None:
            return [A.i(0x1B, 0, rd, rs1, draw(imm12))]
        return [A.i(0x1B, f[0], rd, rs1, f[1] | sh)]
    if kind == 4:
        return [A.u(draw(st.sampled_from([0x37, 0x17])), rd, draw(st.integers(0, 0xFFFFF)))]
    # memory: load or store at DATA + small offset (aligned or not)
    off = draw(st.integers(0, 1024))
    # x0 as the base register makes an access fault: traps must be precise.
    base = draw(st.sampled_from([DATA_REG] * 15 + [0]))
    if draw(st.booleans()):
        f3 = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 6]))
        return [A.i(0x03, f3, rd, base, off)]
    f3 = draw(st.sampled_from([0, 1, 2, 3]))
    return [A.s(0x23, f3, base, rs2, off)]


@st.composite
def amo(draw: st.DrawFn) -> list:
    rd, rs2 = draw(regs), draw(regs)
    size = draw(st.sampled_from([2, 3]))
    off = draw(st.integers(0, 64)) * (1 << size)
    f5 = draw(st.sampled_from([0, 1, 4, 8, 12, 16, 20, 24, 28, 2, 3]))
    seq = [A.addi(29, DATA_REG, off)] if rd != 29 and rs2 != 29 else []
    if not seq:
        return []
    rs2_field = 0 if f5 == 2 else rs2
    return seq + [A.r(0x2F, size, f5 << 2, rd, 29, rs2_field)]


@st.composite
def program(draw: st.DrawFn) -> list:
    out: list = []
    for _ in range(draw(st.integers(1, 6))):
        choice = draw(st.integers(0, 3))
        body = [w for _ in range(draw(st.integers(1, 8))) for w in draw(alu())]
        if choice == 0:
            out += body
        elif choice == 1:
            # forward conditional branch over the body
            f3 = draw(st.sampled_from([0, 1, 4, 5, 6, 7]))
            out.append(A.b(f3, draw(regs), draw(regs), 4 * (len(body) + 1)))
            out += body
        elif choice == 2:
            # counted loop: LOOP_REG = n; body; LOOP_REG -= 1; bnez back
            n = draw(st.integers(1, 40))
            out.append(A.addi(LOOP_REG, 0, n))
            out += body
            out.append(A.addi(LOOP_REG, LOOP_REG, -1))
            out.append(A.b(1, LOOP_REG, 0, -4 * (len(body) + 1)))
        else:
            out += draw(amo())
    return out + [A.EBREAK]


def run(engine: str, code: bytes, init: list, budget: int):
    mem = PhysMemory()
    mem.add_ram(BASE, 1 << 16)
    mem.write_bytes(BASE, code)
    mem.write_bytes(DATA, bytes((i * 37 + 11) & 0xFF for i in range(2048)))
    h = Hart(mem, engine=engine)
    h.intercept_mtraps = True
    h.pc = BASE
    for n, v in enumerate(init):
        h.x[n + 1] = v
    h.x[DATA_REG] = DATA
    stop = h.run(budget)
    return (stop.reason, stop.cause, stop.tval, h.pc, h.instret, tuple(h.x),
            mem.read_bytes(DATA, 2048), h.mstatus)


values = st.one_of(st.integers(0, (1 << 64) - 1), st.sampled_from(
    [0, 1, 2, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, (1 << 63), (1 << 64) - 1, (1 << 63) - 1]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prog=program(), init=st.lists(values, min_size=29, max_size=29),
       budget=st.sampled_from([10_000, 7, 33, 150]))
def test_engines_agree(prog: list, init: list, budget: int) -> None:
    code = A.words(prog)
    ref = run("reference", code, init, budget)
    fast = run("fast", code, init, budget)
    assert fast == ref


ZB_OPS = [  # (funct3, funct7, opcode): Zba, Zbb, Zbs, Zicond register forms
    (2, 0x10, 0x33), (4, 0x10, 0x33), (6, 0x10, 0x33), (0, 0x04, 0x3B), (2, 0x10, 0x3B),
    (4, 0x10, 0x3B), (6, 0x10, 0x3B), (7, 0x20, 0x33), (6, 0x20, 0x33), (4, 0x20, 0x33),
    (6, 0x05, 0x33), (7, 0x05, 0x33), (4, 0x05, 0x33), (5, 0x05, 0x33), (1, 0x30, 0x33),
    (5, 0x30, 0x33), (1, 0x30, 0x3B), (5, 0x30, 0x3B), (1, 0x24, 0x33), (5, 0x24, 0x33),
    (5, 0x07, 0x33), (7, 0x07, 0x33), (1, 0x05, 0x33),
]
ZB_UNARY = [  # imm12 values of OP-IMM funct3 1/5 unary forms and zext.h
    (1, 0x600), (1, 0x601), (1, 0x602), (1, 0x604), (1, 0x605), (5, 0x287), (5, 0x6B8),
]


@st.composite
def signed_flavour_insn(draw: st.DrawFn) -> list:
    """Everything the signed flavour has its own semantics for, plus some
    instructions it runs through its unsigned fallback."""
    rd, rs1, rs2 = draw(regs), draw(regs), draw(regs)
    kind = draw(st.integers(0, 4))
    if kind == 0:
        f3, f7, op = draw(st.sampled_from(ZB_OPS))
        return [A.r(op, f3, f7, rd, rs1, rs2)]
    if kind == 1:
        f3, imm = draw(st.sampled_from(ZB_UNARY))
        return [A.i(0x13, f3, rd, rs1, imm)]
    if kind == 2:  # zext.h, slli.uw
        if draw(st.booleans()):
            return [A.r(0x3B, 4, 0x04, rd, rs1, 0)]
        return [A.i(0x1B, 1, rd, rs1, 0x080 | draw(st.integers(0, 63)))]
    if kind == 3:  # jal over nothing / jalr to the next instruction via auipc
        if draw(st.booleans()):
            return [A.j(rd, 4)]
        return [A.u(0x17, rs1, 0), A.i(0x67, 0, rd, rs1, 8)]
    return draw(alu())


@st.composite
def signed_program(draw: st.DrawFn) -> list:
    out: list = []
    for _ in range(draw(st.integers(1, 5))):
        body = [w for _ in range(draw(st.integers(1, 8))) for w in draw(signed_flavour_insn())]
        if draw(st.booleans()):
            # a counted loop closed by one of several branch kinds, each
            # testing LOOP_REG (never written by the body) against x0
            out.append(A.addi(LOOP_REG, 0, draw(st.integers(1, 30))))
            back = -4 * (len(body) + 1)
            branch = draw(st.sampled_from([
                A.b(1, LOOP_REG, 0, back),  # bne: while LOOP_REG != 0
                A.b(5, LOOP_REG, 0, back),  # bge: while LOOP_REG >= 0 (signed)
                A.b(6, 0, LOOP_REG, back),  # bltu: while 0 < LOOP_REG (unsigned)
                A.b(4, 0, LOOP_REG, back),  # blt: while 0 < LOOP_REG (signed)
            ]))
            out += body + [A.addi(LOOP_REG, LOOP_REG, -1), branch]
        else:
            out += body
    return out + [A.EBREAK]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prog=st.one_of(program(), signed_program()),
       init=st.lists(values, min_size=29, max_size=29),
       budget=st.sampled_from([10_000, 7, 33]))
def test_signed_flavour_agrees(prog: list, init: list, budget: int) -> None:
    """The PyPy flavour of generated code (signed register locals, see
    emulator.signed) computes the same state; checked here on CPython."""
    import rvkvm.emulator.translator as tr

    code = A.words(prog)
    ref = run("reference", code, init, budget)
    saved = tr.SIGNED_LOCALS
    tr.SIGNED_LOCALS = True
    try:
        fast = run("fast", code, init, budget)
    finally:
        tr.SIGNED_LOCALS = saved
    assert fast == ref
