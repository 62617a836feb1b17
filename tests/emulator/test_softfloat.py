"""emulator.softfloat against an exact reference built on fractions.Fraction,
and (round-to-nearest-even) against the host FPU."""

from __future__ import annotations

import functools
import itertools
import math
import os
import random
import struct
from fractions import Fraction
from math import isqrt
from typing import Optional, Tuple

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rvkvm.emulator import softfloat as sf

NV, DZ, OF, UF, NX = 16, 8, 4, 2, 1
# SOFTFLOAT_EXAMPLES=5000 for a thorough run.
SETTINGS = settings(max_examples=int(os.environ.get("SOFTFLOAT_EXAMPLES", "150")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


class Fmt:
    def __init__(self, name: str, E: int, M: int) -> None:
        self.name = name
        self.E, self.M = E, M
        self.W = E + M + 1
        self.bias = (1 << (E - 1)) - 1
        self.emin = 1 - self.bias
        self.emax = self.bias
        self.sign = 1 << (self.W - 1)
        self.inf = ((1 << E) - 1) << M
        self.cnan = self.inf | (1 << (M - 1))
        self.maxval = Fraction((1 << (M + 1)) - 1) * Fraction(2) ** (self.emax - M)
        self.minnorm = Fraction(2) ** self.emin
        self.quantum_min = Fraction(2) ** (self.emin - M)

    def fn(self, op: str):  # noqa: ANN201
        return getattr(sf, f"{self.name}_{op}")


F32 = Fmt("f32", 8, 23)
F64 = Fmt("f64", 11, 52)
FMTS = [F32, F64]


# -- the reference -------------------------------------------------------------

def decode(f: Fmt, x: int) -> Tuple[str, int, Fraction]:
    """(kind, sign, magnitude): kind is 'snan', 'qnan', 'inf' or 'fin'."""
    s = x >> (f.W - 1)
    e = (x >> f.M) & ((1 << f.E) - 1)
    m = x & ((1 << f.M) - 1)
    if e == (1 << f.E) - 1:
        if m == 0:
            return "inf", s, Fraction(0)
        return ("qnan" if m >> (f.M - 1) else "snan"), s, Fraction(0)
    if e == 0:
        return "fin", s, m * f.quantum_min
    return "fin", s, (m + (1 << f.M)) * Fraction(2) ** (e - f.bias - f.M)


def value(f: Fmt, x: int) -> Fraction:
    k, s, v = decode(f, x)
    assert k == "fin"
    return -v if s else v


def log2floor(a: Fraction) -> int:
    e = a.numerator.bit_length() - a.denominator.bit_length()
    while Fraction(2) ** e > a:
        e -= 1
    while Fraction(2) ** (e + 1) <= a:
        e += 1
    return e


def round_to(a: Fraction, q: int, neg: bool, rm: int) -> Tuple[int, bool]:
    """Round magnitude a to an integer multiple n of 2**q: (n, inexact)."""
    y = a / Fraction(2) ** q
    n = y.numerator // y.denominator
    frac = y - n
    if frac == 0:
        return n, False
    half = Fraction(1, 2)
    if rm == 0:
        up = frac > half or (frac == half and n % 2 == 1)
    elif rm == 1:
        up = False
    elif rm == 2:
        up = neg
    elif rm == 3:
        up = not neg
    else:
        up = frac >= half
    return n + int(up), True


def encode(f: Fmt, neg: bool, v: Fraction) -> int:
    s = f.sign if neg else 0
    if v == 0:
        return s
    if v < f.minnorm:
        n = v / f.quantum_min
        assert n.denominator == 1
        return s | int(n)
    e = log2floor(v)
    n = v / Fraction(2) ** (e - f.M)
    assert n.denominator == 1 and (1 << f.M) <= n < (2 << f.M)
    return s | ((e + f.bias) << f.M) | (int(n) - (1 << f.M))


def ref_round(f: Fmt, x: Fraction, rm: int) -> Tuple[int, int]:
    """Correctly round the nonzero exact value x: (bits, flags)."""
    assert x != 0
    neg = x < 0
    a = -x if neg else x
    e = log2floor(a)
    q = max(e - f.M, f.emin - f.M)
    n, inexact = round_to(a, q, neg, rm)
    v = n * Fraction(2) ** q
    if v > f.maxval:
        to_inf = rm in (0, 4) or (rm == 2 and neg) or (rm == 3 and not neg)
        big = f.inf if to_inf else f.inf - 1
        return (f.sign if neg else 0) | big, OF | NX
    flags = NX if inexact else 0
    if inexact and a < f.minnorm:
        n2, _ = round_to(a, e - f.M, neg, rm)  # unbounded exponent range
        if n2 * Fraction(2) ** (e - f.M) < f.minnorm:
            flags |= UF
    return encode(f, neg, v), flags


def nan_result(f: Fmt, *xs: int, invalid: bool = False) -> Optional[Tuple[int, int]]:
    kinds = [decode(f, x)[0] for x in xs]
    if any(k in ("snan", "qnan") for k in kinds):
        return f.cnan, (NV if invalid or "snan" in kinds else 0)
    return None


def ref_add(f: Fmt, a: int, b: int, rm: int) -> Tuple[int, int]:
    r = nan_result(f, a, b)
    if r:
        return r
    (ka, sa, va), (kb, sb, vb) = decode(f, a), decode(f, b)
    if ka == "inf" or kb == "inf":
        if ka == kb and sa != sb:
            return f.cnan, NV
        return (a if ka == "inf" else b), 0
    x = (-va if sa else va) + (-vb if sb else vb)
    if x == 0:
        if va == 0 and vb == 0 and sa == sb:
            return (f.sign if sa else 0), 0
        return (f.sign if rm == 2 else 0), 0
    return ref_round(f, x, rm)


def ref_mul(f: Fmt, a: int, b: int, rm: int) -> Tuple[int, int]:
    r = nan_result(f, a, b)
    if r:
        return r
    (ka, sa, va), (kb, sb, vb) = decode(f, a), decode(f, b)
    s = f.sign if sa != sb else 0
    if ka == "inf" or kb == "inf":
        if (ka == "fin" and va == 0) or (kb == "fin" and vb == 0):
            return f.cnan, NV
        return s | f.inf, 0
    x = va * vb
    if x == 0:
        return s, 0
    return ref_round(f, -x if s else x, rm)


def ref_div(f: Fmt, a: int, b: int, rm: int) -> Tuple[int, int]:
    r = nan_result(f, a, b)
    if r:
        return r
    (ka, sa, va), (kb, sb, vb) = decode(f, a), decode(f, b)
    s = f.sign if sa != sb else 0
    if ka == "inf":
        return (f.cnan, NV) if kb == "inf" else (s | f.inf, 0)
    if kb == "inf":
        return s, 0
    if vb == 0:
        return (f.cnan, NV) if va == 0 else (s | f.inf, DZ)
    x = va / vb
    if x == 0:
        return s, 0
    return ref_round(f, -x if s else x, rm)


def ref_sqrt(f: Fmt, a: int, rm: int) -> Tuple[int, int]:
    r = nan_result(f, a)
    if r:
        return r
    k, s, v = decode(f, a)
    if v == 0 and k == "fin":
        return a, 0
    if s:
        return f.cnan, NV
    if k == "inf":
        return a, 0
    K = f.M + 8 - (log2floor(v) >> 1)
    t = v * Fraction(4) ** K
    rt = isqrt(t.numerator // t.denominator)
    if rt * rt == t:
        x = Fraction(rt) / Fraction(2) ** K
    else:  # strictly inside (rt, rt+1) / 2**K, which holds no rounding boundary
        x = (rt + Fraction(1, 2)) / Fraction(2) ** K
    return ref_round(f, x, rm)


def ref_fma(f: Fmt, a: int, b: int, c: int, rm: int) -> Tuple[int, int]:
    (ka, sa, va), (kb, sb, vb), (kc, sc, vc) = decode(f, a), decode(f, b), decode(f, c)
    nan_ab = ka in ("snan", "qnan") or kb in ("snan", "qnan")
    inf_zero = (ka == "inf" and kb == "fin" and vb == 0) or (kb == "inf" and ka == "fin" and va == 0)
    if nan_ab or inf_zero or kc in ("snan", "qnan"):
        invalid = inf_zero or "snan" in (ka, kb, kc)
        return f.cnan, (NV if invalid else 0)
    sp = sa ^ sb
    if ka == "inf" or kb == "inf":
        if kc == "inf" and sc != sp:
            return f.cnan, NV
        return (f.sign if sp else 0) | f.inf, 0
    if kc == "inf":
        return c, 0
    p = va * vb
    x = (-p if sp else p) + (-vc if sc else vc)
    if x == 0:
        if p == 0 and vc == 0 and sp == sc:
            return (f.sign if sp else 0), 0
        return (f.sign if rm == 2 else 0), 0
    return ref_round(f, x, rm)


def ref_to_int(f: Fmt, a: int, rm: int, lo: int, hi: int) -> Tuple[int, int]:
    k, s, v = decode(f, a)
    if k in ("snan", "qnan"):
        return hi, NV
    if k == "inf":
        return (lo if s else hi), NV
    n, inexact = round_to(v, 0, bool(s), rm)
    n = -n if s else n
    if n < lo or n > hi:
        return (lo if s else hi), NV
    return n, (NX if inexact else 0)


def ref_from_int(f: Fmt, v: int, rm: int) -> Tuple[int, int]:
    if v == 0:
        return 0, 0
    return ref_round(f, Fraction(v), rm)


def ref_convert(src: Fmt, dst: Fmt, a: int, rm: int) -> Tuple[int, int]:
    k, s, v = decode(src, a)
    if k in ("snan", "qnan"):
        return dst.cnan, (NV if k == "snan" else 0)
    if k == "inf":
        return (dst.sign if s else 0) | dst.inf, 0
    if v == 0:
        return (dst.sign if s else 0), 0
    return ref_round(dst, -v if s else v, rm)


# -- strategies ----------------------------------------------------------------

@functools.lru_cache(None)
def special_bits(f: Fmt) -> st.SearchStrategy[int]:
    """Bit patterns from interesting sign/exponent/fraction combinations."""
    emax_field = (1 << f.E) - 1
    exps = st.one_of(
        st.sampled_from([0, 1, 2, f.bias - 1, f.bias, f.bias + 1, emax_field - 1, emax_field]),
        st.integers(0, emax_field),
    )
    fm = (1 << f.M) - 1
    fracs = st.one_of(
        st.sampled_from([0, 1, 2, fm, fm - 1, 1 << (f.M - 1), (1 << (f.M - 1)) - 1,
                         (1 << (f.M - 1)) + 1]),
        st.integers(0, fm),
    )
    return st.builds(lambda s, e, m: (s << (f.W - 1)) | (e << f.M) | m,
                     st.integers(0, 1), exps, fracs)


@functools.lru_cache(None)
def any_bits(f: Fmt) -> st.SearchStrategy[int]:
    return st.one_of(st.integers(0, (1 << f.W) - 1), special_bits(f))


def near_to(f: Fmt, a: int, de: int, m: int, s: int, lowonly: bool) -> int:
    """A value whose exponent is close to a's (cancellation, ties, carries)."""
    e = (a >> f.M) & ((1 << f.E) - 1)
    e2 = min(max(e + de, 0), (1 << f.E) - 2)
    if lowonly:  # same exponent, fraction differing in a few low bits
        return (a ^ (m & 0xFF)) ^ (s << (f.W - 1))
    return (s << (f.W - 1)) | (e2 << f.M) | (m & ((1 << f.M) - 1))


@functools.lru_cache(None)
def perturb(f: Fmt) -> st.SearchStrategy[Tuple[int, int, int, bool]]:
    return st.tuples(st.integers(-f.M - 4, f.M + 4), st.integers(0, (1 << f.M) - 1),
                     st.integers(0, 1), st.booleans())


@functools.lru_cache(None)
def near(f: Fmt) -> st.SearchStrategy[Tuple[int, int]]:
    return st.builds(lambda a, p: (a, near_to(f, a, *p)), any_bits(f), perturb(f))


@functools.lru_cache(None)
def pairs(f: Fmt) -> st.SearchStrategy[Tuple[int, int]]:
    return st.one_of(st.tuples(any_bits(f), any_bits(f)), near(f))


def check(got: Tuple[int, int], want: Tuple[int, int], *ctx: object) -> None:
    assert got == want, (
        f"got ({got[0]:#x}, {got[1]:#04x}) want ({want[0]:#x}, {want[1]:#04x}) for "
        + ", ".join(hex(c) if isinstance(c, int) else str(c) for c in ctx))


# -- properties against the reference ------------------------------------------

@pytest.mark.parametrize("f", FMTS, ids=lambda f: f.name)
@SETTINGS
@given(data=st.data())
def test_add_sub(f: Fmt, data: st.DataObject) -> None:
    a, b = data.draw(pairs(f))
    for rm in range(5):
        check(f.fn("add")(a, b, rm), ref_add(f, a, b, rm), a, b, rm)
        check(f.fn("sub")(a, b, rm), ref_add(f, a, b ^ f.sign, rm), a, b, rm)


@pytest.mark.parametrize("f", FMTS, ids=lambda f: f.name)
@SETTINGS
@given(data=st.data())
def test_mul(f: Fmt, data: st.DataObject) -> None:
    a, b = data.draw(pairs(f))
    for rm in range(5):
        check(f.fn("mul")(a, b, rm), ref_mul(f, a, b, rm), a, b, rm)


@pytest.mark.parametrize("f", FMTS, ids=lambda f: f.name)
@SETTINGS
@given(data=st.data())
def test_mul_near_underflow(f: Fmt, data: st.DataObject) -> None:
    """Products around the subnormal range (UF, tininess after rounding)."""
    ea = data.draw(st.integers(1, f.bias))
    eb = data.draw(st.integers(max(1, f.bias - ea - f.M - 2), f.bias - ea + 2))
    ma = data.draw(st.integers(0, (1 << f.M) - 1))
    mb = data.draw(st.one_of(st.integers(0, (1 << f.M) - 1), st.just((1 << f.M) - 1)))
    s = data.draw(st.integers(0, 1))
    a = (s << (f.W - 1)) | (ea << f.M) | ma
    b = (eb << f.M) | mb
    for rm in range(5):
        check(f.fn("mul")(a, b, rm), ref_mul(f, a, b, rm), a, b, rm)


@pytest.mark.parametrize("f", FMTS, ids=lambda f: f.name)
@SETTINGS
@given(data=st.data())
def test_div(f: Fmt, data: st.DataObject) -> None:
    a, b = data.draw(pairs(f))
    for rm in range(5):
        check(f.fn("div")(a, b, rm), ref_div(f, a, b, rm), a, b, rm)


@pytest.mark.parametrize("f", FMTS, ids=lambda f: f.name)
@SETTINGS
@given(data=st.data())
def test_sqrt(f: Fmt, data: st.DataObject) -> None:
    a = data.draw(st.one_of(any_bits(f), any_bits(f).map(lambda x: x & (f.sign - 1))))
    for rm in range(5):
        check(f.fn("sqrt")(a, rm), ref_sqrt(f, a, rm), a, rm)


@pytest.mark.parametrize("f", FMTS, ids=lambda f: f.name)
@SETTINGS
@given(data=st.data(), variant=st.integers(0, 3))
def test_fma(f: Fmt, data: st.DataObject, variant: int) -> None:
    a, b = data.draw(pairs(f))
    mode = data.draw(st.integers(0, 3))
    if mode == 0:
        c = data.draw(any_bits(f))
    else:
        # an addend close to the product, to exercise cancellation
        p, _ = f.fn("mul")(a, b, 0)
        c = p ^ f.sign
        if mode == 2:
            c ^= data.draw(st.integers(0, 255))
        elif mode == 3:
            c = near_to(f, c, *data.draw(perturb(f)))
    na, nc = variant >> 1, variant & 1  # fnm* negate the product; fmsub/fnmadd the addend
    name = ("madd", "msub", "nmsub", "nmadd")[variant]
    for rm in range(5):
        want = ref_fma(f, a ^ (f.sign if na else 0), b, c ^ (f.sign if nc else 0), rm)
        check(f.fn(name)(a, b, c, rm), want, a, b, c, rm, name)


@pytest.mark.parametrize("f", FMTS, ids=lambda f: f.name)
@SETTINGS
@given(data=st.data())
def test_to_int(f: Fmt, data: st.DataObject) -> None:
    # values around the integer range boundaries and small fractions
    e = data.draw(st.one_of(st.integers(f.bias - 3, f.bias + 66), st.integers(0, (1 << f.E) - 1)))
    m = data.draw(st.one_of(st.integers(0, (1 << f.M) - 1),
                            st.sampled_from([0, (1 << f.M) - 1, 1 << (f.M - 1)])))
    s = data.draw(st.integers(0, 1))
    a = (s << (f.W - 1)) | (e << f.M) | m
    for rm, (op, lo, hi, width) in itertools.product(range(5), (("i32", -(1 << 31), (1 << 31) - 1, 32), ("u32", 0, (1 << 32) - 1, 32),
                              ("i64", -(1 << 63), (1 << 63) - 1, 64), ("u64", 0, (1 << 64) - 1, 64))):
        v, fl = ref_to_int(f, a, rm, lo, hi)
        v &= (1 << width) - 1
        if width == 32 and v >> 31:
            v |= 0xFFFFFFFF00000000  # sign-extended rd value
        check(getattr(sf, f"{f.name}_to_{op}")(a, rm), (v, fl), a, rm, op)


@pytest.mark.parametrize("f", FMTS, ids=lambda f: f.name)
@SETTINGS
@given(x=st.one_of(st.integers(0, (1 << 64) - 1),
                   st.integers(0, 64).map(lambda k: (1 << k) - 1),
                   st.integers(0, 63).flatmap(lambda k: st.integers(-3, 3).map(
                       lambda d: ((1 << k) + d) & ((1 << 64) - 1))),
                   st.integers(0, 70).map(lambda k: ((1 << k) + (1 << max(0, k - 25))) & ((1 << 64) - 1)),
                   st.integers(0, 70).map(lambda k: (-(1 << k) - 1) & ((1 << 64) - 1))),
       )
def test_from_int(f: Fmt, x: int) -> None:
    x32 = x & 0xFFFFFFFF
    cases = (("i32", x32 - (1 << 32) if x32 >> 31 else x32), ("u32", x32),
             ("i64", x - (1 << 64) if x >> 63 else x), ("u64", x))
    for rm, (op, v) in itertools.product(range(5), cases):
        check(getattr(sf, f"{op}_to_{f.name}")(x, rm), ref_from_int(f, v, rm), x, rm, op)


@SETTINGS
@given(a=any_bits(F64), rm=st.integers(0, 4))
@example(a=0x380FFFFFF8000000, rm=0)  # 2**-126 - 2**-152: rounds to 2**-126 even at 24 bits: not tiny
@example(a=0x380FFFFFF0000000, rm=0)  # 2**-126 - 2**-151: a tie at 24 bits, to even = up: not tiny
@example(a=0x380FFFFFE0000000, rm=0)  # 2**-126 - 2**-150: exact at 24 bits, so tiny
@example(a=0x36A0000000000000, rm=0)  # 2**-150: a tie to zero
@example(a=0x47EFFFFFF0000000, rm=0)  # max f32 + half ulp: overflows under RNE
def test_f64_to_f32(a: int, rm: int) -> None:
    check(sf.f64_to_f32(a, rm), ref_convert(F64, F32, a, rm), a, rm)


@SETTINGS
@given(a=any_bits(F32))
def test_f32_to_f64(a: int) -> None:
    check(sf.f32_to_f64(a), ref_convert(F32, F64, a, 0), a)


@SETTINGS
@given(a=any_bits(F64), rm=st.integers(0, 4))
def test_f64_to_f32_near_min_normal(a: int, rm: int) -> None:
    """Doubles just below/above 2**-126 (tininess after rounding)."""
    a = 0x3810000000000000 + ((a & 0xFFFFFFFF) - (1 << 31)) * 8
    check(sf.f64_to_f32(a, rm), ref_convert(F64, F32, a, rm), a, rm)


# -- comparisons, min/max, classify --------------------------------------------

@pytest.mark.parametrize("f", FMTS, ids=lambda f: f.name)
@SETTINGS
@given(data=st.data())
def test_compare_minmax(f: Fmt, data: st.DataObject) -> None:
    a, b = data.draw(pairs(f))
    mode = data.draw(st.integers(0, 2))
    if mode == 1:
        b = a
    elif mode == 2:
        b = a ^ f.sign
    ka, kb = decode(f, a)[0], decode(f, b)[0]
    nan = {"snan", "qnan"}
    snan_flag = NV if "snan" in (ka, kb) else 0
    if ka in nan or kb in nan:
        assert f.fn("eq")(a, b) == (0, snan_flag)
        assert f.fn("lt")(a, b) == (0, NV)
        assert f.fn("le")(a, b) == (0, NV)
        if ka in nan and kb in nan:
            want = f.cnan
        else:
            want = b if ka in nan else a
        assert f.fn("min")(a, b) == (want, snan_flag)
        assert f.fn("max")(a, b) == (want, snan_flag)
        return

    def val(x: int) -> Fraction:
        k, s, v = decode(f, x)
        big = Fraction(2) ** 5000
        v = big if k == "inf" else v
        return -v if s else v
    va, vb = val(a), val(b)
    assert f.fn("eq")(a, b) == (int(va == vb), 0)
    assert f.fn("lt")(a, b) == (int(va < vb), 0)
    assert f.fn("le")(a, b) == (int(va <= vb), 0)
    if va == vb:  # equal values: only +-0 can differ; -0 is smaller
        lo, hi = (a, b) if a >> (f.W - 1) else (b, a)
    else:
        lo, hi = (a, b) if va < vb else (b, a)
    assert f.fn("min")(a, b) == (lo, 0)
    assert f.fn("max")(a, b) == (hi, 0)


@pytest.mark.parametrize("f", FMTS, ids=lambda f: f.name)
@SETTINGS
@given(data=st.data())
def test_classify(f: Fmt, data: st.DataObject) -> None:
    a = data.draw(any_bits(f))
    k, s, v = decode(f, a)
    if k == "snan":
        bit = 8
    elif k == "qnan":
        bit = 9
    elif k == "inf":
        bit = 0 if s else 7
    elif v == 0:
        bit = 3 if s else 4
    elif v < f.minnorm:
        bit = 2 if s else 5
    else:
        bit = 1 if s else 6
    assert f.fn("classify")(a) == 1 << bit


# -- fixed cases: the RISC-V rules spelled out ---------------------------------

P1S, N1S = 0x3F800000, 0xBF800000
INFS, NINFS, QNANS, SNANS = 0x7F800000, 0xFF800000, 0x7FC00000, 0x7F800001
P1D = 0x3FF0000000000000
INFD, NINFD, QNAND, SNAND = 0x7FF0000000000000, 0xFFF0000000000000, 0x7FF8000000000000, 0x7FF0000000000001


def test_nan_results_are_canonical() -> None:
    assert sf.f32_add(0xFFC12345, P1S, 0) == (0x7FC00000, 0)
    assert sf.f32_add(0x7F812345, P1S, 0) == (0x7FC00000, NV)
    assert sf.f64_mul(0xFFF8000000000123, P1D, 0) == (QNAND, 0)
    assert sf.f32_to_f64(0xFFC12345) == (QNAND, 0)
    assert sf.f64_to_f32(0x7FF0000000000001, 0) == (QNANS, NV)
    assert sf.f32_sqrt(N1S, 0) == (QNANS, NV)
    assert sf.f32_sqrt(0x80000000, 0) == (0x80000000, 0)


def test_fma_inf_times_zero_plus_qnan_is_invalid() -> None:
    assert sf.f32_madd(INFS, 0, QNANS, 0) == (QNANS, NV)
    assert sf.f64_madd(0, NINFD, QNAND, 0) == (QNAND, NV)
    assert sf.f64_madd(P1D, P1D, SNAND, 0) == (QNAND, NV)
    assert sf.f64_madd(QNAND, P1D, P1D, 0) == (QNAND, 0)
    assert sf.f64_madd(INFD, P1D, NINFD, 0) == (QNAND, NV)


def test_fma_zero_signs() -> None:
    pz, nz = 0, 0x80000000
    assert sf.f32_madd(pz, P1S, nz, 0) == (pz, 0)  # +0 + -0 = +0
    assert sf.f32_madd(pz, P1S, nz, 2) == (nz, 0)  # ... but -0 rounding down
    assert sf.f32_madd(nz, P1S, nz, 0) == (nz, 0)
    assert sf.f32_nmadd(pz, P1S, pz, 0) == (nz, 0)  # -(+0) - (+0) = -0
    assert sf.f32_nmsub(pz, P1S, pz, 0) == (pz, 0)  # -(+0) + (+0) = +0
    assert sf.f32_msub(P1S, P1S, P1S, 0) == (pz, 0)  # exact cancellation
    assert sf.f32_msub(P1S, P1S, P1S, 2) == (nz, 0)


def test_min_max_rules() -> None:
    assert sf.f32_min(0x80000000, 0) == (0x80000000, 0)
    assert sf.f32_min(0, 0x80000000) == (0x80000000, 0)
    assert sf.f32_max(0x80000000, 0) == (0, 0)
    assert sf.f32_min(QNANS, P1S) == (P1S, 0)
    assert sf.f32_min(SNANS, P1S) == (P1S, NV)
    assert sf.f32_max(SNANS, QNANS) == (QNANS, NV)
    assert sf.f64_max(QNAND, 0xFFF8000000000001) == (QNAND, 0)


def test_compare_rules() -> None:
    assert sf.f32_eq(QNANS, P1S) == (0, 0)
    assert sf.f32_eq(SNANS, P1S) == (0, NV)
    assert sf.f32_lt(QNANS, P1S) == (0, NV)
    assert sf.f32_le(P1S, QNANS) == (0, NV)
    assert sf.f64_eq(0, 1 << 63) == (1, 0)
    assert sf.f64_lt(1 << 63, 0) == (0, 0)
    assert sf.f64_le(1 << 63, 0) == (1, 0)


def test_conversion_saturation_table() -> None:
    m64 = (1 << 64) - 1
    sx = 0xFFFFFFFF00000000
    # NaN -> largest positive, NV
    assert sf.f32_to_i32(QNANS, 0) == (0x7FFFFFFF, NV)
    assert sf.f32_to_u32(QNANS, 0) == (m64, NV)  # 0xFFFFFFFF sign-extended
    assert sf.f64_to_i64(SNAND, 0) == ((1 << 63) - 1, NV)
    assert sf.f64_to_u64(QNAND, 0) == (m64, NV)
    # infinities
    assert sf.f32_to_i32(NINFS, 0) == (sx | 0x80000000, NV)
    assert sf.f32_to_u32(NINFS, 0) == (0, NV)
    assert sf.f64_to_i64(INFD, 0) == ((1 << 63) - 1, NV)
    assert sf.f64_to_u64(NINFD, 0) == (0, NV)
    # rounding decides range: 2**31 - 0.5 rounds to 2**31 (invalid) in RNE
    v = 0x41DFFFFFFFE00000  # 2147483647.5
    assert sf.f64_to_i32(v, 0) == (0x7FFFFFFF, NV)
    assert sf.f64_to_i32(v, 1) == (0x7FFFFFFF, NX)
    # negative to unsigned: -0.5 RTZ -> 0 inexact, -1 -> invalid
    assert sf.f64_to_u64(0xBFE0000000000000, 1) == (0, NX)
    assert sf.f64_to_u64(0xBFF0000000000000, 1) == (0, NV)
    assert sf.f64_to_u64(0xBFE0000000000000, 2) == (0, NV)  # rounds to -1
    assert sf.f64_to_u32(0x41E0000000000000, 0) == (sx | 0x80000000, 0)  # 2**31 fits wu
    assert sf.f64_to_i64(0x8000000000000000, 0) == (0, 0)
    assert sf.f32_to_i64(0xDF000000, 0) == (1 << 63, 0)  # -2**63 exactly


def test_flags_examples() -> None:
    assert sf.f64_div(P1D, 0, 0) == (INFD, DZ)
    assert sf.f64_div(0, 0, 0) == (QNAND, NV)
    assert sf.f32_add(0x7F7FFFFF, 0x7F7FFFFF, 0) == (INFS, OF | NX)
    assert sf.f32_add(0x7F7FFFFF, 0x7F7FFFFF, 1) == (0x7F7FFFFF, OF | NX)
    assert sf.f32_add(0xFF7FFFFF, 0xFF7FFFFF, 3) == (0xFF7FFFFF, OF | NX)
    assert sf.f32_mul(0x00800000, 0x3F000000, 0) == (0x00400000, 0)  # exact subnormal: no UF
    assert sf.f32_mul(0x00800001, 0x3F000000, 0) == (0x00400000, UF | NX)
    # 2**-126 * (1 - 2**-24) = 2**-126 - 2**-150 rounds up to 2**-126 but is
    # exact (so below 2**-126) at 24 bits with an unbounded exponent: tiny
    assert sf.f32_mul(0x00800000, 0x3F7FFFFF, 0) == (0x00800000, UF | NX)
    assert sf.f64_to_f32(0x380FFFFFF0000000, 0) == (0x00800000, NX)
    assert sf.f64_to_f32(0x380FFFFFF0000000, 1) == (0x007FFFFF, UF | NX)


# -- the host FPU (round to nearest even) --------------------------------------

def d2b(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", x))[0]  # type: ignore[no-any-return]


def b2d(x: int) -> float:
    return struct.unpack("<d", struct.pack("<Q", x))[0]  # type: ignore[no-any-return]


def same(got: int, host: int, f: Fmt) -> bool:
    kind = decode(f, host)[0]
    if kind in ("snan", "qnan"):
        return got == f.cnan
    return got == host


def random_pairs(f: Fmt, n: int, seed: int) -> list:
    """Seeded bit-pattern pairs: uniform, and with close exponents."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        a = rnd.getrandbits(f.W)
        if i % 3 == 0:
            b = rnd.getrandbits(f.W)
        else:  # exponent within a few of a's
            e = ((a >> f.M) & ((1 << f.E) - 1)) + rnd.randint(-f.M - 3, f.M + 3)
            e = min(max(e, 0), (1 << f.E) - 1)
            b = (rnd.getrandbits(1) << (f.W - 1)) | (e << f.M) | rnd.getrandbits(f.M)
        out.append((a, b))
    return out


def test_f64_against_host() -> None:
    for a, b in random_pairs(F64, 6000, 1):
        x, y = b2d(a), b2d(b)
        with np.errstate(all="ignore"):
            xs, ys = np.float64(x), np.float64(y)
            for op, host in (("add", xs + ys), ("sub", xs - ys), ("mul", xs * ys), ("div", xs / ys)):
                got, _ = F64.fn(op)(a, b, 0)
                assert same(got, d2b(float(host)), F64), (op, hex(a), hex(b))
            got, _ = sf.f64_sqrt(a, 0)
            assert same(got, d2b(float(np.sqrt(xs))), F64), hex(a)
            got, _ = sf.f64_to_f32(a, 0)
            host32 = struct.unpack("<I", np.float32(xs).tobytes())[0]
            assert same(got, host32, F32), hex(a)
        if math.isfinite(x) and abs(x) < 2.0 ** 63:
            assert sf.f64_to_i64(a, 1)[0] == int(x) & ((1 << 64) - 1)


def test_f32_against_host() -> None:
    def bits(v: np.float32) -> int:
        return struct.unpack("<I", np.float32(v).tobytes())[0]  # type: ignore[no-any-return]

    for a, b in random_pairs(F32, 6000, 2):
        xs, ys = np.frombuffer(struct.pack("<II", a, b), dtype=np.float32)
        with np.errstate(all="ignore"):
            for op, host in (("add", xs + ys), ("sub", xs - ys), ("mul", xs * ys), ("div", xs / ys)):
                got, _ = F32.fn(op)(a, b, 0)
                assert same(got, bits(host), F32), (op, hex(a), hex(b))
            got, _ = sf.f32_sqrt(a, 0)
            assert same(got, bits(np.sqrt(xs)), F32), hex(a)
            got, _ = sf.f32_to_f64(a)
            assert same(got, d2b(float(xs)), F64), hex(a)


@pytest.mark.parametrize("f", FMTS, ids=lambda f: f.name)
def test_seeded_against_reference(f: Fmt) -> None:
    """A deterministic sweep in all rounding modes (complements hypothesis)."""
    rnd = random.Random(3)
    for a, b in random_pairs(f, 500, 4 + f.W):
        c = rnd.choice([rnd.getrandbits(f.W), f.fn("mul")(a, b, 0)[0] ^ f.sign ^ rnd.getrandbits(3)])
        for rm in range(5):
            check(f.fn("add")(a, b, rm), ref_add(f, a, b, rm), a, b, rm)
            check(f.fn("mul")(a, b, rm), ref_mul(f, a, b, rm), a, b, rm)
            check(f.fn("div")(a, b, rm), ref_div(f, a, b, rm), a, b, rm)
            check(f.fn("madd")(a, b, c, rm), ref_fma(f, a, b, c, rm), a, b, c, rm)


def test_unbox() -> None:
    assert sf.f32_unbox(0xFFFFFFFF3F800000) == 0x3F800000
    assert sf.f32_unbox(0x000000003F800000) == 0x7FC00000
    assert sf.f32_unbox(0xFFFFFFFE3F800000) == 0x7FC00000
