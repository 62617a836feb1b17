"""F/D instruction semantics (emulator/isa/fd.py) run through the reference
emitter on a tiny fake hart: NaN boxing, flags, FS dirtiness, rounding-mode
handling, loads/stores, moves and conversions."""

from __future__ import annotations

import random
import struct
from typing import Dict, List, Optional

import pytest

from rvkvm.emulator.context import Ctx
from rvkvm.emulator.events import Trap
from rvkvm.emulator.interp import compile_insn, generated_globals
from rvkvm.emulator.isa import Insn, decode, fd

NV, DZ, OF, UF, NX = 16, 8, 4, 2, 1
BOX = 0xFFFFFFFF00000000
M64 = (1 << 64) - 1
PC = 0x8000_0000
GLB = generated_globals()


def s(x: float) -> int:
    """A boxed single."""
    return BOX | struct.unpack("<I", struct.pack("<f", x))[0]


def d(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", x))[0]  # type: ignore[no-any-return]


class FakeHart:
    def __init__(self) -> None:
        self.x: List[int] = [0] * 32
        self.f: List[int] = [0] * 32
        self.fflags = 0
        self.frm = 0
        self.dirty = 0
        self.pc = 0
        self.mem: Dict[int, int] = {}
        self.accesses: List[tuple] = []

    def set_fs_dirty(self) -> None:
        self.dirty += 1

    def load_u(self, va: int, size: int, pc: int) -> int:
        self.accesses.append(("load", va, size, pc))
        return sum(self.mem.get(va + i, 0) << (8 * i) for i in range(size))

    def load_s(self, va: int, size: int, pc: int) -> int:
        v = self.load_u(va, size, pc)
        return (v - (1 << (8 * size)) if v >> (8 * size - 1) else v) & M64

    def store(self, va: int, size: int, value: int, pc: int) -> None:
        self.accesses.append(("store", va, size, value, pc))
        assert 0 <= value < (1 << (8 * size)), "store value must fit its size"
        for i in range(size):
            self.mem[va + i] = (value >> (8 * i)) & 0xFF


def ctx(fs_on: bool = True) -> Ctx:
    return Ctx((3, 3, fs_on, 0, False, 0, False, False))


def run(h: FakeHart, word: int, name: Optional[str] = None, fs_on: bool = True) -> None:
    dec = decode(word, PC)
    if name is not None:
        assert dec.insn.name == name
    fn = compile_insn(dec, ctx(fs_on), GLB)
    fn(h, h.x, h.f)  # type: ignore[operator]


# -- encoders --------------------------------------------------------------

def op_fp(f7: int, rd: int, rs1: int, rs2: int, rm: int) -> int:
    return (f7 << 25) | (rs2 << 20) | (rs1 << 15) | (rm << 12) | (rd << 7) | 0x53


def r4(opc: int, fmt: int, rd: int, rs1: int, rs2: int, rs3: int, rm: int) -> int:
    return (rs3 << 27) | (fmt << 25) | (rs2 << 20) | (rs1 << 15) | (rm << 12) | (rd << 7) | opc


def load(f3: int, rd: int, rs1: int, imm: int) -> int:
    return ((imm & 0xFFF) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | 0x07


def store(f3: int, rs2: int, rs1: int, imm: int) -> int:
    imm &= 0xFFF
    return ((imm >> 5) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | ((imm & 31) << 7) | 0x27


FADD_S, FADD_D, FSUB_D, FMUL_S, FDIV_D, FSQRT_S = 0x00, 0x01, 0x05, 0x08, 0x0D, 0x2C


# -- decoding and generation of every instruction --------------------------

def test_every_insn_decodes_to_itself() -> None:
    names = {i.name for i in fd.INSNS}
    assert len(names) == len(fd.INSNS) == 62
    for insn in fd.INSNS:
        assert decode(insn.match, PC).insn is insn, insn.name
    # rm field (funct3) is free exactly for the rounding instructions
    fixed = {"fsgnj", "fsgnjn", "fsgnjx", "fmin", "fmax", "feq", "flt", "fle", "fclass", "fmv"}
    for insn in fd.INSNS:
        if insn.match & 0x7F in (0x07, 0x27):
            continue
        stem = insn.name.split(".")[0]
        rm_fixed = (insn.mask >> 12) & 7 == 7
        assert rm_fixed == (stem in fixed), insn.name


def has_rm(insn: Insn) -> bool:
    return (insn.mask >> 12) & 7 == 0 and insn.match & 0x7F not in (0x07, 0x27)


@pytest.mark.parametrize("insn", fd.INSNS, ids=lambda i: i.name)
def test_generation_and_traps(insn: Insn) -> None:
    """Every instruction, every rm, random operands: runs, or traps as it must."""
    rnd = random.Random(insn.name)
    mask, match = insn.mask, insn.match
    for rm in range(8) if has_rm(insn) else [None]:
        for _ in range(6):
            word = match | (rnd.getrandbits(32) & ~mask)
            if rm is not None:
                word = (word & ~(7 << 12)) | (rm << 12)
            assert decode(word, PC).insn is insn
            h = FakeHart()
            h.x = [0] + [rnd.getrandbits(64) for _ in range(31)]
            h.x[(word >> 15) & 31] &= 0xFF8  # keep addresses small
            h.f = [rnd.choice([rnd.getrandbits(64), BOX | rnd.getrandbits(32)]) for _ in range(32)]
            h.frm = rnd.choice([0, 1, 2, 3, 4, 5, 7])
            # FS off: always illegal
            with pytest.raises(Trap) as ti:
                run(h, word, fs_on=False)
            assert (ti.value.cause, ti.value.tval, ti.value.pc) == (2, word, PC)
            must_trap = rm is not None and (rm in (5, 6) or (rm == 7 and h.frm > 4))
            before = list(h.f), list(h.x)
            if must_trap:
                with pytest.raises(Trap) as ti:
                    run(h, word)
                assert (ti.value.cause, ti.value.tval, ti.value.pc) == (2, word, PC)
                assert (h.f, h.x, h.fflags, h.dirty) == (before[0], before[1], 0, 0)
                continue
            run(h, word)
            assert h.pc == PC + 4
            assert all(0 <= v <= M64 for v in h.f + h.x)
            assert h.x[0] == 0
            assert 0 <= h.fflags < 32
            rd = (word >> 7) & 31
            name = insn.name
            writes_f = (name.split(".")[0] not in ("fsw", "fsd", "feq", "flt", "fle", "fclass")
                        and not name.startswith(("fcvt.w", "fcvt.l", "fmv.x")))
            if writes_f:
                assert h.dirty == 1
                single = (name in ("flw", "fmv.w.x") or name.startswith("fcvt.s.")
                          or (name.endswith(".s") and not name.startswith("fcvt.")))
                if single:
                    assert h.f[rd] >> 32 == 0xFFFFFFFF, f"{name} result not NaN-boxed"
            else:
                assert h.dirty == (1 if h.fflags else 0)


# -- arithmetic, boxing, flags, rounding modes -----------------------------

def test_fadd_s_boxing() -> None:
    h = FakeHart()
    h.f[1], h.f[2] = s(1.0), s(2.0)
    run(h, op_fp(FADD_S, 3, 1, 2, 0), "fadd.s")
    assert h.f[3] == s(3.0) and h.fflags == 0 and h.dirty == 1
    # an improperly boxed operand reads as the canonical NaN (quiet: no NV)
    h.f[2] = 0x00000000_40000000
    run(h, op_fp(FADD_S, 3, 1, 2, 0))
    assert h.f[3] == BOX | 0x7FC00000 and h.fflags == 0
    h.f[2] = 0xFFFFFFFE_40000000
    run(h, op_fp(FADD_S, 3, 1, 2, 0))
    assert h.f[3] == BOX | 0x7FC00000
    # a boxed signaling NaN raises NV and gives the canonical NaN
    h.f[2] = BOX | 0x7F800001
    run(h, op_fp(FADD_S, 3, 1, 2, 0))
    assert h.f[3] == BOX | 0x7FC00000 and h.fflags == NV


def test_flags_accrue() -> None:
    h = FakeHart()
    h.fflags = NX
    h.f[1], h.f[2] = d(1.0), d(0.0)
    run(h, op_fp(FDIV_D, 3, 1, 2, 0), "fdiv.d")
    assert h.f[3] == d(float("inf")) and h.fflags == NX | DZ
    h.f[1] = d(1e308)
    h.f[2] = d(10.0)
    run(h, op_fp(0x09, 4, 1, 2, 0), "fmul.d")
    assert h.f[4] == d(float("inf")) and h.fflags == NX | DZ | OF


def test_static_and_dynamic_rounding() -> None:
    h = FakeHart()
    h.f[1], h.f[2] = d(1.0), d(2.0 ** -60)
    up, down = d(1.0 + 2.0 ** -52), d(1.0)
    for rm, want in ((0, down), (1, down), (2, down), (3, up), (4, down)):
        h.fflags = 0
        run(h, op_fp(FADD_D, 3, 1, 2, rm))
        assert (h.f[3], h.fflags) == (want, NX), rm
        h.frm = rm
        h.f[3] = 0
        run(h, op_fp(FADD_D, 3, 1, 2, 7))
        assert h.f[3] == want, rm
    # negative operand: RDN rounds away from zero
    h.f[1] = d(-1.0)
    run(h, op_fp(FADD_D, 3, 1, 2, 2))
    assert h.f[3] == d(-1.0)
    h.f[2] = d(-(2.0 ** -60))
    run(h, op_fp(FADD_D, 3, 1, 2, 2))
    assert h.f[3] == d(-1.0 - 2.0 ** -52)


@pytest.mark.parametrize("rm", [5, 6])
def test_reserved_static_rm_is_illegal(rm: int) -> None:
    h = FakeHart()
    word = op_fp(FADD_D, 3, 1, 2, rm)
    with pytest.raises(Trap) as ti:
        run(h, word)
    assert (ti.value.cause, ti.value.tval, ti.value.pc) == (2, word, PC)
    assert h.dirty == 0


@pytest.mark.parametrize("frm", [5, 6, 7])
def test_invalid_frm_traps_dynamic_rm(frm: int) -> None:
    h = FakeHart()
    h.frm = frm
    h.f[3] = 1234
    for word in (op_fp(FADD_D, 3, 1, 2, 7), op_fp(0x21, 3, 1, 0, 7), op_fp(0x60, 5, 1, 0, 7),
                 r4(0x43, 0, 3, 1, 2, 4, 7)):
        with pytest.raises(Trap) as ti:
            run(h, word)
        assert (ti.value.cause, ti.value.tval, ti.value.pc) == (2, word, PC)
    assert h.f[3] == 1234 and h.x[5] == 0 and h.dirty == 0 and h.fflags == 0
    # instructions without an rm field ignore frm
    h.f[1], h.f[2] = d(1.0), d(2.0)
    run(h, op_fp(0x15, 3, 1, 2, 0), "fmin.d")
    assert h.f[3] == d(1.0)


def test_fs_off_is_illegal() -> None:
    h = FakeHart()
    word = load(3, 1, 2, 0)
    with pytest.raises(Trap):
        run(h, word, "fld", fs_on=False)
    assert h.accesses == []


def test_fsqrt_and_fma() -> None:
    h = FakeHart()
    h.f[1] = s(2.0)
    run(h, op_fp(FSQRT_S, 2, 1, 0, 0), "fsqrt.s")
    assert h.f[2] == s(1.4142135381698608) and h.fflags == NX
    h.fflags = 0
    h.f[1] = s(-1.0)
    run(h, op_fp(FSQRT_S, 2, 1, 0, 0))
    assert h.f[2] == BOX | 0x7FC00000 and h.fflags == NV
    # fma family: (a*b)+c, (a*b)-c, -(a*b)+c, -(a*b)-c
    h.f[1], h.f[2], h.f[3] = d(2.0), d(3.0), d(1.0)
    for opc, name, want in ((0x43, "fmadd.d", 7.0), (0x47, "fmsub.d", 5.0),
                            (0x4B, "fnmsub.d", -5.0), (0x4F, "fnmadd.d", -7.0)):
        run(h, r4(opc, 1, 4, 1, 2, 3, 0), name)
        assert h.f[4] == d(want), name
    # one rounding: 0.1*10 - 1 is not zero when fused
    h.f[1], h.f[2], h.f[3] = d(0.1), d(10.0), d(1.0)
    run(h, r4(0x47, 1, 4, 1, 2, 3, 0), "fmsub.d")
    assert h.f[4] == d(5.551115123125783e-17)
    # inf * 0 + qNaN: NV
    h.fflags = 0
    h.f[1], h.f[2], h.f[3] = s(float("inf")), s(0.0), BOX | 0x7FC00000
    run(h, r4(0x43, 0, 4, 1, 2, 3, 0), "fmadd.s")
    assert h.f[4] == BOX | 0x7FC00000 and h.fflags == NV


def test_sign_injection() -> None:
    h = FakeHart()
    h.f[1], h.f[2] = d(-1.5), d(2.0)
    run(h, op_fp(0x11, 3, 1, 1, 0), "fsgnj.d")  # fmv.d
    assert h.f[3] == d(-1.5)
    run(h, op_fp(0x11, 3, 1, 1, 1), "fsgnjn.d")  # fneg.d
    assert h.f[3] == d(1.5)
    run(h, op_fp(0x11, 3, 1, 1, 2), "fsgnjx.d")  # fabs.d
    assert h.f[3] == d(1.5)
    run(h, op_fp(0x11, 3, 1, 2, 0))
    assert h.f[3] == d(1.5)
    run(h, op_fp(0x11, 3, 1, 2, 1))
    assert h.f[3] == d(-1.5)
    run(h, op_fp(0x11, 3, 1, 2, 2))
    assert h.f[3] == d(-1.5)
    h.f[2] = d(-2.0)
    run(h, op_fp(0x11, 3, 1, 2, 2))
    assert h.f[3] == d(1.5)
    # singles: NaN-boxing checked on both operands, result boxed
    h.f[1], h.f[2] = s(-1.5), s(2.0)
    run(h, op_fp(0x10, 3, 1, 2, 0), "fsgnj.s")
    assert h.f[3] == s(1.5)
    run(h, op_fp(0x10, 3, 1, 1, 1), "fsgnjn.s")
    assert h.f[3] == s(1.5)
    run(h, op_fp(0x10, 3, 1, 2, 2), "fsgnjx.s")
    assert h.f[3] == s(-1.5)
    h.f[1] = 0x3FC00000  # not boxed -> canonical NaN
    run(h, op_fp(0x10, 3, 1, 2, 1), "fsgnjn.s")
    assert h.f[3] == BOX | 0xFFC00000
    h.f[1], h.f[2] = s(1.5), 0xBF800000  # unboxed sign source reads as +NaN
    run(h, op_fp(0x10, 3, 1, 2, 0))
    assert h.f[3] == s(1.5)
    assert h.fflags == 0 and h.dirty == 12


def test_compare_and_classify() -> None:
    h = FakeHart()
    h.f[1], h.f[2] = s(1.0), s(2.0)
    run(h, op_fp(0x50, 5, 1, 2, 1), "flt.s")
    assert h.x[5] == 1 and h.dirty == 0
    run(h, op_fp(0x50, 5, 2, 1, 0), "fle.s")
    assert h.x[5] == 0
    run(h, op_fp(0x50, 5, 1, 1, 2), "feq.s")
    assert h.x[5] == 1 and h.fflags == 0 and h.dirty == 0
    h.f[2] = BOX | 0x7FC00000
    run(h, op_fp(0x50, 5, 1, 2, 2), "feq.s")
    assert h.x[5] == 0 and h.fflags == 0 and h.dirty == 0
    run(h, op_fp(0x50, 5, 1, 2, 1), "flt.s")
    assert h.x[5] == 0 and h.fflags == NV and h.dirty == 1
    run(h, op_fp(0x51, 0, 1, 2, 2), "feq.d")  # rd = x0
    assert h.x[0] == 0
    h.f[1] = 0x3F800000  # unboxed: a quiet NaN
    run(h, op_fp(0x70, 6, 1, 0, 1), "fclass.s")
    assert h.x[6] == 0x200
    h.f[1] = d(-0.0)
    run(h, op_fp(0x71, 6, 1, 0, 1), "fclass.d")
    assert h.x[6] == 0x008


def test_moves() -> None:
    h = FakeHart()
    h.f[1] = BOX | 0x80000001
    run(h, op_fp(0x70, 5, 1, 0, 0), "fmv.x.w")
    assert h.x[5] == 0xFFFFFFFF80000001
    h.f[1] = 0x12345678_7FFFFFFF  # no boxing check
    run(h, op_fp(0x70, 5, 1, 0, 0))
    assert h.x[5] == 0x7FFFFFFF
    assert h.dirty == 0
    h.x[6] = 0x12345678_9ABCDEF0
    run(h, op_fp(0x78, 2, 6, 0, 0), "fmv.w.x")
    assert h.f[2] == 0xFFFFFFFF_9ABCDEF0 and h.dirty == 1
    run(h, op_fp(0x78, 2, 0, 0, 0), "fmv.w.x")
    assert h.f[2] == BOX
    run(h, op_fp(0x79, 3, 6, 0, 0), "fmv.d.x")
    assert h.f[3] == 0x12345678_9ABCDEF0
    run(h, op_fp(0x71, 7, 3, 0, 0), "fmv.x.d")
    assert h.x[7] == 0x12345678_9ABCDEF0


def test_loads_and_stores() -> None:
    h = FakeHart()
    h.x[2] = 0x100
    for i, b in enumerate(struct.pack("<d", 2.5)):
        h.mem[0x100 + 8 + i] = b
    run(h, load(3, 1, 2, 8), "fld")
    assert h.f[1] == d(2.5) and h.dirty == 1
    run(h, load(2, 4, 2, 8), "flw")
    assert h.f[4] == BOX | 0x00000000  # low word of 2.5 is 0, still boxed
    run(h, load(2, 4, 2, 12), "flw")
    assert h.f[4] == BOX | 0x40040000
    h.f[5] = 0x12345678_9ABCDEF0  # fsw: low 32 bits, no boxing check
    run(h, store(2, 5, 2, -16), "fsw")
    assert h.accesses[-1] == ("store", 0xF0, 4, 0x9ABCDEF0, PC)
    run(h, store(3, 5, 2, 2040), "fsd")
    assert h.accesses[-1] == ("store", 0x100 + 2040, 8, 0x12345678_9ABCDEF0, PC)
    assert h.dirty == 3


def test_conversions() -> None:
    h = FakeHart()
    h.f[1] = s(3e9)
    run(h, op_fp(0x60, 5, 1, 1, 1), "fcvt.wu.s")
    assert h.x[5] == 0xFFFFFFFF_B2D05E00 and h.fflags == 0 and h.dirty == 0
    run(h, op_fp(0x60, 5, 1, 0, 1), "fcvt.w.s")
    assert h.x[5] == 0x7FFFFFFF and h.fflags == NV and h.dirty == 1
    h.fflags = 0
    h.f[1] = d(-2.5)
    for rm, want in ((0, -2), (1, -2), (2, -3), (3, -2), (4, -3)):
        run(h, op_fp(0x61, 5, 1, 2, rm), "fcvt.l.d")
        assert h.x[5] == want & M64, rm
    h.f[1] = d(float("nan"))
    run(h, op_fp(0x61, 5, 1, 3, 0), "fcvt.lu.d")
    assert h.x[5] == M64 and h.fflags == NX | NV
    h.x[6] = 0xFFFFFFFF_FFFFFFFF
    run(h, op_fp(0x68, 2, 6, 0, 0), "fcvt.s.w")
    assert h.f[2] == s(-1.0)
    run(h, op_fp(0x68, 2, 6, 1, 0), "fcvt.s.wu")
    assert h.f[2] == s(4294967296.0)
    run(h, op_fp(0x69, 2, 6, 3, 1), "fcvt.d.lu")
    assert h.f[2] == d(18446744073709549568.0)
    run(h, op_fp(0x69, 2, 6, 2, 0), "fcvt.d.l")
    assert h.f[2] == d(-1.0)
    h.f[1] = d(0.1)
    h.fflags = 0
    run(h, op_fp(0x20, 2, 1, 1, 0), "fcvt.s.d")
    assert h.f[2] == s(0.1) and h.fflags == NX
    run(h, op_fp(0x21, 3, 2, 0, 0), "fcvt.d.s")
    assert h.f[3] == d(0.10000000149011612)
    h.f[2] = 0x3F800000  # unboxed -> canonical NaN
    run(h, op_fp(0x21, 3, 2, 0, 0), "fcvt.d.s")
    assert h.f[3] == 0x7FF8000000000000


def test_min_max_insns() -> None:
    h = FakeHart()
    h.f[1], h.f[2] = s(-0.0), s(0.0)
    run(h, op_fp(0x14, 3, 1, 2, 0), "fmin.s")
    assert h.f[3] == s(-0.0)
    run(h, op_fp(0x14, 3, 1, 2, 1), "fmax.s")
    assert h.f[3] == s(0.0)
    h.f[2] = BOX | 0x7F800001
    run(h, op_fp(0x14, 3, 1, 2, 1), "fmax.s")
    assert h.f[3] == s(-0.0) and h.fflags == NV
