"""ONE_REG register ids in the exact Linux RISC-V encoding, and their names
(``arch/riscv/include/uapi/asm/kvm.h``): the one copy of these facts that the
server and the clients share.

An id is a u64::

    63..56 arch (KVM_REG_RISCV = 0x80)   55..52 size code (bytes = 1 << code)
    51..32 unused (non-zero lands in KVM's register number: ENOENT)
    31..24 type    23..16 subtype    15..0 index

Names come in two forms:

* ``name_of(id)``: what the KVM selftest ``get-reg-list`` prints for the id,
  e.g. ``KVM_REG_RISCV | KVM_REG_SIZE_U64 | KVM_REG_RISCV_CORE |
  KVM_REG_RISCV_CORE_REG(regs.pc)`` (without the tab and trailing comma).
* ``short_name(id)``: ``core pc``, ``csr sstatus``, ``isa_ext SMNPM``,
  ``sbi_ext FWFT``, ``fwft pointer_masking.enable``, ``vector v3@u256``; a
  size other than the register's natural one is appended as ``@u<bits>``
  and ids without a name are written as ``0x<16 hex digits>``.

``parse_name`` reads both forms (the Linux form for named registers).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum
from typing import Dict, Optional, Tuple

KVM_REG_ARCH_MASK = 0xFF00_0000_0000_0000
KVM_REG_RISCV = 0x8000_0000_0000_0000
KVM_REG_SIZE_SHIFT = 52
KVM_REG_SIZE_MASK = 0x00F0_0000_0000_0000
KVM_REG_RISCV_TYPE_SHIFT = 24
KVM_REG_RISCV_TYPE_MASK = 0x0000_0000_FF00_0000
KVM_REG_RISCV_SUBTYPE_SHIFT = 16
KVM_REG_RISCV_SUBTYPE_MASK = 0x0000_0000_00FF_0000
INDEX_MASK = 0xFFFF
RESERVED_SHIFT = 32
RESERVED_MASK = 0x000F_FFFF_0000_0000

ARCH_RISCV = KVM_REG_RISCV >> 56
U64_MASK = (1 << 64) - 1


class Size(IntEnum):
    """KVM_REG_SIZE_* codes (bytes = 1 << code)."""

    U8 = 0
    U16 = 1
    U32 = 2
    U64 = 3
    U128 = 4
    U256 = 5
    U512 = 6
    U1024 = 7
    U2048 = 8


SIZE_ULONG = Size.U64  # rv64 host


class RegType(IntEnum):
    CONFIG = 1
    CORE = 2
    CSR = 3
    TIMER = 4
    FP_F = 5
    FP_D = 6
    ISA_EXT = 7
    SBI_EXT = 8
    VECTOR = 9
    SBI_STATE = 10


class CsrSubtype(IntEnum):
    GENERAL = 0
    AIA = 1
    SMSTATEEN = 2


class ExtSubtype(IntEnum):
    """Subtypes of ISA_EXT and SBI_EXT."""

    SINGLE = 0
    MULTI_EN = 1
    MULTI_DIS = 2


class SbiStateSubtype(IntEnum):
    STA = 0
    FWFT = 1


# Classes whose subtype field KVM interprets; for the others it is part of
# the register number.
SUBTYPED = frozenset({RegType.CSR, RegType.ISA_EXT, RegType.SBI_EXT, RegType.SBI_STATE})

# uapi struct layouts: register names by index.
CONFIG_REGS: Tuple[str, ...] = (
    "isa", "zicbom_block_size", "mvendorid", "marchid", "mimpid",
    "zicboz_block_size", "satp_mode", "zicbop_block_size",
)
CORE_REGS: Tuple[str, ...] = tuple(
    "regs." + n
    for n in (
        "pc ra sp gp tp t0 t1 t2 s0 s1 a0 a1 a2 a3 a4 a5 a6 a7 "
        "s2 s3 s4 s5 s6 s7 s8 s9 s10 s11 t3 t4 t5 t6"
    ).split()
) + ("mode",)
CORE_MODE = 32
CSR_GENERAL_REGS: Tuple[str, ...] = (
    "sstatus", "sie", "stvec", "sscratch", "sepc", "scause", "stval",
    "sip", "satp", "scounteren", "senvcfg",
)
CSR_AIA_REGS: Tuple[str, ...] = (
    "siselect", "iprio1", "iprio2", "sieh", "siph", "iprio1h", "iprio2h",
)
CSR_SMSTATEEN_REGS: Tuple[str, ...] = ("sstateen0",)
CSR_REGS: Dict[int, Tuple[str, ...]] = {
    CsrSubtype.GENERAL: CSR_GENERAL_REGS,
    CsrSubtype.AIA: CSR_AIA_REGS,
    CsrSubtype.SMSTATEEN: CSR_SMSTATEEN_REGS,
}
TIMER_REGS: Tuple[str, ...] = ("frequency", "time", "compare", "state")
FP_FCSR = 32
FP_REGS: Tuple[str, ...] = tuple(f"f[{i}]" for i in range(32)) + ("fcsr",)
VECTOR_CSR_REGS: Tuple[str, ...] = ("vstart", "vl", "vtype", "vcsr", "vlenb")
VECTOR_DATAP = 5  # struct member ``datap``: never a register
VECTOR_REG_BASE = 6

# enum KVM_RISCV_ISA_EXT_ID, in order (the index is the ONE_REG index); the
# uapi name is ``KVM_RISCV_ISA_EXT_`` + name. Append-only ABI.
ISA_EXT_NAMES: Tuple[str, ...] = tuple((
    "A C D F H I M SVPBMT SSTC SVINVAL ZIHINTPAUSE ZICBOM ZICBOZ ZBB SSAIA V SVNAPOT ZBA ZBS "
    "ZICNTR ZICSR ZIFENCEI ZIHPM SMSTATEEN ZICOND ZBC ZBKB ZBKC ZBKX ZKND ZKNE ZKNH ZKR ZKSED "
    "ZKSH ZKT ZVBB ZVBC ZVKB ZVKG ZVKNED ZVKNHA ZVKNHB ZVKSED ZVKSH ZVKT ZFH ZFHMIN ZIHINTNTL "
    "ZVFH ZVFHMIN ZFA ZTSO ZACAS SSCOFPMF ZIMOP ZCA ZCB ZCD ZCF ZCMOP ZAWRS SMNPM SSNPM SVADE "
    "SVADU SVVPTC ZABHA ZICCRSE ZAAMO ZALRSC ZICBOP ZFBFMIN ZVFBFMIN ZVFBFWMA ZCLSD ZILSD ZALASR"
).split())
# enum KVM_RISCV_SBI_EXT_ID, in order; uapi name ``KVM_RISCV_SBI_EXT_`` + name.
SBI_EXT_NAMES: Tuple[str, ...] = tuple(
    "V01 TIME IPI RFENCE SRST HSM PMU EXPERIMENTAL VENDOR DBCN STA SUSP FWFT MPXY".split())
# struct kvm_riscv_sbi_sta, SBI_STATE subtype STA.
STA_REGS: Tuple[str, ...] = ("shmem_lo", "shmem_hi")
# struct kvm_riscv_sbi_fwft: one struct kvm_riscv_sbi_fwft_feature per
# member, in order, each of the fields below (SBI_STATE subtype FWFT, index
# = 3 * member + field).
FWFT_MEMBERS: Tuple[str, ...] = ("misaligned_deleg", "pointer_masking", "pte_ad_hw_updating")
FWFT_FIELDS: Tuple[str, ...] = ("enable", "flags", "value")
ISA_MULTI_REG_LAST = (len(ISA_EXT_NAMES) - 1) // 64
SBI_MULTI_REG_LAST = (len(SBI_EXT_NAMES) - 1) // 64


def fwft_reg_index(member: str, field: str) -> int:
    """ONE_REG index of ``member.field`` in struct kvm_riscv_sbi_fwft."""
    return len(FWFT_FIELDS) * FWFT_MEMBERS.index(member) + FWFT_FIELDS.index(field)


@dataclass(frozen=True)
class RegId:
    """The fields of a ONE_REG id."""

    reg_type: int
    index: int
    subtype: int = 0
    size_code: int = SIZE_ULONG
    reserved: int = 0  # bits 51..32
    arch: int = ARCH_RISCV

    @property
    def size(self) -> int:
        """Register size in bytes (KVM_REG_SIZE)."""
        return 1 << self.size_code

    @property
    def raw(self) -> int:
        return (
            (self.arch << 56)
            | (self.size_code << KVM_REG_SIZE_SHIFT)
            | (self.reserved << RESERVED_SHIFT)
            | (self.reg_type << KVM_REG_RISCV_TYPE_SHIFT)
            | (self.subtype << KVM_REG_RISCV_SUBTYPE_SHIFT)
            | self.index
        )

    @property
    def offset(self) -> int:
        """KVM's ``reg_num`` before a subtype split: id & ~(arch|size|type)."""
        return self.raw & ~(KVM_REG_ARCH_MASK | KVM_REG_SIZE_MASK | KVM_REG_RISCV_TYPE_MASK)

    @property
    def subtype_offset(self) -> int:
        """KVM's ``reg_num`` after the subtype bits are split off."""
        return self.offset & ~KVM_REG_RISCV_SUBTYPE_MASK

    @property
    def number(self) -> int:
        """The register number KVM dispatches on within this id's class."""
        return self.subtype_offset if self.reg_type in SUBTYPED else self.offset


def make_id(
    reg_type: int,
    index: int,
    subtype: int = 0,
    size_code: int = SIZE_ULONG,
    *,
    reserved: int = 0,
    arch: int = ARCH_RISCV,
) -> int:
    """Compose a ONE_REG id; raises ValueError for a field out of range."""
    for name, value, limit in (
        ("reg_type", reg_type, 0xFF),
        ("index", index, INDEX_MASK),
        ("subtype", subtype, 0xFF),
        ("size_code", size_code, 0xF),
        ("reserved", reserved, RESERVED_MASK >> RESERVED_SHIFT),
        ("arch", arch, 0xFF),
    ):
        if not 0 <= value <= limit:
            raise ValueError(f"{name} {value!r} out of range 0..{limit:#x}")
    return RegId(reg_type, index, subtype, size_code, reserved, arch).raw


def decode_id(reg_id: int) -> RegId:
    """Split a 64-bit ONE_REG id into its fields (any u64 decodes)."""
    if not 0 <= reg_id <= U64_MASK:
        raise ValueError(f"ONE_REG id {reg_id!r} is not a u64")
    return RegId(
        reg_type=(reg_id & KVM_REG_RISCV_TYPE_MASK) >> KVM_REG_RISCV_TYPE_SHIFT,
        index=reg_id & INDEX_MASK,
        subtype=(reg_id & KVM_REG_RISCV_SUBTYPE_MASK) >> KVM_REG_RISCV_SUBTYPE_SHIFT,
        size_code=(reg_id & KVM_REG_SIZE_MASK) >> KVM_REG_SIZE_SHIFT,
        reserved=(reg_id & RESERVED_MASK) >> RESERVED_SHIFT,
        arch=reg_id >> 56,
    )


def reg_size(reg_id: int) -> int:
    """KVM_REG_SIZE(id): the value size in bytes."""
    return 1 << ((reg_id & KVM_REG_SIZE_MASK) >> KVM_REG_SIZE_SHIFT)


# ---------------------------------------------------------------------------
# Register catalogue: (type, subtype, index) -> (short class, short name,
# natural size, Linux class text, Linux register text).

_Key = Tuple[int, int, int]


@dataclass(frozen=True)
class _Named:
    short_class: str
    short_reg: str
    natural_size: int
    linux_reg: str


def _catalogue() -> Dict[_Key, _Named]:
    cat: Dict[_Key, _Named] = {}

    def add(key: _Key, cls: str, reg: str, size: int, linux: str) -> None:
        cat[key] = _Named(cls, reg, size, linux)

    for i, n in enumerate(CONFIG_REGS):
        add((RegType.CONFIG, 0, i), "config", n, SIZE_ULONG, f"KVM_REG_RISCV_CONFIG_REG({n})")
    for i, n in enumerate(CORE_REGS):
        add((RegType.CORE, 0, i), "core", n.replace("regs.", ""), SIZE_ULONG,
            f"KVM_REG_RISCV_CORE_REG({n})")
    for sub, regs in CSR_REGS.items():
        prefix = "KVM_REG_RISCV_CSR_" + CsrSubtype(sub).name
        for i, n in enumerate(regs):
            add((RegType.CSR, sub, i), "csr", n, SIZE_ULONG,
                f"{prefix} | KVM_REG_RISCV_CSR_REG({n})")
    for i, n in enumerate(TIMER_REGS):
        add((RegType.TIMER, 0, i), "timer", n, Size.U64, f"KVM_REG_RISCV_TIMER_REG({n})")
    fp_classes = ((RegType.FP_F, "fp_f", Size.U32), (RegType.FP_D, "fp_d", Size.U64))
    for reg_type, cls, f_size in fp_classes:
        for i, n in enumerate(FP_REGS):
            short = "fcsr" if i == FP_FCSR else f"f{i}"
            size = Size.U32 if i == FP_FCSR else f_size
            add((reg_type, 0, i), cls, short, size, f"KVM_REG_RISCV_{cls.upper()}_REG({n})")
    for i, n in enumerate(VECTOR_CSR_REGS):
        add((RegType.VECTOR, 0, i), "vector", n, SIZE_ULONG, f"KVM_REG_RISCV_VECTOR_CSR_REG({n})")
    for v in range(32):
        add((RegType.VECTOR, 0, VECTOR_REG_BASE + v), "vector", f"v{v}", Size.U128,
            f"KVM_REG_RISCV_VECTOR_REG({v})")
    for ext_type, cls, names in (
        (RegType.ISA_EXT, "isa_ext", ISA_EXT_NAMES),
        (RegType.SBI_EXT, "sbi_ext", SBI_EXT_NAMES),
    ):
        kind = "ISA" if ext_type == RegType.ISA_EXT else "SBI"
        for i, n in enumerate(names):
            add((ext_type, ExtSubtype.SINGLE, i), cls, n, SIZE_ULONG,
                f"KVM_REG_RISCV_{kind}_SINGLE | KVM_RISCV_{kind}_EXT_{n}")
    for i, n in enumerate(STA_REGS):
        add((RegType.SBI_STATE, SbiStateSubtype.STA, i), "sta", n, SIZE_ULONG,
            f"KVM_REG_RISCV_SBI_STA | KVM_REG_RISCV_SBI_STA_REG({n})")
    for member in FWFT_MEMBERS:
        for field in FWFT_FIELDS:
            n = f"{member}.{field}"
            add((RegType.SBI_STATE, SbiStateSubtype.FWFT, fwft_reg_index(member, field)), "fwft",
                n, SIZE_ULONG, f"KVM_REG_RISCV_SBI_FWFT | KVM_REG_RISCV_SBI_FWFT_REG({n})")
    return cat


_CATALOGUE = _catalogue()
_SHORT_LOOKUP: Dict[Tuple[str, str], _Key] = {
    (named.short_class, named.short_reg.lower()): key for key, named in _CATALOGUE.items()
}
if len(_SHORT_LOOKUP) != len(_CATALOGUE):
    raise AssertionError("short register names must be unique")
_MULTI_CLASSES = {"isa_ext": RegType.ISA_EXT, "sbi_ext": RegType.SBI_EXT}
_MULTI_SUBTYPES = {"multi_en": ExtSubtype.MULTI_EN, "multi_dis": ExtSubtype.MULTI_DIS}

_LINUX_SIZES: Dict[int, str] = {
    Size.U32: "KVM_REG_SIZE_U32",
    Size.U64: "KVM_REG_SIZE_U64",
    Size.U128: "KVM_REG_SIZE_U128",
    Size.U256: "KVM_REG_SIZE_U256",
}
_REG_MASK = KVM_REG_ARCH_MASK | KVM_REG_SIZE_MASK


def _linux_unknown_body(rid: RegId) -> str:
    """The selftest's text for an id of a known class that it cannot name."""
    reg_type = rid.reg_type
    off = rid.offset
    sub_bits = off & KVM_REG_RISCV_SUBTYPE_MASK
    sub_off = rid.subtype_offset
    if reg_type == RegType.CSR:
        if rid.subtype in CSR_REGS:
            return f"KVM_REG_RISCV_CSR_{CsrSubtype(rid.subtype).name} | {sub_off} /* UNKNOWN */"
        return f"{sub_bits} | {sub_off} /* UNKNOWN */"
    if reg_type in (RegType.ISA_EXT, RegType.SBI_EXT):
        kind = "ISA" if reg_type == RegType.ISA_EXT else "SBI"
        last = ISA_MULTI_REG_LAST if reg_type == RegType.ISA_EXT else SBI_MULTI_REG_LAST
        if rid.subtype == ExtSubtype.SINGLE:
            return f"KVM_REG_RISCV_{kind}_SINGLE | {sub_off} /* UNKNOWN */"
        if rid.subtype in (ExtSubtype.MULTI_EN, ExtSubtype.MULTI_DIS):
            unknown = " /* UNKNOWN */" if sub_off > last else ""
            return f"KVM_REG_RISCV_{kind}_{ExtSubtype(rid.subtype).name} | {sub_off}{unknown}"
        return f"{sub_bits} | {sub_off} /* UNKNOWN */"
    if reg_type == RegType.SBI_STATE:
        if rid.subtype in (SbiStateSubtype.STA, SbiStateSubtype.FWFT):
            name = SbiStateSubtype(rid.subtype).name
            return f"KVM_REG_RISCV_SBI_{name} | {sub_off} /* UNKNOWN */"
        return f"{sub_bits} | {sub_off} /* UNKNOWN */"
    return f"{off} /* UNKNOWN */"


def _lookup(rid: RegId) -> Optional[_Named]:
    if rid.arch != ARCH_RISCV or rid.reserved:
        return None
    if rid.reg_type not in SUBTYPED and rid.subtype:
        return None
    return _CATALOGUE.get((rid.reg_type, rid.subtype, rid.index))


def name_of(reg_id: int) -> str:
    """The name the KVM selftest get-reg-list prints for ``reg_id``."""
    rid = decode_id(reg_id)
    if rid.arch != ARCH_RISCV:
        return f"0x{reg_id:x} /* not KVM_REG_RISCV */"
    size = _LINUX_SIZES.get(rid.size_code)
    if size is None:
        return (f"KVM_REG_RISCV | ({rid.size_code} << KVM_REG_SIZE_SHIFT) | "
                f"0x{reg_id & ~_REG_MASK:x} /* UNKNOWN */")
    try:
        type_name = RegType(rid.reg_type).name
    except ValueError:
        return f"KVM_REG_RISCV | {size} | 0x{reg_id & ~_REG_MASK:x} /* UNKNOWN */"
    named = _lookup(rid)
    body = named.linux_reg if named is not None else _linux_unknown_body(rid)
    return f"KVM_REG_RISCV | {size} | KVM_REG_RISCV_{type_name} | {body}"


def short_name(reg_id: int) -> str:
    """Short human name of ``reg_id`` (see module docstring)."""
    rid = decode_id(reg_id)
    named = _lookup(rid)
    if named is not None:
        text = f"{named.short_class} {named.short_reg}"
        natural = named.natural_size
    elif (
        rid.arch == ARCH_RISCV
        and not rid.reserved
        and rid.reg_type in (RegType.ISA_EXT, RegType.SBI_EXT)
        and rid.subtype in (ExtSubtype.MULTI_EN, ExtSubtype.MULTI_DIS)
    ):
        cls = "isa_ext" if rid.reg_type == RegType.ISA_EXT else "sbi_ext"
        text = f"{cls} {ExtSubtype(rid.subtype).name.lower()} {rid.index}"
        natural = SIZE_ULONG
    else:
        return f"0x{reg_id:016x}"
    if rid.size_code != natural:
        text += f"@u{8 << rid.size_code}"
    return text


_SIZE_SUFFIX = re.compile(r"^(.*)@u(\d+)$")


def _size_code_of_bits(bits: int) -> int:
    for code in range(16):
        if 8 << code == bits:
            return code
    raise ValueError(f"no ONE_REG size of {bits} bits")


def _parse_short(text: str) -> int:
    size_code: Optional[int] = None
    match = _SIZE_SUFFIX.match(text)
    if match:
        text, size_code = match.group(1), _size_code_of_bits(int(match.group(2)))
    words = text.split()
    lowered = [w.lower() for w in words]
    if len(words) == 3 and lowered[0] in _MULTI_CLASSES and lowered[1] in _MULTI_SUBTYPES:
        return make_id(_MULTI_CLASSES[lowered[0]], int(words[2], 0), _MULTI_SUBTYPES[lowered[1]],
                       SIZE_ULONG if size_code is None else size_code)
    if len(words) != 2:
        raise ValueError(f"cannot parse register name {text!r}")
    key = _SHORT_LOOKUP.get((lowered[0], lowered[1]))
    if key is None:
        raise ValueError(f"unknown register {text!r}")
    reg_type, subtype, index = key
    natural = _CATALOGUE[key].natural_size
    return make_id(reg_type, index, subtype, natural if size_code is None else size_code)


_LINUX_LOOKUP: Dict[str, int] = {}


def _parse_linux(text: str) -> int:
    if not _LINUX_LOOKUP:
        for (reg_type, subtype, index) in _CATALOGUE:
            for code in _LINUX_SIZES:
                reg_id = make_id(reg_type, index, subtype, code)
                _LINUX_LOOKUP[name_of(reg_id)] = reg_id
    found = _LINUX_LOOKUP.get(" ".join(text.rstrip(",").split()))
    if found is None:
        raise ValueError(f"not a named Linux ONE_REG register: {text!r}")
    return found


def parse_name(name: str) -> int:
    """ONE_REG id for a short name, a ``0x`` id, or a Linux selftest name."""
    text = name.strip()
    if text.lower().startswith("0x"):
        reg_id = int(text, 16)
        decode_id(reg_id)
        return reg_id
    if text.startswith("KVM_REG_RISCV "):
        return _parse_linux(text)
    return _parse_short(text)


def reg_id(reg: object) -> int:
    """An id given as an int or as a name (see ``parse_name``)."""
    if isinstance(reg, int):
        return reg
    if isinstance(reg, str):
        return parse_name(reg)
    raise TypeError(f"register must be an int id or a name, not {type(reg).__name__}")
