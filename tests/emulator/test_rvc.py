"""RV64C expansion (emulator.isa.rvc.expand).

The vectors in data/rvc_vectors.json were made by the GNU assembler (see
data/gen_rvc_vectors.py, which also checked every 16-bit parcel against
objdump's disassembly and recorded per-bucket hashes of that table).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct

import pytest

from rvkvm.emulator.isa import ILLEGAL, decode, decode_word
from rvkvm.emulator.isa.rvc import expand

DATA = os.path.join(os.path.dirname(__file__), "data", "rvc_vectors.json")

with open(DATA) as _f:
    _DATA = json.load(_f)
VECTORS = _DATA["vectors"]


def test_assembler_vectors() -> None:
    bad = [(f"{h:#06x}", f"{w:#010x}", expand(h), text) for h, w, text in VECTORS if expand(h) != w]
    assert not bad, bad[:10]


def test_vectors_cover_every_form() -> None:
    forms = {text.split()[0] for _, _, text in VECTORS}
    want = {
        "c.addi4spn", "c.fld", "c.lw", "c.ld", "c.fsd", "c.sw", "c.sd", "c.nop", "c.addi",
        "c.addiw", "c.li", "c.addi16sp", "c.lui", "c.srli", "c.srai", "c.andi", "c.sub", "c.xor",
        "c.or", "c.and", "c.subw", "c.addw", "c.j", "c.beqz", "c.bnez", "c.slli", "c.fldsp",
        "c.lwsp", "c.ldsp", "c.jr", "c.mv", "c.ebreak", "c.jalr", "c.add", "c.fsdsp", "c.swsp",
        "c.sdsp",
    }
    assert want <= forms


@pytest.mark.parametrize("bucket", sorted(_DATA["table_sha256"]))
def test_whole_table_matches_objdump_checked_table(bucket: str) -> None:
    q, f3 = (int(v) for v in bucket.split("."))
    hsh = hashlib.sha256()
    for mid in range(0x800):
        w = expand((f3 << 13) | (mid << 2) | q)
        hsh.update(struct.pack("<I", 0xFFFFFFFF if w is None else w))
    assert hsh.hexdigest() == _DATA["table_sha256"][bucket]


def _ci(f3: int, q: int, rd: int, imm6: int) -> int:
    return (f3 << 13) | (((imm6 >> 5) & 1) << 12) | (rd << 7) | ((imm6 & 31) << 2) | q


RESERVED = {
    "all-zero parcel": 0x0000,
    "c.addi4spn nzuimm=0 (rd'=x9)": 0x0004,
    "c.addi4spn nzuimm=0 (rd'=x15)": 0x001C,
    "quadrant 0 funct3=100": 0x8000,
    "quadrant 0 funct3=100 (nonzero fields)": 0x9FFC,
    "c.addiw rd=0": _ci(1, 1, 0, 5),
    "c.addiw rd=0 imm=0": _ci(1, 1, 0, 0),
    "c.addi16sp imm=0": _ci(3, 1, 2, 0),
    "c.lui imm=0 rd=x1": _ci(3, 1, 1, 0),
    "c.lui imm=0 rd=x0": _ci(3, 1, 0, 0),
    "c.lui imm=0 rd=x31": _ci(3, 1, 31, 0),
    "quadrant 1 reserved (bit12=1, funct2=10)": 0x9C41,
    "quadrant 1 reserved (bit12=1, funct2=11)": 0x9C61,
    "c.lwsp rd=0": _ci(2, 2, 0, 4),
    "c.lwsp rd=0 imm=0": _ci(2, 2, 0, 0),
    "c.ldsp rd=0": _ci(3, 2, 0, 8),
    "c.jr rs1=0": 0x8002,
}


@pytest.mark.parametrize("name", sorted(RESERVED))
def test_reserved(name: str) -> None:
    h = RESERVED[name]
    assert expand(h) is None
    assert decode(h, 0x1000).insn is ILLEGAL


def test_reserved_quadrant1_all_register_combinations() -> None:
    for rd in range(8):
        for rs2 in range(8):
            for op in (2, 3):
                h = 0x9C01 | (rd << 7) | (op << 5) | (rs2 << 2)
                assert expand(h) is None, hex(h)


def test_quadrant0_funct3_100_all_reserved() -> None:
    assert all(expand(0x8000 | (mid << 2)) is None for mid in range(0x800))


def test_full_32bit_instructions_are_not_16bit() -> None:
    # quadrant 3 is not a compressed instruction
    assert all(expand((mid << 2) | 3) is None for mid in range(0x4000))


LEGAL_HINTS = {
    # parcel: expansion
    "c.nop with imm=5": (_ci(0, 1, 0, 5), 0x00500013),  # addi x0, x0, 5
    "c.nop with imm=-1": (_ci(0, 1, 0, 63), 0xFFF00013),  # addi x0, x0, -1
    "c.addi rd!=0 imm=0": (_ci(0, 1, 10, 0), 0x00050513),  # addi a0, a0, 0
    "c.li rd=0": (_ci(2, 1, 0, 7), 0x00700013),  # addi x0, x0, 7
    "c.lui rd=0": (_ci(3, 1, 0, 1), 0x00001037),  # lui x0, 1
    "c.mv rd=0": (0x802E, 0x00B00033),  # add x0, x0, a1
    "c.add rd=0": (0x902E, 0x00B00033),  # add x0, x0, a1
    "c.slli rd=0": (_ci(0, 2, 0, 3), 0x00301013),  # slli x0, x0, 3
    "c.slli shamt=0": (_ci(0, 2, 10, 0), 0x00051513),  # slli a0, a0, 0
    "c.srli shamt=0": (0x8001, 0x00045413),  # srli s0, s0, 0
    "c.srai shamt=0": (0x8401, 0x40045413),  # srai s0, s0, 0
    "c.slli shamt=32 (RV64)": (_ci(0, 2, 10, 32), 0x02051513),  # slli a0, a0, 32
    "c.srli shamt=63 (RV64)": (0x907D, 0x03F45413),  # srli s0, s0, 63
    "c.addiw imm=0 (sext.w)": (_ci(1, 1, 10, 0), 0x0005051B),  # addiw a0, a0, 0
    "c.fldsp f0": (0x2002, 0x00013007),  # fld f0, 0(sp)
    "c.ebreak": (0x9002, 0x00100073),
}


@pytest.mark.parametrize("name", sorted(LEGAL_HINTS))
def test_legal_hints_and_corner_cases(name: str) -> None:
    h, w = LEGAL_HINTS[name]
    assert expand(h) == w, f"{expand(h)!r} != {w:#010x}"


# Expansions whose 32-bit instruction rows other modules provide.
_FP_NAMES = {"fld", "fsd"}


def test_every_legal_expansion_decodes() -> None:
    """Every non-reserved parcel expands to a word the decoder knows (FP
    loads/stores only once the F/D rows are registered)."""
    have_fp = decode_word(0x00013007) is not ILLEGAL
    names = set()
    for h in range(0x10000):
        if h & 3 == 3:
            continue
        w = expand(h)
        if w is None:
            continue
        assert w & 3 == 3
        insn = decode_word(w)
        if insn is ILLEGAL:
            assert not have_fp and (w & 0x7F) in (0x07, 0x27), f"{h:#06x} -> {w:#010x}"
            continue
        names.add(insn.name)
    want = {"addi", "lw", "ld", "sw", "sd", "addiw", "lui", "srli", "srai", "andi", "sub",
            "xor", "or", "and", "subw", "addw", "jal", "beq", "bne", "slli", "jalr", "add",
            "ebreak"}
    if have_fp:
        want |= _FP_NAMES
    assert names == want


def test_decoded_fields_of_compressed() -> None:
    d = decode(0x0808, 0x8000_0000)  # c.addi4spn a0, sp, 16
    assert d.insn.name == "addi" and d.length == 2 and d.raw == 0x0808
    assert (d.rd, d.rs1, d.imm) == (10, 2, 16)
    assert d.next_pc == 0x8000_0002
    d = decode(0xD975, 0x8000_0004)  # c.beqz a0, -12
    assert d.insn.name == "beq" and (d.rs1, d.rs2, d.imm) == (10, 0, -12)


def test_high_bits_ignored() -> None:
    assert expand(0x1_0808) == expand(0x0808)
