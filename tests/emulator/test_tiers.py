"""The first tier (emulator.tier1) and its promotion to regions: exact
under every promotion count and budget; a page whose code is rewritten
again and again stays on the first tier."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rvkvm.emulator.tier1 as tier1

from . import rvasm as A
from .harts import BASE, make_hart
from .test_engines_agree import program, run, values
from .test_invalidation import self_modifying


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prog=program(), init=st.lists(values, min_size=29, max_size=29),
       budget=st.sampled_from([10_000, 7, 33, 150]), hot=st.sampled_from([1, 2, 3, 5, 64]))
def test_first_tier_and_promotion_agree_with_the_reference(prog: list, init: list, budget: int,
                                                           hot: int) -> None:
    code = A.words(prog)
    ref = run("reference", code, init, budget)
    saved = tier1.HOT_AFTER
    tier1.HOT_AFTER = hot
    try:
        fast = run("fast", code, init, budget)
    finally:
        tier1.HOT_AFTER = saved
    assert fast == ref


def test_cold_code_runs_without_a_region_and_hot_code_gets_one(monkeypatch) -> None:
    monkeypatch.setattr(tier1, "HOT_AFTER", 5)
    loop = A.assemble([A.addi(20, 0, 3), A.lbl("top"), A.addi(5, 5, 1), A.addi(20, 20, -1),
                       A.br(1, 20, 0, "top"), A.EBREAK])
    h, _ = make_hart("fast", loop)
    h.run(1000)
    assert h.x[5] == 3 and h.translator.blocks_built == 0 and h.translator.tier1_built >= 2
    mem_loop = A.assemble([A.addi(20, 0, 40), A.lbl("top"), A.addi(5, 5, 1), A.addi(20, 20, -1),
                           A.br(1, 20, 0, "top"), A.EBREAK])
    h, _ = make_hart("fast", mem_loop)
    h.run(1000)
    assert h.x[5] == 40 and h.translator.blocks_built >= 1  # the loop became a region


def test_rewritten_page_stays_on_the_first_tier(monkeypatch) -> None:
    monkeypatch.setattr(tier1, "HOT_AFTER", 1)  # promoted at once, but for rewriting
    ref = self_modifying("reference")
    fast = self_modifying("fast")
    assert fast == ref
    # the loop page is written 25 times: regions stop being built for it
    # after SMC_PAGE_WRITES writes (before, one or two per write)
    assert _regions_built_by_self_modifying() <= tier1.SMC_PAGE_WRITES + 2


def _regions_built_by_self_modifying() -> int:
    import rvkvm.emulator.translator as T

    built = []
    orig = T.Translator._translate_new

    def counting(self, ctx, pc):  # type: ignore[no-untyped-def]
        built.append(pc)
        return orig(self, ctx, pc)

    T.Translator._translate_new = counting  # type: ignore[method-assign]
    try:
        self_modifying("fast")
    finally:
        T.Translator._translate_new = orig  # type: ignore[method-assign]
    return len(built)


def test_self_modifying_guest_passes_on_the_fast_engine() -> None:
    from rvkvm.emulator.bench import GUEST_DIR, run_once

    insns, _, outcome = run_once(f"{GUEST_DIR}/smc.elf", "fast", None)
    assert outcome == "pass" and insns > 200_000 * 8


# Each lap copies word x11[x21] into the loop's own slot (x6 points at it),
# orders fetches and runs it; x20 counts the laps down.
PATCH_LOOP = [
        A.lbl("top"),
        A.i(0x13, 1, 10, 21, 2),          # slli x10, x21, 2
        A.r(0x33, 0, 0, 10, 10, 11),      # add x10, x10, x11
        A.i(0x03, 2, 8, 10, 0),           # lw x8, 0(x10)
        A.s(0x23, 2, 6, 8, 0),            # sw x8, 0(x6)
        0x0000100F,                       # fence.i
        A.addi(0, 0, 0),                  # the slot
        A.addi(21, 21, 1),
        A.addi(20, 20, -1),
        A.br(1, 20, 0, "top"),
]


def _patching_until_a_fault(engine: str):
    """Each lap copies word ``table[lap]`` into the loop's own slot and runs
    it; lap 25's word is a load from address 0 (an access fault)."""
    table = BASE + 0x8000
    slot_at = 5 * 4
    code = A.assemble(PATCH_LOOP + [A.EBREAK])
    words = [A.addi(5, 5, i) if i != 25 else A.i(0x03, 3, 9, 0, 0) for i in range(30)]
    h, mem = make_hart(engine, code, data=A.words(words), data_at=table)
    h.x[6], h.x[11], h.x[20] = BASE + slot_at, table, 30
    stop = h.run(100_000)
    return stop.reason, stop.cause, h.pc, h.instret, tuple(h.x)


def test_live_blocks_of_a_rewritten_page_trap_precisely(monkeypatch) -> None:
    monkeypatch.setattr(tier1, "HOT_AFTER", 1)
    ref = _patching_until_a_fault("reference")
    fast = _patching_until_a_fault("fast")
    assert fast == ref
    assert ref[:3] == ("trap", 5, BASE + 5 * 4) and ref[4][5] == sum(range(25))


def test_a_store_into_any_instruction_of_a_first_tier_block_drops_it() -> None:
    # a straight run of four addi (then ebreak), run once: a first-tier
    # block; each of its instructions rewritten in turn runs as written
    code = [A.addi(5, 5, 1), A.addi(6, 6, 2), A.addi(7, 7, 3), A.addi(8, 8, 4), A.EBREAK]
    h, mem = make_hart("fast", code)
    h.run(100)
    assert (h.x[5], h.x[6], h.x[7], h.x[8]) == (1, 2, 3, 4)
    for i, rd in enumerate((5, 6, 7, 8)):
        mem.write_bytes(BASE + 4 * i, A.words([A.addi(rd, rd, 100)]))
        h.pc = BASE
        before = [h.x[r] for r in (5, 6, 7, 8)]
        h.run(100)
        assert h.translator.blocks_built == 0  # still the first tier
        assert h.x[rd] == before[rd - 5] + 100


def _loop_with_late_path() -> list:
    """40 rounds of a loop whose branch to ``late`` is first taken in round
    30 (x5 >= x21), then every round; ``late`` adds 100 to x6 and rejoins."""
    return A.assemble([A.addi(20, 0, 40), A.addi(21, 0, 30), A.lbl("top"), A.addi(5, 5, 1),
                       A.br(5, 5, 21, "late"), A.lbl("back"), A.addi(20, 20, -1),
                       A.br(1, 20, 0, "top"), A.EBREAK, A.lbl("late"), A.addi(6, 6, 100),
                       A.jmp("back")])


def test_regions_hold_the_paths_the_first_tier_took(monkeypatch) -> None:
    monkeypatch.setattr(tier1, "HOT_AFTER", 5)
    code = _loop_with_late_path()
    late = BASE + 4 * (len(code) - 2)  # the addi of ``late``
    h, _ = make_hart("fast", code)
    h.run(10_000)
    ref, _ = make_hart("reference", code)
    ref.run(10_000)
    assert (h.x[5], h.x[6], h.x[20]) == (ref.x[5], ref.x[6], ref.x[20]) == (40, 1100, 0)
    # the loop's region was built before round 30: without ``late``, which
    # the region leaves for (the first tier ran it, then a region of its own)
    first = next(iter(h.translator.held))
    assert late not in first.index and h.translator.blocks_built >= 2


def test_regions_hold_every_path_when_pruning_is_off(monkeypatch) -> None:
    import rvkvm.emulator.translator as T

    monkeypatch.setattr(tier1, "HOT_AFTER", 5)
    monkeypatch.setattr(T, "PRUNE_UNTAKEN", False)
    code = _loop_with_late_path()
    late = BASE + 4 * (len(code) - 2)
    h, _ = make_hart("fast", code)
    h.run(10_000)
    assert (h.x[5], h.x[6]) == (40, 1100)
    assert late in next(iter(h.translator.held)).index


def _patching_then_steady() -> list:
    """30 laps each store ``addi x6, x6, 1`` into the next instruction (the
    page's code is rewritten often: live blocks), then 3,000 laps of a
    loop on the same page that writes no code. x8 holds BASE (make_hart)."""
    patch = A.addi(6, 6, 1)
    slot = 4 * 4  # the nop after the sw (words 0-1: li32, 2: addi, 3: sw)
    prog = [*A.li32(9, patch), A.addi(20, 0, 30), A.lbl("patch"),
            A.s(0x23, 2, 8, 9, slot), A.addi(0, 0, 0), A.addi(20, 20, -1),
            A.br(1, 20, 0, "patch"), A.addi(21, 0, 1500), A.lbl("steady"), A.addi(5, 5, 1),
            A.addi(5, 5, 1), A.addi(21, 21, -1), A.br(1, 21, 0, "steady"), A.EBREAK]
    return A.assemble(prog)


def test_a_page_no_longer_rewritten_leaves_the_first_tier(monkeypatch) -> None:
    monkeypatch.setattr(tier1, "LIVE_RETRY", 16)
    monkeypatch.setattr(tier1, "HOT_AFTER", 8)
    code = _patching_then_steady()
    ref, _ = make_hart("reference", code, regs={8: BASE})
    ref.run(100_000)
    h, _ = make_hart("fast", code, regs={8: BASE})
    h.run(100_000)
    assert (h.x[5], h.x[6]) == (ref.x[5], ref.x[6]) == (3000, 30)
    t = h.translator
    # the page went live while it was patched, then quiet: the steady
    # loop ran as a region
    assert t.live_quiet >= 1 and t.blocks_built >= 1
    assert h.mem.code_page_writes[BASE >> 12] < tier1.SMC_PAGE_WRITES


def test_a_page_rewritten_all_along_stays_live(monkeypatch) -> None:
    monkeypatch.setattr(tier1, "LIVE_RETRY", 16)
    ref = self_modifying("reference")
    fast = self_modifying("fast")
    assert fast == ref


def test_first_tier_entries_are_bounded(monkeypatch) -> None:
    import rvkvm.emulator.translator as T

    monkeypatch.setattr(tier1, "HOT_AFTER", 5)
    monkeypatch.setattr(T, "MAX_ENTERED", 3)
    code = _loop_with_late_path()
    h, _ = make_hart("fast", code)
    h.run(10_000)
    assert (h.x[5], h.x[6]) == (40, 1100)
    assert 0 < len(h.ctx.entered) <= 3
