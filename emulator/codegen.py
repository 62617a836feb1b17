"""Emitters: how instruction semantics become Python source.

Semantics functions (in :mod:`emulator.isa`) only call the methods of
:class:`Emitter`. :class:`ListEmitter` keeps registers in the hart's list and
goes through the hart's memory slow paths (the reference interpreter, and
SYSTEM instructions in every engine); the translator's emitter keeps
registers in Python locals and inlines the TLB hit path.

Names available to generated code (see :data:`GLOBALS` and the block
prologues): ``H`` the hart, ``X`` its integer registers, ``F`` its FP
registers, ``M64``, ``Trap`` and the helpers in :mod:`emulator.helpers`.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from types import CodeType, FunctionType
from typing import Any, Dict, List, Optional, Tuple

from .bits import M64
from .context import Ctx

ILLEGAL_INSTRUCTION = 2


class Emitter:
    """Base class: source accumulation plus the parts both emitters share."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.lines: List[str] = []
        self.indent = ""
        self._ntmp = 0
        self.ended = False  # control transfer emitted
        self.pc = 0  # address of the instruction being generated
        self.raw = 0  # its bits (tval of illegal-instruction traps)
        self.npc = 0

    # -- plumbing ------------------------------------------------------
    def begin(self, pc: int, raw: int, length: int) -> None:
        self.pc = pc
        self.raw = raw
        self.npc = (pc + length) & M64
        self.ended = False

    def emit(self, line: str) -> None:
        self.lines.append(self.indent + line)

    def tmp(self) -> str:
        self._ntmp += 1
        return f"t{self._ntmp}"

    # -- registers -------------------------------------------------------
    def x(self, n: int) -> str:
        raise NotImplementedError

    def setx(self, n: int, expr: str) -> None:
        raise NotImplementedError

    def known(self, n: int) -> Optional[Tuple[int, int]]:
        """Bounds ``(lo, hi)`` of register ``n``'s value read as a signed
        64-bit number, where the emitter has worked them out (the
        translator does, within a block); None if unknown."""
        return None

    def setx_range(self, n: int, expr: str, lo: int, hi: int) -> None:
        """rd = ``expr``, whose value read as signed lies in [lo, hi]."""
        self.setx(n, expr)

    def setx_lazy(self, n: int, expr: str, canonical: str, lo: int, hi: int) -> None:
        """rd = a value that ``expr`` gives congruent modulo 2**64 (it may be
        negative) and ``canonical`` gives as it is; bounds as setx_range.
        Emitters that can hold a register in that form until something
        needs it canonical use ``expr``."""
        self.setx_range(n, canonical, lo, hi)

    def is_lazy(self, n: int) -> bool:
        """Whether register ``n`` is held in a congruent form (setx_lazy)."""
        return False

    def x_for_and(self, n: int) -> str:
        """Register ``n`` as an operand of a bitwise AND with a canonical
        value (which makes any congruent form of it canonical)."""
        return self.x(n)

    def setx_w(self, n: int, expr: str) -> None:
        """rd = the low 32 bits of ``expr`` sign-extended (the RV64 "W" rule).
        A masked value plus a rarely-taken ``if`` is cheaper in CPython
        than branch-free sign-extension arithmetic."""
        if not n:
            self.emit(f"_ = {expr}")
            return
        self.setx(n, f"({expr}) & 0xFFFFFFFF")
        r = self.x(n)
        self.emit(f"if {r} > 0x7FFFFFFF: {r} |= 0xFFFFFFFF00000000")

    def f(self, n: int) -> str:
        return f"F[{n}]"

    def setf(self, n: int, expr: str) -> None:
        self.emit(f"F[{n}] = {expr}")

    # -- control ---------------------------------------------------------
    def trap(self, cause: int, tval: str = "0") -> None:
        """Raise a synchronous exception at this instruction."""
        self.emit(f"raise Trap({cause}, {tval}, {self.pc})")
        self.ended = True

    def illegal(self) -> None:
        self.trap(ILLEGAL_INSTRUCTION, str(self.raw))

    def jump(self, target: str) -> None:
        raise NotImplementedError

    def branch(self, cond: str, target: int) -> None:
        raise NotImplementedError

    # -- memory ----------------------------------------------------------
    def ea(self, rs1: int, imm: int) -> str:
        """Effective address of an explicit access (pointer masking applied)
        into a fresh temporary; returns its name."""
        t = self.tmp()
        base = self.x(rs1)
        if imm:
            self.emit(f"{t} = ({base} + {imm}) & {M64}")
        else:
            self.emit(f"{t} = {base}")
        self.mask_pointer(t)
        return t

    def ea_direct(self, rs1: int, imm: int) -> str:
        """The effective address of an integer load or store, as ``ea`` or,
        where the emitter can, as an expression that must be used before
        anything is written."""
        return self.ea(rs1, imm)

    def mask_pointer(self, t: str, signed_form: bool = False) -> None:
        """Pointer masking of the address in temporary ``t``: unsigned, or
        with ``signed_form`` in signed form (and so left)."""
        pmlen = self.ctx.pmlen
        if pmlen:
            keep = (1 << (64 - pmlen)) - 1
            if self.ctx.pm_sign:
                sb = 1 << (63 - pmlen)
                wrap = "" if signed_form else f" & {M64}"
                self.emit(f"{t} = ((({t} & {keep}) ^ {sb}) - {sb}){wrap}")
            else:
                self.emit(f"{t} &= {keep}")

    def load_value(self, addr: str, size: int, signed: bool) -> str:
        """Load into a fresh temporary (canonical: sign-extended if signed)."""
        t = self.tmp()
        fn = "load_s" if signed else "load_u"
        self.emit(f"{t} = H.{fn}({addr}, {size}, {self.pc})")
        return t

    def load(self, rd: int, addr: str, size: int, signed: bool) -> None:
        if rd == 0:
            self.load_value(addr, size, signed)
            return
        t = self.load_value(addr, size, signed)
        self.setx(rd, t)

    def store(self, addr: str, value: str, size: int) -> None:
        self.emit(f"H.store({addr}, {size}, {value}, {self.pc})")

    # -- floating point --------------------------------------------------
    def fp_on(self) -> bool:
        """True if FP instructions may execute here; otherwise emits the
        illegal-instruction trap (mstatus.FS == Off) and returns False."""
        if self.ctx.fs_on:
            return True
        self.illegal()
        return False


class ListEmitter(Emitter):
    """Registers in ``X`` (the hart's list); every access through the hart."""

    def x(self, n: int) -> str:
        return f"X[{n}]" if n else "0"

    def setx(self, n: int, expr: str) -> None:
        if n:
            self.emit(f"X[{n}] = {expr}")
        else:
            self.emit(f"_ = {expr}")

    def jump(self, target: str) -> None:
        self.emit(f"H.pc = {target}")
        self.ended = True

    def branch(self, cond: str, target: int) -> None:
        self.emit(f"H.pc = {target} if {cond} else {self.npc}")
        self.ended = True


# Code objects by source: the same guest code (the same region of a kernel
# in every vCPU, the same program in every VM) is compiled once per process,
# and on PyPy the JIT's traces of a code object are shared as well. Bounded
# by entries and by source size (a code object is about as large as its
# source): least recently used entries go first.
CODE_CACHE_ENTRIES = 4096
CODE_CACHE_BYTES = 32 << 20
_code_cache: OrderedDict[Tuple[str, str], CodeType] = OrderedDict()
_code_bytes = 0
_code_lock = threading.Lock()


def _module_code(src: str, filename: str) -> CodeType:
    """``src`` compiled as a module, through the code cache."""
    global _code_bytes
    key = (src, filename)
    with _code_lock:
        code = _code_cache.get(key)
        if code is not None:
            _code_cache.move_to_end(key)
            return code
    code = compile(src, filename, "exec")
    with _code_lock:
        if key not in _code_cache:
            _code_cache[key] = code
            _code_bytes += len(src)
        while len(_code_cache) > CODE_CACHE_ENTRIES or _code_bytes > CODE_CACHE_BYTES:
            (old_src, _), _ = _code_cache.popitem(last=False)
            _code_bytes -= len(old_src)
    return code


def _def_source(name: str, params: str, body: List[str]) -> str:
    return f"def {name}({params}):\n" + "\n".join("    " + line for line in body) + "\n"


def compile_function(name: str, params: str, body: List[str], glb: Dict[str, object],
                     filename: str) -> object:
    """Compile ``def name(params): body`` and return the function object."""
    code = _module_code(_def_source(name, params, body), filename)
    ns: Dict[str, object] = {}
    exec(code, glb, ns)  # noqa: S102 - source built from instruction-bit integers only
    return ns[name]


# Integer literals of generated source (decimal or hex, not part of a name
# or of a float), as split() keeps them: what lift_literals makes parameters.
_LITERAL = re.compile(r"(?<![\w.])(0[xX][0-9a-fA-F]+|[0-9]+)(?![\w.])")
# Whether lifted_function lifts (tests turn it off). On CPython a constant
# and a parameter cost the same to load. On PyPy a trace could fold a
# code object's constants and not a function's defaults, but the lifted
# functions are the first tier's and the interpreter's, code that runs a
# few times, and PyPy's compile() is slow: unlifted, Debian's boot makes
# one per distinct instruction word (tens of thousands). Its first 120 M
# instructions in-process on PyPy 7.3, side by side: 52.6 -> 38.7 CPU s
# lifted (first-tier building 7.1 -> 3.5 s).
LIFT_LITERALS = True


def lift_literals(body: List[str]) -> Tuple[List[str], Tuple[int, ...]]:
    """``body`` with each integer literal replaced by a name ``_k0``,
    ``_k1``, ... (one per occurrence), and the literals' values in order.
    Lines holding a string literal are kept as they are."""
    values: List[int] = []

    def lift(text: str) -> str:
        parts = _LITERAL.split(text)  # text, literal, text, ..., text
        literals = parts[1::2]
        first = len(values)
        values.extend(int(v, 0) for v in literals)
        parts[1::2] = [f"_k{first + i}" for i in range(len(literals))]
        return "".join(parts)

    text = "\n".join(body)
    if "'" not in text and '"' not in text:
        out = lift(text).split("\n")  # one pass over the whole body
    else:
        out = [line if ("'" in line or '"' in line) else lift(line) for line in body]
    return out, tuple(values)


# The code objects of lifted functions by source: a cache of their own, so
# that regions passing through the code cache do not evict them (they are
# few, about 1,500 over Debian's boot, and each serves many instructions).
_lifted: OrderedDict[Tuple[str, str], CodeType] = OrderedDict()


def lifted_code(name: str, params: str, body: List[str], glb: Dict[str, object],
                filename: str) -> Tuple[CodeType, Tuple[int, ...]]:
    """The code object of ``def name(params): body`` with its integer
    literals lifted into trailing parameters (lift_literals), and their
    values: the defaults to give those parameters. Instructions that differ
    only in their fields (registers, immediates, addresses) make the same
    source, so one ``compile()`` (the code cache) serves them all, and
    making another costs a regular expression, not a compile.
    ``params`` must end with a parameter that has a default, or have none
    (the defaults are ``params``' own followed by the values)."""
    if LIFT_LITERALS:
        lines, values = lift_literals(body)
    else:
        lines, values = body, ()
    names = "".join(f", _k{i}=0" for i in range(len(values)))
    key = (_def_source(name, params + names, lines), filename)
    with _code_lock:
        code = _lifted.get(key)
        if code is not None:
            _lifted.move_to_end(key)
            return code, values
    # the function's own code: a constant of the module's (no exec of the def)
    module = compile(key[0], filename, "exec")
    code = next(c for c in module.co_consts if isinstance(c, CodeType))
    with _code_lock:
        _lifted[key] = code
        while len(_lifted) > CODE_CACHE_ENTRIES:
            _lifted.popitem(last=False)
    return code, values


def lifted_function(name: str, params: str, body: List[str], glb: Dict[str, object],
                    filename: str) -> Any:
    """``def name(params): body`` as a function whose integer literals are
    parameters defaulting to their values (see lifted_code); ``params``
    has no defaults of its own."""
    code, values = lifted_code(name, params, body, glb, filename)
    return FunctionType(code, glb, name, values or None)


def code_cache_stats() -> Tuple[int, int]:
    """(entries, bytes of source) held by the code cache."""
    with _code_lock:
        return len(_code_cache), _code_bytes
