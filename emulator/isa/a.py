"""A extension: LR/SC with a reservation, and the AMOs (Zalrsc, Zaamo)."""

from __future__ import annotations

from typing import TYPE_CHECKING, List

from . import Decoded, Gen, Insn
from .enc import enc

if TYPE_CHECKING:
    from ..codegen import Emitter

AMO = 0x2F

# funct5 -> operation name understood by Hart.amo
AMO_OPS = {
    0x00: "add", 0x01: "swap", 0x04: "xor", 0x08: "or", 0x0C: "and",
    0x10: "min", 0x14: "max", 0x18: "minu", 0x1C: "maxu",
}


def _lr(size: int) -> Gen:
    def gen(e: Emitter, d: Decoded) -> None:
        a = e.ea(d.rs1, 0)
        e.setx(d.rd, f"H.lr({a}, {size}, {d.pc})")
    return gen


def _sc(size: int) -> Gen:
    def gen(e: Emitter, d: Decoded) -> None:
        a = e.ea(d.rs1, 0)
        e.setx(d.rd, f"H.sc({a}, {size}, {e.x(d.rs2)}, {d.pc})")
        e.emit(f"if H.code_dirty: H.after_atomic({d.pc})")  # rd first
    return gen


def _amo(op: str, size: int) -> Gen:
    def gen(e: Emitter, d: Decoded) -> None:
        a = e.ea(d.rs1, 0)
        e.setx(d.rd, f"H.amo({a}, {size}, {op!r}, {e.x(d.rs2)}, {d.pc})")
        e.emit(f"if H.code_dirty: H.after_atomic({d.pc})")  # rd first
    return gen


INSNS: List[Insn] = []
for _f3, _sz, _sfx in ((2, 4, "w"), (3, 8, "d")):
    INSNS.append(Insn(f"lr.{_sfx}", *enc(AMO, _f3, funct5=0x02, rs2=0), "R", _lr(_sz)))
    INSNS.append(Insn(f"sc.{_sfx}", *enc(AMO, _f3, funct5=0x03), "R", _sc(_sz)))
    for _f5, _op in AMO_OPS.items():
        INSNS.append(Insn(f"amo{_op}.{_sfx}", *enc(AMO, _f3, funct5=_f5), "R", _amo(_op, _sz)))
