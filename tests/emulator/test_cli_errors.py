"""``python -m rvkvm.emulator``'s command line: its own usage for unknown options,
``--version``, and one line ``python -m rvkvm.emulator: error: ...`` for an
unexpected exception (the traceback only with RVKVM_DEBUG=1)."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from rvkvm.emulator import cli
from rvkvm.emulator.cmdline import guarded

ROOT = Path(__file__).resolve().parents[2]
HELLO = ROOT / "emulator" / "guests" / "hello.elf"


def emulator(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rvkvm.emulator", *args], cwd=ROOT, timeout=60,
                          capture_output=True, text=True)


def test_unknown_options_show_runs_usage() -> None:
    r = emulator("run", "--bogus", str(HELLO))
    assert r.returncode == 2
    assert r.stderr.startswith("usage: python -m rvkvm.emulator run ")
    assert r.stderr.splitlines()[-1] == (
        "python -m rvkvm.emulator run: error: unrecognized arguments: --bogus")


@pytest.mark.parametrize("value", ["0", "-5", "many"])
def test_max_insns_must_be_positive(capsys: pytest.CaptureFixture, value: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["run", "--max-insns", value, str(HELLO)])
    assert exit_.value.code == 2
    assert "argument --max-insns" in capsys.readouterr().err.splitlines()[-1]


def test_engines_are_fast_and_reference() -> None:
    r = emulator("run", "--engine", "interp", str(HELLO))
    assert r.returncode == 2
    assert "invalid choice: 'interp' (choose from 'fast', 'reference')" in r.stderr


def test_version() -> None:
    r = emulator("--version")
    assert r.returncode == 0 and r.stdout == f"python -m rvkvm.emulator {metadata.version('rvkvm')}\n"


def test_unexpected_errors_are_one_line(capsys: pytest.CaptureFixture,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise MemoryError("mmap\nfailed")

    monkeypatch.setattr(cli, "Machine", broken)
    monkeypatch.delenv("RVKVM_DEBUG", raising=False)
    assert cli.main(["run", str(HELLO)]) == 1
    assert capsys.readouterr().err == "python -m rvkvm.emulator: error: MemoryError: mmap failed\n"
    assert cli.main(["--debug", "run", str(HELLO)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and err.endswith("MemoryError: mmap failed\n")


def test_ctrl_c_is_status_130() -> None:
    def interrupted() -> int:
        raise KeyboardInterrupt

    assert guarded("prog", interrupted) == 130
