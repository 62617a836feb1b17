"""KVM_CHECK_EXTENSION answers and the limits they report.

Capabilities are answered as RISC-V KVM does (kvm-riscv-uapi.md section 3),
except that features this host does not implement (ioeventfd/irqfd, binary stats, dirty ring, memory region v2, in-kernel AIA,
device control) answer 0 so that VMMs fall back instead of failing.
"""

from __future__ import annotations

import os
from typing import Dict

from rvkvm.uapi.kvm import KVM_CAP_COALESCED_MMIO

from .coalesced_mmio import KVM_COALESCED_MMIO_PAGE_OFFSET
from .profiles import SATP_MODE_SV39, SATP_MODE_SV48, HostProfile

KVM_MAX_VCPUS = 1024
KVM_MAX_VCPU_IDS = KVM_MAX_VCPUS
KVM_MEM_SLOTS_NUM = 32767  # SHRT_MAX: slot ids 0..32766


def gpa_bits(satp_mode: int) -> int:
    """G-stage guest-physical address width: Sv39x4 41, Sv48x4 50, Sv57x4 59."""
    return {SATP_MODE_SV39: 41, SATP_MODE_SV48: 50}.get(satp_mode, 59)


KVM_CAP_IRQCHIP = 0
KVM_CAP_USER_MEMORY = 3
KVM_CAP_NR_VCPUS = 9
KVM_CAP_NR_MEMSLOTS = 10
KVM_CAP_MP_STATE = 14
KVM_CAP_SYNC_MMU = 16
KVM_CAP_DESTROY_MEMORY_REGION_WORKS = 21
KVM_CAP_SET_GUEST_DEBUG = 23
KVM_CAP_MAX_VCPUS = 66
KVM_CAP_ONE_REG = 70
KVM_CAP_READONLY_MEM = 81
KVM_CAP_ENABLE_CAP_VM = 98
KVM_CAP_CHECK_EXTENSION_VM = 105
KVM_CAP_MAX_VCPU_ID = 128
KVM_CAP_IMMEDIATE_EXIT = 136
KVM_CAP_COALESCED_PIO = 162
KVM_CAP_VM_GPA_BITS = 207
KVM_CAP_SYSTEM_EVENT_DATA = 215

_FIXED_CAPS: Dict[int, int] = {
    KVM_CAP_USER_MEMORY: 1,
    KVM_CAP_NR_MEMSLOTS: KVM_MEM_SLOTS_NUM,
    KVM_CAP_MP_STATE: 1,
    KVM_CAP_COALESCED_MMIO: KVM_COALESCED_MMIO_PAGE_OFFSET,  # the ring's page in the vCPU mmap
    KVM_CAP_COALESCED_PIO: 1,
    KVM_CAP_SYNC_MMU: 1,
    KVM_CAP_DESTROY_MEMORY_REGION_WORKS: 1,
    KVM_CAP_SET_GUEST_DEBUG: 1,
    KVM_CAP_MAX_VCPUS: KVM_MAX_VCPUS,
    KVM_CAP_ONE_REG: 1,
    KVM_CAP_READONLY_MEM: 1,
    KVM_CAP_ENABLE_CAP_VM: 1,
    KVM_CAP_CHECK_EXTENSION_VM: 1,
    KVM_CAP_MAX_VCPU_ID: KVM_MAX_VCPU_IDS,
    KVM_CAP_IMMEDIATE_EXIT: 1,
    KVM_CAP_SYSTEM_EVENT_DATA: 1,
}


def check_extension(cap: int, host: HostProfile) -> int:
    """KVM_CHECK_EXTENSION for a host (0 for anything unknown)."""
    if cap == KVM_CAP_NR_VCPUS:
        return min(os.cpu_count() or 1, KVM_MAX_VCPUS)
    if cap == KVM_CAP_VM_GPA_BITS:
        return gpa_bits(host.satp_mode)
    return _FIXED_CAPS.get(cap, 0)


