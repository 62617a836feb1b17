"""What ``Vcpu.run()`` returns: one class per ``KVM_EXIT_*`` reason.

Each class mirrors its member of the ``struct kvm_run`` exit union
(kvm-riscv-uapi.md section 5). An exit that needs an answer carries the slot
the caller fills before the next ``run()``, as a VMM fills ``kvm_run``:
``MmioExit.data`` (load value), ``SbiExit.ret`` (a0/a1) and
``CsrExit.ret_value`` (old CSR value). ``UnknownExit`` stands for any reason
a client does not know, so that new exits never break old clients.
"""

from __future__ import annotations

from typing import List

from rvkvm.uapi.kvm import (  # noqa: F401  (re-exported: the exit vocabulary)
    KVM_EXIT_DEBUG,
    KVM_EXIT_FAIL_ENTRY,
    KVM_EXIT_INTERNAL_ERROR,
    KVM_EXIT_INTR,
    KVM_EXIT_MMIO,
    KVM_EXIT_RISCV_CSR,
    KVM_EXIT_RISCV_SBI,
    KVM_EXIT_SYSTEM_EVENT,
    KVM_EXIT_UNKNOWN,
    KVM_INTERNAL_ERROR_EMULATION,
    KVM_SYSTEM_EVENT_RESET,
    KVM_SYSTEM_EVENT_SHUTDOWN,
)

U64_MASK = (1 << 64) - 1


# Why an INTR exit happened (KVM has one reason, a pending signal; the
# emulated host says which of its "signals" it was).
INTR_KICK = "kick"  # kick() / immediate_exit
INTR_BUDGET = "budget"  # the instruction budget of this run() call is used up
INTR_IDLE = "idle"  # the vCPU waited (WFI or powered off) for idle_timeout
# The host's time slice of this run() call ended (its wall-clock ``deadline``
# passed, or ``preempt()``): not a guest event, the caller runs it again.
INTR_SLICE = "slice"
# The server is shutting down (a drain): the vCPU stopped at a slice boundary.
INTR_SHUTDOWN = "shutdown"


class Exit:
    """Base of all exits; ``reason`` is the KVM_EXIT_* number."""

    reason = KVM_EXIT_UNKNOWN

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class UnknownExit(Exit):
    """KVM_EXIT_UNKNOWN (or a reason this model does not describe)."""

    def __init__(self, reason: int = KVM_EXIT_UNKNOWN) -> None:
        self.reason = reason


class MmioExit(Exit):
    """KVM_EXIT_MMIO: a guest load or store the host must perform.

    For a load, the caller writes the value (little-endian, ``len`` bytes)
    into ``data``; the next ``run()`` puts it into the destination register.
    """

    reason = KVM_EXIT_MMIO

    def __init__(self, phys_addr: int, length: int, is_write: bool, value: int = 0) -> None:
        self.phys_addr = phys_addr
        self.len = length
        self.is_write = is_write
        self.data = bytearray(8)
        if is_write:
            self.data[:length] = (value & ((1 << (8 * length)) - 1)).to_bytes(length, "little")


class SbiExit(Exit):
    """KVM_EXIT_RISCV_SBI: an SBI call forwarded to userspace.

    ``ret`` is preset to (SBI_ERR_NOT_SUPPORTED, 0); the next ``run()``
    copies it to the guest's a0/a1 and steps over the ecall.
    """

    reason = KVM_EXIT_RISCV_SBI

    def __init__(self, extension_id: int, function_id: int, args: List[int]) -> None:
        self.extension_id = extension_id
        self.function_id = function_id
        self.args = list(args)
        self.ret = [(-2) & U64_MASK, 0]


class CsrExit(Exit):
    """KVM_EXIT_RISCV_CSR: a CSR access userspace emulates (Zkr ``seed``).

    The caller sets ``ret_value`` (the old CSR value); the next ``run()``
    writes it to rd and steps over the instruction.
    """

    reason = KVM_EXIT_RISCV_CSR

    def __init__(self, csr_num: int, new_value: int, write_mask: int) -> None:
        self.csr_num = csr_num
        self.new_value = new_value
        self.write_mask = write_mask
        self.ret_value = 0


class SystemEventExit(Exit):
    """KVM_EXIT_SYSTEM_EVENT: SBI system reset (or legacy shutdown)."""

    reason = KVM_EXIT_SYSTEM_EVENT

    def __init__(self, event_type: int, data: List[int]) -> None:
        self.type = event_type
        self.ndata = len(data)
        self.data = list(data)


class DebugExit(Exit):
    """KVM_EXIT_DEBUG: ``ebreak`` with guest debug enabled (pc at the ebreak)."""

    reason = KVM_EXIT_DEBUG


class IntrExit(Exit):
    """KVM_EXIT_INTR: ``run()`` returned without a guest event (see INTR_*)."""

    reason = KVM_EXIT_INTR

    def __init__(self, why: str) -> None:
        self.why = why


class FailEntryExit(Exit):
    """KVM_EXIT_FAIL_ENTRY (only with hardware-accelerated AIA; not produced here)."""

    reason = KVM_EXIT_FAIL_ENTRY

    def __init__(self, hardware_entry_failure_reason: int, cpu: int) -> None:
        self.hardware_entry_failure_reason = hardware_entry_failure_reason
        self.cpu = cpu


class InternalErrorExit(Exit):
    """KVM_EXIT_INTERNAL_ERROR: the emulator itself failed on this guest state."""

    reason = KVM_EXIT_INTERNAL_ERROR

    def __init__(self, suberror: int, data: List[int], message: str = "") -> None:
        self.suberror = suberror
        self.ndata = len(data)
        self.data = list(data)
        self.message = message
