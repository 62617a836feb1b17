"""The guest clock rate is a setting of the server (``ns_per_insn``): every
VM it creates keeps time at that rate, and ``rvkvm-server --ns-per-insn``
parses it as a positive fraction."""

from __future__ import annotations

import argparse
from fractions import Fraction

import pytest

from rvkvm.server.__main__ import _ns_per_insn, _parse
from rvkvm.server.kvm.system import KvmSystem


def test_new_vms_take_the_systems_rate():
    assert KvmSystem().create_vm().ns_per_insn is None
    vm = KvmSystem(ns_per_insn=Fraction(1, 4)).create_vm()
    assert vm.ns_per_insn == Fraction(1, 4)


def test_the_flag_is_a_positive_fraction():
    assert _parse(["--ns-per-insn", "1/4"]).ns_per_insn == Fraction(1, 4)
    assert _parse([]).ns_per_insn is None
    for bad in ("0", "-1", "fast", "1/0"):
        with pytest.raises(argparse.ArgumentTypeError):
            _ns_per_insn(bad)
