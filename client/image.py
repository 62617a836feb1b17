"""Kernel images as QEMU virt's ``-kernel`` and kvmtool's ``-k`` take them.

``load_kernel(data, ram_base, ram_size)`` returns a ``Kernel``: the pieces to
copy into guest RAM, the entry point and the end of what the kernel occupies
(``image_size`` of a RISC-V Image, so the initrd and the device tree go
above the kernel's bss). Recognised, in this order:

- an ELF ``vmlinux`` (64-bit RISC-V; PT_LOAD segments at their physical
  addresses, entry from the header);
- a gzip stream (magic ``1f 8b``), decompressed and recognised again;
- a RISC-V ``Image`` (Linux's Documentation/arch/riscv/boot-image-header.rst:
  ``text_offset`` at byte 8, ``image_size`` at 16, magic ``RISCV\\0\\0\\0`` at
  48 and ``RSC\\x05`` at 56; an EFI stub kernel also starts with ``MZ``),
  loaded at RAM + text_offset;
- anything else with no known header: a flat binary at RAM + 2 MiB, as
  QEMU's ``riscv_load_kernel`` does for a raw file.

Formats that are recognisably something else (an ELF for another machine, a
U-Boot uImage, an arm64 Image, a PE file with no RISC-V Image header) are
refused with a ``KernelFormatError`` that names the problem.
"""

from __future__ import annotations

import gzip
import io
import struct
import zlib
from dataclasses import dataclass, field
from typing import List, Tuple

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

FLAT_OFFSET = 0x20_0000  # QEMU: a raw kernel is loaded 2 MiB into RAM (one Sv39 megapage)
IMAGE_HEADER_SIZE = 64
IMAGE_MAGIC = b"RISCV\0\0\0"  # at byte 48 (deprecated but still written)
IMAGE_MAGIC2 = b"RSC\x05"  # at byte 56
ARM64_MAGIC = b"ARM\x64"  # at byte 56 of an arm64 Image
UIMAGE_MAGIC = b"\x27\x05\x19\x56"
ELF_MAGIC = b"\x7fELF"
GZIP_MAGIC = b"\x1f\x8b"
EM_RISCV = 243
MAX_GUNZIP = 1 << 30  # a decompressed kernel larger than this is refused


class KernelFormatError(ValueError):
    """The file is not a kernel this loader can place."""


@dataclass
class Kernel:
    """A kernel ready to copy: ``pieces`` are (guest physical address, bytes)
    and ``end`` is the first address above everything the kernel claims."""

    kind: str  # "elf", "image", "flat" (with "gzip+" in front when compressed)
    entry: int
    end: int
    pieces: List[Tuple[int, bytes]] = field(default_factory=list)

    @property
    def start(self) -> int:
        """The lowest guest physical address the kernel occupies."""
        return min(addr for addr, _ in self.pieces)


def _check_fits(kind: str, start: int, end: int, ram_base: int, ram_size: int) -> None:
    if start < ram_base or end > ram_base + ram_size:
        raise KernelFormatError(
            f"{kind} kernel needs [{start:#x}, {end:#x}), outside RAM "
            f"[{ram_base:#x}, {ram_base + ram_size:#x})")


def _load_elf(data: bytes, ram_base: int, ram_size: int) -> Kernel:
    try:
        elf = ELFFile(io.BytesIO(data))
        machine = elf.header["e_machine"]
        if elf.elfclass != 64 or machine not in ("EM_RISCV", EM_RISCV):
            raise KernelFormatError(
                f"ELF for {machine} ({elf.elfclass}-bit), not a 64-bit RISC-V kernel")
        pieces: List[Tuple[int, bytes]] = []
        end = 0
        for seg in elf.iter_segments():
            if seg["p_type"] != "PT_LOAD" or seg["p_memsz"] == 0:
                continue
            addr, memsz = seg["p_paddr"], seg["p_memsz"]
            body = seg.data()
            pieces.append((addr, body + bytes(memsz - len(body))))
            end = max(end, addr + memsz)
        entry = int(elf.header["e_entry"])
    except ELFError as err:
        raise KernelFormatError(f"bad ELF file: {err}") from None
    if not pieces:
        raise KernelFormatError("ELF file has no loadable segment")
    kernel = Kernel("elf", entry, end, pieces)
    _check_fits("ELF", kernel.start, end, ram_base, ram_size)
    return kernel


def parse_image_header(data: bytes) -> Tuple[int, int]:
    """(text_offset, image_size) of a RISC-V Image header."""
    if len(data) < IMAGE_HEADER_SIZE:
        raise KernelFormatError("file too short for a RISC-V Image header")
    text_offset, image_size = struct.unpack_from("<QQ", data, 8)
    return text_offset, image_size


def _is_image(data: bytes) -> bool:
    return len(data) >= IMAGE_HEADER_SIZE and (
        data[48:56] == IMAGE_MAGIC or data[56:60] == IMAGE_MAGIC2)


def _load_image(data: bytes, ram_base: int, ram_size: int) -> Kernel:
    text_offset, image_size = parse_image_header(data)
    if image_size == 0:  # before Linux 4.x-era headers: unknown, use the file size
        image_size = len(data)
    if image_size < len(data):
        raise KernelFormatError(
            f"RISC-V Image header says image_size {image_size:#x}, smaller than the "
            f"file ({len(data):#x} bytes)")
    addr = ram_base + text_offset
    kernel = Kernel("image", addr, addr + image_size, [(addr, data)])
    _check_fits("Image", addr, addr + image_size, ram_base, ram_size)
    return kernel


def _gunzip(data: bytes) -> bytes:
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
            out = f.read(MAX_GUNZIP + 1)
    except (OSError, EOFError, zlib.error) as err:
        raise KernelFormatError(f"bad gzip stream: {err}") from None
    if len(out) > MAX_GUNZIP:
        raise KernelFormatError(f"gzip kernel decompresses to more than {MAX_GUNZIP} bytes")
    return out


def load_kernel(data: bytes, ram_base: int, ram_size: int) -> Kernel:
    """Recognise ``data`` as a kernel (see the module docstring) and place it."""
    if not data:
        raise KernelFormatError("empty kernel file")
    if data.startswith(ELF_MAGIC):
        return _load_elf(data, ram_base, ram_size)
    if data.startswith(GZIP_MAGIC):
        inner = _gunzip(data)
        if inner.startswith(GZIP_MAGIC):
            raise KernelFormatError("gzip inside gzip is not a kernel")
        kernel = load_kernel(inner, ram_base, ram_size)
        kernel.kind = "gzip+" + kernel.kind
        return kernel
    if _is_image(data):
        return _load_image(data, ram_base, ram_size)
    if data.startswith(UIMAGE_MAGIC):
        raise KernelFormatError("U-Boot uImage: give the Image inside it (mkimage -l shows it)")
    if data[56:60] == ARM64_MAGIC:
        raise KernelFormatError("arm64 Image, not a RISC-V kernel")
    if data.startswith(b"MZ"):
        raise KernelFormatError("PE/EFI file without a RISC-V Image header")
    addr = ram_base + FLAT_OFFSET
    kernel = Kernel("flat", addr, addr + len(data), [(addr, data)])
    _check_fits("flat", addr, addr + len(data), ram_base, ram_size)
    return kernel
