"""Kernel ABI profiles, host profiles, and the extension rules they imply.

* ``KernelProfile``: which Linux KVM RISC-V ABI a VM follows: how many ISA
  and SBI extension ids exist, the kernel release whose behaviour it has,
  the SBI spec version KVM reports. ``linux-6.13``, ``linux-6.18`` and
  ``latest`` (mainline after 7.0; the default).
* ``HostProfile``: the emulated host hardware: its ISA extensions and the
  few host facts KVM consults (hardware A/D updating, PMLEN support, ...).
* ``VcpuConfig``: KVM's per-vCPU configuration state (enabled ISA/SBI
  extensions, FWFT bookkeeping, the "ran at least once" flag).
* ``Platform``: a kernel profile on a host; every enable/disable rule and
  its errno is decided here, from the tables in ``isa_ext``/``sbi_ext``.

Every behaviour that differs between the kernels is one row of
``ABI_CHANGES``: a flag, the release it first appeared in, the Linux file it
comes from. A profile has a flag iff its release is at least the row's, so
handlers ask ``kernel.has(flag)`` and never compare versions.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field, replace
from typing import Dict, FrozenSet, Iterable, List, Optional, Set, Tuple

from .conditions import Cond, holds
from .errors import KvmError
from .isa_ext import BY_LETTER_BIT, ISA_EXTS, IsaExt
from .sbi_ext import FWFT_FEATURES, SBI_EXTS, FwftEncoding, FwftFeature, SbiExt

DEFAULT_KERNEL = "latest"


@dataclass(frozen=True)
class AbiChange:
    """One behaviour of Linux KVM RISC-V, present from ``since`` on."""

    flag: str
    since: Tuple[int, int]  # first release (major, minor) with the behaviour
    source: str  # arch/riscv/kvm file and the change that made it
    summary: str  # the new behaviour (and what it was before)


# Releases after v7.0 are written (7, 1): merged after the v7.0 tag, so
# first released in 7.1; ``latest`` (mainline of that time) has them.
ABI_CHANGES: Tuple[AbiChange, ...] = (
    AbiChange("sbi_fid_not_supported", (6, 14),
              "vcpu_sbi_replace.c: Fix SBI TIME / SBI IPI error generation",
              "TIME and IPI answer an unknown FID with NOT_SUPPORTED (was INVALID_PARAM)"),
    AbiChange("ipi_mask_checked", (6, 14),
              "vcpu_sbi_replace.c: Fix SBI IPI error generation",
              "IPI with hart_mask_base != -1: INVALID_PARAM unless every mask bit named a "
              "vCPU; the scan stops at the first vCPU whose bit is >= XLEN (was SUCCESS)"),
    AbiChange("hsm_status_target_blocking", (6, 14),
              "vcpu_sbi_hsm.c: Fix hart suspend status check",
              "hart_get_status reports SUSPENDED when the *target* is blocked (was: when "
              "the caller was, which never holds during its own ecall)"),
    AbiChange("hsm_suspend_type_32bit", (6, 14),
              "vcpu_sbi_hsm.c: Fix hart suspend_type use",
              "hart_suspend compares only the low 32 bits of suspend_type (was all of a0)"),
    AbiChange("rfence_hfence_not_supported", (6, 16),
              "vcpu_sbi_replace.c: Don't treat SBI HFENCE calls as NOPs",
              "RFENCE FIDs 3-6 (hfence) answer NOT_SUPPORTED (was SUCCESS, no operation)"),
    AbiChange("mp_state_reset_cap", (6, 16),
              "vm.c/vcpu.c: add KVM_CAP_RISCV_MP_STATE_RESET",
              "KVM_ENABLE_CAP(MP_STATE_RESET) accepted, then MP_STATE INIT_RECEIVED resets "
              "the vCPU (was EINVAL for both)"),
    AbiChange("sbi_reset_enabled_only", (6, 16),
              "vcpu_sbi.c kvm_riscv_vcpu_sbi_reset: SBI extension reset callbacks",
              "a vCPU reset runs the STA/FWFT reset only if that extension is enabled "
              "(was: STA state reset unconditionally)"),
    AbiChange("scounteren_reset_zero", (6, 16),
              "vcpu.c kvm_riscv_vcpu_context_reset (vCPU reset fixes)",
              "a vCPU reset leaves the guest's scounteren 0 (was 7: CY, TM, IR)"),
    AbiChange("sbi_spec_3_0", (6, 18),
              "kvm_vcpu_sbi.h KVM_SBI_VERSION_MAJOR/MINOR",
              "BASE get_spec_version reports 3.0 (was 2.0)"),
    AbiChange("smnpm_disable", (6, 18),
              "vcpu_onereg.c (FWFT pointer-masking series)",
              "ISA_EXT SMNPM may be disabled through ONE_REG (was EINVAL)"),
    AbiChange("block_size_from_host", (6, 18),
              "vcpu_onereg.c",
              "CONFIG zicbo*_block_size exist iff the host has the extension (was: iff the "
              "vCPU had it)"),
    AbiChange("sbi_state_callbacks", (6, 18),
              "vcpu_sbi.c SBI_STATE callbacks (FWFT ONE_REG series)",
              "SBI_STATE goes through per-extension callbacks: owner extension must be "
              "enabled, bad index ENOENT (was: STA only, no enabled check, EINVAL)"),
    AbiChange("dbcn_forward_all", (6, 19),
              "vcpu_sbi_forward.c: Convert kvm_riscv_vcpu_sbi_forward() into extension handler",
              "DBCN forwards every FID to the VMM (was: FIDs >= 3 NOT_SUPPORTED in the kernel)"),
    AbiChange("fwft_pte_ad", (7, 1),
              "vcpu_sbi_fwft.c",
              "FWFT PTE_AD_HW_UPDATING exists (ONE_REG slot 2)"),
    AbiChange("fwft_support_dynamic", (7, 1),
              "vcpu_sbi_fwft.c",
              "FWFT support follows the current vCPU ISA, so disabling SMNPM hides "
              "POINTER_MASKING_PMLEN (was fixed at vCPU creation)"),
    AbiChange("fwft_flags_after_set", (7, 1),
              "vcpu_sbi_fwft.c kvm_sbi_fwft_set",
              "fwft_set records the flags only after the setter succeeded (6.18-7.0: "
              "before it, so a failing set with LOCK still locked the feature)"),
)

ABI_CHANGE_BY_FLAG: Dict[str, AbiChange] = {c.flag: c for c in ABI_CHANGES}


@dataclass(frozen=True)
class KernelProfile:
    name: str
    linux_version: Tuple[int, int, int]  # LINUX_VERSION_CODE (SBI impl version)
    release: Tuple[int, int]  # the release whose ABI_CHANGES rows apply
    isa_ext_max: int  # KVM_RISCV_ISA_EXT_MAX
    sbi_ext_max: int  # KVM_RISCV_SBI_EXT_MAX
    config_regs: int  # members of struct kvm_riscv_config

    @property
    def flags(self) -> FrozenSet[str]:
        return frozenset(c.flag for c in ABI_CHANGES if c.since <= self.release)

    def has(self, flag: str) -> bool:
        change = ABI_CHANGE_BY_FLAG.get(flag)
        if change is None:
            raise ValueError(f"unknown kernel behaviour flag {flag!r}")
        return change.since <= self.release

    @property
    def sbi_spec_version(self) -> Tuple[int, int]:
        return (3, 0) if self.has("sbi_spec_3_0") else (2, 0)

    @property
    def isa_multi_reg_last(self) -> int:
        return (self.isa_ext_max - 1) // 64

    @property
    def sbi_multi_reg_last(self) -> int:
        return (self.sbi_ext_max - 1) // 64

    @property
    def sbi_spec_version_value(self) -> int:
        """sbi_get_spec_version() result: major in bits 30:24, minor in 23:0."""
        major, minor = self.sbi_spec_version
        return (major << 24) | minor

    @property
    def sbi_impl_version(self) -> int:
        """KVM reports LINUX_VERSION_CODE as the SBI implementation version."""
        major, minor, patch = self.linux_version
        return (major << 16) | (minor << 8) | patch

    @property
    def isa_exts(self) -> Tuple[IsaExt, ...]:
        return ISA_EXTS[: self.isa_ext_max]

    @property
    def sbi_exts(self) -> Tuple[SbiExt, ...]:
        return SBI_EXTS[: self.sbi_ext_max]


KERNEL_PROFILES: Dict[str, KernelProfile] = {
    p.name: p
    for p in (
        # ISA ids up to SVADU (65) and SBI ids up to STA (10): the 6.14 uapi
        # update appended SVVPTC/ZABHA/ZICCRSE and SBI SUSP after them.
        # 6.13.0 as released: the March 2025 stable backports (6.13.y) of the
        # 6.14 SBI error fixes are not in it.
        KernelProfile("linux-6.13", (6, 13, 0), (6, 13), 66, 11, 7),
        KernelProfile("linux-6.18", (6, 18, 0), (6, 18), 75, 13, 8),
        # mainline after v7.0: LINUX_VERSION_CODE still 7.0.0 until 7.1-rc1
        KernelProfile("latest", (7, 0, 0), (7, 1), 78, 14, 8),
    )
}


def kernel_profile(name: str = DEFAULT_KERNEL) -> KernelProfile:
    try:
        return KERNEL_PROFILES[name]
    except KeyError:
        raise ValueError(
            "unknown kernel profile {!r} (known: {})".format(name, ", ".join(KERNEL_PROFILES))
        ) from None


# Host facts that are not ISA extensions.
HOST_CAPABILITIES = frozenset({
    "sbi_v01",  # host kernel built with SBI v0.1 support
    "sbi_pmu",  # host SBI PMU usable for guests
    "sched_info",  # scheduler statistics (SBI STA probe)
    "misaligned_deleg",  # firmware lets KVM delegate misaligned traps
    "pmlen7",  # henvcfg.PMM accepts PMLEN 7
    "pmlen16",  # henvcfg.PMM accepts PMLEN 16
})
# Capabilities Linux derives from the host ISA.
_DERIVED = {
    "hw_pte_ad": "svadu",  # arch_has_hw_pte_young()
    "user_vector": "v",  # riscv_v_vstate_ctrl_user_allowed()
}
# Host ISA names that exist on the host side only.
_HOST_ONLY_ISA = frozenset({"smnpm", "smmpm", "h"})
_KNOWN_HOST_ISA = frozenset(row.host for row in ISA_EXTS) | _HOST_ONLY_ISA

# What the emulator implements: rv64imafdc and the listed multi-letter
# extensions, plus what Linux infers from them (c -> zca, zcd; a -> zaamo,
# zalrsc) and Zicbop (prefetch hints are ORI no-ops).
_DEFAULT_HOST_ISA = frozenset(
    "i m a f d c zicsr zifencei zicntr zihintpause zba zbb zbc zbs zicond "
    "zicbom zicboz zicbop zawrs svpbmt svnapot svinval svadu sstc smnpm ssnpm "
    "zca zcd zaamo zalrsc".split()
)
_DEFAULT_HOST_CAPABILITIES = frozenset(
    {"sbi_v01", "sched_info", "misaligned_deleg", "pmlen7", "pmlen16"}
)

SATP_MODE_SV39 = 8
SATP_MODE_SV48 = 9
SATP_MODE_SV57 = 10


@dataclass(frozen=True)
class HostProfile:
    isa: FrozenSet[str]
    capabilities: FrozenSet[str]
    satp_mode: int = SATP_MODE_SV57
    timebase_frequency: int = 10_000_000
    cbom_block_size: int = 64
    cboz_block_size: int = 64
    cbop_block_size: int = 64
    mvendorid: int = 0
    marchid: int = 0
    mimpid: int = 0
    vlenb: int = 16  # used only when the host has V

    @classmethod
    def default(cls) -> HostProfile:
        return cls(_DEFAULT_HOST_ISA, _DEFAULT_HOST_CAPABILITIES)

    def has(self, name: str) -> bool:
        """True for a host ISA extension (lower case) or capability."""
        if name in _DERIVED:
            return _DERIVED[name] in self.isa
        return name in self.isa or name in self.capabilities

    def without(self, *names: str) -> HostProfile:
        """This host minus ISA extensions or capabilities, e.g. ``without("ssnpm")``."""
        isa, caps = set(self.isa), set(self.capabilities)
        for name in names:
            if name in isa:
                isa.discard(name)
            elif name in caps:
                caps.discard(name)
            else:
                raise ValueError(f"host has no {name!r}")
        return replace(self, isa=frozenset(isa), capabilities=frozenset(caps))

    def plus(self, *names: str) -> HostProfile:
        """This host plus ISA extensions or capabilities, e.g. ``plus("v", "smstateen")``."""
        isa, caps = set(self.isa), set(self.capabilities)
        for name in names:
            if name in HOST_CAPABILITIES:
                caps.add(name)
            elif name in _KNOWN_HOST_ISA:
                isa.add(name)
            else:
                raise ValueError(f"unknown host extension or capability {name!r}")
        return replace(self, isa=frozenset(isa), capabilities=frozenset(caps))


@dataclass
class FwftConfig:
    """KVM's per-vCPU bookkeeping for one implemented FWFT feature."""

    supported_at_create: bool
    enabled: bool
    flags: int = 0


@dataclass
class VcpuConfig:
    """KVM's per-vCPU configuration (not hart state)."""

    isa: Set[int]  # enabled KVM ISA extension ids
    sbi: Dict[int, bool]  # available KVM SBI extension ids -> enabled
    mvendorid: int
    marchid: int
    mimpid: int
    fwft: Dict[int, FwftConfig] = field(default_factory=dict)  # by feature id
    ran_once: bool = False  # set by the first KVM_RUN; ISA/SBI changes then EBUSY

    def mark_ran(self) -> None:
        self.ran_once = True


def _einval(message: str) -> KvmError:
    return KvmError(errno.EINVAL, message)


def _enoent(message: str) -> KvmError:
    return KvmError(errno.ENOENT, message)


class Platform:
    """A kernel ABI profile running on a host profile."""

    def __init__(self, kernel: KernelProfile, host: HostProfile) -> None:
        self.kernel = kernel
        self.host = host

    # -- conditions -------------------------------------------------------

    def holds(self, cond: Cond, isa: Optional[Set[int]] = None) -> bool:
        """Evaluate a table condition; ``isa`` is the vCPU ISA for ``isa:`` atoms."""

        def fact(atom: str) -> bool:
            kind, _, name = atom.partition(":")
            if kind == "host":
                return self.host.has(name)
            if kind == "abi":
                return self.kernel.has(name)
            if kind == "isa":
                if isa is None:
                    raise ValueError(f"condition {cond!r} needs a vCPU ISA")
                return ISA_BY_NAME_ID[name] in isa
            raise ValueError(f"unknown condition atom {atom!r}")

        return holds(cond, fact)

    # -- ISA extensions ---------------------------------------------------

    def isa_ext_on_host(self, kvm_id: int) -> bool:
        """Whether the ISA_EXT register exists (``__kvm_riscv_isa_check_host``)."""
        return 0 <= kvm_id < self.kernel.isa_ext_max and self.host.has(ISA_EXTS[kvm_id].host)

    def host_isa_ext(self, kvm_id: int) -> IsaExt:
        """The row of an ISA extension available on this host, else ENOENT."""
        if not self.isa_ext_on_host(kvm_id):
            raise _enoent(f"ISA extension {kvm_id} not available on this host/ABI")
        return ISA_EXTS[kvm_id]

    def may_enable(self, row: IsaExt) -> bool:
        return self.holds(row.enable)

    def may_disable(self, row: IsaExt) -> bool:
        return self.holds(row.disable)

    def default_isa(self) -> Set[int]:
        """vCPU ISA at creation: host-available extensions whose enable is allowed."""
        return {
            row.kvm_id for row in self.kernel.isa_exts
            if self.isa_ext_on_host(row.kvm_id) and self.may_enable(row)
        }

    def set_isa_ext(self, config: VcpuConfig, kvm_id: int, value: int) -> bool:
        """ISA_EXT single-register write; returns True if the vCPU ISA changed.

        ENOENT: id unknown to the ABI or not on the host. Writing the current
        state succeeds even after the first run; otherwise EBUSY after the
        first run, EINVAL for a forbidden transition or a value other than 0/1.
        """
        row = self.host_isa_ext(kvm_id)
        current = 1 if kvm_id in config.isa else 0
        if value == current:
            return False
        if config.ran_once:
            raise KvmError(errno.EBUSY, f"vCPU already ran: ISA_EXT {row.name} is fixed")
        if value == 1 and self.may_enable(row):
            config.isa.add(kvm_id)
        elif value == 0 and self.may_disable(row):
            config.isa.discard(kvm_id)
        else:
            raise _einval(f"ISA_EXT {row.name} cannot be set to {value}")
        return True

    def isa_letters(self, config: VcpuConfig) -> int:
        """CONFIG ``isa``: single-letter bitmap (bit = letter - 'a') of the vCPU ISA."""
        return sum(1 << bit for bit, row in BY_LETTER_BIT.items() if row.kvm_id in config.isa)

    def host_letters(self) -> int:
        return sum(1 << bit for bit, row in BY_LETTER_BIT.items() if self.host.has(row.host))

    def set_isa_letters(self, config: VcpuConfig, value: int) -> bool:
        """CONFIG ``isa`` write; returns True if the vCPU ISA changed.

        Bits 25 and up: EINVAL. Same letters: no-op. After the first run:
        EBUSY. Otherwise KVM silently adjusts the request: letters without a
        KVM id or whose enable is forbidden are dropped, letters that cannot
        be disabled are forced on, and the result is limited to the host.
        """
        if value >> 25:
            raise _einval("CONFIG isa only holds single-letter extensions a..y")
        if value == self.isa_letters(config):
            return False
        if config.ran_once:
            raise KvmError(errno.EBUSY, "vCPU already ran: CONFIG isa is fixed")
        wanted = 0
        for bit, row in BY_LETTER_BIT.items():
            if row.kvm_id >= self.kernel.isa_ext_max:
                continue
            on = bool(value >> bit & 1)
            if on and not self.may_enable(row):
                on = False
            if not on and not self.may_disable(row):
                on = True
            if on:
                wanted |= 1 << bit
        wanted &= self.host_letters()
        for bit, row in BY_LETTER_BIT.items():
            if wanted >> bit & 1:
                config.isa.add(row.kvm_id)
            else:
                config.isa.discard(row.kvm_id)
        return True

    # -- SBI extensions ---------------------------------------------------

    def sbi_ext_available(self, kvm_id: int) -> bool:
        return 0 <= kvm_id < self.kernel.sbi_ext_max and self.holds(SBI_EXTS[kvm_id].available)

    def set_sbi_ext(self, config: VcpuConfig, kvm_id: int, value: int) -> None:
        """SBI_EXT single-register write (the caller checks EBUSY first).

        EINVAL for a value other than 0/1 (checked before the id), ENOENT for
        an id unknown to the ABI or unavailable on the host. Every available
        SBI extension may be toggled.
        """
        if value not in (0, 1):
            raise _einval("SBI_EXT value must be 0 or 1")
        if kvm_id not in config.sbi:
            raise _enoent(f"SBI extension {kvm_id} not available")
        config.sbi[kvm_id] = bool(value)

    def sbi_enabled(self, config: VcpuConfig, name: str) -> bool:
        row = SBI_BY_NAME[name]
        return config.sbi.get(row.kvm_id, False)

    # -- FWFT -------------------------------------------------------------

    def fwft_features(self) -> Tuple[FwftFeature, ...]:
        """FWFT features with ONE_REG registers under this ABI (empty without FWFT)."""
        if SBI_BY_NAME["FWFT"].kvm_id >= self.kernel.sbi_ext_max:
            return ()
        return tuple(
            f for f in FWFT_FEATURES if f.slot is not None and self.holds(f.exists)
        )

    def fwft_supported(self, config: VcpuConfig, feature: FwftFeature) -> bool:
        if self.kernel.has("fwft_support_dynamic"):
            return self.holds(feature.supported, config.isa)
        state = config.fwft.get(feature.feature_id)
        return state is not None and state.supported_at_create

    def fwft_encoding(self, feature: FwftFeature, value: int) -> Optional[FwftEncoding]:
        """The field encoding for an SBI value, if this host accepts that value."""
        for enc in feature.encodings:
            if enc.value == value and self.holds(enc.requires):
                return enc
        return None

    # -- vCPU creation ----------------------------------------------------

    def new_vcpu_config(self) -> VcpuConfig:
        """KVM's configuration of a freshly created vCPU."""
        config = VcpuConfig(
            isa=self.default_isa(),
            sbi={
                row.kvm_id: row.default_enabled
                for row in self.kernel.sbi_exts
                if self.sbi_ext_available(row.kvm_id)
            },
            mvendorid=self.host.mvendorid,
            marchid=self.host.marchid,
            mimpid=self.host.mimpid,
        )
        if SBI_BY_NAME["FWFT"].kvm_id in config.sbi:
            for feature in self.fwft_features():
                supported = self.holds(feature.supported, config.isa)
                config.fwft[feature.feature_id] = FwftConfig(supported, supported)
        return config

    # -- CONFIG block sizes -----------------------------------------------

    def block_size_present(self, config: VcpuConfig, ext_name: str) -> bool:
        """Whether a zicbo*_block_size CONFIG register exists now."""
        row = ISA_BY_NAME[ext_name]
        if row.kvm_id >= self.kernel.isa_ext_max:
            return False
        if self.kernel.has("block_size_from_host"):
            return self.host.has(row.host)
        return row.kvm_id in config.isa


ISA_BY_NAME: Dict[str, IsaExt] = {row.name: row for row in ISA_EXTS}
ISA_BY_NAME_ID: Dict[str, int] = {row.name: row.kvm_id for row in ISA_EXTS}
SBI_BY_NAME: Dict[str, SbiExt] = {row.name: row for row in SBI_EXTS}


def enabled_isa_names(config: VcpuConfig) -> List[str]:
    """Lower-case names of the vCPU's enabled ISA extensions, in id order."""
    return [ISA_EXTS[i].name.lower() for i in sorted(config.isa)]


def platform(kernel: str = DEFAULT_KERNEL, host: Optional[HostProfile] = None) -> Platform:
    """Convenience: ``platform("linux-6.18", HostProfile.default().without("ssnpm"))``."""
    return Platform(kernel_profile(kernel), host or HostProfile.default())


_KNOWN_ABI_FLAGS = frozenset(ABI_CHANGE_BY_FLAG)


def _check_conditions(conds: Iterable[Cond]) -> None:
    from .conditions import atoms

    for cond in conds:
        for atom in atoms(cond):
            kind, _, name = atom.partition(":")
            ok = (
                atom == "never"
                or (kind == "host" and (name in HOST_CAPABILITIES or name in _DERIVED
                                        or name in _KNOWN_HOST_ISA))
                or (kind == "isa" and name in ISA_BY_NAME)
                or (kind == "abi" and name in _KNOWN_ABI_FLAGS)
            )
            if not ok:
                raise AssertionError(f"bad condition atom {atom!r}")


_check_conditions(
    [r.enable for r in ISA_EXTS] + [r.disable for r in ISA_EXTS]
    + [r.available for r in SBI_EXTS]
    + [f.supported for f in FWFT_FEATURES] + [f.exists for f in FWFT_FEATURES]
    + [e.requires for f in FWFT_FEATURES for e in f.encodings]
)
