"""The fast engine: translate a run of guest instructions into one Python
function, compiled once and cached per (translation context, pc).

Inside a block, guest registers live in Python locals (loaded once, stored
back only if written), loads and stores do the software-TLB hit inline and
call the hart's slow path on a miss. The blocks reachable from an entry
within its page form one region function: natural loops become Python
``while`` loops (nested loops nested, branches inside them ``if``/``else``)
that run until control leaves them or the instruction budget could be
overrun; everything else goes through a dispatcher on the pc. Traps are
precise: every exception leaving the function first stores the registers
back; the hart then works out from the faulting pc how many instructions
retired.

Blocks end before a SYSTEM instruction (the interpreter runs those), after
a branch or jump, at the end of a page, or after MAX_INSNS instructions.
"""

from __future__ import annotations

import platform
import re
import time
import weakref
from types import FunctionType
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Set, Tuple

from . import tier1
from .bits import M64
from .codegen import Emitter, compile_function
from .context import Ctx
from .events import Trap
from .interp import generated_globals
from .isa import BRANCH, JUMP, SYSTEM, Decoded, decode
from .isa.rv64i import fits
from .memory import NATIVE_VIEWS, PAGE_MASK, UNPACK, VIEW, VIEW_SHIFT
from .signed import SIGNED_GEN

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

MAX_INSNS = 64  # per basic block
MAX_BLOCKS = 24  # per region
MAX_REGION_INSNS = 384
# Generated source a hart may hold at once (characters; about ten bytes of
# memory each once compiled), so a guest that runs ever more different code
# cannot grow the host's memory without end. The process holds at most
# PROCESS_CODE of it, split evenly between the live harts (translators),
# each getting at most MAX_HART_CODE and at least MIN_HART_CODE. Past its
# share a hart evicts its least recently used regions until it holds
# LOW_WATER of it (see Translator._make_room); an evicted region is simply
# built again (first tier, then a region) when next entered.
MAX_HART_CODE = 16 << 20
MIN_HART_CODE = 2 << 20
PROCESS_CODE = 64 << 20
LOW_WATER = 0.75
_LIVE: weakref.WeakSet[Translator] = weakref.WeakSet()
NEVER = 1 << 62  # length of the "no block here" marker: always interpreted



def _key_mask(size: int) -> int:
    """TLB key mask: the page number plus the low bits a misaligned access
    of ``size`` bytes would set, so misaligned accesses miss and take the
    slow path (which handles page crossing). Negative, so it is a machine
    word on PyPy; on an address below 2**64 it keeps the same bits as the
    unsigned mask."""
    return ~(PAGE_MASK & ~(size - 1))


class Block:
    __slots__ = ("fn", "length", "index", "pc", "src", "entries", "ppn", "owner")

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

    def span(self) -> Tuple[int, int]:
        """The page offsets [first, end) of the bytes its code was read
        from (what a write must touch to invalidate it)."""
        lo = self.pc & PAGE_MASK
        if not self.index:
            return lo, min(lo + 4, PAGE_MASK + 1)  # a marker: the instruction at pc
        base = self.pc - lo
        lo = min(self.index) - base
        hi = max(n for _, n in self.index.values()) - base
        return lo, hi if lo < hi <= PAGE_MASK + 1 else PAGE_MASK + 1

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


class BlockEmitter(Emitter):
    """Registers in locals ``x1``..``x31``; inline TLB fast paths."""

    def __init__(self, ctx: Ctx, signed: bool = False) -> None:
        super().__init__(ctx)
        self.used: Set[int] = set()
        self.written: Set[int] = set()
        self.cond: Optional[str] = None  # condition of a final branch
        self.target: Optional[int] = None  # its target
        self.jump_expr: Optional[str] = None  # target of a final jump
        # Signed flavour: locals hold signed values; ``compat`` is set while
        # an instruction with only unsigned semantics is generated (it sees
        # unsigned views and its results are converted).
        self.signed = signed
        self.compat = False
        self.rel_next = ""  # the last block's successor as an offset in its page
        self.exit: Tuple[Any, ...] = ()  # how the last block ends (see _gen_block)
        self.rng: Dict[int, Tuple[int, int]] = {}  # known bounds (see known())
        self.blk_read: Set[int] = set()  # registers the block reads before writing them
        # Registers holding a value congruent to theirs modulo 2**64 but not
        # reduced (``-x`` of negw): made canonical when read (except by an
        # AND with a canonical value), before anything that can raise and at
        # the end of the block.
        self.lazy: Set[int] = set()
        self.blk_written: Set[int] = set()

    def x(self, n: int) -> str:
        if not n:
            return "0"
        if n in self.lazy:
            self.reduce([n])
        self.used.add(n)
        if n not in self.blk_written:
            self.blk_read.add(n)
        return f"(x{n} & {M64})" if self.compat else f"x{n}"

    def reduce(self, regs: List[int]) -> None:
        """Make the lazily held ``regs`` canonical here; on the block's own
        path (not inside a branch of it) they stay so."""
        for r in regs:
            self.lines.append(self.indent + f"x{r} &= {M64}")
        if not self.indent:
            self.lazy.difference_update(regs)

    def is_lazy(self, n: int) -> bool:
        return n in self.lazy

    def x_for_and(self, n: int) -> str:
        if n not in self.lazy:
            return self.x(n)
        self.used.add(n)  # written earlier in this block: never a first read
        return f"x{n}"

    def emit(self, line: str) -> None:
        # Registers held in a congruent form become canonical before
        # anything that can raise (the exception path writes them back).
        if self.lazy and ("raise" in line or _CALL.search(line.replace("int(", ""))):
            self.reduce(sorted(self.lazy))
        self.lines.append(self.indent + line)

    def setx_lazy(self, n: int, expr: str, canonical: str, lo: int, hi: int) -> None:
        if self.signed or self.compat or not n:
            super().setx_lazy(n, expr, canonical, lo, hi)
            return
        self.setx_range(n, expr, lo, hi)
        self.lazy.add(n)

    def known(self, n: int) -> Optional[Tuple[int, int]]:
        # Facts hold from a write to the end of its block (blocks are
        # entered only at their start); used by the unsigned flavour only.
        if not n:
            return (0, 0)
        return None if self.signed else self.rng.get(n)

    def setx(self, n: int, expr: str) -> None:
        if not n:
            self.emit(f"_ = {expr}")
            return
        self.used.add(n)
        self.written.add(n)
        self.blk_written.add(n)
        self.rng.pop(n, None)
        self.lazy.discard(n)
        if expr == f"x{n}" and not self.compat:
            return  # sext.w of a sign-extended value, mv to itself
        self.emit(f"x{n} = SX({expr})" if self.compat else f"x{n} = {expr}")

    def setx_range(self, n: int, expr: str, lo: int, hi: int) -> None:
        self.setx(n, expr)
        if n and not self.signed:
            self.rng[n] = (lo, hi)

    def setx_w(self, n: int, expr: str) -> None:
        if not self.signed or not n:
            super().setx_w(n, expr)
            if n:
                self.rng[n] = W_RANGE
            return
        self.used.add(n)
        self.written.add(n)
        self.blk_written.add(n)
        self.emit(f"x{n} = ((({expr}) & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000")

    def ea_direct(self, rs1: int, imm: int) -> str:
        # A register as it is serves as the address of an integer load or
        # store (used before the load writes its destination).
        if imm or self.signed or self.compat or self.ctx.pmlen:
            return self.ea(rs1, imm)
        return self.x(rs1)

    def ea(self, rs1: int, imm: int) -> str:
        if not self.signed or self.compat:
            return super().ea(rs1, imm)
        # signed base: the address itself is unsigned
        t = self.tmp()
        base = self.x(rs1)
        self.emit(f"{t} = {base} + {imm}" if imm else f"{t} = {base}")
        self.emit(f"if {t} < 0: {t} += {1 << 64}")
        self.mask_pointer(t)
        return t

    def jump(self, target: str) -> None:
        self.jump_expr = target
        self.ended = True

    def branch(self, cond: str, target: int) -> None:
        self.cond = cond
        self.target = target
        self.ended = True

    @staticmethod
    def fast_load(buf: str, off: str, size: int, signed: bool, signed_dest: bool) -> str:
        """The value at offset ``off`` of host buffer ``buf``: canonical
        unsigned, or for ``signed_dest`` a signed-flavour register value."""
        if signed_dest:
            if signed:
                return f"S{size}({buf}, {off})[0]"
            # struct reads of the mmap compile to one machine load on PyPy;
            # mmap indexing is a call there
            value = f"U{size}({buf}, {off})[0]"
            return f"SX({value})" if size == 8 else value
        if signed and size < 8:
            return f"(S{size}({buf}, {off})[0] & {M64})"
        return f"{buf}[{off}]" if size == 1 else f"U{size}({buf}, {off})[0]"

    def fast_store(self, buf: str, off: str, size: int, value: str,
                   signed_value: bool = False) -> str:
        """The statement storing ``value`` (already reduced to ``size``
        bytes, or a signed-flavour 64-bit value) at ``off`` of ``buf``."""
        if signed_value and size == 8:
            return f"P8S({buf}, {off}, {value})"
        if size == 1 and not self.signed:
            # CPython: mmap item assignment is about twice as fast as a
            # struct call (on PyPy it is the other way round)
            return f"{buf}[{off}] = {value}"
        return f"P{size}({buf}, {off}, {value})"

    def views(self, size: int) -> bool:
        """Whether accesses of ``size`` bytes go through typed views of the
        buffer (CPython flavour: an item of a view needs no call)."""
        return size > 1 and not self.signed and NATIVE_VIEWS

    @staticmethod
    def view_load(view: str, index: str, size: int, signed: bool) -> str:
        value = f"{view}[{index}]"
        return f"({value} & {M64})" if signed and size < 8 else value

    def _load_into(self, dest: str, addr: str, size: int, signed: bool,
                   signed_dest: bool = False) -> None:
        p = self.tmp()
        self.emit(f"{p} = RT.get({addr} & {_key_mask(size)})")
        if self.views(size):
            fast = self.view_load(f"{p}[{VIEW[size, signed]}]",
                                  f"({p}[1] + {addr}) >> {VIEW_SHIFT[size]}", size, signed)
        else:
            fast = self.fast_load(f"{p}[0]", f"{p}[1] + {addr}", size, signed, signed_dest)
        # an 8-byte load needs no sign extension: load_u serves ld as well
        slow = f"H.load_{'s' if signed and size < 8 else 'u'}({addr}, {size}, {self.pc})"
        if signed_dest:
            slow = f"SX({slow})"
        self.emit(f"{dest} = {fast} if {p} is not None else {slow}")

    def load_value(self, addr: str, size: int, signed: bool) -> str:
        t = self.tmp()
        self._load_into(t, addr, size, signed)
        return t

    def load(self, rd: int, addr: str, size: int, signed: bool) -> None:
        if not rd:
            self.load_value(addr, size, signed)
            return
        self.used.add(rd)
        self.written.add(rd)
        self.blk_written.add(rd)
        self._load_into(f"x{rd}", addr, size, signed, self.signed)
        self.lazy.discard(rd)
        self.rng.pop(rd, None)
        if size < 8 and not self.signed:
            self.rng[rd] = load_range(size, signed)

    def store(self, addr: str, value: str, size: int, signed_value: bool = False) -> None:
        """``signed_value``: ``value`` is a signed-flavour 64-bit value."""
        p = self.tmp()
        self.emit(f"{p} = WT.get({addr} & {_key_mask(size)})")
        slow_value = f"{value} & {M64}" if signed_value and size == 8 else value
        self.emit(f"if {p} is None: H.store({addr}, {size}, {slow_value}, {self.pc})")
        if self.views(size):
            self.emit(f"else: {p}[{VIEW[size, False]}][({p}[1] + {addr}) >> {VIEW_SHIFT[size]}]"
                      f" = {value}")
            return
        self.emit("else: " + self.fast_store(f"{p}[0]", f"{p}[1] + {addr}", size, value,
                                             signed_value))


W_RANGE = (-(1 << 31), (1 << 31) - 1)  # a sign-extended 32-bit value


def load_range(size: int, signed: bool) -> Tuple[int, int]:
    """Bounds of the value a load of ``size`` < 8 bytes gives."""
    bits = 8 * size
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def _static_targets(d: Decoded) -> Tuple[int, ...]:
    kind = d.insn.kind
    if kind == BRANCH or (kind == JUMP and d.insn.name == "jal"):
        return ((d.pc + d.imm) & M64,)
    return ()


# name: (size, signed, store) of the integer loads and stores
_ACCESS = {"lb": (1, True, False), "lh": (2, True, False), "lw": (4, True, False),
           "ld": (8, True, False), "lbu": (1, False, False), "lhu": (2, False, False),
           "lwu": (4, False, False), "sb": (1, False, True), "sh": (2, False, True),
           "sw": (4, False, True), "sd": (8, False, True)}
MIN_GROUP = 3


def _access_groups(insns: List[Decoded]) -> List[Tuple[int, int]]:
    """Index ranges [i, j) of consecutive integer loads and stores of one
    size through one base register (a stack frame saved or restored,
    fields of one structure) whose offsets keep one alignment, so that one
    TLB lookup can serve them all. A load that overwrites the base ends its
    group."""
    out = []
    i = 0
    while i < len(insns):
        first = insns[i]
        acc = _ACCESS.get(first.insn.name)
        if acc is None or first.rs1 == 0:
            i += 1
            continue
        j = i
        while j < len(insns):
            d = insns[j]
            a = _ACCESS.get(d.insn.name)
            if a is None or a[0] != acc[0] or d.rs1 != first.rs1 or (d.imm - first.imm) % acc[0]:
                break
            j += 1
            if not a[2] and d.rd == first.rs1:
                break
        if j - i >= MIN_GROUP:
            out.append((i, j))
        i = max(j, i + 1)
    return out


class _Unstructured(Exception):
    """A loop that does not map onto Python control flow (or would grow
    too large doing so): its blocks keep going through the dispatcher."""


_SINK = -1  # the end of every path in a loop body: back edge or exit
UNROLL = 4  # copies of a one-block loop's block per lap (CPython)
UNROLL_INSNS = 32  # ... as long as they come to at most this many instructions
_CALL = re.compile(r"[\w\]]\(")  # a call in a generated line
_TEMP = re.compile(r"\bt\d+\b")


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


def _shape(lines: List[str], exit_: Tuple[Any, ...]) -> Tuple[str, Tuple[Any, ...]]:
    """Generated code compared up to the names of its temporaries."""
    return _TEMP.sub("t", "\n".join(lines)), exit_


class _Structurer:
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
                 exits: Dict[int, Tuple[Any, ...]], base: int, prefix: Optional[int],
                 specialise: Optional[Callable[..., Any]] = None, unroll: int = 1,
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
            targets = [ex[2], ex[3]] if ex[0] == "br" else [ex[1]] if ex[0] == "go" else []
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
        self._facts: Dict[int, Any] = {}  # head -> _loop_facts(its loop)

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

    # -- loop facts ------------------------------------------------------------
    def _loop_facts(self, lp: _Loop) -> Optional[Tuple[Dict[int, Tuple[int, int]], List[str],
                                                       Tuple[Any, ...]]]:
        """For a one-block loop: bounds of the registers it reads that hold
        on every lap if they hold on entry, with the block generated
        knowing them; None if there are none worth a guard.

        The guess: a register the loop writes is a positive 32-bit counter,
        one it only reads a sign-extended 32-bit value; laps through the
        block then widen to the sign-extended 32-bit range, or drop, what
        its back edge does not keep within the guess, and facts that do not
        change the code are left out of the guard (a pointer the loop reads
        would make the guard fail every time)."""
        if self.specialise is None or len(lp.body) != 1:
            return None
        head = lp.head
        ex = self.exits[head]
        if ex[0] != "br" or ex[2] != head or ex[3] == head:
            return None  # only loops closed by a conditional branch back to their start
        plain, _, _, read, written = self.specialise(head, {})
        guess: Dict[int, Tuple[int, int]] = {}
        for r in read:
            # a counter? the laps below settle it
            guess[r] = (1, W_RANGE[1]) if r in written else W_RANGE
        settled = self._settle(head, guess)
        if settled is None:
            return None
        guess, lines, exit_ = settled
        # keep only the facts that change the code (each is a test on entry)
        shape = _shape(lines, exit_)
        if shape == _shape(plain, self.exits[head]):
            return None
        for r in sorted(guess):
            fewer = {k: v for k, v in guess.items() if k != r}
            again = self._settle(head, fewer, 1) if fewer else None
            if again is not None and _shape(again[1], again[2]) == shape:
                guess = again[0]
        return guess, lines, exit_

    def _settle(self, head: int, guess: Dict[int, Tuple[int, int]], laps: int = 4) -> Optional[
            Tuple[Dict[int, Tuple[int, int]], List[str], Tuple[Any, ...]]]:
        """Laps of the one-block loop at ``head`` from the facts ``guess``
        until they hold again on its back edge: those facts, the block
        generated knowing them and its exit; None if nothing is left."""
        assert self.specialise is not None
        last = self.blocks[head][-1]
        for _ in range(laps):
            if not guess:
                return None
            lines, exit_, end, _, written = self.specialise(head, guess)
            # the back edge is the branch taken: after a bne against x0 the
            # register is not zero there
            back = dict(end)
            zero_tested = last.rs1 if last.rs2 == 0 else last.rs2 if last.rs1 == 0 else 0
            if last.insn.name == "bne" and zero_tested in back:
                lo, hi = back[zero_tested]
                back[zero_tested] = (1 if lo == 0 else lo, -1 if hi == 0 else hi)
            keep = {}
            for r, (lo, hi) in guess.items():
                got = back.get(r) if r in written else (lo, hi)
                if got is not None and lo <= got[0] and got[1] <= hi:
                    keep[r] = (lo, hi)
                elif got is not None and fits(got) and (lo, hi) != W_RANGE:
                    keep[r] = W_RANGE  # widen once
            if keep == guess:
                return guess, lines, exit_
            guess = keep
        return None

    @staticmethod
    def _guard(facts: Dict[int, Tuple[int, int]]) -> str:
        """A test that the register locals are within ``facts``."""
        tests = []
        for r, (lo, hi) in sorted(facts.items()):
            if lo >= 0:
                tests.append(f"{lo} <= x{r} <= {hi}")
            else:
                tests.append(f"(x{r} + {-lo}) & {M64} <= {hi - lo}")
        return " and ".join(tests)

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
            out.append(ind + f"if {self._guard(facts)}:")
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
        if (self.unroll < 2 or lp.children or ex[0] != "br" or ex[2] != head
                or ex[3] == head):
            return False
        _, cond, _, fall = ex
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
        quiet = not any(_CALL.search(line.replace("int(", "")) or "raise" in line
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
            ex = self.exits[v]
            targets = [ex[2], ex[3]] if ex[0] == "br" else [ex[1]] if ex[0] == "go" else []
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
                if ex[0] == "dyn":
                    out.append(ind + f"pc = {ex[1]}")
                    out.append(ind + "break")
                    break
                if ex[0] == "go":
                    if not inner(ex[1]):
                        term(ex[1], ind)
                        break
                    v = node.get(ex[1], ex[1])
                    continue
                _, cond, taken, fall = ex
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


class Translator:
    def __init__(self, hart: Hart) -> None:
        self.h = hart
        self.glb = generated_globals()
        self.signed = SIGNED_LOCALS
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
        # cost of translating (discovery, code generation, compile()),
        # in seconds: cheap counters a benchmark reads (bench_boot)
        self.translate_seconds = 0.0
        self.insns_translated = 0
        # the first tier (emulator.tier1): entries before a region is built
        self.hot_after = tier1.HOT_AFTER
        self.tier1_views = not ON_PYPY
        self.live_pages = True  # rewritten pages run live blocks (tier1.make_live_runner)
        self.tier1_built = 0
        self.tier1_insns = 0
        self.tier1_seconds = 0.0

    # -- discovery ----------------------------------------------------------
    def _discover(self, entry: int) -> Tuple[Dict[int, List[Decoded]], int, int]:
        """The basic blocks reachable from ``entry`` through direct branches
        and jumps inside its page: {leader pc: instructions}, the page's
        physical page number, and the code-write count when it was marked
        as a code page (Hart.mark_code_page), before it was read."""
        h = self.h
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

        def add_leader(pc: int) -> None:
            nonlocal entry_targeted
            if pc == entry:
                entry_targeted = True
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
                    add_leader(cur)
        # An entry in the middle of a loop (a run resumed after an exit or
        # an interrupt) must not split the loop's block in two: unless
        # something else jumps there, the entry starts a prefix block that
        # runs once, and the other blocks run straight through it.
        blocks = self._form_blocks(leaders, leader_set if entry_targeted
                                   else leader_set - {entry}, insn_at)
        if not entry_targeted and entry in blocks:
            last = blocks[entry][-1].pc
            for leader, run in blocks.items():
                if leader != entry and any(d.pc == entry for d in run) and run[-1].pc != last:
                    # The block through the entry stops short of the
                    # prefix's end (its size cap): split it at the entry.
                    blocks = self._form_blocks(leaders, leader_set, insn_at)
                    break
        return blocks, ppn, since

    @staticmethod
    def _form_blocks(leaders: List[int], stops: Set[int],
                     insn_at: Dict[int, Decoded]) -> Dict[int, List[Decoded]]:
        blocks: Dict[int, List[Decoded]] = {}
        for leader in leaders:
            run: List[Decoded] = []
            cur = leader
            while cur in insn_at and len(run) < MAX_INSNS:
                d = insn_at[cur]
                run.append(d)
                if d.insn.kind in (BRANCH, JUMP):
                    break
                cur = d.next_pc
                if cur in stops:
                    break
            if run:
                blocks[leader] = run
        return blocks

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
            ppn = inner[1]
            if region in self.held:
                blk = region.entered_at(pc)
                ctx.blocks[pc] = blk
                h.note_code(ctx, pc, ppn, *blk.span())
                self.touch(region)
                return blk
            del ctx.inner[pc]  # the region's code was dropped since
        if self.hot_after:
            t0 = time.process_time()
            try:
                first = self._first_tier(ctx, pc)
            finally:
                self.tier1_seconds += time.process_time() - t0
            if first is not None:
                return first
        t0 = time.process_time()
        try:
            return self._translate_new(ctx, pc)
        finally:
            self.translate_seconds += time.process_time() - t0

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
            fn, live_index = tier1.make_live_runner(ctx, pc, self.tier1_views, self.glb, buf,
                                                    delta)
            blk = Block(fn, tier1.MAX_INSNS, live_index, pc)  # type: ignore[arg-type]
            blk.ppn = ppn
            ctx.blocks[pc] = blk
            ctx.add_code(pc)
            self.tier1_built += 1
            return blk
        since = h.mark_code_page(ppn)
        body, term, end, index = tier1.straight_run(h, ctx, pc, self.tier1_views, self.glb,
                                                    buf, delta)
        if index:
            ref: List[Any] = [None]
            fn = tier1.make_runner(body, term, end, len(index), ctx, pc,
                                   0 if smc else self.hot_after, ref)
            blk = ref[0] = Block(fn, len(index), index, pc)
        else:
            blk = Block(None, NEVER, {}, pc)  # the interpreter's (a SYSTEM instruction)
        blk.ppn = ppn
        if not h.code_unchanged(since):
            return blk  # see _translate_new
        ctx.blocks[pc] = blk
        h.note_code(ctx, pc, ppn, *blk.span())
        self.tier1_built += 1
        self.tier1_insns += len(index)
        return blk

    def _translate_new(self, ctx: Ctx, pc: int) -> Block:
        h = self.h
        blocks, ppn, since = self._discover(pc)
        if pc not in blocks:
            blk = Block(None, NEVER, {}, pc)
        else:
            try:
                blk = self._build(ctx, pc, blocks)
            except (SyntaxError, RecursionError, MemoryError):
                # Python's own limits (nesting of loops and indentation in
                # the compiler): the region again with its loops left to the
                # dispatcher, which nests nothing deeper than its search tree.
                blk = self._build(ctx, pc, blocks, structured=False)
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
        h.note_code(ctx, pc, ppn, *blk.span())
        if blk.fn is not None:
            blk.owner = blk
            self.held[blk] = ctx
            self.code_chars += len(blk.src)
            for leader in blk.entries:
                ctx.inner[leader] = (blk, ppn)  # the newest region: still live
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

    def evict(self, region: Block, ctx: Ctx, budget: bool) -> None:
        """Drop ``region`` and every index naming it or an alias of it
        (block caches, set-aside blocks, inner leaders, the pages' code
        lists of the hart): nothing can enter it again. ``budget``: counted
        as an eviction (else it was invalidated)."""
        if self.held.pop(region, None) is None:
            return
        size = len(region.src)
        self.code_chars -= size
        if budget:
            self.evictions += 1
            self.chars_evicted += size
        gone = []
        for pc in (region.pc, *region.entries):
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
        pcs = ctx.vcode.get(region.pc & ~PAGE_MASK)
        if pcs is not None:
            for pc in gone:
                if pc not in ctx.blocks and pc not in ctx.suspect and pc not in ctx.insns:
                    pcs.discard(pc)
        self.h.forget_code(ctx, region.ppn, gone)

    def close(self) -> None:
        """The hart is gone: its share returns to the others."""
        _LIVE.discard(self)

    def drop_held(self) -> None:
        """Every region was dropped with the block caches (flush_code)."""
        self.held.clear()
        self.code_chars = 0
        self._window = False

    # -- code generation ----------------------------------------------------
    def _gen_block(self, e: BlockEmitter, insns: List[Decoded],
                   index: Dict[int, Tuple[int, int]],
                   facts: Optional[Dict[int, Tuple[int, int]]] = None,
                   ) -> Tuple[List[str], str, Optional[str]]:
        """Body lines of one basic block, the expression of its successor pc,
        and the condition under which it branches back to its own start.
        ``facts``: bounds of register values known on entry."""
        e.lines = []
        e.cond = e.target = e.jump_expr = None
        e.rng = dict(facts) if facts else {}
        e.blk_read = set()
        e.blk_written = set()
        e.lazy = set()
        for i, d in enumerate(insns):
            index[d.pc] = (i, d.next_pc)
        groups = {} if e.ctx.pmlen else {i: j for i, j in _access_groups(insns)}
        i = 0
        while i < len(insns):
            if i in groups:
                self._gen_group(e, insns[i:groups[i]])
                i = groups[i]
                continue
            self._gen_insn(e, insns[i])
            i += 1
        e.reduce(sorted(e.lazy))  # the block ends with every register canonical
        e.lazy = set()
        end_pc = insns[-1].next_pc
        start = insns[0].pc
        base = start & ~PAGE_MASK
        self_cond = None
        if e.cond is not None:
            assert e.target is not None
            nxt = f"{e.target} if {e.cond} else {end_pc}"
            rel = f"{e.target - base} if {e.cond} else {end_pc - base}"
            if e.target == start and end_pc != start:
                self_cond = e.cond
        elif e.jump_expr is not None:
            nxt = e.jump_expr
            rel = str(int(nxt) - base) if nxt.isdigit() else f"{nxt} - {base}"
            if nxt == str(start):
                self_cond = "True"
        else:
            nxt = str(end_pc)
            rel = str(end_pc - base)
        e.rel_next = rel
        # How the block ends, for structured loops (see _Structurer)
        if e.cond is not None:
            e.exit = ("br", e.cond, e.target, end_pc)
        elif e.jump_expr is None:
            e.exit = ("go", end_pc)
        elif e.jump_expr.isdigit():
            e.exit = ("go", int(e.jump_expr))
        else:
            e.exit = ("dyn", rel)
        return e.lines, nxt, self_cond

    @staticmethod
    def _gen_insn(e: BlockEmitter, d: Decoded) -> None:
        e.begin(d.pc, d.raw, d.length)
        if e.signed:
            gen = SIGNED_GEN.get(d.insn.name)
            if gen is None:
                e.compat = True
                d.insn.gen(e, d)
                e.compat = False
            else:
                gen(e, d)
        else:
            d.insn.gen(e, d)

    def _gen_group(self, e: BlockEmitter, group: List[Decoded]) -> None:
        """Loads and stores of one size through one base register (see
        ``_access_groups``): one TLB lookup for all of them when they fall
        in one page, else each on its own as usual (precise traps)."""
        size = _ACCESS[group[0].insn.name][0]
        stores = any(_ACCESS[d.insn.name][2] for d in group)
        offs = [d.imm for d in group]
        lo, hi = min(offs), max(offs)
        gb, ga, gp, go, buf = e.tmp(), e.tmp(), e.tmp(), e.tmp(), e.tmp()
        e.emit(f"{gb} = {e.x(group[0].rs1)}")
        e.emit(f"{ga} = {gb} + {lo}" if lo else f"{ga} = {gb}")
        table = "WT" if stores else "RT"
        e.emit(f"{gp} = {table}.get({ga} & {_key_mask(size)})")
        e.emit(f"if {gp} is not None and ({ga} ^ ({gb} + {hi})) & -4096 == 0:")
        e.indent += "    "
        views = e.views(size)
        if views:
            # item indexes in the typed views: the first address's, then
            # steps of whole items (the offsets keep one alignment)
            shift = VIEW_SHIFT[size]
            names = {}
            for d in group:
                _, signed, store = _ACCESS[d.insn.name]
                k = VIEW[size, signed and not store]
                if k not in names:
                    names[k] = e.tmp()
                    e.emit(f"{names[k]} = {gp}[{k}]")
            e.emit(f"{go} = ({gp}[1] + {ga}) >> {shift}")
        else:
            e.emit(f"{buf}, {go} = {gp}[0], {gp}[1]")
            e.emit(f"{go} += {gb}")
        for d in group:
            e.begin(d.pc, d.raw, d.length)
            _, signed, store = _ACCESS[d.insn.name]
            if views:
                step = (d.imm - lo) >> shift
                at = f"{go} + {step}" if step else go
                view = names[VIEW[size, signed and not store]]
            else:
                at = f"{go} + {d.imm}" if d.imm else go
            if store:
                v = e.x(d.rs2)
                if size < 8 and v != "0":
                    v = f"{v} & {(1 << (8 * size)) - 1}"
                if views:
                    e.emit(f"{view}[{at}] = {v}")
                else:
                    e.emit(e.fast_store(buf, at, size, v, e.signed and v != "0"))
            elif views:
                e.setx(d.rd, e.view_load(view, at, size, signed))
            else:
                e.setx(d.rd, e.fast_load(buf, at, size, signed, e.signed))
                if size < 8 and d.rd and not e.signed:
                    e.rng[d.rd] = load_range(size, signed)
        e.indent = e.indent[:-4]
        e.emit("else:")
        e.indent += "    "
        for d in group:
            self._gen_insn(e, d)
        e.indent = e.indent[:-4]

    def _build(self, ctx: Ctx, entry: int, blocks: Dict[int, List[Decoded]],
               structured: bool = True) -> Block:
        e = BlockEmitter(ctx, self.signed)
        index: Dict[int, Tuple[int, int]] = {}
        bodies = {}
        rel_next: Dict[int, str] = {}
        exits: Dict[int, Tuple[Any, ...]] = {}
        for pc, insns in blocks.items():
            bodies[pc] = self._gen_block(e, insns, index)
            rel_next[pc] = e.rel_next
            exits[pc] = e.exit
        if self.signed:
            out: List[str] = [f"x{r} = SX(X[{r}])" for r in sorted(e.used)]
            wb = [f"X[{r}] = x{r} & {M64}" for r in sorted(e.written)]
        else:
            out = [f"x{r} = X[{r}]" for r in sorted(e.used)]
            wb = [f"X[{r}] = x{r}" for r in sorted(e.written)]
        body, nxt, self_cond = bodies[entry]
        n_entry = len(blocks[entry])
        if len(blocks) == 1 and self_cond is None and str(entry) not in nxt.split():
            # One straight block that does not come back to itself.
            if body:
                out.append("try:")
                out.extend("    " + line for line in body)
                out.append("except BaseException:")
                out.extend("    " + line for line in wb)
                out.append("    raise")
            out.extend(wb)
            out.append(f"H.pc = {nxt}")
            out.append(f"return {n_entry}")
            return self._finish(ctx, entry, out, n_entry, index)
        total = sum(len(insns) for insns in blocks.values())
        # A prefix entry block (see _discover) repeats the tail of the block
        # that runs through it, whose positions are in ``index`` (generated
        # later, they overwrite the prefix's). Counting the prefix from that
        # block's start (``n`` begins at -skip) keeps trap accounting exact.
        skip = 0
        prefix: Optional[int] = None
        for leader, insns in blocks.items():
            if leader != entry:
                for k, d in enumerate(insns):
                    if d.pc == entry:
                        skip, prefix = k, entry
        back_edges = [(t, insns[-1].pc) for insns in blocks.values()
                      for t in _static_targets(insns[-1]) if t <= insns[-1].pc]
        back_targets = {t for t, _ in back_edges}
        # Region: the blocks in a dispatch loop that runs until control
        # leaves the region or the budget could be overrun. Along forward
        # edges each block runs at most once, so the budget is checked only
        # after backward or computed transfers, with ``total`` instructions
        # of slack.
        # pc: an offset in the region's page (small integers compare fastest);
        # the region starts at its entry or, through ``P``, at another leader
        base = entry & ~PAGE_MASK
        out.append(f"n = {-skip} if P == {entry - base} else 0" if skip else "n = 0")
        lim_at = len(out)
        out.append(f"lim2 = lim - {total}")
        out.append("pc = P")
        out.append("try:")
        out.append("    while True:")
        # Dispatch: blocks of the innermost loops first in a linear chain,
        # then a binary search over the remaining block addresses.
        depth = {pc: sum(1 for lo, hi in back_edges if lo <= pc <= hi) for pc in bodies}
        deepest = max(depth.values())
        hot = sorted((pc for pc in bodies if deepest and depth[pc] == deepest and pc != prefix),
                     key=lambda pc: (pc not in back_targets, pc))[:4]
        rest = sorted(pc for pc in bodies if pc not in hot)

        def specialise(pc: int, facts: Dict[int, Tuple[int, int]]) -> Tuple[
                List[str], Tuple[Any, ...], Dict[int, Tuple[int, int]], Set[int], Set[int]]:
            """The block at ``pc`` generated with ``facts`` known on entry:
            lines, exit, facts at its end, registers read first, written."""
            lines = self._gen_block(e, blocks[pc], index, facts)[0]
            return lines, e.exit, dict(e.rng), set(e.blk_read), set(e.blk_written)

        loops = _Structurer(blocks, {pc: b[0] for pc, b in bodies.items()}, exits, base, prefix,
                            None if self.signed else specialise,
                            1 if self.signed else UNROLL, self.nested)

        def arm(pc: int, ind: str) -> None:
            body, nxt, self_cond = bodies[pc]
            length = len(blocks[pc])
            if pc != prefix and structured:
                code = loops.loop_code(pc)
                if code is not None:
                    # A loop header: the whole loop, nested loops and
                    # branches inside it as Python control flow.
                    out.extend(ind + line for line in code)
                    out.append(ind + "if n > lim2:")
                    out.append(ind + "    break")
                    return
            out.extend(ind + line for line in body)
            out.append(ind + f"n += {length + skip if pc == prefix else length}")
            out.append(ind + f"pc = {rel_next[pc]}")
            targets = _static_targets(blocks[pc][-1])
            computed = blocks[pc][-1].insn.kind == JUMP and not targets
            if computed or any(t <= pc for t in targets):
                out.append(ind + "if n > lim2:")
                out.append(ind + "    break")

        def tree(pcs: List[int], ind: str) -> None:
            if len(pcs) <= 3:
                for k, pc in enumerate(pcs):
                    out.append(ind + f"{'if' if k == 0 else 'elif'} pc == {pc - base}:")
                    arm(pc, ind + "    ")
                out.append(ind + "else:")
                out.append(ind + "    break")
                return
            mid = pcs[len(pcs) // 2]
            out.append(ind + f"if pc < {mid - base}:")
            tree(pcs[:len(pcs) // 2], ind + "    ")
            out.append(ind + "else:")
            tree(pcs[len(pcs) // 2:], ind + "    ")

        ind = "        "
        for k, pc in enumerate(hot):
            out.append(ind + f"{'if' if k == 0 else 'elif'} pc == {pc - base}:")
            arm(pc, ind + "    ")
        if hot:
            out.append(ind + "else:")
            ind += "    "
        if rest:
            tree(rest, ind)
        else:
            out.append(ind + "break")
        out.append("except BaseException:")
        out.extend("    " + line for line in wb)
        out.append("    H.exc_done = n")
        out.append("    raise")
        out.extend(wb)
        out.append(f"H.pc = pc + {base}")
        out.append("return n")
        if loops.extra:
            # unrolled loops run up to ``extra`` more between budget checks
            total += loops.extra
            out[lim_at] = f"lim2 = lim - {total}"
        entries = tuple(pc for pc in blocks if pc != entry and pc != prefix)
        return self._finish(ctx, entry, out, total, index, entries)

    def _finish(self, ctx: Ctx, entry: int, lines: List[str], length: int,
                index: Dict[int, Tuple[int, int]], entries: Tuple[int, ...] = ()) -> Block:
        # The context's TLB dictionaries are bound as default arguments
        # (fast locals); they are only ever cleared, never replaced.
        fn = compile_function("block", "H, X, F, lim, RT=None, WT=None, P=0", lines, self.glb,
                              f"<block@{entry:#x}>")
        fn.__defaults__ = (ctx.rt, ctx.wt, entry & PAGE_MASK)  # type: ignore[attr-defined]
        return Block(fn, length, index, entry, "\n".join(lines), entries)
