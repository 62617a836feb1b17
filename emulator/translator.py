"""The fast engine's front: which tier runs the code at a pc, and the cache
of what was built (per translation context and pc, with its code budget).

The tiers, each in its own place:

- first execution: the first tier (emulator.tier1), a straight run of
  instructions dispatched through prebuilt per-instruction functions, no
  ``compile()``; it counts its entries, and pages rewritten often stay on
  it (live blocks that read the page as they run);
- once a pc is hot: a region (emulator.region), the blocks reachable from
  it within its page compiled into one Python function: discovery
  (region.discover), one basic block's code with registers in locals and
  the TLB inline (region.emit), the blocks in a dispatcher with natural
  loops as Python loops (region.build, region.loops) and value facts
  guarding specialised loops (region.facts);
- the reference interpreter (emulator.interp) for SYSTEM instructions and
  whatever no block holds.

Here: ``Translator.translate`` (a miss in the block cache: reuse a block
set aside by sfence.vma or a region already entered at another leader,
else build a first-tier block or a region), and the code budget that
evicts the least recently used regions. Traps are precise: every exception
leaving generated code first stores the registers back; the hart then
works out from the faulting pc how many instructions retired.
"""

from __future__ import annotations

import gc
import platform
import time
import weakref
from types import FunctionType
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from . import tier1
from .bits import M64
from .codegen import compile_function
from .context import Ctx
from .events import Trap
from .interp import generated_globals
from .memory import NATIVE_VIEWS, PAGE_MASK, PAGE_SHIFT, VIEW
from .region.build import RegionCode, build_region
from .region.discover import discover

if TYPE_CHECKING:
    from .hart import Hart


ON_PYPY = platform.python_implementation() == "PyPy"
# Register locals in signed form (see emulator.signed): on PyPy, where
# values of 2**63 and more would be big integers. Read when a Translator is
# made; tests switch it to run this flavour on CPython.
SIGNED_LOCALS = ON_PYPY
# Loops of several blocks as Python loops too (else only one-block loops;
# the rest through the dispatcher). On PyPy the JIT traces the dispatcher's
# loop well and nested Python loops measured no faster (qsort about half as
# fast), so there it is off. Read when a Translator is made.
NESTED_LOOPS = not ON_PYPY
# Regions built along the paths the first tier took: branch targets,
# fall-throughs and return points where no first-tier block was entered
# are left out (region.discover). Read when a Translator is made.
PRUNE_UNTAKEN = True
# Live pages whose bytes a hart keeps to see whether they are still being
# rewritten (4 KiB each: at most 32 MiB); past it a new live page stays live.
MAX_LIVE_SNAPSHOTS = 8192
# First-tier entries a context remembers for PRUNE_UNTAKEN (a guest running
# ever-new code cannot grow them without end): past it they start again.
MAX_ENTERED = 1 << 20

# Generated source a hart may hold at once (characters), so a guest that
# runs ever more different code cannot grow the host's memory without end.
# Measured (a median region of Debian's boot, 8.8 k characters, compiled
# 300 times): 2.7 bytes of memory per character once compiled plus 0.9 for
# the source kept, on CPython 3.11; 5.9 on PyPy 7.3 before its JIT traces
# it. The process holds at most PROCESS_CODE of it, split evenly between
# the live harts (translators), each getting at most MAX_HART_CODE and at
# least MIN_HART_CODE: a lone hart may use all of it (64 Mi characters:
# about 230 MB on CPython). Debian's boot holds about 150 characters per
# guest instruction in regions, and its kernel code outgrew the former 16 Mi
# per hart after 270 M instructions: 6,600 regions evicted and built again by
# 420 M. Past its share a hart evicts its least recently used regions until
# it holds LOW_WATER of it (see Translator._make_room); an evicted region is
# simply built again (first tier, then a region) when next entered.
PROCESS_CODE = 64 << 20
MAX_HART_CODE = PROCESS_CODE
MIN_HART_CODE = 2 << 20
LOW_WATER = 0.75
_LIVE: weakref.WeakSet[Translator] = weakref.WeakSet()
NEVER = 1 << 62  # length of the "no block here" marker: always interpreted

# CPython's cyclic garbage collector with its default thresholds (700, 10,
# 10) runs a young collection every 700 allocations, and a full one that
# walks every live object (the code cache: blocks, functions, their
# indexes) every hundred of those: translating allocates steadily, so a
# boot spent 7% of its CPU time there (the first 40 M instructions of
# Debian's boot: 1.08 s of 15.9). With GC_THRESHOLDS set when the first
# translator is made (if the process still has the defaults) it was
# 0.2 s. A young generation of a million objects rather than 100,000
# halved it again (the first 150 M instructions at 1 ns per instruction
# side by side: 0.52 -> 0.20 s of collections, 21.1 -> 20.6 CPU s): young
# collections walk what survives, and most of a region's allocations do
# not. Nothing else changes: cycles are still collected. None: leave the
# collector alone.
GC_THRESHOLDS: Optional[Tuple[int, int, int]] = (1_000_000, 20, 100)
_DEFAULT_GC = (700, 10, 10)


def tune_gc() -> bool:
    """Raise the collector's thresholds to GC_THRESHOLDS where the process
    has CPython's defaults; True if it did."""
    if GC_THRESHOLDS is None or ON_PYPY or gc.get_threshold() != _DEFAULT_GC:
        return False
    gc.set_threshold(*GC_THRESHOLDS)
    return True


class Block:
    """What the block cache holds at a pc: a first-tier block, a region (or
    an alias entering one at another leader), or a marker for the
    interpreter (no ``fn``)."""

    __slots__ = ("fn", "length", "index", "pc", "src", "entries", "ppn", "owner", "ctx", "parts")

    def __init__(self, fn: Any, length: int, index: Dict[int, Tuple[int, int]], pc: int,
                 src: str = "", entries: Tuple[int, ...] = ()) -> None:
        self.fn = fn
        self.length = length
        self.index = index  # pc -> (position in the block, next pc)
        self.pc = pc
        self.src = src
        self.ppn = -1  # the physical page its code was read from
        # Other block leaders where the region's function can start (its
        # ``P`` argument: the leader's offset in the page).
        self.entries = entries
        # the region whose code this is (itself, or the region an alias
        # enters): what the code budget counts and evicts; None for
        # first-tier blocks and markers
        self.owner: Optional[Block] = None
        # the context whose block cache holds it (code shared with other
        # contexts: Translator._adopt)
        self.ctx: Optional[Ctx] = None
        # a first-tier block: what its runner is made of (body, last
        # instruction, end), to make it again for another context
        self.parts: Optional[Tuple[Any, Any, int, int]] = None

    def spans(self) -> List[Tuple[int, int]]:
        """The page offsets [first, end) of each run of bytes its
        instructions were read from (what a write must touch to invalidate
        it; a region's blocks may lie apart, with data between them)."""
        lo = self.pc & PAGE_MASK
        if not self.index:
            return [(lo, min(lo + 4, PAGE_MASK + 1))]  # a marker: the instruction at pc
        if self.parts is not None:  # a first-tier block: one straight run
            end = lo + ((self.parts[2] - self.pc) & M64)
            return [(lo, end if lo < end <= PAGE_MASK + 1 else PAGE_MASK + 1)]
        base = self.pc - lo
        runs: List[List[int]] = []
        for pc, (_, nxt) in sorted(self.index.items()):
            first, end = pc - base, nxt - base
            if not first < end <= PAGE_MASK + 1:
                end = PAGE_MASK + 1  # the last instruction of the address space
            if runs and first <= runs[-1][1]:
                runs[-1][1] = max(runs[-1][1], end)
            else:
                runs.append([first, end])
        return [(first, end) for first, end in runs]

    def entered_at(self, pc: int) -> Block:
        """The same code entered at ``pc``, one of ``entries``: a function
        object sharing the region's code object, with another default for
        ``P`` (so a call costs what a call of the region costs)."""
        fn = self.fn
        rt, wt, _ = fn.__defaults__
        alias = FunctionType(fn.__code__, fn.__globals__, fn.__name__,
                             (rt, wt, pc & PAGE_MASK))
        blk = Block(alias, self.length, self.index, pc, self.src)
        blk.ppn = self.ppn
        blk.owner = self
        return blk



class Translator:
    def __init__(self, hart: Hart) -> None:
        self.h = hart
        self.glb = generated_globals()
        self.signed = hart.signed_keys  # SIGNED_LOCALS when the hart was made
        self.nested = NESTED_LOOPS
        self.blocks_built = 0
        # None: this hart's share of PROCESS_CODE (code_budget); tests set a number
        self.max_code: Optional[int] = None
        # the regions held, least recently used first (built, or entered
        # again through a miss), each with its context; code_chars is the
        # sum of their source lengths
        self.held: Dict[Block, Ctx] = {}
        self.code_chars = 0
        self.code_flushes = 0  # kept for the boot benchmark: no budget flushes any more
        self.evictions = 0  # regions evicted by the budget
        self.chars_evicted = 0
        self._window = False  # blocks unlinked since the held code passed LOW_WATER
        _LIVE.add(self)
        tune_gc()
        # cost of translating (discovery, code generation, compile()),
        # in seconds: cheap counters a benchmark reads (bench_boot)
        self.translate_seconds = 0.0
        self.insns_translated = 0
        # the first tier (emulator.tier1): entries before a region is built
        self.hot_after = tier1.HOT_AFTER
        self.tier1_views = not ON_PYPY
        self.live_pages = True  # rewritten pages run live blocks (tier1.make_live_runner)
        # live pages: their bytes when last looked at, and the chances each
        # was given to go back to blocks and regions (_live_retry)
        self.live_seen: Dict[int, bytes] = {}
        self.live_chances: Dict[int, int] = {}
        self.live_quiet = 0  # chances given
        # regions hold only the paths the first tier took (region.discover)
        self.prune = PRUNE_UNTAKEN
        self.tier1_built = 0
        self.tier1_insns = 0
        self.tier1_seconds = 0.0
        # Code shared between contexts: the generated code depends on the
        # instruction bytes and on what a context's shape names (FS on,
        # pointer masking), not on its address space (satp) or SUM/MXR,
        # which only change how its TLBs fill. So the kernel's code, run
        # in every process's address space and with SUM on and off, is
        # built once: (fs_on, pmlen, pm_sign, pc) -> the newest block
        # cached for it in some context, which another context of the
        # same shape enters (with its own TLBs) where its pc maps to the
        # same physical page (_adopt).
        self.shared: Dict[Tuple[bool, int, bool, int], Block] = {}
        # region -> [(context, pc)] of its aliases adopted elsewhere:
        # evicted with it
        self.adopted: Dict[Block, List[Tuple[Ctx, int]]] = {}
        self.blocks_adopted = 0
        self.adopt_seconds = 0.0

    # -- a miss in the block cache -------------------------------------------
    def translate(self, pc: int) -> Block:
        h = self.h
        ctx = h.ctx
        if ctx.suspect:
            old = ctx.suspect.pop(pc, None)
            if old is not None:
                # set aside by sfence.vma: still good if the page maps to
                # the same physical page (a fault is left to discovery)
                try:
                    same = h.fetch_page(pc)[2] == old.ppn
                except Trap:
                    same = False
                owner = old.owner
                if owner is not None and owner not in self.held:
                    same = False  # its region was dropped (never the case: see evict)
                if same:
                    ctx.blocks[pc] = old
                    if owner is not None:
                        self.touch(owner)
                    return old
                if owner is old:
                    self.evict(old, ctx, False)  # its page maps elsewhere now
        inner = ctx.inner.get(pc)
        if inner is not None:
            # A leader of a region already built (where a run resumed after
            # stopping in one of its loops, say): enter that code there
            # rather than build another region over the same blocks.
            region: Block = inner[0]
            if region in self.held:
                blk = region.entered_at(pc)
                ctx.blocks[pc] = blk
                self._note_code(ctx, pc, blk)
                self._share(ctx, pc, blk)
                self.touch(region)
                return blk
            del ctx.inner[pc]  # the region's code was dropped since
        if self.shared:
            shared = self.shared.get((ctx.fs_on, ctx.pmlen, ctx.pm_sign, pc))
            if shared is not None and shared.ctx is not ctx:
                t0 = time.thread_time()
                try:
                    adopted = self._adopt(ctx, pc, shared)
                finally:
                    self.adopt_seconds += time.thread_time() - t0
                if adopted is not None:
                    return adopted
        if self.hot_after:
            t0 = time.thread_time()
            try:
                first = self._first_tier(ctx, pc)
            finally:
                self.tier1_seconds += time.thread_time() - t0
            if first is not None:
                return first
        t0 = time.thread_time()
        try:
            return self._translate_new(ctx, pc)
        finally:
            self.translate_seconds += time.thread_time() - t0

    def _note_code(self, ctx: Ctx, pc: int, blk: Block) -> None:
        """``blk`` is cached for ``pc``: stores to its instructions drop it."""
        for first, end in blk.spans():
            self.h.note_code(ctx, pc, blk.ppn, first, end)

    def _first_tier(self, ctx: Ctx, pc: int) -> Optional[Block]:
        """A first-tier block at ``pc`` (emulator.tier1), or None where
        the region is due: the pc is hot (and its page not rewritten
        often)."""
        h = self.h
        try:
            buf, delta, ppn = h.fetch_page(pc)
        except Trap as t:
            t.pc = pc
            raise
        smc = h.mem.code_page_writes.get(ppn, 0) >= tier1.SMC_PAGE_WRITES
        if pc in ctx.hot and not smc:
            return None
        if smc and self.live_pages:
            # rewritten often: a live block, not registered as code (it
            # reads the page as it runs), but set aside by fences of its page
            h.mem.drop_code(ppn)  # nothing cached from it: stores there are plain again
            words32 = halves = None
            if self.tier1_views and NATIVE_VIEWS:
                hp = h.mem.host_page(ppn << PAGE_SHIFT, False)
                if hp is not None:
                    words32, halves = hp[VIEW[4, False]], hp[VIEW[2, False]]
            start = delta + (pc & ~PAGE_MASK)
            if ppn not in self.live_seen:
                self._keep_page(ppn, buf, start)
            live_ref: List[Any] = [None]
            fn, live_index = tier1.make_live_runner(
                ctx, pc, self.tier1_views, self.glb, buf, delta, words32, halves,
                lambda: self._live_retry(ppn, buf, start), live_ref)
            blk = live_ref[0] = Block(fn, tier1.MAX_INSNS, live_index, pc)  # type: ignore[arg-type]
            blk.ppn = ppn
            ctx.blocks[pc] = blk
            ctx.add_code(pc)
            self.tier1_built += 1
            return blk
        if len(ctx.entered) >= MAX_ENTERED:
            ctx.entered.clear()  # ever-new code: forget the oldest paths (a bound, not a cache)
        ctx.entered.add(pc)
        since = h.mark_code_page(ppn)
        body, term, end, index = tier1.straight_run(h, ctx, pc, self.tier1_views, self.glb,
                                                    buf, delta)
        if index:
            ref: List[Any] = [None]
            count = 0 if smc else self.hot_after
            fn = tier1.make_runner(body, term, end, len(index), pc, count, ref)
            blk = ref[0] = Block(fn, len(index), index, pc)
            blk.parts = (body, term, end, count)
        else:
            blk = Block(None, NEVER, {}, pc)  # the interpreter's (a SYSTEM instruction)
        blk.ppn = ppn
        if not h.code_unchanged(since):
            return blk  # see _translate_new
        ctx.blocks[pc] = blk
        self._note_code(ctx, pc, blk)
        self._share(ctx, pc, blk)
        self.tier1_built += 1
        self.tier1_insns += len(index)
        return blk

    def _live_retry(self, ppn: int, buf: Any, start: int) -> int:
        """A live block of page ``ppn`` (its bytes at ``buf[start:]``) ran
        LIVE_RETRY times (tier1.LIVE_RETRY): 0 if the page is quiet (its
        bytes are what they were when last looked at: it gets a chance,
        write count one below SMC_PAGE_WRITES, and its live blocks step
        aside), else the runs until the next look (the bytes kept)."""
        mem = self.h.mem
        if mem.code_page_writes.get(ppn, 0) < tier1.SMC_PAGE_WRITES:
            return 0  # another of its live blocks found it quiet
        chances = self.live_chances.get(ppn, 0)
        if not self._keep_page(ppn, buf, start):  # unchanged since last looked at
            self.live_chances[ppn] = chances + 1
            mem.code_page_writes[ppn] = tier1.SMC_PAGE_WRITES - 1
            del self.live_seen[ppn]
            self.live_quiet += 1
            return 0
        return tier1.LIVE_RETRY << min(chances, tier1.LIVE_BACKOFF_MAX)

    def _keep_page(self, ppn: int, buf: Any, start: int) -> bool:
        """Keep the bytes of live page ``ppn`` (at ``buf[start:]``) as last
        looked at (at most MAX_LIVE_SNAPSHOTS pages); True if they differ
        from those kept before (or none were)."""
        now = bytes(buf[start:start + PAGE_MASK + 1])
        if self.live_seen.get(ppn) == now:
            return False
        if ppn in self.live_seen or len(self.live_seen) < MAX_LIVE_SNAPSHOTS:
            self.live_seen[ppn] = now
        return True

    def _translate_new(self, ctx: Ctx, pc: int) -> Block:
        h = self.h
        blocks, ppn, since = discover(h, pc, ctx.entered if self.prune and self.hot_after
                                      else None)
        if pc not in blocks:
            blk = Block(None, NEVER, {}, pc)
        else:
            try:
                blk = self._finish(ctx, pc, build_region(ctx, pc, blocks, self.signed,
                                                         self.nested))
            except (SyntaxError, RecursionError, MemoryError):
                # Python's own limits (nesting of loops and indentation in
                # the compiler): the region again with its loops left to the
                # dispatcher, which nests nothing deeper than its search tree.
                blk = self._finish(ctx, pc, build_region(ctx, pc, blocks, self.signed,
                                                         self.nested, structured=False))
        blk.ppn = ppn
        if not h.code_unchanged(since):
            # another hart stored into a code page while this one read it:
            # run what was read (the fetch came first), keep nothing
            return blk
        self.blocks_built += 1
        self.insns_translated += sum(len(b) for b in blocks.values())
        if blk.fn is not None and not self._make_room(len(blk.src)):
            return blk  # larger than the whole budget: run once, keep nothing
        ctx.blocks[pc] = blk
        self._note_code(ctx, pc, blk)
        if blk.fn is not None:
            blk.owner = blk
            self.held[blk] = ctx
            self.code_chars += len(blk.src)
            for leader in blk.entries:
                ctx.inner[leader] = (blk, ppn)  # the newest region: still live
        self._share(ctx, pc, blk)
        return blk

    # -- code shared between contexts ------------------------------------------
    def _share(self, ctx: Ctx, pc: int, blk: Block) -> None:
        """``blk`` is cached for ``pc`` in ``ctx``: contexts of the same
        shape may enter it too (see ``shared``)."""
        blk.ctx = ctx
        key = (ctx.fs_on, ctx.pmlen, ctx.pm_sign, pc)
        self.shared[key] = blk
        ctx.shared_keys.add(key)

    def _adopt(self, ctx: Ctx, pc: int, other: Block) -> Optional[Block]:
        """``other``, cached for ``pc`` in another context of the same shape,
        for ``ctx``: the same code with ``ctx``'s TLBs, if it is still
        cached there (no store, eviction or flush dropped it: then its
        bytes are what memory holds) and ``pc`` maps to the same physical
        page in ``ctx``. None: build as usual."""
        octx = other.ctx
        if octx is None or (octx.blocks.get(pc) is not other
                            and octx.suspect.get(pc) is not other):
            return None
        owner = other.owner
        if owner is not None and owner not in self.held:
            return None
        if owner is None and other.fn is not None and (other.parts is None or pc in ctx.hot):
            return None  # a hot pc gets its region in this context
        try:
            ppn = self.h.fetch_page(pc)[2]
        except Trap:
            return None  # the usual path raises the fault
        if ppn != other.ppn:
            return None
        fn = other.fn
        if owner is None and fn is not None:
            # a first-tier block names no context (tier1.make_runner): the
            # same block, in this context's cache too (it stays homed
            # where it was built)
            ctx.blocks[pc] = other
            self._note_code(ctx, pc, other)
            self.blocks_adopted += 1
            return other
        if owner is not None:
            rt, wt, p = fn.__defaults__
            blk = Block(FunctionType(fn.__code__, fn.__globals__, fn.__name__,
                                     (ctx.rt, ctx.wt, p)),
                        other.length, other.index, pc)
            blk.owner = owner
            self.adopted.setdefault(owner, []).append((ctx, pc))
            ctx.adopted_regions.add(owner)
            self.touch(owner)
        else:
            blk = Block(None, NEVER, {}, pc)  # the interpreter's
        blk.ppn = ppn
        blk.ctx = ctx
        ctx.blocks[pc] = blk
        self._note_code(ctx, pc, blk)
        self.blocks_adopted += 1
        return blk

    # -- the code budget ----------------------------------------------------
    def code_budget(self) -> int:
        """Characters of generated source this hart may hold: ``max_code``
        if set, else its even share of PROCESS_CODE among the live
        translators (within MIN_HART_CODE..MAX_HART_CODE)."""
        if self.max_code is not None:
            return self.max_code
        share = PROCESS_CODE // max(1, len(_LIVE))
        return max(MIN_HART_CODE, min(MAX_HART_CODE, share))

    def touch(self, region: Block) -> None:
        """``region`` was entered through a miss: now the most recently used."""
        ctx = self.held.pop(region, None)
        if ctx is not None:
            self.held[region] = ctx

    def _make_room(self, size: int) -> bool:
        """Make room for a region of ``size`` characters: past the budget,
        evict the least recently used regions until LOW_WATER of it is
        held. False if the region alone exceeds the budget.

        Recency costs nothing on the hot path (no bookkeeping in region
        code or in the dispatcher's cache hits): once the held code passes
        LOW_WATER, every held region's blocks are unlinked from the block
        caches into the set-aside map (``Ctx.suspect``), so the first entry
        of each afterwards misses, puts it back and makes its region the
        most recently used (touch); the regions not entered since are then
        the first ones evicted (a clock with one reference bit). Each sweep
        unlinks the survivors again, so the next one knows what ran in
        between."""
        budget = self.code_budget()
        if size > budget:
            return False
        held = self.held
        if self.code_chars + size > budget:
            low = int(budget * LOW_WATER)
            while held and self.code_chars + size > low:
                region = next(iter(held))
                self.evict(region, held[region], True)
            self._unlink_held()  # what is used before the next sweep
        elif not self._window and self.code_chars + size > budget * LOW_WATER:
            self._unlink_held()  # the first sweep is coming
        return True

    def _unlink_held(self) -> None:
        """Move the blocks of every held region from the block caches to
        the set-aside map: each one's next entry misses and touches it."""
        self._window = True
        for region, ctx in list(self.held.items()):
            blocks, suspect = ctx.blocks, ctx.suspect
            for pc in (region.pc, *region.entries):
                b = blocks.get(pc)
                if b is not None and b.owner is region:
                    del blocks[pc]
                    suspect[pc] = b
            for actx, pc in self.adopted.get(region, ()):
                b = actx.blocks.get(pc)
                if b is not None and b.owner is region:
                    del actx.blocks[pc]
                    actx.suspect[pc] = b

    def evict(self, region: Block, ctx: Ctx, budget: bool) -> None:
        """Drop ``region`` and every index naming it or an alias of it
        (block caches, set-aside blocks, inner leaders, the pages' code
        lists of the hart, the aliases other contexts adopted, the shared
        map): nothing can enter it again. ``budget``: counted as an
        eviction (else it was invalidated)."""
        home = self.held.pop(region, None)
        if home is None:
            return
        size = len(region.src)
        self.code_chars -= size
        if budget:
            self.evictions += 1
            self.chars_evicted += size
        pcs = (region.pc, *region.entries)
        self._drop_entries(region, ctx, pcs)
        if home is not ctx:
            self._drop_entries(region, home, pcs)
        for actx, pc in self.adopted.pop(region, ()):
            self._drop_entries(region, actx, (pc,))

    def _drop_entries(self, region: Block, ctx: Ctx, pcs: Tuple[int, ...]) -> None:
        """The entries of ``ctx`` at ``pcs`` that enter ``region``."""
        gone = []
        shared = self.shared
        shape = (ctx.fs_on, ctx.pmlen, ctx.pm_sign)
        for pc in pcs:
            found = False
            for cache in (ctx.blocks, ctx.suspect):
                b = cache.get(pc)
                if b is not None and (b is region or b.owner is region):
                    cache.pop(pc, None)
                    found = True
            if found:
                gone.append(pc)
            if pc != region.pc:
                e = ctx.inner.get(pc)
                if e is not None and e[0] is region:
                    ctx.inner.pop(pc, None)
            key = (*shape, pc)
            b = shared.get(key)
            if b is not None and b.owner is region:
                del shared[key]
        pcs_held = ctx.vcode.get(region.pc & ~PAGE_MASK)
        if pcs_held is not None:
            for pc in gone:
                if pc not in ctx.blocks and pc not in ctx.suspect and pc not in ctx.insns:
                    pcs_held.discard(pc)
        self.h.forget_code(ctx, region.ppn, gone)

    def drop_context(self, ctx: Ctx) -> None:
        """The hart forgets ``ctx``: the regions built there that other
        contexts entered move to one of those (the same code, its place in
        the LRU order kept), the others are evicted; nothing shared names
        ``ctx`` any more."""
        shared = self.shared
        for region, home in list(self.held.items()):
            if home is not ctx:
                continue
            for actx, pc in self.adopted.get(region, ()):
                b = actx.blocks.get(pc) or actx.suspect.get(pc)
                if actx is not ctx and b is not None and b.owner is region:
                    self.held[region] = actx
                    self._share(actx, pc, b)
                    break
            else:
                self.evict(region, ctx, False)
        for region in ctx.adopted_regions:
            aliases = self.adopted.get(region)
            if aliases:
                aliases[:] = [(actx, pc) for actx, pc in aliases if actx is not ctx]
        for key in ctx.shared_keys:
            b = shared.get(key)
            if b is not None and b.ctx is ctx:
                del shared[key]

    def close(self) -> None:
        """The hart is gone: its share returns to the others."""
        _LIVE.discard(self)

    def drop_held(self) -> None:
        """Every region was dropped with the block caches (flush_code)."""
        self.held.clear()
        self.adopted.clear()
        self.shared.clear()
        self.code_chars = 0
        self._window = False

    # -- a region compiled ---------------------------------------------------
    def _finish(self, ctx: Ctx, entry: int, code: RegionCode) -> Block:
        # The context's TLB dictionaries are bound as default arguments
        # (fast locals); they are only ever cleared, never replaced.
        fn = compile_function("block", "H, X, F, lim, RT=None, WT=None, P=0", code.lines,
                              self.glb, f"<block@{entry:#x}>")
        fn.__defaults__ = (ctx.rt, ctx.wt, entry & PAGE_MASK)  # type: ignore[attr-defined]
        return Block(fn, code.length, code.positions, entry, "\n".join(code.lines), code.entries)
