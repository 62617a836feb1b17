"""The translator's signed flavour (PyPy's form of generated code, see
emulator.signed) on the grid programs of ``signed_grid``, on CPython (where
the signed helpers are plain Python); test_pypy runs the same under PyPy."""

from __future__ import annotations

from typing import List

import pytest

from rvkvm.emulator import tier1

from .signed_grid import A, all_programs, check, run, small_grid

PROGRAMS = all_programs()


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_grid(name: str) -> None:
    check(PROGRAMS[name])


@pytest.mark.parametrize("budget", [5, 64, 1000])
def test_budgets_split_the_grid_anywhere(budget: int) -> None:
    # Budget stops inside regions; the state after each stop must match.
    prog: List[int] = small_grid()
    check(prog, budget)


@pytest.mark.parametrize("budget", [1 << 30, 64])
def test_grid_as_regions(budget: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # Straight grid code runs once, so the first tier runs it above; with
    # no first tier every block is a region of the signed flavour.
    monkeypatch.setattr(tier1, "HOT_AFTER", 0)
    check(small_grid(), budget)


def test_region_write_back_is_canonical(monkeypatch: pytest.MonkeyPatch) -> None:
    # A region's prologue makes registers signed words and its write-back
    # makes them canonical again (negative ones masked, the others stored
    # as they are): registers left negative, large and small must read
    # back exactly as the reference engine leaves them.
    monkeypatch.setattr(tier1, "HOT_AFTER", 0)
    prog = [A.addi(9, 0, -1), A.addi(10, 3, 0), A.addi(11, 0, 5), A.addi(12, 4, -1),
            A.addi(13, 5, 1), A.addi(3, 3, -2)]
    check(prog)
    regs = run("fast", prog, True)[4]
    assert regs[9] == (1 << 64) - 1 and regs[11] == 5
    assert all(0 <= v < 1 << 64 for v in regs)
