"""Instruction encodings as data, and the decoder built from them.

Each extension module exports ``INSNS``: a list of :class:`Insn` rows (mask,
match, operand format, semantics). A semantics function receives an
:class:`~emulator.codegen.Emitter` and the :class:`Decoded` instruction and
emits Python source; the reference interpreter and the block translator run
the same functions with different emitters, so both engines share one source
of instruction semantics.

Only integers taken from instruction bits (and the instruction's address)
ever reach generated source.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Dict, List, Tuple

from ..bits import M64, sext

if TYPE_CHECKING:
    from ..codegen import Emitter

Gen = Callable[["Emitter", "Decoded"], None]

# Instruction kinds.
PLAIN = 0  # falls through; may trap only through memory accesses
BRANCH = 1  # conditional transfer: ends a block
JUMP = 2  # unconditional transfer: ends a block
SYSTEM = 3  # runs with registers in the hart's list, always alone (CSR, xRET, fences...)


class Insn:
    __slots__ = ("name", "mask", "match", "fmt", "gen", "kind", "ext")

    def __init__(self, name: str, mask: int, match: int, fmt: str, gen: Gen,
                 kind: int = PLAIN, ext: str = "") -> None:
        self.name = name
        self.mask = mask
        self.match = match
        self.fmt = fmt
        self.gen = gen
        self.kind = kind
        self.ext = ext

    def __repr__(self) -> str:
        return f"<Insn {self.name}>"


def _imm_i(w: int) -> int:
    return sext(w >> 20, 12)


def _imm_s(w: int) -> int:
    return sext(((w >> 25) << 5) | ((w >> 7) & 31), 12)


def _imm_b(w: int) -> int:
    v = (((w >> 31) & 1) << 12) | (((w >> 7) & 1) << 11) | (((w >> 25) & 63) << 5) | (((w >> 8) & 15) << 1)
    return sext(v, 13)


def _imm_u(w: int) -> int:
    return sext(w & 0xFFFFF000, 32)


def _imm_j(w: int) -> int:
    v = (((w >> 31) & 1) << 20) | (((w >> 12) & 255) << 12) | (((w >> 20) & 1) << 11) | (((w >> 21) & 1023) << 1)
    return sext(v, 21)


IMM: Dict[str, Callable[[int], int]] = {
    "R": lambda w: 0,
    "I": _imm_i,
    "S": _imm_s,
    "B": _imm_b,
    "U": _imm_u,
    "J": _imm_j,
    "SH6": lambda w: (w >> 20) & 63,
    "SH5": lambda w: (w >> 20) & 31,
    "CSRI": lambda w: (w >> 15) & 31,  # zimm of csrr*i
}


class Decoded:
    """One decoded instruction at one address (decoded once, reused)."""

    __slots__ = ("insn", "raw", "pc", "length", "rd", "rs1", "rs2", "rs3", "imm", "rm", "csr")

    def __init__(self, insn: Insn, raw: int, pc: int, length: int, word: int) -> None:
        self.insn = insn
        self.raw = raw  # the instruction bits as fetched (16 bits for RVC)
        self.pc = pc
        self.length = length
        w = word  # the 32-bit form (RVC expanded)
        self.rd = (w >> 7) & 31
        self.rs1 = (w >> 15) & 31
        self.rs2 = (w >> 20) & 31
        self.rs3 = (w >> 27) & 31
        self.rm = (w >> 12) & 7
        self.csr = (w >> 20) & 0xFFF
        self.imm = IMM[insn.fmt](w)

    @property
    def next_pc(self) -> int:
        return (self.pc + self.length) & M64

    def __repr__(self) -> str:
        return f"<{self.insn.name} @{self.pc:#x} raw={self.raw:#x}>"


# -- the decoder ------------------------------------------------------------

_by_opcode: Dict[int, List[Insn]] = {}
# Names that extension modules make visible to generated code.
GEN_GLOBALS: Dict[str, object] = {}
ALL: List[Insn] = []


def _illegal_gen(e: Emitter, d: Decoded) -> None:
    e.illegal()


ILLEGAL = Insn("illegal", 0, 0, "R", _illegal_gen, SYSTEM, "")


def _register(insns: List[Insn]) -> None:
    for insn in insns:
        if insn.match & ~insn.mask:
            raise AssertionError(f"{insn.name}: match has bits outside mask")
        opc = insn.match & 0x7F
        if insn.mask & 0x7F != 0x7F:
            raise AssertionError(f"{insn.name}: opcode must be fully specified")
        bucket = _by_opcode.setdefault(opc, [])
        for other in bucket:
            common = insn.mask & other.mask
            if (insn.match & common) == (other.match & common):
                raise AssertionError(f"encodings overlap: {insn.name} and {other.name}")
        bucket.append(insn)
        ALL.append(insn)


def decode_word(w: int) -> Insn:
    """The instruction row matching a 32-bit instruction word (or ILLEGAL)."""
    for insn in _by_opcode.get(w & 0x7F, ()):
        if w & insn.mask == insn.match:
            return insn
    return ILLEGAL


def decode(raw: int, pc: int) -> Decoded:
    """Decode an instruction (32-bit word, or a 16-bit parcel if raw & 3 != 3)."""
    if raw & 3 == 3:
        return Decoded(decode_word(raw), raw, pc, 4, raw)
    raw &= 0xFFFF
    w = expand(raw)
    if w is None:
        return Decoded(ILLEGAL, raw, pc, 2, 0)
    return Decoded(decode_word(w), raw, pc, 2, w)


from .rvc import expand  # noqa: E402  (rvc imports nothing from this package)


def _build() -> None:
    from . import a, fd, priv, rv64i, rv64m, zb, zicond

    for mod in (rv64i, rv64m, a, priv, zb, zicond, fd):
        _register(mod.INSNS)
        for name, value in getattr(mod, "GLOBALS", {}).items():
            if name in GEN_GLOBALS and GEN_GLOBALS[name] is not value:
                raise AssertionError(f"generated-code global {name} defined twice")
            GEN_GLOBALS[name] = value


_build()

__all__: Tuple[str, ...] = (
    "Insn", "Decoded", "decode", "decode_word", "ILLEGAL", "PLAIN", "BRANCH", "JUMP", "SYSTEM", "ALL",
)
