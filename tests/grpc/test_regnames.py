"""The client's register names agree with the server's for every named id."""

from __future__ import annotations

import pytest

from client import regnames as R
from server.kvm import regid
from server.kvm.isa_ext import ISA_EXTS
from server.kvm.sbi_ext import FWFT_FEATURES, SBI_EXTS

IDS = [regid.make_id(t, i, sub, code)
       for (t, sub, i) in regid._CATALOGUE for code in (2, 3, 4)]


def test_tables_are_the_servers():
    assert R.ISA_EXT_NAMES == [row.name for row in ISA_EXTS]
    assert R.SBI_EXT_NAMES == [row.name for row in SBI_EXTS]
    by_slot = sorted((f.slot, f.onereg) for f in FWFT_FEATURES if f.slot is not None)
    assert list(R.FWFT_MEMBERS) == [name for _, name in by_slot]


@pytest.mark.parametrize("reg_id", IDS[::7] + [regid.parse_name("isa_ext multi_en 1"),
                                               0x1234, regid.parse_name("core pc@u32")])
def test_short_names_round_trip(reg_id):
    name = regid.short_name(reg_id)
    assert R.short_name(reg_id) == name
    assert R.parse_name(name) == reg_id


def test_every_named_register():
    for reg_id in IDS:
        assert R.parse_name(regid.short_name(reg_id)) == reg_id


def test_unknown_names_are_value_errors():
    for bad in ("core nope", "csr", "core pc@u12", "frob pc"):
        with pytest.raises(ValueError):
            R.parse_name(bad)
