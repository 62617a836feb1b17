"""The emulator on PyPy, where translated code keeps its registers in
signed form and wraps through ``__pypy__.intop`` (CPython tests run the
same flavour on plain-Python stand-ins): the committed guests pass with the
instruction counts CPython retires, and the signed-flavour grid programs
match the reference engine.

Needs ``pypy3`` (Debian's package; ``.ci/run`` installs it and sets
RVKVM_REQUIRE_PYPY=1, so in CI a missing PyPy fails instead of skipping).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from rvkvm.bootstrap import python_command
from rvkvm.emulator.bench import pypy_site

from .test_guests import BENCH_GUESTS, FEATURE_GUESTS, HELLO, ROOT, run_guest

DRIVER = r"""
import json, sys
import rvkvm.emulator.translator as tr
from rvkvm.emulator.machine import Machine
from tests.emulator.signed_grid import all_programs, check, small_grid

import rvkvm.emulator.pypy as pp
assert tr.SIGNED_LOCALS, "PyPy must use the signed flavour"
assert pp.opaque_call is not None, "PyPy must dispatch blocks opaquely"
assert pp.tune_pypy_jit(), "a worker's JIT parameters must apply on PyPy"
import __pypy__

def big(v):  # a big-integer object holding a value that fits a machine word
    return -(1 << 63) <= v < (1 << 63) and "Long" in __pypy__.internal_repr(v)

guests = {}
big_tlb = []
for path in sys.argv[1:]:
    m = Machine(engine="fast", out=lambda b: None)
    with open(path, "rb") as f:
        m.load(f.read())
    guests[path] = [m.run(300_000_000), m.exit_code, m.instret]
    for h in m.harts:
        for ctx in h._ctxs.values():
            for tlb in (ctx.rt, ctx.wt, ctx.xt):
                big_tlb += [f"{path}: {key:#x}" for key, e in tlb.items()
                            if big(key) or big(e[1]) or big(e[-1])]
failures = []
cases = [(name, prog, 1 << 30) for name, prog in sorted(all_programs().items())]
cases += [(f"small grid, budget {b}", small_grid(), b) for b in (5, 64, 1000)]
for name, prog, budget in cases:
    try:
        check(prog, budget)
    except AssertionError as exc:
        failures.append(f"{name}: {exc}")
print(json.dumps({"guests": guests, "grid": len(cases), "failures": failures,
                  "big_tlb": big_tlb}))
"""


@pytest.fixture(scope="module")
def pypy_results() -> dict:
    pypy = shutil.which("pypy3")
    if pypy is None:
        if os.environ.get("RVKVM_REQUIRE_PYPY"):
            pytest.fail("pypy3 is required here (RVKVM_REQUIRE_PYPY) but not installed")
        pytest.skip("pypy3 not installed (apt install pypy3; CI installs it)")
    site = pypy_site()
    assert site is not None, "could not install pyelftools for PyPy"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), site]))
    paths = [str(p) for p in FEATURE_GUESTS + BENCH_GUESTS + [HELLO]]
    proc = subprocess.run(python_command(pypy, DRIVER, paths), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_guests_pass_on_pypy(pypy_results: dict) -> None:
    guests = pypy_results["guests"]
    assert len(guests) == len(FEATURE_GUESTS) + len(BENCH_GUESTS) + 1
    for path, (outcome, code, _) in guests.items():
        assert (outcome, code) == ("exit", 0), Path(path).name


@pytest.mark.parametrize("path", FEATURE_GUESTS, ids=lambda p: p.stem)
def test_pypy_retires_what_cpython_retires(path: Path, pypy_results: dict) -> None:
    assert pypy_results["guests"][str(path)][2] == run_guest(path, "fast")[3]


def test_signed_grid_on_pypy(pypy_results: dict) -> None:
    assert pypy_results["grid"] > 60
    assert pypy_results["failures"] == []


def test_pypy_tlb_entries_are_machine_words(pypy_results: dict) -> None:
    # keys and deltas made from big-integer objects (unsigned addresses the
    # first tier masked with & M64) would make every access through them
    # add big integers in the JIT's code (emulator.pypy.as_word)
    assert pypy_results["big_tlb"] == []


def test_pypy_paths_stay_off_on_cpython() -> None:
    # CPython keeps its plain calls and sets no JIT parameters
    import rvkvm.emulator.pypy as pp

    assert pp.opaque_call is None and pp.tune_pypy_jit() is False and pp.as_word is None
