"""The reference engine: one instruction at a time.

Each instruction is decoded once per address and its semantics compiled
once (with registers in the hart's list and every memory access through
the hart's slow path), then reused until its code page is written.
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, Callable, Dict, Tuple

from .bits import M64
from .codegen import ListEmitter, compile_function
from .events import CodeModified, GuestExit, Trap
from .helpers import GLOBALS as HELPERS
from .isa import GEN_GLOBALS, SYSTEM, Decoded, decode

if TYPE_CHECKING:
    from .hart import Hart

Entry = Tuple[Callable[..., None], Decoded]


def generated_globals() -> Dict[str, object]:
    """A fresh namespace for generated code: the ``__dict__`` of a module
    object, not a plain dict, because PyPy's JIT turns global lookups in a
    module's namespace into constants (in a plain dict each one would be a
    string-keyed lookup on every use)."""
    g: Dict[str, object] = types.ModuleType("rvkvm_generated").__dict__
    g.update({"M64": M64, "Trap": Trap, "__builtins__": __builtins__})
    g.update(HELPERS)
    g.update(GEN_GLOBALS)
    return g


def compile_insn(d: Decoded, ctx: object, glb: Dict[str, object]) -> Callable[..., None]:
    e = ListEmitter(ctx)  # type: ignore[arg-type]
    e.begin(d.pc, d.raw, d.length)
    d.insn.gen(e, d)
    if not e.ended:
        e.emit(f"H.pc = {d.next_pc}")
    return compile_function("insn", "H, X, F", e.lines or ["pass"], glb,
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
            raw, ppn = h.fetch(pc)
        except Trap as t:
            t.pc = pc
            raise
        d = decode(raw, pc)
        entry = (compile_insn(d, ctx, self.glb), d)
        # An instruction that straddles two pages is not cached: a write
        # to its second page could not invalidate it.
        if (pc & 0xFFF) + d.length <= 0x1000:
            ctx.insns[pc] = entry
            h.note_code(ctx, pc, ppn)
        return entry

    def step(self) -> None:
        h = self.h
        fn, d = self.entry(h.pc)
        try:
            fn(h, h.x, h.f)
        except CodeModified:
            h.pc = d.next_pc
        except GuestExit as g:
            g.pc = d.pc  # resuming re-executes this instruction
            raise
        h.instret += 1
        if d.insn.kind == SYSTEM:
            h.update_ctx()
            h.irq_dirty = True
