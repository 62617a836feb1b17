"""How a basic block ends: the record the emitter (region.emit) hands to
the loop structurer (region.loops) and the loop facts (region.facts).

An exit is one of three kinds: control goes to one known pc (a fall
through or a ``jal``), a conditional branch goes to one of two known pcs,
or a computed jump (``jalr``) goes where a generated expression says.
"""

from __future__ import annotations

from enum import IntEnum
from typing import List, NamedTuple


class ExitKind(IntEnum):
    GO = 0  # to ``target``: the next block, or a jal's target
    BRANCH = 1  # to ``target`` if ``cond`` holds, else to ``fall``
    COMPUTED = 2  # to ``rel``, an expression of the pc as an offset in the page


class BlockExit(NamedTuple):
    kind: ExitKind
    target: int = 0
    fall: int = 0
    cond: str = ""
    rel: str = ""

    def successors(self) -> List[int]:
        """The pcs control can go to that are known when generating code."""
        if self.kind == ExitKind.BRANCH:
            return [self.target, self.fall]
        if self.kind == ExitKind.GO:
            return [self.target]
        return []
