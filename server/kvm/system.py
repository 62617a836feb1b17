"""The system object: what ``/dev/kvm`` answers before any VM exists.

``KvmSystem`` has one method per system ioctl (``get_api_version``,
``check_extension`` (see ``caps``), ``get_vcpu_mmap_size``, ``create_vm``).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Optional

from .caps import check_extension
from .clock import DETERMINISTIC, TICK_PER_INSN, GuestClock
from .profiles import DEFAULT_KERNEL, HostProfile, kernel_profile, platform
from .vm import Vm

KVM_API_VERSION = 12
PAGE_SIZE = 4096
# kvm_run page + coalesced-MMIO page
KVM_VCPU_MMAP_SIZE = 2 * PAGE_SIZE

class KvmSystem:
    """``/dev/kvm`` of the emulated host."""

    def __init__(self, host: Optional[HostProfile] = None, engine: str = "fast",
                 ns_per_insn: Optional[Fraction] = None,
                 clock: Optional[GuestClock] = None) -> None:
        self.host = host or HostProfile.default()
        self.engine = engine
        # the guest clock of new VMs (see clock.GuestClock): ``clock``, or
        # deterministic at ``ns_per_insn`` (None: one tick per instruction)
        if clock is None:
            clock = GuestClock(DETERMINISTIC, ns_per_insn) if ns_per_insn else TICK_PER_INSN
        self.clock = clock

    @property
    def ns_per_insn(self) -> Optional[Fraction]:
        """The default clock's rate (None: one tick per instruction, or host time)."""
        return self.clock.ns_per_insn

    def get_api_version(self) -> int:
        return KVM_API_VERSION

    def check_extension(self, cap: int) -> int:
        return check_extension(cap, self.host)

    def get_vcpu_mmap_size(self) -> int:
        return KVM_VCPU_MMAP_SIZE

    def create_vm(self, machine_type: int = 0, profile: str = DEFAULT_KERNEL,
                  host: Optional[HostProfile] = None,
                  clock: Optional[GuestClock] = None) -> Vm:
        """KVM_CREATE_VM; RISC-V ignores the machine type. ``profile`` names
        the kernel ABI (``kernel_profile``), ``host`` overrides the host."""
        kernel_profile(profile)  # unknown names raise ValueError early
        vm = Vm(platform(profile, host or self.host), engine=self.engine)
        clock = clock or self.clock
        if clock != TICK_PER_INSN:
            vm.clock = clock
        return vm
