"""RV64C: expansion of 16-bit instructions into their 32-bit equivalents
(unprivileged spec, chapter "C" Standard Extension, RVC instruction set
listings for RV64C).

:func:`expand` returns the 32-bit word an instruction parcel stands for, or
``None`` for a reserved or illegal encoding. HINT encodings (for example
``c.nop`` with a nonzero immediate, ``c.li``/``c.mv``/``c.add``/``c.slli``
with rd=x0, shifts by zero) expand to their legal 32-bit equivalent, which
has no architectural effect. Encodings the base C extension leaves to other
extensions (Zcb in quadrant 0 funct3=100 and quadrant 1 c.mul/c.zext...)
are not implemented and return ``None``.

The dispatch is a 32-entry table indexed by ``funct3 << 2 | quadrant``;
results are memoised per parcel.
"""

from __future__ import annotations

from typing import Callable, List, Optional

# 32-bit opcodes
_LOAD, _LOAD_FP, _OP_IMM, _OP_IMM32, _STORE, _STORE_FP = 0x03, 0x07, 0x13, 0x1B, 0x23, 0x27
_OP, _LUI, _OP32, _BRANCH, _JALR, _JAL = 0x33, 0x37, 0x3B, 0x63, 0x67, 0x6F
EBREAK = 0x00100073


def _i(opc: int, f3: int, rd: int, rs1: int, imm: int) -> int:
    return ((imm & 0xFFF) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | opc


def _s(opc: int, f3: int, rs1: int, rs2: int, imm: int) -> int:
    return (((imm >> 5) & 0x7F) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | ((imm & 31) << 7) | opc


def _r(opc: int, f3: int, f7: int, rd: int, rs1: int, rs2: int) -> int:
    return (f7 << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | opc


def _b(f3: int, rs1: int, imm: int) -> int:
    # rs2 = x0
    return ((((imm >> 12) & 1) << 31) | (((imm >> 5) & 63) << 25) | (rs1 << 15) | (f3 << 12)
            | (((imm >> 1) & 15) << 8) | (((imm >> 11) & 1) << 7) | _BRANCH)


def _j(imm: int) -> int:
    # rd = x0
    return ((((imm >> 20) & 1) << 31) | (((imm >> 1) & 0x3FF) << 21) | (((imm >> 11) & 1) << 20)
            | (((imm >> 12) & 0xFF) << 12) | _JAL)


# -- immediate fields -------------------------------------------------------

def _ci_imm(h: int) -> int:
    """imm[5] = bit 12, imm[4:0] = bits 6:2, sign-extended (CI format)."""
    v = ((h >> 7) & 0x20) | ((h >> 2) & 0x1F)
    return v - 64 if v & 0x20 else v


def _ci_uimm(h: int) -> int:
    """Unsigned 6-bit CI field (shift amounts)."""
    return ((h >> 7) & 0x20) | ((h >> 2) & 0x1F)


def _cl_d(h: int) -> int:
    """uimm[5:3] = bits 12:10, uimm[7:6] = bits 6:5 (c.ld, c.sd, c.fld, c.fsd)."""
    return ((h >> 7) & 0x38) | ((h << 1) & 0xC0)


def _cl_w(h: int) -> int:
    """uimm[5:3] = bits 12:10, uimm[2] = bit 6, uimm[6] = bit 5 (c.lw, c.sw)."""
    return ((h >> 7) & 0x38) | ((h >> 4) & 0x4) | ((h << 1) & 0x40)


def _rd_p(h: int) -> int:
    return 8 + ((h >> 2) & 7)


def _rs1_p(h: int) -> int:
    return 8 + ((h >> 7) & 7)


def _rd(h: int) -> int:
    return (h >> 7) & 31


def _rs2(h: int) -> int:
    return (h >> 2) & 31


# -- quadrant 0 -----------------------------------------------------------------

def _c_addi4spn(h: int) -> Optional[int]:
    # nzuimm[5:4|9:6|2|3] = bits 12:5
    imm = (((h >> 7) & 0x30) | ((h >> 1) & 0x3C0) | ((h >> 4) & 0x4) | ((h >> 2) & 0x8))
    if imm == 0:
        return None  # includes the all-zero parcel
    return _i(_OP_IMM, 0, _rd_p(h), 2, imm)


def _c_fld(h: int) -> Optional[int]:
    return _i(_LOAD_FP, 3, _rd_p(h), _rs1_p(h), _cl_d(h))


def _c_lw(h: int) -> Optional[int]:
    return _i(_LOAD, 2, _rd_p(h), _rs1_p(h), _cl_w(h))


def _c_ld(h: int) -> Optional[int]:
    return _i(_LOAD, 3, _rd_p(h), _rs1_p(h), _cl_d(h))


def _c_fsd(h: int) -> Optional[int]:
    return _s(_STORE_FP, 3, _rs1_p(h), _rd_p(h), _cl_d(h))


def _c_sw(h: int) -> Optional[int]:
    return _s(_STORE, 2, _rs1_p(h), _rd_p(h), _cl_w(h))


def _c_sd(h: int) -> Optional[int]:
    return _s(_STORE, 3, _rs1_p(h), _rd_p(h), _cl_d(h))


# -- quadrant 1 -----------------------------------------------------------------

def _c_addi(h: int) -> Optional[int]:
    # c.nop (rd=0, imm=0), HINTs (rd=0 with imm!=0, or imm=0 with rd!=0) included.
    rd = _rd(h)
    return _i(_OP_IMM, 0, rd, rd, _ci_imm(h))


def _c_addiw(h: int) -> Optional[int]:
    rd = _rd(h)
    if rd == 0:
        return None
    return _i(_OP_IMM32, 0, rd, rd, _ci_imm(h))


def _c_li(h: int) -> Optional[int]:
    return _i(_OP_IMM, 0, _rd(h), 0, _ci_imm(h))  # rd=0: HINT


def _c_lui_addi16sp(h: int) -> Optional[int]:
    rd = _rd(h)
    if rd == 2:
        # nzimm[9] = bit 12, nzimm[4|6|8:7|5] = bits 6:2
        v = (((h >> 3) & 0x200) | ((h >> 2) & 0x10) | ((h << 1) & 0x40) | ((h << 4) & 0x180)
             | ((h << 3) & 0x20))
        if v == 0:
            return None
        if v & 0x200:
            v -= 0x400
        return _i(_OP_IMM, 0, 2, 2, v)
    imm = _ci_imm(h)
    if imm == 0:
        return None
    return ((imm & 0xFFFFF) << 12) | (rd << 7) | _LUI  # rd=0: HINT


def _c_misc_alu(h: int) -> Optional[int]:
    rd = _rs1_p(h)
    f2 = (h >> 10) & 3
    if f2 == 0:  # c.srli (shamt=0: HINT)
        return _i(_OP_IMM, 5, rd, rd, _ci_uimm(h))
    if f2 == 1:  # c.srai (shamt=0: HINT)
        return _i(_OP_IMM, 5, rd, rd, 0x400 | _ci_uimm(h))
    if f2 == 2:  # c.andi
        return _i(_OP_IMM, 7, rd, rd, _ci_imm(h))
    rs2 = _rd_p(h)
    op = (h >> 5) & 3
    if h & 0x1000:
        if op == 0:
            return _r(_OP32, 0, 0x20, rd, rd, rs2)  # c.subw
        if op == 1:
            return _r(_OP32, 0, 0, rd, rd, rs2)  # c.addw
        return None  # reserved (Zcb: c.mul, c.zext.b, ...)
    if op == 0:
        return _r(_OP, 0, 0x20, rd, rd, rs2)  # c.sub
    # c.xor, c.or, c.and
    return _r(_OP, (4, 6, 7)[op - 1], 0, rd, rd, rs2)


def _c_j(h: int) -> Optional[int]:
    # offset[11|4|9:8|10|6|7|3:1|5] = bits 12:2
    v = (((h >> 1) & 0x800) | ((h >> 7) & 0x10) | ((h >> 1) & 0x300) | ((h << 2) & 0x400)
         | ((h >> 1) & 0x40) | ((h << 1) & 0x80) | ((h >> 2) & 0xE) | ((h << 3) & 0x20))
    if v & 0x800:
        v -= 0x1000
    return _j(v)


def _cb_off(h: int) -> int:
    # offset[8|4:3] = bits 12:10, offset[7:6|2:1|5] = bits 6:2
    v = (((h >> 4) & 0x100) | ((h >> 7) & 0x18) | ((h << 1) & 0xC0) | ((h >> 2) & 0x6)
         | ((h << 3) & 0x20))
    return v - 0x200 if v & 0x100 else v


def _c_beqz(h: int) -> Optional[int]:
    return _b(0, _rs1_p(h), _cb_off(h))


def _c_bnez(h: int) -> Optional[int]:
    return _b(1, _rs1_p(h), _cb_off(h))


# -- quadrant 2 -----------------------------------------------------------------

def _c_slli(h: int) -> Optional[int]:
    rd = _rd(h)
    return _i(_OP_IMM, 1, rd, rd, _ci_uimm(h))  # rd=0 or shamt=0: HINT


def _sp_d(h: int) -> int:
    """uimm[5] = bit 12, uimm[4:3|8:6] = bits 6:2 (c.ldsp, c.fldsp)."""
    return ((h >> 7) & 0x20) | ((h >> 2) & 0x18) | ((h << 4) & 0x1C0)


def _c_fldsp(h: int) -> Optional[int]:
    return _i(_LOAD_FP, 3, _rd(h), 2, _sp_d(h))


def _c_lwsp(h: int) -> Optional[int]:
    rd = _rd(h)
    if rd == 0:
        return None
    # uimm[5] = bit 12, uimm[4:2|7:6] = bits 6:2
    imm = ((h >> 7) & 0x20) | ((h >> 2) & 0x1C) | ((h << 4) & 0xC0)
    return _i(_LOAD, 2, rd, 2, imm)


def _c_ldsp(h: int) -> Optional[int]:
    rd = _rd(h)
    if rd == 0:
        return None
    return _i(_LOAD, 3, rd, 2, _sp_d(h))


def _c_jr_mv_add(h: int) -> Optional[int]:
    rd = _rd(h)
    rs2 = _rs2(h)
    if not h & 0x1000:
        if rs2 == 0:
            if rd == 0:
                return None  # c.jr with rs1=x0: reserved
            return _i(_JALR, 0, 0, rd, 0)  # c.jr
        return _r(_OP, 0, 0, rd, 0, rs2)  # c.mv (rd=0: HINT)
    if rs2 == 0:
        if rd == 0:
            return EBREAK  # c.ebreak
        return _i(_JALR, 0, 1, rd, 0)  # c.jalr
    return _r(_OP, 0, 0, rd, rd, rs2)  # c.add (rd=0: HINT)


def _sp_store_d(h: int) -> int:
    """uimm[5:3|8:6] = bits 12:7 (c.sdsp, c.fsdsp)."""
    return ((h >> 7) & 0x38) | ((h >> 1) & 0x1C0)


def _c_fsdsp(h: int) -> Optional[int]:
    return _s(_STORE_FP, 3, 2, _rs2(h), _sp_store_d(h))


def _c_swsp(h: int) -> Optional[int]:
    # uimm[5:2|7:6] = bits 12:7
    imm = ((h >> 7) & 0x3C) | ((h >> 1) & 0xC0)
    return _s(_STORE, 2, 2, _rs2(h), imm)


def _c_sdsp(h: int) -> Optional[int]:
    return _s(_STORE, 3, 2, _rs2(h), _sp_store_d(h))


def _none(h: int) -> Optional[int]:
    return None


_Q0 = (_c_addi4spn, _c_fld, _c_lw, _c_ld, _none, _c_fsd, _c_sw, _c_sd)
_Q1 = (_c_addi, _c_addiw, _c_li, _c_lui_addi16sp, _c_misc_alu, _c_j, _c_beqz, _c_bnez)
_Q2 = (_c_slli, _c_fldsp, _c_lwsp, _c_ldsp, _c_jr_mv_add, _c_fsdsp, _c_swsp, _c_sdsp)

# index: funct3 << 2 | quadrant (quadrant 3 is not a 16-bit instruction)
_TABLE: List[Callable[[int], Optional[int]]] = []
for _f3 in range(8):
    _TABLE.extend((_Q0[_f3], _Q1[_f3], _Q2[_f3], _none))


_UNSET = -1
_cache: List[Optional[int]] = [_UNSET] * 0x10000


def expand(h: int) -> Optional[int]:
    """The 32-bit instruction equivalent to the 16-bit parcel ``h``, or None
    if ``h`` is reserved or illegal (or not a 16-bit instruction)."""
    h &= 0xFFFF
    w = _cache[h]
    if w == _UNSET:
        w = _cache[h] = _TABLE[((h >> 11) & 0x1C) | (h & 3)](h)
    return w
