"""RV64I base integer instructions (unprivileged spec, chapters 2 and 4)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, List, Optional, Tuple

from ..bits import M64
from . import BRANCH, JUMP, Decoded, Gen, Insn
from .enc import enc

if TYPE_CHECKING:
    from ..codegen import Emitter

S64 = 1 << 63
S32 = 1 << 31
M32 = 0xFFFFFFFF


def w32(expr: str) -> str:
    """Sign-extend the low 32 bits of ``expr`` to canonical 64-bit (no branches)."""
    return f"(((({expr}) & {M32}) ^ {S32}) - {S32}) & {M64}"


# Known bounds (Emitter.known) let some instructions skip work: a "W"
# result that cannot overflow 32 bits needs no sign extension, a sum of
# non-negative values no wrap-around mask, a signed compare of values of one
# sign no bias. Ranges are of values read as signed 64-bit numbers.
Range = Optional[Tuple[int, int]]


def fits(r: Range, bits: int = 32) -> bool:
    """Whether the range is known and within signed ``bits``-bit values."""
    return r is not None and -(1 << (bits - 1)) <= r[0] and r[1] < (1 << (bits - 1))


def _span(r: Range, q: Range) -> Range:
    """Bounds of a bitwise AND/OR/XOR of values in ``r`` and ``q``."""
    if r is None or q is None:
        return None
    if r[0] >= 0 and q[0] >= 0:
        return (0, (1 << max(r[1].bit_length(), q[1].bit_length())) - 1)
    m = max(v.bit_length() if v >= 0 else (~v).bit_length() for v in r + q)
    return (-(1 << m), (1 << m) - 1)


def set_bounded(e: Emitter, rd: int, expr: str, r: Range) -> None:
    """rd = ``expr``, with its bounds when they are known."""
    if r is None:
        e.setx(rd, expr)
    else:
        e.setx_range(rd, expr, *r)


def _const(value: int) -> Tuple[int, int]:
    v = value & M64
    v = v - (1 << 64) if v >> 63 else v
    return (v, v)


def lui(e: Emitter, d: Decoded) -> None:
    e.setx_range(d.rd, str(d.imm & M64), *_const(d.imm))


def auipc(e: Emitter, d: Decoded) -> None:
    e.setx_range(d.rd, str((d.pc + d.imm) & M64), *_const(d.pc + d.imm))


def jal(e: Emitter, d: Decoded) -> None:
    e.setx(d.rd, str(d.next_pc))
    e.jump(str((d.pc + d.imm) & M64))


def jalr(e: Emitter, d: Decoded) -> None:
    r = e.known(d.rs1)
    if r is not None and r[0] == r[1]:
        # a constant base (auipc then jalr: a call too far for jal): a
        # known target, which the region's dispatcher compares as such
        e.setx(d.rd, str(d.next_pc))
        e.jump(str((r[0] + d.imm) & (M64 - 1)))
        return
    t = e.tmp()
    e.emit(f"{t} = ({e.x(d.rs1)} + {d.imm}) & {M64 - 1}")
    e.setx(d.rd, str(d.next_pc))
    e.jump(t)


def _branch(cond: str, signed: bool) -> Gen:
    def gen(e: Emitter, d: Decoded) -> None:
        a, b = e.x(d.rs1), e.x(d.rs2)
        ra, rb = e.known(d.rs1), e.known(d.rs2)
        same_sign = (ra is not None and rb is not None
                     and ((ra[0] >= 0 and rb[0] >= 0) or (ra[1] < 0 and rb[1] < 0)))
        if signed and not same_sign:
            a, b = f"({a} ^ {S64})", f"({b} ^ {S64})"
        e.branch(f"{a} {cond} {b}", (d.pc + d.imm) & M64)
    return gen


def _load(size: int, signed: bool) -> Gen:
    def gen(e: Emitter, d: Decoded) -> None:
        e.load(d.rd, e.ea_direct(d.rs1, d.imm), size, signed)
    return gen


def _store(size: int) -> Gen:
    mask = (1 << (8 * size)) - 1

    def gen(e: Emitter, d: Decoded) -> None:
        a = e.ea_direct(d.rs1, d.imm)
        v = e.x(d.rs2)
        e.store(a, v if size == 8 or v == "0" else f"{v} & {mask}", size)
    return gen


RangeFn = Callable[[Range, Range], Range]


def _alu_imm(template: str, rng: Optional[RangeFn] = None) -> Gen:
    """``template`` uses {a} (rs1) and {i} (immediate, canonical unsigned);
    ``rng`` gives the result's bounds from rs1's and the immediate's."""
    def gen(e: Emitter, d: Decoded) -> None:
        expr = template.format(a=e.x(d.rs1), i=d.imm & M64, s=d.imm)
        r = rng(e.known(d.rs1), (d.imm, d.imm)) if rng else None
        set_bounded(e, d.rd, expr, r)
    return gen


def _alu(template: str, rng: Optional[RangeFn] = None) -> Gen:
    def gen(e: Emitter, d: Decoded) -> None:
        expr = template.format(a=e.x(d.rs1), b=e.x(d.rs2))
        r = rng(e.known(d.rs1), e.known(d.rs2)) if rng else None
        set_bounded(e, d.rd, expr, r)
    return gen


def _bool(r: Range, q: Range) -> Range:
    return (0, 1)


def and_(e: Emitter, d: Decoded) -> None:
    # one operand may be in a congruent form (Emitter.setx_lazy) if the
    # other is canonical
    if e.is_lazy(d.rs1) and d.rs2 != d.rs1:
        a, b = e.x_for_and(d.rs1), e.x(d.rs2)
    else:
        a = e.x(d.rs1)
        b = e.x_for_and(d.rs2)
    expr = f"{a} & {b}"
    r = _and(e.known(d.rs1), e.known(d.rs2))
    set_bounded(e, d.rd, expr, r)


def andi(e: Emitter, d: Decoded) -> None:
    expr = f"{e.x_for_and(d.rs1)} & {d.imm & M64}"
    r = _and(e.known(d.rs1), (d.imm, d.imm))
    set_bounded(e, d.rd, expr, r)


def _and(r: Range, q: Range) -> Range:
    nonneg = [x[1] for x in (r, q) if x is not None and x[0] >= 0]
    return (0, min(nonneg)) if nonneg else _span(r, q)


def _alu_w(template: str) -> Gen:
    """A "W" operation: ``template`` ({a}, {b}) gives a value whose low 32
    bits are the result."""
    def gen(e: Emitter, d: Decoded) -> None:
        e.setx_w(d.rd, template.format(a=e.x(d.rs1), b=e.x(d.rs2)))
    return gen


def _sum(e: Emitter, rd: int, a: str, op: str, b: str, r: Range, q: Range, word: bool,
         literal: bool = False) -> bool:
    """rd = a op b (op + or -) without the wrap-around or sign-extension
    work when the bounds of the operands allow; False if they do not.
    ``literal``: b is an immediate written as a signed number."""
    if r is None or q is None:
        return False
    lo, hi = (r[0] + q[0], r[1] + q[1]) if op == "+" else (r[0] - q[1], r[1] - q[0])
    if word and not (fits(r) and fits(q) and fits((lo, hi))):
        return False
    if not fits((lo, hi), 64):
        return False
    if b == "0":
        expr = a
    elif r[0] >= 0 and (q[0] >= 0 or literal) and lo >= 0:
        expr = f"{a} {op} {b}"  # no wrap-around either way
    elif a == "0" and op == "-":
        # negw / neg of a bounded value: -b as it is, reduced when needed
        e.setx_lazy(rd, f"-{b}", f"-{b} & {M64}", lo, hi)
        return True
    elif a == "0":
        expr = f"{b} & {M64}"
    else:
        expr = f"({a} {op} {b}) & {M64}"
    e.setx_range(rd, expr, lo, hi)
    return True


def _alu_w_sum(op: str) -> Gen:
    """addw / subw."""
    def gen(e: Emitter, d: Decoded) -> None:
        a, b = e.x(d.rs1), e.x(d.rs2)
        if not _sum(e, d.rd, a, op, b, e.known(d.rs1), e.known(d.rs2), True):
            e.setx_w(d.rd, f"{a} {op} {b}")
    return gen


def addiw(e: Emitter, d: Decoded) -> None:
    a = e.x(d.rs1)
    if not _sum(e, d.rd, a, "+", str(d.imm) if d.imm else "0", e.known(d.rs1),
                (d.imm, d.imm), True, True):
        e.setx_w(d.rd, f"{a} + {d.imm}" if d.imm else a)


def add(e: Emitter, d: Decoded) -> None:
    a, b = e.x(d.rs1), e.x(d.rs2)
    if a == "0" or b == "0":
        # mv (c.mv expands to add rd, x0, rs2)
        src = d.rs2 if a == "0" else d.rs1
        r = e.known(src)
        set_bounded(e, d.rd, b if a == "0" else a, r)
    elif not _sum(e, d.rd, a, "+", b, e.known(d.rs1), e.known(d.rs2), False):
        e.setx(d.rd, f"({a} + {b}) & {M64}")


def addi(e: Emitter, d: Decoded) -> None:
    a = e.x(d.rs1)
    r = e.known(d.rs1)
    if d.imm == 0:
        set_bounded(e, d.rd, a, r)
    elif a == "0":
        e.setx_range(d.rd, str(d.imm & M64), d.imm, d.imm)
    elif r is not None and r[0] == r[1]:  # a constant (lui/auipc + addi)
        e.setx_range(d.rd, str((r[0] + d.imm) & M64), *_const(r[0] + d.imm))
    elif not _sum(e, d.rd, a, "+", str(d.imm), r, (d.imm, d.imm), False, True):
        e.setx(d.rd, f"({a} + {d.imm}) & {M64}")


def _shift_imm(op: str, word: bool) -> Gen:
    def gen(e: Emitter, d: Decoded) -> None:
        a = e.x(d.rs1)
        sh = d.imm
        if word:
            if op == "sll":
                e.setx_w(d.rd, f"{a} << {sh}")
            elif op == "srl" and sh:
                # bit 31 is clear: no sign to extend
                e.setx_range(d.rd, f"({a} & {M32}) >> {sh}", 0, (1 << (32 - sh)) - 1)
            elif op == "srl":
                e.setx_w(d.rd, a)
            else:  # sra
                e.setx_range(d.rd, f"((((({a} & {M32}) ^ {S32}) - {S32}) >> {sh})) & {M64}",
                             -(1 << (31 - sh)), (1 << (31 - sh)) - 1)
        else:
            if op == "sll":
                e.setx(d.rd, f"({a} << {sh}) & {M64}")
            elif op == "srl" and sh:
                e.setx_range(d.rd, f"{a} >> {sh}", 0, (1 << (64 - sh)) - 1)
            elif op == "srl":
                e.setx(d.rd, f"{a} >> {sh}")
            else:
                e.setx(d.rd, f"((({a} ^ {S64}) - {S64}) >> {sh}) & {M64}")
    return gen


def fence(e: Emitter, d: Decoded) -> None:
    # A single hart sees its own accesses in order; harts of one machine run
    # interleaved in one thread, so FENCE has nothing to wait for.
    return


I, R, S, B, U, J = "I", "R", "S", "B", "U", "J"
OP_IMM, OP, OP_IMM32, OP32 = 0x13, 0x33, 0x1B, 0x3B

INSNS: List[Insn] = [
    Insn("lui", *enc(0x37), U, lui),
    Insn("auipc", *enc(0x17), U, auipc),
    Insn("jal", *enc(0x6F), J, jal, JUMP),
    Insn("jalr", *enc(0x67, 0), I, jalr, JUMP),
    Insn("beq", *enc(0x63, 0), B, _branch("==", False), BRANCH),
    Insn("bne", *enc(0x63, 1), B, _branch("!=", False), BRANCH),
    Insn("blt", *enc(0x63, 4), B, _branch("<", True), BRANCH),
    Insn("bge", *enc(0x63, 5), B, _branch(">=", True), BRANCH),
    Insn("bltu", *enc(0x63, 6), B, _branch("<", False), BRANCH),
    Insn("bgeu", *enc(0x63, 7), B, _branch(">=", False), BRANCH),
    Insn("lb", *enc(0x03, 0), I, _load(1, True)),
    Insn("lh", *enc(0x03, 1), I, _load(2, True)),
    Insn("lw", *enc(0x03, 2), I, _load(4, True)),
    Insn("ld", *enc(0x03, 3), I, _load(8, True)),
    Insn("lbu", *enc(0x03, 4), I, _load(1, False)),
    Insn("lhu", *enc(0x03, 5), I, _load(2, False)),
    Insn("lwu", *enc(0x03, 6), I, _load(4, False)),
    Insn("sb", *enc(0x23, 0), S, _store(1)),
    Insn("sh", *enc(0x23, 1), S, _store(2)),
    Insn("sw", *enc(0x23, 2), S, _store(4)),
    Insn("sd", *enc(0x23, 3), S, _store(8)),
    Insn("addi", *enc(OP_IMM, 0), I, addi),
    Insn("slti", *enc(OP_IMM, 2), I,
         _alu_imm(f"int(({{a}} ^ {S64}) < ({{i}} ^ {S64}))", _bool)),
    Insn("sltiu", *enc(OP_IMM, 3), I, _alu_imm("int({a} < {i})", _bool)),
    Insn("xori", *enc(OP_IMM, 4), I, _alu_imm("{a} ^ {i}", _span)),
    Insn("ori", *enc(OP_IMM, 6), I, _alu_imm("{a} | {i}", _span)),
    Insn("andi", *enc(OP_IMM, 7), I, andi),
    Insn("slli", *enc(OP_IMM, 1, funct6=0), "SH6", _shift_imm("sll", False)),
    Insn("srli", *enc(OP_IMM, 5, funct6=0), "SH6", _shift_imm("srl", False)),
    Insn("srai", *enc(OP_IMM, 5, funct6=0x10), "SH6", _shift_imm("sra", False)),
    Insn("add", *enc(OP, 0, 0), R, add),
    Insn("sub", *enc(OP, 0, 0x20), R, _alu(f"({{a}} - {{b}}) & {M64}")),
    Insn("sll", *enc(OP, 1, 0), R, _alu(f"({{a}} << ({{b}} & 63)) & {M64}")),
    Insn("slt", *enc(OP, 2, 0), R, _alu(f"int(({{a}} ^ {S64}) < ({{b}} ^ {S64}))", _bool)),
    Insn("sltu", *enc(OP, 3, 0), R, _alu("int({a} < {b})", _bool)),
    Insn("xor", *enc(OP, 4, 0), R, _alu("{a} ^ {b}", _span)),
    Insn("srl", *enc(OP, 5, 0), R, _alu("{a} >> ({b} & 63)")),
    Insn("sra", *enc(OP, 5, 0x20), R, _alu(f"((({{a}} ^ {S64}) - {S64}) >> ({{b}} & 63)) & {M64}")),
    Insn("or", *enc(OP, 6, 0), R, _alu("{a} | {b}", _span)),
    Insn("and", *enc(OP, 7, 0), R, and_),
    Insn("addiw", *enc(OP_IMM32, 0), I, addiw),
    Insn("slliw", *enc(OP_IMM32, 1, 0), "SH5", _shift_imm("sll", True)),
    Insn("srliw", *enc(OP_IMM32, 5, 0), "SH5", _shift_imm("srl", True)),
    Insn("sraiw", *enc(OP_IMM32, 5, 0x20), "SH5", _shift_imm("sra", True)),
    Insn("addw", *enc(OP32, 0, 0), R, _alu_w_sum("+")),
    Insn("subw", *enc(OP32, 0, 0x20), R, _alu_w_sum("-")),
    Insn("sllw", *enc(OP32, 1, 0), R, _alu_w("{a} << ({b} & 31)")),
    Insn("srlw", *enc(OP32, 5, 0), R, _alu_w(f"({{a}} & {M32}) >> ({{b}} & 31)")),
    Insn("sraw", *enc(OP32, 5, 0x20), R,
         _alu(f"(((({{a}} & {M32}) ^ {S32}) - {S32}) >> ({{b}} & 31)) & {M64}")),
    Insn("fence", *enc(0x0F, 0), I, fence),
]
