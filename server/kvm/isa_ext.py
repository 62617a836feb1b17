"""KVM ISA extension ids (``enum KVM_RISCV_ISA_EXT_ID``), one row each.

Order and values are ABI (append-only, uapi ``asm/kvm.h``). Which ids exist
is a kernel-profile property (``KVM_RISCV_ISA_EXT_MAX``); a row's rules say:

* ``host``: the host ISA extension that must be present for the ONE_REG
  register to exist (otherwise ENOENT, not listed). Equal to the guest name
  except SMNPM, which needs host Ssnpm: the hypervisor realises the guest's
  "M-mode" pointer masking for S-mode with ``henvcfg.PMM`` (Ssnpm).
* ``enable`` / ``disable``: when userspace may switch the extension on/off
  before the first KVM_RUN (otherwise EINVAL). Conditions use the atoms of
  ``conditions``; rules follow ``arch/riscv/kvm/isa.c``
  (``kvm_riscv_isa_enable_allowed`` / ``kvm_riscv_isa_disable_allowed``).
* ``letter``: the single-letter bit of CONFIG ``isa`` the row stands for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from rvkvm.uapi.onereg import ISA_EXT_NAMES

from .conditions import ALWAYS, NEVER, Cond


@dataclass(frozen=True)
class IsaExt:
    kvm_id: int
    name: str
    host: str
    enable: Cond = ALWAYS
    disable: Cond = NEVER
    letter: Optional[str] = None

    @property
    def uapi_name(self) -> str:
        return "KVM_RISCV_ISA_EXT_" + self.name


_TOGGLE = ALWAYS  # "may disable" for extensions the hypervisor can hide


def _row(
    kvm_id: int,
    name: str,
    *,
    enable: Cond = ALWAYS,
    disable: Cond = NEVER,
    host: Optional[str] = None,
) -> IsaExt:
    letter = name.lower() if len(name) == 1 else None
    return IsaExt(kvm_id, name, host or name.lower(), enable, disable, letter)


ISA_EXTS: Tuple[IsaExt, ...] = (
    _row(0, "A"),
    _row(1, "C"),
    _row(2, "D", disable=_TOGGLE),
    _row(3, "F", disable=_TOGGLE),
    # No nested virtualisation: H can never be enabled.
    _row(4, "H", enable=NEVER, disable=_TOGGLE),
    _row(5, "I"),
    _row(6, "M"),
    _row(7, "SVPBMT", disable=_TOGGLE),
    _row(8, "SSTC"),
    _row(9, "SVINVAL"),
    _row(10, "ZIHINTPAUSE"),
    _row(11, "ZICBOM", disable=_TOGGLE),
    _row(12, "ZICBOZ", disable=_TOGGLE),
    _row(13, "ZBB"),
    # The AIA CSRs can only be hidden from the guest through Smstateen.
    _row(14, "SSAIA", disable=("host:smstateen",)),
    _row(15, "V", enable=("host:user_vector",), disable=_TOGGLE),
    _row(16, "SVNAPOT"),
    _row(17, "ZBA"),
    _row(18, "ZBS"),
    _row(19, "ZICNTR"),
    _row(20, "ZICSR"),
    _row(21, "ZIFENCEI"),
    _row(22, "ZIHPM"),
    _row(23, "SMSTATEEN", disable=_TOGGLE),
    _row(24, "ZICOND"),
    _row(25, "ZBC"),
    _row(26, "ZBKB"),
    _row(27, "ZBKC"),
    _row(28, "ZBKX"),
    _row(29, "ZKND"),
    _row(30, "ZKNE"),
    _row(31, "ZKNH"),
    _row(32, "ZKR"),
    _row(33, "ZKSED"),
    _row(34, "ZKSH"),
    _row(35, "ZKT"),
    _row(36, "ZVBB"),
    _row(37, "ZVBC"),
    _row(38, "ZVKB"),
    _row(39, "ZVKG"),
    _row(40, "ZVKNED"),
    _row(41, "ZVKNHA"),
    _row(42, "ZVKNHB"),
    _row(43, "ZVKSED"),
    _row(44, "ZVKSH"),
    _row(45, "ZVKT"),
    _row(46, "ZFH"),
    _row(47, "ZFHMIN"),
    _row(48, "ZIHINTNTL"),
    _row(49, "ZVFH"),
    _row(50, "ZVFHMIN"),
    _row(51, "ZFA"),
    _row(52, "ZTSO"),
    _row(53, "ZACAS"),
    # Sscofpmf depends on the interrupt filtering defined by Ssaia.
    _row(54, "SSCOFPMF", enable=("host:ssaia",)),
    _row(55, "ZIMOP"),
    _row(56, "ZCA"),
    _row(57, "ZCB"),
    _row(58, "ZCD"),
    _row(59, "ZCF"),
    _row(60, "ZCMOP"),
    _row(61, "ZAWRS"),
    # Seed rule: guest Smnpm is backed by host Ssnpm (henvcfg.PMM). 6.13 could
    # not disable it; since the FWFT pointer-masking series (6.18) disabling it
    # is how a VMM hides POINTER_MASKING_PMLEN (see profiles, abi flags).
    _row(62, "SMNPM", host="ssnpm", disable=("abi:smnpm_disable",)),
    # Guest U-mode masking via senvcfg.PMM cannot be hidden without trapping.
    _row(63, "SSNPM"),
    # Svade can only be turned off if hardware A/D updating (Svadu) works.
    _row(64, "SVADE", disable=("host:hw_pte_ad",)),
    _row(65, "SVADU", enable=("host:hw_pte_ad",), disable=_TOGGLE),
    _row(66, "SVVPTC"),
    _row(67, "ZABHA"),
    _row(68, "ZICCRSE"),
    _row(69, "ZAAMO"),
    _row(70, "ZALRSC"),
    _row(71, "ZICBOP"),
    _row(72, "ZFBFMIN"),
    _row(73, "ZVFBFMIN"),
    _row(74, "ZVFBFWMA"),
    _row(75, "ZCLSD", disable=_TOGGLE),
    _row(76, "ZILSD", disable=_TOGGLE),
    _row(77, "ZALASR"),
)

# Newest KVM_RISCV_ISA_EXT_MAX known to the table; profiles cut it shorter.
ISA_EXT_MAX = len(ISA_EXTS)

BY_NAME: Dict[str, IsaExt] = {row.name: row for row in ISA_EXTS}

# Single letters that have a KVM id, keyed by bit number of CONFIG ``isa``.
BY_LETTER_BIT: Dict[int, IsaExt] = {
    ord(row.letter) - ord("a"): row for row in ISA_EXTS if row.letter is not None
}


def by_name(name: str) -> IsaExt:
    """Row for a KVM ISA extension name (case-insensitive); KeyError if unknown."""
    return BY_NAME[name.upper()]


def _check_table() -> None:
    if tuple(row.name for row in ISA_EXTS) != ISA_EXT_NAMES:
        raise AssertionError("ISA_EXTS rows must follow enum KVM_RISCV_ISA_EXT_ID (rvkvm.uapi)")
    for expected_id, row in enumerate(ISA_EXTS):
        if row.kvm_id != expected_id:
            raise AssertionError(f"ISA_EXTS not contiguous at {row.name}")
    if len(BY_NAME) != len(ISA_EXTS):
        raise AssertionError("duplicate ISA extension name")


_check_table()
