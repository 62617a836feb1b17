"""A tiny RV64 encoder for tests (no toolchain needed)."""

from __future__ import annotations

import struct
from typing import Dict, Iterable, List, Tuple, Union


def r(op: int, f3: int, f7: int, rd: int, rs1: int, rs2: int) -> int:
    return (f7 << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op


def i(op: int, f3: int, rd: int, rs1: int, imm: int) -> int:
    return ((imm & 0xFFF) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op


def s(op: int, f3: int, rs1: int, rs2: int, imm: int) -> int:
    imm &= 0xFFF
    return ((imm >> 5) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | ((imm & 31) << 7) | op


def b(f3: int, rs1: int, rs2: int, off: int) -> int:
    off &= 0x1FFF
    return ((((off >> 12) & 1) << 31) | (((off >> 5) & 63) << 25) | (rs2 << 20) | (rs1 << 15)
            | (f3 << 12) | (((off >> 1) & 15) << 8) | (((off >> 11) & 1) << 7) | 0x63)


def u(op: int, rd: int, imm20: int) -> int:
    return ((imm20 & 0xFFFFF) << 12) | (rd << 7) | op


def j(rd: int, off: int) -> int:
    off &= 0x1FFFFF
    return ((((off >> 20) & 1) << 31) | (((off >> 1) & 0x3FF) << 21) | (((off >> 11) & 1) << 20)
            | (((off >> 12) & 0xFF) << 12) | (rd << 7) | 0x6F)


def addi(rd: int, rs1: int, imm: int) -> int:
    return i(0x13, 0, rd, rs1, imm)


def csrrw(rd: int, csr: int, rs1: int) -> int:
    return i(0x73, 1, rd, rs1, csr)


def csrrs(rd: int, csr: int, rs1: int) -> int:
    return i(0x73, 2, rd, rs1, csr)


EBREAK = 0x00100073
ECALL = 0x00000073
MRET = 0x30200073
SRET = 0x10200073
WFI = 0x10500073


def li32(rd: int, value: int) -> list:
    """lui+addiw sequence loading a 32-bit signed value."""
    value &= 0xFFFFFFFF
    lo = value & 0xFFF
    if lo >= 0x800:
        lo -= 0x1000
    hi = ((value - lo) >> 12) & 0xFFFFF
    return [u(0x37, rd, hi), i(0x1B, 0, rd, rd, lo)]


def words(ws: Iterable[int]) -> bytes:
    return b"".join(struct.pack("<I", w & 0xFFFFFFFF) for w in ws)


# -- programs with labels ------------------------------------------------------
# items: encoded words, lbl(name), br(funct3, rs1, rs2, name), jmp(name)
Item = Union[int, Tuple]


def assemble(items: List[Item]) -> List[int]:
    labels: Dict[str, int] = {}
    pc = 0
    for it in items:
        if isinstance(it, tuple) and it[0] == "label":
            labels[it[1]] = pc
        else:
            pc += 4
    out = []
    pc = 0
    for it in items:
        if isinstance(it, int):
            out.append(it)
        elif it[0] == "br":
            _, f3, rs1, rs2, label = it
            out.append(b(f3, rs1, rs2, labels[label] - pc))
        elif it[0] == "j":
            out.append(j(0, labels[it[1]] - pc))
        else:
            continue
        pc += 4
    return out


def lbl(name: str) -> Tuple:
    return ("label", name)


def br(f3: int, rs1: int, rs2: int, label: str) -> Tuple:
    return ("br", f3, rs1, rs2, label)


def jmp(label: str) -> Tuple:
    return ("j", label)
