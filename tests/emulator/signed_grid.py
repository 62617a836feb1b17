"""Grid programs for the translator's signed flavour (PyPy's form of
generated code, see emulator.signed): instruction by instruction on edge
values, every operand pair for register forms, edge immediates and shift
amounts, each branch kind, each load and store width; results go to memory.
``check`` compares the whole state of a fast run in the signed flavour with
the reference interpreter. Used by test_signed_semantics (CPython) and by
test_pypy (the same programs under PyPy). No pytest here: PyPy runs it
without it."""

from __future__ import annotations

import itertools
from typing import Dict, List, Tuple

import rvkvm.emulator.translator as tr
from rvkvm.emulator.hart import Hart
from rvkvm.emulator.memory import PhysMemory
from tests.emulator import rvasm as A

BASE = 0x8000_0000
OUT = BASE + 0x10_0000  # results
OUT_REG, RES_REG = 31, 30
M64 = (1 << 64) - 1
VALUES = [  # x1..x29
    0, 1, 2, M64, 1 << 63, (1 << 63) - 1, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF,
    0x1_0000_0000, 0xFFFF_FFFF_8000_0000, 0x8000_0000_0000_0001, 0x5555_5555_5555_5555,
    0xAAAA_AAAA_AAAA_AAAA, 31, 32, 63, 64, 0xFF, 0x80, 0xFFFF, 0x8000, M64 - 1,
    0x0123_4567_89AB_CDEF, 0xFEDC_BA98_7654_3210, 0x7FFF_FFFF_FFFF_F800, 0xFFFF_FFFF_FFFF_F800,
    0x8000_0000_0000_07FF, 3,
]
REGS = range(1, 30)
RS2 = range(1, 21)  # second operands: the first 20 values hold every edge case

R_FORMS = {  # name: (opcode, funct3, funct7)
    "add": (0x33, 0, 0), "sub": (0x33, 0, 0x20), "sll": (0x33, 1, 0), "slt": (0x33, 2, 0),
    "sltu": (0x33, 3, 0), "xor": (0x33, 4, 0), "srl": (0x33, 5, 0), "sra": (0x33, 5, 0x20),
    "or": (0x33, 6, 0), "and": (0x33, 7, 0), "addw": (0x3B, 0, 0), "subw": (0x3B, 0, 0x20),
    "sllw": (0x3B, 1, 0), "srlw": (0x3B, 5, 0), "sraw": (0x3B, 5, 0x20),
    "mul": (0x33, 0, 1), "mulh": (0x33, 1, 1), "mulhu": (0x33, 3, 1), "div": (0x33, 4, 1),
    "remu": (0x33, 7, 1), "mulw": (0x3B, 0, 1), "divw": (0x3B, 4, 1),
    "add.uw": (0x3B, 0, 0x04), "sh1add": (0x33, 2, 0x10), "sh2add": (0x33, 4, 0x10),
    "sh3add": (0x33, 6, 0x10), "sh1add.uw": (0x3B, 2, 0x10), "sh2add.uw": (0x3B, 4, 0x10),
    "sh3add.uw": (0x3B, 6, 0x10), "andn": (0x33, 7, 0x20), "orn": (0x33, 6, 0x20),
    "xnor": (0x33, 4, 0x20), "max": (0x33, 6, 0x05), "maxu": (0x33, 7, 0x05),
    "min": (0x33, 4, 0x05), "minu": (0x33, 5, 0x05), "rol": (0x33, 1, 0x30),
    "bset": (0x33, 1, 0x14), "czero.eqz": (0x33, 5, 0x07), "czero.nez": (0x33, 7, 0x07),
}
IMMS = [0, 1, -1, 2047, -2048, 0x7F, -0x80, 0x555]
I_FORMS = {  # name: (opcode, funct3)
    "addi": (0x13, 0), "slti": (0x13, 2), "sltiu": (0x13, 3), "xori": (0x13, 4),
    "ori": (0x13, 6), "andi": (0x13, 7), "addiw": (0x1B, 0),
}
SHIFTS = {  # name: (opcode, funct3, high bits, largest shift)
    "slli": (0x13, 1, 0, 63), "srli": (0x13, 5, 0, 63), "srai": (0x13, 5, 0x400, 63),
    "slliw": (0x1B, 1, 0, 31), "srliw": (0x1B, 5, 0, 31), "sraiw": (0x1B, 5, 0x400, 31),
    "slli.uw": (0x1B, 1, 0x080, 63),
}
UNARY = {  # name: (opcode, funct3, imm12)
    "sext.b": (0x13, 1, 0x604), "sext.h": (0x13, 1, 0x605), "zext.h": (0x3B, 4, 0x080),
    "clz": (0x13, 1, 0x600), "rev8": (0x13, 5, 0x6B8),
}
BRANCHES = {"beq": 0, "bne": 1, "blt": 4, "bge": 5, "bltu": 6, "bgeu": 7}


def emit_with_result(prog: List[int], insn: int) -> None:
    """``insn`` writes RES_REG; store it and move the output pointer on."""
    prog += [insn, A.s(0x23, 3, OUT_REG, RES_REG, 0), A.addi(OUT_REG, OUT_REG, 8)]


def run(engine: str, prog: List[int], signed: bool, budget: int = 1 << 30) -> Tuple:
    saved = tr.SIGNED_LOCALS
    tr.SIGNED_LOCALS = signed
    try:
        mem = PhysMemory()
        mem.add_ram(BASE, 1 << 22)
        mem.write_bytes(BASE, A.words(prog + [A.EBREAK]))
        h = Hart(mem, engine=engine)
        h.intercept_mtraps = True
        h.pc = BASE
        for n, v in zip(REGS, VALUES):
            h.x[n] = v
        h.x[OUT_REG] = OUT
        stop = h.run(budget)
        out_len = h.x[OUT_REG] - OUT
        return (stop.reason, stop.cause, h.pc, h.instret, tuple(h.x),
                mem.read_bytes(OUT, max(out_len, 8)))
    finally:
        tr.SIGNED_LOCALS = saved


def check(prog: List[int], budget: int = 1 << 30) -> None:
    ref = run("reference", prog, False, budget)
    if budget == 1 << 30:
        assert ref[0] == "trap" and ref[1] == 3  # reached the final ebreak
    fast = run("fast", prog, True, budget)
    assert fast == ref, "signed flavour differs from the reference engine"


def register_form(name: str) -> List[int]:
    op, f3, f7 = R_FORMS[name]
    prog: List[int] = []
    for rs1, rs2 in itertools.product(REGS, RS2):
        emit_with_result(prog, A.r(op, f3, f7, RES_REG, rs1, rs2))
    return prog


def immediate_form(name: str) -> List[int]:
    op, f3 = I_FORMS[name]
    prog: List[int] = []
    for rs1, imm in itertools.product(REGS, IMMS):
        emit_with_result(prog, A.i(op, f3, RES_REG, rs1, imm))
    return prog


def shift_immediate(name: str) -> List[int]:
    op, f3, high, top = SHIFTS[name]
    prog: List[int] = []
    for rs1, sh in itertools.product(REGS, sorted({0, 1, 7, 31, top // 2, top})):
        emit_with_result(prog, A.i(op, f3, RES_REG, rs1, high | sh))
    return prog


def unary_form(name: str) -> List[int]:
    op, f3, imm = UNARY[name]
    prog: List[int] = []
    for rs1 in REGS:
        emit_with_result(prog, A.i(op, f3, RES_REG, rs1, imm))
    return prog


def upper_immediates_and_jumps() -> List[int]:
    prog: List[int] = []
    for imm20 in (0, 1, 0x7FFFF, 0x80000, 0xFFFFF, 0x12345):
        emit_with_result(prog, A.u(0x37, RES_REG, imm20))  # lui
        emit_with_result(prog, A.u(0x17, RES_REG, imm20))  # auipc
    emit_with_result(prog, A.j(RES_REG, 4))  # jal: link value
    prog += [A.u(0x17, 5, 0), A.i(0x67, 0, RES_REG, 5, 8)]  # jalr to the next
    prog += [A.s(0x23, 3, OUT_REG, RES_REG, 0), A.addi(OUT_REG, OUT_REG, 8)]
    return prog


def branch(name: str) -> List[int]:
    f3 = BRANCHES[name]
    prog: List[int] = []
    for rs1, rs2 in itertools.product(REGS, RS2):
        # RES_REG = 1 if the branch falls through, 0 if taken
        prog += [A.addi(RES_REG, 0, 0), A.b(f3, rs1, rs2, 8), A.addi(RES_REG, 0, 1),
                 A.s(0x23, 3, OUT_REG, RES_REG, 0), A.addi(OUT_REG, OUT_REG, 8)]
    return prog


def loads_and_stores() -> List[int]:
    prog: List[int] = []
    for rs in REGS:
        # store the value at widths 8, 4, 2, 1 and load it back every way
        prog += [A.s(0x23, 3, OUT_REG, rs, 0), A.s(0x23, 2, OUT_REG, rs, 8),
                 A.s(0x23, 1, OUT_REG, rs, 16), A.s(0x23, 0, OUT_REG, rs, 24)]
        for f3 in range(7):  # lb lh lw ld lbu lhu lwu
            prog += [A.i(0x03, f3, RES_REG, OUT_REG, 0), A.s(0x23, 3, OUT_REG, RES_REG, 32 + 8 * f3)]
        prog.append(A.addi(OUT_REG, OUT_REG, 96))
    return prog


def small_grid() -> List[int]:
    """A short program for runs cut by small budgets."""
    op, f3, f7 = R_FORMS["sh2add"]
    prog: List[int] = []
    for rs1, rs2 in itertools.product(REGS[:8], REGS[:8]):
        emit_with_result(prog, A.r(op, f3, f7, RES_REG, rs1, rs2))
    return prog


def all_programs() -> Dict[str, List[int]]:
    progs: Dict[str, List[int]] = {}
    for name in R_FORMS:
        progs[f"reg {name}"] = register_form(name)
    for name in I_FORMS:
        progs[f"imm {name}"] = immediate_form(name)
    for name in SHIFTS:
        progs[f"shift {name}"] = shift_immediate(name)
    for name in UNARY:
        progs[f"unary {name}"] = unary_form(name)
    for name in BRANCHES:
        progs[f"branch {name}"] = branch(name)
    progs["upper and jumps"] = upper_immediates_and_jumps()
    progs["loads and stores"] = loads_and_stores()
    return progs


