"""A KVM VM: memory slots with server-owned backing, vCPUs, the VM clock.

One method per VM ioctl: ``check_extension``, ``enable_cap``,
``set_user_memory_region``, ``get_dirty_log``, ``create_vcpu``,
``register_coalesced_mmio``, ``unregister_coalesced_mmio``; plus
``drain_coalesced_mmio`` (what a VMM reads from the coalesced-MMIO ring page),
``read_memory``/``write_memory`` (what a VMM does through its own mapping of
guest RAM) and ``destroy`` (closing the VM fd).

Memory slots follow Linux ``__kvm_set_memory_region`` (virt/kvm/kvm_main.c)
and ``kvm_arch_prepare_memory_region`` (arch/riscv/kvm/mmu.c). Each slot is
backed by an ``mmap`` the server owns (anonymous, or what ``ram_backing``
returns: a worker process maps the shared memory its front end created, so
that both reach the same RAM); ``userspace_addr`` is kept only as the
identity Linux compares when a slot is modified.
"""

from __future__ import annotations

import errno
import mmap
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Protocol, Tuple, TypeVar

from rvkvm.emulator.hart import NO_DEADLINE, Hart
from rvkvm.emulator.memory import PAGE_MASK, PAGE_SHIFT, PhysMemory, RamRegion
from rvkvm.uapi.kvm import KVM_CAP_RISCV_MP_STATE_RESET, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY

from .caps import KVM_MAX_VCPU_IDS, KVM_MAX_VCPUS, KVM_MEM_SLOTS_NUM, check_extension, gpa_bits
from .clock import DETERMINISTIC, HOST, GuestClock
from .coalesced_mmio import CoalescedMmio, CoalescedMmioRing
from .errors import KvmError
from .profiles import Platform
from .vcpu import MmioAccess, Vcpu

KVM_MEM_MAX_NR_PAGES = (1 << 31) - 1
# Seconds a RUNNABLE vCPU goes on driving VM time after it last ran or was
# woken (clock.py): one whose Run nobody calls for longer no longer holds
# back the WFI time skips of the others. Well above the gaps between the
# slices of a vCPU that is being run (an RPC round trip, a worker's IPC),
# which pass a tenth of a second on a loaded machine.
DRIVE_WINDOW = 2.0
KVM_ADDRESS_SPACE_NUM = 1  # RISC-V has one address space


def _deadline(vcpu: Vcpu) -> int:
    """A halted vCPU's next timer (NO_DEADLINE: none armed)."""
    hart = vcpu.hart
    return hart._next_timer(hart.time())


@dataclass
class MemSlot:
    slot: int
    flags: int
    guest_phys_addr: int
    memory_size: int
    userspace_addr: int
    region: RamRegion

    @property
    def npages(self) -> int:
        return self.memory_size >> PAGE_SHIFT

    @property
    def end(self) -> int:
        return self.guest_phys_addr + self.memory_size


class _UnmappedMmio:
    """PhysMemory fallback: any access outside every slot is MMIO."""

    def mmio_read(self, offset: int, size: int) -> int:
        raise MmioAccess(offset, size, False)

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        raise MmioAccess(offset, size, True, value)


def _einval(message: str) -> KvmError:
    return KvmError(errno.EINVAL, message)


def anonymous_ram(slot: int, size: int) -> mmap.mmap:
    """The default backing of a memory slot: anonymous memory, committed lazily."""
    return mmap.mmap(-1, size)


class _Placed(Protocol):
    guest_phys_addr: int

    @property
    def end(self) -> int: ...


S = TypeVar("S", bound=_Placed)


def slot_spans(slots: Iterable[S], gpa: int, size: int) -> Iterator[Tuple[S, int, int]]:
    """(slot, gpa, length) pieces of [gpa, gpa+size), each inside one slot;
    EFAULT on a hole. ``slots`` is a snapshot (vCPU threads ask while the
    VMM may change the slots)."""
    slots = tuple(slots)
    end = gpa + size
    while gpa < end:
        slot = next((s for s in slots if s.guest_phys_addr <= gpa < s.end), None)
        if slot is None:
            raise KvmError(errno.EFAULT, f"no memory slot at {gpa:#x}")
        n = min(end, slot.end) - gpa
        yield slot, gpa, n
        gpa += n


class Vm:
    """A virtual machine (created by ``KvmSystem.create_vm``)."""

    def __init__(self, platform: Platform, engine: str = "fast") -> None:
        self.platform = platform
        self.engine = engine
        host = platform.host
        # PMLEN values henvcfg/senvcfg accept (host Ssnpm); none without it.
        self.host_pmlens: Tuple[int, ...] = tuple(
            n for n in (7, 16) if host.has("ssnpm") and host.has(f"pmlen{n}"))
        self.memory = PhysMemory()
        self.memory.unmapped = _UnmappedMmio()
        self.mp_state_reset = False  # KVM_CAP_RISCV_MP_STATE_RESET enabled
        self.coalesced_mmio = CoalescedMmioRing()
        self._slots: Dict[int, MemSlot] = {}
        self._vcpus: Dict[int, Vcpu] = {}  # creation order
        self._lock = threading.RLock()
        self._time_floor = 0
        self._clock_lock = threading.Lock()  # the floor and the halted vCPUs
        # vCPUs halted in WFI (deterministic time), and their earliest timer
        self._halted: Dict[int, Tuple[Vcpu, int]] = {}  # id -> (vCPU, its timer)
        self._next_wake = NO_DEADLINE
        self._destroyed = False
        # Guest time per retired instruction in deterministic mode, in
        # nanoseconds (None: one timebase tick per instruction, 100 ns at
        # the default 10 MHz); KvmSystem.clock sets it for new VMs.
        self._ns_per_insn: Optional[Fraction] = None
        # host-clock mode: guest time = host monotonic time since
        # _host_origin (ns) at the timebase frequency, plus _host_offset ticks
        self._host_clock = False
        self._host_origin = 0
        self._host_offset = 0
        # Where a new memory slot's RAM comes from: (slot id, size) -> mmap;
        # ENOMEM if it raises OSError, OverflowError or ValueError.
        self.ram_backing: Callable[[int, int], mmap.mmap] = anonymous_ram

    # ------------------------------------------------------------------
    # capabilities

    def check_extension(self, cap: int) -> int:
        return check_extension(cap, self.platform.host)

    def enable_cap(self, cap: int, flags: int = 0, args: Tuple[int, ...] = ()) -> None:
        """KVM_ENABLE_CAP on the VM: only KVM_CAP_RISCV_MP_STATE_RESET (6.16+;
        before, riscv had no enable_cap and every cap was EINVAL)."""
        self._check_alive()
        if cap != KVM_CAP_RISCV_MP_STATE_RESET or not self.platform.kernel.has(
                "mp_state_reset_cap"):
            raise _einval(f"capability {cap} cannot be enabled")
        if flags != 0:
            raise _einval("KVM_ENABLE_CAP flags must be 0")
        self.mp_state_reset = True

    # ------------------------------------------------------------------
    # coalesced MMIO (virt/kvm/coalesced_mmio.c)

    def register_coalesced_mmio(self, addr: int, size: int, pio: int = 0) -> None:
        """KVM_REGISTER_COALESCED_MMIO."""
        self._check_alive()
        self.coalesced_mmio.register(addr, size, pio)

    def unregister_coalesced_mmio(self, addr: int, size: int, pio: int = 0) -> None:
        """KVM_UNREGISTER_COALESCED_MMIO."""
        self._check_alive()
        self.coalesced_mmio.unregister(addr, size, pio)

    def drain_coalesced_mmio(self) -> List[CoalescedMmio]:
        """The writes queued in the ring, oldest first (the ring empties)."""
        self._check_alive()
        return self.coalesced_mmio.drain()

    # ------------------------------------------------------------------
    # memory slots

    def set_user_memory_region(self, slot: int, flags: int, guest_phys_addr: int,
                               memory_size: int, userspace_addr: int = 0) -> None:
        """KVM_SET_USER_MEMORY_REGION; ``memory_size`` 0 deletes the slot."""
        self._check_alive()
        if flags & ~(KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY):
            raise _einval(f"invalid memory region flags {flags:#x}")
        if memory_size & PAGE_MASK or not 0 <= memory_size < 1 << 64:
            raise _einval("memory_size must be page aligned")
        if guest_phys_addr & PAGE_MASK or not 0 <= guest_phys_addr < 1 << 64:
            raise _einval("guest_phys_addr must be page aligned")
        if userspace_addr & PAGE_MASK or not 0 <= userspace_addr < 1 << 64:
            raise _einval("userspace_addr must be page aligned")
        as_id, sid = slot >> 16, slot & 0xFFFF
        if as_id >= KVM_ADDRESS_SPACE_NUM or sid >= KVM_MEM_SLOTS_NUM:
            raise _einval(f"invalid slot {slot:#x}")
        if guest_phys_addr + memory_size >= 1 << 64:
            raise _einval("region wraps around")
        npages = memory_size >> PAGE_SHIFT
        if npages > KVM_MEM_MAX_NR_PAGES:
            raise _einval("region too large")
        with self._lock:
            old = self._slots.get(sid)
            if memory_size == 0:
                if old is None:
                    raise _einval(f"slot {sid} does not exist")
                self._delete_slot(old)
                return
            if old is not None:
                if (userspace_addr != old.userspace_addr or npages != old.npages
                        or (flags ^ old.flags) & KVM_MEM_READONLY):
                    raise _einval("only the address or the dirty-log flag of a slot may change")
                if guest_phys_addr == old.guest_phys_addr and flags == old.flags:
                    return
            moving = old is None or guest_phys_addr != old.guest_phys_addr
            if moving and self._overlaps(sid, guest_phys_addr, guest_phys_addr + memory_size):
                raise KvmError(errno.EEXIST, "region overlaps another slot")
            if (guest_phys_addr + memory_size) >> PAGE_SHIFT >= self.gpa_size >> PAGE_SHIFT:
                raise KvmError(errno.EFAULT, "region beyond the guest-physical address space")
            if old is None:
                self._create_slot(sid, flags, guest_phys_addr, memory_size, userspace_addr)
            else:
                self._modify_slot(old, flags, guest_phys_addr)

    @property
    def gpa_size(self) -> int:
        return 1 << gpa_bits(self.platform.host.satp_mode)

    def _overlaps(self, sid: int, start: int, end: int) -> bool:
        return any(s.slot != sid and s.guest_phys_addr < end and start < s.end
                   for s in self._slots.values())

    def _create_slot(self, sid: int, flags: int, gpa: int, size: int, uaddr: int) -> None:
        try:
            buf = self.ram_backing(sid, size)
        except (OSError, OverflowError, ValueError) as exc:
            raise KvmError(errno.ENOMEM, f"cannot back {size} bytes: {exc}") from None
        region = self.memory.add_ram(gpa, size, f"slot{sid}",
                                     readonly=bool(flags & KVM_MEM_READONLY), buf=buf)
        self._slots[sid] = MemSlot(sid, flags, gpa, size, uaddr, region)
        self._set_dirty_logging(self._slots[sid])
        self._memory_changed()

    def _modify_slot(self, slot: MemSlot, flags: int, gpa: int) -> None:
        if gpa != slot.guest_phys_addr:  # KVM_MR_MOVE: the contents move along
            old = slot.region
            self.memory.remove(old)
            slot.region = self.memory.add_ram(gpa, slot.memory_size, old.name,
                                              readonly=old.readonly, buf=old.buf)
            slot.guest_phys_addr = gpa
        slot.flags = flags
        self._set_dirty_logging(slot)
        self._memory_changed()

    def _delete_slot(self, slot: MemSlot) -> None:
        # The mmap is not closed here: a vCPU thread may still hold a
        # reference for the block it is finishing; it goes with the last one.
        self.memory.remove(slot.region)
        del self._slots[slot.slot]
        self._memory_changed()

    @staticmethod
    def _set_dirty_logging(slot: MemSlot) -> None:
        if not slot.flags & KVM_MEM_LOG_DIRTY_PAGES:
            slot.region.dirty_log = None
        elif slot.region.dirty_log is None:
            slot.region.dirty_log = set()

    def _memory_changed(self) -> None:
        """Drop every hart's cached translations (KVM: remote TLB flush)."""
        for vcpu in list(self._vcpus.values()):
            vcpu.hart.flush_tlbs()
            vcpu.hart.flush_code()
            vcpu.hart.kick()

    def get_dirty_log(self, slot: int) -> bytes:
        """KVM_GET_DIRTY_LOG: one bit per page (bitmap padded to 64-bit
        words, little-endian); harvesting clears the log."""
        self._check_alive()
        as_id, sid = slot >> 16, slot & 0xFFFF
        if as_id >= KVM_ADDRESS_SPACE_NUM or sid >= KVM_MEM_SLOTS_NUM:
            raise _einval(f"invalid slot {slot:#x}")
        with self._lock:
            mem_slot = self._slots.get(sid)
            if mem_slot is None or mem_slot.region.dirty_log is None:
                raise KvmError(errno.ENOENT, f"slot {sid} has no dirty log")
            pages, mem_slot.region.dirty_log = mem_slot.region.dirty_log, set()
            # Writes through cached translations must be logged again.
            for vcpu in list(self._vcpus.values()):
                vcpu.hart.flush_tlbs()
        bitmap = 0
        for page in pages:
            bitmap |= 1 << page
        nbytes = (mem_slot.npages + 63) // 64 * 8
        return bitmap.to_bytes(nbytes, "little")

    def slots(self) -> List[MemSlot]:
        with self._lock:
            return sorted(self._slots.values(), key=lambda s: s.slot)

    def _slot_at(self, gpa: int) -> Optional[MemSlot]:
        # a snapshot: vCPU threads ask while the VMM may change the slots
        for slot in tuple(self._slots.values()):
            if slot.guest_phys_addr <= gpa < slot.end:
                return slot
        return None

    def is_readonly(self, gpa: int) -> bool:
        slot = self._slot_at(gpa)
        return slot is not None and bool(slot.flags & KVM_MEM_READONLY)

    def is_writable_ram(self, gpa: int, size: int) -> bool:
        slot = self._slot_at(gpa)
        return (slot is not None and not slot.flags & KVM_MEM_READONLY
                and gpa + size <= slot.end)

    def _spans(self, gpa: int, size: int) -> Iterator[Tuple[int, int]]:
        """(gpa, length) pieces of [gpa, gpa+size), each inside one slot; EFAULT on a hole."""
        for _, a, n in slot_spans(self._slots.values(), gpa, size):
            yield a, n

    def check_range(self, gpa: int, size: int) -> None:
        """EFAULT unless [gpa, gpa+size) lies in memory slots (no work done:
        one step per slot)."""
        self._check_alive()
        with self._lock:
            for _ in self._spans(gpa, size):
                pass

    def read_memory(self, gpa: int, size: int) -> bytes:
        """Guest memory as the VMM sees it through its mapping of the slots."""
        self._check_alive()
        with self._lock:
            return b"".join(self.memory.read_bytes(a, n) for a, n in self._spans(gpa, size))

    def write_memory(self, gpa: int, data: bytes) -> None:
        """Write guest memory as the VMM does (read-only slots included)."""
        self._check_alive()
        view = memoryview(bytes(data))
        with self._lock:
            pos = 0
            for a, n in list(self._spans(gpa, len(view))):
                self.memory.write_bytes(a, bytes(view[pos:pos + n]), force=True)
                pos += n

    def host_wrote(self, gpa: int, size: int) -> None:
        """The VMM wrote [gpa, gpa+size) through its own mapping of the
        slots (a front end sharing this VM's RAM): what ``write_memory``
        does after writing, i.e. dirty logging and dropping the translated
        code of written code pages. EFAULT on a hole."""
        self._check_alive()
        with self._lock:
            for a, n in list(self._spans(gpa, size)):
                self.memory.host_wrote(a, n)

    # ------------------------------------------------------------------
    # vCPUs

    def create_vcpu(self, vcpu_id: int) -> Vcpu:
        """KVM_CREATE_VCPU: the first vCPU starts RUNNABLE, later ones STOPPED."""
        self._check_alive()
        if not 0 <= vcpu_id < KVM_MAX_VCPU_IDS:
            raise _einval(f"vCPU id {vcpu_id} out of range")
        with self._lock:
            if len(self._vcpus) >= KVM_MAX_VCPUS:
                raise _einval("too many vCPUs")
            if vcpu_id in self._vcpus:
                raise KvmError(errno.EEXIST, f"vCPU {vcpu_id} exists")
            vcpu = Vcpu(self, vcpu_id, runnable=not self._vcpus)
            if self._ns_per_insn is not None or self._host_clock:
                self._apply_time_rate(vcpu.hart)
            self._vcpus[vcpu_id] = vcpu
            return vcpu

    @property
    def vcpus(self) -> List[Vcpu]:
        return list(self._vcpus.values())

    def stats(self) -> Dict[str, int]:
        """KVM_GET_STATS_FD on the VM: {name: value} in ``stats.VM_STATS``
        order (no lock, as the vCPU's)."""
        vcpus = self.vcpus
        slots = self.slots()
        return {
            "rvkvm_vcpus": len(vcpus),
            "rvkvm_memory_slots": len(slots),
            "rvkvm_memory_bytes": sum(s.memory_size for s in slots),
            "rvkvm_instructions": sum(v.counts["rvkvm_instructions"] for v in vcpus),
        }

    def find_vcpu(self, vcpu_id: int) -> Optional[Vcpu]:
        return self._vcpus.get(vcpu_id)

    # ------------------------------------------------------------------
    # the VM clock (KVM's per-VM htimedelta); the rules are in clock.py
    #
    # Each hart keeps deterministic time (retired instructions plus time
    # skipped). The VM keeps a floor that only rises with the running vCPUs'
    # time (note_time): a hart entering run() is brought up to it
    # (sync_time), so vCPUs stay within one slice of each other and a vCPU
    # started late does not see time from the past. A hart waiting in WFI
    # is ``halted`` here until something wakes it: it skips time ahead only
    # when no other vCPU drives time, else the running vCPUs wake it when
    # the floor reaches its timer.

    @property
    def clock(self) -> GuestClock:
        """The guest clock (see ``clock.GuestClock``)."""
        if self._host_clock:
            return GuestClock(HOST)
        return GuestClock(DETERMINISTIC, self._ns_per_insn)

    @clock.setter
    def clock(self, clock: GuestClock) -> None:
        with self._lock:
            self._set_clock(clock)
            with self._clock_lock:
                # halted vCPUs look again under the new clock
                halted = [v for v, _ in self._halted.values()]
                self._halted.clear()
                self._next_wake = NO_DEADLINE
        for vcpu in halted:
            vcpu._wake_up()

    def _set_clock(self, clock: GuestClock) -> None:
        now = self.guest_time()
        if clock.mode == HOST:
            self._host_clock = True
            self._host_origin = time.monotonic_ns()
            self._host_offset = now
            for vcpu in self._vcpus.values():
                self._apply_time_rate(vcpu.hart)
            return
        was_host, self._host_clock = self._host_clock, False
        self._ns_per_insn = clock.ns_per_insn
        for vcpu in self._vcpus.values():
            self._apply_time_rate(vcpu.hart)
            if was_host:
                self._set_hart_time(vcpu.hart, now)
        self._time_floor = max(self._time_floor, now)

    def guest_time(self) -> int:
        """The VM's time now: the host clock's, or the furthest any vCPU's
        deterministic clock got."""
        if self._host_clock:
            return self._host_time()
        floor = self._time_floor
        for vcpu in self._vcpus.values():
            floor = max(floor, vcpu.hart.time())
        return floor

    def _host_time(self) -> int:
        ns = time.monotonic_ns() - self._host_origin
        return ns * self.platform.host.timebase_frequency // 1_000_000_000 + self._host_offset

    def seconds_until(self, ticks: int) -> float:
        """Host seconds until the host clock reaches ``ticks`` (host mode)."""
        return max(0.0, (ticks - self._host_time()) / self.platform.host.timebase_frequency)

    @property
    def host_clock(self) -> bool:
        return self._host_clock

    @property
    def ns_per_insn(self) -> Optional[Fraction]:
        """Nanoseconds of guest time per retired instruction (deterministic
        time), None for the default of one timebase tick per instruction."""
        return self._ns_per_insn

    @ns_per_insn.setter
    def ns_per_insn(self, value: Optional[Fraction]) -> None:
        if value is not None:
            value = Fraction(value)
            if value <= 0:
                raise ValueError("ns_per_insn must be positive")
        with self._lock:
            self._ns_per_insn = value
            for vcpu in self._vcpus.values():
                self._apply_time_rate(vcpu.hart)

    def _apply_time_rate(self, hart: Hart) -> None:
        if self._host_clock:
            hart.time_fn = self._host_time
            hart.irq_dirty = True
            return
        if hart.time_fn is not None:
            hart.time_fn = None
        if self._ns_per_insn is None:
            hart.set_time_rate(1, 1)
            return
        rate = self._ns_per_insn * self.platform.host.timebase_frequency / 1_000_000_000
        hart.set_time_rate(rate.numerator, rate.denominator)

    def set_time(self, value: int) -> None:
        with self._lock:
            if self._host_clock:
                self._host_offset += value - self._host_time()
                for vcpu in self._vcpus.values():
                    vcpu.hart.irq_dirty = True
                return
            with self._clock_lock:
                self._time_floor = value
                for vcpu in self._vcpus.values():
                    self._set_hart_time(vcpu.hart, value)
                due = self._take_due(value)
        for vcpu in due:
            vcpu._wake_up()

    @staticmethod
    def _set_hart_time(hart: Hart, value: int) -> None:
        hart.time_skip += value - hart.time()
        hart.irq_dirty = True

    def sync_time(self, hart: Hart) -> None:
        """Bring a hart entering the guest up to VM time."""
        if self._host_clock:
            return
        if hart.time() < self._time_floor:
            self._set_hart_time(hart, self._time_floor)

    def slice_until_wake(self, hart: Hart, limit: int) -> int:
        """At most ``limit`` instructions, and no more than bring ``hart``
        to the earliest timer of the halted vCPUs: the slice ends there and
        ``note_time`` wakes them on time, not a slice late (deterministic
        time; at least one instruction, so the slice always moves on)."""
        wake = self._next_wake
        if wake == NO_DEADLINE or self._host_clock:
            return limit
        until = hart._insns_until(wake) - hart.instret
        return limit if until >= limit else max(1, until)

    def note_time(self, hart: Hart) -> None:
        """After a slice: the hart's time raises VM time, and wakes the
        halted vCPUs whose timer VM time reached."""
        if self._host_clock:
            return
        now = hart.time()
        if now <= self._time_floor and now < self._next_wake:
            return
        with self._clock_lock:
            if now > self._time_floor:
                self._time_floor = now
            due = self._take_due(self._time_floor)
        for vcpu in due:
            vcpu._wake_up()

    @property
    def drive_window(self) -> float:
        """``DRIVE_WINDOW`` (seconds)."""
        return DRIVE_WINDOW

    def drives_time(self, vcpu: Vcpu, now: float) -> bool:
        """Whether ``vcpu`` holds back the WFI skips of the others: it is
        RUNNABLE, not halted, and in a run or out of one (or woken, see
        ``resume``) less than ``DRIVE_WINDOW`` seconds ago."""
        return (not vcpu.stopped and vcpu.id not in self._halted
                and (vcpu.in_run or now < vcpu.drive_until))

    def halt(self, vcpu: Vcpu) -> bool:
        """``vcpu``'s hart waits in WFI with nothing pending (deterministic
        time; called in the vCPU's thread before it sleeps). True: its
        timer is due now (VM time reached it, or time skipped to it because
        no other vCPU drives time and its timer is the VM's earliest): run
        on. False: sleep until woken (``vcpu.recheck_at``: look again then,
        so that a vCPU nobody runs any more cannot stall the VM)."""
        if self._host_clock:
            return False
        now = time.monotonic()
        with self._clock_lock:
            vcpu.recheck_at = None
            own = _deadline(vcpu)
            if own <= self._time_floor:
                self._forget(vcpu)
                return True  # sync_time brings it up to VM time
            self._halted[vcpu.id] = (vcpu, own)
            earliest = min(when for _, when in self._halted.values())
            self._next_wake = earliest
            if earliest == NO_DEADLINE:
                return False  # only an interrupt, IPI or start wakes anyone
            if any(self.drives_time(v, now) for v in self._vcpus.values() if v is not vcpu):
                vcpu.recheck_at = now + self.drive_window
                return False
            # nobody runs: time goes to the earliest deadline (a discrete-event step)
            self._time_floor = max(self._time_floor, earliest)
            due = self._take_due(self._time_floor)
            skipped = vcpu in due
            if skipped:
                due.remove(vcpu)
                self._set_hart_time(vcpu.hart, self._time_floor)
            else:
                vcpu.recheck_at = now + self.drive_window  # if the woken ones are not run
        for other in due:
            other._wake_up()
        return skipped

    def resume(self, vcpu: Vcpu) -> None:
        """``vcpu`` was woken or ran on: it is not halted, and drives time
        for ``DRIVE_WINDOW`` seconds at least if a run of it goes on or its
        caller waits for the wake-up (its last run returned idle). A vCPU
        never run, or left by its caller after another exit, is not waited
        for longer than that window after its last run, wake-ups or not."""
        if vcpu.in_run or vcpu.awaits_wake:
            vcpu.drive_until = time.monotonic() + self.drive_window
        if vcpu.id in self._halted:
            with self._clock_lock:
                self._forget(vcpu)

    def _forget(self, vcpu: Vcpu) -> None:
        if self._halted.pop(vcpu.id, None) is not None:
            self._next_wake = min((when for _, when in self._halted.values()),
                                  default=NO_DEADLINE)

    def _take_due(self, now: int) -> List[Vcpu]:
        """The halted vCPUs whose timer is due at ``now``, no longer halted
        (the caller wakes them, outside the clock lock)."""
        if now < self._next_wake:
            return []
        due = [v for v, when in self._halted.values() if when <= now]
        for v in due:
            del self._halted[v.id]
        self._next_wake = min((when for _, when in self._halted.values()),
                              default=NO_DEADLINE)
        return due

    # ------------------------------------------------------------------

    def destroy(self) -> None:
        """Close the VM: vCPUs and memory go; further use gives EBADF."""
        with self._lock:
            if self._destroyed:
                return
            self._destroyed = True
            for vcpu in self._vcpus.values():
                vcpu.close()
            self._vcpus.clear()
            for slot in list(self._slots.values()):
                self.memory.remove(slot.region)
            self._slots.clear()

    @property
    def destroyed(self) -> bool:
        return self._destroyed

    def _check_alive(self) -> None:
        if self._destroyed:
            raise KvmError(errno.EBADF, "VM destroyed")
