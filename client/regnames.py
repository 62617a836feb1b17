"""ONE_REG ids by name, for clients (the server's ``regid`` in small).

Ids use the Linux RISC-V encoding::

    63..56 arch (0x80)  55..52 size code (bytes = 1 << code)
    31..24 type  23..16 subtype  15..0 index

Short names are those the server uses (``GetRegList`` names): ``core pc``,
``csr sstatus``, ``config isa``, ``timer time``, ``fp_d f3``, ``vector v3``,
``isa_ext SMNPM``, ``sbi_ext DBCN``, ``sta shmem_lo``,
``fwft pointer_masking.enable``, ``isa_ext multi_en 0``; a size other than
the natural one is written ``@u<bits>``; unnamed ids as ``0x<hex>``.
The tables below copy the uapi enums of ``asm/kvm.h`` (append-only ABI);
tests/grpc checks them against the server's.
"""

from __future__ import annotations

import re
from typing import Dict, Iterator, Optional, Tuple

KVM_REG_RISCV = 0x8000_0000_0000_0000
U32, U64, U128 = 2, 3, 4

CONFIG, CORE, CSR, TIMER, FP_F, FP_D, ISA_EXT, SBI_EXT, VECTOR, SBI_STATE = range(1, 11)
_SUBTYPED = {CSR, ISA_EXT, SBI_EXT, SBI_STATE}
_MULTI = {"multi_en": 1, "multi_dis": 2}

# KVM_RISCV_ISA_EXT_* and KVM_RISCV_SBI_EXT_* in enum order.
ISA_EXT_NAMES = (
    "A C D F H I M SVPBMT SSTC SVINVAL ZIHINTPAUSE ZICBOM ZICBOZ ZBB SSAIA V SVNAPOT ZBA ZBS "
    "ZICNTR ZICSR ZIFENCEI ZIHPM SMSTATEEN ZICOND ZBC ZBKB ZBKC ZBKX ZKND ZKNE ZKNH ZKR ZKSED "
    "ZKSH ZKT ZVBB ZVBC ZVKB ZVKG ZVKNED ZVKNHA ZVKNHB ZVKSED ZVKSH ZVKT ZFH ZFHMIN ZIHINTNTL "
    "ZVFH ZVFHMIN ZFA ZTSO ZACAS SSCOFPMF ZIMOP ZCA ZCB ZCD ZCF ZCMOP ZAWRS SMNPM SSNPM SVADE "
    "SVADU SVVPTC ZABHA ZICCRSE ZAAMO ZALRSC ZICBOP ZFBFMIN ZVFBFMIN ZVFBFWMA ZCLSD ZILSD ZALASR"
).split()
SBI_EXT_NAMES = "V01 TIME IPI RFENCE SRST HSM PMU EXPERIMENTAL VENDOR DBCN STA SUSP FWFT MPXY".split()
# struct kvm_riscv_sbi_fwft members in order (3 registers each).
FWFT_MEMBERS = ("misaligned_deleg", "pointer_masking", "pte_ad_hw_updating")
FWFT_FIELDS = ("enable", "flags", "value")

_CORE = ("pc ra sp gp tp t0 t1 t2 s0 s1 a0 a1 a2 a3 a4 a5 a6 a7 s2 s3 s4 s5 s6 s7 s8 s9 s10 "
         "s11 t3 t4 t5 t6 mode").split()
_CONFIG = ("isa zicbom_block_size mvendorid marchid mimpid zicboz_block_size satp_mode "
           "zicbop_block_size").split()
_CSR = {
    0: "sstatus sie stvec sscratch sepc scause stval sip satp scounteren senvcfg".split(),
    1: "siselect iprio1 iprio2 sieh siph iprio1h iprio2h".split(),
    2: ["sstateen0"],
}

_Key = Tuple[int, int, int]  # (type, subtype, index)


def _rows() -> Iterator[Tuple[_Key, str, str, int]]:
    """(key, class, register, natural size code) for every named register."""
    for i, n in enumerate(_CONFIG):
        yield (CONFIG, 0, i), "config", n, U64
    for i, n in enumerate(_CORE):
        yield (CORE, 0, i), "core", n, U64
    for sub, names in _CSR.items():
        for i, n in enumerate(names):
            yield (CSR, sub, i), "csr", n, U64
    for i, n in enumerate(("frequency", "time", "compare", "state")):
        yield (TIMER, 0, i), "timer", n, U64
    for reg_type, cls, size in ((FP_F, "fp_f", U32), (FP_D, "fp_d", U64)):
        for i in range(32):
            yield (reg_type, 0, i), cls, f"f{i}", size
        yield (reg_type, 0, 32), cls, "fcsr", U32
    for i, n in enumerate(("vstart", "vl", "vtype", "vcsr", "vlenb")):
        yield (VECTOR, 0, i), "vector", n, U64
    for v in range(32):
        yield (VECTOR, 0, 6 + v), "vector", f"v{v}", U128
    for i, n in enumerate(ISA_EXT_NAMES):
        yield (ISA_EXT, 0, i), "isa_ext", n, U64
    for i, n in enumerate(SBI_EXT_NAMES):
        yield (SBI_EXT, 0, i), "sbi_ext", n, U64
    for i, n in enumerate(("shmem_lo", "shmem_hi")):
        yield (SBI_STATE, 0, i), "sta", n, U64
    for slot, member in enumerate(FWFT_MEMBERS):
        for f, field in enumerate(FWFT_FIELDS):
            yield (SBI_STATE, 1, 3 * slot + f), "fwft", f"{member}.{field}", U64


_BY_KEY: Dict[_Key, Tuple[str, str, int]] = {key: (c, r, s) for key, c, r, s in _rows()}
_BY_NAME: Dict[Tuple[str, str], Tuple[_Key, int]] = {
    (c, r.lower()): (key, s) for key, (c, r, s) in _BY_KEY.items()}
_SIZE_SUFFIX = re.compile(r"^(.*)@u(\d+)$")


def make_id(reg_type: int, index: int, subtype: int = 0, size_code: int = U64) -> int:
    """``KVM_REG_RISCV | size | type | subtype | index``, e.g.
    ``make_id(CORE, 0)`` = 0x8030000002000000 (``core pc``)."""
    return KVM_REG_RISCV | size_code << 52 | reg_type << 24 | subtype << 16 | index


def reg_size(reg_id: int) -> int:
    """Value size in bytes of a ONE_REG id."""
    return 1 << ((reg_id >> 52) & 0xF)


def _key(reg_id: int) -> Optional[_Key]:
    if reg_id >> 56 != KVM_REG_RISCV >> 56 or (reg_id >> 32) & 0xFFFFF:
        return None
    reg_type, subtype = (reg_id >> 24) & 0xFF, (reg_id >> 16) & 0xFF
    if reg_type not in _SUBTYPED and subtype:
        return None
    return reg_type, subtype, reg_id & 0xFFFF


def short_name(reg_id: int) -> str:
    """``core pc`` style name of an id, ``0x...`` if it has none."""
    key = _key(reg_id)
    size_code = (reg_id >> 52) & 0xF
    if key is not None and key in _BY_KEY:
        cls, reg, natural = _BY_KEY[key]
        text = f"{cls} {reg}"
    elif key is not None and key[0] in (ISA_EXT, SBI_EXT) and key[1] in _MULTI.values():
        sub = next(n for n, v in _MULTI.items() if v == key[1])
        text = f"{'isa_ext' if key[0] == ISA_EXT else 'sbi_ext'} {sub} {key[2]}"
        natural = U64
    else:
        return f"0x{reg_id:016x}"
    return text if size_code == natural else f"{text}@u{8 << size_code}"


def parse_name(name: str) -> int:
    """ONE_REG id of a short name or a ``0x`` id; ValueError if unknown."""
    text = name.strip()
    if text.lower().startswith("0x"):
        return int(text, 16)
    size_code: Optional[int] = None
    match = _SIZE_SUFFIX.match(text)
    if match:
        text, bits = match.group(1), int(match.group(2))
        size_code = (bits // 8).bit_length() - 1
        if bits < 8 or 8 << size_code != bits:
            raise ValueError(f"no ONE_REG size of {bits} bits")
    words = text.lower().split()
    if len(words) == 3 and words[0] in ("isa_ext", "sbi_ext") and words[1] in _MULTI:
        reg_type = ISA_EXT if words[0] == "isa_ext" else SBI_EXT
        return make_id(reg_type, int(words[2], 0), _MULTI[words[1]],
                       U64 if size_code is None else size_code)
    found = _BY_NAME.get((words[0], words[1])) if len(words) == 2 else None
    if found is None:
        raise ValueError(f"unknown register {name!r}")
    (reg_type, subtype, index), natural = found
    return make_id(reg_type, index, subtype, natural if size_code is None else size_code)


def reg_id(reg: object) -> int:
    """An id given as an int or a name."""
    if isinstance(reg, int):
        return reg
    if isinstance(reg, str):
        return parse_name(reg)
    raise TypeError(f"register must be an int id or a name, not {type(reg).__name__}")
