"""The code budget: past its share of generated source a hart evicts its
least recently used regions (not all its code); results stay exact."""

from __future__ import annotations

import gc
from typing import Dict, List, Optional, Tuple

from rvkvm.emulator import translator as T
from rvkvm.emulator.hart import Hart

from . import rvasm as A
from .harts import BASE, make_hart
from .rvasm import assemble, br, lbl

PAGE_WORDS = 1024
NOP = A.addi(0, 0, 0)


def paged(n_cold: int, rounds: int) -> List[int]:
    """A hot loop in the first page that calls, in turn, one function in
    each of the ``n_cold`` pages after it (every page its own region),
    ``rounds`` times over."""
    hot = assemble([
        A.u(0x17, 27, 1),                        # auipc x27, 1: the first cold page
        A.u(0x37, 24, 1),                        # lui x24, 1: a page
        A.addi(26, 0, rounds),
        lbl("round"),
        A.addi(23, 27, 0),
        A.addi(22, 0, n_cold),
        lbl("outer"),
        A.addi(25, 0, 20),
        lbl("inner"),
        A.addi(6, 6, 1),
        A.addi(25, 25, -1),
        br(1, 25, 0, "inner"),
        A.i(0x67, 0, 1, 23, 0),                  # jalr ra, 0(x23)
        A.r(0x33, 0, 0, 23, 23, 24),             # add x23, x23, x24
        A.addi(22, 22, -1),
        br(1, 22, 0, "outer"),
        A.addi(26, 26, -1),
        br(1, 26, 0, "round"),
        A.EBREAK,
    ])
    code = hot + [NOP] * (PAGE_WORDS - len(hot))
    for k in range(n_cold):
        cold: List[int] = []
        for j in range(6):
            cold += [A.addi(7, 7, k + j + 1),
                     A.r(0x33, 4, 0, 8, 8, 7),   # xor x8, x8, x7
                     A.r(0x33, 0, 0, 9, 9, 8)]   # add x9, x9, x8
        cold += assemble([
            A.i(0x13, 7, 10, 9, 1),              # andi x10, x9, 1
            br(0, 10, 0, "even"),
            A.addi(11, 11, 1),
            lbl("even"),
            A.i(0x67, 0, 0, 1, 0),               # ret
        ])
        code += cold + [NOP] * (PAGE_WORDS - len(cold))
    return code


def held_ok(h: Hart) -> None:
    """Every index names only held regions, and the count of held source
    is exact."""
    tr = h.translator
    assert tr.code_chars == sum(len(r.src) for r in tr.held)
    registered = {(id(ctx), pc) for entries in h._code.values() for ctx, pc, _, _ in entries}
    for ctx in h._ctxs.values():
        for cache in (ctx.blocks, ctx.suspect):
            for pc, blk in cache.items():
                if blk.owner is not None:
                    assert tr.held.get(blk.owner) is ctx
                    # a store to its code drops it
                    assert (id(ctx), pc) in registered
        for region, _ in ctx.inner.values():
            assert tr.held.get(region) is ctx


def run(code: List[int], engine: str, budgets: List[int], limit: Optional[int] = None,
        hot_after: Optional[int] = None) -> Tuple[Tuple, Hart, List[int]]:
    h, _ = make_hart(engine, code, {}, ram=1 << 20)
    built: List[int] = []
    tr = h.translator
    if limit is not None:
        tr.max_code = limit
    if hot_after is not None:
        tr.hot_after = hot_after
    new = tr._translate_new

    def checked(ctx, pc):  # type: ignore[no-untyped-def]
        blk = new(ctx, pc)
        built.append(pc)
        assert tr.code_chars <= tr.code_budget()
        return blk

    tr._translate_new = checked  # type: ignore[method-assign]
    for budget in budgets * 40 + [10_000_000]:
        stop = h.run(budget)
        if engine == "fast":
            held_ok(h)
        if stop.reason != "budget":
            break
    return (stop.reason, h.pc, h.instret, tuple(h.x)), h, built


def sizes(code: List[int]) -> Dict[int, int]:
    """Source length of the region at each pc, all held (no limit)."""
    _, h, _ = run(code, "fast", [10_000_000], hot_after=0)
    return {r.pc: len(r.src) for r in h.translator.held}


def test_results_stay_exact_under_any_budget() -> None:
    code = paged(12, 3)
    ref, _, _ = run(code, "reference", [10_000_000])
    assert ref[0] == "trap"
    size = sizes(code)
    cold = size[BASE + 4096]
    for limit in (None, 1, cold, 3 * cold, sum(size.values()) // 2):
        for hot_after in (0, None):
            for budgets in ([10_000_000], [37, 5], [201]):
                got, h, _ = run(code, "fast", budgets, limit, hot_after)
                assert got == ref, (limit, hot_after, budgets)
                tr = h.translator
                if limit is None:
                    assert tr.evictions == 0
                else:
                    assert tr.code_chars <= limit
                    if hot_after == 0 and limit >= cold:
                        assert tr.evictions > 0 and tr.chars_evicted > 0
                    if limit < cold:
                        assert not tr.held


def test_eviction_keeps_the_hot_region() -> None:
    """The hot loop's region is older than every cold one, but used since:
    it survives while the cold regions go (least recently used first)."""
    n = 12
    code = paged(n, 2)
    size = sizes(code)
    limit = size[BASE] + 6 * size[BASE + 4096]  # the hot region and a few cold ones
    _, h, built = run(code, "fast", [10_000_000], limit, hot_after=0)
    tr = h.translator
    assert tr.evictions >= n  # cold regions went, several times over ...
    hot = [pc for pc in built if pc < BASE + 4096]
    # ... the hot page's code was built once (its region, entered again at
    # the return site, and the marker of the final ebreak) and kept
    assert sorted(hot) == [BASE, BASE + 4 * 15]
    assert any(r.pc == BASE for r in tr.held)


def test_a_region_larger_than_the_budget_runs_and_is_not_kept() -> None:
    code = paged(2, 2)
    ref, _, _ = run(code, "reference", [10_000_000])
    got, h, built = run(code, "fast", [10_000_000], 1, hot_after=0)
    assert got == ref and not h.translator.held and h.translator.code_chars == 0
    assert len(built) > 3  # built again at each entry


def test_flushing_code_restarts_the_count() -> None:
    code = paged(3, 1)
    _, h, _ = run(code, "fast", [10_000_000], hot_after=0)
    assert h.translator.code_chars > 0 and h.translator.held
    h.flush_code()  # what a KVM memory-slot change does
    assert h.translator.code_chars == 0 and not h.translator.held
    held_ok(h)


def test_a_write_to_held_code_drops_it_from_the_count() -> None:
    code = paged(3, 1)
    _, h, _ = run(code, "fast", [10_000_000], hot_after=0)
    before = h.translator.code_chars
    h.mem.write_bytes(BASE + 4096, A.words([A.addi(7, 7, 99)]))
    assert 0 < h.translator.code_chars < before and h.translator.evictions == 0
    held_ok(h)


def test_the_process_budget_is_shared_by_the_live_harts(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(T, "PROCESS_CODE", 1200)
    monkeypatch.setattr(T, "MAX_HART_CODE", 1000)
    monkeypatch.setattr(T, "MIN_HART_CODE", 100)
    gc.collect()
    h, _ = make_hart("fast", paged(1, 1))
    live = len(T._LIVE)

    def share(n: int) -> int:
        return max(100, min(1000, 1200 // n))

    assert h.translator.code_budget() == share(live)
    others = [make_hart("fast", paged(1, 1))[0] for _ in range(3)]
    assert h.translator.code_budget() == share(live + 3) < share(live)
    for o in others:
        o.close()
    assert h.translator.code_budget() == share(live)
    h.translator.max_code = 5  # a hart's own limit wins
    assert h.translator.code_budget() == 5
