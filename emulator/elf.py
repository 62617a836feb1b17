"""ELF loading (pyelftools): PT_LOAD segments at their physical addresses."""

from __future__ import annotations

import io
from typing import Dict, List, Optional, Tuple

from .memory import BusError, PhysMemory

EM_RISCV = 243


class ElfError(Exception):
    """The file is not a loadable RV64 ELF for this machine."""


class ElfImage:
    def __init__(self, entry: int, segments: List[Tuple[int, int]], symbols: Dict[str, int]) -> None:
        self.entry = entry
        self.segments = segments  # (physical address, memory size)
        self.symbols = symbols

    def symbol(self, name: str) -> Optional[int]:
        return self.symbols.get(name)


def load_elf(mem: PhysMemory, data: bytes) -> ElfImage:
    """Copy the loadable segments of an RV64 ELF into ``mem``."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    if data[:4] != b"\x7fELF":
        raise ElfError("not an ELF file")
    try:
        elf = ELFFile(io.BytesIO(data))
        if elf.elfclass != 64 or elf["e_machine"] != "EM_RISCV":
            raise ElfError(f"not an RV64 ELF (class {elf.elfclass}, machine {elf['e_machine']})")
        if not elf.little_endian:
            raise ElfError("big-endian ELF")
        segments = []
        for seg in elf.iter_segments():
            if seg["p_type"] != "PT_LOAD" or seg["p_memsz"] == 0:
                continue
            paddr, filesz, memsz = seg["p_paddr"], seg["p_filesz"], seg["p_memsz"]
            if filesz > memsz:
                raise ElfError(f"segment at {paddr:#x}: file size exceeds memory size")
            body = seg.data()[:filesz] + bytes(memsz - filesz)
            try:
                mem.write_bytes(paddr, body, force=True)
            except BusError:
                raise ElfError(f"segment {paddr:#x}-{paddr + memsz:#x} lies outside guest RAM") from None
            segments.append((paddr, memsz))
        if not segments:
            raise ElfError("no loadable segments")
        symbols: Dict[str, int] = {}
        for sec in elf.iter_sections():
            if isinstance(sec, SymbolTableSection):
                for sym in sec.iter_symbols():
                    if sym.name and sym["st_shndx"] != "SHN_UNDEF":
                        symbols.setdefault(sym.name, sym["st_value"])
        return ElfImage(elf["e_entry"], segments, symbols)
    except ELFError as exc:
        raise ElfError(f"malformed ELF: {exc}") from None
    except (ValueError, KeyError, IndexError) as exc:
        raise ElfError(f"malformed ELF: {exc}") from None
