"""Exact IEEE 754-2008 binary32/binary64 arithmetic on bit patterns, as RISC-V
(F and D extensions) requires.

Every operation takes operand bit patterns (unsigned ints of the format's
width) and, where rounding can happen, a rounding mode ``rm`` (0 RNE, 1 RTZ,
2 RDN, 3 RUP, 4 RMM), and returns ``(result, flags)`` with ``flags`` the
accrued-exception bits (NV 16, DZ 8, OF 4, UF 2, NX 1).

RISC-V specifics: NaN results are always the canonical NaN (no payload
propagation); tininess is detected after rounding and UF is only raised
when the result is also inexact; fused multiply-add raises NV for
inf * 0 even when the addend is a quiet NaN; min/max are IEEE 754-2019
minimumNumber/maximumNumber with -0 < +0; float-to-integer conversions
saturate (NaN gives the largest positive value) and set NV, never NX, when
the result is out of range.

Everything is exact integer arithmetic: a finite operand is ``m * 2**e``
with integer ``m``; each operation computes its exact result (or, for
division and square root, enough bits plus a sticky bit) and one rounding
routine per format (``round_pack``) rounds and encodes it. The invariant for
a non-exact significand given to ``round_pack``: its lowest bit is a sticky
bit (the true value lies strictly between the neighbours of that odd value)
and it has at least M + 3 bits, so no rounding boundary is blurred.

Names exported per format ``f32_`` / ``f64_`` (``fN_op(a, b, rm)`` unless
noted): add, sub, mul, div, sqrt(a, rm); madd/msub/nmsub/nmadd(a, b, c, rm)
computing a*b+c, a*b-c, -(a*b)+c, -(a*b)-c with one rounding (``fma`` is
madd); min, max, eq, lt, le (a, b) -> (value, flags); classify(a) -> the
10-bit fclass mask (no flags); to_i32/to_u32/to_i64/to_u64(a, rm), whose
results are RISC-V rd values (32-bit results sign-extended to 64 bits); and
``{i32,u32,i64,u64}_to_{f32,f64}(x, rm)`` taking a 64-bit register value (the
32-bit forms use its low half). Plus ``f32_to_f64(a)``, ``f64_to_f32(a, rm)``,
``f32_unbox(reg)`` (NaN-box check of a 64-bit FP register value) and
``fN_round_pack(sign, m, e, rm)`` (round and encode (-1)**sign * m * 2**e).
"""

from __future__ import annotations

import struct
import sys
from math import isqrt
from typing import Any, Callable, Dict, Tuple

NV = 16
DZ = 8
OF = 4
UF = 2
NX = 1

RNE = 0
RTZ = 1
RDN = 2
RUP = 3
RMM = 4

Result = Tuple[int, int]

F32_CNAN = 0x7FC00000
F64_CNAN = 0x7FF8000000000000
F32_BOX = 0xFFFFFFFF00000000

_M64 = (1 << 64) - 1
_ABS64 = (1 << 63) - 1

# On PyPy an int >= 2**63 is a big integer, and so is everything computed
# from it (even when small), which makes every later operation slow: the
# magnitude of a negative binary64 operand goes through struct, which
# yields a machine integer. CPython needs no such care.
PYPY = sys.implementation.name == "pypy"

if PYPY:
    _pack_q = struct.Struct("<q").pack
    _unpack_q = struct.Struct("<q").unpack

    def _abs64(x: int) -> int:
        return _unpack_q(_pack_q(x & _ABS64))[0]  # type: ignore[no-any-return]

    def _lo32(x: int) -> int:
        return _unpack_q(_pack_q(x & 0xFFFFFFFF))[0]  # type: ignore[no-any-return]

    def _neg64(x: int) -> int:
        """2**64 - x for 2**63 <= x < 2**64."""
        return -_unpack_q(_pack_q(x - (1 << 64)))[0]  # type: ignore[no-any-return]

    def f32_unbox(x: int) -> int:
        """The single-precision operand held in a 64-bit FP register:
        the low half if NaN-boxed, else the canonical NaN."""
        if x >= F32_BOX:
            return _unpack_q(_pack_q(x & 0xFFFFFFFF))[0]  # type: ignore[no-any-return]
        return F32_CNAN
else:
    def _abs64(x: int) -> int:
        return x & _ABS64

    def _lo32(x: int) -> int:
        return x & 0xFFFFFFFF

    def _neg64(x: int) -> int:
        """2**64 - x for 2**63 <= x < 2**64."""
        return (1 << 64) - x

    def f32_unbox(x: int) -> int:
        """The single-precision operand held in a 64-bit FP register:
        the low half if NaN-boxed, else the canonical NaN."""
        return x & 0xFFFFFFFF if x >= F32_BOX else F32_CNAN


def _abs32(x: int) -> int:
    return x & 0x7FFFFFFF


def _make(E: int, M: int) -> Dict[str, Callable[..., Any]]:
    """Build the operations of the binary format with E exponent bits and
    M fraction bits. Internally operands are split into a sign (0/1) and a
    magnitude (bits without the sign)."""
    W = E + M + 1
    SH = W - 1  # sign position
    BIAS = (1 << (E - 1)) - 1
    EMIN = 1 - BIAS  # exponent of the smallest normal
    QMIN = EMIN - M  # exponent of the smallest subnormal (quantum there)
    EALL = (1 << E) - 1  # exponent field of inf/NaN
    SIGN = 1 << SH
    ABS = SIGN - 1
    INF = EALL << M
    MAXF = INF - 1
    QBIT = 1 << (M - 1)
    CNAN = INF | QBIT
    HID = 1 << M
    FMASK = HID - 1
    ADJ = M + BIAS - 1  # field = ((q + ADJ) << M) + r for r * 2**q, q >= QMIN
    EOFF = BIAS + M  # true exponent of a significand LSB = exponent field - EOFF
    LIMIT = 3 * M + 8  # alignment beyond which the smaller addend is only sticky
    P3 = M + 3
    NINF = SIGN | INF
    NMAXF = SIGN | MAXF
    NZERO = SIGN
    pos = _abs64 if W == 64 else _abs32

    def round_pack(sign: int, m: int, e: int, rm: int) -> Result:
        """Round (-1)**sign * m * 2**e (m > 0) and encode it."""
        n = m.bit_length()
        top = e + n - 1
        q = top - M
        if q < QMIN:
            q = QMIN
        sh = q - e
        if sh <= 0:
            field = ((q + ADJ) << M) + (m << -sh)
            flags = 0
        else:
            r = m >> sh
            rem = m & ((1 << sh) - 1)
            if not rem:
                field = ((q + ADJ) << M) + r
                flags = 0
            else:
                half = 1 << (sh - 1)
                if rm == 0:
                    if rem > half or (rem == half and r & 1):
                        r += 1
                elif rm == 1:
                    pass
                elif rm == 2:
                    if sign:
                        r += 1
                elif rm == 3:
                    if not sign:
                        r += 1
                elif rem >= half:
                    r += 1
                field = ((q + ADJ) << M) + r
                flags = NX
                if top < EMIN and field < INF and tiny(sign, m, top, sh, rm):
                    flags = NX | UF
        if field >= INF:
            if rm == 0 or rm == 4 or (rm == 2 and sign) or (rm == 3 and not sign):
                return (NINF if sign else INF), OF | NX
            return (NMAXF if sign else MAXF), OF | NX
        if sign:
            return field | SIGN, flags
        return field, flags

    def tiny(sign: int, m: int, top: int, sh: int, rm: int) -> bool:
        """Tininess after rounding of an inexact m * 2**(QMIN - sh) with
        leading bit at 2**top < 2**EMIN: it is not tiny only if rounding to
        M+1 bits with an unbounded exponent would carry up to 2**EMIN."""
        if top < EMIN - 1 or sh <= 1:
            return True
        sh2 = sh - 1
        if m >> sh2 != (HID << 1) - 1:
            return True
        rem2 = m & ((1 << sh2) - 1)
        if not rem2:
            return True
        if rm == 0 or rm == 4:
            return rem2 < (1 << (sh2 - 1))  # all-ones significand: ties go up
        if rm == 1:
            return True
        if rm == 2:
            return not sign
        return bool(sign)

    def unpack(x: int) -> Tuple[int, int]:
        """(m, e) of a finite nonzero magnitude, m with exactly M+1 bits."""
        ef = x >> M
        if ef:
            return (x & FMASK) | HID, ef - EOFF
        s = M + 1 - x.bit_length()
        return x << s, 1 - EOFF - s

    def snan(x: int) -> bool:
        """x: a magnitude."""
        return x > INF and not (x & QBIT)

    def is_nan(x: int) -> bool:
        return (pos(x) if x > ABS else x) > INF

    def is_snan(x: int) -> bool:
        return snan(pos(x) if x > ABS else x)

    # -- add / sub -------------------------------------------------------
    def addsub(nb: int) -> Callable[[int, int, int], Result]:
        """a + b (nb = 0) or a - b (nb = 1)."""
        def f(a: int, b: int, rm: int) -> Result:
            sa = 0
            sb = nb
            if a > ABS:
                a = pos(a)
                sa = 1
            if b > ABS:
                b = pos(b)
                sb ^= 1
            if a >= INF or b >= INF:
                if a > INF or b > INF:
                    return CNAN, (NV if snan(a) or snan(b) else 0)
                if a == INF:
                    if b == INF and sa != sb:
                        return CNAN, NV
                    return (NINF if sa else INF), 0
                return (NINF if sb else INF), 0
            if not a:
                if b:
                    return (b | SIGN if sb else b), 0
                if sa == sb:
                    return (NZERO if sa else 0), 0
                return (NZERO if rm == 2 else 0), 0
            if not b:
                return (a | SIGN if sa else a), 0
            ea = a >> M
            eb = b >> M
            if ea:
                a = (a & FMASK) | HID
            else:
                ea = 1
            if eb:
                b = (b & FMASK) | HID
            else:
                eb = 1
            if ea < eb:
                ea, eb, a, b, sa, sb = eb, ea, b, a, sb, sa
            d = ea - eb
            if d <= 3:
                a <<= d
                e = eb - EOFF
            else:
                # b only matters through M+3 bits below a's and a sticky bit
                a <<= 3
                e = ea - 3 - EOFF
                d -= 3
                if d > M + 1:
                    b = 1
                elif b & ((1 << d) - 1):
                    b = (b >> d) | 1
                else:
                    b >>= d
            if sa == sb:
                return round_pack(sa, a + b, e, rm)
            r = a - b
            if r > 0:
                return round_pack(sa, r, e, rm)
            if r < 0:
                return round_pack(sb, -r, e, rm)
            return (NZERO if rm == 2 else 0), 0
        return f

    # -- mul / div / sqrt ------------------------------------------------
    def mul(a: int, b: int, rm: int) -> Result:
        sign = 0
        if a > ABS:
            a = pos(a)
            sign = 1
        if b > ABS:
            b = pos(b)
            sign ^= 1
        if a >= INF or b >= INF:
            if a > INF or b > INF:
                return CNAN, (NV if snan(a) or snan(b) else 0)
            if not a or not b:
                return CNAN, NV  # inf * 0
            return (NINF if sign else INF), 0
        if not a or not b:
            return (NZERO if sign else 0), 0
        ea = a >> M
        eb = b >> M
        if ea:
            a = (a & FMASK) | HID
        else:
            ea = 1
        if eb:
            b = (b & FMASK) | HID
        else:
            eb = 1
        return round_pack(sign, a * b, ea + eb - 2 * EOFF, rm)

    def div(a: int, b: int, rm: int) -> Result:
        sign = 0
        if a > ABS:
            a = pos(a)
            sign = 1
        if b > ABS:
            b = pos(b)
            sign ^= 1
        if a >= INF or b >= INF:
            if a > INF or b > INF:
                return CNAN, (NV if snan(a) or snan(b) else 0)
            if a == INF:
                if b == INF:
                    return CNAN, NV
                return (NINF if sign else INF), 0
            return (NZERO if sign else 0), 0  # finite / inf
        if not b:
            if not a:
                return CNAN, NV
            return (NINF if sign else INF), DZ
        if not a:
            return (NZERO if sign else 0), 0
        ma, xa = unpack(a)
        mb, xb = unpack(b)
        q, r = divmod(ma << P3, mb)
        if r:
            q |= 1
        return round_pack(sign, q, xa - xb - P3, rm)

    def sqrt(a: int, rm: int) -> Result:
        if a > ABS:
            aa = pos(a)
            if aa > INF:
                return CNAN, (NV if snan(aa) else 0)
            if aa:
                return CNAN, NV
            return a, 0  # -0
        if a >= INF:
            if a > INF:
                return CNAN, (NV if snan(a) else 0)
            return a, 0
        if not a:
            return 0, 0
        m, e = unpack(a)
        k = M + 4
        if (e - k) & 1:
            k += 1
        x = m << k
        r = isqrt(x)
        if r * r != x:
            r |= 1
        return round_pack(0, r, (e - k) >> 1, rm)

    # -- fused multiply-add ----------------------------------------------
    def fused(na: int, nc: int) -> Callable[[int, int, int, int], Result]:
        """Round((-1)**na * a * b + (-1)**nc * c) with one rounding."""
        def f(a: int, b: int, c: int, rm: int) -> Result:
            sa = na
            sb = 0
            sc = nc
            if a > ABS:
                a = pos(a)
                sa ^= 1
            if b > ABS:
                b = pos(b)
                sb = 1
            if c > ABS:
                c = pos(c)
                sc ^= 1
            if a > INF or b > INF:
                return CNAN, (NV if snan(a) or snan(b) or snan(c) else 0)
            if (a == INF and not b) or (b == INF and not a):
                return CNAN, NV  # even when c is a quiet NaN
            if c > INF:
                return CNAN, (NV if snan(c) else 0)
            sp = sa ^ sb
            if a == INF or b == INF:
                if c == INF and sc != sp:
                    return CNAN, NV
                return (NINF if sp else INF), 0
            if c == INF:
                return (NINF if sc else INF), 0
            if not a or not b:
                if c:
                    return (c | SIGN if sc else c), 0
                if sp == sc:
                    return (NZERO if sp else 0), 0
                return (NZERO if rm == 2 else 0), 0
            ma, xa = unpack(a)
            mb, xb = unpack(b)
            mp = ma * mb
            ep = xa + xb
            if not c:
                return round_pack(sp, mp, ep, rm)
            mc, ec = unpack(c)
            if ep - ec > LIMIT:
                s = max(3, P3 + 1 - mp.bit_length())
                return round_pack(sp, (mp << s) + (1 if sp == sc else -1), ep - s, rm)
            if ec - ep > LIMIT:
                s = max(3, P3 + 1 - mc.bit_length())
                return round_pack(sc, (mc << s) + (1 if sp == sc else -1), ec - s, rm)
            if ep > ec:
                mp <<= ep - ec
                e = ec
            else:
                mc <<= ec - ep
                e = ep
            if sp == sc:
                return round_pack(sp, mp + mc, e, rm)
            s = mp - mc
            if s > 0:
                return round_pack(sp, s, e, rm)
            if s < 0:
                return round_pack(sc, -s, e, rm)
            return (NZERO if rm == 2 else 0), 0
        return f

    # -- comparisons, min/max, classify ----------------------------------
    def minmax(want_max: int) -> Callable[[int, int], Result]:
        def f(a: int, b: int) -> Result:
            aa = pos(a) if a > ABS else a
            bb = pos(b) if b > ABS else b
            if aa > INF or bb > INF:
                fl = NV if snan(aa) or snan(bb) else 0
                if aa > INF and bb > INF:
                    return CNAN, fl
                return (b if aa > INF else a), fl
            ka = -aa - 1 if a > ABS else aa  # order key; -0 < +0
            kb = -bb - 1 if b > ABS else bb
            if want_max:
                return (a if ka >= kb else b), 0
            return (a if ka <= kb else b), 0
        return f

    def eq(a: int, b: int) -> Result:
        aa = pos(a) if a > ABS else a
        bb = pos(b) if b > ABS else b
        if aa > INF or bb > INF:
            return 0, (NV if snan(aa) or snan(bb) else 0)
        return int((aa == bb and (a > ABS) == (b > ABS)) or not (aa or bb)), 0

    def lt(a: int, b: int) -> Result:
        aa = pos(a) if a > ABS else a
        bb = pos(b) if b > ABS else b
        if aa > INF or bb > INF:
            return 0, NV
        ka = -aa if a > ABS else aa
        kb = -bb if b > ABS else bb
        return int(ka < kb), 0

    def le(a: int, b: int) -> Result:
        aa = pos(a) if a > ABS else a
        bb = pos(b) if b > ABS else b
        if aa > INF or bb > INF:
            return 0, NV
        ka = -aa if a > ABS else aa
        kb = -bb if b > ABS else bb
        return int(ka <= kb), 0

    def classify(a: int) -> int:
        neg = a > ABS
        aa = pos(a) if neg else a
        if aa > INF:
            return 0x200 if aa & QBIT else 0x100
        if aa == INF:
            return 0x001 if neg else 0x080
        if not aa:
            return 0x008 if neg else 0x010
        if aa < HID:
            return 0x004 if neg else 0x020
        return 0x002 if neg else 0x040

    # -- conversions to and from integers --------------------------------
    def to_int(a: int, rm: int, lo: int, hi: int) -> Result:
        """Round to an integer in [lo, hi]; saturate with NV when out of range
        (NaN gives hi)."""
        sign = 0
        if a > ABS:
            a = pos(a)
            sign = 1
        if a >= INF:
            if a > INF or not sign:
                return hi, NV
            return lo, NV
        if not a:
            return 0, 0
        m, e = unpack(a)
        if e >= 0:
            if e > 64:
                return (lo if sign else hi), NV
            v = m << e
            if sign:
                v = -v
            if v < lo or v > hi:
                return (lo if sign else hi), NV
            return v, 0
        sh = -e
        if sh > M + 2:
            r = 0
            rem = 1
            half = 2
        else:
            r = m >> sh
            rem = m & ((1 << sh) - 1)
            half = 1 << (sh - 1)
        if rem:
            if rm == 0:
                if rem > half or (rem == half and r & 1):
                    r += 1
            elif rm == 2:
                if sign:
                    r += 1
            elif rm == 3:
                if not sign:
                    r += 1
            elif rm == 4:
                if rem >= half:
                    r += 1
        v = -r if sign else r
        if v < lo or v > hi:
            return (lo if sign else hi), NV
        return v, (NX if rem else 0)

    def to_i32(a: int, rm: int) -> Result:
        v, fl = to_int(a, rm, -(1 << 31), (1 << 31) - 1)
        return v & _M64, fl

    def to_u32(a: int, rm: int) -> Result:
        v, fl = to_int(a, rm, 0, (1 << 32) - 1)
        if v >> 31:
            v |= 0xFFFFFFFF00000000  # RV64: 32-bit results are sign-extended
        return v, fl

    def to_i64(a: int, rm: int) -> Result:
        v, fl = to_int(a, rm, -(1 << 63), (1 << 63) - 1)
        return v & _M64, fl

    def to_u64(a: int, rm: int) -> Result:
        return to_int(a, rm, 0, _M64)

    def from_i32(x: int, rm: int) -> Result:
        x = _lo32(x) if x > _ABS64 else x & 0xFFFFFFFF
        if x >> 31:
            return round_pack(1, (1 << 32) - x, 0, rm)
        if x:
            return round_pack(0, x, 0, rm)
        return 0, 0

    def from_u32(x: int, rm: int) -> Result:
        x = _lo32(x) if x > _ABS64 else x & 0xFFFFFFFF
        if x:
            return round_pack(0, x, 0, rm)
        return 0, 0

    def from_i64(x: int, rm: int) -> Result:
        if x > _ABS64:
            return round_pack(1, _neg64(x), 0, rm)
        if x:
            return round_pack(0, x, 0, rm)
        return 0, 0

    def from_u64(x: int, rm: int) -> Result:
        if x:
            return round_pack(0, x, 0, rm)
        return 0, 0

    return {
        "round_pack": round_pack, "unpack": unpack, "pos": pos,
        "is_nan": is_nan, "is_snan": is_snan,
        "add": addsub(0), "sub": addsub(1), "mul": mul, "div": div, "sqrt": sqrt,
        "madd": fused(0, 0), "msub": fused(0, 1), "nmsub": fused(1, 0), "nmadd": fused(1, 1),
        "min": minmax(0), "max": minmax(1), "eq": eq, "lt": lt, "le": le,
        "classify": classify,
        "to_int": to_int, "to_i32": to_i32, "to_u32": to_u32, "to_i64": to_i64, "to_u64": to_u64,
        "from_i32": from_i32, "from_u32": from_u32, "from_i64": from_i64, "from_u64": from_u64,
    }


_F32 = _make(8, 23)
_F64 = _make(11, 52)

f32_round_pack = _F32["round_pack"]
f32_is_nan = _F32["is_nan"]
f32_is_snan = _F32["is_snan"]
f32_add = _F32["add"]
f32_sub = _F32["sub"]
f32_mul = _F32["mul"]
f32_div = _F32["div"]
f32_sqrt = _F32["sqrt"]
f32_fma = _F32["madd"]
f32_madd = _F32["madd"]
f32_msub = _F32["msub"]
f32_nmsub = _F32["nmsub"]
f32_nmadd = _F32["nmadd"]
f32_min = _F32["min"]
f32_max = _F32["max"]
f32_eq = _F32["eq"]
f32_lt = _F32["lt"]
f32_le = _F32["le"]
f32_classify = _F32["classify"]
f32_to_i32 = _F32["to_i32"]
f32_to_u32 = _F32["to_u32"]
f32_to_i64 = _F32["to_i64"]
f32_to_u64 = _F32["to_u64"]
i32_to_f32 = _F32["from_i32"]
u32_to_f32 = _F32["from_u32"]
i64_to_f32 = _F32["from_i64"]
u64_to_f32 = _F32["from_u64"]

f64_round_pack = _F64["round_pack"]
f64_is_nan = _F64["is_nan"]
f64_is_snan = _F64["is_snan"]
f64_add = _F64["add"]
f64_sub = _F64["sub"]
f64_mul = _F64["mul"]
f64_div = _F64["div"]
f64_sqrt = _F64["sqrt"]
f64_fma = _F64["madd"]
f64_madd = _F64["madd"]
f64_msub = _F64["msub"]
f64_nmsub = _F64["nmsub"]
f64_nmadd = _F64["nmadd"]
f64_min = _F64["min"]
f64_max = _F64["max"]
f64_eq = _F64["eq"]
f64_lt = _F64["lt"]
f64_le = _F64["le"]
f64_classify = _F64["classify"]
f64_to_i32 = _F64["to_i32"]
f64_to_u32 = _F64["to_u32"]
f64_to_i64 = _F64["to_i64"]
f64_to_u64 = _F64["to_u64"]
i32_to_f64 = _F64["from_i32"]
u32_to_f64 = _F64["from_u32"]
i64_to_f64 = _F64["from_i64"]
u64_to_f64 = _F64["from_u64"]

_f32_unpack = _F32["unpack"]
_f64_unpack = _F64["unpack"]


def f32_to_f64(a: int) -> Result:
    """Widen (exact; NV for a signaling NaN)."""
    aa = a & 0x7FFFFFFF
    if aa >= 0x7F800000:
        if aa > 0x7F800000:
            return F64_CNAN, (0 if a & 0x00400000 else NV)
        return (0xFFF0000000000000 if a >> 31 else 0x7FF0000000000000), 0
    if not aa:
        return (1 << 63 if a >> 31 else 0), 0
    m, e = _f32_unpack(aa)
    return f64_round_pack(a >> 31, m, e, 0)  # type: ignore[no-any-return]


def f64_to_f32(a: int, rm: int) -> Result:
    """Narrow with rounding."""
    sign = 0
    if a > _ABS64:
        a = _abs64(a)
        sign = 1
    if a >= 0x7FF0000000000000:
        if a > 0x7FF0000000000000:
            return F32_CNAN, (0 if a & 0x0008000000000000 else NV)
        return (0xFF800000 if sign else 0x7F800000), 0
    if not a:
        return (0x80000000 if sign else 0), 0
    m, e = _f64_unpack(a)
    return f32_round_pack(sign, m, e, rm)  # type: ignore[no-any-return]
