"""What ``Vcpu.run()`` returns: one class per ``KVM_EXIT_*`` reason.

An exit that needs an answer carries the slot the caller fills before the
next ``run()``, as a VMM fills ``struct kvm_run``: ``MmioExit.data`` (the
loaded value of an MMIO read), ``SbiExit.ret`` (a0/a1), ``CsrExit.ret_value``.
``UnknownExit`` stands for reasons this client does not know.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

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
    KVM_SYSTEM_EVENT_RESET,
    KVM_SYSTEM_EVENT_SHUTDOWN,
)
from rvkvm.v1 import kvm_pb2 as pb

SBI_ERR_NOT_SUPPORTED = -2
U64_MASK = (1 << 64) - 1

INTR_KICK = "kick"
INTR_BUDGET = "budget"
INTR_IDLE = "idle"
INTR_SHUTDOWN = "shutdown"  # the server is draining (SIGTERM)
_INTR_WHY = {pb.INTR_REASON_KICK: INTR_KICK, pb.INTR_REASON_BUDGET: INTR_BUDGET,
             pb.INTR_REASON_IDLE: INTR_IDLE, pb.INTR_REASON_SHUTDOWN: INTR_SHUTDOWN}


class Exit:
    """Base of all exits; ``reason`` is the KVM_EXIT_* number."""

    reason = KVM_EXIT_UNKNOWN

    def completion(self) -> Optional[pb.Completion]:
        """The answer the next run() sends (None: this exit needs none)."""
        return None


@dataclass
class MmioExit(Exit):
    phys_addr: int
    len: int
    is_write: bool
    # Store: the stored bytes. Load: fill with the loaded value (little-endian).
    data: bytearray = field(default_factory=lambda: bytearray(8))
    reason = KVM_EXIT_MMIO

    @property
    def value(self) -> int:
        return int.from_bytes(bytes(self.data[:self.len]), "little")

    @value.setter
    def value(self, value: int) -> None:
        self.data[:self.len] = (value & ((1 << (8 * self.len)) - 1)).to_bytes(self.len, "little")

    def completion(self) -> Optional[pb.Completion]:
        if self.is_write:
            return None
        return pb.Completion(mmio=pb.MmioCompletion(data=bytes(self.data[:self.len])))


@dataclass
class SbiExit(Exit):
    extension_id: int
    function_id: int
    args: List[int]
    # [SBI error, value] for a0/a1; preset to SBI_ERR_NOT_SUPPORTED.
    ret: List[int] = field(default_factory=lambda: [SBI_ERR_NOT_SUPPORTED, 0])
    reason = KVM_EXIT_RISCV_SBI

    def completion(self) -> Optional[pb.Completion]:
        error = self.ret[0] & U64_MASK
        error -= (error >> 63) << 64  # as the signed long a0 holds
        return pb.Completion(riscv_sbi=pb.SbiCompletion(error=error,
                                                        value=self.ret[1] & U64_MASK))


@dataclass
class CsrExit(Exit):
    csr_num: int
    new_value: int
    write_mask: int
    ret_value: int = 0  # fill with the old CSR value
    reason = KVM_EXIT_RISCV_CSR

    def completion(self) -> Optional[pb.Completion]:
        return pb.Completion(riscv_csr=pb.CsrCompletion(ret_value=self.ret_value))


@dataclass
class SystemEventExit(Exit):
    type: int
    data: List[int]
    reason = KVM_EXIT_SYSTEM_EVENT


@dataclass
class DebugExit(Exit):
    reason = KVM_EXIT_DEBUG


@dataclass
class IntrExit(Exit):
    why: str  # INTR_KICK, INTR_BUDGET, INTR_IDLE or INTR_SHUTDOWN
    reason = KVM_EXIT_INTR


@dataclass
class FailEntryExit(Exit):
    hardware_entry_failure_reason: int
    cpu: int
    reason = KVM_EXIT_FAIL_ENTRY


@dataclass
class InternalErrorExit(Exit):
    suberror: int
    data: List[int]
    message: str
    reason = KVM_EXIT_INTERNAL_ERROR


@dataclass
class UnknownExit(Exit):
    reason: int = KVM_EXIT_UNKNOWN  # type: ignore[misc]


def from_pb(msg: pb.Exit) -> Exit:
    kind = msg.WhichOneof("kind")
    if kind == "mmio":
        m = msg.mmio
        return MmioExit(m.phys_addr, m.len, m.is_write, bytearray(m.data.ljust(8, b"\0")))
    if kind == "riscv_sbi":
        s = msg.riscv_sbi
        return SbiExit(s.extension_id, s.function_id, list(s.args))
    if kind == "riscv_csr":
        c = msg.riscv_csr
        return CsrExit(c.csr_num, c.new_value, c.write_mask)
    if kind == "system_event":
        return SystemEventExit(msg.system_event.type, list(msg.system_event.data))
    if kind == "debug":
        return DebugExit()
    if kind == "intr":
        return IntrExit(_INTR_WHY.get(msg.intr.why, "unspecified"))
    if kind == "fail_entry":
        f = msg.fail_entry
        return FailEntryExit(f.hardware_entry_failure_reason, f.cpu)
    if kind == "internal_error":
        e = msg.internal_error
        return InternalErrorExit(e.suberror, list(e.data), e.message)
    return UnknownExit(msg.reason)
