"""The first tier of the fast engine: code that has run only a few times
never pays for a region's ``compile()``.

A first-tier block is the straight run of instructions at an entry (up to
a branch or jump, a SYSTEM instruction left to the interpreter, a fence
that ends its block (isa.priv.in_block), the page end or MAX_INSNS),
executed by a small Python loop over per-instruction functions. Those
functions come from the same ISA tables and emitters as everything else
(``Insn.gen``), generated once per instruction *word* with the address as
the parameter ``PC`` (branch targets and return addresses become
expressions of it, see SymPC) and shared process-wide by every address,
hart and VM holding that word; only auipc is generated per address (it
ends its block), as the reference interpreter does. Loads and stores take the
software TLB inline, as translated regions do.

Each block counts its entries; at ``HOT_AFTER`` it steps aside and the
next miss at its pc builds the full region (loops, unrolling, value
facts). A page whose code has been written ``SMC_PAGE_WRITES`` times stays
on this tier: rebuilding a first-tier block costs dictionary lookups, not
a compile.
"""

from __future__ import annotations

from types import CodeType, FunctionType
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

from . import interp
from .codegen import ListEmitter, compile_function, lifted_code, lifted_function
from .context import Ctx
from .events import StepInstead
from .isa import BRANCH, JUMP, PLAIN, SYSTEM, Decoded, decode
from .isa.priv import FIRST, INLINE, LAST, in_block
from .memory import NATIVE_VIEWS, PAGE_MASK, UNPACK, VIEW, VIEW_SHIFT
from .pypy import opaque_call

if TYPE_CHECKING:
    from .hart import Hart

# Entries of a first-tier block before its pc gets a full region. Read
# when a Translator is made (tests set it, 0: no first tier). 256 rather
# than 64: the first 150 M instructions of Debian's boot build 1,074
# regions instead of 1,918, 86.1 against 89.9 CPU s (translation 24% of
# it, not 31%); the microbenchmarks' loops are hot long before either.
HOT_AFTER = 256
# Writes to a page's code after which its blocks stay on this tier.
SMC_PAGE_WRITES = 8
# Runs of a live block after which it asks whether its page is still
# being rewritten (read when the block is made; see Translator._live_retry):
# a page whose bytes did not change since it was last looked at goes back
# to blocks and regions (one more write makes it live again), so the
# kernel's text, patched at boot (alternatives, jump labels, ftrace), is not
# run a word at a time for ever; a page still changing waits longer each
# time it was given a chance before (doubling, up to 2**LIVE_BACKOFF_MAX).
LIVE_RETRY = 1024
LIVE_BACKOFF_MAX = 8
MAX_INSNS = 64
# Entries of each per-word and per-address function cache (a full one
# starts again): Debian's boot runs 70,000 different instruction words of
# one flavour on the first tier, and with 2**16 the cache emptied once and
# made them again (the kernel's boot, 338.8 M instructions side by side:
# first-tier building 3.6 -> 3.2 s with 2**20). About 400 bytes an entry
# (made from distinct words, tracemalloc): at most about 50 MB a cache.
CACHE_ENTRIES = 1 << 17


def key_mask(size: int) -> int:
    """TLB key mask (see translator._key_mask): misaligned accesses miss."""
    return ~(PAGE_MASK & ~(size - 1))


class SymPC:
    """The instruction's address as its generated code sees it: the
    parameter ``PC``. Arithmetic on it (a branch target, a return address)
    gives the expression, so pc-relative control transfers are generated
    once per instruction word too."""

    __slots__ = ("text",)

    def __init__(self, text: str = "PC") -> None:
        self.text = text

    def __add__(self, other: int) -> SymPC:
        return SymPC(f"({self.text} + {int(other)})")

    __radd__ = __add__

    def __and__(self, other: int) -> SymPC:
        return SymPC(f"({self.text} & {int(other)})")

    def __str__(self) -> str:
        return self.text

    def __format__(self, spec: str) -> str:
        return self.text


class Tier1Emitter(ListEmitter):
    """Registers in ``X``; the instruction's address is the parameter
    ``PC``; loads and stores try the TLBs ``RT``/``WT`` first."""

    def __init__(self, ctx: Ctx, views: bool) -> None:
        super().__init__(ctx)
        self.use_views = views and NATIVE_VIEWS
        self.signed_keys = ctx.signed_keys

    def begin(self, pc: int, raw: int, length: int) -> None:
        super().begin(0, raw, length)
        self.pc = "PC"  # type: ignore[assignment]
        self.npc = f"((PC + {length}) & {(1 << 64) - 1})"  # type: ignore[assignment]

    def tlb_address(self, addr: str) -> str:
        """The unsigned address ``addr`` in the form of the TLBs' keys: as
        it is, or in signed form as a machine word (Ctx.signed_keys)."""
        if not self.signed_keys:
            return addr
        s = self.tmp()
        self.emit(f"{s} = IADD({addr} - {1 << 64} if {addr} >> 63 else {addr}, 0)")
        return s

    def load_value(self, addr: str, size: int, signed: bool) -> str:
        t, p = self.tmp(), self.tmp()
        slow_addr, addr = addr, self.tlb_address(addr)
        self.emit(f"{p} = RT.get({addr} & {key_mask(size)})")
        if self.use_views and size > 1:
            fast = f"{p}[{VIEW[size, signed]}][({p}[1] + {addr}) >> {VIEW_SHIFT[size]}]"
            if signed and size < 8:
                fast = f"({fast} & {(1 << 64) - 1})"
        elif size == 1 and not signed:
            fast = f"{p}[0][{p}[1] + {addr}]"
        elif signed and size < 8:
            fast = f"(S{size}({p}[0], {p}[1] + {addr})[0] & {(1 << 64) - 1})"
        else:
            fast = f"U{size}({p}[0], {p}[1] + {addr})[0]"
        slow = f"H.load_{'s' if signed and size < 8 else 'u'}({slow_addr}, {size}, PC)"
        self.emit(f"{t} = {fast} if {p} is not None else {slow}")
        return t

    def store(self, addr: str, value: str, size: int) -> None:
        p = self.tmp()
        slow_addr, addr = addr, self.tlb_address(addr)
        self.emit(f"{p} = WT.get({addr} & {key_mask(size)})")
        self.emit(f"if {p} is None: H.store({slow_addr}, {size}, {value}, PC)")
        if self.use_views and size > 1:
            self.emit(f"else: {p}[{VIEW[size, False]}][({p}[1] + {addr}) >> {VIEW_SHIFT[size]}]"
                      f" = {value}")
        else:
            self.emit(f"else: P{size}({p}[0], {p}[1] + {addr}, {value})")


def _pc_relative(d: Decoded) -> bool:
    """Made per address: auipc (its value's bounds are worked out from the
    address when it is generated)."""
    return d.insn.name == "auipc"


# The kinds word_function gives a SYSTEM instruction that runs as the last
# of its block, or only as its first (isa.priv.in_block); one that runs
# inline is given PLAIN.
ENDS_BLOCK = 4
STARTS_BLOCK = 5

# (flavour, word) -> (function(H, X, F, PC, RT, WT) or None, kind, length);
# None: pc-relative, made per address (_PER_PC)
WordEntry = Tuple[Optional[Callable[..., None]], int, int]
# flavour -> {word: (function or None, kind, length)}
_BY_WORD: Dict[Tuple[Any, ...], Dict[int, WordEntry]] = {}
_PER_PC: Dict[Tuple[Any, ...], Callable[..., None]] = {}


def _flavour(ctx: Ctx, views: bool) -> Tuple[Any, ...]:
    """What of a context the generated instruction code depends on."""
    return (ctx.fs_on, ctx.pmlen, ctx.pm_sign, views, ctx.signed_keys)


def word_function(ctx: Ctx, views: bool, raw: int, glb: Dict[str, object]) -> Tuple[
        Optional[Callable[..., None]], int, int]:
    """(function or None if pc-relative, kind, length) for an instruction word."""
    words = word_table(ctx, views)
    hit = words.get(raw)
    if hit is not None:
        return hit
    d = decode(raw, 0)
    kind = d.insn.kind
    if kind == SYSTEM:
        how = in_block(d)
        kind = {INLINE: PLAIN, LAST: ENDS_BLOCK, FIRST: STARTS_BLOCK}.get(how, SYSTEM)
    fn: Optional[Callable[..., None]] = None
    if kind != SYSTEM and not _pc_relative(d):
        d.pc = SymPC()  # type: ignore[assignment]
        e = Tier1Emitter(ctx, views)
        e.begin(0, d.raw, d.length)
        d.insn.gen(e, d)
        if kind in (BRANCH, JUMP) and not e.ended:
            raise AssertionError(f"{d.insn.name}: a control transfer that sets no pc")
        fn = lifted_function("insn", "H, X, F, PC, RT, WT", e.lines or ["pass"], glb,
                             f"<{d.insn.name} tier1>")
    entry = (fn, kind, d.length)
    if len(words) >= CACHE_ENTRIES:
        words.clear()
    words[raw] = entry
    return entry


def word_table(ctx: Ctx, views: bool) -> Dict[int, WordEntry]:
    """word_function's cache for the flavour of ``ctx``: {word: entry}."""
    flav = _flavour(ctx, views)
    words = _BY_WORD.get(flav)
    if words is None:
        words = _BY_WORD[flav] = {}
    return words


def pc_function(ctx: Ctx, views: bool, raw: int, pc: int,
                glb: Dict[str, object]) -> Callable[..., None]:
    """A pc-relative instruction at ``pc``: function(H, X, F) that also sets H.pc."""
    key = (_flavour(ctx, views), raw, pc)
    fn = _PER_PC.get(key)
    if fn is None:
        d = decode(raw, pc)
        fn = lifted_function("insn", "H, X, F", interp.insn_lines(d, ctx), glb,
                             f"<{d.insn.name} at>")
        if len(_PER_PC) >= CACHE_ENTRIES:
            _PER_PC.clear()
        _PER_PC[key] = fn
    return fn


_BOUND: Dict[Tuple[Any, ...], Tuple[CodeType, Tuple[int, ...]]] = {}


def bound_function(ctx: Ctx, raw: int, pc: int, glb: Dict[str, object]) -> Callable[..., None]:
    """The reference interpreter's function(H, X, F) for the instruction
    ``raw`` at ``pc`` (it sets H.pc), made from code generated once per
    instruction word with ``PC`` a parameter defaulting to ``pc``."""
    key = (ctx.fs_on, ctx.pmlen, ctx.pm_sign, raw)
    made = _BOUND.get(key)
    if made is None:
        d = decode(raw, 0)
        if _pc_relative(d):
            return pc_function(ctx, False, raw, pc, glb)
        d.pc = SymPC()  # type: ignore[assignment]
        made = lifted_code("insn", "H, X, F, PC=0", interp.insn_lines(d, ctx), glb,
                           f"<{d.insn.name}>")
        if len(_BOUND) >= CACHE_ENTRIES:
            _BOUND.clear()
        _BOUND[key] = made
    code, values = made
    return FunctionType(code, glb, "insn", (pc, *values))  # type: ignore[arg-type]


def straight_run(h: Hart, ctx: Ctx, pc: int, views: bool, glb: Dict[str, object],
                 buf: Any, delta: int) -> Tuple[List[Tuple[Callable[..., None], int]],
                                                Optional[Tuple[Callable[..., None], int]], int,
                                                Dict[int, Tuple[int, int]]]:
    """The first-tier block at ``pc`` read from ``buf``: (body functions
    with their addresses, the last instruction if it sets the pc (a
    control transfer, or auipc made for its address) with its address, the
    pc after the block, pc -> (position, next pc))."""
    page = pc & ~PAGE_MASK
    body: List[Tuple[Callable[..., None], int]] = []
    index: Dict[int, Tuple[int, int]] = {}
    term: Optional[Callable[..., None]] = None
    term_pc = 0
    cur = pc
    words = word_table(ctx, views)
    u2, u4 = UNPACK[2], UNPACK[4]
    while len(index) < MAX_INSNS and cur & ~PAGE_MASK == page:
        lo = u2(buf, delta + cur)[0]
        if lo & 3 == 3:
            if cur & PAGE_MASK > PAGE_MASK - 3:
                break  # straddles the page end: the interpreter fetches it
            raw = u4(buf, delta + cur)[0]
        else:
            raw = lo
        hit = words.get(raw)
        fn, kind, length = hit if hit is not None else word_function(ctx, views, raw, glb)
        if kind == SYSTEM or (kind == STARTS_BLOCK and cur != pc):
            break
        nxt = (cur + length) & ((1 << 64) - 1)
        index[cur] = (len(index), nxt)
        if fn is None:
            term = _three_args(pc_function(ctx, views, raw, cur, glb))
            term_pc = cur
            cur = nxt
            break
        if kind in (BRANCH, JUMP):
            term, term_pc = fn, cur
            cur = nxt
            break
        body.append((fn, cur))
        cur = nxt
        if kind == ENDS_BLOCK:
            break
    return body, (term, term_pc) if term is not None else None, cur, index


def _three_args(fn: Callable[..., None]) -> Callable[..., None]:
    def call(H: Any, X: List[int], F: List[int], PC: int, RT: Any, WT: Any) -> None:
        fn(H, X, F)
    return call


def make_runner(body: List[Tuple[Callable[..., None], int]],
                last: Optional[Tuple[Callable[..., None], int]],
                end: int, length: int, entry: int, count: int,
                blk_ref: List[Any]) -> Callable[..., int]:
    """The block's function(H, X, F, lim): runs the body, sets H.pc,
    returns the instructions retired; after ``count`` entries (0: never)
    it leaves the block cache of the context it runs in and marks its pc
    hot there.

    It names no context: it reads the TLBs from the hart's current one
    (the context whose block cache it was found in), so one block serves
    every context of the same shape that maps its page to the same
    physical page (Translator._adopt enters it there as it is). Past its
    count, each of those contexts lets it go the next time it runs in it."""
    # entries left (a closure cell: the cheapest count on CPython); a
    # block that never goes hot starts too high to ever get there
    left = count if count else 1 << 62
    term, term_pc = last if last is not None else (None, 0)
    call: Any = opaque_call

    def promote(ctx: Ctx) -> None:
        ctx.hot.add(entry)
        blocks = ctx.blocks
        if blocks.get(entry) is blk_ref[0]:
            del blocks[entry]

    def run(H: Any, X: List[int], F: List[int], lim: int) -> int:
        nonlocal left
        left -= 1
        ctx = H.ctx
        if left <= 0:
            promote(ctx)
        rt = ctx.rt
        wt = ctx.wt
        for fn, p in body:
            fn(H, X, F, p, rt, wt)
        if term is None:
            H.pc = end
        else:
            term(H, X, F, term_pc, rt, wt)
        return length

    if call is None:
        return run

    def run_opaque(H: Any, X: List[int], F: List[int], lim: int) -> int:
        # PyPy (emulator.pypy): the per-word functions are called opaquely,
        # so this loop's trace does not grow a guard per instruction word
        nonlocal left
        left -= 1
        ctx = H.ctx
        if left <= 0:
            promote(ctx)
        rt = ctx.rt
        wt = ctx.wt
        for fn, p in body:
            call(fn, H, X, F, p, rt, wt)
        if term is None:
            H.pc = end
        else:
            call(term, H, X, F, term_pc, rt, wt)
        return length

    return run_opaque


class LiveIndex:
    """``Block.index`` of a live block: every pc maps to (the instructions
    it completed, the pc after the instruction that stopped it), kept by
    the runner on its way out through an exception only."""

    __slots__ = ("state",)

    def __init__(self, state: List[int]) -> None:
        self.state = state

    def __getitem__(self, pc: int) -> Tuple[int, int]:
        return self.state[0], self.state[1]


# flavour -> {word: (function(H, X, F, PC, RT, WT) or None, length, ends)}
# for live blocks, one dictionary per flavour (a word is the whole key: an
# integer hashes at once). ``ends``: a branch or jump (it sets the pc).
# None with length 0: a SYSTEM instruction, left to the interpreter, but
# fence.i, which runs in the block; None with a length: auipc (made for
# its address).
# The third item: what the word does to the block: LIVE_ON (runs on),
# LIVE_SETS_PC (a branch or jump: it set the pc), LIVE_ENDS (the block ends
# after it, at the next pc: a SYSTEM instruction blocks may run last, such
# as sfence.vma), LIVE_FIRST (only as the block's first instruction, where
# instret is exact: counter reads).
LiveWord = Tuple[Optional[Callable[..., None]], int, int]
LIVE_ON, LIVE_SETS_PC, LIVE_ENDS, LIVE_FIRST = 0, 1, 2, 3
_LIVE_HOW = {BRANCH: LIVE_SETS_PC, JUMP: LIVE_SETS_PC, ENDS_BLOCK: LIVE_ENDS,
             STARTS_BLOCK: LIVE_FIRST}
_LIVE_WORDS: Dict[Tuple[Any, ...], Dict[int, LiveWord]] = {}


def _fence_i_gen(e: ListEmitter, d: Decoded) -> None:
    """fence.i in a live block: the hart's fence_i, the one the interpreter
    runs (it only orders: it changes no translation context), so the block
    goes on after it; what a live block runs next it reads from memory."""
    e.emit(f"H.fence_i({d.raw}, PC)")


def _live_words(ctx: Ctx, views: bool) -> Dict[int, LiveWord]:
    flav = _flavour(ctx, views)
    words = _LIVE_WORDS.get(flav)
    if words is None:
        words = _LIVE_WORDS[flav] = {}
    return words


def live_word(ctx: Ctx, views: bool, raw: int, glb: Dict[str, object]) -> LiveWord:
    """How live blocks run the instruction word ``raw`` (see _LIVE_WORDS)."""
    words = _live_words(ctx, views)
    if len(words) >= CACHE_ENTRIES:
        words.clear()  # in place: runners hold the dictionary
    fn, kind, length = word_function(ctx, views, raw, glb)
    entry: LiveWord = (fn, length, _LIVE_HOW.get(kind, LIVE_ON))
    d = decode(raw, 0)
    if kind == SYSTEM or d.insn.name == "fence.i":
        entry = (None, 0, LIVE_ON)
        if d.insn.name == "fence.i":  # orders only: the live block runs on
            e = Tier1Emitter(ctx, views)
            e.begin(0, raw, d.length)
            _fence_i_gen(e, d)
            fence: Callable[..., None] = compile_function(  # type: ignore[assignment]
                "insn", "H, X, F, PC, RT, WT", e.lines, glb, "<fence.i live>")
            entry = (fence, d.length, LIVE_ON)
    words[raw] = entry
    return entry


def make_live_runner(ctx: Ctx, pc: int, views: bool, glb: Dict[str, object], buf: Any,
                     delta: int, words32: Any = None, halves: Any = None,
                     retry: Optional[Callable[[], int]] = None,
                     blk_ref: Optional[List[Any]] = None) -> Tuple[Callable[..., int],
                                                                   LiveIndex]:
    """A block for a page whose code is rewritten often: it reads and
    looks up each instruction word as it runs (a dictionary lookup per
    instruction, per-word functions shared as above), so a write to the
    page leaves nothing to invalidate and it is never rebuilt. Runs from
    ``pc`` up to a control transfer, a SYSTEM instruction other than
    fence.i (left to the interpreter), the page end or MAX_INSNS
    instructions. ``words32``, ``halves``: the buffer as 32-bit and 16-bit
    items (memoryviews), read without a call on CPython; else struct reads
    of ``buf``. ``retry`` (with ``blk_ref``, a list holding the block):
    called after LIVE_RETRY runs, it gives the runs until its next call, or
    0: the page is quiet, and the block leaves the context's block cache
    (the next miss at its pc builds as for any page)."""
    rt, wt = ctx.rt, ctx.wt
    page_end = (pc & ~PAGE_MASK) + PAGE_MASK + 1
    state = [0, pc]
    u2, u4 = UNPACK[2], UNPACK[4]
    words = _live_words(ctx, views)
    blocks = ctx.blocks
    # runs until retry() (a closure cell: the cheapest count on CPython);
    # without retry, never reaches 0
    left = LIVE_RETRY if retry is not None else -1

    def run(H: Any, X: List[int], F: List[int], lim: int) -> int:
        nonlocal left
        left -= 1
        if not left:
            assert retry is not None and blk_ref is not None
            left = retry()
            if not left and blocks.get(pc) is blk_ref[0]:
                del blocks[pc]
        cur = pc
        n = length = 0
        try:
            for n in range(MAX_INSNS):  # n: the instructions completed
                at = delta + cur
                if words32 is not None:
                    if at & 3 or cur + 4 > page_end:
                        raw = halves[at >> 1]
                        if raw & 3 == 3:
                            if cur + 4 > page_end:
                                break
                            raw |= halves[(at >> 1) + 1] << 16
                    else:
                        raw = words32[at >> 2]
                        if raw & 3 != 3:
                            raw &= 0xFFFF
                else:
                    raw = u2(buf, at)[0]
                    if raw & 3 == 3:
                        if cur + 4 > page_end:
                            break
                        raw = u4(buf, at)[0]
                try:
                    fn, length, ends = words[raw]
                except KeyError:
                    fn, length, ends = live_word(ctx, views, raw, glb)
                if fn is None:
                    if length and not n:  # auipc first: made for its address
                        pc_function(ctx, views, raw, cur, glb)(H, X, F)
                        return 1
                    break
                if ends == LIVE_FIRST and n:  # runs only where instret is exact
                    break
                fn(H, X, F, cur, rt, wt)
                if ends == LIVE_SETS_PC:  # a branch or jump: it set the pc
                    return n + 1
                cur += length
                if ends == LIVE_ENDS:  # e.g. sfence.vma: the mappings may change
                    H.pc = cur
                    return n + 1
                if cur >= page_end:
                    n += 1
                    break
            else:
                n = MAX_INSNS
        except BaseException:
            state[0] = n
            state[1] = cur + length
            raise
        if not n:
            # a SYSTEM or page-straddling instruction first: the interpreter's
            state[0] = 0
            state[1] = cur
            raise StepInstead(cur)
        H.pc = cur
        return n

    return run, LiveIndex(state)
