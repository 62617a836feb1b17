"""What ``Vcpu.run()`` returns: one class per ``KVM_EXIT_*`` reason.

An exit that needs an answer carries the slot the caller fills before the
next ``run()``, as a VMM fills ``struct kvm_run``: ``MmioExit.data`` (the
loaded value of an MMIO read), ``SbiExit.ret`` (a0/a1), ``CsrExit.ret_value``.
``UnknownExit`` stands for reasons this client does not know.

Every exit carries ``coalesced_mmio``: the stores the VM's coalesced-MMIO
ring took since the last drain (``CoalescedMmio`` entries, oldest first);
apply them to the devices before serving the exit itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, NamedTuple, Optional, Sequence

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
_INTR_WHY = {pb.INTR_REASON_KICK: INTR_KICK, pb.INTR_REASON_BUDGET: INTR_BUDGET,
             pb.INTR_REASON_IDLE: INTR_IDLE}


class CoalescedMmio(NamedTuple):
    """One write from the coalesced-MMIO ring (struct kvm_coalesced_mmio)."""

    phys_addr: int
    len: int
    pio: int
    data: bytes

    @property
    def value(self) -> int:
        """The stored value: the first ``len`` bytes of ``data``, little-endian."""
        return int.from_bytes(self.data[:self.len], "little")


def coalesced_from_pb(entries: Sequence[pb.CoalescedMmio]) -> List[CoalescedMmio]:
    """The ``CoalescedMmio`` entries of ``rvkvm.v1.CoalescedMmio`` messages, in order."""
    return [CoalescedMmio(e.phys_addr, e.len, e.pio, e.data) for e in entries]


class Exit:
    """Base of all exits; ``reason`` is the KVM_EXIT_* number."""

    reason = KVM_EXIT_UNKNOWN
    # ring entries delivered with this exit (set per instance when there are any)
    coalesced_mmio: Sequence[CoalescedMmio] = ()

    def completion(self) -> Optional[pb.Completion]:
        """The answer the next run() sends (None: this exit needs none)."""
        return None


@dataclass
class MmioExit(Exit):
    """KVM_EXIT_MMIO: a guest load or store outside RAM (or a store to a
    read-only slot), not yet performed. A store's bytes are in ``data``
    (``value`` as an integer); for a load set ``value`` (or ``data``) and
    the next ``run()`` writes it to the destination register. An unanswered
    load reads 0."""

    phys_addr: int
    len: int
    is_write: bool
    # Store: the stored bytes. Load: fill with the loaded value (little-endian).
    data: bytearray = field(default_factory=lambda: bytearray(8))
    reason = KVM_EXIT_MMIO

    @property
    def value(self) -> int:
        """``data`` as an unsigned little-endian integer of ``len`` bytes."""
        return int.from_bytes(bytes(self.data[:self.len]), "little")

    @value.setter
    def value(self, value: int) -> None:
        self.data[:self.len] = (value & ((1 << (8 * self.len)) - 1)).to_bytes(self.len, "little")

    def completion(self) -> Optional[pb.Completion]:
        """A load's value as ``MmioCompletion``; None for a store."""
        if self.is_write:
            return None
        return pb.Completion(mmio=pb.MmioCompletion(data=bytes(self.data[:self.len])))


@dataclass
class SbiExit(Exit):
    """KVM_EXIT_RISCV_SBI: an SBI call KVM forwards to the VMM (a7 =
    ``extension_id``, a6 = ``function_id``, ``args`` = a0..a5), e.g. the DBCN
    console (extension 0x4442434E, function 0: write ``args[0]`` bytes at
    ``args[1]``). Set ``ret`` = [SBI error, value] for a0/a1; left as is,
    the guest gets SBI_ERR_NOT_SUPPORTED."""

    extension_id: int
    function_id: int
    args: List[int]
    # [SBI error, value] for a0/a1; preset to SBI_ERR_NOT_SUPPORTED.
    ret: List[int] = field(default_factory=lambda: [SBI_ERR_NOT_SUPPORTED, 0])
    reason = KVM_EXIT_RISCV_SBI

    def completion(self) -> Optional[pb.Completion]:
        """``ret`` as ``SbiCompletion`` (error as a signed 64-bit value)."""
        error = self.ret[0] & U64_MASK
        error -= (error >> 63) << 64  # as the signed long a0 holds
        return pb.Completion(riscv_sbi=pb.SbiCompletion(error=error,
                                                        value=self.ret[1] & U64_MASK))


@dataclass
class CsrExit(Exit):
    """KVM_EXIT_RISCV_CSR: a CSR access the VMM emulates (the Zkr ``seed``
    CSR, 0x015): the instruction writes ``new_value`` under ``write_mask``;
    set ``ret_value`` to the CSR's old value (what rd gets)."""

    csr_num: int
    new_value: int
    write_mask: int
    ret_value: int = 0  # fill with the old CSR value
    reason = KVM_EXIT_RISCV_CSR

    def completion(self) -> Optional[pb.Completion]:
        """``ret_value`` as ``CsrCompletion``."""
        return pb.Completion(riscv_csr=pb.CsrCompletion(ret_value=self.ret_value))


@dataclass
class SystemEventExit(Exit):
    """KVM_EXIT_SYSTEM_EVENT: the guest's SBI SRST call. ``type``:
    ``KVM_SYSTEM_EVENT_SHUTDOWN`` (1) or ``_RESET`` (2); ``data[0]``: the SBI
    reset reason (0 none, 1 system failure). Every vCPU of the VM is then
    STOPPED."""

    type: int
    data: List[int]
    reason = KVM_EXIT_SYSTEM_EVENT


@dataclass
class DebugExit(Exit):
    """KVM_EXIT_DEBUG: an ``ebreak`` with guest debug enabled (pc at it)."""

    reason = KVM_EXIT_DEBUG


@dataclass
class IntrExit(Exit):
    """KVM_EXIT_INTR: ``run()`` returned without a guest event: ``why`` is
    ``INTR_BUDGET`` (the instruction budget ran out), ``INTR_IDLE`` (idle
    for ``idle_timeout``) or ``INTR_KICK`` (``kick()`` or a deadline)."""

    why: str  # INTR_KICK, INTR_BUDGET or INTR_IDLE
    reason = KVM_EXIT_INTR


@dataclass
class FailEntryExit(Exit):
    """KVM_EXIT_FAIL_ENTRY: the vCPU could not be entered."""

    hardware_entry_failure_reason: int
    cpu: int
    reason = KVM_EXIT_FAIL_ENTRY


@dataclass
class InternalErrorExit(Exit):
    """KVM_EXIT_INTERNAL_ERROR: the emulator failed on this guest state
    (``data[0]`` = pc, ``message`` says what failed)."""

    suberror: int
    data: List[int]
    message: str
    reason = KVM_EXIT_INTERNAL_ERROR


@dataclass
class UnknownExit(Exit):
    """An exit reason this client does not know (``reason`` is its number)."""

    reason: int = KVM_EXIT_UNKNOWN  # type: ignore[misc]


def from_pb(msg: pb.Exit) -> Exit:
    """The ``Exit`` of an ``rvkvm.v1.Exit`` message, with the coalesced-MMIO
    ring entries it carries (``Exit.coalesced_mmio``)."""
    exit_ = _exit_from_pb(msg)
    if msg.coalesced_mmio:
        exit_.coalesced_mmio = coalesced_from_pb(msg.coalesced_mmio)
    return exit_


def _exit_from_pb(msg: pb.Exit) -> Exit:
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
