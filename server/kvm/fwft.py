"""SBI FWFT (firmware features) as KVM implements it for a vCPU.

The feature rows live in ``sbi_ext.FWFT_FEATURES``; a feature's value is a
field of a per-vCPU hypervisor word (``hedeleg``/``henvcfg``), which on the
emulated vCPU is the hart's live ``medeleg``/``menvcfg``, so a successful
set takes effect at the guest's next instruction (kvm-riscv-sbi.md 7.4).
Error precedence: kvm-riscv-sbi.md 7.3 (``arch/riscv/kvm/vcpu_sbi_fwft.c``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Tuple

from .sbi_ext import (
    FWFT_BY_ID,
    FWFT_SET_FLAG_LOCK,
    SBI_ERR_DENIED,
    SBI_ERR_DENIED_LOCKED,
    SBI_ERR_FAILURE,
    SBI_ERR_INVALID_PARAM,
    SBI_ERR_NOT_SUPPORTED,
    SBI_SUCCESS,
    FwftFeature,
)

if TYPE_CHECKING:
    from .vcpu import Vcpu

SBI_EXT_FWFT_SET = 0
SBI_EXT_FWFT_GET = 1

SbiRet = Tuple[int, int]


def _feature(vcpu: Vcpu, feature_id: int) -> Tuple[Optional[FwftFeature], int]:
    """(feature, SBI error) for a guest-visible feature id."""
    feature = FWFT_BY_ID.get(feature_id)
    if feature is None:
        return None, SBI_ERR_DENIED  # KVM's answer for ids the spec does not define
    plat = vcpu.vm.platform
    state = vcpu.config.fwft.get(feature_id)
    if (feature not in plat.fwft_features() or state is None or not state.enabled
            or not plat.fwft_supported(vcpu.config, feature)):
        return None, SBI_ERR_NOT_SUPPORTED
    return feature, SBI_SUCCESS


def fwft_call(vcpu: Vcpu, fid: int, args: Tuple[int, ...]) -> SbiRet:
    """One FWFT ecall: (sbi error, value)."""
    if fid not in (SBI_EXT_FWFT_SET, SBI_EXT_FWFT_GET):
        return SBI_ERR_NOT_SUPPORTED, 0
    feature, error = _feature(vcpu, args[0] & 0xFFFF_FFFF)
    if feature is None:
        return error, 0
    backend = vcpu.backend
    if fid == SBI_EXT_FWFT_GET:
        value = feature.decode(backend.get_hyp(feature.word) & feature.mask)
        return (SBI_ERR_FAILURE, 0) if value is None else (SBI_SUCCESS, value)
    value, flags = args[1], args[2]
    if flags & ~FWFT_SET_FLAG_LOCK:
        return SBI_ERR_INVALID_PARAM, 0
    state = vcpu.config.fwft[feature.feature_id]
    if state.flags & FWFT_SET_FLAG_LOCK:
        return SBI_ERR_DENIED_LOCKED, 0
    # 6.18-7.0 store the flags before the setter runs, so a failing set with
    # LOCK still locks the feature; newer kernels record them only after a
    # successful set (kvm-riscv-sbi.md 7.3 step 6).
    after = vcpu.vm.platform.kernel.has("fwft_flags_after_set")
    if not after:
        state.flags = flags
    enc = vcpu.vm.platform.fwft_encoding(feature, value)
    if enc is None:
        return SBI_ERR_INVALID_PARAM, 0
    # the SBI path writes the hypervisor word at once (no fence)
    old = backend.get_hyp(feature.word)
    backend.set_hyp(feature.word, (old & ~feature.mask) | enc.bits)
    if after:
        state.flags = flags
    return SBI_SUCCESS, 0


def fwft_reset(vcpu: Vcpu) -> None:
    """FWFT's reset hook: locks cleared, every supported feature back to its
    reset value (PMLEN 0, misaligned delegation off, ADUE cleared);
    ``enable`` survives (kvm-riscv-sbi.md 7.6). The vCPU runs it only while
    FWFT is enabled."""
    plat = vcpu.vm.platform
    backend = vcpu.backend
    for feature in plat.fwft_features():
        state = vcpu.config.fwft.get(feature.feature_id)
        if state is None:
            continue
        state.flags = 0
        if not plat.fwft_supported(vcpu.config, feature):
            continue
        enc = plat.fwft_encoding(feature, feature.reset_value)
        if enc is not None:
            old = backend.get_hyp(feature.word)
            backend.set_hyp(feature.word, (old & ~feature.mask) | enc.bits)
