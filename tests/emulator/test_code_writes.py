"""Stores into code, as fine as the change, on both paths of the fast
engine: a code page (a store drops only the code whose instruction bytes
it overlaps: a block, or a region whose blocks it touches, never the code
beside it) and a page rewritten often (live blocks, emulator.tier1: they
read each instruction word as they run, fence.i included, so a store drops
nothing). Every case runs on the reference interpreter too and must end
in the same state: stores into the middle of a hot block, a store that
straddles two instructions, compressed instructions that change length,
another hart's store and the host's (WriteMemory)."""

from __future__ import annotations

import struct
from typing import Iterable, List, Tuple

import pytest

import rvkvm.emulator.tier1 as tier1
from rvkvm.emulator.hart import Hart
from rvkvm.emulator.memory import PhysMemory

from . import rvasm as A
from .harts import BASE, make_hart

CODE = BASE + 0x1000
STORER = BASE + 0x3000  # another hart's store: sw x6, 0(x7); ebreak
FENCE_I = 0x0000100F
BUDGETS = (7, 13, 1, 64, 5, 1000)  # slices of varied length: blocks stop part way


@pytest.fixture(params=["code", "live"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """``code``: pages hold blocks and regions that stores drop; ``live``:
    every page counts as rewritten often (its blocks are live)."""
    monkeypatch.setattr(tier1, "HOT_AFTER", 2)  # regions after two entries
    if request.param == "live":
        monkeypatch.setattr(tier1, "SMC_PAGE_WRITES", 0)
    return request.param


def c_addi(rd: int, imm: int) -> int:
    """c.addi rd, imm (RVC, 16 bits)."""
    return ((imm >> 5) & 1) << 12 | rd << 7 | (imm & 0x1F) << 2 | 0b01


def code_bytes(items: Iterable[Tuple[int, int]]) -> bytes:
    """(size in bytes, encoding) pieces laid out one after another."""
    return b"".join(struct.pack("<H" if size == 2 else "<I", enc) for size, enc in items)


def run_to_trap(h: Hart, pc: int) -> Tuple[str, int, int]:
    """Run from ``pc`` in slices of BUDGETS until the ebreak; (reason, pc,
    instructions retired)."""
    h.pc = pc
    k = 0
    while True:
        stop = h.run(BUDGETS[k % len(BUDGETS)])
        k += 1
        if stop.reason != "budget":
            return stop.reason, h.pc, h.instret


def state(h: Hart) -> Tuple[int, ...]:
    return (h.pc, h.instret, *h.x)


# -- a store into the middle of a hot block, code beside it kept --------------
def self_patching_loop() -> List[int]:
    """x5 += 1, x6 += 2 (the middle word, rewritten by the loop itself at
    lap x20 == x21 with x9 through x8), x7 += 3; x20 laps."""
    return A.assemble([
        A.lbl("top"),
        A.addi(5, 5, 1),
        A.addi(6, 6, 2),
        A.addi(7, 7, 3),
        A.addi(20, 20, -1),
        A.br(1, 20, 21, "skip"),
        A.s(0x23, 2, 8, 9, 4),  # sw x9, 4(x8)
        FENCE_I,
        A.lbl("skip"),
        A.br(1, 20, 0, "top"),
        A.EBREAK,
    ])


# a region with a gap: 0x100 -> 0x200 -> back to 0x100 (x22 laps)
FAR_LOOP = CODE + 0x100
FAR_TAIL = CODE + 0x200
GAP = CODE + 0x180  # a data word between the region's blocks


def far_loop(mem: PhysMemory) -> None:
    mem.write_bytes(FAR_LOOP, A.words([A.addi(10, 10, 1), A.j(0, FAR_TAIL - FAR_LOOP - 4)]))
    mem.write_bytes(FAR_TAIL, A.words([A.addi(22, 22, -1),
                                       A.b(1, 22, 0, FAR_LOOP - FAR_TAIL - 4), A.EBREAK]))


def middle_of_a_hot_block(engine: str) -> Tuple[object, ...]:
    h, mem = make_hart(engine, [A.EBREAK])
    mem.write_bytes(CODE, A.words(self_patching_loop()))
    far_loop(mem)
    other = Hart(mem, hartid=1, engine=engine)
    other.intercept_mtraps = True
    mem.write_bytes(STORER, A.words([A.s(0x23, 2, 7, 6, 0), A.EBREAK]))
    seen: List[object] = []
    h.x[22] = 50
    seen.append(run_to_trap(h, FAR_LOOP))
    far = h.ctx.blocks.get(FAR_LOOP)
    # data stores into the gap between that region's blocks: the host's and
    # another hart's; neither touches an instruction
    mem.write_bytes(GAP, b"\x01\x02\x03\x04")
    other.pc = STORER
    other.x[6], other.x[7] = 0x5555, GAP
    assert other.run(100).reason == "trap"
    kept = [h.ctx.blocks.get(FAR_LOOP) is far]
    # the loop rewrites its own middle word in lap 18 of 30 (x20 down to 12)
    h.x[8], h.x[9], h.x[20], h.x[21] = CODE, A.addi(6, 6, 5), 30, 12
    seen.append(run_to_trap(h, CODE))
    kept.append(h.ctx.blocks.get(FAR_LOOP) is far)
    h.x[22] = 9
    seen.append(run_to_trap(h, FAR_LOOP))
    if engine == "fast":
        assert far is not None and all(kept)
    return tuple(seen), state(h)


def test_store_into_the_middle_of_a_hot_block(path: str) -> None:
    fast = middle_of_a_hot_block("fast")
    assert fast == middle_of_a_hot_block("reference")
    x = fast[1][2:]
    # the store comes in lap 18 (x20 down to 12), after that lap's x6 += 2
    assert (x[5], x[6], x[7], x[10]) == (30, 2 * 18 + 5 * 12, 90, 59)


# -- a store that straddles two instructions, compressed ones -------------------
def rvc_loop(store: List[Tuple[int, int]]) -> bytes:
    """c.addi x5, 1; addi x6, x6, 1; c.addi x7, 1 (offsets 0, 2, 6), then
    x20 -= 1 and, at lap x20 == x21, ``store`` (pieces) and fence.i; x20 laps."""
    skip = 4 + 4 * len(store) + 4  # from the bne to the closing branch
    head = [(2, c_addi(5, 1)), (4, A.addi(6, 6, 1)), (2, c_addi(7, 1)),
            (4, A.addi(20, 20, -1)), (4, A.b(1, 20, 21, skip))]
    size = sum(n for n, _ in head) + 4 * len(store) + 4
    return code_bytes(head + store + [(4, FENCE_I), (4, A.b(1, 20, 0, -size)), (4, A.EBREAK)])


def straddling(engine: str, program: bytes, regs: Tuple[int, int]) -> Tuple[object, ...]:
    h, mem = make_hart(engine, [A.EBREAK])
    mem.write_bytes(CODE, program)
    h.x[8], h.x[20], h.x[21] = CODE, 30, 12
    h.x[9], h.x[11] = regs
    return run_to_trap(h, CODE), state(h)


def test_a_store_straddling_two_instructions(path: str) -> None:
    # sw x9, 4(x8): the upper half of the addi at 2 (now x6 += 7) and the
    # c.addi at 6 (now x7 += 5)
    new = A.addi(6, 6, 7) >> 16 | c_addi(7, 5) << 16
    program = rvc_loop([(4, A.s(0x23, 2, 8, 9, 4))])
    fast = straddling("fast", program, (new, 0))
    assert fast == straddling("reference", program, (new, 0))
    x = fast[1][2:]
    assert (x[5], x[6], x[7]) == (30, 18 + 7 * 12, 18 + 5 * 12)


def test_stores_turning_one_instruction_into_two_compressed_ones(path: str) -> None:
    # sh x9, 2(x8); sh x11, 4(x8): the 4-byte addi at 2 becomes
    # c.addi x6, 3; c.addi x6, 4 (one instruction more per lap)
    program = rvc_loop([(4, A.s(0x23, 1, 8, 9, 2)), (4, A.s(0x23, 1, 8, 11, 4))])
    regs = (c_addi(6, 3), c_addi(6, 4))
    fast = straddling("fast", program, regs)
    assert fast == straddling("reference", program, regs)
    x = fast[1][2:]
    assert (x[5], x[6], x[7]) == (30, 18 + 7 * 12, 30)


# -- another hart's store and the host's, into a hot loop ------------------------
def rewritten_from_outside(engine: str) -> Tuple[object, ...]:
    h, mem = make_hart(engine, [A.EBREAK])
    loop = A.assemble([A.lbl("top"), A.addi(5, 5, 1), A.addi(6, 6, 2), A.addi(7, 7, 3),
                       A.addi(20, 20, -1), A.br(1, 20, 0, "top"), A.EBREAK])
    mem.write_bytes(CODE, A.words(loop))
    mem.write_bytes(STORER, A.words([A.s(0x23, 2, 7, 6, 0), A.EBREAK]))
    other = Hart(mem, hartid=1, engine=engine)
    other.intercept_mtraps = True
    seen = []
    for rewrite in (None, "hart", "host", "hart"):
        if rewrite == "hart":
            other.pc = STORER
            other.x[6], other.x[7] = A.addi(6, 6, 4 + len(seen)), CODE + 4
            assert other.run(100).reason == "trap"
            h.fence_i(FENCE_I, 0)
        elif rewrite == "host":  # as WriteMemory does
            mem.write_bytes(CODE + 4, A.words([A.addi(6, 6, 11)]))
        h.x[20] = 25
        seen.append(run_to_trap(h, CODE))
    return tuple(seen), state(h)


def test_another_harts_and_the_hosts_stores_into_a_hot_loop(path: str) -> None:
    fast = rewritten_from_outside("fast")
    assert fast == rewritten_from_outside("reference")
    x = fast[1][2:]
    assert (x[5], x[6], x[7]) == (100, 25 * (2 + 5 + 11 + 7), 300)


def test_live_blocks_classify_system_words_as_the_tiers_do() -> None:
    # fence.i runs on inside a live block; sfence.vma ends it at the next pc
    # (mappings may change); counter reads run only first (exact instret);
    # other SYSTEM words leave to the interpreter
    h, _ = make_hart("fast", [A.EBREAK])
    tr = h.translator
    live = lambda raw: tier1.live_word(h.ctx, tr.tier1_views, raw, tr.glb)  # noqa: E731
    fence_i, sfence_vma, rdtime, ecall = 0x0000100F, 0x12000073, 0xC01027F3, 0x00000073
    fn, length, how = live(fence_i)
    assert fn is not None and length == 4 and how == tier1.LIVE_ON
    fn, length, how = live(sfence_vma)
    assert fn is not None and how == tier1.LIVE_ENDS
    assert live(rdtime)[2] == tier1.LIVE_FIRST
    assert live(ecall)[:2] == (None, 0)
