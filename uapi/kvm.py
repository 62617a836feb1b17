"""Generic KVM uapi numbers both sides of the contract use
(``include/uapi/linux/kvm.h``): exit reasons, system events, MP states,
``KVM_INTERRUPT`` arguments, memory-region flags, guest-debug control."""

from __future__ import annotations

# struct kvm_run.exit_reason (the ones RISC-V KVM produces)
KVM_EXIT_UNKNOWN = 0
KVM_EXIT_DEBUG = 4
KVM_EXIT_MMIO = 6
KVM_EXIT_FAIL_ENTRY = 9
KVM_EXIT_INTR = 10
KVM_EXIT_INTERNAL_ERROR = 17
KVM_EXIT_SYSTEM_EVENT = 24
KVM_EXIT_RISCV_SBI = 35
KVM_EXIT_RISCV_CSR = 36

# struct kvm_run.system_event.type
KVM_SYSTEM_EVENT_SHUTDOWN = 1
KVM_SYSTEM_EVENT_RESET = 2

# struct kvm_run.internal.suberror
KVM_INTERNAL_ERROR_EMULATION = 1

# KVM_MP_STATE_* (RISC-V uses RUNNABLE and STOPPED; INIT_RECEIVED resets)
KVM_MP_STATE_RUNNABLE = 0
KVM_MP_STATE_INIT_RECEIVED = 2
KVM_MP_STATE_STOPPED = 5

# struct kvm_interrupt.irq on RISC-V: raise or lower the external interrupt
KVM_INTERRUPT_SET = 0xFFFF_FFFF
KVM_INTERRUPT_UNSET = 0xFFFF_FFFE

# struct kvm_userspace_memory_region.flags
KVM_MEM_LOG_DIRTY_PAGES = 1
KVM_MEM_READONLY = 2

# struct kvm_guest_debug.control
KVM_GUESTDBG_ENABLE = 1

# KVM_ENABLE_CAP on a VM: the VMM handles HSM/SRST resets itself
KVM_CAP_RISCV_MP_STATE_RESET = 242

# KVM_CHECK_EXTENSION: coalesced MMIO (the answer is the ring's page offset)
KVM_CAP_COALESCED_MMIO = 15
