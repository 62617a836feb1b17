"""Translation context: everything besides the pc that changes what code
is generated for an instruction, or how its data accesses translate.

Contexts are interned, so identity comparison works and each one owns its
block cache and its software TLBs; switching privilege or paging mode just
switches to another context's dictionaries.
"""

from __future__ import annotations

from typing import Any, Dict, Set, Tuple

PAGE_SHIFT = 12
M64 = (1 << 64) - 1

CtxKey = Tuple[int, int, bool, int, bool, int, bool, bool]


class Ctx:
    __slots__ = ("key", "priv", "data_priv", "fs_on", "pmlen", "pm_sign", "satp",
                 "sum", "mxr", "blocks", "inner", "suspect", "insns", "rt", "wt", "xt", "mt", "mt_epoch",
                 "vcode",
                 "leaf_bits", "span_tlb", "span_code", "hot", "entered", "used",
                 "code_ppns", "shared_keys", "adopted_regions", "signed_keys")

    def __init__(self, key: CtxKey) -> None:
        self.key = key
        (self.priv, self.data_priv, self.fs_on, self.pmlen, self.pm_sign,
         self.satp, self.sum, self.mxr) = key
        self.blocks: Dict[int, Any] = {}  # pc -> translated block
        # block leader inside a translated region -> (region, its code's
        # physical page): where a miss can enter existing code (translator)
        self.inner: Dict[int, Tuple[Any, int]] = {}
        # blocks set aside by sfence.vma: reused if their page still maps
        # to the same physical page when next entered (translator)
        self.suspect: Dict[int, Any] = {}
        self.insns: Dict[int, Any] = {}  # pc -> interpreter entry
        # Software TLBs. Keys are virtual page bases with the low bits that a
        # misaligned access of the size would set left in: see translator.
        # Entries: (buffer, offset of the page in it minus the key, typed
        # views of the buffer...): see PhysMemory.host_page.
        # Keys in signed form (2**63 and up as negative numbers) where
        # ``signed_keys`` (Hart.signed_keys: PyPy's flavour), else unsigned.
        self.signed_keys = False
        self.rt: Dict[int, Tuple[Any, ...]] = {}
        self.wt: Dict[int, Tuple[Any, ...]] = {}
        self.xt: Dict[int, Tuple[Any, int, int]] = {}
        # Translations of device (non-RAM) pages, which the TLBs above do
        # not hold (their entries are host buffers): virtual page base |
        # access kind (LOAD 1, STORE 2) -> physical page base. Without it
        # every MMIO access walks the page table, twice when it comes from
        # a block (once there, once in the interpreter that runs it). Any
        # fence drops all of it: a handful of pages, refilled by one walk;
        # so does a change of the memory map (``mt_epoch``: the memory's
        # epoch the entries were made in), which may have put RAM there.
        self.mt: Dict[int, int] = {}
        self.mt_epoch = -1
        # virtual page -> pcs of the code cached for it (blocks, set-aside
        # blocks, interpreter entries; some may be gone): what a fence of
        # one page sets aside
        self.vcode: Dict[int, Set[int]] = {}
        # the largest page (offset bits) a TLB entry of this context came
        # from: a fence of one address covers that much around it
        self.leaf_bits = PAGE_SHIFT
        # Once a leaf larger than a page was seen, what a fence of one
        # address covers, by its base (address & ~(leaf size - 1)): the
        # TLB entries (which TLB, key) and the virtual code pages there,
        # so that a fence costs what it drops, not a scan of every entry.
        self.span_tlb: Dict[int, Set[Tuple[int, int]]] = {}
        self.span_code: Dict[int, Set[int]] = {}
        # entries whose first-tier block ran often enough for a region
        # (kept across code flushes: still hot when translated again)
        self.hot: Set[int] = set()
        # the pcs where control entered a first-tier block (translator):
        # the paths the code has taken, which a region is built along
        self.entered: Set[int] = set()
        self.used = 0  # the hart's instret when it last entered this context
        # What forgetting this context has to visit (Hart._drop_ctx,
        # Translator.drop_context), so that it costs what the context
        # holds, not a walk of every context's code (a guest starting
        # processes drops one context per process): the physical pages
        # it noted code of, its keys in the translator's shared map, the
        # regions of other contexts it entered. Supersets: what was
        # dropped since may still be named.
        self.code_ppns: Set[int] = set()
        self.shared_keys: Set[Tuple[bool, int, bool, int]] = set()
        self.adopted_regions: Set[Any] = set()

    def flush_tlb(self) -> None:
        self.rt.clear()
        self.wt.clear()
        self.xt.clear()
        self.mt.clear()
        self.leaf_bits = PAGE_SHIFT
        self.span_tlb.clear()
        self.span_code.clear()

    def saw_leaf(self, bits: int) -> None:
        """A TLB entry of this context came from a leaf of ``bits`` offset
        bits, larger than any before: index the entries and code pages
        held so far by the span a fence of one address now covers."""
        self.leaf_bits = bits
        mask = ~((1 << bits) - 1)
        span_tlb: Dict[int, Set[Tuple[int, int]]] = {}
        for which, tlb in enumerate((self.rt, self.wt, self.xt)):
            for key in tlb:
                span_tlb.setdefault(key & M64 & mask, set()).add((which, key))
        self.span_tlb = span_tlb
        span_code: Dict[int, Set[int]] = {}
        for page in self.vcode:
            span_code.setdefault(page & mask, set()).add(page)
        self.span_code = span_code

    def add_tlb(self, which: int, key: int) -> None:
        """Index a new entry of TLB ``which`` (0 rt, 1 wt, 2 xt) at ``key``
        (only needed once a leaf larger than a page was seen)."""
        base = key & M64 & ~((1 << self.leaf_bits) - 1)
        span = self.span_tlb.get(base)
        if span is None:
            self.span_tlb[base] = {(which, key)}
        else:
            span.add((which, key))

    def add_code(self, pc: int) -> None:
        """Code is cached for ``pc`` (a block, a set-aside block or an
        interpreter entry): what a fence of its page sets aside."""
        page = pc & ~((1 << PAGE_SHIFT) - 1)
        pcs = self.vcode.get(page)
        if pcs is not None:
            pcs.add(pc)
            return
        self.vcode[page] = {pc}
        if self.leaf_bits > PAGE_SHIFT:
            base = page & ~((1 << self.leaf_bits) - 1)
            span = self.span_code.get(base)
            if span is None:
                self.span_code[base] = {page}
            else:
                span.add(page)

    def fence_page(self, page: int) -> None:
        """An address-translation fence of the page at ``page``: drop the
        TLB entries that may come from the leaf mapping it (every page of
        the largest leaf size seen) and set aside the code read through
        them."""
        blocks, suspect, insns, vcode = self.blocks, self.suspect, self.insns, self.vcode
        if self.mt:
            self.mt.clear()
        if self.leaf_bits == PAGE_SHIFT:
            for tlb in (self.rt, self.wt, self.xt):
                if tlb:
                    tlb.pop(page, None)
                    tlb.pop(page - (1 << 64), None)  # the key as a signed address
            pages: Any = (page,) if page in vcode else ()
        else:
            base = page & ~((1 << self.leaf_bits) - 1)
            span = self.span_tlb.pop(base, None)
            if span:
                tlbs = (self.rt, self.wt, self.xt)
                for which, key in span:
                    tlbs[which].pop(key, None)
            pages = self.span_code.get(base, ())
        for p in pages:
            for pc in vcode[p]:
                blk = blocks.pop(pc, None)
                if blk is not None:
                    suspect[pc] = blk
                insns.pop(pc, None)

    def flush_code(self) -> None:
        self.code_ppns.clear()
        self.shared_keys.clear()
        self.adopted_regions.clear()
        self.blocks.clear()
        self.inner.clear()
        self.suspect.clear()
        self.insns.clear()
        self.vcode.clear()
        self.span_code.clear()

    def suspect_code(self) -> None:
        """After an address-translation fence: every block waits to be
        checked against the new mappings (its page's physical page)."""
        if self.blocks:
            self.suspect.update(self.blocks)
            self.blocks.clear()
        self.insns.clear()

    def __repr__(self) -> str:
        return f"<Ctx priv={self.priv} data_priv={self.data_priv} fs={self.fs_on} pmlen={self.pmlen}>"
