"""Kernel image recognition and placement (client/image.py)."""

from __future__ import annotations

import gzip
import shutil
import struct
import subprocess

import pytest

from rvkvm.client.image import FLAT_OFFSET, KernelFormatError, load_kernel, parse_image_header

RAM = 0x8000_0000
SIZE = 256 << 20


def riscv_image(text_offset: int = 0x20_0000, image_size: int = 0x1_0000,
                body: bytes = b"", mz: bool = True) -> bytes:
    head = bytearray(64)
    head[0:2] = b"MZ" if mz else b"\x6f\x00"  # an EFI stub starts with MZ, else a jump
    struct.pack_into("<QQ", head, 8, text_offset, image_size)
    head[48:56] = b"RISCV\0\0\0"
    head[56:60] = b"RSC\x05"
    return bytes(head) + body


def test_image_header_fields():
    data = riscv_image(0x40_0000, 0x12_3000, b"x" * 100)
    assert parse_image_header(data) == (0x40_0000, 0x12_3000)
    k = load_kernel(data, RAM, SIZE)
    assert k.kind == "image"
    assert k.entry == RAM + 0x40_0000 and k.start == k.entry
    assert k.end == RAM + 0x40_0000 + 0x12_3000  # bss counted from image_size
    assert k.pieces == [(RAM + 0x40_0000, data)]


def test_image_without_pe_header_and_zero_image_size():
    data = riscv_image(0x20_0000, 0, b"y" * 10, mz=False)
    k = load_kernel(data, RAM, SIZE)
    assert k.kind == "image" and k.end == RAM + 0x20_0000 + len(data)


def test_image_that_does_not_fit_or_lies_about_its_size():
    with pytest.raises(KernelFormatError, match="outside RAM"):
        load_kernel(riscv_image(0x20_0000, SIZE), RAM, SIZE)
    with pytest.raises(KernelFormatError, match="smaller than the file"):
        load_kernel(riscv_image(0x20_0000, 16, b"z" * 100), RAM, SIZE)


def test_flat_binary_goes_to_ram_plus_2mib():
    data = bytes.fromhex("13050000") * 8  # li a0, 0 ...
    k = load_kernel(data, RAM, SIZE)
    assert (k.kind, k.entry, k.end) == ("flat", RAM + FLAT_OFFSET, RAM + FLAT_OFFSET + 32)
    assert FLAT_OFFSET == 2 << 20


def test_gzip_image_is_decompressed():
    inner = riscv_image(0x20_0000, 0x2000, b"k" * 300)
    k = load_kernel(gzip.compress(inner), RAM, SIZE)
    assert k.kind == "gzip+image" and k.pieces == [(RAM + 0x20_0000, inner)]
    with pytest.raises(KernelFormatError, match="gzip"):
        load_kernel(b"\x1f\x8b" + b"\0" * 30, RAM, SIZE)


def test_refused_formats_say_why():
    arm64 = bytearray(64)
    arm64[56:60] = b"ARM\x64"
    cases = [(b"", "empty"), (bytes(arm64), "arm64"), (b"MZ" + bytes(100), "PE"),
             (b"\x27\x05\x19\x56" + bytes(60), "uImage")]
    for data, why in cases:
        with pytest.raises(KernelFormatError, match=why):
            load_kernel(data, RAM, SIZE)


def _elf(tmp_path, machine: str, text: str) -> bytes:
    gcc = shutil.which(f"{machine}-gcc")
    if gcc is None:
        pytest.skip(f"{machine}-gcc not installed")
    src = tmp_path / "k.S"
    src.write_text(text)
    out = tmp_path / "k.elf"
    subprocess.run([gcc, "-nostdlib", "-static", "-Wl,-N", "-Wl,-Ttext=0x80200000", "-Wl,-e,_start",
                    "-o", str(out), str(src)], check=True)
    return out.read_bytes()


def test_elf_vmlinux_segments_at_physical_addresses(tmp_path):
    data = _elf(tmp_path, "riscv64-unknown-elf",
                ".globl _start\n_start: j _start\n.bss\n.space 0x3000\n")
    k = load_kernel(data, RAM, SIZE)
    assert k.kind == "elf" and k.entry == 0x8020_0000
    assert k.start == 0x8020_0000 and k.end >= 0x8020_3000
    first = dict(k.pieces)[0x8020_0000]
    assert first[:2] == bytes.fromhex("01a0")  # c.j 0
    # an ELF for another machine is refused, not loaded as a flat binary
    bad = bytearray(data)
    bad[18:20] = struct.pack("<H", 62)  # EM_X86_64
    with pytest.raises(KernelFormatError, match="not a 64-bit RISC-V"):
        load_kernel(bytes(bad), RAM, SIZE)
