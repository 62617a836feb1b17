"""Zicond: integer conditional operations (czero.eqz, czero.nez)."""

from __future__ import annotations

from typing import List

from . import Insn
from .enc import enc
from .rv64i import _alu

OP = 0x33

INSNS: List[Insn] = [
    # rd = (rs2 == 0) ? 0 : rs1
    Insn("czero.eqz", *enc(OP, 5, 0x07), "R", _alu("{a} if {b} else 0"), ext="zicond"),
    # rd = (rs2 != 0) ? 0 : rs1
    Insn("czero.nez", *enc(OP, 7, 0x07), "R", _alu("0 if {b} else {a}"), ext="zicond"),
]
