"""Zba/Zbb/Zbc/Zbs and Zicond: every instruction, in both engines, against
plain bit-by-bit Python reference models (unicorn's CPU model has no Zb*,
so these models are the only oracle; the encodings were checked against
``riscv64-unknown-elf-as -march=rv64gc_zba_zbb_zbc_zbs``, see
test_encodings_match_assembler)."""

from __future__ import annotations

import struct
from typing import Callable, Dict, Iterator, List, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rvkvm.emulator.hart import Hart
from rvkvm.emulator.isa import ALL, decode_word
from rvkvm.emulator.isa import zb as ZB
from rvkvm.emulator.memory import PhysMemory

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1


def s64(v: int) -> int:
    return v - (1 << 64) if v >> 63 & 1 else v


def sext(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return (v - (1 << bits) if v >> (bits - 1) else v) & M64


def bit(v: int, i: int) -> int:
    return (v >> i) & 1


# -- reference models (the spec's pseudo-code, bit by bit) -----------------------

def ref_clz(v: int, width: int) -> int:
    for i in range(width):
        if bit(v, width - 1 - i):
            return i
    return width


def ref_ctz(v: int, width: int) -> int:
    for i in range(width):
        if bit(v, i):
            return i
    return width


def ref_cpop(v: int, width: int) -> int:
    return sum(bit(v, i) for i in range(width))


def ref_clmul(a: int, b: int) -> int:
    x = 0
    for i in range(64):
        if bit(b, i):
            x ^= a << i
    return x & M64


def ref_clmulh(a: int, b: int) -> int:
    x = 0
    for i in range(1, 64):
        if bit(b, i):
            x ^= a >> (64 - i)
    return x & M64


def ref_clmulr(a: int, b: int) -> int:
    x = 0
    for i in range(64):
        if bit(b, i):
            x ^= a >> (63 - i)
    return x & M64


def ref_rol(a: int, n: int, width: int) -> int:
    m = (1 << width) - 1
    a &= m
    for _ in range(n):
        a = ((a << 1) | (a >> (width - 1))) & m
    return a


def ref_ror(a: int, n: int, width: int) -> int:
    return ref_rol(a, (width - n) % width, width)


def ref_orc_b(v: int) -> int:
    out = 0
    for i in range(8):
        if (v >> (8 * i)) & 0xFF:
            out |= 0xFF << (8 * i)
    return out


def ref_rev8(v: int) -> int:
    out = 0
    for i in range(8):
        out |= ((v >> (8 * i)) & 0xFF) << (8 * (7 - i))
    return out


# name -> (operand kind, model). kinds: "rr" (rs1, rs2), "r" (rs1), "sh6"/"sh5" (rs1, shamt)
RR = "rr"
REF: Dict[str, Tuple[str, Callable[[int, int], int]]] = {
    "add.uw": (RR, lambda a, b: ((a & M32) + b) & M64),
    "sh1add": (RR, lambda a, b: ((a << 1) + b) & M64),
    "sh2add": (RR, lambda a, b: ((a << 2) + b) & M64),
    "sh3add": (RR, lambda a, b: ((a << 3) + b) & M64),
    "sh1add.uw": (RR, lambda a, b: (((a & M32) << 1) + b) & M64),
    "sh2add.uw": (RR, lambda a, b: (((a & M32) << 2) + b) & M64),
    "sh3add.uw": (RR, lambda a, b: (((a & M32) << 3) + b) & M64),
    "slli.uw": ("sh6", lambda a, s: ((a & M32) << s) & M64),
    "andn": (RR, lambda a, b: a & ~b & M64),
    "orn": (RR, lambda a, b: (a | ~b) & M64),
    "xnor": (RR, lambda a, b: ~(a ^ b) & M64),
    "clz": ("r", lambda a, _: ref_clz(a, 64)),
    "clzw": ("r", lambda a, _: ref_clz(a, 32)),
    "ctz": ("r", lambda a, _: ref_ctz(a, 64)),
    "ctzw": ("r", lambda a, _: ref_ctz(a, 32)),
    "cpop": ("r", lambda a, _: ref_cpop(a, 64)),
    "cpopw": ("r", lambda a, _: ref_cpop(a, 32)),
    "max": (RR, lambda a, b: max(s64(a), s64(b)) & M64),
    "maxu": (RR, lambda a, b: max(a, b)),
    "min": (RR, lambda a, b: min(s64(a), s64(b)) & M64),
    "minu": (RR, lambda a, b: min(a, b)),
    "sext.b": ("r", lambda a, _: sext(a, 8)),
    "sext.h": ("r", lambda a, _: sext(a, 16)),
    "zext.h": ("r", lambda a, _: a & 0xFFFF),
    "rol": (RR, lambda a, b: ref_rol(a, b & 63, 64)),
    "ror": (RR, lambda a, b: ref_ror(a, b & 63, 64)),
    "rolw": (RR, lambda a, b: sext(ref_rol(a, b & 31, 32), 32)),
    "rorw": (RR, lambda a, b: sext(ref_ror(a, b & 31, 32), 32)),
    "rori": ("sh6", lambda a, s: ref_ror(a, s, 64)),
    "roriw": ("sh5", lambda a, s: sext(ref_ror(a, s, 32), 32)),
    "orc.b": ("r", lambda a, _: ref_orc_b(a)),
    "rev8": ("r", lambda a, _: ref_rev8(a)),
    "clmul": (RR, ref_clmul),
    "clmulh": (RR, ref_clmulh),
    "clmulr": (RR, ref_clmulr),
    "bclr": (RR, lambda a, b: a & ~(1 << (b & 63)) & M64),
    "bext": (RR, lambda a, b: bit(a, b & 63)),
    "binv": (RR, lambda a, b: a ^ (1 << (b & 63))),
    "bset": (RR, lambda a, b: a | (1 << (b & 63))),
    "bclri": ("sh6", lambda a, s: a & ~(1 << s) & M64),
    "bexti": ("sh6", lambda a, s: bit(a, s)),
    "binvi": ("sh6", lambda a, s: a ^ (1 << s)),
    "bseti": ("sh6", lambda a, s: a | (1 << s)),
    "czero.eqz": (RR, lambda a, b: 0 if b == 0 else a),
    "czero.nez": (RR, lambda a, b: a if b == 0 else 0),
}

ROWS = {i.name: i for i in ALL if i.ext in ("zba", "zbb", "zbc", "zbs", "zicond")}
NAMES = sorted(REF)


def test_every_row_has_a_model() -> None:
    assert set(ROWS) == set(REF)


def encode(name: str, rd: int, rs1: int, rs2_or_imm: int) -> int:
    kind = REF[name][0]
    w = ROWS[name].match | (rd << 7) | (rs1 << 15)
    if kind == RR:
        w |= rs2_or_imm << 20
    elif kind in ("sh6", "sh5"):
        w |= rs2_or_imm << 20
    return w


# Assembled with riscv64-unknown-elf-as -march=rv64gc_zba_zbb_zbc_zbs (binutils 2.40):
# "name a0, a1, a2" / "name a0, a1" / "name a0, a1, <imm>".
ASSEMBLED = {
    "add.uw": 0x08C5853B, "sh1add": 0x20C5A533, "sh2add": 0x20C5C533, "sh3add": 0x20C5E533,
    "sh1add.uw": 0x20C5A53B, "sh2add.uw": 0x20C5C53B, "sh3add.uw": 0x20C5E53B,
    "slli.uw": (0x0A55951B, 37), "andn": 0x40C5F533, "orn": 0x40C5E533, "xnor": 0x40C5C533,
    "clz": 0x60059513, "clzw": 0x6005951B, "ctz": 0x60159513, "ctzw": 0x6015951B,
    "cpop": 0x60259513, "cpopw": 0x6025951B, "max": 0x0AC5E533, "maxu": 0x0AC5F533,
    "min": 0x0AC5C533, "minu": 0x0AC5D533, "sext.b": 0x60459513, "sext.h": 0x60559513,
    "zext.h": 0x0805C53B, "rol": 0x60C59533, "rolw": 0x60C5953B, "ror": 0x60C5D533,
    "rori": (0x62D5D513, 45), "roriw": (0x6115D51B, 17), "rorw": 0x60C5D53B,
    "orc.b": 0x2875D513, "rev8": 0x6B85D513, "clmul": 0x0AC59533, "clmulh": 0x0AC5B533,
    "clmulr": 0x0AC5A533, "bclr": 0x48C59533, "bclri": (0x4A859513, 40),
    "bext": 0x48C5D533, "bexti": (0x4A85D513, 40), "binv": 0x68C59533,
    "binvi": (0x6A859513, 40), "bset": 0x28C59533, "bseti": (0x2A859513, 40),
    # Zicond 1.0 (binutils 2.40 predates it): riscv-opcodes MATCH_CZERO_EQZ = 0x0e005033,
    # MATCH_CZERO_NEZ = 0x0e007033, plus the register fields
    "czero.eqz": 0x0EC5D533, "czero.nez": 0x0EC5F533,
}


@pytest.mark.parametrize("name", NAMES)
def test_encodings_match_assembler(name: str) -> None:
    want = ASSEMBLED[name]
    imm = 12
    if isinstance(want, tuple):
        want, imm = want
    if REF[name][0] == "r":
        imm = 0
    assert encode(name, 10, 11, imm) == want, f"{encode(name, 10, 11, imm):#010x}"
    assert decode_word(want).name == name


# -- running instructions in both engines ----------------------------------------

BASE = 0x8000_0000
EBREAK = 0x00100073


class Runner:
    """One hart per engine; each (instruction, registers) program lives in
    its own 8-byte slot, so compiled code is reused across examples."""

    def __init__(self, engine: str) -> None:
        self.mem = PhysMemory()
        self.mem.add_ram(BASE, 1 << 20)
        self.hart = Hart(self.mem, hartid=0, engine=engine)
        self.hart.intercept_mtraps = True
        self.slots: Dict[int, int] = {}

    def run(self, word: int, regs: Dict[int, int]) -> List[int]:
        addr = self.slots.get(word)
        if addr is None:
            addr = self.slots[word] = BASE + 8 * len(self.slots)
            self.mem.write_bytes(addr, struct.pack("<II", word, EBREAK))
        h = self.hart
        for r in range(1, 32):
            h.x[r] = regs.get(r, 0x5A5A_0000 + r)
        h.pc = addr
        stop = h.run(10)
        assert stop.reason == "trap" and stop.cause == 3, stop
        assert h.pc == addr + 4
        return list(h.x)


_RUNNERS: Dict[str, Runner] = {}


def runners() -> Iterator[Runner]:
    for eng in ("reference", "fast"):
        if eng not in _RUNNERS:
            _RUNNERS[eng] = Runner(eng)
        yield _RUNNERS[eng]


def check(name: str, a: int, b: int, rd: int = 10, rs1: int = 11, rs2: int = 12) -> None:
    kind, model = REF[name]
    if kind == "sh6":
        b &= 63
    elif kind == "sh5":
        b &= 31
    elif kind == "r":
        b = 0
    regs = {rs1: a} if rs1 else {}
    if kind == RR and rs2:
        regs[rs2] = b  # if rs2 == rs1, the register holds b for both
    av = regs.get(rs1, 0) if rs1 else 0
    bv = (regs.get(rs2, 0) if rs2 else 0) if kind == RR else b
    want = model(av, bv)
    assert 0 <= want <= M64
    word = encode(name, rd, rs1, rs2 if kind == RR else b)
    for r in runners():
        before = {k: regs.get(k, 0x5A5A_0000 + k) for k in range(1, 32)}
        x = r.run(word, regs)
        for k in range(32):
            exp = 0 if k == 0 else (want if k == rd else before[k])
            assert x[k] == exp, (f"{name} {r.hart.engine}: x{k} = {x[k]:#x}, want {exp:#x} "
                                 f"(a={av:#x}, b={bv:#x})")


SPECIAL = [0, 1, 2, 3, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, M32 >> 1, 1 << 31, M32,
           1 << 32, (1 << 63) - 1, 1 << 63, M64, M64 - 1, 0x0123456789ABCDEF, 0xFEDCBA9876543210,
           0x00FF00FF00FF00FF, 0x8000000080000000, 0x0000000100000000]
u64 = st.one_of(st.integers(0, M64), st.sampled_from(SPECIAL), st.integers(0, 130),
                st.integers(0, 63).map(lambda i: 1 << i),
                st.integers(0, 63).map(lambda i: M64 ^ (1 << i)))

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(a=u64, b=u64)
def test_random_operands(name: str, a: int, b: int) -> None:
    check(name, a, b)


@pytest.mark.parametrize("name", NAMES)
def test_special_operands(name: str) -> None:
    kind = REF[name][0]
    bs = SPECIAL if kind == RR else (range(64) if kind == "sh6" else range(32) if kind == "sh5" else [0])
    for a in SPECIAL:
        for b in bs:
            check(name, a, b)


@pytest.mark.parametrize("name", NAMES)
def test_register_aliasing_and_x0(name: str) -> None:
    a, b = 0xF00D_0000_8123_4567, 0x8000_0000_0000_0025
    check(name, a, b, rd=11, rs1=11, rs2=12)  # rd == rs1
    check(name, a, b, rd=12, rs1=11, rs2=12)  # rd == rs2
    check(name, a, b, rd=13, rs1=13, rs2=13)  # all the same
    check(name, a, b, rd=10, rs1=0, rs2=12)  # rs1 = x0
    check(name, a, b, rd=10, rs1=11, rs2=0)  # rs2 = x0 (or immediate)
    check(name, a, b, rd=10, rs1=0, rs2=0)
    check(name, a, b, rd=0, rs1=11, rs2=12)  # result discarded


# -- the helper functions themselves ----------------------------------------------

@settings(max_examples=300, deadline=None, derandomize=True)
@given(a=u64, b=u64)
def test_clmul_helpers(a: int, b: int) -> None:
    assert ZB.zb_clmul(a, b) == ref_clmul(a, b)
    assert ZB.zb_clmulh(a, b) == ref_clmulh(a, b)
    assert ZB.zb_clmulr(a, b) == ref_clmulr(a, b)
    assert ZB.zb_cpop(a) == ref_cpop(a, 64)
    assert ZB._cpop_fallback(a) == ref_cpop(a, 64)


def test_globals_do_not_clash_with_helpers() -> None:
    from rvkvm.emulator.helpers import GLOBALS as HELPERS

    assert not set(ZB.GLOBALS) & set(HELPERS)
