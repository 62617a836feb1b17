"""SYSTEM instructions: Zicsr, ECALL/EBREAK, xRET, WFI, SFENCE.VMA, Svinval,
Zifencei, Zawrs, and the Zicbom/Zicboz cache-block operations.

Everything here except the CBOs is SYSTEM kind: it runs alone, with the
registers in the hart's list, and the hart re-derives its translation
context afterwards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List

from . import PLAIN, SYSTEM, Decoded, Gen, Insn
from .enc import enc

if TYPE_CHECKING:
    from ..codegen import Emitter

SYS = 0x73


def _csr(op: str, imm: bool) -> Gen:
    def gen(e: Emitter, d: Decoded) -> None:
        src = str(d.imm) if imm else e.x(d.rs1)
        # csrrw always writes and reads only if rd != x0; csrrs/csrrc always
        # read and write only if the source is not x0 / zero (Zicsr 6.1).
        if op == "w":
            do_read, do_write = d.rd != 0, True
        else:
            do_read, do_write = True, (d.imm if imm else d.rs1) != 0
        e.setx(d.rd, f"H.csr_op({d.csr}, {op!r}, {src}, {do_read}, {do_write}, {d.raw}, {d.pc})")
    return gen


# SYSTEM instructions that translated code may run itself (see in_block)
INLINE = 1  # anywhere in a block
LAST = 2  # as the last instruction of a block (the next pc is looked up afresh)
FIRST = 3  # as the first instruction of a block (when instret is exact)

# CSRs whose accesses change nothing but the CSR itself (no translation
# context, no interrupt, no dependence on retired instructions)
_PLAIN_CSRS = frozenset({0x140, 0x141, 0x142, 0x143})  # sscratch, sepc, scause, stval
# CSRs whose reads depend on nothing but the hart's state
_PURE_READS = _PLAIN_CSRS | {0x100, 0x104, 0x105, 0x106, 0x10A, 0x180}  # sstatus sie stvec
# scounteren senvcfg satp
_SSTATUS, _SIE_BIT = 0x100, 2
_COUNTERS = frozenset({0xC00, 0xC01, 0xC02})  # cycle, time, instret: follow instret


def in_block(d: Decoded) -> int:
    """Whether the SYSTEM instruction ``d`` may run inside translated code
    (INLINE, LAST) or is left to the interpreter (0), which re-derives the
    translation context and checks interrupts after it. fence.i and
    sfence.vma end their block (what runs next is looked up again);
    accesses of plain CSRs, pure reads of a few others and csrrci sstatus
    clearing only SIE (interrupts off: nothing becomes pending) run inline;
    reads of cycle, time and instret first in a block (FIRST), where the
    hart's instret counts every instruction before them."""
    name = d.insn.name
    if name in ("fence.i", "sfence.vma"):
        return LAST
    if not name.startswith("csrr"):
        return 0
    if d.csr in _PLAIN_CSRS:
        return INLINE
    src = d.imm if name.endswith("i") else d.rs1
    if name[4] != "w" and src == 0:
        if d.csr in _PURE_READS:
            return INLINE
        if d.csr in _COUNTERS:
            return FIRST
    if name == "csrrci" and d.csr == _SSTATUS and src == _SIE_BIT:
        return INLINE
    return 0


def ecall(e: Emitter, d: Decoded) -> None:
    e.emit(f"H.ecall({d.pc})")
    e.ended = True


def ebreak(e: Emitter, d: Decoded) -> None:
    e.emit(f"H.ebreak({d.pc})")
    e.ended = True


def _call(method: str, ends: bool) -> Gen:
    """Instructions implemented by one hart method taking (raw, pc)."""
    def gen(e: Emitter, d: Decoded) -> None:
        e.emit(f"H.{method}({d.raw}, {d.pc})")
        e.ended = ends
    return gen


def sfence_vma(e: Emitter, d: Decoded) -> None:
    e.emit(f"H.sfence_vma({e.x(d.rs1)}, {e.x(d.rs2)}, {d.raw}, {d.pc})")


def _cbo(op: str) -> Gen:
    def gen(e: Emitter, d: Decoded) -> None:
        a = e.ea(d.rs1, 0)
        e.emit(f"H.cbo({op!r}, {a}, {d.raw}, {d.pc})")
    return gen


INSNS: List[Insn] = [
    Insn("ecall", *enc(SYS, imm12=0, rs1=0, funct3=0, rd=0), "R", ecall, SYSTEM),
    Insn("ebreak", *enc(SYS, imm12=1, rs1=0, funct3=0, rd=0), "R", ebreak, SYSTEM),
    Insn("sret", *enc(SYS, imm12=0x102, rs1=0, funct3=0, rd=0), "R", _call("sret", True), SYSTEM),
    Insn("mret", *enc(SYS, imm12=0x302, rs1=0, funct3=0, rd=0), "R", _call("mret", True), SYSTEM),
    Insn("wfi", *enc(SYS, imm12=0x105, rs1=0, funct3=0, rd=0), "R", _call("wfi", False), SYSTEM),
    Insn("sfence.vma", *enc(SYS, funct7=0x09, funct3=0, rd=0), "R", sfence_vma, SYSTEM),
    Insn("sinval.vma", *enc(SYS, funct7=0x0B, funct3=0, rd=0), "R", sfence_vma, SYSTEM),
    Insn("sfence.w.inval", *enc(SYS, funct7=0x0C, rs2=0, rs1=0, funct3=0, rd=0), "R",
         _call("svinval_fence", False), SYSTEM),
    Insn("sfence.inval.ir", *enc(SYS, funct7=0x0C, rs2=1, rs1=0, funct3=0, rd=0), "R",
         _call("svinval_fence", False), SYSTEM),
    Insn("wrs.nto", *enc(SYS, imm12=0x00D, rs1=0, funct3=0, rd=0), "R", _call("wrs", False), SYSTEM),
    Insn("wrs.sto", *enc(SYS, imm12=0x01D, rs1=0, funct3=0, rd=0), "R", _call("wrs", False), SYSTEM),
    Insn("csrrw", *enc(SYS, 1), "I", _csr("w", False), SYSTEM),
    Insn("csrrs", *enc(SYS, 2), "I", _csr("s", False), SYSTEM),
    Insn("csrrc", *enc(SYS, 3), "I", _csr("c", False), SYSTEM),
    Insn("csrrwi", *enc(SYS, 5), "CSRI", _csr("w", True), SYSTEM),
    Insn("csrrsi", *enc(SYS, 6), "CSRI", _csr("s", True), SYSTEM),
    Insn("csrrci", *enc(SYS, 7), "CSRI", _csr("c", True), SYSTEM),
    Insn("fence.i", *enc(0x0F, 1), "I", _call("fence_i", False), SYSTEM),
    Insn("cbo.inval", *enc(0x0F, 2, imm12=0, rd=0), "R", _cbo("inval"), PLAIN),
    Insn("cbo.clean", *enc(0x0F, 2, imm12=1, rd=0), "R", _cbo("clean"), PLAIN),
    Insn("cbo.flush", *enc(0x0F, 2, imm12=2, rd=0), "R", _cbo("flush"), PLAIN),
    Insn("cbo.zero", *enc(0x0F, 2, imm12=4, rd=0), "R", _cbo("zero"), PLAIN),
]
