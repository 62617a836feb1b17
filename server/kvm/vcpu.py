"""A KVM vCPU: an emulator hart in S-mode, the Python host as its M/HS mode.

``Vcpu`` has one method per vCPU ioctl (``run``, ``get_one_reg``,
``set_one_reg``, ``get_reg_list``, ``interrupt``, ``get_mp_state``,
``set_mp_state``, ``set_guest_debug``) plus ``kick`` (immediate_exit and a
signal in one). The hart runs with ``intercept_mtraps``: traps KVM delegates
(``medeleg``/``mideleg`` = hedeleg/hideleg) go straight to the guest's
stvec; every other trap stops ``Hart.run`` and is handled here as KVM's
``kvm_riscv_vcpu_exit`` does (kvm-riscv-uapi.md section 11).

Threads: ``run`` and the register ioctls hold the vCPU mutex, as KVM does;
``interrupt``, ``kick`` and the requests other vCPUs make (IPI, HSM start,
remote fences, power off) are asynchronous: they queue a request, wake the
vCPU and kick its hart, and the vCPU applies them in its own thread.

Idle: a vCPU in WFI with nothing pending and no timer armed, or a powered
off vCPU, sleeps in ``run`` until something wakes it (interrupt, IPI, HSM
start, kick) or ``idle_timeout`` seconds pass, then returns an ``IntrExit``
(``why="idle"``). With an armed timer and deterministic time (it advances
with retired instructions), WFI skips ahead to the deadline when no other
vCPU drives time, else sleeps until a running vCPU brings VM time to the
deadline and wakes it (``Vm.halt``, the rules in clock.py).

Slices: ``run(deadline=...)`` also ends when a wall-clock deadline passes
(an alarm kicks the hart, ``IntrExit("slice")``), and ``preempt()`` ends the
current slice the same way; neither is a guest event nor a KVM exit, so a
scheduler can cut a slow guest's run into bounded slices without changing
what the guest sees. ``last_run_insns`` is what the last ``run()`` used of its
budget; ``wake_listener`` is called (from any thread) whenever something
wakes the vCPU, so a caller that does not sleep in ``run()`` knows when to
run it again.
"""

from __future__ import annotations

import errno
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Set, Tuple, TypeVar, Union

from rvkvm.emulator import csr as C
from rvkvm.emulator.events import GuestExit, Stop, Trap
from rvkvm.emulator.hart import FETCH, LOAD, NO_DEADLINE, PRV_S, STORE, Hart
from rvkvm.uapi.kvm import (
    KVM_GUESTDBG_ENABLE,
    KVM_INTERRUPT_SET,
    KVM_MP_STATE_INIT_RECEIVED,
    KVM_MP_STATE_RUNNABLE,
    KVM_MP_STATE_STOPPED,
)

from . import exits as X
from .alarm import ALARMS, Alarm
from .backend import HEDELEG_DEFAULT
from .errors import KvmError
from .fwft import fwft_reset
from .hart_backend import SEIP_BIT, HartBackend
from .insn import MemInsn, decode_mem_insn, sign_extend
from .profiles import ISA_BY_NAME_ID
from .reglist import OneRegMap
from .sbi import MAX_FENCE_RANGES, REQ_FENCE_I, REQ_IPI, REQ_SFENCE_VMA, handle_ecall
from .sbi_ext import FWFT_FEATURES, STA_SHMEM_DISABLED
from .stats import VCPU_COUNTED, VCPU_STATS

if TYPE_CHECKING:
    from .vm import Vm

U64_MASK = (1 << 64) - 1

HEDELEG_BREAKPOINT = 1 << C.CAUSE_BREAKPOINT
# hideleg = VSSIP | VSTIP | VSEIP; on a hart without H the S bits stand for them.
HIDELEG_DEFAULT = C.SSIP | C.STIP | C.SEIP
# The guest reads time, cycle and instret directly (hcounteren).
GUEST_COUNTERS = 0x7

DEFAULT_BUDGET = 500_000  # instructions per run() call
DEFAULT_IDLE_TIMEOUT = 0.1  # seconds a run() call sleeps while idle
SLICE = 1 << 20

T = TypeVar("T")


class Busy:
    """What ``Vcpu.call_nowait`` returns when another thread holds the vCPU."""

    def __repr__(self) -> str:
        return "BUSY"


BUSY = Busy()

# The traps KVM counts when it redirects them (vcpu_exit.c), by cause.
_REDIRECT_STATS = {
    C.CAUSE_ILLEGAL: "instr_illegal_exits",
    C.CAUSE_MISALIGNED_LOAD: "load_misaligned_exits",
    C.CAUSE_MISALIGNED_STORE: "store_misaligned_exits",
    C.CAUSE_LOAD_ACCESS: "load_access_exits",
    C.CAUSE_STORE_ACCESS: "store_access_exits",
}

_ACCESS_FAULT = {FETCH: C.CAUSE_FETCH_ACCESS, LOAD: C.CAUSE_LOAD_ACCESS,
                 STORE: C.CAUSE_STORE_ACCESS}

# Traps KVM redirects into the guest when they reach it undelegated.
_REDIRECTED = frozenset({
    C.CAUSE_MISALIGNED_FETCH, C.CAUSE_FETCH_ACCESS, C.CAUSE_ILLEGAL,
    C.CAUSE_MISALIGNED_LOAD, C.CAUSE_LOAD_ACCESS, C.CAUSE_MISALIGNED_STORE,
    C.CAUSE_STORE_ACCESS,
})

_PMLEN = next(f for f in FWFT_FEATURES if f.name == "POINTER_MASKING_PMLEN")
_FWFT_FIELDS = {word: sum({f.mask for f in FWFT_FEATURES if f.word == word})
                for word in ("hedeleg", "henvcfg")}

_FIRST_RUN_ENVCFG: Tuple[Tuple[str, int], ...] = (
    ("SVPBMT", C.ENV_PBMTE),
    ("SSTC", C.ENV_STCE),
    ("ZICBOM", C.ENV_CBIE | C.ENV_CBCFE),
    ("ZICBOZ", C.ENV_CBZE),
)


def _sta_reset(vcpu: Vcpu) -> None:
    vcpu.backend.set_sta_shmem(STA_SHMEM_DISABLED)


# (KVM SBI extension, reset hook) in KVM's extension-table order.
_SBI_RESET_HOOKS: Tuple[Tuple[str, Callable[[Vcpu], None]], ...] = (
    ("STA", _sta_reset),
    ("FWFT", fwft_reset),
)


class MmioAccess(GuestExit):
    """A guest load/store outside every memory slot (raised by the VM's
    ``PhysMemory.unmapped`` handler; the hart stops before the instruction)."""

    def __init__(self, phys_addr: int, size: int, is_write: bool, value: int = 0) -> None:
        super().__init__(phys_addr, size, is_write)
        self.phys_addr = phys_addr
        self.size = size
        self.is_write = is_write
        self.value = value


class CsrAccess(GuestExit):
    """A CSR access KVM hands to userspace (raised by a hart CSR hook)."""

    def __init__(self, csr_num: int, new_value: int, write_mask: int) -> None:
        super().__init__(csr_num)
        self.csr_num = csr_num
        self.new_value = new_value
        self.write_mask = write_mask


def _has(isa: Set[int], name: str) -> bool:
    return ISA_BY_NAME_ID[name] in isa


class Vcpu:
    """One vCPU of a ``Vm`` (created by ``Vm.create_vcpu``)."""

    def __init__(self, vm: Vm, vcpu_id: int, runnable: bool) -> None:
        self.vm = vm
        self.id = vcpu_id
        plat = vm.platform
        self.hart = Hart(vm.memory, hartid=vcpu_id, engine=vm.engine, misaligned="trap",
                         pmlens=vm.host_pmlens)
        self.hart.intercept_mtraps = True
        self.hart.wfi_skip = False  # the VM decides WFI time skips (Vm.halt)
        self.hart.mmio_store_hook = self._coalesce_store
        self.config = plat.new_vcpu_config()
        self.backend = HartBackend(self)
        self.onereg = OneRegMap(plat, self.config, self.backend)
        self.mp_state = KVM_MP_STATE_RUNNABLE if runnable else KVM_MP_STATE_STOPPED
        self.guest_debug = False
        self.idle = False  # sleeping in run() (HSM reports SUSPENDED)
        # the VM clock (Vm.halt, Vm.drives_time): in a run() now; its last
        # run() returned idle (its caller waits for a wake-up to run it
        # again); until when (monotonic seconds) it drives VM time after a
        # run or a wake-up; when a halted vCPU looks again whether time may skip
        self.in_run = False
        self.awaits_wake = False
        self.drive_until = 0.0
        self.recheck_at: Optional[float] = None
        # the vCPU ioctl lock; reentrant so that call_nowait can hold it
        # around an ioctl that takes it again
        self._mutex = threading.RLock()
        self._lock = threading.Lock()  # guards the request fields below
        self._wake = threading.Event()
        self._kick = False
        self._preempt = False
        self.last_run_insns = 0
        self.wake_listener: Optional[Callable[[], None]] = None
        self._timer_alarm: Optional[Alarm] = None  # host clock: wakes WFI at the timer
        self._requests = 0
        # remote sfence.vma of a range, queued: (first page, pages, ASID or None)
        self._fences: List[Tuple[int, int, Optional[int]]] = []
        self._seip: Optional[bool] = None
        self._start: Optional[Tuple[int, int]] = None  # SBI reset: (pc, a1)
        self._completion: Optional[Callable[[], None]] = None
        self._last_exit: Optional[X.Exit] = None
        self._configured = False
        self._envcfg = 0  # henvcfg bits computed at the first run
        self._traps = 0
        self._trap_limit = SLICE
        self._closed = False
        self._take_trap = self.hart.take_trap
        # statistics (stats.VCPU_STATS): counters, and the current halt
        self.counts: Dict[str, int] = dict.fromkeys(VCPU_COUNTED, 0)
        self._halt_since: Optional[float] = None
        self._halt_ns = 0
        # Workaround: Hart.run counts only retired instructions against its
        # budget, so a guest stuck in a delegated trap loop (stvec faulting)
        # would never return; count trap entries too.
        self.hart.take_trap = self._counted_take_trap  # type: ignore[method-assign]
        self.reset()

    # ------------------------------------------------------------------
    # ioctls

    def get_one_reg(self, reg_id: int) -> bytes:
        with self._mutex:
            self._check_alive()
            self._apply_requests(start=False)  # KVM flushes pending irqs into sip first
            return self.onereg.get_one_reg(reg_id)

    def set_one_reg(self, reg_id: int, data: bytes) -> None:
        with self._mutex:
            self._check_alive()
            self._apply_requests(start=False)
            try:
                self.onereg.set_one_reg(reg_id, data)
            finally:
                self.hart.update_ctx()
                self.hart.irq_dirty = True

    def get_reg_list(self) -> List[int]:
        with self._mutex:
            self._check_alive()
            return self.onereg.get_reg_list()

    def call_nowait(self, ioctl: Callable[..., T], *args: Any) -> Union[T, Busy]:
        """``ioctl(*args)`` (a method of this vCPU) if the vCPU mutex is free
        now, else ``BUSY`` without waiting: a thread that must not block (an
        event loop) answers a register ioctl at once between slices, and
        hands it to a thread that may wait only while a slice runs."""
        if not self._mutex.acquire(blocking=False):
            return BUSY
        try:
            return ioctl(*args)
        finally:
            self._mutex.release()

    def get_value(self, reg_id: int) -> int:
        """``get_one_reg`` as an unsigned integer."""
        return int.from_bytes(self.get_one_reg(reg_id), "little")

    def set_value(self, reg_id: int, value: int) -> None:
        """``set_one_reg`` from an unsigned integer of the id's size."""
        size = 1 << ((reg_id >> 52) & 0xF)
        self.set_one_reg(reg_id, (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little"))

    def interrupt(self, irq: int) -> None:
        """KVM_INTERRUPT: SET (0xFFFFFFFF) raises the supervisor external
        interrupt line, any other value lowers it. Asynchronous."""
        self._check_alive()
        with self._lock:
            self._seip = (irq & 0xFFFF_FFFF) == KVM_INTERRUPT_SET
        self._wake_up()

    def kick(self) -> None:
        """Make the current or next ``run()`` return ``IntrExit("kick")``
        (a signal / immediate_exit). Asynchronous."""
        with self._lock:
            self._kick = True
        self._wake_up()

    def preempt(self) -> None:
        """End the current ``run()`` slice at the next block boundary with
        ``IntrExit("slice")`` (a scheduler's preemption, not a kick: it is
        forgotten when the slice ends). Asynchronous."""
        self._preempt = True
        self.hart.kick()

    def get_mp_state(self) -> int:
        return self.mp_state

    def set_mp_state(self, state: int) -> None:
        with self._mutex:
            self._check_alive()
            if state == KVM_MP_STATE_RUNNABLE:
                self.power_on()
            elif state == KVM_MP_STATE_STOPPED:
                self.power_off()
            elif state == KVM_MP_STATE_INIT_RECEIVED and self.vm.mp_state_reset:
                self.reset()
            else:
                raise KvmError(errno.EINVAL, f"unsupported MP state {state}")

    def set_guest_debug(self, control: int) -> None:
        """KVM_SET_GUEST_DEBUG: with ENABLE, ``ebreak`` is not delegated and
        exits with KVM_EXIT_DEBUG; SINGLESTEP has no effect on RISC-V."""
        with self._mutex:
            self._check_alive()
            self.guest_debug = bool(control & KVM_GUESTDBG_ENABLE)
            self._apply_debug()

    def stats(self) -> Dict[str, int]:
        """KVM_GET_STATS_FD's data: {name: value} in ``stats.VCPU_STATS``
        order. Takes no lock (as KVM's stats read): read while the vCPU
        runs, each value is one the counter had during the run."""
        hart = self.hart
        tr = hart.translator
        values = dict(self.counts)
        since = self._halt_since
        values["halt_wait_ns"] = self._halt_ns + (
            0 if since is None else int((time.monotonic() - since) * 1e9))
        values["blocking"] = int(since is not None)
        values["wfi_exit_stat"] = hart.n_wfi
        values["rvkvm_fence_i"] = hart.n_fence_i
        values["rvkvm_sfence_vma"] = hart.n_sfence_vma
        values["rvkvm_translate_ns"] = int(tr.translate_seconds * 1e9)
        values["rvkvm_tier1_ns"] = int(tr.tier1_seconds * 1e9)
        values["rvkvm_regions_translated"] = tr.blocks_built
        values["rvkvm_insns_translated"] = tr.insns_translated
        values["rvkvm_tier1_blocks"] = tr.tier1_built
        values["rvkvm_code_evictions"] = tr.evictions
        return {desc.name: values[desc.name] for desc in VCPU_STATS}

    @property
    def pending_exit(self) -> Optional[X.Exit]:
        """The exit whose completion the next ``run()`` applies (for adapters
        that carry the answer separately)."""
        return self._last_exit

    def run(self, budget: int = DEFAULT_BUDGET,
            idle_timeout: Optional[float] = DEFAULT_IDLE_TIMEOUT,
            deadline: Optional[float] = None) -> X.Exit:
        """KVM_RUN: run the guest until an exit, at most ``budget`` instructions
        (then ``IntrExit("budget")``).

        ``idle_timeout``: seconds to sleep while idle before returning
        ``IntrExit("idle")``; None sleeps until woken, as KVM does (0: return
        at once). ``deadline``: a ``time.monotonic()`` time after which the
        slice ends with ``IntrExit("slice")``. Bad host
        use raises ``KvmError`` with KVM's errno (also where Linux fails
        KVM_RUN because of the guest: EOPNOTSUPP, EIO, EFAULT); nothing else
        escapes: an emulator failure becomes ``InternalErrorExit``.
        """
        with self._mutex:
            return self._run_locked(budget, idle_timeout, deadline)

    def try_run(self, budget: int, deadline: Optional[float] = None) -> Optional[X.Exit]:
        """``run`` that never waits: None if another thread holds the vCPU
        (a register ioctl, another run), and idle is an ``IntrExit("idle")``
        at once. For adapters that try a short run on a thread that must
        not block (an event loop) before handing the vCPU to a worker."""
        if not self._mutex.acquire(blocking=False):
            return None
        try:
            return self._run_locked(budget, 0.0, deadline)
        finally:
            self._mutex.release()

    def _run_locked(self, budget: int, idle_timeout: Optional[float],
                    deadline: Optional[float]) -> X.Exit:
        self._check_alive()
        self.config.mark_ran()
        self._complete()
        self._preempt = False
        self.idle = False
        self.last_run_insns = 0
        with self._lock:
            kicked, self._kick = self._kick, False
        if kicked:
            return X.IntrExit(X.INTR_KICK)
        self.counts["rvkvm_runs"] += 1
        if not self._configured:
            self._first_run_setup()
        alarm = ALARMS.arm(deadline, self.hart.kick) if deadline is not None else None
        self.in_run = True
        result: Optional[X.Exit] = None
        try:
            result = self._run(budget, idle_timeout, deadline)
        except KvmError:
            raise
        except Exception as exc:  # an emulator failure must not kill the server
            result = X.InternalErrorExit(X.KVM_INTERNAL_ERROR_EMULATION,
                                         [self.hart.pc], f"{type(exc).__name__}: {exc}")
        finally:
            self.in_run = False
            self.awaits_wake = isinstance(result, X.IntrExit) and result.why == X.INTR_IDLE
            self.drive_until = time.monotonic() + self.vm.drive_window
            if alarm is not None:
                alarm.cancel()
        self._last_exit = result
        return result

    # ------------------------------------------------------------------
    # lifecycle

    def reset(self) -> None:
        """KVM's vCPU reset (creation, HSM start, MP_STATE INIT_RECEIVED)."""
        hart = self.hart
        # The FWFT fields of hedeleg/henvcfg are vCPU configuration (vcpu->arch.cfg):
        # a reset keeps them and only FWFT's reset hook clears them.
        kept_deleg = hart.medeleg & _FWFT_FIELDS["hedeleg"]
        kept_envcfg = hart.menvcfg & _FWFT_FIELDS["henvcfg"]
        hart.x[:] = [0] * 32
        hart.f[:] = [0] * 32
        hart.reset_csrs()
        hart.pc = 0
        hart.priv = PRV_S
        hart.mstatus |= C.MS_SPP | C.MS_SPIE
        hart.medeleg = HEDELEG_DEFAULT | kept_deleg
        hart.mideleg = HIDELEG_DEFAULT
        hart.mcounteren = GUEST_COUNTERS
        if not self.vm.platform.kernel.has("scounteren_reset_zero"):
            hart.scounteren = GUEST_COUNTERS  # before 6.16 the reset context set CY|TM|IR
        hart.menvcfg = self._envcfg | kept_envcfg
        hart.irq_lines = 0
        with self._lock:
            # Interrupts raised before the reset are pending ones, and
            # kvm_riscv_reset_vcpu clears irqs_pending: they are lost.
            self._requests &= ~REQ_IPI
            self._seip = None
        hart.waiting = False
        hart.reservation = None
        hart.mtimecmp = NO_DEADLINE
        self.backend.reset()
        self._apply_debug()
        has_fp = _has(self.config.isa, "F") or _has(self.config.isa, "D")
        self.backend.fp_reset(has_fp)
        self._sbi_reset_hooks()
        self._completion = None
        self._last_exit = None
        hart.update_ctx()
        hart.irq_dirty = True

    def _sbi_reset_hooks(self) -> None:
        """The SBI extensions' reset hooks (STA shared memory off, FWFT); since
        6.16 only those of enabled extensions run (vcpu_sbi.c)."""
        plat = self.vm.platform
        only_enabled = plat.kernel.has("sbi_reset_enabled_only")
        for name, hook in _SBI_RESET_HOOKS:
            if name not in (row.name for row in plat.kernel.sbi_exts):
                continue
            if only_enabled and not plat.sbi_enabled(self.config, name):
                continue
            hook(self)

    def close(self) -> None:
        self._closed = True
        if self._timer_alarm is not None:
            self._timer_alarm.cancel()
        self.kick()
        self.hart.close()

    def _check_alive(self) -> None:
        if self._closed:
            raise KvmError(errno.EBADF, "vCPU destroyed")

    def _first_run_setup(self) -> None:
        """kvm_riscv_vcpu_setup_config: henvcfg from the final vCPU ISA."""
        isa = self.config.isa
        envcfg = 0
        for name, bits in _FIRST_RUN_ENVCFG:
            if _has(isa, name):
                envcfg |= bits
        if _has(isa, "SVADU") and not _has(isa, "SVADE"):
            envcfg |= C.ENV_ADUE
        self._envcfg = envcfg
        hart = self.hart
        keep = hart.menvcfg
        state = self.config.fwft.get(_PMLEN.feature_id)
        if state is None or not self.vm.platform.fwft_supported(self.config, _PMLEN):
            # no guest Smnpm: S-mode pointer masking stays off
            keep &= ~C.ENV_PMM
        hart.menvcfg = keep | envcfg
        if _has(isa, "ZKR"):
            hart.csr_hooks[C.SEED] = self._seed_access
        self._configured = True
        hart.update_ctx()

    def _apply_debug(self) -> None:
        if self.guest_debug:
            self.hart.medeleg &= ~HEDELEG_BREAKPOINT
        else:
            self.hart.medeleg |= HEDELEG_BREAKPOINT

    # -- power and requests (may be called from other threads) -------------

    @property
    def stopped(self) -> bool:
        return self.mp_state == KVM_MP_STATE_STOPPED

    def power_on(self) -> None:
        self.mp_state = KVM_MP_STATE_RUNNABLE
        self._wake_up()

    def power_off(self) -> None:
        self.mp_state = KVM_MP_STATE_STOPPED
        self._wake_up()

    def request_start(self, pc: int, opaque: int) -> None:
        """SBI-initiated reset (HSM hart_start, SUSP resume), applied at entry."""
        with self._lock:
            self._start = (pc, opaque)
        self._wake_up()

    def request(self, bits: int) -> None:
        """Queue REQ_* work (IPI, remote fences) for this vCPU."""
        with self._lock:
            self._requests |= bits
        self._wake_up()

    def request_fence_vma(self, first: Optional[int], pages: int, asid: Optional[int]) -> None:
        """Queue a remote sfence.vma: ``pages`` pages from address ``first``
        (None: the whole address space) of ASID ``asid`` (None: every ASID).
        A full queue, or a fence of everything in every ASID, becomes the
        whole flush (REQ_SFENCE_VMA)."""
        with self._lock:
            if first is None and asid is None:
                self._requests |= REQ_SFENCE_VMA
            elif not self._requests & REQ_SFENCE_VMA:
                if len(self._fences) >= MAX_FENCE_RANGES:
                    self._requests |= REQ_SFENCE_VMA
                else:
                    self._fences.append((-1 if first is None else first, pages, asid))
        self._wake_up()

    def _wake_up(self) -> None:
        self.vm.resume(self)
        self._wake.set()
        self.hart.kick()
        listener = self.wake_listener
        if listener is not None:
            listener()

    def _apply_requests(self, start: bool = True) -> None:
        """Apply queued requests; an SBI reset (``start``) only on entry to
        the guest, as KVM handles KVM_REQ_VCPU_RESET in KVM_RUN."""
        with self._lock:
            start_state = self._start if start else None
            if start:
                self._start = None
        if start_state is not None:
            self._load_start_state(*start_state)
        with self._lock:
            requests, self._requests = self._requests, 0
            seip, self._seip = self._seip, None
            fences, self._fences = self._fences, []
        hart = self.hart
        if requests & REQ_IPI:
            hart.mip |= C.SSIP
        if requests & REQ_SFENCE_VMA:
            hart.fence_vma()  # everything: the ranges queued with it are inside
        else:
            for first, pages, asid in fences:
                if first < 0:
                    hart.fence_vma(None, asid)
                else:
                    for page in range(pages):
                        hart.fence_vma(first + (page << 12), asid)
        if requests & REQ_FENCE_I:
            hart.order_fetches()
        if seip is not None:
            hart.set_irq_line(SEIP_BIT, seip)
        hart.irq_dirty = True

    def _load_start_state(self, pc: int, opaque: int) -> None:
        # KVM_REQ_VCPU_RESET: always a full reset, then
        # kvm_riscv_vcpu_sbi_load_reset_state (KVM_CAP_RISCV_MP_STATE_RESET
        # changes nothing here).
        self.reset()
        hart = self.hart
        hart.mstatus &= ~C.MS_SIE
        hart.satp = 0
        hart.priv = PRV_S
        hart.pc = pc & U64_MASK
        hart.x[10] = self.id
        hart.x[11] = opaque & U64_MASK
        hart.waiting = False
        hart.update_ctx()

    # ------------------------------------------------------------------
    # the run loop

    def _counted_take_trap(self, cause: int, tval: int, pc: int,
                           interrupt: bool = False) -> Optional[Stop]:
        self._traps += 1
        if self._traps >= self._trap_limit:
            self.hart.kick()
        return self._take_trap(cause, tval, pc, interrupt)

    def _run(self, budget: int, idle_timeout: Optional[float],
             deadline: Optional[float]) -> X.Exit:
        hart = self.hart
        remaining = budget
        while True:
            self.last_run_insns = budget - remaining
            self._apply_requests()
            with self._lock:
                kicked, self._kick = self._kick, False
            if kicked:
                self.counts["signal_exits"] += 1
                return X.IntrExit(X.INTR_KICK)
            if self._preempt or (deadline is not None and time.monotonic() >= deadline):
                return X.IntrExit(X.INTR_SLICE)
            if self.stopped:
                if not self._sleep(idle_timeout):
                    return X.IntrExit(X.INTR_IDLE)
                continue
            if remaining <= 0:
                return X.IntrExit(X.INTR_BUDGET)
            self.vm.sync_time(hart)
            start = hart.instret
            self._traps = 0
            self._trap_limit = min(remaining, SLICE)
            halted = self._halt_since
            entry = time.monotonic() if halted is not None else 0.0
            stop = hart.run(self.vm.slice_until_wake(hart, self._trap_limit))
            if halted is not None and (stop.reason != "wfi" or hart.instret != start):
                # the guest ran on from its WFI: a wakeup
                self._halt_since = None
                self.vm.resume(self)
                self.counts["halt_wakeup"] += 1
                self._halt_ns += int((entry - halted) * 1e9)
            counts = self.counts
            if halted is None or self._halt_since is None:  # not a halt going on
                counts["exits"] += 1
            counts["rvkvm_instructions"] += hart.instret - start
            remaining -= hart.instret - start + self._traps
            self.last_run_insns = budget - remaining
            self.vm.note_time(hart)
            if stop.reason == "wfi":
                if self._halt_since is None:
                    self._halt_since = time.monotonic()
                if not self._sleep(idle_timeout):
                    return X.IntrExit(X.INTR_IDLE)
                continue
            if stop.reason == "trap":
                result = self._handle_trap(stop)
            elif stop.reason == "exit":
                result = self._handle_guest_exit(stop.event)
            else:  # budget, kick (requests or the trap counter), halt
                result = None
            if result is not None:
                return result

    def _sleep(self, timeout: Optional[float]) -> bool:
        """Block until there is work; False if ``timeout`` passed first."""
        self._wake.clear()
        self._apply_requests()
        if self._has_work():
            return True
        if not self.stopped and self.vm.halt(self):
            return True  # deterministic time: its timer is due
        self._arm_timer_wake()
        self.idle = True
        if timeout == 0:
            # the caller waits for wake_listener instead: blocked until the
            # next run() (HSM sees it SUSPENDED meanwhile)
            woke = self._wake.is_set()
            self.idle = not woke
            return woke
        try:
            woke = self._wake.wait(timeout)
        finally:
            self.idle = False
        return woke

    def _arm_timer_wake(self) -> None:
        """Host-clock mode: WFI with a timer armed sleeps until the host
        clock reaches it; the alarm wakes the vCPU like an interrupt would.
        Deterministic time: the vCPUs that run wake it at its timer
        (``Vm.note_time``); an alarm at ``recheck_at`` only makes it look
        again whether time may skip (it does not make it drive time)."""
        old, self._timer_alarm = self._timer_alarm, None
        if old is not None:
            old.cancel()
        if self.stopped:
            return
        if not self.vm.host_clock:
            if self.recheck_at is not None:
                self._timer_alarm = ALARMS.arm(self.recheck_at, self._recheck)
            return
        hart = self.hart
        nxt = hart._next_timer(hart.time())
        if nxt != NO_DEADLINE:
            # a timer days away wakes the vCPU after a day, to sleep again
            delay = min(self.vm.seconds_until(nxt), 86400.0)
            self._timer_alarm = ALARMS.arm(time.monotonic() + delay, self._wake_up)

    def _recheck(self) -> None:
        self._wake.set()
        listener = self.wake_listener
        if listener is not None:
            listener()

    def _has_work(self) -> bool:
        if self._kick:
            return True
        if self.stopped:
            return False
        hart = self.hart
        return not hart.waiting or bool(hart.read_mip() & hart.mie)

    # -- completions of the previous exit -----------------------------------

    def _complete(self) -> None:
        """Apply what userspace filled into the last exit (at most once)."""
        completion, self._completion = self._completion, None
        if completion is not None:
            completion()

    def _step_over(self, length: int) -> None:
        self.hart.pc = (self.hart.pc + length) & U64_MASK

    def _set_reg(self, reg: int, value: int) -> None:
        if reg:
            self.hart.x[reg] = value & U64_MASK

    def has_completion(self) -> bool:
        return self._completion is not None

    def sbi_exit(self, exit_: X.SbiExit,
                 then: Optional[Callable[[], None]] = None) -> X.SbiExit:
        """Arm the completion of a forwarded SBI call: a0/a1 <- ret, pc += 4
        (then ``then``, e.g. SUSP's resume reset)."""

        def complete() -> None:
            self._set_reg(10, exit_.ret[0])
            self._set_reg(11, exit_.ret[1])
            self._step_over(4)
            if then is not None:
                then()

        self._completion = complete
        return exit_

    # -- traps that reach the host -------------------------------------------

    def _handle_trap(self, stop: Stop) -> Optional[X.Exit]:
        cause = stop.cause
        if stop.interrupt:
            # every guest interrupt is delegated; nothing else can be pending
            raise KvmError(errno.EFAULT, f"unexpected interrupt {cause}")
        if cause == C.CAUSE_ECALL_S:
            self.counts["ecall_exit_stat"] += 1
            return handle_ecall(self)
        if cause == C.CAUSE_BREAKPOINT and self.guest_debug:
            return X.DebugExit()
        if cause == C.CAUSE_STORE_ACCESS:
            readonly, exit_ = self._readonly_store(stop.tval)
            if readonly:
                return exit_
        if cause == C.CAUSE_FETCH_ACCESS and not self.vm.memory.is_ram(self._fetch_phys()):
            raise KvmError(errno.EOPNOTSUPP, f"instruction fetch from non-RAM at {self.hart.pc:#x}")
        if cause in _REDIRECTED:
            stat = _REDIRECT_STATS.get(cause)
            if stat is not None:
                self.counts[stat] += 1
            self.redirect_trap(cause, stop.tval)
            return None
        raise KvmError(errno.EFAULT, f"unexpected trap cause {cause}")

    def redirect_trap(self, cause: int, tval: int) -> None:
        """kvm_riscv_vcpu_trap_redirect: deliver a trap to the guest's stvec."""
        hart = self.hart
        ms = hart.mstatus & ~(C.MS_SPP | C.MS_SPIE | C.MS_SIE)
        if hart.priv == PRV_S:
            ms |= C.MS_SPP
        if hart.mstatus & C.MS_SIE:
            ms |= C.MS_SPIE
        hart.mstatus = ms
        hart.scause = cause
        hart.stval = tval & U64_MASK
        hart.sepc = hart.pc
        hart.pc = hart.stvec & ~3
        hart.priv = PRV_S
        hart.update_ctx()
        hart.irq_dirty = True

    def translate(self, va: int, access: int, priv: int) -> int:
        """Guest-virtual to guest-physical as the hart would; a page-table
        walk outside RAM is an access fault here (raised as Trap)."""
        try:
            return self.hart.translate(va & U64_MASK, access, priv)
        except GuestExit:
            raise Trap(_ACCESS_FAULT[access], va) from None

    def _fetch_phys(self) -> int:
        try:
            return self.translate(self.hart.pc, FETCH, self.hart.priv)
        except Trap:
            return self.hart.pc

    def _insn_at_pc(self) -> int:
        try:
            return self.hart.fetch(self.hart.pc)[0]
        except (Trap, GuestExit):
            raise KvmError(errno.EFAULT, "cannot read the trapping instruction") from None

    def _mmio_exit(self, phys_addr: int, size: int, is_write: bool,
                   value: int) -> Optional[X.MmioExit]:
        """KVM_EXIT_MMIO for the load/store at pc (decoded as KVM does), or
        None for a store the coalesced-MMIO ring took (the guest goes on)."""
        insn = self._mmio_insn(phys_addr, size, is_write)
        exit_ = X.MmioExit(phys_addr, size, is_write, value)
        # kvm_riscv_vcpu_mmio_store: the in-kernel MMIO bus (coalesced zones) first
        if is_write and self.vm.coalesced_mmio.write(phys_addr, size, exit_.data):
            self.counts["mmio_exit_kernel"] += 1
            self._step_over(insn.length)
            return None
        self.counts["mmio_exit_user"] += 1

        def complete() -> None:
            if not is_write:
                data = int.from_bytes(bytes(exit_.data[:size]), "little")
                self._set_reg(insn.reg, sign_extend(data, size) if insn.signed else data)
            self._step_over(insn.length)

        self._completion = complete
        return exit_

    def _mmio_insn(self, phys_addr: int, size: int, is_write: bool) -> MemInsn:
        """The load/store at pc as KVM decodes it for MMIO; KvmError
        EOPNOTSUPP for one it cannot emulate, EIO for a misaligned access."""
        insn = decode_mem_insn(self._insn_at_pc())
        if insn is None or insn.is_store != is_write:
            raise KvmError(errno.EOPNOTSUPP, f"MMIO by an instruction KVM cannot emulate "
                           f"at {self.hart.pc:#x}")
        if phys_addr & (size - 1):
            raise KvmError(errno.EIO, f"misaligned MMIO at {phys_addr:#x}")
        return insn

    def _coalesce_store(self, phys_addr: int, size: int, value: int) -> bool:
        """The in-kernel MMIO bus, without leaving the hart's run: a store
        into a coalesced zone with room in the ring is queued and the guest
        goes on (True), by the rules of ``_mmio_exit``. Anything else
        (False) takes the ordinary path: an MMIO exit, or its error."""
        ring = self.vm.coalesced_mmio
        if not ring.has_zones():
            return False
        try:
            self._mmio_insn(phys_addr, size, True)
        except KvmError:
            return False  # _mmio_exit raises it again, on the ordinary path
        if not ring.write(phys_addr, size, X.MmioExit(phys_addr, size, True, value).data):
            return False
        counts = self.counts
        counts["exits"] += 1  # a KVM host exits to its in-kernel bus here
        counts["mmio_exit_kernel"] += 1
        return True

    def _readonly_store(self, va: int) -> Tuple[bool, Optional[X.Exit]]:
        """A store to a read-only memslot is an MMIO write (KVM G-stage
        fault): (True, its exit, None if coalesced), else (False, None)."""
        hart = self.hart
        try:
            pa = self.translate(va, STORE, hart.ctx.data_priv)
        except Trap:
            return False, None
        if not self.vm.is_readonly(pa):
            return False, None
        insn = decode_mem_insn(self._insn_at_pc())
        if insn is None or not insn.is_store:
            raise KvmError(errno.EOPNOTSUPP, f"read-only memory written by an instruction KVM "
                           f"cannot emulate at {hart.pc:#x}")
        return True, self._mmio_exit(pa, insn.size, True, hart.x[insn.reg])

    def _handle_guest_exit(self, event: Optional[BaseException]) -> Optional[X.Exit]:
        if isinstance(event, MmioAccess):
            return self._mmio_exit(event.phys_addr, event.size, event.is_write, event.value)
        if isinstance(event, CsrAccess):
            rd = (self._insn_at_pc() >> 7) & 31
            exit_ = X.CsrExit(event.csr_num, event.new_value, event.write_mask)
            self.counts["csr_exit_user"] += 1

            def complete() -> None:
                self._set_reg(rd, exit_.ret_value)
                self._step_over(4)

            self._completion = complete
            return exit_
        raise KvmError(errno.EFAULT, f"unexpected guest exit {event!r}")

    def _seed_access(self, num: int, op: str, src: int, do_read: bool,
                     do_write: bool) -> Optional[int]:
        # Zkr seed goes to userspace (vcpu_insn.c seed_csr_rmw): CSRRW ->
        # new = src, mask = all ones; CSRRS -> new = all ones, mask = src;
        # CSRRC -> new = 0, mask = src.
        if op == "w":
            raise CsrAccess(num, src & U64_MASK, U64_MASK)
        if op == "s":
            raise CsrAccess(num, U64_MASK, src & U64_MASK)
        raise CsrAccess(num, 0, src & U64_MASK)

    # -- guest memory helpers for the SBI code --------------------------------

    def read_guest_ulong(self, va: int) -> int:
        """An 8-byte load as the guest would do it (KVM's unprivileged read);
        raises Trap (to be redirected) if it faults."""
        pa = self.translate(va, LOAD, PRV_S)
        if va & 7 or not self.vm.memory.is_ram(pa):
            raise Trap(C.CAUSE_LOAD_ACCESS, va)
        return int(self.hart.mem.read(pa, 8))

