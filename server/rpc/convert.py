"""Conversions between ``rvkvm.v1`` messages and the KVM model's objects."""

from __future__ import annotations

import errno
from fractions import Fraction
from typing import Iterable, List, Mapping, Optional, Sequence

from rvkvm.server.kvm import HostProfile, KvmError
from rvkvm.server.kvm import exits as X
from rvkvm.server.kvm.caps import KVM_MAX_VCPU_IDS, KVM_MAX_VCPUS, KVM_MEM_SLOTS_NUM, gpa_bits
from rvkvm.server.kvm.clock import DETERMINISTIC, HOST, SERVER_DEFAULT, GuestClock
from rvkvm.server.kvm.coalesced_mmio import CoalescedMmio
from rvkvm.server.kvm.isa_ext import ISA_EXTS
from rvkvm.server.kvm.profiles import DEFAULT_KERNEL, KERNEL_PROFILES
from rvkvm.server.kvm.sbi_ext import FWFT_BY_ID, FWFT_FEATURES, SBI_EXTS, FwftFeature
from rvkvm.server.kvm.stats import KVM_STATS_BASE_POW2, StatDesc
from rvkvm.server.kvm.system import KVM_API_VERSION
from rvkvm.uapi.onereg import RegType, SbiStateSubtype, Size, make_id
from rvkvm.v1 import kvm_pb2 as pb

from .limits import RequestLimits

U64_MASK = (1 << 64) - 1

# ---------------------------------------------------------------------------
# exits

_INTR_REASONS = {
    X.INTR_KICK: pb.INTR_REASON_KICK,
    X.INTR_BUDGET: pb.INTR_REASON_BUDGET,
    X.INTR_IDLE: pb.INTR_REASON_IDLE,
    X.INTR_SHUTDOWN: pb.INTR_REASON_SHUTDOWN,
}


def coalesced_to_pb(entries: Sequence[CoalescedMmio]) -> List[pb.CoalescedMmio]:
    return [pb.CoalescedMmio(phys_addr=e.phys_addr, len=e.len, pio=e.pio, data=e.data)
            for e in entries]


def exit_to_pb(exit_: X.Exit, seq: int, coalesced: Sequence[CoalescedMmio] = ()) -> pb.Exit:
    """struct kvm_run as an ``Exit`` message, numbered ``seq``, with the
    coalesced-MMIO ring entries drained when it happened."""
    msg = pb.Exit(reason=exit_.reason, seq=seq)
    if coalesced:
        msg.coalesced_mmio.extend(coalesced_to_pb(coalesced))
    if isinstance(exit_, X.MmioExit):
        data = bytes(exit_.data[:exit_.len]) if exit_.is_write else b""
        msg.mmio.CopyFrom(pb.MmioExit(phys_addr=exit_.phys_addr, data=data, len=exit_.len,
                                      is_write=exit_.is_write))
    elif isinstance(exit_, X.SbiExit):
        msg.riscv_sbi.CopyFrom(pb.SbiExit(extension_id=exit_.extension_id & U64_MASK,
                                          function_id=exit_.function_id & U64_MASK,
                                          args=[a & U64_MASK for a in exit_.args]))
    elif isinstance(exit_, X.CsrExit):
        msg.riscv_csr.CopyFrom(pb.CsrExit(csr_num=exit_.csr_num, new_value=exit_.new_value,
                                          write_mask=exit_.write_mask))
    elif isinstance(exit_, X.SystemEventExit):
        msg.system_event.CopyFrom(pb.SystemEventExit(type=exit_.type,
                                                     data=[d & U64_MASK for d in exit_.data]))
    elif isinstance(exit_, X.DebugExit):
        msg.debug.SetInParent()
    elif isinstance(exit_, X.IntrExit):
        msg.intr.why = _INTR_REASONS.get(exit_.why, pb.INTR_REASON_UNSPECIFIED)
    elif isinstance(exit_, X.FailEntryExit):
        msg.fail_entry.CopyFrom(pb.FailEntryExit(
            hardware_entry_failure_reason=exit_.hardware_entry_failure_reason, cpu=exit_.cpu))
    elif isinstance(exit_, X.InternalErrorExit):
        msg.internal_error.CopyFrom(pb.InternalErrorExit(
            suberror=exit_.suberror, data=[d & U64_MASK for d in exit_.data],
            message=exit_.message))
    else:
        msg.unknown.SetInParent()
    return msg


def fill_completion(pending: Optional[X.Exit], completion: pb.Completion) -> None:
    """Write ``completion`` into the slot of the exit it answers, as a VMM
    fills struct kvm_run; EINVAL if it answers a different kind of exit."""
    kind = completion.WhichOneof("kind")
    if kind is None:
        return
    if kind == "mmio" and isinstance(pending, X.MmioExit):
        data = completion.mmio.data
        if len(data) > len(pending.data):
            raise KvmError(errno.EINVAL, f"MMIO completion of {len(data)} bytes (at most 8)")
        pending.data[:len(data)] = data
    elif kind == "riscv_sbi" and isinstance(pending, X.SbiExit):
        pending.ret = [completion.riscv_sbi.error & U64_MASK, completion.riscv_sbi.value]
    elif kind == "riscv_csr" and isinstance(pending, X.CsrExit):
        pending.ret_value = completion.riscv_csr.ret_value
    else:
        previous = type(pending).__name__ if pending is not None else "no exit"
        raise KvmError(errno.EINVAL, f"{kind} completion does not answer {previous}")


# ---------------------------------------------------------------------------
# FWFT state through its ONE_REG registers (KVM_REG_RISCV_SBI_FWFT)

FWFT_ENABLE, FWFT_FLAGS, FWFT_VALUE = range(3)


def fwft_feature(feature_id: int) -> FwftFeature:
    """The feature, if KVM keeps ONE_REG state for it (else ENOENT, as the
    ONE_REG access would fail)."""
    feature = FWFT_BY_ID.get(feature_id)
    if feature is None or feature.slot is None:
        raise KvmError(errno.ENOENT, f"FWFT feature {feature_id} has no ONE_REG state")
    return feature


def fwft_reg_id(feature: FwftFeature, field_index: int) -> int:
    return make_id(RegType.SBI_STATE, feature.first_reg() + field_index,
                   SbiStateSubtype.FWFT, Size.U64)


# ---------------------------------------------------------------------------
# host info

_LETTER_ORDER = "imafdqlcbkjtpvh"


def _isa_sort_key(name: str) -> tuple:
    # Device-tree order: single letters canonical, then Z (by the letter
    # after z in canonical order), then S, then X; alphabetical within.
    if len(name) == 1:
        return (0, _LETTER_ORDER.find(name), name)
    first = name[0]
    if first == "z":
        return (1, _LETTER_ORDER.find(name[1]) % 99, name)
    return (2 if first == "s" else 3, 0, name)


def isa_string(extensions: Iterable[str]) -> str:
    """``rv64imafdc_zicsr_..._ssnpm`` for a set of lower-case names."""
    names = sorted(extensions, key=_isa_sort_key)
    letters = "".join(n for n in names if len(n) == 1)
    multi = [n for n in names if len(n) > 1]
    return "_".join(["rv64" + letters, *multi])


def _eid_ranges(ranges: Iterable[tuple]) -> List[int]:
    return [bound for pair in ranges for bound in pair]


def host_info(host: HostProfile, limits: RequestLimits, max_vms: int, run_slice: int,
              slice_time: float) -> pb.HostInfo:
    """What GetHostInfo reports for ``host``, derived from the model's tables."""
    return pb.HostInfo(
        isa=isa_string(host.isa),
        isa_extensions=sorted(host.isa, key=_isa_sort_key),
        capabilities=sorted(host.capabilities),
        isa_exts=[pb.IsaExtInfo(name=row.name, kvm_id=row.kvm_id, host=row.host,
                                on_host=host.has(row.host)) for row in ISA_EXTS],
        sbi_exts=[pb.SbiExtInfo(name=row.name, kvm_id=row.kvm_id,
                                eid_ranges=_eid_ranges(row.eids),
                                default_enabled=row.default_enabled, handling=row.handling)
                  for row in SBI_EXTS],
        fwft_features=[pb.FwftFeatureInfo(
            feature_id=f.feature_id, name=f.name, onereg=f.onereg or "",
            first_reg=f.first_reg() if f.slot is not None else 0) for f in FWFT_FEATURES],
        abi_profiles=[pb.AbiProfile(
            name=p.name, linux_version=".".join(map(str, p.linux_version)),
            isa_ext_max=p.isa_ext_max, sbi_ext_max=p.sbi_ext_max,
            sbi_spec_version=".".join(map(str, p.sbi_spec_version)), flags=sorted(p.flags))
            for p in KERNEL_PROFILES.values()],
        default_abi_profile=DEFAULT_KERNEL,
        limits=pb.Limits(max_vcpus=KVM_MAX_VCPUS, max_vcpu_id=KVM_MAX_VCPU_IDS,
                         mem_slots=KVM_MEM_SLOTS_NUM, gpa_bits=gpa_bits(host.satp_mode),
                         max_transfer=limits.max_transfer, max_vms=max_vms,
                         max_batch_ops=limits.max_batch_ops,
                         max_message_bytes=limits.max_message, max_id_bytes=limits.max_id_bytes,
                         run_slice_insns=run_slice, run_slice_ms=round(slice_time * 1000)),
        timebase_frequency=host.timebase_frequency,
        satp_mode=host.satp_mode,
        api_version=KVM_API_VERSION,
    )


_CLOCK_MODES = {pb.GuestClock.MODE_DETERMINISTIC: DETERMINISTIC, pb.GuestClock.MODE_HOST: HOST}


def guest_clock(request: pb.CreateVmRequest, default: GuestClock) -> Optional[GuestClock]:
    """CreateVmRequest.clock as a model setting (None: the server's default
    clock, ``default``); a bad one is EINVAL."""
    if not request.HasField("clock") or request.clock.mode == pb.GuestClock.MODE_UNSPECIFIED:
        if request.HasField("clock") and (request.clock.ns_per_insn_num
                                          or request.clock.ns_per_insn_den):
            raise KvmError(errno.EINVAL, "GuestClock: a rate needs mode MODE_DETERMINISTIC")
        return None
    msg = request.clock
    mode = _CLOCK_MODES.get(msg.mode)
    if mode is None:
        raise KvmError(errno.EINVAL, f"GuestClock: unknown mode {msg.mode}")
    num, den = msg.ns_per_insn_num, msg.ns_per_insn_den
    if mode == HOST:
        if num or den:
            raise KvmError(errno.EINVAL, "GuestClock: MODE_HOST takes no rate")
        return GuestClock(HOST)
    if not num and not den:  # the default rate
        if default.mode == DETERMINISTIC:
            return default
        return GuestClock(DETERMINISTIC, SERVER_DEFAULT.ns_per_insn)
    if not num or not den:
        raise KvmError(errno.EINVAL, f"GuestClock: ns per instruction {num}/{den} is not a "
                       "positive fraction")
    return GuestClock(DETERMINISTIC, Fraction(num, den))


def fill_clock(clock: GuestClock, msg: pb.GuestClock, timebase_frequency: int) -> None:
    """``clock`` into a GuestClock message (HostInfo.default_clock); one
    tick per instruction is the rate of one timebase period."""
    if clock.mode == HOST:
        msg.mode = pb.GuestClock.MODE_HOST
        return
    msg.mode = pb.GuestClock.MODE_DETERMINISTIC
    rate = clock.ns_per_insn
    if rate is None:  # one timebase tick per instruction
        rate = Fraction(1_000_000_000, timebase_frequency)
    msg.ns_per_insn_num, msg.ns_per_insn_den = rate.numerator, rate.denominator


# ---------------------------------------------------------------------------
# statistics


def stats_to_pb(stats_id: str, descs: Sequence[StatDesc],
                values: Mapping[str, int]) -> pb.Stats:
    """KVM_GET_STATS_FD's header id, descriptors and data as ``Stats``."""
    return pb.Stats(id=stats_id, stats=[
        pb.Stat(name=d.name, value=values[d.name] & U64_MASK, type=pb.StatType.Name(d.kind),
                unit=pb.StatUnit.Name(d.unit >> 4), exponent=d.exponent,
                base_pow2=d.base == KVM_STATS_BASE_POW2,
                flags=d.flags, help=d.doc)
        for d in descs])

