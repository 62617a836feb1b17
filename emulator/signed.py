"""Signed-register semantics for the translator's PyPy flavour.

PyPy keeps an integer unboxed only while it fits a signed machine word; a
register value of 2**63 or more (every negative number in the unsigned
canonical form the rest of the emulator uses) becomes a big integer, and
one such value in a loop makes the JIT's code many times slower. So on
PyPy a translated region keeps its register locals in signed form
(-2**63 .. 2**63 - 1) and converts at its edges (load from ``X``, store
back masked). Wrapping arithmetic uses PyPy's ``__pypy__.intop`` functions,
which the JIT turns into single machine instructions; on CPython the same
names are plain Python functions, so this flavour is tested there too.

``SIGNED_GEN`` maps instruction names to generators for this form. An
instruction without one still works: the emitter hands its unsigned
generator unsigned views of the registers and converts the result (slower,
always right).

The same rules as for the unsigned semantics hold: only integers derived
from instruction bits go into generated source.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Callable, Dict

from .bits import M64
from .isa.rv64i import _load, _store

if TYPE_CHECKING:
    from .codegen import Emitter
    from .isa import Decoded

Gen = Callable[["Emitter", "Decoded"], None]

S64 = 1 << 63
MIN64 = -S64  # XOR with it maps unsigned order onto signed order
M32 = 0xFFFFFFFF
S32 = 1 << 31


def to_signed(v: int) -> int:
    """Canonical unsigned 64-bit value -> signed form."""
    v &= M64
    return v - (1 << 64) if v >> 63 else v


try:  # PyPy: machine-word operations the JIT inlines
    from __pypy__ import intop  # type: ignore[import-not-found]

    int_add = intop.int_add
    int_sub = intop.int_sub
    int_mul = intop.int_mul
    int_lshift = intop.int_lshift
    uint_rshift = intop.uint_rshift
except ImportError:  # CPython: the same results in plain Python

    def int_add(a: int, b: int) -> int:
        return ((a + b + S64) & M64) - S64

    def int_sub(a: int, b: int) -> int:
        return ((a - b + S64) & M64) - S64

    def int_mul(a: int, b: int) -> int:
        return ((a * b + S64) & M64) - S64

    def int_lshift(a: int, n: int) -> int:
        return ((a << n) + S64 & M64) - S64

    def uint_rshift(a: int, n: int) -> int:
        return (a & M64) >> n if n else a


def to_word(v: int) -> int:
    """Canonical unsigned 64-bit value -> signed form, as a machine word.
    On PyPy an integer that once was big stays a big-integer object (and
    so does everything computed from it) even when its value fits a word;
    ``int_add(v, 0)`` makes it a word again."""
    if v > MAX_S64:
        v -= 1 << 64
    return int_add(v, 0)


MAX_S64 = S64 - 1

SIGNED_GLOBALS: Dict[str, object] = {
    "IADD": int_add, "ISUB": int_sub, "IMUL": int_mul, "ISHL": int_lshift,
    "USHR": uint_rshift, "SX": to_word,
    "S8": struct.Struct("<q").unpack_from, "P8S": struct.Struct("<q").pack_into,
}


def _w(expr: str) -> str:
    """Sign-extend the low 32 bits of ``expr`` (never leaves the word)."""
    return f"((({expr}) & {M32}) ^ {S32}) - {S32}"


def _ult(a: str, b: str) -> str:
    """Unsigned a < b on signed operands."""
    return f"({a} ^ {MIN64}) < ({b} ^ {MIN64})"


# -- RV64I ---------------------------------------------------------------------

def lui(e: Emitter, d: Decoded) -> None:
    e.setx(d.rd, str(to_signed(d.imm)))


def auipc(e: Emitter, d: Decoded) -> None:
    e.setx(d.rd, str(to_signed(d.pc + d.imm)))


def jal(e: Emitter, d: Decoded) -> None:
    e.setx(d.rd, str(to_signed(d.next_pc)))
    e.jump(str((d.pc + d.imm) & M64))


def jalr(e: Emitter, d: Decoded) -> None:
    t = e.tmp()
    e.emit(f"{t} = ({e.x(d.rs1)} + {d.imm}) & -2")
    e.emit(f"if {t} < 0: {t} += {1 << 64}")  # the pc is unsigned
    e.setx(d.rd, str(to_signed(d.next_pc)))
    e.jump(t)


def _branch(op: str, unsigned: bool) -> Gen:
    def gen(e: Emitter, d: Decoded) -> None:
        a, b = e.x(d.rs1), e.x(d.rs2)
        if unsigned:
            cond = _ult(a, b) if op == "<" else f"not ({_ult(a, b)})"
        else:
            cond = f"{a} {op} {b}"
        e.branch(cond, (d.pc + d.imm) & M64)
    return gen


def sd(e: Emitter, d: Decoded) -> None:
    a = e.ea(d.rs1, d.imm)
    e.store(a, e.x(d.rs2), 8, signed_value=True)  # type: ignore[call-arg]


def addi(e: Emitter, d: Decoded) -> None:
    a = e.x(d.rs1)
    if d.imm == 0:
        e.setx(d.rd, a)
    elif a == "0":
        e.setx(d.rd, str(d.imm))
    else:
        e.setx(d.rd, f"IADD({a}, {d.imm})")


def add(e: Emitter, d: Decoded) -> None:
    a, b = e.x(d.rs1), e.x(d.rs2)
    if a == "0" or b == "0":
        e.setx(d.rd, b if a == "0" else a)
    else:
        e.setx(d.rd, f"IADD({a}, {b})")


def _imm(template: str) -> Gen:
    """``template`` with {a} (rs1) and {i} (the sign-extended immediate)."""
    def gen(e: Emitter, d: Decoded) -> None:
        e.setx(d.rd, template.format(a=e.x(d.rs1), i=d.imm))
    return gen


def sltiu(e: Emitter, d: Decoded) -> None:
    e.setx(d.rd, f"int(({e.x(d.rs1)} ^ {MIN64}) < {to_signed(d.imm) ^ MIN64})")


def _reg(template: str) -> Gen:
    def gen(e: Emitter, d: Decoded) -> None:
        e.setx(d.rd, template.format(a=e.x(d.rs1), b=e.x(d.rs2)))
    return gen


def _un(template: str) -> Gen:
    def gen(e: Emitter, d: Decoded) -> None:
        e.setx(d.rd, template.format(a=e.x(d.rs1)))
    return gen


def sltu(e: Emitter, d: Decoded) -> None:
    e.setx(d.rd, f"int({_ult(e.x(d.rs1), e.x(d.rs2))})")


def _shift_imm(op: str, word: bool) -> Gen:
    def gen(e: Emitter, d: Decoded) -> None:
        a, sh = e.x(d.rs1), d.imm
        if word:
            lo = f"({a} & {M32})"
            if op == "sll":
                e.setx(d.rd, _w(f"{lo} << {sh}"))
            elif op == "srl":
                e.setx(d.rd, f"{lo} >> {sh}" if sh else _w(a))
            else:
                e.setx(d.rd, f"(({lo} ^ {S32}) - {S32}) >> {sh}")
        elif sh == 0:
            e.setx(d.rd, a)
        elif op == "sll":
            e.setx(d.rd, f"ISHL({a}, {sh})")
        elif op == "srl":
            e.setx(d.rd, f"USHR({a}, {sh})")
        else:
            e.setx(d.rd, f"{a} >> {sh}")
    return gen


def _word(template: str) -> Gen:
    """A W operation on the low words: {a}, {b} are ``x & M32``."""
    def gen(e: Emitter, d: Decoded) -> None:
        a, b = f"({e.x(d.rs1)} & {M32})", f"({e.x(d.rs2)} & {M32})"
        e.setx(d.rd, _w(template.format(a=a, b=b)))
    return gen


def addiw(e: Emitter, d: Decoded) -> None:
    e.setx(d.rd, _w(f"{e.x(d.rs1)} + {d.imm}" if d.imm else e.x(d.rs1)))


def srlw(e: Emitter, d: Decoded) -> None:
    e.setx(d.rd, _w(f"({e.x(d.rs1)} & {M32}) >> ({e.x(d.rs2)} & 31)"))


def sraw(e: Emitter, d: Decoded) -> None:
    a = e.x(d.rs1)
    e.setx(d.rd, f"((({a} & {M32}) ^ {S32}) - {S32}) >> ({e.x(d.rs2)} & 31)")


# -- Zba, Zbb, Zicond ------------------------------------------------------------

def _sh_add(n: int, uw: bool) -> Gen:
    def gen(e: Emitter, d: Decoded) -> None:
        a, b = e.x(d.rs1), e.x(d.rs2)
        if uw:
            shifted = f"({a} & {M32}) << {n}" if n else f"({a} & {M32})"
        else:
            shifted = f"ISHL({a}, {n})"
        e.setx(d.rd, f"IADD({shifted}, {b})")
    return gen


def slli_uw(e: Emitter, d: Decoded) -> None:
    e.setx(d.rd, f"ISHL({e.x(d.rs1)} & {M32}, {d.imm})")


def _minmax(pick_a_if: str, unsigned: bool) -> Gen:
    def gen(e: Emitter, d: Decoded) -> None:
        a, b = e.x(d.rs1), e.x(d.rs2)
        if unsigned:
            cond = f"({a} ^ {MIN64}) {pick_a_if} ({b} ^ {MIN64})"
        else:
            cond = f"{a} {pick_a_if} {b}"
        e.setx(d.rd, f"{a} if {cond} else {b}")
    return gen


SIGNED_GEN: Dict[str, Gen] = {
    "lui": lui, "auipc": auipc, "jal": jal, "jalr": jalr,
    "beq": _branch("==", False), "bne": _branch("!=", False),
    "blt": _branch("<", False), "bge": _branch(">=", False),
    "bltu": _branch("<", True), "bgeu": _branch(">=", True),
    "sd": sd,
    "lb": _load(1, True), "lh": _load(2, True), "lw": _load(4, True), "ld": _load(8, True),
    "lbu": _load(1, False), "lhu": _load(2, False), "lwu": _load(4, False),
    "sb": _store(1), "sh": _store(2), "sw": _store(4),
    "addi": addi, "add": add, "sub": _reg("ISUB({a}, {b})"),
    "slti": _imm("int({a} < {i})"), "sltiu": sltiu,
    "xori": _imm("{a} ^ {i}"), "ori": _imm("{a} | {i}"), "andi": _imm("{a} & {i}"),
    "slli": _shift_imm("sll", False), "srli": _shift_imm("srl", False),
    "srai": _shift_imm("sra", False),
    "sll": _reg("ISHL({a}, {b} & 63)"), "srl": _reg("USHR({a}, {b} & 63)"),
    "sra": _reg("{a} >> ({b} & 63)"),
    "slt": _reg("int({a} < {b})"), "sltu": sltu,
    "xor": _reg("{a} ^ {b}"), "or": _reg("{a} | {b}"), "and": _reg("{a} & {b}"),
    "addiw": addiw,
    "slliw": _shift_imm("sll", True), "srliw": _shift_imm("srl", True),
    "sraiw": _shift_imm("sra", True),
    "addw": _word("{a} + {b}"), "subw": _word("{a} - {b}"),
    "sllw": _word("{a} << ({b} & 31)"), "srlw": srlw, "sraw": sraw,
    "mul": _reg("IMUL({a}, {b})"),
    "mulw": _reg(_w("IMUL({a}, {b})")),
    "add.uw": _sh_add(0, True), "sh1add": _sh_add(1, False), "sh2add": _sh_add(2, False),
    "sh3add": _sh_add(3, False), "sh1add.uw": _sh_add(1, True), "sh2add.uw": _sh_add(2, True),
    "sh3add.uw": _sh_add(3, True), "slli.uw": slli_uw,
    "andn": _reg("{a} & ~{b}"), "orn": _reg("{a} | ~{b}"), "xnor": _reg("~({a} ^ {b})"),
    "max": _minmax(">", False), "maxu": _minmax(">", True),
    "min": _minmax("<", False), "minu": _minmax("<", True),
    "sext.b": _un("(({a} & 255) ^ 128) - 128"), "sext.h": _un("(({a} & 65535) ^ 32768) - 32768"),
    "zext.h": _un("{a} & 65535"),
    "czero.eqz": _reg("{a} if {b} else 0"), "czero.nez": _reg("0 if {b} else {a}"),
}
