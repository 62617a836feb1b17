"""The boot benchmark's console-rate reader (tests/bench/rvkvm_boot.py)."""

from __future__ import annotations

import io

from tests.bench.rvkvm_boot import Timed, console_command


def timed(chunks):
    t = Timed(io.BytesIO(b""))
    t.join()
    t.chunks = list(chunks)
    return t


def test_rate_counts_bytes_after_the_first_chunk_up_to_the_end_marker():
    t = timed([(10.0, b"boot log\nrvkvm-run: begin\n"), (11.0, b"x" * 100),
               (12.0, b"y" * 50), (14.0, b"z" * 50 + b"rvkvm-run: status 0\n")])
    n, rate = t.rate(b"rvkvm-run: begin", b"rvkvm-run: status")
    assert n == 200 and rate == 200 / 4.0


def test_rate_without_a_begin_marker_starts_at_the_first_chunk():
    t = timed([(1.0, b"a" * 10), (2.0, b"b" * 30), (3.0, b"c" * 30)])
    n, rate = t.rate(b"", b"rvkvm-run: status")
    assert n == 60 and rate == 30.0


def test_rate_finds_an_end_marker_split_between_chunks():
    t = timed([(0.0, b"go"), (1.0, b"x" * 8 + b"rvkvm-r"), (2.0, b"un: status 0\n")])
    n, rate = t.rate(b"", b"rvkvm-run: status")
    assert n == 8 and rate == 4.0


def test_output_in_one_piece_has_no_rate():
    assert timed([(0.0, b"rvkvm-run: begin\nxxx\nrvkvm-run: status 0\n")]).rate(
        b"rvkvm-run: begin", b"rvkvm-run: status") is None
    assert timed([(0.0, b"abc")]).rate(b"", b"end") is None


def test_console_command():
    assert console_command(0) == "true"
    assert console_command(1000).endswith("| head -c 1000")
