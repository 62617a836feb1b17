"""The hart's page-walk cache (Hart._pwc): a walk through valid non-leaf
entries remembers the last-level table of its 2 MiB span, so the next walk
there reads one PTE instead of three (Sv39); it is per root (satp), emptied
by a fence of every address and by a reset, and it never holds a leaf:
leaf changes are seen after an address fence as before."""

from __future__ import annotations

import struct

from rvkvm.emulator import csr as C
from rvkvm.emulator.hart import LOAD, PWC_ENTRIES

from .harts import BASE, make_hart

V, R, W, X, AD = 1, 2, 4, 8, 0xC0
VA = 0x1000_0000
PA1, PA2 = BASE + 0x40000, BASE + 0x41000


def pte(pa: int, flags: int) -> bytes:
    return struct.pack("<Q", ((pa >> 12) << 10) | flags)


def tables(mem, n: int, pa: int) -> tuple:
    """Sv39 tables number ``n`` mapping VA (and VA + 4 KiB) to ``pa``
    (and ``pa`` + 4 KiB): (root, mid, leaf) physical addresses."""
    root, mid, leaf = (BASE + 0x10000 + 0x3000 * n + 0x1000 * i for i in range(3))
    mem.write_bytes(root + 8 * ((VA >> 30) & 511), pte(mid, V))
    mem.write_bytes(mid + 8 * ((VA >> 21) & 511), pte(leaf, V))
    for k in range(2):
        mem.write_bytes(leaf + 8 * (((VA >> 12) + k) & 511), pte(pa + 0x1000 * k, V | R | W | AD))
    return root, mid, leaf


def setup():
    h, mem = make_hart("fast", [0], ram=1 << 20)
    h.priv = 1
    reads = []
    real = mem.read_ram

    def counted(paddr: int, size: int) -> int:
        reads.append(paddr)
        return real(paddr, size)

    mem.read_ram = counted  # type: ignore[method-assign]
    return h, mem, reads


def use(h, root: int, asid: int = 0) -> None:
    h.csr_write(C.SATP, (8 << 60) | (asid << 44) | (root >> 12))


def test_the_second_walk_in_a_span_reads_only_the_leaf_entry() -> None:
    h, mem, reads = setup()
    root, _, leaf = tables(mem, 0, PA1)
    use(h, root)
    assert h.translate(VA, LOAD, 1) == PA1
    assert len(reads) == 3
    reads.clear()
    assert h.translate(VA + 0x1008, LOAD, 1) == PA1 + 0x1008
    assert reads == [leaf + 8 * (((VA >> 12) + 1) & 511)]


def test_a_changed_leaf_is_seen_after_an_address_fence() -> None:
    h, mem, _ = setup()
    root, _, leaf = tables(mem, 0, PA1)
    use(h, root)
    assert h.translate(VA, LOAD, 1) == PA1
    mem.write_bytes(leaf + 8 * ((VA >> 12) & 511), pte(PA2, V | R | W | AD))
    h.fence_vma(VA)
    assert h.translate(VA, LOAD, 1) == PA2


def test_a_replaced_table_is_seen_after_a_fence_of_every_address() -> None:
    h, mem, reads = setup()
    root, mid, _ = tables(mem, 0, PA1)
    _, _, other_leaf = tables(mem, 1, PA2)  # another leaf table, mapping VA to PA2
    use(h, root)
    assert h.translate(VA, LOAD, 1) == PA1
    mem.write_bytes(mid + 8 * ((VA >> 21) & 511), pte(other_leaf, V))
    h.fence_vma(None, None)
    reads.clear()
    assert h.translate(VA, LOAD, 1) == PA2
    assert len(reads) == 3  # walked from the root again
    # an ASID fence empties it too
    mem.write_bytes(mid + 8 * ((VA >> 21) & 511), pte(mid + 0x1000, V))  # the first leaf
    h.fence_vma(None, 0)
    assert h.translate(VA, LOAD, 1) == PA1


def test_each_root_has_its_own_entries() -> None:
    h, mem, _ = setup()
    root_a, _, _ = tables(mem, 0, PA1)
    root_b, _, _ = tables(mem, 1, PA2)
    for _ in range(3):
        use(h, root_a, 1)
        assert h.translate(VA, LOAD, 1) == PA1
        use(h, root_b, 2)
        assert h.translate(VA, LOAD, 1) == PA2


def test_a_reset_and_a_tlb_flush_empty_it_and_it_stays_bounded() -> None:
    h, mem, reads = setup()
    root, _, _ = tables(mem, 0, PA1)
    use(h, root)
    h.translate(VA, LOAD, 1)
    assert h._pwc
    h.flush_tlbs()
    assert not h._pwc
    h.translate(VA, LOAD, 1)
    h.reset_csrs()
    assert not h._pwc
    # a full cache starts again instead of growing
    h._pwc.update({(k, k): 0 for k in range(PWC_ENTRIES)})
    use(h, root)
    reads.clear()
    assert h.translate(VA, LOAD, 1) == PA1
    assert len(h._pwc) == 1
