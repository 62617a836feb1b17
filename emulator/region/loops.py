"""Loops of a region as Python loops (the region compiler's optimiser).

region.build puts a region's blocks in a dispatch loop on the pc; for a
block that heads a natural loop, the ``Structurer`` here gives the whole
loop as Python control flow instead: nested loops nested, branches inside
``if``/``else``, one-block loops unrolled (and, with value facts from
region.facts, emitted a second time knowing bounds behind a guard). It
reads only the blocks' generated bodies and their exits (region.exits).
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional, Set, Tuple

from ..isa import Decoded
from .emit import CALL
from .exits import BlockExit, ExitKind
from .facts import LoopFacts, Specialise, guard, loop_facts


class _Unstructured(Exception):
    """A loop that does not map onto Python control flow (or would grow
    too large doing so): its blocks keep going through the dispatcher."""


_SINK = -1  # the end of every path in a loop body: back edge or exit
UNROLL = 4  # copies of a one-block loop's block per lap (CPython)
UNROLL_INSNS = 32  # ... as long as they come to at most this many instructions


class _Loop:
    __slots__ = ("head", "body", "children", "code")

    def __init__(self, head: int, body: Set[int]) -> None:
        self.head = head
        self.body = body
        self.children: List[_Loop] = []
        self.code: Optional[List[str]] = None


def _components(nodes: Set[int], succ: Dict[int, List[int]]) -> List[Set[int]]:
    """Strongly connected components of the graph ``succ`` restricted to
    ``nodes`` (Tarjan's algorithm, without recursion)."""
    index: Dict[int, int] = {}
    low: Dict[int, int] = {}
    stack: List[int] = []
    on_stack: Set[int] = set()
    out: List[Set[int]] = []
    for root in sorted(nodes):
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = len(index)
                stack.append(v)
                on_stack.add(v)
            targets = [t for t in succ[v] if t in nodes]
            if i < len(targets):
                work.append((v, i + 1))
                t = targets[i]
                if t not in index:
                    work.append((t, 0))
                elif t in on_stack:
                    low[v] = min(low[v], index[t])
                continue
            if low[v] == index[v]:
                comp = set()
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.add(w)
                    if w == v:
                        break
                out.append(comp)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
    return out



class Structurer:
    """Loops of a region as Python ``while`` loops.

    A loop is natural (one header, entered only there) and properly nested
    in the loops around it. Its body, with inner loops taken as single
    nodes, is acyclic; each two-way branch becomes ``if``/``else`` whose
    arms meet again at the branch's immediate post-dominator. A back edge
    is ``continue`` (after the budget check), every other way out sets the
    region's ``pc`` and breaks; after an inner loop, control goes on only
    if it left towards the one place its enclosing loop expects, and
    otherwise breaks outwards to the region's dispatcher, which runs the
    block ``pc`` names. Block bodies and the instruction count ``n`` are
    exactly those of the dispatcher's arms, so traps account the same."""

    GROWTH = 3  # at most this many copies of a loop's instructions (tail duplication)

    def __init__(self, blocks: Dict[int, List[Decoded]], bodies: Dict[int, List[str]],
                 exits: Dict[int, BlockExit], base: int, prefix: Optional[int],
                 specialise: Optional[Specialise] = None, unroll: int = 1,
                 nested: bool = True) -> None:
        self.blocks = blocks
        self.bodies = bodies
        self.exits = exits
        self.base = base
        self.specialise = specialise
        self.unroll = unroll
        self.nested = nested
        # per unrolled loop, the instructions a lap runs beyond its block's
        # length (see extra)
        self.unrolled: Dict[int, int] = {}
        self.succ: Dict[int, List[int]] = {}
        preds: Dict[int, Set[int]] = {pc: set() for pc in blocks}
        for pc, ex in exits.items():
            targets = ex.successors()
            self.succ[pc] = targets
            if pc != prefix:
                for t in targets:
                    if t in preds and t != prefix:
                        preds[t].add(pc)
        self.preds = preds
        self.loops: Dict[int, _Loop] = {}
        nodes = set(blocks) - {prefix} if prefix is not None else set(blocks)
        self._nest(nodes, None)
        self._tried: Set[int] = set()
        self._facts: Dict[int, Optional[LoopFacts]] = {}  # head -> the facts of its loop

    @property
    def extra(self) -> int:
        """Budget slack beyond one run of each block: between two budget
        checks a lap of an unrolled loop can run into the first laps of
        others, each loop at most once (coming back to one takes a back
        edge of a loop around it, and that is checked)."""
        return sum(self.unrolled.values())

    def _nest(self, nodes: Set[int], parent: Optional[_Loop]) -> None:
        """Loops among ``nodes``: each strongly connected component entered
        at one block (its header) is a loop; the loops inside it are those
        of the component without its header. A component only entered
        through the region's entry (the code before it is elsewhere) takes
        as header its lowest block that an edge from a later block (or the
        block itself) comes back to. Components entered at several blocks
        are not loops Python can express; their blocks stay plain."""
        for scc in _components(nodes, self.succ):
            if len(scc) == 1:
                (b,) = scc
                if b not in self.succ[b]:
                    continue
            entries = {b for b in scc if self.preds[b] - scc}
            if len(entries) > 1:
                continue
            if entries:
                head = entries.pop()
            else:
                back = [t for b in scc for t in self.succ[b]
                        if t in scc and t <= self.blocks[b][-1].pc]
                if not back:
                    continue
                head = min(back)
            lp = _Loop(head, scc)
            self.loops[head] = lp
            if parent is not None:
                parent.children.append(lp)
            self._nest(scc - {head}, lp)

    def loop_code(self, head: int) -> Optional[List[str]]:
        """The loop headed at ``head`` as statements that leave ``pc`` set
        to where control goes next; None if there is no (structured) loop."""
        lp = self.loops.get(head)
        if lp is None or (len(lp.body) > 1 and not self.nested):
            return None
        if head not in self._tried:
            self._tried.add(head)
            self._left = self.GROWTH * sum(len(self.blocks[b]) for b in lp.body) + 16
            out: List[str] = []
            try:
                self._loop(lp, "", out)
            except _Unstructured:
                return None
            lp.code = out
        return lp.code

    def _loop_facts(self, lp: _Loop) -> Optional[LoopFacts]:
        """Value facts of a one-block loop (region.facts), if any."""
        if self.specialise is None or len(lp.body) != 1:
            return None
        return loop_facts(self.blocks[lp.head], self.exits[lp.head], self.specialise)

    # -- one loop -------------------------------------------------------------
    def _loop(self, lp: _Loop, ind: str, out: List[str]) -> None:
        # a loop is emitted inside each loop around it and as its own arm:
        # its facts are worked out once
        if lp.head not in self._facts:
            self._facts[lp.head] = self._loop_facts(lp)
        special = self._facts[lp.head]
        if special is not None:
            # the loop twice: with the block generated knowing the facts
            # when they hold on entry, and as it is otherwise
            facts, lines, exit_ = special
            out.append(ind + f"if {guard(facts)}:")
            saved = self.bodies[lp.head], self.exits[lp.head]
            self.bodies[lp.head], self.exits[lp.head] = lines, exit_
            try:
                self._loop_once(lp, ind + "    ", out)
            finally:
                self.bodies[lp.head], self.exits[lp.head] = saved
            out.append(ind + "else:")
            self._loop_once(lp, ind + "    ", out)
            return
        self._loop_once(lp, ind, out)

    def _self_loop(self, lp: _Loop, ind: str, out: List[str]) -> bool:
        """A one-block loop closed by a conditional branch to its start, with
        its block ``UNROLL`` times per lap of the Python loop (one budget
        check per lap; when the block cannot raise, one count update per
        lap too). False if the loop is not of that shape."""
        head = lp.head
        ex = self.exits[head]
        if (self.unroll < 2 or lp.children or ex.kind != ExitKind.BRANCH or ex.target != head
                or ex.fall == head):
            return False
        cond, fall = ex.cond, ex.fall
        length = len(self.blocks[head])
        copies = max(1, min(self.unroll, UNROLL_INSNS // length))
        if copies < 2:
            return False
        self._left -= length  # the copies are bounded by UNROLL_INSNS instead
        if self._left < 0:
            raise _Unstructured
        body = self.bodies[head]
        # The count must be exact wherever an exception can leave the
        # block: calls (memory slow paths, helpers) and raise.
        quiet = not any(CALL.search(line.replace("int(", "")) or "raise" in line
                        for line in body)
        base = self.base
        pending = 0
        inner = ind + "    "
        out.append(ind + "while True:")
        counted = self._counter(body, cond) if quiet else None
        if counted is not None:
            # A counted loop: its counter (known positive on entry, read by
            # nothing but its decrement and the branch) is stepped once per
            # lap of copies, and a lap of copies runs only while the count
            # covers them all, so no copy needs an exit test; the laps left
            # over run one at a time below.
            reg, at = counted
            out.append(inner + f"if x{reg} >= {copies}:")
            for _ in range(copies):
                out.extend(inner + "    " + line for k, line in enumerate(body) if k != at)
            out.append(inner + f"    x{reg} = x{reg} - {copies}")
            out.append(inner + f"    n += {copies * length}")
            out.extend(self._lap_end(inner + "    ", f"x{reg} != 0", head, fall))
        # the copies with exit tests (one, after a counted lap of copies)
        tested = 1 if counted is not None else copies
        for k in range(tested):
            out.extend(inner + line for line in body)
            if quiet:
                pending += length
            else:
                out.append(inner + f"n += {length}")
            if k < tested - 1:
                out.append(inner + f"if not ({cond}):")
                if pending:
                    out.append(inner + f"    n += {pending}")
                out.append(inner + f"    pc = {fall - base}")
                out.append(inner + "    break")
        if pending:
            out.append(inner + f"n += {pending}")
        out.extend(self._lap_end(inner, cond, head, fall))
        self.unrolled[head] = (copies - 1) * length  # most laps between two checks
        return True

    def _lap_end(self, ind: str, cond: str, head: int, fall: int) -> List[str]:
        """The end of a lap: back to the top while ``cond`` holds and the
        budget allows (else out at the head), out to ``fall`` when not."""
        return [ind + f"if {cond}:", ind + "    if n <= lim2:", ind + "        continue",
                ind + f"    pc = {head - self.base}", ind + "    break",
                ind + f"pc = {fall - self.base}", ind + "break"]

    @staticmethod
    def _counter(body: List[str], cond: str) -> Optional[Tuple[int, int]]:
        """(register, line) of a loop counter in a block generated knowing
        it is positive: the branch tests it against zero, one line steps it
        down by one with no wrap-around (the facts proved none), and no
        other line reads or writes it. None otherwise."""
        m = re.fullmatch(r"x(\d+) != 0", cond)
        if m is None:
            return None
        reg = int(m.group(1))
        step = f"x{reg} = x{reg} + -1"
        name = re.compile(rf"\bx{reg}\b")
        at = [k for k, line in enumerate(body) if line == step]
        if len(at) != 1 or any(name.search(line) for k, line in enumerate(body) if k != at[0]):
            return None
        return reg, at[0]

    def _loop_once(self, lp: _Loop, ind: str, out: List[str]) -> None:
        if self._self_loop(lp, ind, out):
            return
        node = {}
        for k in lp.children:
            for b in k.body:
                node[b] = k.head
        kids = {k.head: k for k in lp.children}
        follower: Dict[int, Optional[int]] = {}
        for k in lp.children:
            ways = {t for b in k.body for t in self.succ[b] if t not in k.body}
            inside = {t for t in ways if t in lp.body}
            follower[k.head] = inside.pop() if len(inside) == 1 else None

        def dag_succ(v: int) -> List[int]:
            if v in kids:
                f = follower[v]
                return [_SINK] if f is None or f == lp.head else [node.get(f, f)]
            targets = self.exits[v].successors()
            out = [_SINK if t == lp.head or t not in lp.body else node.get(t, t) for t in targets]
            return out or [_SINK]

        pdom: Dict[int, frozenset] = {_SINK: frozenset([_SINK])}
        visiting: Set[int] = set()

        def post_dominators(v: int) -> frozenset:
            got = pdom.get(v)
            if got is not None:
                return got
            if v in visiting:
                raise _Unstructured  # a cycle that is not a (kept) loop
            visiting.add(v)
            sets = [post_dominators(s) for s in dag_succ(v)]
            visiting.discard(v)
            res = frozenset.intersection(*sets) | {v}
            pdom[v] = res
            return res

        def ipdom(v: int) -> int:
            others = post_dominators(v) - {v}
            return max(others, key=lambda w: len(pdom[w]))

        base = self.base

        def term(t: int, ind: str) -> None:
            if t == lp.head:
                out.append(ind + "if n <= lim2:")
                out.append(ind + "    continue")
            out.append(ind + f"pc = {t - base}")
            out.append(ind + "break")

        def inner(t: int) -> bool:
            return t != lp.head and t in lp.body

        def run(v: int, stop: int, ind: str) -> None:
            """Statements from node ``v`` up to (not including) ``stop``."""
            start = len(out)
            while v != stop and v != _SINK:
                if v in kids:
                    self._loop(kids[v], ind, out)
                    f = follower[v]
                    if f is None:
                        out.append(ind + "break")
                        break
                    out.append(ind + f"if pc != {f - base}:")
                    out.append(ind + "    break")
                    if f == lp.head:
                        out.append(ind + "if n <= lim2:")
                        out.append(ind + "    continue")
                        out.append(ind + "break")
                        break
                    v = node.get(f, f)
                    continue
                insns = self.blocks[v]
                self._left -= len(insns)
                if self._left < 0:
                    raise _Unstructured
                out.extend(ind + line for line in self.bodies[v])
                out.append(ind + f"n += {len(insns)}")
                ex = self.exits[v]
                if ex.kind == ExitKind.COMPUTED:
                    out.append(ind + f"pc = {ex.rel}")
                    out.append(ind + "break")
                    break
                if ex.kind == ExitKind.GO:
                    if not inner(ex.target):
                        term(ex.target, ind)
                        break
                    v = node.get(ex.target, ex.target)
                    continue
                cond, taken, fall = ex.cond, ex.target, ex.fall
                if inner(taken) and inner(fall):
                    j = ipdom(v)
                    t, f = node.get(taken, taken), node.get(fall, fall)
                    if t == j:
                        out.append(ind + f"if not ({cond}):")
                        run(f, j, ind + "    ")
                    elif f == j:
                        out.append(ind + f"if {cond}:")
                        run(t, j, ind + "    ")
                    else:
                        out.append(ind + f"if {cond}:")
                        run(t, j, ind + "    ")
                        out.append(ind + "else:")
                        run(f, j, ind + "    ")
                    v = j
                elif inner(taken):
                    out.append(ind + f"if not ({cond}):")
                    term(fall, ind + "    ")
                    v = node.get(taken, taken)
                elif inner(fall):
                    out.append(ind + f"if {cond}:")
                    term(taken, ind + "    ")
                    v = node.get(fall, fall)
                else:
                    out.append(ind + f"if {cond}:")
                    term(taken, ind + "    ")
                    term(fall, ind)
                    break
            if len(out) == start:
                out.append(ind + "pass")

        out.append(ind + "while True:")
        run(lp.head, _SINK, ind + "    ")

