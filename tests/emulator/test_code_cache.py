"""The process-wide cache of compiled code: shared by harts, bounded."""

from __future__ import annotations

import rvkvm.emulator.codegen as cg
from rvkvm.emulator.interp import generated_globals


def _fn(i: int, pad: int = 0) -> object:
    return cg.compile_function("f", "a", [f"return a + {i}" + " " * pad], generated_globals(),
                               f"<test {i}>")


def test_same_source_compiles_once_and_gives_separate_functions() -> None:
    f1, f2 = _fn(1), _fn(1)
    assert f1 is not f2 and f1.__code__ is f2.__code__  # type: ignore[attr-defined]
    assert f1(2) == f2(2) == 3  # type: ignore[operator]


def test_cache_is_bounded_by_entries_and_bytes(monkeypatch) -> None:
    monkeypatch.setattr(cg, "CODE_CACHE_ENTRIES", 10)
    for i in range(100, 130):
        _fn(i)
    assert cg.code_cache_stats()[0] <= 10
    monkeypatch.setattr(cg, "CODE_CACHE_ENTRIES", 10_000)
    monkeypatch.setattr(cg, "CODE_CACHE_BYTES", 50_000)
    for i in range(200, 260):
        _fn(i, pad=5_000)
    entries, size = cg.code_cache_stats()
    assert size <= 50_000 and entries < 60
    assert _fn(259, pad=5_000)(1) == 260  # type: ignore[operator]


def test_lift_literals_names_each_integer_and_keeps_names_floats_and_strings() -> None:
    lines, values = cg.lift_literals(["X[10] = (X[11] + 0x10) & 18446744073709551615",
                                      "t1 = U8(b, 3) if x2 else 1.5",
                                      "raise Trap(2, 'x 7', 0)"])
    assert lines == ["X[_k0] = (X[_k1] + _k2) & _k3", "t1 = U8(b, _k4) if x2 else 1.5",
                     "raise Trap(2, 'x 7', 0)"]
    assert values == (10, 11, 16, (1 << 64) - 1, 3)
    # without a string literal anywhere (the one-pass path): the same
    lines, values = cg.lift_literals(["X[10] = (X[11] + 0x10) & 18446744073709551615",
                                      "t1 = U8(b, 3) if x2 else 1.5"])
    assert lines == ["X[_k0] = (X[_k1] + _k2) & _k3", "t1 = U8(b, _k4) if x2 else 1.5"]
    assert values == (10, 11, 16, (1 << 64) - 1, 3)


def test_lifted_functions_that_differ_in_literals_share_code(monkeypatch) -> None:
    monkeypatch.setattr(cg, "LIFT_LITERALS", True)
    glb = generated_globals()
    f1 = cg.lifted_function("f", "a", ["return (a + 5) * 3"], glb, "<lift test>")
    f2 = cg.lifted_function("f", "a", ["return (a + 7) * 2"], glb, "<lift test>")
    assert f1.__code__ is f2.__code__
    assert (f1(1), f2(1)) == (18, 16)
    assert f1(1, 0, 1) == 1  # the literals are parameters: (a + 0) * 1
    # code with a default of its own keeps it before the lifted values
    code, values = cg.lifted_code("g", "a, b=4", ["return a - b + 9"], glb, "<lift test>")
    from types import FunctionType
    assert FunctionType(code, glb, "g", (4, *values))(20) == 25


def test_unlifted_flavour_compiles_each_source(monkeypatch) -> None:
    monkeypatch.setattr(cg, "LIFT_LITERALS", False)
    glb = generated_globals()
    f1 = cg.lifted_function("f", "a", ["return a + 5"], glb, "<nolift test>")
    f2 = cg.lifted_function("f", "a", ["return a + 6"], glb, "<nolift test>")
    assert f1.__code__ is not f2.__code__ and (f1(1), f2(1)) == (6, 7)
