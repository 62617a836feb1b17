"""The translator's signed flavour (PyPy's form of generated code, see
emulator.signed) on the grid programs of ``signed_grid``, on CPython (where
the signed helpers are plain Python); test_pypy runs the same under PyPy."""

from __future__ import annotations

from typing import List

import pytest

from .signed_grid import all_programs, check, small_grid

PROGRAMS = all_programs()


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_grid(name: str) -> None:
    check(PROGRAMS[name])


@pytest.mark.parametrize("budget", [5, 64, 1000])
def test_budgets_split_the_grid_anywhere(budget: int) -> None:
    # Budget stops inside regions; the state after each stop must match.
    prog: List[int] = small_grid()
    check(prog, budget)
