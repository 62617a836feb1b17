"""emulator.bench: the cold runs in fresh processes and the table's rows
(on the small hello guest, so this stays quick)."""

from __future__ import annotations

import os

from rvkvm.emulator import bench


def test_cold_run_in_a_fresh_process_matches_an_in_process_run() -> None:
    path = os.path.join(bench.GUEST_DIR, "hello.elf")
    insns, seconds, outcome = bench.run_cold(path)
    assert outcome == "pass" and seconds > 0
    assert insns == bench.run_once(path, "fast", None)[0]


def test_cold_run_failure_is_reported_not_raised(tmp_path) -> None:
    bad = tmp_path / "not-an-elf"
    bad.write_bytes(b"nope")
    assert bench.run_cold(str(bad))[2].startswith("cold-run-failed")


def test_rows_take_the_best_cold_of_every_round(monkeypatch) -> None:
    cold_calls = []
    real = bench.run_cold

    def counted(path: str):
        result = real(path)
        cold_calls.append(result)
        return result

    monkeypatch.setattr(bench, "run_cold", counted)
    (row,) = bench.bench(["hello"], 500, 3)
    assert len(cold_calls) == 2  # rounds after the first
    assert row["outcome"] == "pass" and row["ref_instructions"] == 500
    fastest = min([c[1] for c in cold_calls] + [row["cold_seconds"]])
    assert row["cold_seconds"] == fastest
    assert row["warm_ratio"] == row["warm_mips"] / row["ref_mips"]
