"""The fast engine: translate a run of guest instructions into one Python
function, compiled once and cached per (translation context, pc).

Inside a block, guest registers live in Python locals (loaded once, stored
back only if written), loads and stores do the software-TLB hit inline and
call the hart's slow path on a miss, and a block whose last instruction
branches back to its own start loops inside the function until its
instruction budget runs out. Traps are precise: every exception leaving the
block body first stores the registers back; the hart then works out from
the faulting pc how many instructions retired.

Blocks end before a SYSTEM instruction (the interpreter runs those), after
a branch or jump, at the end of a page, or after MAX_INSNS instructions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List, Optional, Set, Tuple

from .bits import M64
from .codegen import Emitter, compile_function
from .context import Ctx
from .events import Trap
from .interp import generated_globals
from .isa import BRANCH, JUMP, SYSTEM, Decoded, decode
from .memory import PACK, PAGE_MASK, UNPACK

if TYPE_CHECKING:
    from .hart import Hart

MAX_INSNS = 64
NEVER = 1 << 62  # length of the "no block here" marker: always interpreted

_SIGNED = {n: __import__("struct").Struct("<" + f).unpack_from for n, f in ((1, "b"), (2, "h"), (4, "i"))}


def _key_mask(size: int) -> int:
    """TLB key mask: the page number plus the low bits a misaligned access
    of ``size`` bytes would set, so misaligned accesses miss and take the
    slow path (which handles page crossing)."""
    return M64 & ~(PAGE_MASK & ~(size - 1))


class Block:
    __slots__ = ("fn", "length", "index", "pc", "src")

    def __init__(self, fn: object, length: int, index: Dict[int, Tuple[int, int]], pc: int,
                 src: str = "") -> None:
        self.fn = fn
        self.length = length
        self.index = index  # pc -> (position in the block, next pc)
        self.pc = pc
        self.src = src


class BlockEmitter(Emitter):
    """Registers in locals ``x1``..``x31``; inline TLB fast paths."""

    def __init__(self, ctx: Ctx) -> None:
        super().__init__(ctx)
        self.used: Set[int] = set()
        self.written: Set[int] = set()
        self.cond: Optional[str] = None  # condition of a final branch
        self.target: Optional[int] = None  # its target
        self.jump_expr: Optional[str] = None  # target of a final jump

    def x(self, n: int) -> str:
        if not n:
            return "0"
        self.used.add(n)
        return f"x{n}"

    def setx(self, n: int, expr: str) -> None:
        if not n:
            self.emit(f"_ = {expr}")
            return
        self.used.add(n)
        self.written.add(n)
        self.emit(f"x{n} = {expr}")

    def jump(self, target: str) -> None:
        self.jump_expr = target
        self.ended = True

    def branch(self, cond: str, target: int) -> None:
        self.cond = cond
        self.target = target
        self.ended = True

    def load_value(self, addr: str, size: int, signed: bool) -> str:
        t, p = self.tmp(), self.tmp()
        self.emit(f"{p} = RT.get({addr} & {_key_mask(size)})")
        if signed and size < 8:
            fast = f"(S{size}({p}[0], {p}[1] + {addr})[0] & {M64})"
            slow = f"H.load_s({addr}, {size}, {self.pc})"
        else:
            fast = f"{p}[0][{p}[1] + {addr}]" if size == 1 else f"U{size}({p}[0], {p}[1] + {addr})[0]"
            slow = f"H.load_u({addr}, {size}, {self.pc})"
        self.emit(f"{t} = {fast} if {p} is not None else {slow}")
        return t

    def store(self, addr: str, value: str, size: int) -> None:
        p = self.tmp()
        self.emit(f"{p} = WT.get({addr} & {_key_mask(size)})")
        self.emit(f"if {p} is None: H.store({addr}, {size}, {value}, {self.pc})")
        self.emit(f"else: P{size}({p}[0], {p}[1] + {addr}, {value})")


class Translator:
    def __init__(self, hart: Hart) -> None:
        self.h = hart
        glb = generated_globals()
        for n in (1, 2, 4, 8):
            glb[f"U{n}"] = UNPACK[n]
            glb[f"P{n}"] = PACK[n]
        for n, fn in _SIGNED.items():
            glb[f"S{n}"] = fn
        self.glb = glb
        self.blocks_built = 0

    def _decode_run(self, pc: int) -> Tuple[List[Decoded], int]:
        h = self.h
        try:
            buf, delta, ppn = h.fetch_page(pc)
        except Trap as t:
            t.pc = pc
            raise
        page = pc & ~PAGE_MASK
        out: List[Decoded] = []
        cur = pc
        while len(out) < MAX_INSNS:
            off = cur & PAGE_MASK
            lo = UNPACK[2](buf, delta + cur)[0]  # type: ignore[arg-type]
            if lo & 3 == 3:
                if off > PAGE_MASK - 3:
                    break  # straddles the page end: the interpreter fetches it
                raw = UNPACK[4](buf, delta + cur)[0]  # type: ignore[arg-type]
            else:
                raw = lo
            d = decode(raw, cur)
            if d.insn.kind == SYSTEM:
                break
            out.append(d)
            cur = d.next_pc
            if d.insn.kind in (BRANCH, JUMP) or cur & ~PAGE_MASK != page:
                break
        return out, ppn

    def translate(self, pc: int) -> Block:
        h = self.h
        ctx = h.ctx
        insns, ppn = self._decode_run(pc)
        if not insns:
            blk = Block(None, NEVER, {}, pc)
        else:
            blk = self._build(ctx, pc, insns)
        ctx.blocks[pc] = blk
        h.note_code(ctx, pc, ppn)
        self.blocks_built += 1
        return blk

    def _build(self, ctx: Ctx, pc: int, insns: List[Decoded]) -> Block:
        e = BlockEmitter(ctx)
        index: Dict[int, Tuple[int, int]] = {}
        for i, d in enumerate(insns):
            index[d.pc] = (i, d.next_pc)
            e.begin(d.pc, d.raw, d.length)
            d.insn.gen(e, d)
        n = len(insns)
        last = insns[-1]
        end_pc = last.next_pc
        loops = (e.cond is not None and e.target == pc) or (e.jump_expr == str(pc))
        body = e.lines
        out: List[str] = [f"x{r} = X[{r}]" for r in sorted(e.used)]
        wb = [f"X[{r}] = x{r}" for r in sorted(e.written)]
        if loops:
            out.append("n = 0")
            out.append(f"lim2 = lim - {n}")
            out.append("try:")
            out.append("    while True:")
            out.extend("        " + line for line in body)
            out.append(f"        n += {n}")
            if e.cond is not None:
                out.append(f"        if not ({e.cond}):")
                out.append(f"            npc = {end_pc}")
                out.append("            break")
            out.append("        if n > lim2:")
            out.append(f"            npc = {pc}")
            out.append("            break")
            out.append("except BaseException:")
            out.extend("    " + line for line in wb)
            out.append("    H.exc_done = n")
            out.append("    raise")
            out.extend(wb)
            out.append("H.pc = npc")
            out.append("return n")
        else:
            if body:
                out.append("try:")
                out.extend("    " + line for line in body)
                out.append("except BaseException:")
                out.extend("    " + line for line in wb)
                out.append("    raise")
            out.extend(wb)
            if e.cond is not None:
                out.append(f"H.pc = {e.target} if {e.cond} else {end_pc}")
            elif e.jump_expr is not None:
                out.append(f"H.pc = {e.jump_expr}")
            else:
                out.append(f"H.pc = {end_pc}")
            out.append(f"return {n}")
        # The context's TLB dictionaries are bound as default arguments
        # (fast locals); they are only ever cleared, never replaced.
        fn = compile_function("block", "H, X, F, lim, RT=None, WT=None", out, self.glb,
                              f"<block@{pc:#x}>")
        fn.__defaults__ = (ctx.rt, ctx.wt)  # type: ignore[attr-defined]
        return Block(fn, n, index, pc, "\n".join(out))
