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
