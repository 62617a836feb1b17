"""F and D extensions: single- and double-precision floating point.

FP registers hold raw 64-bit patterns. A single-precision value is
NaN-boxed when written (upper 32 bits all ones); a single-precision operand
that is not properly boxed reads as the canonical NaN. Arithmetic is done by
:mod:`emulator.softfloat` (exact, RISC-V flags and NaN rules); the helpers
generated code calls are listed in :data:`GLOBALS`.

Rounding modes: a static rm of 5 or 6 is an illegal instruction (decided at
generation time); rm 7 reads ``frm`` at run time and traps if it holds an
invalid mode. Every instruction with an rm field checks it, even the ones
whose result is exact (fcvt.d.s, fcvt.d.w[u]), as QEMU does.

``mstatus.FS`` becomes Dirty whenever an F register is written; an
instruction that writes only an integer register marks it only when it
actually raised flags (Spike's behaviour).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Dict, List, Optional

from .. import softfloat as sf
from ..bits import M64
from . import PLAIN, Decoded, Insn
from .enc import enc

if TYPE_CHECKING:
    from ..codegen import Emitter

Gen = Callable[["Emitter", Decoded], None]

ILLEGAL_INSTRUCTION = 2
BOX = 0xFFFFFFFF00000000
M32 = 0xFFFFFFFF
S32 = 1 << 31
S64 = 1 << 63
CNAN_S = sf.F32_CNAN

LOAD_FP, STORE_FP = 0x07, 0x27
FMADD, FMSUB, FNMSUB, FNMADD = 0x43, 0x47, 0x4B, 0x4F
OP_FP = 0x53

# Functions generated code calls (names chosen not to clash with helpers.py).
GLOBALS: Dict[str, object] = {
    name: getattr(sf, name)
    for name in dir(sf)
    if name.startswith(("f32_", "f64_", "i32_", "u32_", "i64_", "u64_")) and callable(getattr(sf, name))
}


# -- operand and result expressions ----------------------------------------

def _single(e: Emitter, n: int) -> str:
    """Expression for the single-precision operand in f[n] (unboxed)."""
    v = e.f(n)
    if sf.PYPY:
        return f"f32_unbox({v})"
    return f"({v} & {M32} if {v} >= {BOX} else {CNAN_S})"


def _operand(e: Emitter, n: int, double: bool) -> str:
    return e.f(n) if double else _single(e, n)


def _result(expr: str, double: bool) -> str:
    return expr if double else f"{expr} | {BOX}"


def _rm(e: Emitter, d: Decoded) -> Optional[str]:
    """The rounding-mode expression for this instruction, or None if the
    static rm is reserved (the illegal-instruction trap has been emitted)."""
    if d.rm == 5 or d.rm == 6:
        e.illegal()
        return None
    if d.rm != 7:
        return str(d.rm)
    t = e.tmp()
    e.emit(f"{t} = H.frm")
    e.emit(f"if {t} > 4:")
    indent, ended = e.indent, e.ended
    e.indent += "    "
    e.trap(ILLEGAL_INSTRUCTION, str(e.raw))
    e.indent, e.ended = indent, ended
    return t


def _flags_fdirty(e: Emitter, fl: str) -> None:
    """After writing an F register: accrue flags, mark FS dirty."""
    e.emit(f"H.fflags |= {fl}")
    e.emit("H.set_fs_dirty()")


def _flags_xonly(e: Emitter, fl: str) -> None:
    """After writing only an integer register: accrue flags if any."""
    e.emit(f"if {fl}:")
    e.emit(f"    H.fflags |= {fl}")
    e.emit("    H.set_fs_dirty()")


# -- loads and stores ------------------------------------------------------

def _fload(size: int) -> Gen:
    def gen(e: Emitter, d: Decoded) -> None:
        if not e.fp_on():
            return
        a = e.ea(d.rs1, d.imm)
        t = e.load_value(a, size, signed=False)
        e.setf(d.rd, t if size == 8 else f"{t} | {BOX}")
        e.emit("H.set_fs_dirty()")
    return gen


def _fstore(size: int) -> Gen:
    def gen(e: Emitter, d: Decoded) -> None:
        if not e.fp_on():
            return
        a = e.ea(d.rs1, d.imm)
        v = e.f(d.rs2)
        e.store(a, v if size == 8 else f"{v} & {M32}", size)
    return gen


# -- arithmetic ------------------------------------------------------------

def _arith(fn: str, regs: int, double: bool) -> Gen:
    """rd <- fn(rs1[, rs2[, rs3]], rm) on one format."""
    def gen(e: Emitter, d: Decoded) -> None:
        if not e.fp_on():
            return
        rm = _rm(e, d)
        if rm is None:
            return
        srcs = (d.rs1, d.rs2, d.rs3)[:regs]
        args = ", ".join(_operand(e, n, double) for n in srcs)
        r, fl = e.tmp(), e.tmp()
        e.emit(f"{r}, {fl} = {fn}({args}, {rm})")
        e.setf(d.rd, _result(r, double))
        _flags_fdirty(e, fl)
    return gen


def _minmax(fn: str, double: bool) -> Gen:
    def gen(e: Emitter, d: Decoded) -> None:
        if not e.fp_on():
            return
        r, fl = e.tmp(), e.tmp()
        e.emit(f"{r}, {fl} = {fn}({_operand(e, d.rs1, double)}, {_operand(e, d.rs2, double)})")
        e.setf(d.rd, _result(r, double))
        _flags_fdirty(e, fl)
    return gen


def _sgnj(kind: int, double: bool) -> Gen:
    """kind 0: fsgnj, 1: fsgnjn, 2: fsgnjx."""
    sign = S64 if double else S32
    mag = sign - 1

    def gen(e: Emitter, d: Decoded) -> None:
        if not e.fp_on():
            return
        if double and d.rs1 == d.rs2:  # fmv.d / fneg.d / fabs.d
            a = e.f(d.rs1)
            e.setf(d.rd, (a, f"{a} ^ {sign}", f"{a} & {mag}")[kind])
        else:
            a = e.tmp()
            e.emit(f"{a} = {_operand(e, d.rs1, double)}")
            b = a
            if d.rs2 != d.rs1:
                b = e.tmp()
                e.emit(f"{b} = {_operand(e, d.rs2, double)}")
            if kind == 0:
                v = f"({a} & {mag}) | ({b} & {sign})"
            elif kind == 1:
                v = f"({a} & {mag}) | (~{b} & {sign})"
            else:
                v = f"{a} ^ ({b} & {sign})"
            e.setf(d.rd, f"({v}) | {BOX}" if not double else v)
        e.emit("H.set_fs_dirty()")
    return gen


def _compare(fn: str, double: bool) -> Gen:
    def gen(e: Emitter, d: Decoded) -> None:
        if not e.fp_on():
            return
        r, fl = e.tmp(), e.tmp()
        e.emit(f"{r}, {fl} = {fn}({_operand(e, d.rs1, double)}, {_operand(e, d.rs2, double)})")
        e.setx(d.rd, r)
        _flags_xonly(e, fl)
    return gen


def _classify(fn: str, double: bool) -> Gen:
    def gen(e: Emitter, d: Decoded) -> None:
        if not e.fp_on():
            return
        e.setx(d.rd, f"{fn}({_operand(e, d.rs1, double)})")
    return gen


# -- conversions and moves -------------------------------------------------

def _cvt_to_int(fn: str, double: bool) -> Gen:
    def gen(e: Emitter, d: Decoded) -> None:
        if not e.fp_on():
            return
        rm = _rm(e, d)
        if rm is None:
            return
        r, fl = e.tmp(), e.tmp()
        e.emit(f"{r}, {fl} = {fn}({_operand(e, d.rs1, double)}, {rm})")
        e.setx(d.rd, r)
        _flags_xonly(e, fl)
    return gen


def _cvt_from_int(fn: str, double: bool) -> Gen:
    def gen(e: Emitter, d: Decoded) -> None:
        if not e.fp_on():
            return
        rm = _rm(e, d)
        if rm is None:
            return
        r, fl = e.tmp(), e.tmp()
        e.emit(f"{r}, {fl} = {fn}({e.x(d.rs1)}, {rm})")
        e.setf(d.rd, _result(r, double))
        _flags_fdirty(e, fl)
    return gen


def fcvt_s_d(e: Emitter, d: Decoded) -> None:
    if not e.fp_on():
        return
    rm = _rm(e, d)
    if rm is None:
        return
    r, fl = e.tmp(), e.tmp()
    e.emit(f"{r}, {fl} = f64_to_f32({e.f(d.rs1)}, {rm})")
    e.setf(d.rd, _result(r, False))
    _flags_fdirty(e, fl)


def fcvt_d_s(e: Emitter, d: Decoded) -> None:
    if not e.fp_on():
        return
    if _rm(e, d) is None:  # exact, but the rm field is still checked
        return
    r, fl = e.tmp(), e.tmp()
    e.emit(f"{r}, {fl} = f32_to_f64({_single(e, d.rs1)})")
    e.setf(d.rd, r)
    _flags_fdirty(e, fl)


def fmv_x_w(e: Emitter, d: Decoded) -> None:
    if not e.fp_on():
        return
    e.setx(d.rd, f"((({e.f(d.rs1)} & {M32}) ^ {S32}) - {S32}) & {M64}")


def fmv_w_x(e: Emitter, d: Decoded) -> None:
    if not e.fp_on():
        return
    x = e.x(d.rs1)
    e.setf(d.rd, str(BOX) if x == "0" else f"({x} & {M32}) | {BOX}")
    e.emit("H.set_fs_dirty()")


def fmv_x_d(e: Emitter, d: Decoded) -> None:
    if not e.fp_on():
        return
    e.setx(d.rd, e.f(d.rs1))


def fmv_d_x(e: Emitter, d: Decoded) -> None:
    if not e.fp_on():
        return
    e.setf(d.rd, e.x(d.rs1))
    e.emit("H.set_fs_dirty()")


# -- the table -------------------------------------------------------------

R = "R"
INSNS: List[Insn] = [
    Insn("flw", *enc(LOAD_FP, 2), "I", _fload(4), PLAIN, "f"),
    Insn("fld", *enc(LOAD_FP, 3), "I", _fload(8), PLAIN, "d"),
    Insn("fsw", *enc(STORE_FP, 2), "S", _fstore(4), PLAIN, "f"),
    Insn("fsd", *enc(STORE_FP, 3), "S", _fstore(8), PLAIN, "d"),
]

for _fmt, _p, _ext, _dbl in ((0, "s", "f", False), (1, "d", "d", True)):
    _t = "f64" if _dbl else "f32"
    for _opc, _name, _fn in ((FMADD, "fmadd", "madd"), (FMSUB, "fmsub", "msub"),
                             (FNMSUB, "fnmsub", "nmsub"), (FNMADD, "fnmadd", "nmadd")):
        INSNS.append(Insn(f"{_name}.{_p}", *enc(_opc, fmt2=_fmt), R,
                          _arith(f"{_t}_{_fn}", 3, _dbl), PLAIN, _ext))
    for _f7, _name in ((0x00, "fadd"), (0x04, "fsub"), (0x08, "fmul"), (0x0C, "fdiv")):
        INSNS.append(Insn(f"{_name}.{_p}", *enc(OP_FP, funct7=_f7 | _fmt), R,
                          _arith(f"{_t}_{_name[1:]}", 2, _dbl), PLAIN, _ext))
    INSNS.append(Insn(f"fsqrt.{_p}", *enc(OP_FP, funct7=0x2C | _fmt, rs2=0), R,
                      _arith(f"{_t}_sqrt", 1, _dbl), PLAIN, _ext))
    for _f3, _name in ((0, "fsgnj"), (1, "fsgnjn"), (2, "fsgnjx")):
        INSNS.append(Insn(f"{_name}.{_p}", *enc(OP_FP, _f3, 0x10 | _fmt), R,
                          _sgnj(_f3, _dbl), PLAIN, _ext))
    INSNS.append(Insn(f"fmin.{_p}", *enc(OP_FP, 0, 0x14 | _fmt), R, _minmax(f"{_t}_min", _dbl), PLAIN, _ext))
    INSNS.append(Insn(f"fmax.{_p}", *enc(OP_FP, 1, 0x14 | _fmt), R, _minmax(f"{_t}_max", _dbl), PLAIN, _ext))
    for _f3, _name in ((2, "feq"), (1, "flt"), (0, "fle")):
        INSNS.append(Insn(f"{_name}.{_p}", *enc(OP_FP, _f3, 0x50 | _fmt), R,
                          _compare(f"{_t}_{_name[1:]}", _dbl), PLAIN, _ext))
    INSNS.append(Insn(f"fclass.{_p}", *enc(OP_FP, 1, 0x70 | _fmt, rs2=0), R,
                      _classify(f"{_t}_classify", _dbl), PLAIN, _ext))
    for _r2, _it in ((0, "w"), (1, "wu"), (2, "l"), (3, "lu")):
        _ifn = {"w": "i32", "wu": "u32", "l": "i64", "lu": "u64"}[_it]
        INSNS.append(Insn(f"fcvt.{_it}.{_p}", *enc(OP_FP, funct7=0x60 | _fmt, rs2=_r2), R,
                          _cvt_to_int(f"{_t}_to_{_ifn}", _dbl), PLAIN, _ext))
        INSNS.append(Insn(f"fcvt.{_p}.{_it}", *enc(OP_FP, funct7=0x68 | _fmt, rs2=_r2), R,
                          _cvt_from_int(f"{_ifn}_to_{_t}", _dbl), PLAIN, _ext))

INSNS += [
    Insn("fcvt.s.d", *enc(OP_FP, funct7=0x20, rs2=1), R, fcvt_s_d, PLAIN, "d"),
    Insn("fcvt.d.s", *enc(OP_FP, funct7=0x21, rs2=0), R, fcvt_d_s, PLAIN, "d"),
    Insn("fmv.x.w", *enc(OP_FP, 0, 0x70, rs2=0), R, fmv_x_w, PLAIN, "f"),
    Insn("fmv.w.x", *enc(OP_FP, 0, 0x78, rs2=0), R, fmv_w_x, PLAIN, "f"),
    Insn("fmv.x.d", *enc(OP_FP, 0, 0x71, rs2=0), R, fmv_x_d, PLAIN, "d"),
    Insn("fmv.d.x", *enc(OP_FP, 0, 0x79, rs2=0), R, fmv_d_x, PLAIN, "d"),
]
