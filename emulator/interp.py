"""The reference engine: one instruction at a time.

Each instruction is decoded once per address and its semantics compiled
once (with registers in the hart's list and every memory access through
the hart's slow path), then reused until its code page is written.
"""

from __future__ import annotations

import struct
import types
from typing import TYPE_CHECKING, Callable, Dict, List, Tuple

from . import tier1
from .bits import M64
from .codegen import ListEmitter, compile_function
from .events import CodeModified, GuestExit, Trap
from .helpers import GLOBALS as HELPERS
from .isa import GEN_GLOBALS, SYSTEM, Decoded, decode
from .isa.priv import in_block
from .memory import PACK, UNPACK
from .signed import SIGNED_GLOBALS

if TYPE_CHECKING:
    from .hart import Hart

# (function(H, X, F), the instruction, whether it may change the translation
# context or make an interrupt pending: a SYSTEM instruction translated code
# may not run itself, isa.priv.in_block)
Entry = Tuple[Callable[..., None], Decoded, bool]


_SHARED: List[Dict[str, object]] = []
_SIGNED_LOADS = {n: struct.Struct("<" + f).unpack_from for n, f in ((1, "b"), (2, "h"), (4, "i"))}


def generated_globals() -> Dict[str, object]:
    """The namespace of all generated code, one per process: the
    ``__dict__`` of a module object, not a plain dict, because PyPy's JIT
    turns global lookups in a module's namespace into constants (in a plain
    dict each one would be a string-keyed lookup on every use); shared, so
    code compiled once (see ``compile_function``) is reused by every hart.
    Everything in it is immutable: integers, classes and pure functions."""
    if not _SHARED:
        g: Dict[str, object] = types.ModuleType("rvkvm_generated").__dict__
        g.update({"M64": M64, "Trap": Trap, "__builtins__": __builtins__})
        g.update(HELPERS)
        g.update(GEN_GLOBALS)
        for n in (1, 2, 4, 8):
            g[f"U{n}"] = UNPACK[n]
            g[f"P{n}"] = PACK[n]
        for n, fn in _SIGNED_LOADS.items():
            g[f"S{n}"] = fn
        g.update(SIGNED_GLOBALS)
        _SHARED.append(g)
    return _SHARED[0]


def insn_lines(d: Decoded, ctx: object) -> List[str]:
    """The reference semantics of ``d`` as lines of a function(H, X, F)
    body, setting H.pc."""
    e = ListEmitter(ctx)  # type: ignore[arg-type]
    e.begin(d.pc, d.raw, d.length)
    e.pc = d.pc  # the address as given (tier1.SymPC: a parameter)
    d.insn.gen(e, d)
    if not e.ended:
        e.emit(f"H.pc = {d.next_pc}")
    return e.lines or ["pass"]


def compile_insn(d: Decoded, ctx: object, glb: Dict[str, object],
                 params: str = "H, X, F") -> Callable[..., None]:
    return compile_function("insn", params, insn_lines(d, ctx), glb,
                            f"<{d.insn.name}@{d.pc:#x}>")  # type: ignore[return-value]


class Interpreter:
    def __init__(self, hart: Hart) -> None:
        self.h = hart
        self.glb = generated_globals()

    def entry(self, pc: int) -> Entry:
        h = self.h
        ctx = h.ctx
        e = ctx.insns.get(pc)
        if e is not None:
            return e  # type: ignore[return-value]
        try:
            ppn = h.fetch_page(pc)[2]
            # (fast engine) a page rewritten often runs live blocks
            # (emulator.tier1): nothing from it is cached, it is no code page
            live = (h.engine == "fast" and h.translator.live_pages
                    and h.mem.code_page_writes.get(ppn, 0) >= tier1.SMC_PAGE_WRITES)
            since = -1 if live else h.mark_code_page(ppn)  # before it is read
            raw, ppn = h.fetch(pc)
        except Trap as t:
            t.pc = pc
            raise
        d = decode(raw, pc)
        system = d.insn.kind == SYSTEM and not in_block(d)
        if h.engine == "fast":
            # the fast engine's SYSTEM instructions (and steps): code per
            # instruction word, shared by every address (emulator.tier1)
            entry = (tier1.bound_function(ctx, raw, pc, self.glb), d, system)
        else:
            entry = (compile_insn(d, ctx, self.glb), d, system)
        # An instruction that straddles two pages is not cached: a write
        # to its second page could not invalidate it. Nor one whose page
        # another hart wrote while this one read it.
        if not live and (pc & 0xFFF) + d.length <= 0x1000 and h.code_unchanged(since):
            ctx.insns[pc] = entry
            h.note_code(ctx, pc, ppn, pc & 0xFFF, (pc & 0xFFF) + d.length)
        return entry

    def step(self) -> None:
        h = self.h
        fn, d, system = self.entry(h.pc)
        try:
            fn(h, h.x, h.f)
        except CodeModified:
            h.pc = d.next_pc
        except GuestExit as g:
            g.pc = d.pc  # resuming re-executes this instruction
            raise
        h.instret += 1
        if system:
            h.update_ctx()
            h.irq_dirty = True
