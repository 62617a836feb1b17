"""End to end: the committed guest programs (sources in guests/) run to a
pass on both engines, through the bare-metal machine and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rvkvm.emulator.machine import Machine

ROOT = Path(__file__).resolve().parents[2]
FEATURE_GUESTS = sorted((ROOT / "tests" / "guests").glob("*.elf"))
BENCH_GUESTS = [ROOT / "emulator" / "guests" / f"{n}.elf" for n in ("crc32", "nqueens", "qsort")]
HELLO = ROOT / "emulator" / "guests" / "hello.elf"


def run_guest(path: Path, engine: str, max_insns: int = 200_000_000) -> tuple:
    out: list = []
    m = Machine(engine=engine, out=out.append)
    m.load(path.read_bytes())
    outcome = m.run(max_insns)
    return outcome, m.exit_code, b"".join(out).decode(errors="replace"), m.instret


def test_feature_guests_exist() -> None:
    names = {p.stem for p in FEATURE_GUESTS}
    assert {"trap_basic", "csr_basic", "interrupts", "paging_sv39", "paging_sv48", "paging_sv57",
            "pointer_masking", "amo_lrsc", "zicbo", "misc_ext", "fp_basic"} <= names


@pytest.mark.parametrize("engine", ["fast", "reference"])
@pytest.mark.parametrize("path", FEATURE_GUESTS, ids=lambda p: p.stem)
def test_feature_guest_passes(path: Path, engine: str) -> None:
    outcome, code, text, _ = run_guest(path, engine)
    assert outcome == "exit", text
    assert code == 0, text


@pytest.mark.parametrize("path", FEATURE_GUESTS, ids=lambda p: p.stem)
def test_engines_retire_the_same_instructions(path: Path) -> None:
    # Deterministic time: both engines see the same timer interrupts at the
    # same instruction counts, so whole runs agree instruction for instruction.
    assert run_guest(path, "fast")[3] == run_guest(path, "reference")[3]


@pytest.mark.parametrize("path", BENCH_GUESTS, ids=lambda p: p.stem)
def test_bench_guest_passes_on_fast_engine(path: Path) -> None:
    outcome, code, text, n = run_guest(path, "fast")
    assert (outcome, code) == ("exit", 0), text
    assert "ok" in text and n > 10_000_000


def test_bench_guest_same_prefix_on_reference() -> None:
    # The reference engine is slow: compare a prefix of a benchmark run.
    def state(engine: str) -> tuple:
        m = Machine(engine=engine, out=lambda b: None)
        m.load(BENCH_GUESTS[1].read_bytes())
        m.run(300_000)
        h = m.harts[0]
        return h.instret, h.pc, tuple(h.x)

    assert state("fast") == state("reference")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emulator", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_cli_hello(engine: str) -> None:
    r = cli("run", "--engine", engine, "--stats", str(HELLO))
    assert r.returncode == 0, r.stderr
    assert "Hello from rvkvm guest!" in r.stdout
    last = r.stderr.strip().splitlines()[-1]
    fields = dict(kv.split("=") for kv in last.split())
    assert set(fields) == {"instructions", "seconds", "mips"}
    assert int(fields["instructions"]) > 100


def test_cli_budget_exhausted() -> None:
    r = cli("run", "--max-insns", "1000", str(BENCH_GUESTS[0]))
    assert r.returncode == 2
    assert "budget" in r.stderr


def test_cli_failing_guest_reports_test_number(tmp_path: Path) -> None:
    # Patch hello: make its first instruction jump to a routine that writes
    # (7 << 1) | 1 to tohost. Built from hello's own symbols, no toolchain.
    from rvkvm.emulator.elf import load_elf
    from rvkvm.emulator.memory import PhysMemory

    mem = PhysMemory()
    mem.add_ram(0x8000_0000, 1 << 24)
    image = load_elf(mem, HELLO.read_bytes())
    tohost = image.symbols["tohost"]
    assert image.entry == 0x8000_0000 and tohost < 0x8000_0800
    from tests.emulator import rvasm as A

    code = A.words([A.addi(5, 0, 15), A.addi(6, 0, 1), A.i(0x13, 1, 6, 6, 31),
                    A.s(0x23, 3, 6, 5, tohost - 0x8000_0000), A.j(0, 0)])
    data = bytearray(HELLO.read_bytes())
    # Locate the entry's file offset through pyelftools and overwrite it.
    import io

    from elftools.elf.elffile import ELFFile

    elf = ELFFile(io.BytesIO(bytes(data)))
    for seg in elf.iter_segments():
        if seg["p_type"] == "PT_LOAD" and seg["p_paddr"] <= image.entry < seg["p_paddr"] + seg["p_filesz"]:
            off = seg["p_offset"] + image.entry - seg["p_paddr"]
            data[off:off + len(code)] = code
            break
    bad = tmp_path / "fail.elf"
    bad.write_bytes(bytes(data))
    r = cli("run", "--max-insns", "100000", str(bad))
    assert r.returncode == 1
    assert "FAIL: test 7" in r.stderr


@pytest.mark.parametrize("content, message", [
    (b"not an elf at all", "not an ELF"),
    (b"\x7fELF\x02\x01\x01" + bytes(100), "not an RV64 ELF"),
    (b"\x7fELF\x02\x01", "malformed"),
    (HELLO.read_bytes()[:200], "malformed"),
], ids=["text", "no-machine", "truncated-header", "truncated-body"])
def test_cli_rejects_bad_files(tmp_path: Path, content: bytes, message: str) -> None:
    f = tmp_path / "bad.elf"
    f.write_bytes(content)
    r = cli("run", str(f))
    assert r.returncode == 3
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_cli_rejects_wrong_machine_and_missing_file(tmp_path: Path) -> None:
    r = cli("run", sys.executable)  # an x86-64 (or other host) ELF
    assert r.returncode == 3 and "not an RV64 ELF" in r.stderr and "Traceback" not in r.stderr
    r = cli("run", str(tmp_path / "missing.elf"))
    assert r.returncode == 3 and "cannot read" in r.stderr


def test_cli_rejects_segments_outside_ram() -> None:
    r = cli("run", "--ram", "4K", str(HELLO))
    assert r.returncode == 3
    assert "outside guest RAM" in r.stderr


@pytest.fixture
def signed_locals(monkeypatch: pytest.MonkeyPatch) -> None:
    """The translator's PyPy flavour (signed register locals), on CPython."""
    import rvkvm.emulator.translator as tr

    monkeypatch.setattr(tr, "SIGNED_LOCALS", True)


@pytest.mark.parametrize("path", FEATURE_GUESTS + BENCH_GUESTS, ids=lambda p: p.stem)
def test_signed_flavour_passes_and_retires_the_same(path: Path, signed_locals: None) -> None:
    outcome, code, text, instret = run_guest(path, "fast")
    assert (outcome, code) == ("exit", 0), text
    import rvkvm.emulator.translator as tr

    tr.SIGNED_LOCALS = False
    assert run_guest(path, "fast")[3] == instret


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_tlb_keys_take_the_flavours_form(signed: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # The data TLBs' keys follow the flavour of the translated code that
    # looks them up (Hart.signed_keys): the upper half's pages (paging_sv39
    # touches the top page) in signed form under PyPy's flavour, so that no
    # key or delta is a big integer there, unsigned under CPython's.
    import rvkvm.emulator.translator as tr
    from rvkvm.emulator.hart import Hart

    monkeypatch.setattr(tr, "SIGNED_LOCALS", signed)
    keys: set = set()
    fill = Hart._fill

    def recording(self: Hart, tlb: dict, va: int, pa: int, write: bool) -> None:
        fill(self, tlb, va, pa, write)
        keys.update(tlb)

    monkeypatch.setattr(Hart, "_fill", recording)
    outcome, code, text, _ = run_guest(ROOT / "tests" / "guests" / "paging_sv39.elf", "fast")
    assert (outcome, code) == ("exit", 0), text
    upper = [k for k in keys if k < 0 or k >= 1 << 63]
    assert upper, "the guest touched no page of the upper half"
    assert all((k < 0) == signed for k in upper)
