"""In-kernel SBI: the registry of SBI extensions KVM implements for a guest.

Every guest ``ecall`` from S-mode reaches ``handle_ecall``. The extension is
looked up by a7 among the vCPU's *enabled* KVM SBI extensions (BASE always);
its handler returns one of:

* ``(error, value)``: written to a0/a1, pc steps over the ecall (legacy v0.1
  handlers return value None: only a0 is written);
* an ``SbiExit``: forwarded to userspace, completed by the next ``run()``;
* another ``Exit`` (SYSTEM_EVENT): registers untouched, pc not advanced;
* or raises ``Trap``: a fault KVM hit on the guest's behalf, redirected
  into the guest with sepc at the ecall.

Facts: kvm-riscv-sbi.md (``arch/riscv/kvm/vcpu_sbi*.c``). Where kernels
differ, a handler asks ``kernel.has(flag)`` for a row of
``profiles.ABI_CHANGES``; ``tests/server/data/sbi_conformance.json`` lists
every answer with the Linux file it comes from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Tuple, Union

from rvkvm.emulator import csr as C
from rvkvm.emulator.events import Trap

from . import exits as X
from .fwft import fwft_call
from .sbi_ext import (
    SBI_BASE_EID,
    SBI_ERR_ALREADY_AVAILABLE,
    SBI_ERR_DENIED,
    SBI_ERR_FAILURE,
    SBI_ERR_INVALID_ADDRESS,
    SBI_ERR_INVALID_PARAM,
    SBI_ERR_NOT_SUPPORTED,
    SBI_IMPL_ID_KVM,
    SBI_SUCCESS,
    STA_SHMEM_DISABLED,
)

if TYPE_CHECKING:
    from .vcpu import Vcpu

U64_MASK = (1 << 64) - 1
Args = Tuple[int, ...]
Result = Union[Tuple[int, Optional[int]], X.Exit]
Handler = Callable[["Vcpu", int, int, Args], Result]

SBI_HSM_STATE_STARTED = 0
SBI_HSM_STATE_STOPPED = 1
SBI_HSM_STATE_SUSPENDED = 4
SBI_HSM_SUSPEND_RET_DEFAULT = 0x0000_0000
SBI_HSM_SUSPEND_NON_RET_DEFAULT = 0x8000_0000
SBI_SRST_SHUTDOWN = 0
SBI_SRST_COLD_REBOOT = 1
SBI_SRST_WARM_REBOOT = 2
STA_SHMEM_SIZE = 64

# What an SBI call asks a (possibly other) vCPU to do at its next entry
# (KVM_REQ_* and the VSSIP pending bit); see ``Vcpu.request``.
REQ_FENCE_I = 1
REQ_SFENCE_VMA = 2
REQ_IPI = 4

# A remote sfence of a range: KVM queues up to KVM_RISCV_VCPU_MAX_HFENCE
# ranged requests per vCPU (a full queue becomes a whole flush), and a
# range of more than PTRS_PER_PTE pages is flushed whole (arch/riscv/kvm/tlb.c).
MAX_FENCE_RANGES = 64
MAX_FENCE_PAGES = 512

_EXPERIMENTAL = (0x0800_0000, 0x08FF_FFFF)
_VENDOR = (0x0900_0000, 0x09FF_FFFF)


def _ok(value: int = 0) -> Result:
    return SBI_SUCCESS, value


def _err(error: int) -> Result:
    return error, 0


def forward(vcpu: Vcpu, eid: int, fid: int, args: Args) -> Result:
    """KVM_EXIT_RISCV_SBI with the call as the guest made it."""
    return X.SbiExit(eid, fid, list(args))


# -- target selection ---------------------------------------------------


def _hart_mask_targets(vcpu: Vcpu, hmask: int, hbase: int,
                       stop_past_xlen: bool = False) -> Tuple[List[Vcpu], int]:
    """vCPUs selected by (hart_mask, hart_mask_base), in creation order, and
    the mask bits they used; ``stop_past_xlen``: the scan ends at the first
    vCPU whose bit is >= 64 (IPI since 6.14, vcpu_sbi_replace.c)."""
    targets, used = [], 0
    for target in vcpu.vm.vcpus:
        if hbase != U64_MASK:
            bit = target.id - hbase
            if bit < 0:
                continue
            if bit >= 64:
                if stop_past_xlen:
                    break
                continue
            if not hmask >> bit & 1:
                continue
            used |= 1 << bit
        targets.append(target)
    return targets, used


def _legacy_targets(vcpu: Vcpu, mask_va: int) -> List[Vcpu]:
    """v0.1: a0 points to the hart mask in guest memory; 0 means every vCPU."""
    hmask = vcpu.read_guest_ulong(mask_va) if mask_va else (1 << len(vcpu.vm.vcpus)) - 1
    return [t for t in vcpu.vm.vcpus if t.id < 64 and hmask >> t.id & 1]


def _fence(targets: List[Vcpu], request: int) -> None:
    for target in targets:
        target.request(request)


def _fence_vma(targets: List[Vcpu], start: int, size: int, asid: Optional[int]) -> None:
    """A remote sfence.vma of [start, start + size) (ASID ``asid``; None:
    every ASID). start = size = 0, or size all-ones, is the whole address
    space (all-ones since Linux 6.16; before, such a range was simply too
    large to flush page by page, which ends the same way)."""
    whole = (start == 0 and size == 0) or size == U64_MASK
    if not whole and size == 0:
        return  # an empty range: KVM's page loop flushes nothing
    first = start & ~0xFFF
    pages = 0 if whole else (((start + size - 1) & ~0xFFF) - first >> 12) + 1
    for target in targets:
        if whole or pages > MAX_FENCE_PAGES:
            target.request_fence_vma(None, 0, asid)
        else:
            target.request_fence_vma(first, pages, asid)


def _system_reset(vcpu: Vcpu, event_type: int, reason: int) -> Result:
    """kvm_riscv_vcpu_sbi_system_reset: every vCPU stops, userspace decides."""
    for target in vcpu.vm.vcpus:
        target.power_off()
    return X.SystemEventExit(event_type, [reason])


# -- extensions ---------------------------------------------------------


def _base(vcpu: Vcpu, eid: int, fid: int, args: Args) -> Result:
    kernel = vcpu.vm.platform.kernel
    if fid == 0:
        return _ok(kernel.sbi_spec_version_value)
    if fid == 1:
        return _ok(SBI_IMPL_ID_KVM)
    if fid == 2:
        return _ok(kernel.sbi_impl_version)
    if fid == 3:
        probed = args[0]
        if any(lo <= probed <= hi for lo, hi in (_EXPERIMENTAL, _VENDOR)):
            return forward(vcpu, eid, fid, args)
        name = find_extension_name(vcpu, probed)
        if name is None:
            return _ok(0)
        return _ok(0 if name == "PMU" else 1)  # PMU probe: no vCPU counters
    if fid in (4, 5, 6):
        config = vcpu.config
        return _ok((config.mvendorid, config.marchid, config.mimpid)[fid - 4])
    return _err(SBI_ERR_NOT_SUPPORTED)


def _v01(vcpu: Vcpu, eid: int, fid: int, args: Args) -> Result:
    # Legacy calls: the EID is the function; only a0 is written back.
    if eid == 0x00:
        vcpu.backend.timer_arm(args[0])
    elif eid in (0x01, 0x02):
        return forward(vcpu, eid, fid, args)  # console putchar/getchar
    elif eid == 0x03:
        vcpu.hart.mip &= ~C.SSIP
        vcpu.hart.irq_dirty = True
    elif eid == 0x04:
        _fence(_legacy_targets(vcpu, args[0]), REQ_IPI)
    elif eid == 0x05:
        _fence(_legacy_targets(vcpu, args[0]), REQ_FENCE_I)
    elif eid in (0x06, 0x07):
        # remote_sfence_vma(mask, start, size[, asid])
        _fence_vma(_legacy_targets(vcpu, args[0]), args[1], args[2],
                   args[3] & 0xFFFF if eid == 0x07 else None)
    else:  # 0x08 shutdown
        return _system_reset(vcpu, X.KVM_SYSTEM_EVENT_SHUTDOWN, 0)
    return SBI_SUCCESS, None


def _unknown_fid(vcpu: Vcpu) -> Result:
    """TIME/IPI answer to a FID they do not define (vcpu_sbi_replace.c)."""
    if vcpu.vm.platform.kernel.has("sbi_fid_not_supported"):
        return _err(SBI_ERR_NOT_SUPPORTED)
    return _err(SBI_ERR_INVALID_PARAM)


def _time(vcpu: Vcpu, eid: int, fid: int, args: Args) -> Result:
    if fid != 0:
        return _unknown_fid(vcpu)
    vcpu.backend.timer_arm(args[0])
    return _ok()


def _ipi(vcpu: Vcpu, eid: int, fid: int, args: Args) -> Result:
    if fid != 0:
        return _unknown_fid(vcpu)
    hmask, hbase = args[0], args[1]
    checked = vcpu.vm.platform.kernel.has("ipi_mask_checked")
    targets, used = _hart_mask_targets(vcpu, hmask, hbase, stop_past_xlen=checked)
    _fence(targets, REQ_IPI)
    if checked and hbase != U64_MASK and hmask != used:
        return _err(SBI_ERR_INVALID_PARAM)  # mask names vCPUs that do not exist
    return _ok()


def _rfence(vcpu: Vcpu, eid: int, fid: int, args: Args) -> Result:
    if fid <= 2:
        targets, _ = _hart_mask_targets(vcpu, args[0], args[1])
        if fid == 0:
            _fence(targets, REQ_FENCE_I)
        else:  # remote_sfence_vma(mask, base, start, size[, asid])
            _fence_vma(targets, args[2], args[3], args[4] & 0xFFFF if fid == 2 else None)
        return _ok()
    if fid <= 6 and not vcpu.vm.platform.kernel.has("rfence_hfence_not_supported"):
        return _ok()  # hfence treated as a no-op before 6.16
    return _err(SBI_ERR_NOT_SUPPORTED)


def _srst(vcpu: Vcpu, eid: int, fid: int, args: Args) -> Result:
    if fid != 0:
        return _err(SBI_ERR_NOT_SUPPORTED)
    # type and reason are u32 in kvm_sbi_ext_srst_handler: data[0] is the
    # reason's low 32 bits
    reset_type, reason = args[0] & 0xFFFF_FFFF, args[1] & 0xFFFF_FFFF
    if reset_type == SBI_SRST_SHUTDOWN:
        return _system_reset(vcpu, X.KVM_SYSTEM_EVENT_SHUTDOWN, reason)
    if reset_type in (SBI_SRST_COLD_REBOOT, SBI_SRST_WARM_REBOOT):
        return _system_reset(vcpu, X.KVM_SYSTEM_EVENT_RESET, reason)
    return _err(SBI_ERR_NOT_SUPPORTED)


def _hsm(vcpu: Vcpu, eid: int, fid: int, args: Args) -> Result:
    vm = vcpu.vm
    kernel = vm.platform.kernel
    if fid == 0:  # hart_start(hartid, start_addr, opaque)
        target = vm.find_vcpu(args[0])
        if target is None:
            return _err(SBI_ERR_INVALID_PARAM)
        if not target.stopped:
            return _err(SBI_ERR_ALREADY_AVAILABLE)
        target.request_start(args[1], args[2])
        target.power_on()
        return _ok()
    if fid == 1:  # hart_stop: never forwarded, with or without MP_STATE_RESET
        if vcpu.stopped:
            return _err(SBI_ERR_FAILURE)
        vcpu.power_off()
        return _ok()
    if fid == 2:  # hart_get_status(hartid)
        target = vm.find_vcpu(args[0])
        if target is None:
            # The handler keeps err_val 0 when the status is negative (since
            # 6.3's switch to SBI error codes): SUCCESS, value 0.
            return _ok(0)
        if target.stopped:
            return _ok(SBI_HSM_STATE_STOPPED)
        # Before 6.14 KVM tested the *caller's* blocking flag, never set
        # while the caller is in its own ecall.
        blocked = target.idle and kernel.has("hsm_status_target_blocking")
        return _ok(SBI_HSM_STATE_SUSPENDED if blocked else SBI_HSM_STATE_STARTED)
    if fid == 3:  # hart_suspend(type, resume_addr, opaque)
        suspend_type = args[0] & 0xFFFF_FFFF if kernel.has("hsm_suspend_type_32bit") else args[0]
        if suspend_type == SBI_HSM_SUSPEND_RET_DEFAULT:
            # retentive suspend behaves like WFI (the hart waits after the ecall)
            vcpu.hart.waiting = True
            vcpu.hart.irq_dirty = True
            return _ok()
        if suspend_type == SBI_HSM_SUSPEND_NON_RET_DEFAULT:
            return _err(SBI_ERR_NOT_SUPPORTED)
        return _err(SBI_ERR_INVALID_PARAM)
    return _err(SBI_ERR_NOT_SUPPORTED)


def _pmu(vcpu: Vcpu, eid: int, fid: int, args: Args) -> Result:
    # No counters are emulated: the vCPU PMU is never initialised, so every
    # PMU call answers NOT_SUPPORTED (vcpu_sbi_pmu.c) and its probe gives 0.
    return _err(SBI_ERR_NOT_SUPPORTED)


def _sta(vcpu: Vcpu, eid: int, fid: int, args: Args) -> Result:
    if fid != 0:
        return _err(SBI_ERR_NOT_SUPPORTED)
    lo, hi, flags = args[0], args[1], args[2] & 0xFFFF_FFFF  # u32 flags (vcpu_sbi_sta.c)
    if flags != 0:
        return _err(SBI_ERR_INVALID_PARAM)
    if lo == U64_MASK and hi == U64_MASK:
        vcpu.backend.set_sta_shmem(STA_SHMEM_DISABLED)
        return _ok()
    if lo % STA_SHMEM_SIZE:
        return _err(SBI_ERR_INVALID_PARAM)
    if hi != 0 or not vcpu.vm.is_writable_ram(lo, STA_SHMEM_SIZE):
        return _err(SBI_ERR_INVALID_ADDRESS)
    # The record is written once; steal time stays 0 (no host scheduler).
    vcpu.vm.write_memory(lo, bytes(STA_SHMEM_SIZE))
    vcpu.backend.set_sta_shmem(lo)
    return _ok()


def _susp(vcpu: Vcpu, eid: int, fid: int, args: Args) -> Result:
    if fid != 0:
        return _err(SBI_ERR_NOT_SUPPORTED)
    if args[0] & 0xFFFF_FFFF != 0:  # only SUSPEND_TO_RAM (sleep_type is 32 bits)
        return _err(SBI_ERR_INVALID_PARAM)
    if not vcpu.hart.mstatus & C.MS_SPP:  # the guest's sstatus.SPP
        return _err(SBI_ERR_FAILURE)
    if not vcpu.vm.memory.is_ram(args[1]):
        return _err(SBI_ERR_INVALID_ADDRESS)
    if any(not t.stopped for t in vcpu.vm.vcpus if t is not vcpu):
        return _err(SBI_ERR_DENIED)
    resume, opaque = args[1], args[2]
    # Userspace implements the suspend; the SBI reset is requested in every
    # kernel, with or without MP_STATE_RESET, and re-entry resumes at resume_addr.
    return vcpu.sbi_exit(X.SbiExit(eid, fid, list(args)),
                         then=lambda: vcpu.request_start(resume, opaque))


def _dbcn(vcpu: Vcpu, eid: int, fid: int, args: Args) -> Result:
    # write, read, write_byte; since 6.19 the generic forward handler
    # forwards undefined FIDs too
    if fid > 2 and not vcpu.vm.platform.kernel.has("dbcn_forward_all"):
        return _err(SBI_ERR_NOT_SUPPORTED)
    return forward(vcpu, eid, fid, args)


def _fwft(vcpu: Vcpu, eid: int, fid: int, args: Args) -> Result:
    return fwft_call(vcpu, fid, args)


# KVM SBI extension name -> handler; BASE has no KVM id and is always on.
HANDLERS: Dict[str, Handler] = {
    "V01": _v01,
    "TIME": _time,
    "IPI": _ipi,
    "RFENCE": _rfence,
    "SRST": _srst,
    "HSM": _hsm,
    "PMU": _pmu,
    "EXPERIMENTAL": forward,
    "VENDOR": forward,
    "DBCN": _dbcn,
    "STA": _sta,
    "SUSP": _susp,
    "FWFT": _fwft,
    "MPXY": forward,
}


def find_extension_name(vcpu: Vcpu, eid: int) -> Optional[str]:
    """The enabled KVM SBI extension covering ``eid`` ("BASE" for 0x10)."""
    if eid == SBI_BASE_EID:
        return "BASE"
    for row in vcpu.vm.platform.kernel.sbi_exts:
        if row.covers(eid) and vcpu.config.sbi.get(row.kvm_id, False):
            return row.name
    return None


def handle_ecall(vcpu: Vcpu) -> Optional[X.Exit]:
    """An ecall from the guest's S-mode (kvm_riscv_vcpu_sbi_ecall)."""
    hart = vcpu.hart
    x = hart.x
    eid, fid, args = x[17], x[16], tuple(x[10:16])
    name = find_extension_name(vcpu, eid)
    try:
        if name is None:
            result: Result = (SBI_ERR_NOT_SUPPORTED, 0)
        elif name == "BASE":
            result = _base(vcpu, eid, fid, args)
        else:
            result = HANDLERS[name](vcpu, eid, fid, args)
    except Trap as trap:
        vcpu.redirect_trap(trap.cause, trap.tval)
        return None
    if isinstance(result, X.SbiExit):
        return result if vcpu.has_completion() else vcpu.sbi_exit(result)
    if isinstance(result, X.Exit):
        return result
    error, value = result
    x[10] = error & U64_MASK
    if value is not None:
        x[11] = value & U64_MASK
    hart.pc = (hart.pc + 4) & U64_MASK
    return None


def _check_table() -> None:
    from .sbi_ext import SBI_EXTS

    missing = {row.name for row in SBI_EXTS} - set(HANDLERS)
    if missing:
        raise AssertionError(f"SBI extensions without a handler: {sorted(missing)}")


_check_table()
