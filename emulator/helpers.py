"""Functions that generated code calls by name (both engines share them).

They take and return canonical unsigned 64-bit values.
"""

from __future__ import annotations

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1
S64 = 1 << 63
S32 = 1 << 31


def _s64(v: int) -> int:
    return (v ^ S64) - S64


def _s32(v: int) -> int:
    return ((v & M32) ^ S32) - S32


def _tdiv(a: int, b: int) -> int:
    """Division rounding toward zero (Python's // rounds toward -inf)."""
    q = abs(a) // abs(b)
    return -q if (a < 0) != (b < 0) else q


def div64(a: int, b: int) -> int:
    if b == 0:
        return M64
    sa, sb = _s64(a), _s64(b)
    if sa == -S64 and sb == -1:
        return a
    return _tdiv(sa, sb) & M64


def divu64(a: int, b: int) -> int:
    return a // b if b else M64


def rem64(a: int, b: int) -> int:
    if b == 0:
        return a
    sa, sb = _s64(a), _s64(b)
    if sa == -S64 and sb == -1:
        return 0
    return (sa - _tdiv(sa, sb) * sb) & M64


def remu64(a: int, b: int) -> int:
    return a % b if b else a


def div32(a: int, b: int) -> int:
    sa, sb = _s32(a), _s32(b)
    if sb == 0:
        return M64
    if sa == -S32 and sb == -1:
        return sa & M64
    return _tdiv(sa, sb) & M64


def divu32(a: int, b: int) -> int:
    ua, ub = a & M32, b & M32
    if ub == 0:
        return M64
    return _s32(ua // ub) & M64


def rem32(a: int, b: int) -> int:
    sa, sb = _s32(a), _s32(b)
    if sb == 0:
        return sa & M64
    if sa == -S32 and sb == -1:
        return 0
    return (sa - _tdiv(sa, sb) * sb) & M64


def remu32(a: int, b: int) -> int:
    ua, ub = a & M32, b & M32
    if ub == 0:
        return _s32(ua) & M64
    return _s32(ua % ub) & M64


def mulh(a: int, b: int) -> int:
    return ((_s64(a) * _s64(b)) >> 64) & M64


def mulhsu(a: int, b: int) -> int:
    return ((_s64(a) * b) >> 64) & M64


def mulhu(a: int, b: int) -> int:
    return (a * b) >> 64


GLOBALS = {
    "div64": div64, "divu64": divu64, "rem64": rem64, "remu64": remu64,
    "div32": div32, "divu32": divu32, "rem32": rem32, "remu32": remu32,
    "mulh": mulh, "mulhsu": mulhsu, "mulhu": mulhu,
}
