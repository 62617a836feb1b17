"""One RV64GC hart: architectural state, CSRs, traps, interrupts, the MMU
slow paths, and the run loop that drives either engine.

M-mode is real here (bare-metal programs run in it), but an owner can set
``intercept_mtraps`` so that every trap that would enter M-mode stops
:meth:`Hart.run` instead: the KVM host is then the M-mode (and HS-mode)
software, written in Python.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from . import csr as C
from .bits import M64
from .context import Ctx
from .events import CodeModified, GuestExit, StepInstead, Stop, Trap
from .memory import PACK, PAGE_MASK, PAGE_SHIFT, PAGE_SIZE, UNPACK, BusError, PhysMemory
from .pypy import as_word, opaque_call

PRV_U, PRV_S, PRV_M = C.PRV_U, C.PRV_S, C.PRV_M
NO_DEADLINE = 1 << 64

# satp.MODE -> (levels, virtual address bits)
PAGING_MODES = {8: (3, 39), 9: (4, 48), 10: (5, 57)}
# Entries of a hart's page-walk cache (Hart._pwc: (satp, va >> 21) -> the
# last-level page table); a full one starts again.
PWC_ENTRIES = 4096

# access kinds for the MMU
FETCH, LOAD, STORE = 0, 1, 2
_PAGE_FAULT = {FETCH: C.CAUSE_FETCH_PAGE_FAULT, LOAD: C.CAUSE_LOAD_PAGE_FAULT,
               STORE: C.CAUSE_STORE_PAGE_FAULT}
_ACCESS_FAULT = {FETCH: C.CAUSE_FETCH_ACCESS, LOAD: C.CAUSE_LOAD_ACCESS,
                 STORE: C.CAUSE_STORE_ACCESS}

PTE_V, PTE_R, PTE_W, PTE_X, PTE_U, PTE_G, PTE_A, PTE_D = (1 << i for i in range(8))
PTE_N = 1 << 63
PTE_PBMT_SHIFT = 61
PTE_RESERVED = 0x7F << 54

# SPMP entries behind siselect 0x100-0x13F (Sscsrind) and their writable cfg bits:
# R W X A L U SHARED.
SPMP_SELECT, SPMP_ENTRIES = 0x100, 64
SPMPCFG_WMASK = 0x39F

# What each CBO needs enabled in *envcfg (Zicbom/Zicboz).
CBO_BLOCK = 64
ZERO_BLOCK = bytes(CBO_BLOCK)

_SIGNED_MASK = {1: 0x80, 2: 0x8000, 4: 0x80000000, 8: 0}

# index of the physical page (minus the key) in a data TLB entry (Hart._fill)
TLB_PA = -1


def _sext_size(value: int, size: int) -> int:
    s = _SIGNED_MASK[size]
    if not s:
        return value
    return ((value ^ s) - s) & M64


# Execution engines: the block translator and the reference interpreter.
ENGINES = ("fast", "reference")
# Translation contexts a hart keeps (each with its block cache and TLBs);
# past it the least recently entered one is dropped.
MAX_CTXS = 64


class Hart:
    """An RV64GC hart attached to a :class:`PhysMemory`."""

    def __init__(self, mem: PhysMemory, hartid: int = 0, engine: str = "fast",
                 misaligned: str = "hardware", pmlens: Sequence[int] = (7, 16)) -> None:
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
        if misaligned not in ("hardware", "trap"):
            raise ValueError("misaligned must be 'hardware' or 'trap'")
        self.mem = mem
        self.engine = engine
        self.misaligned = misaligned
        self.hartid = hartid
        # Pointer masking (Smmpm/Smnpm/Ssnpm): supported PMLEN values; empty = absent.
        self.pmlens = tuple(pmlens)
        self.x: List[int] = [0] * 32
        self.f: List[int] = [0] * 32
        self.pc = 0
        self.priv = PRV_M
        self.instret = 0
        self.intercept_mtraps = False
        self.reset_csrs()
        from . import translator

        # The data TLBs' keys (and the deltas made from them): signed-form
        # addresses where translated code keeps registers signed (PyPy's
        # flavour, see emulator.signed), so that none is a big integer
        # there (a kernel's addresses are 2**63 and more unsigned); else
        # unsigned. Every context of this hart takes it (Ctx.signed_keys).
        self.signed_keys: bool = translator.SIGNED_LOCALS
        self._ctxs: Dict[tuple, Ctx] = {}
        self.ctx: Ctx = self._ctx_for_state()
        # Interrupt lines driven by the platform (CLINT/PLIC, or the KVM host).
        self.irq_lines = 0
        self.irq_dirty = True
        self.waiting = False  # in WFI
        self._kick = False
        self.time_fn: Optional[Callable[[], int]] = None  # None: deterministic time
        self.time_skip = 0  # deterministic time skipped while waiting in WFI
        # Deterministic time: WFI with a timer armed skips ahead to it inside
        # run(). A host that shares one clock between harts (the KVM model's
        # VM) turns this off and decides the skip itself on Stop("wfi").
        self.wfi_skip = True
        # Deterministic time: timer ticks per retired instruction, as the
        # fraction time_num / time_den (set_time_rate); 1/1 by default.
        self.time_num = 1
        self.time_den = 1
        self.mtimecmp = NO_DEADLINE  # platform machine timer (CLINT)
        self.sbi_timecmp = NO_DEADLINE  # supervisor timer emulated by an SBI host
        self._deadline = 0  # instret at which to re-check the timers
        self.reservation: Optional[Tuple[int, int]] = None
        self._in_block = False  # translated code is running (see StepInstead)
        self._step_next = False  # run the next instruction on the interpreter
        # A device store the host completes in place (a KVM host's in-kernel
        # MMIO bus: coalesced zones): called as (pa, size, value) for a store
        # outside RAM, from the interpreter with ``pc`` at the store; True
        # when it took the store (the instruction then completes), False to
        # do the store as any other device access.
        self.mmio_store_hook: Optional[Callable[[int, int, int], bool]] = None
        # block bookkeeping (filled by the translator)
        self.exc_done = 0
        # ppn -> [(ctx, pc, first byte, end byte)]: the code cached from it
        self._code: Dict[int, List[Tuple[Ctx, int, int, int]]] = {}
        self.code_dirty = False
        # counters a benchmark reads (bench_boot)
        self.n_fence_i = 0
        self.n_wfi = 0  # WFI executed (a KVM host counts them: wfi_exit_stat)
        self.n_sfence_vma = 0
        self.n_code_flushes = 0  # all translated code dropped
        self.leaf_bits = PAGE_SHIFT  # page offset bits of the last leaf walked
        mem.add_code_listener(self._code_written)
        mem.add_mark_listener(self._code_marked)
        self._mem_epoch = mem.epoch
        from .interp import Interpreter
        from .translator import Translator

        self.interp = Interpreter(self)
        self.translator = Translator(self)
        self.csr_hooks: Dict[int, Callable[[int, str, int, bool, bool], Optional[int]]] = {}

    # ------------------------------------------------------------------
    # state
    def reset_csrs(self) -> None:
        # the page-walk cache (translate): (satp, va >> 21) -> the physical
        # address of the last-level table that maps that 2 MiB span
        self._pwc: Dict[Tuple[int, int], int] = {}
        self.mstatus = C.MSTATUS_XL64
        self.misa = C.MISA_RV64GC
        self.medeleg = 0
        self.mideleg = 0
        self.mie = 0
        self.mip = 0
        self.mtvec = 0
        self.mscratch = 0
        self.mepc = 0
        self.mcause = 0
        self.mtval = 0
        self.mcounteren = 0
        self.menvcfg = 0
        self.mseccfg = 0
        self.mcountinhibit = 0
        self.stvec = 0
        self.sscratch = 0
        self.sepc = 0
        self.scause = 0
        self.stval = 0
        self.satp = 0
        self.scounteren = 0
        self.senvcfg = 0
        self.siselect = 0
        self.spmpaddr = [0] * SPMP_ENTRIES
        self.spmpcfg = [0] * SPMP_ENTRIES
        self.stimecmp = M64
        self.fflags = 0
        self.frm = 0
        self.pmpcfg = [0] * 16
        self.pmpaddr = [0] * 64
        self.cycle_offset = 0
        self.instret_offset = 0
        self._frozen = {0: 0, 2: 0}  # counter values held while mcountinhibit stops them

    def set_fs_dirty(self) -> None:
        self.mstatus |= C.MS_FS | C.MS_SD

    def close(self) -> None:
        self.mem.remove_code_listener(self._code_written)
        self.mem.remove_mark_listener(self._code_marked)
        self.translator.close()

    # ------------------------------------------------------------------
    # translation context
    def _pmlen_for(self, data_priv: int) -> int:
        if data_priv == PRV_M:
            field = self.mseccfg
        elif data_priv == PRV_S:
            field = self.menvcfg
        else:
            field = self.senvcfg
        pmm = (field >> C.ENV_PMM_SHIFT) & 3
        if pmm < 2:
            return 0
        # MXR in effect disables masking below M (pointer-masking.md 6).
        if data_priv != PRV_M and self.mstatus & C.MS_MXR:
            return 0
        return 7 if pmm == 2 else 16

    def _ctx_for_state(self) -> Ctx:
        ms = self.mstatus
        priv = self.priv
        data_priv = (ms >> C.MS_MPP_SHIFT) & 3 if priv == PRV_M and ms & C.MS_MPRV else priv
        pmlen = self._pmlen_for(data_priv)
        paging = (self.satp >> 60) != 0
        key = (priv, data_priv, bool(ms & C.MS_FS), pmlen, paging and data_priv != PRV_M,
               self.satp if (paging and (priv != PRV_M or data_priv != PRV_M)) else 0,
               bool(ms & C.MS_SUM), bool(ms & C.MS_MXR))
        ctx = self._ctxs.get(key)
        if ctx is None:
            if len(self._ctxs) >= MAX_CTXS:
                # the least recently entered context goes (a process that
                # exited, most likely), not every context's code
                self._drop_ctx(min(self._ctxs.values(), key=lambda c: c.used))
            ctx = self._ctxs[key] = Ctx(key)
            ctx.signed_keys = self.signed_keys
        ctx.used = self.instret
        return ctx

    def _drop_ctx(self, ctx: Ctx) -> None:
        """Forget ``ctx``: its code (regions entered from other contexts
        too stay, homed there), TLBs and the hart's notes of its code."""
        del self._ctxs[ctx.key]
        self.translator.drop_context(ctx)
        code = self._code
        for ppn in ctx.code_ppns:
            entries = code.get(ppn)
            if not entries:
                continue
            keep = [e for e in entries if e[0] is not ctx]
            if len(keep) != len(entries):
                if keep:
                    code[ppn] = keep
                else:
                    del code[ppn]
        ctx.flush_code()
        ctx.flush_tlb()

    def update_ctx(self) -> None:
        self.ctx = self._ctx_for_state()

    def flush_tlbs(self) -> None:
        self._pwc.clear()
        for ctx in self._ctxs.values():
            ctx.flush_tlb()

    def flush_code(self) -> None:
        self.n_code_flushes += 1
        for ctx in self._ctxs.values():
            ctx.flush_code()
        self._code.clear()
        self.translator.drop_held()

    def _code_written(self, ppn: int, lo: int, hi: int) -> Tuple[bool, bool]:
        """Bytes [lo, hi) of page ``ppn`` were written: drop the code whose
        bytes overlap them (a block, region or interpreter entry covers
        the span from its first instruction to the end of its last); the
        rest of the page's code stays; a region noted as several runs of
        bytes (the gaps between its blocks hold no code of it) goes as a
        whole when one of them is written. (dropped any, still holds code)."""
        entries = self._code.get(ppn)
        if not entries:
            return False, False
        hit = {(e[0], e[1]) for e in entries if e[2] < hi and lo < e[3]}
        if not hit:
            return False, True
        keep = []
        regions = []
        for e in entries:
            ctx, pc = e[0], e[1]
            if (ctx, pc) not in hit:
                keep.append(e)
                continue
            for b in (ctx.blocks.pop(pc, None), ctx.suspect.pop(pc, None)):
                if b is not None and b.owner is not None:
                    regions.append((b.owner, ctx))
            ctx.insns.pop(pc, None)
        self.code_dirty = True  # a running block may be one of them
        if keep:
            self._code[ppn] = keep
        else:
            self._code.pop(ppn, None)
        for region, ctx in regions:
            self.translator.evict(region, ctx, False)  # and its other entries
        return True, bool(self._code.get(ppn))

    def forget_code(self, ctx: Ctx, ppn: int, pcs: Sequence[int]) -> None:
        """The code ``ctx`` cached for ``pcs`` from page ``ppn`` is gone
        (evicted): stores there need not drop it any more. The page stays
        a code page until its next store finds nothing to drop."""
        entries = self._code.get(ppn)
        if not entries or not pcs:
            return
        keep = [e for e in entries if e[0] is not ctx or e[1] not in pcs]
        if len(keep) != len(entries):
            if keep:
                self._code[ppn] = keep
            else:
                self._code.pop(ppn, None)

    def _code_marked(self, buf: Any, off: int) -> None:
        """A page became a code page (this hart's or another's code): drop
        the write-TLB entries that point at it. May run in another hart's
        thread: the dictionaries are copied before they are walked."""
        for ctx in list(self._ctxs.values()):
            wt = ctx.wt
            if wt:
                for key, e in list(wt.items()):
                    if e[1] + key == off and e[0] is buf:
                        wt.pop(key, None)

    def mark_code_page(self, ppn: int) -> int:
        """Make ``ppn`` a code page before reading code from it; returns
        the memory's code-write count, for :meth:`code_unchanged`."""
        mem = self.mem
        if ppn not in mem.code_pages:
            mem.mark_code(ppn)
        return mem.code_writes

    def code_unchanged(self, since: int) -> bool:
        """No code page was written since ``since`` (mark_code_page): code
        read from a page marked then is still what memory holds."""
        return self.mem.code_writes == since

    def note_code(self, ctx: Ctx, pc: int, ppn: int, start: int = 0,
                  end: int = PAGE_SIZE) -> None:
        """Record that ``ctx`` caches code for ``pc`` read from bytes
        [start, end) (page offsets) of page ``ppn``."""
        self._code.setdefault(ppn, []).append((ctx, pc, start, end))
        ctx.code_ppns.add(ppn)
        ctx.add_code(pc)
        if ppn not in self.mem.code_pages:
            self.mem.mark_code(ppn)
        if self.mem.epoch != self._mem_epoch:
            self._mem_epoch = self.mem.epoch
            for ctx2 in self._ctxs.values():
                ctx2.wt.clear()

    # ------------------------------------------------------------------
    # time and interrupts
    def time(self) -> int:
        if self.time_fn is not None:
            return self.time_fn()
        if self.time_den == 1 == self.time_num:
            return self.instret + self.time_skip
        return self.instret * self.time_num // self.time_den + self.time_skip

    def set_time_rate(self, ticks: int, insns: int) -> None:
        """Deterministic time advances ``ticks`` timer ticks every ``insns``
        retired instructions (e.g. a 10 MHz timebase at 1 ns of guest time
        per instruction: 1 tick per 100). The current time is kept."""
        if ticks <= 0 or insns <= 0:
            raise ValueError("the time rate must be positive")
        now = self.time() if self.time_fn is None else 0
        self.time_num, self.time_den = ticks, insns
        if self.time_fn is None:
            self.time_skip += now - self.time()
        self.irq_dirty = True

    def _insns_until(self, when: int) -> int:
        """Retired-instruction count at which deterministic time reaches ``when``."""
        if self.time_den == 1 == self.time_num:
            return when - self.time_skip
        return -(-(when - self.time_skip) * self.time_den // self.time_num)

    def _timer_bits(self, now: int) -> int:
        bits = 0
        if now >= self.mtimecmp:
            bits |= C.MTIP
        if now >= self.sbi_timecmp:
            bits |= C.STIP
        if self.menvcfg & C.ENV_STCE and now >= self.stimecmp:
            bits |= C.STIP
        return bits

    def _next_timer(self, now: int) -> int:
        t = NO_DEADLINE
        for cmp in (self.mtimecmp, self.sbi_timecmp,
                    self.stimecmp if self.menvcfg & C.ENV_STCE else NO_DEADLINE):
            if now < cmp < t:
                t = cmp
        return t

    def read_mip(self) -> int:
        return self.mip | self.irq_lines | self._timer_bits(self.time())

    def set_irq_line(self, bit: int, level: bool) -> None:
        """Drive a platform interrupt line (mip bit number ``bit``)."""
        if level:
            self.irq_lines |= 1 << bit
        else:
            self.irq_lines &= ~(1 << bit)
        self.interrupts_changed()

    def interrupts_changed(self) -> None:
        """Interrupt state changed (a device, a timer compare): re-check before
        the next instruction. A store that caused it ends its block, so both
        engines take the interrupt at the same instruction boundary."""
        self.irq_dirty = True
        self.code_dirty = True

    def kick(self) -> None:
        """Ask a running :meth:`run` to return at the next block boundary."""
        self._kick = True
        self.irq_dirty = True

    def pending_interrupt(self) -> Optional[int]:
        """The interrupt cause to take now, if any (privileged spec 3.1.9)."""
        pending = self.read_mip() & self.mie
        if not pending:
            return None
        priv = self.priv
        m_en = priv < PRV_M or bool(self.mstatus & C.MS_MIE)
        s_en = priv < PRV_S or (priv == PRV_S and bool(self.mstatus & C.MS_SIE))
        m_pending = pending & ~self.mideleg if m_en else 0
        s_pending = pending & self.mideleg if s_en and priv <= PRV_S else 0
        for bits in (m_pending, s_pending):
            if bits:
                for cause in C.IRQ_PRIORITY:
                    if bits >> cause & 1:
                        return cause
                return (bits & -bits).bit_length() - 1
        return None

    # ------------------------------------------------------------------
    # traps
    def take_trap(self, cause: int, tval: int, pc: int, interrupt: bool = False) -> Optional[Stop]:
        """Enter the trap handler (or return a Stop if M-mode is intercepted)."""
        deleg = self.mideleg if interrupt else self.medeleg
        to_s = self.priv <= PRV_S and (deleg >> cause) & 1
        if not to_s and self.intercept_mtraps:
            self.pc = pc
            return Stop("trap", cause, tval, interrupt)
        ms = self.mstatus
        code = cause | (1 << 63) if interrupt else cause
        if to_s:
            self.scause = code
            self.sepc = pc
            self.stval = tval
            ms = (ms & ~(C.MS_SPP | C.MS_SPIE | C.MS_SIE)) | (C.MS_SPP if self.priv == PRV_S else 0)
            if self.mstatus & C.MS_SIE:
                ms |= C.MS_SPIE
            base, mode = self.stvec & ~3, self.stvec & 3
            self.priv = PRV_S
        else:
            self.mcause = code
            self.mepc = pc
            self.mtval = tval
            ms = (ms & ~(C.MS_MPP | C.MS_MPIE | C.MS_MIE)) | (self.priv << C.MS_MPP_SHIFT)
            if self.mstatus & C.MS_MIE:
                ms |= C.MS_MPIE
            base, mode = self.mtvec & ~3, self.mtvec & 3
            self.priv = PRV_M
        self.mstatus = ms
        self.pc = (base + 4 * cause) & M64 if interrupt and mode == 1 else base
        self.waiting = False
        self.update_ctx()
        self.irq_dirty = True
        return None

    def ecall(self, pc: int) -> None:
        raise Trap(C.CAUSE_ECALL_U + self.priv, 0, pc)

    def ebreak(self, pc: int) -> None:
        raise Trap(C.CAUSE_BREAKPOINT, pc, pc)

    def _illegal(self, raw: int, pc: int) -> Trap:
        return Trap(C.CAUSE_ILLEGAL, raw, pc)

    def mret(self, raw: int, pc: int) -> None:
        if self.priv != PRV_M:
            raise self._illegal(raw, pc)
        ms = self.mstatus
        mpp = (ms >> C.MS_MPP_SHIFT) & 3
        ms = (ms & ~(C.MS_MIE | C.MS_MPP)) | C.MS_MPIE
        if self.mstatus & C.MS_MPIE:
            ms |= C.MS_MIE
        if mpp != PRV_M:
            ms &= ~C.MS_MPRV
        self.mstatus = ms
        self.priv = mpp
        self.pc = self.mepc

    def sret(self, raw: int, pc: int) -> None:
        if self.priv == PRV_U or (self.priv == PRV_S and self.mstatus & C.MS_TSR):
            raise self._illegal(raw, pc)
        ms = self.mstatus
        spp = PRV_S if ms & C.MS_SPP else PRV_U
        ms = (ms & ~(C.MS_SIE | C.MS_SPP | C.MS_MPRV)) | C.MS_SPIE
        if self.mstatus & C.MS_SPIE:
            ms |= C.MS_SIE
        self.mstatus = ms
        self.priv = spp
        self.pc = self.sepc

    def wfi(self, raw: int, pc: int) -> None:
        if self.priv == PRV_U or (self.priv == PRV_S and self.mstatus & C.MS_TW):
            raise self._illegal(raw, pc)
        self.n_wfi += 1
        # WFI is a hint: do not stall while any interrupt is pending, even one
        # disabled in mie (privileged spec 3.3.3; riscv-tests rv64si wfi).
        if not self.read_mip():
            self.waiting = True

    def wrs(self, raw: int, pc: int) -> None:
        # Zawrs: the reservation-set wait may end at any time; ending it at
        # once is a legal implementation.
        return

    def sfence_vma(self, vaddr: int, asid: int, raw: int, pc: int) -> None:
        if self.priv == PRV_U or (self.priv == PRV_S and self.mstatus & C.MS_TVM):
            raise self._illegal(raw, pc)
        self.n_sfence_vma += 1
        rs1, rs2 = (raw >> 15) & 31, (raw >> 20) & 31
        self.fence_vma(vaddr if rs1 else None, asid & 0xFFFF if rs2 else None)

    def fence_vma(self, vaddr: Optional[int] = None, asid: Optional[int] = None) -> None:
        """What SFENCE.VMA (or a remote fence) may change: translations of
        ``vaddr`` (None: every address) in address space ``asid`` (None:
        all; an ASID fence leaves global mappings, so contexts of other
        ASIDs keep theirs). Contexts without address translation are
        untouched. Translated code of the fenced pages stays, set aside: a
        block is used again when its page still maps to the physical page
        it was read from (most fences change no code mapping).

        The walk cache (non-leaf entries) is emptied by a fence of every
        address only: one of an address orders only the leaf entries that
        map it (privileged spec, SFENCE.VMA), and Linux fences everything
        when it frees or replaces a page table."""
        if vaddr is None:
            self._pwc.clear()
        for ctx in list(self._ctxs.values()):
            if not ctx.satp:
                continue  # no translation in this context
            if asid is not None and (ctx.satp >> 44) & 0xFFFF != asid:
                continue
            if vaddr is None:
                ctx.flush_tlb()
                ctx.suspect_code()
            else:
                ctx.fence_page(vaddr & M64 & ~PAGE_MASK)

    def order_fetches(self) -> None:
        """FENCE.I (or a remote one): orders; drops nothing. Code pages
        are marked before they are read (mark_code_page), and from then on
        every store there (any hart's, translated or interpreted, AMO, SC,
        cbo.zero, the host's write_bytes) invalidates the code built from
        them at once (PhysMemory._code_written): nothing stale is left."""
        self.n_fence_i += 1

    def svinval_fence(self, raw: int, pc: int) -> None:
        if self.priv == PRV_U:
            raise self._illegal(raw, pc)

    def fence_i(self, raw: int, pc: int) -> None:
        self.order_fetches()

    # ------------------------------------------------------------------
    # CSRs
    def _counter_allowed(self, bit: int) -> bool:
        if self.priv == PRV_M:
            return True
        if not (self.mcounteren >> bit) & 1:
            return False
        return self.priv == PRV_S or bool((self.scounteren >> bit) & 1)

    def _counter(self, bit: int) -> int:
        """mcycle (bit 0) or minstret (bit 2): one cycle per instruction."""
        if self.mcountinhibit >> bit & 1:
            return self._frozen[bit]
        return (self.instret + (self.cycle_offset if bit == 0 else self.instret_offset)) & M64

    def _set_counter(self, bit: int, value: int, pending: int) -> None:
        """Make the counter read ``value`` after ``pending`` more instructions retire."""
        if self.mcountinhibit >> bit & 1:
            self._frozen[bit] = value & M64
        elif bit == 0:
            self.cycle_offset = (value - self.instret - pending) & M64
        else:
            self.instret_offset = (value - self.instret - pending) & M64

    def _fs_check(self, raw: int, pc: int) -> None:
        if not self.mstatus & C.MS_FS:
            raise self._illegal(raw, pc)

    def csr_read(self, num: int, raw: int = 0, pc: int = 0) -> int:
        """Read a CSR with the current privilege's access checks."""
        if (num >> 8) & 3 > self.priv:
            raise self._illegal(raw, pc)
        if num in (C.FFLAGS, C.FRM, C.FCSR):
            self._fs_check(raw, pc)
            return {C.FFLAGS: self.fflags, C.FRM: self.frm, C.FCSR: self.fflags | (self.frm << 5)}[num]
        if C.CYCLE <= num <= C.HPMCOUNTER31:
            if not self._counter_allowed(num - C.CYCLE):
                raise self._illegal(raw, pc)
            if num == C.CYCLE:
                return self._counter(0)
            if num == C.TIME:
                return self.time() & M64
            if num == C.INSTRET:
                return self._counter(2)
            return 0
        v = self._csr_get(num)
        if v is None:
            raise self._illegal(raw, pc)
        return v

    def _csr_get(self, num: int) -> Optional[int]:
        if num == C.MSTATUS:
            return self._mstatus_read()
        if num == C.SSTATUS:
            return self._mstatus_read() & C.SSTATUS_RMASK
        if num == C.MIP:
            return self.read_mip()
        if num == C.SIP:
            return self.read_mip() & self.mideleg
        if num == C.SIE:
            return self.mie & self.mideleg
        if num == C.SATP:
            if self.priv == PRV_S and self.mstatus & C.MS_TVM:
                return None
            return self.satp
        if num == C.SISELECT:
            return self.siselect
        if num in (C.SIREG, C.SIREG2):
            i = self._spmp_index()
            if i is None:
                return None
            return self.spmpaddr[i] if num == C.SIREG else self.spmpcfg[i]
        if num == C.STIMECMP:
            if self.priv < PRV_M and not (self.mcounteren & 2 and self.menvcfg & C.ENV_STCE):
                return None
            return self.stimecmp
        if num == C.MCYCLE:
            return self._counter(0)
        if num == C.MINSTRET:
            return self._counter(2)
        if C.MHPMCOUNTER3 <= num <= C.MHPMCOUNTER31 or C.MHPMEVENT3 <= num <= C.MHPMEVENT31:
            return 0
        if C.PMPCFG0 <= num <= C.PMPCFG15:
            i = num - C.PMPCFG0
            return None if i & 1 else self.pmpcfg[i]
        if C.PMPADDR0 <= num <= C.PMPADDR63:
            return self.pmpaddr[num - C.PMPADDR0]
        attr = _CSR_ATTR.get(num)
        if attr is None:
            return None
        if isinstance(attr, int):
            return attr if attr >= 0 else self.hartid
        return int(getattr(self, str(attr)))

    def _spmp_index(self) -> Optional[int]:
        # Other siselect values select nothing: access is illegal (Sscsrind 2.2).
        i = self.siselect - SPMP_SELECT
        return i if 0 <= i < SPMP_ENTRIES else None

    def _mstatus_read(self) -> int:
        ms = self.mstatus & ~C.MS_SD
        if (ms & C.MS_FS) == C.MS_FS:
            ms |= C.MS_SD
        return ms

    def csr_op(self, num: int, op: str, src: int, do_read: bool, do_write: bool,
               raw: int, pc: int) -> int:
        """Execute a Zicsr instruction; returns the old value for rd."""
        hook = self.csr_hooks.get(num)
        if hook is not None:
            result = hook(num, op, src, do_read, do_write)
            if result is not None:
                return result
        if do_write and num >> 10 == 3:
            raise self._illegal(raw, pc)
        old = self.csr_read(num, raw, pc)
        if do_write:
            if op == "w":
                new = src
            elif op == "s":
                new = old | src
            else:
                new = old & ~src
            self.csr_write(num, new & M64, raw, pc)
        return old

    def csr_write(self, num: int, v: int, raw: int = 0, pc: int = 0) -> None:
        """Write a CSR (WARL legalisation included); the caller has checked
        privilege and read-only-ness."""
        if num in (C.FFLAGS, C.FRM, C.FCSR):
            self._fs_check(raw, pc)
            if num == C.FFLAGS:
                self.fflags = v & 0x1F
            elif num == C.FRM:
                self.frm = v & 7
            else:
                self.fflags = v & 0x1F
                self.frm = (v >> 5) & 7
            self.set_fs_dirty()
            return
        if num == C.MSTATUS:
            self._write_mstatus(v, C.MSTATUS_WMASK)
        elif num == C.SSTATUS:
            self._write_mstatus(v, C.SSTATUS_WMASK)
        elif num == C.MISA:
            pass  # WARL: misa is read-only here
        elif num == C.MEDELEG:
            self.medeleg = v & C.MEDELEG_WMASK
        elif num == C.MIDELEG:
            self.mideleg = v & C.S_INTS
        elif num == C.MIE:
            self.mie = v & C.MIE_WMASK
        elif num == C.SIE:
            self.mie = (self.mie & ~self.mideleg) | (v & self.mideleg)
        elif num == C.MIP:
            wmask = C.SSIP | C.SEIP | (0 if self.menvcfg & C.ENV_STCE else C.STIP)
            self.mip = (self.mip & ~wmask) | (v & wmask)
        elif num == C.SIP:
            wmask = C.SSIP & self.mideleg
            self.mip = (self.mip & ~wmask) | (v & wmask)
        elif num in (C.MTVEC, C.STVEC):
            v = v & ~2 if v & 3 >= 2 else v  # MODE >= 2 is reserved
            setattr(self, "mtvec" if num == C.MTVEC else "stvec", v)
        elif num in (C.MEPC, C.SEPC):
            setattr(self, "mepc" if num == C.MEPC else "sepc", v & ~1)
            return  # no interrupt to check again (isa.priv.in_block)
        elif num == C.MCOUNTEREN:
            self.mcounteren = v & 0xFFFFFFFF
        elif num == C.SCOUNTEREN:
            self.scounteren = v & 0xFFFFFFFF
        elif num == C.MENVCFG:
            self.menvcfg = self._legal_envcfg(self.menvcfg, v, C.MENVCFG_WMASK)
        elif num == C.SENVCFG:
            self.senvcfg = self._legal_envcfg(self.senvcfg, v, C.SENVCFG_WMASK)
        elif num == C.MSECCFG:
            self.mseccfg = self._legal_envcfg(self.mseccfg, v, C.MSECCFG_WMASK)
        elif num == C.SATP:
            if self.priv == PRV_S and self.mstatus & C.MS_TVM:
                raise self._illegal(raw, pc)
            mode = v >> 60
            if mode == 0 or mode in PAGING_MODES:
                self.satp = v & ((0xF << 60) | (0xFFFF << 44) | ((1 << 44) - 1))
        elif num == C.STIMECMP:
            self.stimecmp = v
        elif num == C.SISELECT:
            self.siselect = v & 0xFFF
        elif num in (C.SIREG, C.SIREG2):
            # SPMP registers are kept (riscv-tests rv64si spmp*) but do not
            # restrict accesses: no SPMP checking is implemented.
            i = self._spmp_index()
            if i is not None and num == C.SIREG:
                self.spmpaddr[i] = v & ((1 << 54) - 1)
            elif i is not None:
                self.spmpcfg[i] = v & SPMPCFG_WMASK
        elif num == C.MCYCLE:
            self._set_counter(0, v, 0)
        elif num == C.MINSTRET:
            # The write happens instead of this instruction's increment.
            self._set_counter(2, v, 1)
        elif num == C.MCOUNTINHIBIT:
            # CY (bit 0) and IR (bit 2) stop their counters; the others are read-only 0.
            new = v & 0b101
            for bit in (0, 2):
                stopping = new >> bit & 1 and not self.mcountinhibit >> bit & 1
                starting = self.mcountinhibit >> bit & 1 and not new >> bit & 1
                if stopping:
                    self._frozen[bit] = self._counter(bit)
                elif starting:
                    self.mcountinhibit &= ~(1 << bit)
                    self._set_counter(bit, self._frozen[bit], 1)
            self.mcountinhibit = new
        elif C.PMPCFG0 <= num <= C.PMPCFG15:
            self._write_pmpcfg(num - C.PMPCFG0, v)
        elif C.PMPADDR0 <= num <= C.PMPADDR63:
            i = num - C.PMPADDR0
            if not self._pmp_locked(i):
                self.pmpaddr[i] = v & ((1 << 54) - 1)
        elif num in (C.MSCRATCH, C.SSCRATCH, C.MCAUSE, C.SCAUSE, C.MTVAL, C.STVAL):
            setattr(self, _CSR_ATTR[num], v)  # type: ignore[arg-type]
            return
        # Remaining writable CSRs (mcountinhibit, hpm events/counters,
        # triggers, mtinst/mtval2) are WARL with no writable bits here.
        self.irq_dirty = True

    def _write_mstatus(self, v: int, wmask: int) -> None:
        old = self.mstatus
        new = (old & ~wmask) | (v & wmask)
        if (new >> C.MS_MPP_SHIFT) & 3 == 2:  # reserved privilege: keep the old MPP
            new = (new & ~C.MS_MPP) | (old & C.MS_MPP)
        self.mstatus = (new & ~C.MS_SD) | C.MSTATUS_XL64

    def _legal_envcfg(self, old: int, v: int, wmask: int) -> int:
        new = (old & ~wmask) | (v & wmask)
        pmm = (new >> C.ENV_PMM_SHIFT) & 3
        if pmm == 1 or (pmm and (7 if pmm == 2 else 16) not in self.pmlens):
            new = (new & ~C.ENV_PMM) | (old & C.ENV_PMM)  # illegal WARL value: keep the old one
        if (new >> 4) & 3 == 2:  # CBIE=10 is reserved
            new = (new & ~C.ENV_CBIE) | (old & C.ENV_CBIE)
        return new

    def _pmp_locked(self, i: int) -> bool:
        cfg = (self.pmpcfg[(i // 8) * 2] >> ((i % 8) * 8)) & 0xFF
        if cfg & 0x80:
            return True
        if i + 1 < 64:
            nxt = (self.pmpcfg[((i + 1) // 8) * 2] >> (((i + 1) % 8) * 8)) & 0xFF
            return bool(nxt & 0x80) and (nxt >> 3) & 3 == 1  # TOR above a locked entry
        return False

    def _write_pmpcfg(self, i: int, v: int) -> None:
        if i & 1:
            return
        old = self.pmpcfg[i]
        new = 0
        for b in range(8):
            ob = (old >> (8 * b)) & 0xFF
            nb = (v >> (8 * b)) & 0xFF
            if ob & 0x80:
                nb = ob
            elif nb & 3 == 2:  # W without R is reserved
                nb = ob
            new |= (nb & 0x9F) << (8 * b)
        self.pmpcfg[i] = new

    # ------------------------------------------------------------------
    # MMU
    def translate(self, va: int, access: int, priv: int) -> int:
        """Virtual to physical (raises page faults); ``va`` is already masked."""
        satp = self.satp
        mode = satp >> 60
        if priv == PRV_M or mode == 0:
            return va
        levels, vabits = PAGING_MODES[mode]
        top = va >> (vabits - 1)
        if top != 0 and top != (1 << (65 - vabits)) - 1:
            raise Trap(_PAGE_FAULT[access], va)
        ms = self.mstatus
        mem = self.mem
        # the walk cache: the last-level table of this 2 MiB span, where an
        # earlier walk found one through valid non-leaf entries
        pwc_key = (satp, va >> (PAGE_SHIFT + 9))
        a = self._pwc.get(pwc_key)
        if a is not None:
            level = 0
        else:
            a = (satp & ((1 << 44) - 1)) << PAGE_SHIFT
            level = levels - 1
        while True:
            pte_addr = a + ((va >> (PAGE_SHIFT + 9 * level)) & 511) * 8
            try:
                pte = mem.read_ram(pte_addr, 8)
            except BusError:
                raise Trap(_ACCESS_FAULT[access], va) from None
            if not pte & PTE_V or (pte & (PTE_R | PTE_W)) == PTE_W or pte & PTE_RESERVED:
                raise Trap(_PAGE_FAULT[access], va)
            pbmt = (pte >> PTE_PBMT_SHIFT) & 3
            if pbmt and (pbmt == 3 or not self.menvcfg & C.ENV_PBMTE):
                raise Trap(_PAGE_FAULT[access], va)
            if pte & (PTE_R | PTE_X):
                break
            # Non-leaf: D, A, U, N and PBMT are reserved (must be zero).
            if pte & (PTE_D | PTE_A | PTE_U | PTE_N) or pbmt or level == 0:
                raise Trap(_PAGE_FAULT[access], va)
            a = ((pte >> 10) & ((1 << 44) - 1)) << PAGE_SHIFT
            level -= 1
            if level == 0:
                pwc = self._pwc
                if len(pwc) >= PWC_ENTRIES:
                    pwc.clear()
                pwc[pwc_key] = a
        # Leaf permission checks.
        if access == FETCH:
            ok = pte & PTE_X
        elif access == LOAD:
            ok = pte & PTE_R or (ms & C.MS_MXR and pte & PTE_X)
        else:
            ok = pte & PTE_W
        if not ok:
            raise Trap(_PAGE_FAULT[access], va)
        if pte & PTE_U:
            if priv == PRV_S and (access == FETCH or not ms & C.MS_SUM):
                raise Trap(_PAGE_FAULT[access], va)
        elif priv == PRV_U:
            raise Trap(_PAGE_FAULT[access], va)
        ppn = (pte >> 10) & ((1 << 44) - 1)
        if level and ppn & ((1 << (9 * level)) - 1):  # misaligned superpage
            raise Trap(_PAGE_FAULT[access], va)
        if pte & PTE_N:
            # Svnapot: only 64 KiB (ppn[3:0] = 1000) at level 0 is defined.
            if level or ppn & 0xF != 0x8:
                raise Trap(_PAGE_FAULT[access], va)
            ppn = (ppn & ~0xF) | ((va >> PAGE_SHIFT) & 0xF)
        need = PTE_A | (PTE_D if access == STORE else 0)
        if pte & need != need:
            if not self.menvcfg & C.ENV_ADUE:
                raise Trap(_PAGE_FAULT[access], va)
            # Svadu: update A/D atomically (single-threaded here); the PTE
            # is re-read so a concurrent change is not lost.
            try:
                cur = mem.read_ram(pte_addr, 8)
                if cur != pte:
                    return self.translate(va, access, priv)
                mem.write(pte_addr, 8, pte | need)
            except BusError:
                raise Trap(_ACCESS_FAULT[access], va) from None
        offset_bits = PAGE_SHIFT + 9 * level
        self.leaf_bits = offset_bits
        return ((ppn << PAGE_SHIFT) & ~((1 << offset_bits) - 1)) | (va & ((1 << offset_bits) - 1))

    # -- instruction fetch ----------------------------------------------
    def fetch_page(self, va: int) -> Tuple[Any, int, int]:
        """(buffer, delta, ppn) for fetching from the page of ``va``; faults
        are raised as fetch traps."""
        ctx = self.ctx
        key = va & ~PAGE_MASK
        e = ctx.xt.get(key)
        if e is not None:
            return e
        pa = self.translate(va, FETCH, self.priv)
        if self.leaf_bits > ctx.leaf_bits:
            ctx.saw_leaf(self.leaf_bits)
        hp = self.mem.host_page(pa, False)
        if hp is None:
            raise Trap(C.CAUSE_FETCH_ACCESS, va)
        delta, ppn = hp[1] - key, pa >> PAGE_SHIFT
        if as_word is not None:  # PyPy: words, not big integers (emulator.pypy)
            key, delta, ppn = as_word(key), as_word(delta), as_word(ppn)
        entry = (hp[0], delta, ppn)
        ctx.xt[key] = entry
        if ctx.leaf_bits > PAGE_SHIFT:
            ctx.add_tlb(2, key)
        return entry

    def fetch(self, pc: int) -> Tuple[int, int]:
        """(instruction bits, physical page) at ``pc``; 16 bits for RVC."""
        buf, delta, ppn = self.fetch_page(pc)
        lo = UNPACK[2](buf, delta + pc)[0]
        if lo & 3 != 3:
            return lo, ppn
        if pc & PAGE_MASK != PAGE_MASK - 1:
            return UNPACK[4](buf, delta + pc)[0], ppn
        hi_pc = (pc + 2) & M64
        try:
            buf2, delta2, _ = self.fetch_page(hi_pc)
        except Trap as t:
            t.tval = hi_pc
            raise
        return lo | (UNPACK[2](buf2, delta2 + hi_pc)[0] << 16), ppn

    # -- data access slow paths -----------------------------------------
    def _phys(self, va: int, access: int) -> int:
        return self.translate(va, access, self.ctx.data_priv)

    def _data_phys(self, va: int, access: int) -> int:
        """``_phys`` for an access within one page (LOAD or STORE) that the
        TLBs missed: a device page's translation comes from ``ctx.mt``
        when a walk made it before (RAM pages go to the TLBs instead)."""
        ctx = self.ctx
        mt = ctx.mt
        if ctx.mt_epoch != self.mem.epoch:
            mt.clear()
            ctx.mt_epoch = self.mem.epoch
        key = (va & ~PAGE_MASK) | access
        base = mt.get(key)
        if base is not None:
            return base | (va & PAGE_MASK)
        pa = self.translate(va, access, ctx.data_priv)
        if ctx.satp and ctx.data_priv != PRV_M and not self.mem.is_ram(pa):
            mt[key] = pa & ~PAGE_MASK
        return pa

    def load_u(self, va: int, size: int, pc: int) -> int:
        try:
            return self._load(va, size)
        except (Trap, GuestExit, StepInstead) as t:
            t.pc = pc
            raise

    def load_s(self, va: int, size: int, pc: int) -> int:
        return _sext_size(self.load_u(va, size, pc), size)

    def _load(self, va: int, size: int) -> int:
        if va & (size - 1):
            if self.misaligned == "trap":
                raise Trap(C.CAUSE_MISALIGNED_LOAD, va)
            if (va & PAGE_MASK) + size > PAGE_SIZE:
                value = 0
                for i in range(size):
                    value |= self._load((va + i) & M64, 1) << (8 * i)
                return value
        pa = self._data_phys(va, LOAD)
        if self._in_block and not self.mem.is_ram(pa):
            raise StepInstead()
        try:
            value = self.mem.read(pa, size)
        except BusError:
            raise Trap(C.CAUSE_LOAD_ACCESS, va) from None
        self._fill(self.ctx.rt, va, pa, False)
        return value

    def _fill(self, tlb: dict, va: int, pa: int, write: bool) -> None:
        ctx = self.ctx
        if self.leaf_bits > ctx.leaf_bits:
            ctx.saw_leaf(self.leaf_bits)
        hp = self.mem.host_page(pa, write)
        if hp is not None:
            key = va & ~PAGE_MASK
            if self.signed_keys and key >> 63:
                key -= 1 << 64
            delta, pdelta = hp[1] - key, (pa & ~PAGE_MASK) - key
            if as_word is not None:  # PyPy: words, not big integers (emulator.pypy)
                key, delta, pdelta = as_word(key), as_word(delta), as_word(pdelta)
            # last: the physical page minus the key (TLB_PA: the atomics'
            # fast paths need the physical address for the reservation)
            tlb[key] = (hp[0], delta) + hp[2:] + (pdelta,)
            if ctx.leaf_bits > PAGE_SHIFT:
                ctx.add_tlb(1 if write else 0, key)
            if write and pa >> PAGE_SHIFT in self.mem.code_pages:
                # another hart made it a code page meanwhile (_code_marked
                # may have run before the entry was in)
                tlb.pop(key, None)

    def store(self, va: int, size: int, value: int, pc: int) -> None:
        try:
            self._store(va, size, value)
        except (Trap, GuestExit, StepInstead) as t:
            t.pc = pc
            raise
        if self.code_dirty:
            self.code_dirty = False
            raise CodeModified(pc)

    def _store(self, va: int, size: int, value: int) -> None:
        if va & (size - 1):
            if self.misaligned == "trap":
                raise Trap(C.CAUSE_MISALIGNED_STORE, va)
            if (va & PAGE_MASK) + size > PAGE_SIZE:
                # Translate every byte first so a fault leaves memory untouched.
                pas = [self._phys((va + i) & M64, STORE) for i in range(size)]
                for i, pa in enumerate(pas):
                    self._write_phys(pa, 1, (value >> (8 * i)) & 0xFF, (va + i) & M64)
                return
        pa = self._data_phys(va, STORE)
        hook = self.mmio_store_hook
        if (self._in_block or hook is not None) and not self.mem.is_ram(pa):
            if self._in_block:
                raise StepInstead()
            if hook is not None and hook(pa, size, value):
                return
        self._write_phys(pa, size, value, va)
        self._fill(self.ctx.wt, va, pa, True)

    def _write_phys(self, pa: int, size: int, value: int, va: int) -> None:
        res = self.reservation
        if res is not None and res[0] < pa + size and pa < res[0] + res[1]:
            self.reservation = None
        try:
            self.mem.write(pa, size, value)
        except BusError:
            raise Trap(C.CAUSE_STORE_ACCESS, va) from None

    # -- atomics ----------------------------------------------------------
    def _amo_phys(self, va: int, size: int, pc: int, cause_misaligned: int) -> int:
        if va & (size - 1):
            raise Trap(cause_misaligned, va, pc)
        try:
            pa = self._phys(va, STORE if cause_misaligned == C.CAUSE_MISALIGNED_STORE else LOAD)
        except Trap as t:
            t.pc = pc
            raise
        if not self.mem.is_ram(pa):
            # AMOs and LR/SC need memory that supports them (main memory).
            cause = C.CAUSE_STORE_ACCESS if cause_misaligned == C.CAUSE_MISALIGNED_STORE else C.CAUSE_LOAD_ACCESS
            raise Trap(cause, va, pc)
        return pa

    def lr(self, va: int, size: int, pc: int) -> int:
        if not va & (size - 1):
            # fast path: the page is in the read TLB (RAM, readable here)
            tva = va - (1 << 64) if self.signed_keys and va >> 63 else va  # the keys' form
            e = self.ctx.rt.get(tva & ~PAGE_MASK)
            if e is not None:
                self.reservation = (e[TLB_PA] + tva, size)
                return _sext_size(UNPACK[size](e[0], e[1] + tva)[0], size)
        pa = self._amo_phys(va, size, pc, C.CAUSE_MISALIGNED_LOAD)
        value = self.mem.read(pa, size)
        self.reservation = (pa, size)
        self._fill(self.ctx.rt, va, pa, False)
        return _sext_size(value, size)

    def sc(self, va: int, size: int, value: int, pc: int) -> int:
        if va & (size - 1):
            raise Trap(C.CAUSE_MISALIGNED_STORE, va, pc)
        res = self.reservation
        self.reservation = None
        # fast path: the page is in the write TLB (writable RAM, no code)
        tva = va - (1 << 64) if self.signed_keys and va >> 63 else va  # the keys' form
        e = self.ctx.wt.get(tva & ~PAGE_MASK)
        if e is not None:
            if res is None or res[0] != e[TLB_PA] + tva or res[1] != size:
                return 1
            PACK[size](e[0], e[1] + tva, value & ((1 << (8 * size)) - 1))
            return 0
        pa = self._amo_phys(va, size, pc, C.CAUSE_MISALIGNED_STORE)
        if res is None or res[0] != pa or res[1] != size:
            return 1
        self.mem.write(pa, size, value & ((1 << (8 * size)) - 1))
        self._fill(self.ctx.wt, va, pa, True)
        return 0  # a write to code: the caller ends the block (after_atomic)

    def amo(self, va: int, size: int, op: str, src: int, pc: int) -> int:
        mask = (1 << (8 * size)) - 1
        tva = va - (1 << 64) if self.signed_keys and va >> 63 else va  # the keys' form
        e = None if va & (size - 1) else self.ctx.wt.get(tva & ~PAGE_MASK)
        if e is not None:
            # fast path: the page is in the write TLB (writable RAM, no code)
            buf, off = e[0], e[1] + tva
            old = UNPACK[size](buf, off)[0]
        else:
            pa = self._amo_phys(va, size, pc, C.CAUSE_MISALIGNED_STORE)
            old = self.mem.read(pa, size)
        a = _sext_size(old, size)  # canonical 64-bit view of memory value
        b = src if size == 8 else _sext_size(src & mask, size)
        if op == "add":
            new = a + b
        elif op == "swap":
            new = b
        elif op == "xor":
            new = a ^ b
        elif op == "or":
            new = a | b
        elif op == "and":
            new = a & b
        elif op in ("min", "max"):
            sa, sb = (a ^ (1 << 63)), (b ^ (1 << 63))
            new = a if (sa < sb) == (op == "min") else b
        else:  # minu / maxu
            new = a if (a < b) == (op == "minu") else b
        if e is not None:
            res = self.reservation
            if res is not None:
                pa = e[TLB_PA] + tva
                if res[0] < pa + size and pa < res[0] + res[1]:
                    self.reservation = None
            PACK[size](buf, off, new & mask)
            return a
        self._write_phys(pa, size, new & mask, va)
        self._fill(self.ctx.wt, va, pa, True)
        return a  # a write to code: the caller ends the block (after_atomic)

    def _after_code_store(self, pc: int) -> None:
        if self.code_dirty:
            self.code_dirty = False
            raise CodeModified(pc)

    def after_atomic(self, pc: int) -> None:
        """An AMO or SC at ``pc`` completed, its destination register
        written: if it wrote code (or interrupts changed), end the block
        after it. sc/amo themselves must not raise CodeModified: the
        result they return would never reach rd (a ticket lock's
        amoadd.w would leave its ticket unread and spin forever)."""
        if self.code_dirty:
            self.code_dirty = False
            raise CodeModified(pc)

    # -- cache-block operations (Zicbom / Zicboz) ------------------------
    def cbo(self, op: str, va: int, raw: int, pc: int) -> None:
        priv = self.priv
        if op == "zero":
            bit = C.ENV_CBZE
        elif op == "inval":
            bit = C.ENV_CBIE
        else:
            bit = C.ENV_CBCFE
        for level, cfg in ((PRV_S, self.menvcfg), (PRV_U, self.senvcfg)):
            if priv <= level and not cfg & bit:
                raise Trap(C.CAUSE_ILLEGAL, raw, pc)
        base = va & ~(CBO_BLOCK - 1) & M64
        if op == "zero":
            # Fast path (clear_page is 64 of these per page): the block's
            # page is in the write TLB (writable RAM, no code, dirty logged
            # when the entry was made), as for an inline store.
            tbase = base - (1 << 64) if self.signed_keys and base >> 63 else base
            e = self.ctx.wt.get(tbase & ~PAGE_MASK)
            if e is not None:
                off = e[1] + tbase
                e[0][off:off + CBO_BLOCK] = ZERO_BLOCK
                res = self.reservation
                if res is not None:
                    pa = e[TLB_PA] + tbase
                    if res[0] < pa + CBO_BLOCK and pa < res[0] + res[1]:
                        self.reservation = None
                return
            try:
                pa = self._phys(base, STORE)
                for off in range(0, CBO_BLOCK, 8):
                    self._write_phys(pa + off, 8, 0, base + off)
            except Trap as t:
                t.pc = pc
                if t.cause == C.CAUSE_STORE_ACCESS:
                    t.tval = base
                raise
            self._fill(self.ctx.wt, base, pa, True)
            self._after_code_store(pc)
            return
        # clean/flush/inval: caches are coherent and invisible, but the
        # access must be permitted (checked as a store per Zicbom 2.5.2 / a
        # load may be used; use load-or-store permission as Spike does).
        try:
            self._phys(base, LOAD)
        except Trap as t:
            t.pc = pc
            t.cause = C.CAUSE_STORE_PAGE_FAULT if t.cause == C.CAUSE_LOAD_PAGE_FAULT else C.CAUSE_STORE_ACCESS
            raise

    # ------------------------------------------------------------------
    # running
    def run(self, max_insns: int, exact: bool = True) -> Stop:
        """Run up to ``max_insns`` instructions; return why it stopped.

        ``exact`` False: the budget may end a little early (by less than one
        translated region) rather than single-stepping to the exact count,
        so the next run enters the same region again (a time slice, not a
        limit the guest can observe). Timer deadlines stay exact."""
        start = self.instret
        target = start + max_insns
        x = self.x
        fr = self.f
        fast = self.engine == "fast"
        x[0] = 0
        while True:
            if self.irq_dirty or self.instret >= self._deadline:
                stop = self._check_interrupts()
                if stop is not None:
                    return stop
                if self.waiting:
                    stop = self._wait()
                    if stop is not None:
                        return stop
                    continue
            if self._kick:
                self._kick = False
                return Stop("kick")
            remaining = target - self.instret
            if remaining <= 0:
                return Stop("budget")
            lim = min(remaining, self._deadline - self.instret)
            stop_at = self.instret + lim
            running: Any = None
            try:
                if fast and not self._step_next:
                    # Inner loop: only blocks run here and blocks never change
                    # the translation context (SYSTEM instructions and traps
                    # leave it); devices and kick() set irq_dirty to break out.
                    ctx = self.ctx
                    blocks_get = ctx.blocks.get
                    translate = self.translator.translate
                    self._in_block = True
                    # only blocks retire instructions in here: ``left``
                    # follows instret; ``running`` is the block a trap or
                    # an exit comes from (None while translating)
                    left = lim
                    call = opaque_call
                    if call is None:
                        while True:
                            blk = blocks_get(self.pc)
                            if blk is None:
                                running = None
                                blk = translate(self.pc)
                            if blk.length > left or self.irq_dirty:
                                break
                            running = blk
                            done = blk.fn(self, x, fr, left)
                            self.instret += done
                            left -= done
                    else:
                        # PyPy: the same, with the block called opaquely
                        # (emulator.pypy): thousands of different block
                        # functions would each add a guard to this loop
                        while True:
                            blk = blocks_get(self.pc)
                            if blk is None:
                                running = None
                                blk = translate(self.pc)
                            if blk.length > left or self.irq_dirty:
                                break
                            running = blk
                            done = call(blk.fn, self, x, fr, left)
                            self.instret += done
                            left -= done
                    running = None
                    self._in_block = False
                    if left > 0 and blk.length > left and not self.irq_dirty:
                        if (not exact and stop_at == target and self.instret > start
                                and blk.fn is not None):
                            # a region longer than what is left: end the
                            # slice here (the next one enters it whole); an
                            # instruction only the interpreter runs is not
                            # a reason to end it
                            return Stop("budget")
                        self.interp.step()
                else:
                    self._step_next = False
                    self.interp.step()
            except StepInstead as si:
                self._in_block = False
                self._retire_partial(running, si.pc, False)
                self.pc = si.pc
                self._step_next = True
            except Trap as t:
                self._in_block = False
                self._retire_partial(running, t.pc, False)
                target -= 1  # a trap entry uses budget too: trap loops cannot hang run()
                stop = self.take_trap(t.cause, t.tval, t.pc)
                if stop is not None:
                    return stop
            except CodeModified as cm:
                self._in_block = False
                self._retire_partial(running, cm.pc, True)
            except GuestExit as g:
                self._in_block = False
                self._retire_partial(running, g.pc, False)
                self.pc = g.pc
                return Stop("exit", event=g)

    def _retire_partial(self, blk: object, pc: int, completed: bool) -> None:
        """Account for what a block retired before stopping at ``pc`` (its
        registers were written back by the block itself)."""
        if blk is None:
            return
        idx, npc = blk.index[pc]  # type: ignore[attr-defined]
        n = self.exc_done + idx
        self.exc_done = 0
        if completed:
            n += 1
            self.pc = npc
        self.instret += n

    def _check_interrupts(self) -> Optional[Stop]:
        self.irq_dirty = False
        now = self.time()
        if self.time_fn is None:
            nxt = self._next_timer(now)
            self._deadline = (max(self.instret, self._insns_until(nxt)) if nxt != NO_DEADLINE
                              else NO_DEADLINE)
        else:
            self._deadline = self.instret + 4096
        cause = self.pending_interrupt()
        if cause is None:
            return None
        self.waiting = False
        return self.take_trap(cause, 0, self.pc, interrupt=True)

    def _wait(self) -> Optional[Stop]:
        """WFI: resume when an interrupt is pending (enabled in mie); else
        skip deterministic time to the next timer (``wfi_skip``) or stop."""
        if self.read_mip() & self.mie:
            self.waiting = False
            return None
        if self.time_fn is None and self.wfi_skip:
            now = self.time()
            nxt = self._next_timer(now)
            if nxt != NO_DEADLINE:
                self.time_skip += nxt - now
                self.irq_dirty = True
                return None
        return Stop("wfi")

    # ------------------------------------------------------------------
    # batch register access
    def get_regs(self, names: Sequence[str]) -> List[int]:
        """Read many registers by name: ``x0``..``x31``, ``f0``..``f31``,
        ``pc``, ``priv`` or a CSR name/number (``csr:0x300``)."""
        return [self.get_reg(n) for n in names]

    def set_regs(self, items: Sequence[Tuple[str, int]]) -> None:
        for name, value in items:
            self.set_reg(name, value)

    def get_reg(self, name: str) -> int:
        kind, idx = _reg_name(name)
        if kind == "x":
            return self.x[idx]
        if kind == "f":
            return self.f[idx]
        if kind == "pc":
            return self.pc
        if kind == "priv":
            return self.priv
        saved = self.priv
        self.priv = PRV_M
        try:
            return self.csr_read(idx)
        finally:
            self.priv = saved

    def set_reg(self, name: str, value: int) -> None:
        kind, idx = _reg_name(name)
        value &= M64
        if kind == "x":
            if idx:
                self.x[idx] = value
        elif kind == "f":
            self.f[idx] = value
        elif kind == "pc":
            self.pc = value
        elif kind == "priv":
            if value not in (PRV_U, PRV_S, PRV_M):
                raise ValueError("privilege must be 0, 1 or 3")
            self.priv = value
        else:
            saved = self.priv
            self.priv = PRV_M
            try:
                self.csr_write(idx, value)
            finally:
                self.priv = saved
        self.update_ctx()
        self.irq_dirty = True



# CSRs that map straight onto an attribute (or a constant; -1 = hartid).
_CSR_ATTR: Dict[int, object] = {
    C.MSCRATCH: "mscratch", C.SSCRATCH: "sscratch", C.MEPC: "mepc", C.SEPC: "sepc",
    C.MCAUSE: "mcause", C.SCAUSE: "scause", C.MTVAL: "mtval", C.STVAL: "stval",
    C.MTVEC: "mtvec", C.STVEC: "stvec", C.MEDELEG: "medeleg", C.MIDELEG: "mideleg",
    C.MIE: "mie", C.MCOUNTEREN: "mcounteren", C.SCOUNTEREN: "scounteren",
    C.MENVCFG: "menvcfg", C.SENVCFG: "senvcfg", C.MSECCFG: "mseccfg", C.MISA: "misa",
    C.MCOUNTINHIBIT: "mcountinhibit",
    C.MVENDORID: 0, C.MARCHID: 0, C.MIMPID: 0, C.MHARTID: -1, C.MCONFIGPTR: 0,
    C.MTINST: 0, C.MTVAL2: 0, C.TSELECT: 0, C.TDATA1: 0, C.TDATA2: 0, C.TDATA3: 0,
}

CSR_NAMES: Dict[str, int] = {
    name.lower(): value for name, value in vars(C).items()
    if name.isupper() and isinstance(value, int) and not name.startswith(("MS_", "ENV_", "CAUSE", "PRV", "MISA_", "SSTATUS_", "MSTATUS_", "MEDELEG_", "MIE_", "IRQ", "S_", "M_", "SENVCFG_", "MENVCFG_", "MSECCFG_"))
    and value < 0x1000 and name not in ("SSIP", "MSIP", "STIP", "MTIP", "SEIP", "MEIP")
}


def _reg_name(name: str) -> Tuple[str, int]:
    n = name.strip().lower()
    if n in ("pc", "priv"):
        return n, 0
    if n[:1] in ("x", "f") and n[1:].isdigit() and int(n[1:]) < 32:
        return n[0], int(n[1:])
    if n.startswith("csr:"):
        return "csr", int(n[4:], 0)
    if n in CSR_NAMES:
        return "csr", CSR_NAMES[n]
    raise KeyError(f"unknown register {name!r}")
