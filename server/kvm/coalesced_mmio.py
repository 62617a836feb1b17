"""Coalesced MMIO: guest writes into registered zones queue in a ring
instead of exiting (virt/kvm/coalesced_mmio.c, KVM_CAP_COALESCED_MMIO).

A VM has one ring and a list of zones (``KVM_REGISTER_COALESCED_MMIO``,
struct kvm_coalesced_mmio_zone {addr, size, pio}). A store the vCPU would
hand to userspace as KVM_EXIT_MMIO goes into the ring instead when the
access lies wholly inside one zone and the ring has room; loads always
exit (a zone device has no read). The ring is KVM's page: struct
kvm_coalesced_mmio_ring {first, last} and KVM_COALESCED_MMIO_MAX entries of
struct kvm_coalesced_mmio {phys_addr, len, pio, data[8]}, one of which always
stays unused, so at most ``RING_CAPACITY`` writes wait; when it is full the
write exits as an ordinary MMIO exit. The VMM drains the ring before it
serves an exit (here: ``drain``, which the gRPC adapter calls as each exit
is delivered), so the device sees the writes in guest order.

Rules kept from Linux: ``pio`` other than 0 or 1 is EINVAL; zones may
overlap; a bus holds at most NR_IOBUS_DEVS devices (ENOSPC); unregistering
removes every zone of the same kind that contains the given range and
succeeds even when none does (Linux returns 0 there). RISC-V has no port
I/O, so a ``pio`` zone is accepted and never matches.
"""

from __future__ import annotations

import collections
import errno
import threading
from typing import Deque, List, NamedTuple, Tuple, Union

from .errors import KvmError

KVM_COALESCED_MMIO_PAGE_OFFSET = 1  # arch/riscv/include/uapi/asm/kvm.h
PAGE_SIZE = 4096
RING_HEADER_SIZE = 8  # struct kvm_coalesced_mmio_ring: __u32 first, last
ENTRY_SIZE = 24  # struct kvm_coalesced_mmio: __u64 phys_addr, __u32 len, __u32 pio, __u8 data[8]
KVM_COALESCED_MMIO_MAX = (PAGE_SIZE - RING_HEADER_SIZE) // ENTRY_SIZE  # 170
RING_CAPACITY = KVM_COALESCED_MMIO_MAX - 1  # "there is always one unused entry"
NR_IOBUS_DEVS = 1000  # include/linux/kvm_host.h: devices per I/O bus


class CoalescedMmioZone(NamedTuple):
    """struct kvm_coalesced_mmio_zone."""

    addr: int
    size: int
    pio: int

    def contains(self, addr: int, length: int) -> bool:
        """coalesced_mmio_in_range: [addr, addr + length) wholly inside."""
        return self.addr <= addr and addr + length <= self.addr + self.size


class CoalescedMmio(NamedTuple):
    """struct kvm_coalesced_mmio: one queued write (``data`` ``len`` bytes)."""

    phys_addr: int
    len: int
    pio: int
    data: bytes


def _check_zone(addr: int, size: int, pio: int) -> CoalescedMmioZone:
    if pio not in (0, 1):
        raise KvmError(errno.EINVAL, f"coalesced MMIO zone pio must be 0 or 1, not {pio}")
    if not 0 <= addr < 1 << 64 or not 0 <= size < 1 << 32:
        raise KvmError(errno.EINVAL, "coalesced MMIO zone outside __u64 addr / __u32 size")
    return CoalescedMmioZone(addr, size, pio)


class CoalescedMmioRing:
    """The zones and the ring of one VM (thread safe: every vCPU of the VM
    appends, the VMM drains)."""

    def __init__(self) -> None:
        self._zones: List[CoalescedMmioZone] = []
        # the MMIO zones as an immutable snapshot the vCPU threads read without the lock
        self._mmio_zones: Tuple[CoalescedMmioZone, ...] = ()
        self._ring: Deque[CoalescedMmio] = collections.deque()
        self._lock = threading.Lock()

    def register(self, addr: int, size: int, pio: int = 0) -> None:
        """KVM_REGISTER_COALESCED_MMIO."""
        zone = _check_zone(addr, size, pio)
        with self._lock:
            if sum(1 for z in self._zones if z.pio == pio) >= NR_IOBUS_DEVS:
                raise KvmError(errno.ENOSPC, f"{NR_IOBUS_DEVS} devices on the I/O bus already")
            self._zones.append(zone)
            self._publish()

    def unregister(self, addr: int, size: int, pio: int = 0) -> None:
        """KVM_UNREGISTER_COALESCED_MMIO: drops the zones of the same kind that
        contain [addr, addr + size); none is not an error."""
        _check_zone(addr, size, pio)
        with self._lock:
            self._zones = [z for z in self._zones
                           if not (z.pio == pio and z.contains(addr, size))]
            self._publish()

    def _publish(self) -> None:
        self._mmio_zones = tuple(z for z in self._zones if not z.pio)

    @property
    def zones(self) -> List[CoalescedMmioZone]:
        with self._lock:
            return list(self._zones)

    def has_zones(self) -> bool:
        """Whether any MMIO zone is registered (no lock: a snapshot)."""
        return bool(self._mmio_zones)

    def write(self, phys_addr: int, length: int, data: Union[bytes, bytearray]) -> bool:
        """Queue an MMIO store if a zone takes it and the ring has room;
        False: it exits to userspace as KVM_EXIT_MMIO."""
        zones = self._mmio_zones
        if not zones:
            return False
        for zone in zones:
            if zone.contains(phys_addr, length):
                break
        else:
            return False
        with self._lock:
            if len(self._ring) >= RING_CAPACITY:
                return False
            self._ring.append(CoalescedMmio(phys_addr, length, zone.pio, bytes(data[:length])))
            return True

    def drain(self) -> List[CoalescedMmio]:
        """Every queued write, oldest first; the ring is empty afterwards."""
        if not self._ring:
            return []
        with self._lock:
            entries = list(self._ring)
            self._ring.clear()
            return entries

    def __len__(self) -> int:
        return len(self._ring)
