"""Entering a translated region at one of its other block leaders.

A run that stops inside a region (a time slice, a budget) resumes at a loop
header or another leader of that region. The translator enters the code it
already built there (``Block.entered_at``) instead of building a second
region over the same blocks; the results, the instruction counts and code
invalidation must be exactly as before."""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from . import rvasm as A
from .harts import BASE, make_hart
from .rvasm import assemble, br, lbl

DATA = BASE + 4 + 0x8000  # where the auipc below points


def nest() -> List[int]:
    """Two nested counted loops with a load and a store in the inner one."""
    return assemble([
        A.addi(20, 0, 6),
        A.u(0x17, 25, 8),                       # auipc x25, 8: x25 = DATA
        lbl("outer"),
        A.addi(21, 0, 9),
        lbl("inner"),
        A.i(0x03, 3, 6, 25, 0),                 # ld x6, 0(x25)
        A.r(0x33, 0, 0, 6, 6, 21),              # add x6, x6, x21
        A.s(0x23, 3, 25, 6, 0),                 # sd x6, 0(x25)
        A.addi(7, 7, 3),
        A.addi(21, 21, -1),
        br(1, 21, 0, "inner"),
        A.addi(8, 8, 1),
        A.addi(20, 20, -1),
        br(1, 20, 0, "outer"),
        A.EBREAK,
    ])


def regions(h) -> Dict[int, object]:
    """pc -> code object of every translated region the hart's context holds."""
    return {pc: b.fn.__code__ for pc, b in h.ctx.blocks.items() if b.fn is not None}


def run_both(code: List[int], start: int, budgets: List[int], exact: bool = True,
             regs: Optional[Dict[int, int]] = None) -> Tuple[Tuple, Tuple, object]:
    """Run ``code`` from ``start`` on both engines through ``budgets`` (then
    to the end); (reference result, fast result, fast hart). With ``exact``
    each run's stop is compared as well."""
    results = []
    fast = None
    for engine in ("reference", "fast"):
        h, mem = make_hart(engine, code, regs)
        h.pc = start
        trace = []
        for budget in budgets + [1_000_000]:
            stop = h.run(budget, exact)
            if exact:
                trace.append((h.pc, h.instret, tuple(h.x)))
            if stop.reason != "budget":
                break
        results.append((stop.reason, stop.cause, h.pc, h.instret, tuple(h.x), trace,
                        mem.read_bytes(DATA, 8)))
        fast = h
    return results[0], results[1], fast


def test_time_slices_resume_in_the_code_already_built() -> None:
    """Slices that end inside the loops (not exact) resume at leaders of the
    one region: no second region is built, and the result is unchanged."""
    code = nest()
    ref, fast, h = run_both(code, BASE, [37] * 40, exact=False)
    assert fast[:5] + fast[6:] == ref[:5] + ref[6:]
    assert fast[0] == "trap" and fast[3] == 2 + 6 * (1 + 9 * 6 + 3)
    built = regions(h)
    assert len(built) > 1  # slices resumed at several of the region's leaders ...
    assert set(built.values()) == {built[BASE]}  # ... all in the region built first


def test_exact_budgets_through_entries() -> None:
    code = nest()
    for budgets in ([50], [61, 7], [100, 3, 33]):
        ref, fast, h = run_both(code, BASE, budgets * 12)
        assert fast == ref, budgets
        built = regions(h)
        assert any(pc != BASE and c is built[BASE] for pc, c in built.items())


def test_entry_at_a_leader_of_a_region_first_entered_mid_block() -> None:
    """A region first entered in the middle of a loop's block counts that
    prefix from the block's start; entered later at the loop's header, it
    must count from zero."""
    code = nest()
    mid = BASE + 4 * 6  # the inner loop's ``addi x7``
    ref, fast, h = run_both(code, mid, [40] * 10, exact=False,
                            regs={20: 3, 21: 5, 25: DATA})
    assert fast == ref
    built = regions(h)
    inner = BASE + 4 * 3
    assert built[inner] is built[mid]  # the header runs the region entered at ``mid``
    assert fast[0] == "trap" and fast[3] == 3 + 4 * 6 + 3 + 2 * 58  # the rest of the nest ran


def test_writing_the_code_drops_entries_into_it() -> None:
    """After its page is written, neither the region nor the entries into it
    run again: the changed instruction takes effect at once."""
    code = nest()
    outcomes = []
    for engine in ("reference", "fast"):
        h, mem = make_hart(engine, code, {})
        for budget in (150, 61, 47):
            h.run(budget)
        if engine == "fast":
            before = regions(h)
            assert any(pc != BASE and c is before[BASE] for pc, c in before.items())
        # addi x7, x7, 3 -> addi x7, x7, 5 (one word in the inner loop)
        mem.write_bytes(BASE + 4 * 6, A.words([A.addi(7, 7, 5)]))
        while h.run(77).reason == "budget":
            pass
        outcomes.append((h.pc, h.instret, tuple(h.x)))
        if engine == "fast":
            after = regions(h)
            assert not set(after.values()) & set(before.values())
    ref, fast = outcomes
    assert fast == ref
    laps = 6 * 9
    assert 3 * laps < ref[2][7] < 5 * laps  # some laps before the write, some after
    assert (ref[2][7] - 3 * laps) % 2 == 0


def calls() -> List[int]:
    """A loop calling a function in the same page (``jal ra``; ``ret``)."""
    return assemble([
        A.addi(20, 0, 7),
        lbl("loop"),
        A.addi(10, 20, 0),
        0x0,                                     # jal ra, f (patched below)
        A.r(0x33, 0, 0, 6, 6, 10),               # add x6, x6, x10
        A.addi(20, 20, -1),
        br(1, 20, 0, "loop"),
        A.EBREAK,
        lbl("f"),
        A.r(0x33, 0, 0, 10, 10, 10),             # add x10, x10, x10
        A.addi(10, 10, 1),
        A.i(0x67, 0, 0, 1, 0),                   # jalr x0, 0(ra)
    ])


def test_a_call_returns_into_its_callers_region() -> None:
    """A call's return site is a leader of the caller's region: the return
    continues in that code (not in a region of its own), with exact counts."""
    code = calls()
    code[2] = A.j(1, 4 * 7 - 4 * 2)  # jal ra, f
    for budgets in ([1_000_000], [5], [9, 13], [30]):
        ref, fast, h = run_both(code, BASE, budgets * 8)
        assert fast == ref
        assert fast[0] == "trap" and fast[4][6] == sum(2 * i + 1 for i in range(1, 8))
    ref, fast, h = run_both(code, BASE, [1_000_000])
    built = regions(h)
    assert set(built.values()) == {built[BASE]}  # one region ...
    assert BASE + 4 * 3 in h.ctx.blocks[BASE].entries  # ... that returns are part of


def test_entries_lead_into_the_region_built_after_a_write() -> None:
    """Once a region is built again after a write to its page, slices that
    resume at its other leaders enter the new region."""
    code = nest()
    h, mem = make_hart("fast", code, {})
    h.run(100, False)
    before = set(regions(h).values())
    mem.write_bytes(BASE + 4 * 6, A.words([A.addi(7, 7, 5)]))
    entered: List[int] = []
    while h.run(60, False).reason == "budget":  # slices longer than a region's slack
        entered.append(h.pc)
    built = regions(h)
    assert not set(built.values()) & before
    rebuilt = [c for pc, c in built.items() if c.co_filename == f"<block@{pc:#x}>"]
    aliases = [pc for pc, c in built.items() if c.co_filename != f"<block@{pc:#x}>"]
    assert aliases  # slices resumed at leaders of a region built after the write ...
    assert len(rebuilt) <= 2  # ... instead of building a region at each of them


def many_diamonds(count: int) -> List[int]:
    """A counted loop whose body is ``count`` if/else diamonds in a row:
    more blocks than one region holds when ``count`` is large."""
    items: list = [A.addi(20, 0, 5), lbl("top")]
    for k in range(count):
        items += [
            A.i(0x13, 7, 8, 20, 1 << (k % 3)),   # andi x8, x20, bit
            br(0, 8, 0, f"else{k}"),
            A.addi(6, 6, k + 1),
            ("j", f"join{k}"),
            lbl(f"else{k}"),
            A.r(0x33, 4, 0, 7, 7, 6),            # xor x7, x7, x6
            lbl(f"join{k}"),
        ]
    items += [A.addi(20, 20, -1), br(1, 20, 0, "top"), A.EBREAK]
    return assemble(items)


def test_loops_with_more_blocks_than_a_region_holds() -> None:
    for count in (8, 15, 40):
        code = many_diamonds(count)
        for budgets in ([1_000_000], [17], [100, 9], [250]):
            ref, fast, h = run_both(code, BASE, budgets * 20)
            assert fast == ref, (count, budgets)
            assert fast[0] == "trap"
        _, fast, h = run_both(code, BASE, [40] * 200, exact=False)
        assert fast[:5] == ref[:5]


def test_a_slice_runs_through_instructions_only_the_interpreter_runs() -> None:
    """A CSR read in a loop has no translated code (the interpreter runs
    it): a slice that is not exact steps it and goes on, rather than ending
    there as it does before a region longer than what is left."""
    code = assemble([
        A.addi(20, 0, 50),
        lbl("loop"),
        A.i(0x73, 2, 5, 0, 0x340),               # csrr x5, mscratch
        A.addi(6, 6, 1),
        A.addi(20, 20, -1),
        br(1, 20, 0, "loop"),
        A.EBREAK,
    ])
    h, _ = make_hart("fast", code, {})
    stop = h.run(1_000_000, False)
    assert (stop.reason, h.instret, h.x[6]) == ("trap", 1 + 50 * 4, 50)


def test_flushing_code_restarts_the_count() -> None:
    h, _ = make_hart("fast", nest(), {})
    h.run(100)
    assert h.translator.code_chars > 0
    h.flush_code()  # what fence.i and sfence.vma do
    assert h.translator.code_chars == 0
