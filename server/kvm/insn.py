"""Decoding of the guest instructions KVM emulates for MMIO.

KVM decodes the trapping instruction itself (``arch/riscv/kvm/vcpu_insn.c``,
``kvm_riscv_vcpu_mmio_load/store``) and supports only integer loads and
stores, including the compressed forms; anything else makes KVM_RUN fail
with EOPNOTSUPP.
"""

from __future__ import annotations

from typing import NamedTuple, Optional


class MemInsn(NamedTuple):
    length: int  # instruction length in bytes (2 or 4)
    is_store: bool
    size: int  # access size in bytes
    signed: bool  # load result is sign-extended
    reg: int  # rd of a load, rs2 of a store


# funct3 of LOAD (opcode 0x03) -> (size, signed)
_LOADS = {0: (1, True), 1: (2, True), 2: (4, True), 3: (8, True),
          4: (1, False), 5: (2, False), 6: (4, False)}
# funct3 of STORE (opcode 0x23) -> size
_STORES = {0: 1, 1: 2, 2: 4, 3: 8}


def _compressed(raw: int) -> Optional[MemInsn]:
    op = raw & 3
    funct3 = (raw >> 13) & 7
    size = {2: 4, 3: 8, 6: 4, 7: 8}.get(funct3)
    if size is None:
        return None
    store = funct3 >= 6
    if op == 0:  # C.LW C.LD C.SW C.SD: rd'/rs2' in bits 4:2
        return MemInsn(2, store, size, True, 8 + ((raw >> 2) & 7))
    if op == 2:  # C.LWSP C.LDSP (rd in 11:7, not x0) / C.SWSP C.SDSP (rs2 in 6:2)
        if store:
            return MemInsn(2, True, size, True, (raw >> 2) & 31)
        rd = (raw >> 7) & 31
        return MemInsn(2, False, size, True, rd) if rd else None
    return None


def decode_mem_insn(raw: int) -> Optional[MemInsn]:
    """The integer load/store encoded by ``raw``, or None if KVM cannot emulate it."""
    if raw & 3 != 3:
        return _compressed(raw & 0xFFFF)
    opcode = raw & 0x7F
    funct3 = (raw >> 12) & 7
    if opcode == 0x03 and funct3 in _LOADS:
        size, signed = _LOADS[funct3]
        return MemInsn(4, False, size, signed, (raw >> 7) & 31)
    if opcode == 0x23 and funct3 in _STORES:
        return MemInsn(4, True, _STORES[funct3], False, (raw >> 20) & 31)
    return None


def sign_extend(value: int, size: int) -> int:
    """``value`` of ``size`` bytes sign-extended to an unsigned 64-bit int."""
    bits = 8 * size
    value &= (1 << bits) - 1
    if bits < 64 and value >> (bits - 1):
        value |= ((1 << 64) - 1) ^ ((1 << bits) - 1)
    return value
