"""Integer helpers shared by both engines (values are canonical unsigned 64-bit)."""

from __future__ import annotations

M64 = (1 << 64) - 1


def sext(value: int, bits: int) -> int:
    """Sign-extend the low ``bits`` bits of ``value`` to a Python int."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value
