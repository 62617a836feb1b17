"""Integer helpers shared by both engines (values are canonical unsigned 64-bit)."""

from __future__ import annotations

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1
SIGN64 = 1 << 63
SIGN32 = 1 << 31


def sext(value: int, bits: int) -> int:
    """Sign-extend the low ``bits`` bits of ``value`` to a Python int."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def sext64(value: int, bits: int) -> int:
    """Sign-extend the low ``bits`` bits of ``value`` to canonical unsigned 64-bit."""
    return sext(value, bits) & M64


def signed64(value: int) -> int:
    """Interpret a canonical 64-bit value as signed."""
    return value - (1 << 64) if value >> 63 else value


def popcount(value: int) -> int:
    return bin(value).count("1")
