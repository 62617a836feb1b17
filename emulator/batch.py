"""Batch APIs: run many harts in one call, get or set many registers."""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Sequence, Tuple

if TYPE_CHECKING:
    from .events import Stop
    from .hart import Hart


def run_harts(work: Sequence[Tuple[Hart, int]], exact: bool = True) -> List[Stop]:
    """Run each hart for up to its budget, one after the other; return why
    each stopped. Harts sharing memory see each other's stores between
    their slices (their LR reservations are dropped at each switch).
    ``exact``: see :meth:`Hart.run`."""
    stops = []
    for hart, budget in work:
        stops.append(hart.run(budget, exact))
        hart.reservation = None
    return stops


def get_regs(hart: Hart, names: Sequence[str]) -> List[int]:
    return hart.get_regs(names)


def set_regs(hart: Hart, items: Sequence[Tuple[str, int]]) -> None:
    hart.set_regs(items)
