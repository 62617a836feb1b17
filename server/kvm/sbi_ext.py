"""KVM SBI extension ids (``enum KVM_RISCV_SBI_EXT_ID``) and the FWFT features.

One row per KVM SBI extension id in uapi order: the SBI extension ids (EIDs)
it covers, whether it is available on a host (``available``, a condition;
unavailable means ONE_REG ENOENT and not listed), whether Linux enables it
at vCPU creation, how Linux handles its calls, and which ONE_REG SBI_STATE
subtype carries its state. Facts: ``arch/riscv/kvm/vcpu_sbi*.c``.

The FWFT table lists every feature the SBI spec defines; rows with a ONE_REG
slot are implemented by KVM. A feature's value lives in a field of a
per-vCPU hypervisor word (``hedeleg`` or ``henvcfg``); ``encodings`` map the
SBI value to the field bits, so get/set/reset are derived from the row.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from rvkvm.uapi.onereg import (  # noqa: F401  (STA_REGS, FWFT_FIELDS re-exported)
    FWFT_FIELDS,
    FWFT_MEMBERS,
    SBI_EXT_NAMES,
    STA_REGS,
)

from .conditions import ALWAYS, NEVER, Cond
from .errors import ENOTSUPP

SBI_BASE_EID = 0x10
SBI_IMPL_ID_KVM = 3

# Call handling by Linux KVM.
IN_KERNEL = "in-kernel"
FORWARDED = "forwarded"  # every call becomes KVM_EXIT_RISCV_SBI
PARTLY_FORWARDED = "partly-forwarded"  # some calls, or after in-kernel checks
SYSTEM_EVENT = "system-event"  # KVM_EXIT_SYSTEM_EVENT

# ONE_REG SBI_STATE subtypes.
STATE_STA = 0
STATE_FWFT = 1


@dataclass(frozen=True)
class SbiExt:
    kvm_id: int
    name: str
    eids: Tuple[Tuple[int, int], ...]  # inclusive ranges
    default_enabled: bool
    handling: str
    available: Cond = ALWAYS
    state_subtype: Optional[int] = None

    @property
    def uapi_name(self) -> str:
        return "KVM_RISCV_SBI_EXT_" + self.name

    def covers(self, eid: int) -> bool:
        return any(start <= eid <= end for start, end in self.eids)


def _one(eid: int) -> Tuple[Tuple[int, int], ...]:
    return ((eid, eid),)


SBI_EXTS: Tuple[SbiExt, ...] = (
    SbiExt(0, "V01", ((0x00, 0x08),), True, PARTLY_FORWARDED, ("host:sbi_v01",)),
    SbiExt(1, "TIME", _one(0x54494D45), True, IN_KERNEL),
    SbiExt(2, "IPI", _one(0x735049), True, IN_KERNEL),
    SbiExt(3, "RFENCE", _one(0x52464E43), True, IN_KERNEL),
    SbiExt(4, "SRST", _one(0x53525354), True, SYSTEM_EVENT),
    SbiExt(5, "HSM", _one(0x48534D), True, IN_KERNEL),
    SbiExt(6, "PMU", _one(0x504D55), True, IN_KERNEL, ("host:sbi_pmu",)),
    SbiExt(7, "EXPERIMENTAL", ((0x08000000, 0x08FFFFFF),), True, FORWARDED),
    SbiExt(8, "VENDOR", ((0x09000000, 0x09FFFFFF),), True, FORWARDED),
    # FIDs >= 3 were answered NOT_SUPPORTED in the kernel before 6.19
    # (ABI_CHANGES "dbcn_forward_all"); since, every FID is forwarded.
    SbiExt(9, "DBCN", _one(0x4442434E), False, FORWARDED),
    SbiExt(10, "STA", _one(0x535441), True, IN_KERNEL, ("host:sched_info",), STATE_STA),
    SbiExt(11, "SUSP", _one(0x53555350), False, PARTLY_FORWARDED),
    SbiExt(12, "FWFT", _one(0x46574654), True, IN_KERNEL, ALWAYS, STATE_FWFT),  # 6.18
    SbiExt(13, "MPXY", _one(0x4D505859), False, FORWARDED),  # 6.19
)

SBI_EXT_MAX = len(SBI_EXTS)

BY_NAME: Dict[str, SbiExt] = {row.name: row for row in SBI_EXTS}

# Order of KVM's internal extension table (vcpu_sbi.c ``sbi_ext[]``); it
# decides the order of SBI_STATE blocks in KVM_GET_REG_LIST (STA before FWFT).
KVM_TABLE_ORDER: Tuple[str, ...] = (
    "V01", "BASE", "TIME", "IPI", "RFENCE", "SRST", "HSM", "PMU",
    "DBCN", "SUSP", "STA", "FWFT", "MPXY", "EXPERIMENTAL", "VENDOR",
)

STA_SHMEM_DISABLED = (1 << 64) - 1


def by_name(name: str) -> SbiExt:
    """Row for a KVM SBI extension name (case-insensitive); KeyError if unknown."""
    return BY_NAME[name.upper()]


# SBI error codes (SBI v3.0 section 3).
SBI_SUCCESS = 0
SBI_ERR_FAILURE = -1
SBI_ERR_NOT_SUPPORTED = -2
SBI_ERR_INVALID_PARAM = -3
SBI_ERR_DENIED = -4
SBI_ERR_INVALID_ADDRESS = -5
SBI_ERR_ALREADY_AVAILABLE = -6
SBI_ERR_ALREADY_STARTED = -7
SBI_ERR_ALREADY_STOPPED = -8
SBI_ERR_NO_SHMEM = -9
SBI_ERR_INVALID_STATE = -10
SBI_ERR_BAD_RANGE = -11
SBI_ERR_TIMEOUT = -12
SBI_ERR_IO = -13
SBI_ERR_DENIED_LOCKED = -14

# Linux's sbi_err_map_linux_errno(), used by FWFT's ONE_REG paths; anything
# not listed (NOT_SUPPORTED, FAILURE, ...) becomes ENOTSUPP.
_SBI_TO_ERRNO: Dict[int, int] = {
    SBI_SUCCESS: 0,
    SBI_ERR_DENIED: errno.EPERM,
    SBI_ERR_DENIED_LOCKED: errno.EPERM,
    SBI_ERR_INVALID_PARAM: errno.EINVAL,
    SBI_ERR_INVALID_STATE: errno.EINVAL,
    SBI_ERR_BAD_RANGE: errno.ERANGE,
    SBI_ERR_INVALID_ADDRESS: errno.EFAULT,
    SBI_ERR_NO_SHMEM: errno.ENOMEM,
    SBI_ERR_TIMEOUT: errno.ETIMEDOUT,
    SBI_ERR_IO: errno.EIO,
}


def sbi_error_to_errno(sbi_error: int) -> int:
    return _SBI_TO_ERRNO.get(sbi_error, ENOTSUPP)


# ---------------------------------------------------------------------------
# FWFT (SBI v3.0 Firmware Features)

FWFT_SET_FLAG_LOCK = 1
# ONE_REG fields of each implemented feature, in struct kvm_riscv_sbi_fwft order.

HEDELEG_MISALIGNED = (1 << 4) | (1 << 6)  # load/store misaligned causes
ENVCFG_PMM = 3 << 32
ENVCFG_PMM_PMLEN_7 = 2 << 32
ENVCFG_PMM_PMLEN_16 = 3 << 32
ENVCFG_ADUE = 1 << 61


@dataclass(frozen=True)
class FwftEncoding:
    value: int  # SBI-visible value
    bits: int  # field bits in the hypervisor word
    requires: Cond = ALWAYS  # host support for this particular value


@dataclass(frozen=True)
class FwftFeature:
    feature_id: int
    name: str  # SBI spec name
    onereg: Optional[str] = None  # ONE_REG struct member; None: not implemented by KVM
    slot: Optional[int] = None  # ONE_REG index = 3 * slot + field
    exists: Cond = NEVER  # kernel ABI condition for KVM implementing it
    supported: Cond = NEVER  # per-vCPU support condition
    word: str = ""  # "hedeleg" or "henvcfg"
    mask: int = 0
    encodings: Tuple[FwftEncoding, ...] = ()
    # Value reported for field bits matching no encoding; None: SBI FAILURE.
    decode_other: Optional[int] = None
    reset_value: int = 0

    def decode(self, bits: int) -> Optional[int]:
        """SBI value of the field ``bits`` (already masked); None: SBI FAILURE."""
        for enc in self.encodings:
            if enc.bits == bits:
                return enc.value
        return self.decode_other

    def first_reg(self) -> int:
        if self.slot is None:
            raise ValueError(f"{self.name} has no ONE_REG registers")
        return 3 * self.slot


FWFT_FEATURES: Tuple[FwftFeature, ...] = (
    FwftFeature(
        0, "MISALIGNED_EXC_DELEG", "misaligned_deleg", 0,
        exists=ALWAYS,
        supported=("host:misaligned_deleg",),
        word="hedeleg",
        mask=HEDELEG_MISALIGNED,
        encodings=(FwftEncoding(0, 0), FwftEncoding(1, HEDELEG_MISALIGNED)),
        # get reports 1 only when both causes are delegated
        decode_other=0,
    ),
    FwftFeature(1, "LANDING_PAD"),
    FwftFeature(2, "SHADOW_STACK"),
    FwftFeature(3, "DOUBLE_TRAP"),
    FwftFeature(
        4, "PTE_AD_HW_UPDATING", "pte_ad_hw_updating", 2,
        exists=("abi:fwft_pte_ad",),
        # switchable only when both behaviours exist for the guest
        supported=("isa:SVADU", "isa:SVADE"),
        word="henvcfg",
        mask=ENVCFG_ADUE,
        encodings=(FwftEncoding(0, 0), FwftEncoding(1, ENVCFG_ADUE)),
    ),
    FwftFeature(
        5, "POINTER_MASKING_PMLEN", "pointer_masking", 1,
        exists=ALWAYS,
        # Seed rule: only for a guest with Smnpm (host Ssnpm), and only if
        # henvcfg.PMM accepts at least one PMLEN on this host.
        supported=("isa:SMNPM", "host:pmlen7|host:pmlen16"),
        word="henvcfg",
        mask=ENVCFG_PMM,
        encodings=(
            FwftEncoding(0, 0),
            FwftEncoding(7, ENVCFG_PMM_PMLEN_7, ("host:pmlen7",)),
            FwftEncoding(16, ENVCFG_PMM_PMLEN_16, ("host:pmlen16",)),
        ),
    ),
)

FWFT_BY_ID: Dict[int, FwftFeature] = {f.feature_id: f for f in FWFT_FEATURES}
FWFT_BY_ONEREG: Dict[str, FwftFeature] = {
    f.onereg: f for f in FWFT_FEATURES if f.onereg is not None
}


def fwft_reg_name(feature: FwftFeature, field_index: int) -> str:
    """``pointer_masking.enable`` style name of one FWFT ONE_REG register."""
    return f"{feature.onereg}.{FWFT_FIELDS[field_index]}"


def _check_tables() -> None:
    if tuple(row.name for row in SBI_EXTS) != SBI_EXT_NAMES:
        raise AssertionError("SBI_EXTS rows must follow enum KVM_RISCV_SBI_EXT_ID (rvkvm.uapi)")
    members = tuple(f.onereg for f in sorted(FWFT_FEATURES, key=lambda f: f.slot or 0)
                    if f.slot is not None)
    if members != FWFT_MEMBERS:
        raise AssertionError("FWFT slots must follow struct kvm_riscv_sbi_fwft (rvkvm.uapi)")
    for expected_id, row in enumerate(SBI_EXTS):
        if row.kvm_id != expected_id:
            raise AssertionError(f"SBI_EXTS not contiguous at {row.name}")
    if set(BY_NAME) - set(KVM_TABLE_ORDER):
        raise AssertionError("SBI extension missing from KVM_TABLE_ORDER")
    slots = [f.slot for f in FWFT_FEATURES if f.slot is not None]
    if sorted(slots) != list(range(len(slots))):
        raise AssertionError("FWFT ONE_REG slots must be dense")


_check_tables()
