"""Mask/match construction for instruction rows."""

from __future__ import annotations

from typing import Optional, Tuple


def enc(opcode: int, funct3: Optional[int] = None, funct7: Optional[int] = None,
        rs2: Optional[int] = None, rs1: Optional[int] = None, rd: Optional[int] = None,
        funct6: Optional[int] = None, funct5: Optional[int] = None,
        imm12: Optional[int] = None, fmt2: Optional[int] = None) -> Tuple[int, int]:
    """(mask, match) for the fixed fields given; None leaves a field free."""
    mask = 0x7F
    match = opcode
    fields = (
        (funct3, 12, 7), (funct7, 25, 0x7F), (rs2, 20, 31), (rs1, 15, 31), (rd, 7, 31),
        (funct6, 26, 63), (funct5, 27, 31), (imm12, 20, 0xFFF), (fmt2, 25, 3),
    )
    for value, shift, width in fields:
        if value is not None:
            mask |= width << shift
            match |= (value & width) << shift
    return mask, match
