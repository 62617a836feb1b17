"""A VM's guest clock: what the ``time`` CSR, the timer registers, SBI
set_timer and Sstc's stimecmp count against.

Two kinds (an rvkvm setting; under Linux KVM guest time is the host's):

- deterministic: time advances with retired instructions, ``ns_per_insn``
  nanoseconds of guest time each (None: one timebase tick per instruction),
  and WFI with a timer armed skips ahead to it when no other vCPU runs. Runs are reproducible, and
  a low rate keeps timer ticks from multiplying the work of a boot (a tick
  every 4 ms of guest time is a tick every 4 M instructions at 1 ns, every
  40 k at one tick per instruction at 10 MHz);
- host: time follows the host's monotonic clock at the timebase frequency,
  as on KVM; WFI sleeps until the timer. For interactive use.

Deterministic time with several vCPUs (``Vm.note_time``, ``Vm.sync_time``,
``Vm.halt``) is one VM clock kept as a discrete-event simulator keeps it:

1. VM time only rises: it is the furthest any vCPU's time got after a slice
   (``note_time``), or what ``set_time`` (ONE_REG ``timer time``) wrote. A
   vCPU entering the guest is brought up to it (``sync_time``): vCPUs stay
   within about one slice of each other, and each vCPU's time is monotonic.
2. A vCPU whose hart waits in WFI with nothing pending is halted. If VM
   time already reached its timer it runs on. Otherwise, while another vCPU
   drives time (rule 4), it sleeps and costs nothing; the vCPU whose
   ``note_time`` (or a ``set_time``) brings VM time to its timer wakes it.
   A running vCPU's slice ends at the earliest timer of the halted ones
   (``slice_until_wake``), so the wake-up comes at that time, not up to a
   slice later.
3. When no other vCPU drives time, time skips to the earliest timer of the
   halted vCPUs (this one's included) and wakes them; a WFI never moves
   time past another vCPU's deadline, nor while another vCPU runs. With no
   timer armed anywhere, only an interrupt, IPI, HSM start or kick wakes a
   vCPU. A single vCPU thus skips to its own timer, as before.
4. A vCPU drives time when it is RUNNABLE, not halted, and a run of it goes
   on, or one ended less than ``vm.DRIVE_WINDOW`` (2 s) ago, or it was
   woken (interrupt, IPI, HSM start) that recently while its caller waits
   for the wake-up (its last run returned idle). A vCPU no one ever ran
   does not count. A RUNNABLE vCPU whose Run nobody calls any more holds
   the others back for that window after its last run only, however often
   it is woken: a halted vCPU looks
   again after it (``recheck_at``), so the VM neither stalls nor races
   ahead; run again later, that vCPU finds VM time where the others took it,
   like a host thread that was descheduled.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Optional

DETERMINISTIC = "deterministic"
HOST = "host"
MODES = (DETERMINISTIC, HOST)


@dataclass(frozen=True)
class GuestClock:
    """A clock setting. ``ns_per_insn`` only in deterministic mode."""

    mode: str = DETERMINISTIC
    ns_per_insn: Optional[Fraction] = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown clock mode {self.mode!r} (known: {', '.join(MODES)})")
        if self.ns_per_insn is not None:
            if self.mode != DETERMINISTIC:
                raise ValueError("a rate (ns per instruction) is only for the deterministic clock")
            rate = Fraction(self.ns_per_insn)
            if rate <= 0:
                raise ValueError("ns_per_insn must be positive")
            object.__setattr__(self, "ns_per_insn", rate)

    def describe(self) -> str:
        if self.mode == HOST:
            return "host clock"
        if self.ns_per_insn is None:
            return "deterministic, one timebase tick per instruction"
        return f"deterministic, {self.ns_per_insn} ns per instruction"


# One tick per instruction (100 ns at the default 10 MHz timebase): the
# model's own default, kept for tests and for the KVM model used directly.
TICK_PER_INSN = GuestClock()
# rvkvm-server's default for new VMs: 1 ns of guest time per instruction
# (QEMU's -icount shift=0): a Linux boot does the least work at this rate.
SERVER_DEFAULT = GuestClock(DETERMINISTIC, Fraction(1))


def parse_clock(text: str) -> GuestClock:
    """``host``, ``tick`` (one tick per instruction), or a positive number
    of nanoseconds per instruction (``1``, ``0.5``, ``1/4``)."""
    text = text.strip()
    if text == HOST:
        return GuestClock(HOST)
    if text in ("tick", DETERMINISTIC):
        return TICK_PER_INSN
    try:
        rate = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"{text!r} is not 'host', 'tick' or a number of ns per instruction") \
            from None
    return GuestClock(DETERMINISTIC, rate)
