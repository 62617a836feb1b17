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
                 "sum", "mxr", "blocks", "inner", "suspect", "insns", "rt", "wt", "xt", "vcode",
                 "leaf_bits", "hot")

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
        self.rt: Dict[int, Tuple[Any, ...]] = {}
        self.wt: Dict[int, Tuple[Any, ...]] = {}
        self.xt: Dict[int, Tuple[Any, int, int]] = {}
        # virtual page -> pcs of the code cached for it (blocks, set-aside
        # blocks, interpreter entries; some may be gone): what a fence of
        # one page sets aside
        self.vcode: Dict[int, Set[int]] = {}
        # the largest page (offset bits) a TLB entry of this context came
        # from: a fence of one address covers that much around it
        self.leaf_bits = PAGE_SHIFT
        # entries whose first-tier block ran often enough for a region
        # (kept across code flushes: still hot when translated again)
        self.hot: Set[int] = set()

    def flush_tlb(self) -> None:
        self.rt.clear()
        self.wt.clear()
        self.xt.clear()
        self.leaf_bits = PAGE_SHIFT

    def fence_page(self, page: int) -> None:
        """An address-translation fence of the page at ``page``: drop the
        TLB entries that may come from the leaf mapping it (every page of
        the largest leaf size seen) and set aside the code read through
        them."""
        size = 1 << self.leaf_bits
        lo = page & ~(size - 1)
        for tlb in (self.rt, self.wt, self.xt):
            if not tlb:
                continue
            if size == 1 << PAGE_SHIFT:
                tlb.pop(lo, None)
                tlb.pop(lo - (1 << 64), None)  # the key as a signed address
            else:
                for key in [k for k in tlb if ((k & M64) - lo) & M64 < size]:
                    tlb.pop(key, None)
        vcode = self.vcode
        if not vcode:
            return
        if size == 1 << PAGE_SHIFT:
            pages = [lo] if lo in vcode else []
        else:
            pages = [p for p in vcode if (p - lo) & M64 < size]
        blocks, suspect, insns = self.blocks, self.suspect, self.insns
        for p in pages:
            for pc in vcode[p]:
                blk = blocks.pop(pc, None)
                if blk is not None:
                    suspect[pc] = blk
                insns.pop(pc, None)

    def flush_code(self) -> None:
        self.blocks.clear()
        self.inner.clear()
        self.suspect.clear()
        self.insns.clear()
        self.vcode.clear()

    def suspect_code(self) -> None:
        """After an address-translation fence: every block waits to be
        checked against the new mappings (its page's physical page)."""
        if self.blocks:
            self.suspect.update(self.blocks)
            self.blocks.clear()
        self.insns.clear()

    def __repr__(self) -> str:
        return f"<Ctx priv={self.priv} data_priv={self.data_priv} fs={self.fs_on} pmlen={self.pmlen}>"
