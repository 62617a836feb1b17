"""Bit manipulation: Zba, Zbb, Zbc, Zbs (RISC-V Bit-Manipulation ISA
extensions, version 1.0.0), RV64 encodings.

Semantics are inline expressions where Python has a cheap one; the rest
(carry-less multiply, population count) are functions in :data:`GLOBALS`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Dict, List

from ..bits import M64
from . import Decoded, Gen, Insn
from .enc import enc
from .rv64i import M32, S64, _alu, w32

if TYPE_CHECKING:
    from ..codegen import Emitter

OP_IMM, OP, OP_IMM32, OP32 = 0x13, 0x33, 0x1B, 0x3B

_B7F = 0x7F7F7F7F7F7F7F7F
_B80 = 0x8080808080808080


# -- functions generated code calls ----------------------------------------------

def _cpop_fallback(v: int) -> int:
    return bin(v).count("1")


zb_cpop: Callable[[int], int] = getattr(int, "bit_count", _cpop_fallback)


def _clmul_full(a: int, b: int) -> int:
    """The 128-bit carry-less product of two 64-bit values."""
    if zb_cpop(a) < zb_cpop(b):
        a, b = b, a
    r = 0
    while b:
        low = b & -b
        r ^= a * low  # a << (bit index of low)
        b ^= low
    return r


def zb_clmul(a: int, b: int) -> int:
    return _clmul_full(a, b) & M64


def zb_clmulh(a: int, b: int) -> int:
    return _clmul_full(a, b) >> 64


def zb_clmulr(a: int, b: int) -> int:
    return (_clmul_full(a, b) >> 63) & M64


GLOBALS: Dict[str, object] = {
    "zb_cpop": zb_cpop, "zb_clmul": zb_clmul, "zb_clmulh": zb_clmulh, "zb_clmulr": zb_clmulr,
}


# -- semantics ------------------------------------------------------------------

def _unary(template: str) -> Gen:
    """Unary operation on rs1; ``{a}`` is parenthesised-safe (may be ``0``)."""
    def gen(e: Emitter, d: Decoded) -> None:
        e.setx(d.rd, template.format(a=e.x(d.rs1)))
    return gen


def _ctz(width: int) -> Gen:
    # The lowest set bit of (value | 2**width) is the answer's power of two.
    def gen(e: Emitter, d: Decoded) -> None:
        a = e.x(d.rs1)
        if a == "0":
            e.setx(d.rd, str(width))
            return
        t = e.tmp()
        src = a if width == 64 else f"({a} & {M32})"
        e.emit(f"{t} = {src} | {1 << width}")
        e.setx(d.rd, f"({t} & -{t}).bit_length() - 1")
    return gen


def _rot(left: bool, word: bool) -> Gen:
    """rol/ror/rolw/rorw: the amount from rs2."""
    width = 32 if word else 64

    def gen(e: Emitter, d: Decoded) -> None:
        a, b = e.x(d.rs1), e.x(d.rs2)
        if b == "0":
            e.setx(d.rd, w32(a) if word else a)
            return
        t = e.tmp()
        e.emit(f"{t} = {b} & {width - 1}")
        if word:
            v = e.tmp()
            e.emit(f"{v} = {a} & {M32}")
            a = v
        if left:
            expr = f"({a} << {t}) | ({a} >> ({width} - {t}))"
        else:
            expr = f"({a} >> {t}) | ({a} << ({width} - {t}))"
        e.setx(d.rd, w32(expr) if word else f"({expr}) & {M64}")
    return gen


def rori(e: Emitter, d: Decoded) -> None:
    a, sh = e.x(d.rs1), d.imm
    if sh == 0 or a == "0":
        e.setx(d.rd, a)
        return
    e.setx(d.rd, f"(({a} >> {sh}) | ({a} << {64 - sh})) & {M64}")


def roriw(e: Emitter, d: Decoded) -> None:
    a, sh = e.x(d.rs1), d.imm
    if sh == 0 or a == "0":
        e.setx(d.rd, w32(a))
        return
    t = e.tmp()
    e.emit(f"{t} = {a} & {M32}")
    e.setx(d.rd, w32(f"({t} >> {sh}) | ({t} << {32 - sh})"))


def _minmax(op: str, signed: bool) -> Gen:
    def gen(e: Emitter, d: Decoded) -> None:
        a, b = e.x(d.rs1), e.x(d.rs2)
        if signed:
            e.setx(d.rd, f"{a} if ({a} ^ {S64}) {op} ({b} ^ {S64}) else {b}")
        else:
            e.setx(d.rd, f"{a} if {a} {op} {b} else {b}")
    return gen


def _bit_imm(op: str) -> Gen:
    def gen(e: Emitter, d: Decoded) -> None:
        a, bit = e.x(d.rs1), 1 << d.imm
        if op == "clr":
            e.setx(d.rd, f"{a} & {M64 ^ bit}")
        elif op == "inv":
            e.setx(d.rd, f"{a} ^ {bit}")
        elif op == "set":
            e.setx(d.rd, f"{a} | {bit}")
        else:
            e.setx(d.rd, f"({a} >> {d.imm}) & 1")
    return gen


def _sh_add(n: int, uw: bool) -> Gen:
    def gen(e: Emitter, d: Decoded) -> None:
        a, b = e.x(d.rs1), e.x(d.rs2)
        if uw:
            a = f"({a} & {M32})"
        shifted = f"({a} << {n})" if n else a
        e.setx(d.rd, f"({shifted} + {b}) & {M64}")
    return gen


def slli_uw(e: Emitter, d: Decoded) -> None:
    e.setx(d.rd, f"(({e.x(d.rs1)} & {M32}) << {d.imm}) & {M64}")


R, SH6, SH5 = "R", "SH6", "SH5"

INSNS: List[Insn] = [
    # Zba
    Insn("add.uw", *enc(OP32, 0, 0x04), R, _sh_add(0, True), ext="zba"),
    Insn("sh1add", *enc(OP, 2, 0x10), R, _sh_add(1, False), ext="zba"),
    Insn("sh2add", *enc(OP, 4, 0x10), R, _sh_add(2, False), ext="zba"),
    Insn("sh3add", *enc(OP, 6, 0x10), R, _sh_add(3, False), ext="zba"),
    Insn("sh1add.uw", *enc(OP32, 2, 0x10), R, _sh_add(1, True), ext="zba"),
    Insn("sh2add.uw", *enc(OP32, 4, 0x10), R, _sh_add(2, True), ext="zba"),
    Insn("sh3add.uw", *enc(OP32, 6, 0x10), R, _sh_add(3, True), ext="zba"),
    Insn("slli.uw", *enc(OP_IMM32, 1, funct6=0x02), SH6, slli_uw, ext="zba"),
    # Zbb
    Insn("andn", *enc(OP, 7, 0x20), R, _alu(f"{{a}} & ({{b}} ^ {M64})"), ext="zbb"),
    Insn("orn", *enc(OP, 6, 0x20), R, _alu(f"{{a}} | ({{b}} ^ {M64})"), ext="zbb"),
    Insn("xnor", *enc(OP, 4, 0x20), R, _alu(f"{{a}} ^ {{b}} ^ {M64}"), ext="zbb"),
    Insn("clz", *enc(OP_IMM, 1, 0x30, rs2=0), R, _unary("64 - ({a}).bit_length()"), ext="zbb"),
    Insn("clzw", *enc(OP_IMM32, 1, 0x30, rs2=0), R,
         _unary(f"32 - ({{a}} & {M32}).bit_length()"), ext="zbb"),
    Insn("ctz", *enc(OP_IMM, 1, 0x30, rs2=1), R, _ctz(64), ext="zbb"),
    Insn("ctzw", *enc(OP_IMM32, 1, 0x30, rs2=1), R, _ctz(32), ext="zbb"),
    Insn("cpop", *enc(OP_IMM, 1, 0x30, rs2=2), R, _unary("zb_cpop({a})"), ext="zbb"),
    Insn("cpopw", *enc(OP_IMM32, 1, 0x30, rs2=2), R, _unary(f"zb_cpop({{a}} & {M32})"),
         ext="zbb"),
    Insn("max", *enc(OP, 6, 0x05), R, _minmax(">", True), ext="zbb"),
    Insn("maxu", *enc(OP, 7, 0x05), R, _minmax(">", False), ext="zbb"),
    Insn("min", *enc(OP, 4, 0x05), R, _minmax("<", True), ext="zbb"),
    Insn("minu", *enc(OP, 5, 0x05), R, _minmax("<", False), ext="zbb"),
    Insn("sext.b", *enc(OP_IMM, 1, 0x30, rs2=4), R,
         _unary(f"((({{a}} & 255) ^ 128) - 128) & {M64}"), ext="zbb"),
    Insn("sext.h", *enc(OP_IMM, 1, 0x30, rs2=5), R,
         _unary(f"((({{a}} & 65535) ^ 32768) - 32768) & {M64}"), ext="zbb"),
    Insn("zext.h", *enc(OP32, 4, 0x04, rs2=0), R, _unary("{a} & 65535"), ext="zbb"),
    Insn("rol", *enc(OP, 1, 0x30), R, _rot(True, False), ext="zbb"),
    Insn("ror", *enc(OP, 5, 0x30), R, _rot(False, False), ext="zbb"),
    Insn("rolw", *enc(OP32, 1, 0x30), R, _rot(True, True), ext="zbb"),
    Insn("rorw", *enc(OP32, 5, 0x30), R, _rot(False, True), ext="zbb"),
    Insn("rori", *enc(OP_IMM, 5, funct6=0x18), SH6, rori, ext="zbb"),
    Insn("roriw", *enc(OP_IMM32, 5, 0x30), SH5, roriw, ext="zbb"),
    # orc.b: a byte's top bit of ((v & 0x7f..) + 0x7f..) | v is set iff the byte is nonzero
    Insn("orc.b", *enc(OP_IMM, 5, imm12=0x287), R,
         _unary(f"((((({{a}} & {_B7F}) + {_B7F}) | {{a}}) & {_B80}) >> 7) * 255"), ext="zbb"),
    Insn("rev8", *enc(OP_IMM, 5, imm12=0x6B8), R,
         _unary('int.from_bytes(({a}).to_bytes(8, "little"), "big")'), ext="zbb"),
    # Zbc
    Insn("clmul", *enc(OP, 1, 0x05), R, _alu("zb_clmul({a}, {b})"), ext="zbc"),
    Insn("clmulh", *enc(OP, 3, 0x05), R, _alu("zb_clmulh({a}, {b})"), ext="zbc"),
    Insn("clmulr", *enc(OP, 2, 0x05), R, _alu("zb_clmulr({a}, {b})"), ext="zbc"),
    # Zbs
    Insn("bclr", *enc(OP, 1, 0x24), R, _alu("{a} & ~(1 << ({b} & 63))"), ext="zbs"),
    Insn("bext", *enc(OP, 5, 0x24), R, _alu("({a} >> ({b} & 63)) & 1"), ext="zbs"),
    Insn("binv", *enc(OP, 1, 0x34), R, _alu("{a} ^ (1 << ({b} & 63))"), ext="zbs"),
    Insn("bset", *enc(OP, 1, 0x14), R, _alu("{a} | (1 << ({b} & 63))"), ext="zbs"),
    Insn("bclri", *enc(OP_IMM, 1, funct6=0x12), SH6, _bit_imm("clr"), ext="zbs"),
    Insn("bexti", *enc(OP_IMM, 5, funct6=0x12), SH6, _bit_imm("ext"), ext="zbs"),
    Insn("binvi", *enc(OP_IMM, 1, funct6=0x1A), SH6, _bit_imm("inv"), ext="zbs"),
    Insn("bseti", *enc(OP_IMM, 1, funct6=0x0A), SH6, _bit_imm("set"), ext="zbs"),
]
