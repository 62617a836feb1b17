"""vCPU and VM statistics as KVM_GET_STATS_FD describes them.

Linux (Documentation/virt/kvm/api.rst, "KVM_GET_STATS_FD") gives every
statistic a descriptor: a name, a flags word (type | unit | base, the
``KVM_STATS_*`` values of ``include/uapi/linux/kvm.h``) and a decimal or
binary exponent, then one u64 of data (all of rvkvm's have size 1). The
rows below are the ones RISC-V KVM has (``KVM_GENERIC_VCPU_STATS`` and
``kvm_vcpu_stats_desc`` in ``arch/riscv/kvm/vcpu.c``) that mean something
here, in Linux's order, followed by rvkvm's own, named ``rvkvm_...``.
``Vcpu.stats()`` and ``Vm.stats()`` return {name: value} in row order.

Left out because nothing in rvkvm does them: the halt-polling counters and
histograms (a vCPU never polls before it sleeps), ``wrs_exit_stat`` (the
emulated hart ends a WRS wait at once, without a trap) and the generic VM
stats ``remote_tlb_flush{,_requests}`` (there is no G-stage TLB to flush).
"""

from __future__ import annotations

from typing import NamedTuple, Tuple

# struct kvm_stats_desc.flags (include/uapi/linux/kvm.h)
KVM_STATS_TYPE_CUMULATIVE = 0x0 << 0
KVM_STATS_TYPE_INSTANT = 0x1 << 0
KVM_STATS_TYPE_PEAK = 0x2 << 0
KVM_STATS_TYPE_MASK = 0xF << 0
KVM_STATS_UNIT_NONE = 0x0 << 4
KVM_STATS_UNIT_BYTES = 0x1 << 4
KVM_STATS_UNIT_SECONDS = 0x2 << 4
KVM_STATS_UNIT_CYCLES = 0x3 << 4
KVM_STATS_UNIT_BOOLEAN = 0x4 << 4
KVM_STATS_UNIT_MASK = 0xF << 4
KVM_STATS_BASE_POW10 = 0x0 << 8
KVM_STATS_BASE_POW2 = 0x1 << 8
KVM_STATS_BASE_MASK = 0xF << 8


class StatDesc(NamedTuple):
    """One statistic's descriptor (struct kvm_stats_desc without offset,
    size and bucket_size) and what it counts."""

    name: str
    flags: int
    exponent: int
    doc: str

    @property
    def kind(self) -> int:
        return self.flags & KVM_STATS_TYPE_MASK

    @property
    def unit(self) -> int:
        return self.flags & KVM_STATS_UNIT_MASK

    @property
    def base(self) -> int:
        return self.flags & KVM_STATS_BASE_MASK


def _counter(name: str, doc: str) -> StatDesc:
    return StatDesc(name, KVM_STATS_TYPE_CUMULATIVE | KVM_STATS_UNIT_NONE, 0, doc)


def _time_ns(name: str, doc: str) -> StatDesc:
    return StatDesc(name, KVM_STATS_TYPE_CUMULATIVE | KVM_STATS_UNIT_SECONDS, -9, doc)


def _instant(name: str, doc: str, unit: int = KVM_STATS_UNIT_NONE) -> StatDesc:
    return StatDesc(name, KVM_STATS_TYPE_INSTANT | unit, 0, doc)


VCPU_STATS: Tuple[StatDesc, ...] = (
    # KVM_GENERIC_VCPU_STATS (the ones without polling)
    _counter("halt_wakeup", "halts (WFI with nothing pending) that ended because the vCPU "
             "had work again"),
    _time_ns("halt_wait_ns", "time spent halted, the current halt included"),
    _instant("blocking", "1 while the vCPU is halted", KVM_STATS_UNIT_BOOLEAN),
    # arch/riscv/kvm/vcpu.c kvm_vcpu_stats_desc
    _counter("ecall_exit_stat", "ecalls from the guest (SBI calls), handled here or "
             "forwarded as RISCV_SBI exits"),
    _counter("wfi_exit_stat", "WFI instructions the guest executed"),
    _counter("mmio_exit_user", "MMIO accesses that became KVM_EXIT_MMIO"),
    _counter("mmio_exit_kernel", "MMIO stores the in-kernel bus took (coalesced MMIO zones)"),
    _counter("csr_exit_user", "CSR accesses that became KVM_EXIT_RISCV_CSR (Zkr seed)"),
    _counter("csr_exit_kernel", "CSR accesses emulated in the host (none: the emulated hart "
             "implements every CSR it has)"),
    _counter("signal_exits", "runs that ended with KVM_EXIT_INTR because of a kick "
             "(a signal) while in the guest"),
    _counter("exits", "times guest execution stopped for the host, for any reason"),
    _counter("instr_illegal_exits", "illegal-instruction traps redirected to the guest"),
    _counter("load_misaligned_exits", "misaligned-load traps redirected to the guest"),
    _counter("store_misaligned_exits", "misaligned-store traps redirected to the guest"),
    _counter("load_access_exits", "load access faults redirected to the guest"),
    _counter("store_access_exits", "store access faults redirected to the guest"),
    # rvkvm's own
    _counter("rvkvm_instructions", "guest instructions retired"),
    _counter("rvkvm_runs", "KVM_RUN calls (Run slices included) that entered the vCPU"),
    _time_ns("rvkvm_translate_ns", "process CPU time spent building translated regions "
             "(discovery, code generation, compile())"),
    _time_ns("rvkvm_tier1_ns", "process CPU time spent building first-tier blocks"),
    _counter("rvkvm_regions_translated", "regions the block translator built"),
    _counter("rvkvm_insns_translated", "guest instructions in the regions built"),
    _counter("rvkvm_tier1_blocks", "first-tier blocks built (code not yet hot)"),
    _counter("rvkvm_code_evictions", "translated regions evicted by the code budget"),
    _counter("rvkvm_fence_i", "fence.i instructions executed"),
    _counter("rvkvm_sfence_vma", "sfence.vma instructions executed"),
)

VM_STATS: Tuple[StatDesc, ...] = (
    _instant("rvkvm_vcpus", "vCPUs of the VM"),
    _instant("rvkvm_memory_slots", "memory slots"),
    _instant("rvkvm_memory_bytes", "guest memory mapped in memory slots",
             KVM_STATS_UNIT_BYTES),
    _counter("rvkvm_instructions", "guest instructions retired by all of the VM's vCPUs"),
)

# The vCPU counters kept as plain integers (the rest are read from the hart).
VCPU_COUNTED: Tuple[str, ...] = (
    "halt_wakeup", "ecall_exit_stat", "mmio_exit_user", "mmio_exit_kernel", "csr_exit_user",
    "csr_exit_kernel", "signal_exits", "exits", "instr_illegal_exits",
    "load_misaligned_exits", "store_misaligned_exits", "load_access_exits",
    "store_access_exits", "rvkvm_instructions", "rvkvm_runs",
)


def _check_tables() -> None:
    names = {d.name for d in VCPU_STATS}
    if len(names) != len(VCPU_STATS) or len({d.name for d in VM_STATS}) != len(VM_STATS):
        raise AssertionError("a statistic is named twice")
    missing = set(VCPU_COUNTED) - names
    if missing:
        raise AssertionError(f"counted statistics without a descriptor: {sorted(missing)}")


_check_tables()
