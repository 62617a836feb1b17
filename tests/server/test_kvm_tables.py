"""Extension tables against the reference tables (kvm-riscv-uapi.md sections 8, 9)."""

from __future__ import annotations

import itertools

import pytest

from rvkvm.server.kvm import HostProfile, make_id, platform
from rvkvm.server.kvm.conditions import ALWAYS, NEVER, holds
from rvkvm.server.kvm.isa_ext import ISA_EXTS
from rvkvm.server.kvm.profiles import KERNEL_PROFILES, kernel_profile
from rvkvm.server.kvm.sbi_ext import (
    FORWARDED,
    FWFT_BY_ID,
    FWFT_FEATURES,
    IN_KERNEL,
    PARTLY_FORWARDED,
    SBI_EXTS,
    SYSTEM_EVENT,
)
from rvkvm.uapi.onereg import RegType
from tests.server.kvm_helpers import load_data, rich_host

ISA_ROWS = load_data("isa_ext_ids.json")["rows"]
SBI_ROWS = load_data("sbi_ext_ids.json")["rows"]

# The reference's "enable allowed"/"disable allowed" wording as conditions.
ENABLE_TEXT = {
    "yes": ALWAYS,
    "never": NEVER,
    "only if host has Ssaia": ("host:ssaia",),
    "only if host A/D hw update usable (arch_has_hw_pte_young)": ("host:hw_pte_ad",),
    "only if kernel allows user V state (riscv_v_vstate_ctrl_user_allowed)": ("host:user_vector",),
}
DISABLE_TEXT = {
    "yes": ALWAYS,
    "no": NEVER,
    "only if host has Smstateen": ("host:smstateen",),
    "only if arch_has_hw_pte_young": ("host:hw_pte_ad",),
}
HOSTS = [
    HostProfile.default(),
    rich_host(),
    HostProfile.default().without("svadu"),
    HostProfile.default().plus("ssaia"),
    HostProfile.default().plus("v", "smstateen"),
]


def test_isa_table_matches_reference_ids_and_names():
    assert [(r.kvm_id, r.name) for r in ISA_EXTS] == [(r["id"], r["name"]) for r in ISA_ROWS]
    for row, ref in zip(ISA_EXTS, ISA_ROWS):
        assert make_id(RegType.ISA_EXT, row.kvm_id) == int(ref["onereg_id"], 16)
        assert row.host == ref["host"].split()[-1].strip("*").lower()


@pytest.mark.parametrize("host", HOSTS)
def test_isa_enable_disable_rules_match_reference(host):
    # The reference describes the newest tree: evaluate under "latest".
    plat = platform("latest", host)

    def fact(atom):
        return host.has(atom.partition(":")[2])

    for row, ref in zip(ISA_EXTS, ISA_ROWS):
        assert plat.may_enable(row) == holds(ENABLE_TEXT[ref["enable"]], fact), row.name
        assert plat.may_disable(row) == holds(DISABLE_TEXT[ref["disable"]], fact), row.name


def test_sixty_four_extensions_can_never_be_disabled():
    # uapi section 8: "Disable is refused for the 64 extensions marked no".
    assert sum(1 for ref in ISA_ROWS if ref["disable"] == "no") == 64
    assert sum(1 for row in ISA_EXTS if row.disable == NEVER) == 64


def test_single_letters():
    assert {r.letter for r in ISA_EXTS if r.letter} == set("acdfhimv")


def test_sbi_table_matches_reference():
    assert [(r.kvm_id, r.name) for r in SBI_EXTS] == [(r["id"], r["name"]) for r in SBI_ROWS]
    handled = {"in-kernel": IN_KERNEL, "forwarded": FORWARDED, "system-event exit": SYSTEM_EVENT}
    for row, ref in zip(SBI_EXTS, SBI_ROWS):
        assert make_id(RegType.SBI_EXT, row.kvm_id) == int(ref["onereg_id"], 16)
        assert row.default_enabled == ref["default"].startswith("on")
        assert row.handling == handled.get(ref["handled"], PARTLY_FORWARDED), row.name
        first_eid = int(ref["eids"].replace("–", " ").split()[0], 16)
        assert row.covers(first_eid)
        assert (row.available == ALWAYS) == (ref["default"] in ("on", "off")), row.name


def test_fwft_feature_table():
    assert sorted(FWFT_BY_ID) == [0, 1, 2, 3, 4, 5]  # every feature SBI v3.0 defines
    implemented = {f.onereg: f.first_reg() for f in FWFT_FEATURES if f.slot is not None}
    assert implemented == {"misaligned_deleg": 0, "pointer_masking": 3, "pte_ad_hw_updating": 6}
    pmlen = FWFT_BY_ID[5]
    assert [e.value for e in pmlen.encodings] == [0, 7, 16]
    assert [e.bits for e in pmlen.encodings] == [0, 0x200000000, 0x300000000]


def test_kernel_profiles():
    assert set(KERNEL_PROFILES) == {"linux-6.13", "linux-6.18", "latest"}
    assert kernel_profile().name == "latest"
    k613, k618, latest = (kernel_profile(n) for n in ("linux-6.13", "linux-6.18", "latest"))
    assert [k.isa_ext_max for k in (k613, k618, latest)] == [66, 75, 78]
    assert [k.sbi_ext_max for k in (k613, k618, latest)] == [11, 13, 14]
    assert k613.sbi_spec_version_value == 0x02000000
    assert k618.sbi_spec_version_value == latest.sbi_spec_version_value == 0x03000000
    assert k618.sbi_impl_version == 0x061200
    assert [k.isa_multi_reg_last for k in (k613, k618, latest)] == [1, 1, 1]
    assert [k.sbi_multi_reg_last for k in (k613, k618, latest)] == [0, 0, 0]
    assert [len(platform(k.name).fwft_features()) for k in (k613, k618, latest)] == [0, 2, 3]
    with pytest.raises(ValueError):
        kernel_profile("linux-2.6")


def test_host_profile_edits():
    host = HostProfile.default()
    assert host.has("ssnpm") and host.has("hw_pte_ad") and not host.has("user_vector")
    assert not host.without("ssnpm").has("ssnpm")
    assert not host.without("svadu").has("hw_pte_ad")  # derived from Svadu
    assert host.plus("v").has("user_vector")
    with pytest.raises(ValueError):
        host.without("zfh")
    with pytest.raises(ValueError):
        host.plus("not-an-extension")


def test_default_host_isa():
    host = HostProfile.default()
    for ext in ("i", "m", "a", "f", "d", "c", "zicsr", "zifencei", "zicntr", "zihintpause",
                "zba", "zbb", "zbc", "zbs", "zicond", "zicbom", "zicboz", "zawrs", "svpbmt",
                "svnapot", "svinval", "svadu", "sstc", "smnpm", "ssnpm"):
        assert host.has(ext), ext
    for ext in ("v", "h", "ssaia", "smstateen", "svade"):
        assert not host.has(ext), ext


@pytest.mark.parametrize("kernel,host", list(itertools.product(KERNEL_PROFILES, HOSTS)))
def test_default_vcpu_isa(kernel, host):
    # vCPU ISA at creation: host-present extensions whose enable is allowed.
    plat = platform(kernel, host)
    config = plat.new_vcpu_config()
    for row in ISA_EXTS:
        expected = (row.kvm_id < plat.kernel.isa_ext_max and host.has(row.host)
                    and plat.may_enable(row))
        assert (row.kvm_id in config.isa) == expected, row.name
