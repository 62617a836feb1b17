"""Discovery, the region compiler's first step: which guest code a region
holds.

From an entry pc, the instructions reachable through direct branches and
jumps inside the entry's page, decoded once and cut into basic blocks
(``discover``). region.emit generates each block, region.build puts them
together; the first tier (emulator.tier1) reads straight runs on its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List, NamedTuple, Optional, Set, Tuple

from ..bits import M64
from ..events import Trap
from ..isa import BRANCH, JUMP, SYSTEM, Decoded, decode
from ..isa.priv import INLINE, LAST, in_block
from ..memory import PAGE_MASK, UNPACK

if TYPE_CHECKING:
    from ..hart import Hart

MAX_INSNS = 64  # per basic block
MAX_BLOCKS = 24  # per region
MAX_REGION_INSNS = 384


class Discovery(NamedTuple):
    blocks: Dict[int, List[Decoded]]  # leader pc -> its instructions
    ppn: int  # the physical page they were read from
    since: int  # its code-write count when it was marked as code (Hart.mark_code_page)


def static_targets(d: Decoded) -> Tuple[int, ...]:
    """The targets a block's last instruction names (a branch, a jal)."""
    kind = d.insn.kind
    if kind == BRANCH or (kind == JUMP and d.insn.name == "jal"):
        return ((d.pc + d.imm) & M64,)
    return ()


def discover(h: Hart, entry: int, taken: Optional[Set[int]] = None) -> Discovery:
    """The basic blocks reachable from ``entry`` through direct branches
    and jumps inside its page: {leader pc: instructions}, the page's
    physical page number, and the code-write count when it was marked
    as a code page (Hart.mark_code_page), before it was read.

    ``taken``: the pcs control is known to have entered (the first tier's
    entries): a branch target, a branch's fall-through or a call's return
    point outside it is no leader, so a path never taken (an error path,
    a loop's exit not yet seen) is left out of the region and leaves it
    (the dispatcher runs it, on the first tier, if it ever runs), and the
    region compiles only what ran. None: every path."""
    try:
        buf, delta, ppn = h.fetch_page(entry)
    except Trap as t:
        t.pc = entry
        raise
    since = h.mark_code_page(ppn)
    page = entry & ~PAGE_MASK
    insn_at: Dict[int, Decoded] = {}
    leaders = [entry]
    leader_set = {entry}
    work = [entry]
    budget = MAX_REGION_INSNS
    entry_targeted = False  # is the entry also reached by a branch or fall-through?
    # the pcs after fences that end their block (isa.priv.in_block LAST):
    # never leaders, so that control leaves the region there
    after_last: Set[int] = set()

    def add_leader(pc: int, path: bool = True) -> None:
        nonlocal entry_targeted
        if pc == entry:
            entry_targeted = True
        if path and taken is not None and pc not in taken:
            return
        if pc & ~PAGE_MASK == page and pc not in leader_set and len(leader_set) < MAX_BLOCKS:
            leader_set.add(pc)
            leaders.append(pc)
            work.append(pc)

    while work and budget > 0:
        cur = work.pop()
        n = 0
        while budget > 0 and n < MAX_INSNS:
            if cur in insn_at:
                break  # already decoded from another leader
            if cur & ~PAGE_MASK != page:
                break
            lo = UNPACK[2](buf, delta + cur)[0]
            if lo & 3 == 3:
                if cur & PAGE_MASK > PAGE_MASK - 3:
                    break  # straddles the page end: the interpreter fetches it
                raw = UNPACK[4](buf, delta + cur)[0]
            else:
                raw = lo
            d = decode(raw, cur)
            kind = d.insn.kind
            if kind == SYSTEM:
                how = in_block(d)
                if how == LAST and d.next_pc != entry:
                    insn_at[cur] = d
                    budget -= 1
                    after_last.add(d.next_pc)
                    break
                if how != INLINE:
                    break
            insn_at[cur] = d
            n += 1
            budget -= 1
            if kind == BRANCH:
                add_leader((d.pc + d.imm) & M64)
                add_leader(d.next_pc)
                break
            if kind == JUMP:
                if d.insn.name == "jal":
                    add_leader((d.pc + d.imm) & M64)
                if d.rd:
                    # a call: its return lands here, and enters this
                    # region there rather than building one of its own
                    add_leader(d.next_pc)
                break
            cur = d.next_pc
            if n == MAX_INSNS:
                add_leader(cur, False)  # the same path, cut in two
    if after_last:
        leaders = [pc for pc in leaders if pc not in after_last]
        leader_set.difference_update(after_last)
    # An entry in the middle of a loop (a run resumed after an exit or
    # an interrupt) must not split the loop's block in two: unless
    # something else jumps there, the entry starts a prefix block that
    # runs once, and the other blocks run straight through it.
    blocks = form_blocks(leaders, leader_set if entry_targeted
                         else leader_set - {entry}, insn_at)
    if not entry_targeted and entry in blocks:
        last = blocks[entry][-1].pc
        for leader, run in blocks.items():
            if leader != entry and any(d.pc == entry for d in run) and run[-1].pc != last:
                # The block through the entry stops short of the
                # prefix's end (its size cap): split it at the entry.
                blocks = form_blocks(leaders, leader_set, insn_at)
                break
    return Discovery(blocks, ppn, since)


def form_blocks(leaders: List[int], stops: Set[int],
                insn_at: Dict[int, Decoded]) -> Dict[int, List[Decoded]]:
    """The basic block at each leader: the decoded run up to a branch or
    jump, a fence that ends its block, the next of ``stops`` or MAX_INSNS
    instructions."""
    blocks: Dict[int, List[Decoded]] = {}
    for leader in leaders:
        run: List[Decoded] = []
        cur = leader
        while cur in insn_at and len(run) < MAX_INSNS:
            d = insn_at[cur]
            run.append(d)
            if d.insn.kind in (BRANCH, JUMP) or (d.insn.kind == SYSTEM and in_block(d) == LAST):
                break
            cur = d.next_pc
            if cur in stops:
                break
        if run:
            blocks[leader] = run
    return blocks
