"""The emitter of the region compiler: Python source for one basic block.

Inside a block, guest registers live in Python locals ``x1``..``x31``
(loaded once at the region's start, stored back only if written), and
loads and stores do the software-TLB hit inline, calling the hart's slow
path on a miss. Runs of loads and stores through one base register share
one TLB lookup (``access_groups``), and so do the other accesses of a
block through a base register that keeps its value (``base_groups``). ``gen_block`` generates a block and
says how it ends (a ``BlockExit``, region.exits); region.build puts the
blocks of a region together, region.loops makes its loops Python loops.
The first tier (emulator.tier1) generates from the same ISA emitters, one
instruction at a time.
"""

from __future__ import annotations

import re
from typing import Dict, List, NamedTuple, Optional, Set, Tuple

from ..bits import M64
from ..codegen import Emitter
from ..context import Ctx
from ..isa import BRANCH, Decoded
from ..memory import NATIVE_VIEWS, PAGE_MASK, VIEW, VIEW_SHIFT
from ..signed import SIGNED_GEN
from .exits import BlockExit, ExitKind
from .facts import W_RANGE, Facts, load_range

CALL = re.compile(r"[\w\]]\(")  # a call in a generated line
PURE = re.compile(r"\w+$")  # a local or an integer: reading it has no effect


def key_mask(size: int) -> int:
    """TLB key mask: the page number plus the low bits a misaligned access
    of ``size`` bytes would set, so misaligned accesses miss and take the
    slow path (which handles page crossing). Negative, so it is a machine
    word on PyPy; on an address below 2**64 it keeps the same bits as the
    unsigned mask."""
    return ~(PAGE_MASK & ~(size - 1))


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
        self.signed_addrs: Set[str] = set()  # temporaries holding signed-form addresses
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
        if self.lazy and ("raise" in line or CALL.search(line.replace("int(", ""))):
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
            if not PURE.match(expr):  # a nop (addi x0, x0, 0) needs no code
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
        if self.signed or self.compat or self.ctx.pmlen:
            return self.ea(rs1, imm)
        r = self.known(rs1)
        if r is not None and r[0] == r[1]:
            # a constant base (lui/auipc then a load or store: a global)
            return str((r[0] + imm) & M64)
        if imm:
            return self.ea(rs1, imm)
        return self.x(rs1)

    def ea(self, rs1: int, imm: int) -> str:
        if not self.signed or self.compat:
            return super().ea(rs1, imm)
        # Signed flavour: the address in signed form too, as the TLBs'
        # keys are (Hart.signed_keys): a kernel's addresses, 2**63 and
        # more unsigned, stay machine words. Only the slow paths (the
        # hart's own accesses) get the unsigned form (``unsigned``).
        t = self.tmp()
        base = self.x(rs1)
        self.emit(f"{t} = IADD({base}, {imm})" if imm else f"{t} = {base}")
        self.mask_pointer(t, signed_form=True)
        self.signed_addrs.add(t)
        return t

    def unsigned(self, addr: str) -> str:
        """``addr`` as the hart's methods take it (canonical unsigned)."""
        return f"({addr} & {M64})" if addr in self.signed_addrs else addr

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
        self.emit(f"{p} = RT.get({addr} & {key_mask(size)})")
        if self.views(size):
            fast = self.view_load(f"{p}[{VIEW[size, signed]}]",
                                  f"({p}[1] + {addr}) >> {VIEW_SHIFT[size]}", size, signed)
        else:
            fast = self.fast_load(f"{p}[0]", f"{p}[1] + {addr}", size, signed, signed_dest)
        # an 8-byte load needs no sign extension: load_u serves ld as well
        slow = (f"H.load_{'s' if signed and size < 8 else 'u'}({self.unsigned(addr)}, {size},"
                f" {self.pc})")
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
        self.emit(f"{p} = WT.get({addr} & {key_mask(size)})")
        slow_value = f"{value} & {M64}" if signed_value and size == 8 else value
        self.emit(f"if {p} is None: H.store({self.unsigned(addr)}, {size}, {slow_value},"
                  f" {self.pc})")
        if self.views(size):
            self.emit(f"else: {p}[{VIEW[size, False]}][({p}[1] + {addr}) >> {VIEW_SHIFT[size]}]"
                      f" = {value}")
            return
        self.emit("else: " + self.fast_store(f"{p}[0]", f"{p}[1] + {addr}", size, value,
                                             signed_value))


# name: (size, signed, store) of the integer loads and stores
_ACCESS = {"lb": (1, True, False), "lh": (2, True, False), "lw": (4, True, False),
           "ld": (8, True, False), "lbu": (1, False, False), "lhu": (2, False, False),
           "lwu": (4, False, False), "sb": (1, False, True), "sh": (2, False, True),
           "sw": (4, False, True), "sd": (8, False, True)}
MIN_GROUP = 3


def access_groups(insns: List[Decoded]) -> List[Tuple[int, int]]:
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


class BaseGroup(NamedTuple):
    """Loads and stores of a block through one base register while it
    keeps its value (not consecutive, of any sizes; see ``base_groups``):
    one TLB lookup, done before the first of them, serves them all when
    they fall in one page."""
    first: int  # index of the first access in the block
    reg: int  # the base register
    lo: int  # the lowest offset
    span: int  # bytes from the lowest address to the last byte accessed, minus one
    align: int  # the largest access size: the base must be aligned to it
    stores: bool  # any store: the write TLB serves them
    # (view index, access size, lowest offset of those accesses) of the views used
    views: Tuple[Tuple[int, int, int], ...]
    bytes: bool  # any byte access (through the buffer itself)


MIN_BASE_GROUP = 2
# Names of instructions that write no integer register although their rd
# field is not zero (the rest is assumed to write x[rd]: a superset is safe)
_NO_RD = {"fence", "fence.i", "sfence.vma", "sinval.vma"}


def base_groups(insns: List[Decoded], taken: Set[int]) -> Dict[int, BaseGroup]:
    """The accesses (by index, outside ``taken``, the indexes of
    access_groups) that share a BaseGroup: at least MIN_BASE_GROUP integer
    loads and stores through one base register with no write to it between
    them, each at an offset aligned to its size (so all are aligned when
    the base is aligned to the largest), within 2 KiB."""
    members: Dict[Tuple[int, int], List[int]] = {}
    version = [0] * 32
    for i, d in enumerate(insns):
        acc = _ACCESS.get(d.insn.name)
        if acc is not None and d.rs1 and i not in taken:
            members.setdefault((d.rs1, version[d.rs1]), []).append(i)
        if acc is not None and acc[2]:
            continue  # a store: its rd field is an offset
        if d.insn.kind != BRANCH and d.rd and d.insn.name not in _NO_RD:
            version[d.rd] += 1
    out: Dict[int, BaseGroup] = {}
    for (reg, _), idx in members.items():
        if len(idx) < MIN_BASE_GROUP:
            continue
        idx = [i for i in idx if insns[i].imm % _ACCESS[insns[i].insn.name][0] == 0]
        if len(idx) < MIN_BASE_GROUP:
            continue
        lo = min(insns[i].imm for i in idx)
        end = max(insns[i].imm + _ACCESS[insns[i].insn.name][0] for i in idx)
        if end - lo > 2048:
            continue
        accs = [_ACCESS[insns[i].insn.name] for i in idx]
        view_lo: Dict[Tuple[int, int], int] = {}
        for i, (size, signed, store) in zip(idx, accs):
            if size > 1:
                k = (VIEW[size, signed and not store], size)
                view_lo[k] = min(view_lo.get(k, insns[i].imm), insns[i].imm)
        views = sorted((k, size, off) for (k, size), off in view_lo.items())
        g = BaseGroup(idx[0], reg, lo, end - lo - 1, max(a[0] for a in accs),
                      any(a[2] for a in accs), tuple(views), any(a[0] == 1 for a in accs))
        for i in idx:
            out[i] = g
    return out


class BlockCode(NamedTuple):
    """One basic block generated: its body, and how control leaves it."""
    lines: List[str]
    next_pc: str  # expression of the successor pc
    self_cond: Optional[str]  # condition under which it branches back to its own start
    rel_next: str  # the successor as an offset in the block's page
    exit: BlockExit


def gen_block(e: BlockEmitter, insns: List[Decoded], index: Dict[int, Tuple[int, int]],
              facts: Optional[Facts] = None) -> BlockCode:
    """One basic block, generated by ``e`` (which accumulates the
    registers the region uses and writes); its instructions' positions go
    into ``index``. ``facts``: bounds of register values known on entry."""
    e.lines = []
    e.cond = e.target = e.jump_expr = None
    e.rng = dict(facts) if facts else {}
    e.blk_read = set()
    e.blk_written = set()
    e.lazy = set()
    for i, d in enumerate(insns):
        index[d.pc] = (i, d.next_pc)
    groups = {} if e.ctx.pmlen else {i: j for i, j in access_groups(insns)}
    hoisted: Dict[int, BaseGroup] = {}
    if not e.ctx.pmlen and not e.signed and NATIVE_VIEWS:
        hoisted = base_groups(insns, {k for i, j in groups.items() for k in range(i, j)})
    pages: Dict[BaseGroup, _Page] = {}
    i = 0
    while i < len(insns):
        if i in groups:
            gen_group(e, insns[i:groups[i]])
            i = groups[i]
            continue
        g = hoisted.get(i)
        if g is not None:
            if g.first == i:
                pages[g] = _Page(e, g)
            pages[g].access(insns[i])
        else:
            gen_insn(e, insns[i])
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
    # How the block ends, for structured loops (see region.loops)
    if e.cond is not None:
        exit_ = BlockExit(ExitKind.BRANCH, e.target, end_pc, e.cond)
    elif e.jump_expr is None:
        exit_ = BlockExit(ExitKind.GO, end_pc)
    elif e.jump_expr.isdigit():
        exit_ = BlockExit(ExitKind.GO, int(e.jump_expr))
    else:
        exit_ = BlockExit(ExitKind.COMPUTED, rel=rel)
    return BlockCode(e.lines, nxt, self_cond, rel, exit_)


def gen_insn(e: BlockEmitter, d: Decoded) -> None:
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


def gen_group(e: BlockEmitter, group: List[Decoded]) -> None:
    """Loads and stores of one size through one base register (see
    ``access_groups``): one TLB lookup for all of them when they fall
    in one page, else each on its own as usual (precise traps)."""
    size = _ACCESS[group[0].insn.name][0]
    stores = any(_ACCESS[d.insn.name][2] for d in group)
    offs = [d.imm for d in group]
    lo, hi = min(offs), max(offs)
    gb, ga, gp, go, buf = e.tmp(), e.tmp(), e.tmp(), e.tmp(), e.tmp()
    e.emit(f"{gb} = {e.x(group[0].rs1)}")
    e.emit(f"{ga} = {gb} + {lo}" if lo else f"{ga} = {gb}")
    table = "WT" if stores else "RT"
    e.emit(f"{gp} = {table}.get({ga} & {key_mask(size)})")
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
        gen_insn(e, d)
    e.indent = e.indent[:-4]


class _Page:
    """The TLB lookup of a BaseGroup, emitted where the group's first
    access is, and its accesses: through typed views of the page's buffer
    (or the buffer itself for bytes) when the lookup found the page and
    the group's bytes are in it, else each the usual way (precise traps)."""

    def __init__(self, e: BlockEmitter, g: BaseGroup) -> None:
        self.e = e
        self.g = g
        self.ok, addr, entry = e.tmp(), e.tmp(), e.tmp()
        base = e.x(g.reg)
        if e.signed:  # the TLBs' keys are signed-form addresses (BlockEmitter.ea)
            e.emit(f"{addr} = IADD({base}, {g.lo})" if g.lo else f"{addr} = {base}")
        else:
            e.emit(f"{addr} = ({base} + {g.lo}) & {M64}" if g.lo else f"{addr} = {base}")
        table = "WT" if g.stores else "RT"
        e.emit(f"{entry} = {table}.get({addr} & -4096)")
        span = f"({addr} ^ ({addr} + {g.span})) & -4096"
        if g.align > 1:
            span = f"({span}) | ({base} & {g.align - 1})"
        e.emit(f"{self.ok} = {entry} is not None and {span} == 0")
        e.emit(f"if {self.ok}:")
        # view index -> (the view, the item index of its lowest offset, that offset)
        self.views: Dict[int, Tuple[str, str, int]] = {}
        for k, size, off in g.views:
            view, index = e.tmp(), e.tmp()
            self.views[k] = (view, index, off)
            e.emit(f"    {view} = {entry}[{k}]")
            at = f"{entry}[1] + {addr} + {off - g.lo}" if off != g.lo else f"{entry}[1] + {addr}"
            e.emit(f"    {index} = ({at}) >> {VIEW_SHIFT[size]}")
        self.buf = self.off = ""
        if g.bytes:
            self.buf, self.off = e.tmp(), e.tmp()
            e.emit(f"    {self.buf} = {entry}[0]")
            e.emit(f"    {self.off} = {entry}[1] + {addr}")

    def access(self, d: Decoded) -> None:
        e = self.e
        size, signed, store = _ACCESS[d.insn.name]
        step = d.imm - self.g.lo
        e.begin(d.pc, d.raw, d.length)
        e.emit(f"if {self.ok}:")
        e.indent += "    "
        if size == 1:
            at = f"{self.off} + {step}" if step else self.off
            if store:
                v = e.x(d.rs2)
                e.emit(e.fast_store(self.buf, at, 1, v if v == "0" else f"{v} & 255"))
            else:
                e.setx(d.rd, e.fast_load(self.buf, at, 1, signed, False))
        else:
            view, index, off = self.views[VIEW[size, signed and not store]]
            step = (d.imm - off) >> VIEW_SHIFT[size]
            at = f"{index} + {step}" if step else index
            if store:
                v = e.x(d.rs2)
                if size < 8 and v != "0":
                    v = f"{v} & {(1 << (8 * size)) - 1}"
                e.emit(f"{view}[{at}] = {v}")
            else:
                e.setx(d.rd, e.view_load(view, at, size, signed))
        if not store and size < 8 and d.rd:
            e.rng[d.rd] = load_range(size, signed)
        e.indent = e.indent[:-4]
        e.emit("else:")
        e.indent += "    "
        gen_insn(e, d)
        e.indent = e.indent[:-4]
