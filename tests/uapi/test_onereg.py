"""ONE_REG id encoding and register names (kvm-riscv-uapi.md section 6)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rvkvm.uapi.onereg import (
    _CATALOGUE,
    KVM_REG_RISCV,
    CsrSubtype,
    ExtSubtype,
    RegId,
    RegType,
    SbiStateSubtype,
    Size,
    decode_id,
    make_id,
    name_of,
    parse_name,
    reg_size,
    short_name,
)
from tests.server.kvm_helpers import hex_ids, load_data

u64 = st.integers(min_value=0, max_value=(1 << 64) - 1)
fields = st.builds(
    RegId,
    reg_type=st.integers(0, 0xFF),
    index=st.integers(0, 0xFFFF),
    subtype=st.integers(0, 0xFF),
    size_code=st.integers(0, 0xF),
    reserved=st.integers(0, 0xFFFFF),
    arch=st.integers(0, 0xFF),
)
named_keys = st.sampled_from(sorted(_CATALOGUE))

# Short names for the reference's worked examples (our own vocabulary).
EXAMPLE_SHORT_NAMES = {
    "CORE `regs.pc`": "core pc",
    "CORE `regs.a0`": "core a0",
    "CORE `mode`": "core mode",
    "CSR general `sstatus`": "csr sstatus",
    "CSR AIA `siselect`": "csr siselect",
    "CSR SMSTATEEN `sstateen0`": "csr sstateen0",
    "CONFIG `isa`": "config isa",
    "TIMER `frequency`": "timer frequency",
    "ISA_EXT single SMNPM": "isa_ext SMNPM",
    "ISA_EXT MULTI_EN word 1 (ext ids 64–127)": "isa_ext multi_en 1",
    "SBI_EXT single FWFT": "sbi_ext FWFT",
    "SBI_STATE FWFT `pointer_masking.value`": "fwft pointer_masking.value",
    "FP_F `f[0]`": "fp_f f0",
    "FP_D `fcsr`": "fp_d fcsr",
    "VECTOR `vlenb`": "vector vlenb",
    "VECTOR `v0`, VLEN=128 (vlenb 16)": "vector v0",
    "VECTOR `v0`, VLEN=256 (vlenb 32)": "vector v0@u256",
    "rv32 CORE `regs.pc`": "core pc@u32",
}


@pytest.mark.parametrize("example", load_data("onereg_id_examples.json")["examples"],
                         ids=lambda e: e["register"])
def test_reference_examples_parse_and_print(example):
    reg_id = int(example["id"], 16)
    short = EXAMPLE_SHORT_NAMES[example["register"]]
    assert parse_name(short) == reg_id
    assert short_name(reg_id) == short


def test_field_encoding():
    assert KVM_REG_RISCV == 0x8000000000000000
    assert make_id(RegType.CORE, 0) == 0x8030000002000000
    assert make_id(RegType.CSR, 0, CsrSubtype.AIA) == 0x8030000003010000
    assert make_id(RegType.FP_D, 32, size_code=Size.U32) == 0x8020000006000020
    assert make_id(RegType.ISA_EXT, 1, ExtSubtype.MULTI_EN) == 0x8030000007010001
    assert make_id(RegType.SBI_STATE, 5, SbiStateSubtype.FWFT) == 0x803000000A010005
    rid = decode_id(0x8050000009000006)
    assert (rid.reg_type, rid.index, rid.size_code, rid.size) == (RegType.VECTOR, 6, Size.U256, 32)
    assert reg_size(0x8020000005000000) == 4
    assert reg_size(0x8040000009000006) == 16


def test_register_number_includes_unused_bits():
    # Bits 51..32 and, for classes without subtypes, the subtype byte land in
    # KVM's register number, which is how such ids end up ENOENT.
    rid = decode_id(make_id(RegType.CORE, 1, subtype=2, reserved=1))
    assert rid.number == (1 << 32) | (2 << 16) | 1
    rid = decode_id(make_id(RegType.CSR, 1, subtype=2, reserved=1))
    assert (rid.subtype, rid.number) == (2, (1 << 32) | 1)


@pytest.mark.parametrize("bad", [
    dict(reg_type=0x100, index=0), dict(reg_type=1, index=0x10000),
    dict(reg_type=1, index=0, subtype=-1), dict(reg_type=1, index=0, size_code=16),
])
def test_make_id_rejects_out_of_range_fields(bad):
    with pytest.raises(ValueError):
        make_id(**bad)


def test_decode_rejects_non_u64():
    with pytest.raises(ValueError):
        decode_id(1 << 64)
    with pytest.raises(ValueError):
        decode_id(-1)


@given(fields)
def test_fields_round_trip(rid):
    assert decode_id(rid.raw) == rid
    assert make_id(rid.reg_type, rid.index, rid.subtype, rid.size_code,
                   reserved=rid.reserved, arch=rid.arch) == rid.raw


@given(u64)
def test_id_round_trip(reg_id):
    assert decode_id(reg_id).raw == reg_id
    assert reg_size(reg_id) == decode_id(reg_id).size


@given(u64)
def test_short_name_round_trip_any_id(reg_id):
    assert parse_name(short_name(reg_id)) == reg_id


@given(named_keys, st.integers(0, 0xF))
def test_short_name_round_trip_named(key, size_code):
    reg_type, subtype, index = key
    reg_id = make_id(reg_type, index, subtype, size_code)
    name = short_name(reg_id)
    assert not name.startswith("0x")
    assert parse_name(name) == reg_id


@given(named_keys, st.sampled_from([Size.U32, Size.U64, Size.U128, Size.U256]))
def test_linux_name_round_trip(key, size_code):
    reg_type, subtype, index = key
    reg_id = make_id(reg_type, index, subtype, size_code)
    assert parse_name(name_of(reg_id)) == reg_id
    assert parse_name("\t" + name_of(reg_id) + ",") == reg_id  # as the selftest prints it


@given(u64)
def test_linux_name_never_fails(reg_id):
    assert name_of(reg_id)


@pytest.mark.parametrize("reg_id,name", [
    # print_reg() output, from tools/testing/selftests/kvm/riscv/get-reg-list.c
    (0x8030000002000000,
     "KVM_REG_RISCV | KVM_REG_SIZE_U64 | KVM_REG_RISCV_CORE | KVM_REG_RISCV_CORE_REG(regs.pc)"),
    (0x8030000002000012,
     "KVM_REG_RISCV | KVM_REG_SIZE_U64 | KVM_REG_RISCV_CORE | KVM_REG_RISCV_CORE_REG(regs.s2)"),
    (0x8030000002000020,
     "KVM_REG_RISCV | KVM_REG_SIZE_U64 | KVM_REG_RISCV_CORE | KVM_REG_RISCV_CORE_REG(mode)"),
    (0x8030000001000007, "KVM_REG_RISCV | KVM_REG_SIZE_U64 | KVM_REG_RISCV_CONFIG | "
     "KVM_REG_RISCV_CONFIG_REG(zicbop_block_size)"),
    (0x803000000300000A, "KVM_REG_RISCV | KVM_REG_SIZE_U64 | KVM_REG_RISCV_CSR | "
     "KVM_REG_RISCV_CSR_GENERAL | KVM_REG_RISCV_CSR_REG(senvcfg)"),
    (0x8030000003010006, "KVM_REG_RISCV | KVM_REG_SIZE_U64 | KVM_REG_RISCV_CSR | "
     "KVM_REG_RISCV_CSR_AIA | KVM_REG_RISCV_CSR_REG(iprio2h)"),
    (0x8030000003020000, "KVM_REG_RISCV | KVM_REG_SIZE_U64 | KVM_REG_RISCV_CSR | "
     "KVM_REG_RISCV_CSR_SMSTATEEN | KVM_REG_RISCV_CSR_REG(sstateen0)"),
    (0x8030000004000003,
     "KVM_REG_RISCV | KVM_REG_SIZE_U64 | KVM_REG_RISCV_TIMER | KVM_REG_RISCV_TIMER_REG(state)"),
    (0x802000000500001F,
     "KVM_REG_RISCV | KVM_REG_SIZE_U32 | KVM_REG_RISCV_FP_F | KVM_REG_RISCV_FP_F_REG(f[31])"),
    (0x8020000006000020,
     "KVM_REG_RISCV | KVM_REG_SIZE_U32 | KVM_REG_RISCV_FP_D | KVM_REG_RISCV_FP_D_REG(fcsr)"),
    (0x8040000009000025,
     "KVM_REG_RISCV | KVM_REG_SIZE_U128 | KVM_REG_RISCV_VECTOR | KVM_REG_RISCV_VECTOR_REG(31)"),
    (0x8030000009000004, "KVM_REG_RISCV | KVM_REG_SIZE_U64 | KVM_REG_RISCV_VECTOR | "
     "KVM_REG_RISCV_VECTOR_CSR_REG(vlenb)"),
    (0x803000000700003E, "KVM_REG_RISCV | KVM_REG_SIZE_U64 | KVM_REG_RISCV_ISA_EXT | "
     "KVM_REG_RISCV_ISA_SINGLE | KVM_RISCV_ISA_EXT_SMNPM"),
    (0x8030000007020001, "KVM_REG_RISCV | KVM_REG_SIZE_U64 | KVM_REG_RISCV_ISA_EXT | "
     "KVM_REG_RISCV_ISA_MULTI_DIS | 1"),
    (0x8030000007010002, "KVM_REG_RISCV | KVM_REG_SIZE_U64 | KVM_REG_RISCV_ISA_EXT | "
     "KVM_REG_RISCV_ISA_MULTI_EN | 2 /* UNKNOWN */"),
    (0x803000000700004E, "KVM_REG_RISCV | KVM_REG_SIZE_U64 | KVM_REG_RISCV_ISA_EXT | "
     "KVM_REG_RISCV_ISA_SINGLE | 78 /* UNKNOWN */"),
    (0x803000000800000C, "KVM_REG_RISCV | KVM_REG_SIZE_U64 | KVM_REG_RISCV_SBI_EXT | "
     "KVM_REG_RISCV_SBI_SINGLE | KVM_RISCV_SBI_EXT_FWFT"),
    (0x803000000A000000, "KVM_REG_RISCV | KVM_REG_SIZE_U64 | KVM_REG_RISCV_SBI_STATE | "
     "KVM_REG_RISCV_SBI_STA | KVM_REG_RISCV_SBI_STA_REG(shmem_lo)"),
    (0x803000000A010005, "KVM_REG_RISCV | KVM_REG_SIZE_U64 | KVM_REG_RISCV_SBI_STATE | "
     "KVM_REG_RISCV_SBI_FWFT | KVM_REG_RISCV_SBI_FWFT_REG(pointer_masking.value)"),
    (0x8030000009000005,
     "KVM_REG_RISCV | KVM_REG_SIZE_U64 | KVM_REG_RISCV_VECTOR | 5 /* UNKNOWN */"),
    (0x8030000003050007,
     "KVM_REG_RISCV | KVM_REG_SIZE_U64 | KVM_REG_RISCV_CSR | 327680 | 7 /* UNKNOWN */"),
    (0x8030000011000000, "KVM_REG_RISCV | KVM_REG_SIZE_U64 | 0x11000000 /* UNKNOWN */"),
    (0x8070000002000000,
     "KVM_REG_RISCV | (7 << KVM_REG_SIZE_SHIFT) | 0x2000000 /* UNKNOWN */"),
])
def test_linux_names(reg_id, name):
    assert name_of(reg_id) == name


def test_blessed_lists_have_linux_names():
    sublists = load_data("get_reg_list_sublists.json")["sublists"]
    # FWFT idx 9-14 (landing_pad, shadow_stack) are only in the unmerged CFI series
    sublists["sbi_fwft_regs"] = sublists["sbi_fwft_regs"][:10]
    for ids in sublists.values():
        for reg_id in hex_ids(ids):
            assert "UNKNOWN" not in name_of(reg_id)
            assert not short_name(reg_id).startswith("0x")


@pytest.mark.parametrize("name", [
    "core pc", "CORE PC", "isa_ext smnpm", "sbi_ext fwft", "fwft POINTER_MASKING.enable",
])
def test_short_names_are_case_insensitive(name):
    assert parse_name(name)


@pytest.mark.parametrize("name", [
    "core", "core x99", "nonsense pc", "vector v0@u24", "KVM_REG_RISCV | nonsense",
    "isa_ext multi_en", "fwft pointer_masking.bogus",
])
def test_bad_names(name):
    with pytest.raises(ValueError):
        parse_name(name)
