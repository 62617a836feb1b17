"""M extension: integer multiply and divide."""

from __future__ import annotations

from typing import List

from ..bits import M64
from . import Insn
from .enc import enc
from .rv64i import _alu, _alu_w

OP, OP32 = 0x33, 0x3B

INSNS: List[Insn] = [
    Insn("mul", *enc(OP, 0, 1), "R", _alu(f"({{a}} * {{b}}) & {M64}")),
    Insn("mulh", *enc(OP, 1, 1), "R", _alu("mulh({a}, {b})")),
    Insn("mulhsu", *enc(OP, 2, 1), "R", _alu("mulhsu({a}, {b})")),
    Insn("mulhu", *enc(OP, 3, 1), "R", _alu("mulhu({a}, {b})")),
    Insn("div", *enc(OP, 4, 1), "R", _alu("div64({a}, {b})")),
    Insn("divu", *enc(OP, 5, 1), "R", _alu("divu64({a}, {b})")),
    Insn("rem", *enc(OP, 6, 1), "R", _alu("rem64({a}, {b})")),
    Insn("remu", *enc(OP, 7, 1), "R", _alu("remu64({a}, {b})")),
    Insn("mulw", *enc(OP32, 0, 1), "R", _alu_w("{a} * {b}")),
    Insn("divw", *enc(OP32, 4, 1), "R", _alu("div32({a}, {b})")),
    Insn("divuw", *enc(OP32, 5, 1), "R", _alu("divu32({a}, {b})")),
    Insn("remw", *enc(OP32, 6, 1), "R", _alu("rem32({a}, {b})")),
    Insn("remuw", *enc(OP32, 7, 1), "R", _alu("remu32({a}, {b})")),
]
