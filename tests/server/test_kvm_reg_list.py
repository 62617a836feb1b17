"""KVM_GET_REG_LIST order and contents (kvm-riscv-uapi.md section 10,
kvm-riscv-get-reg-list.md section 7)."""

from __future__ import annotations

import errno

import pytest

from rvkvm.server.kvm import HostProfile, KvmError, copy_reg_list, make_id, parse_name, reg_list
from rvkvm.server.kvm.isa_ext import ISA_EXTS
from rvkvm.uapi.onereg import RegType, Size
from tests.server.kvm_helpers import hex_ids, load_data, new_vcpu, rich_host

SUBLISTS = load_data("get_reg_list_sublists.json")["sublists"]


def ids_of(name):
    return hex_ids(SUBLISTS[name])


def isa_singles(names):
    by_name = {row.name: row.kvm_id for row in ISA_EXTS}
    return [make_id(RegType.ISA_EXT, i) for i in sorted(by_name[n] for n in names)]


DEFAULT_HOST_ISA_IDS = [
    "A", "C", "D", "F", "I", "M", "SVPBMT", "SSTC", "SVINVAL", "ZIHINTPAUSE", "ZICBOM",
    "ZICBOZ", "ZBB", "SVNAPOT", "ZBA", "ZBS", "ZICNTR", "ZICSR", "ZIFENCEI", "ZICOND",
    "ZBC", "ZCA", "ZCD", "ZAWRS", "SMNPM", "SSNPM", "SVADU", "ZAAMO", "ZALRSC", "ZICBOP",
]


def test_default_vcpu_list_in_linux_order():
    # The worked example of kvm-riscv-get-reg-list.md section 7, for our host.
    vcpu = new_vcpu()
    expected = (
        ids_of("base_regs")[:52]  # CONFIG 0-7, CORE 0-32, CSR GENERAL 0-10
        + ids_of("base_regs")[52:56]  # TIMER
        + ids_of("fp_f_regs")[:33]
        + ids_of("fp_d_regs")[:33]
        + isa_singles(DEFAULT_HOST_ISA_IDS)
        + [make_id(RegType.SBI_EXT, i) for i in (0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13)]
        + ids_of("sbi_sta_regs")[1:]
        + ids_of("sbi_fwft_regs")[1:7]
    )
    assert vcpu.get_reg_list() == expected
    assert len(expected) == 8 + 33 + 11 + 4 + 33 + 33 + 30 + 13 + 2 + 6


def test_rich_vcpu_list_blocks_in_order():
    vcpu = new_vcpu("latest", rich_host())
    regs = vcpu.get_reg_list()
    types = [(r >> 24) & 0xFF for r in regs]
    assert types == sorted(types, key=[1, 2, 3, 4, 5, 6, 9, 7, 8, 10].index)
    csr = [r for r in regs if (r >> 24) & 0xFF == RegType.CSR]
    assert csr == ids_of("base_regs")[41:52] + ids_of("aia_regs")[:7] + ids_of("smstateen_regs")[:1]
    vector = [r for r in regs if (r >> 24) & 0xFF == RegType.VECTOR]
    assert vector == ids_of("vector_regs")[:37]
    state = [r for r in regs if (r >> 24) & 0xFF == RegType.SBI_STATE]
    # STA before FWFT; FWFT by register index, pte_ad (Svade+Svadu) included
    assert state == ids_of("sbi_sta_regs")[1:] + ids_of("sbi_fwft_regs")[1:10]
    assert make_id(RegType.SBI_EXT, 6) in regs  # PMU available on this host


def test_vector_register_size_follows_vlenb():
    host = rich_host()
    from dataclasses import replace
    vcpu = new_vcpu("latest", replace(host, vlenb=32))
    assert make_id(RegType.VECTOR, 6, size_code=Size.U256) in vcpu.get_reg_list()


def test_list_follows_the_current_configuration():
    vcpu = new_vcpu()
    before = vcpu.get_reg_list()
    vcpu.set_value(parse_name("isa_ext D"), 0)
    vcpu.set_value(parse_name("sbi_ext STA"), 0)
    vcpu.set_value(parse_name("sbi_ext DBCN"), 1)
    after = vcpu.get_reg_list()
    removed = set(before) - set(after)
    assert removed == set(ids_of("fp_d_regs")[:33]) | set(ids_of("sbi_sta_regs")[1:])
    assert set(after) <= set(before)  # disabled extensions keep their ISA/SBI_EXT registers


def test_linux_6_13_list():
    vcpu = new_vcpu("linux-6.13")
    regs = vcpu.get_reg_list()
    config = [r for r in regs if (r >> 24) & 0xFF == RegType.CONFIG]
    assert config == ids_of("base_regs")[:7]
    assert max(r & 0xFFFF for r in regs if (r >> 24) & 0xFF == RegType.ISA_EXT) == 65
    assert [r & 0xFFFF for r in regs if (r >> 24) & 0xFF == RegType.SBI_EXT] == [
        0, 1, 2, 3, 4, 5, 7, 8, 9, 10]
    assert [r for r in regs if (r >> 24) & 0xFF == RegType.SBI_STATE] == ids_of("sbi_sta_regs")[1:]
    vcpu.set_value(parse_name("isa_ext ZICBOZ"), 0)
    assert parse_name("config zicboz_block_size") not in vcpu.get_reg_list()


def test_block_size_registers_follow_the_host():
    vcpu = new_vcpu("latest", HostProfile.default().without("zicbom", "zicbop"))
    config = [r for r in vcpu.get_reg_list() if (r >> 24) & 0xFF == RegType.CONFIG]
    assert config == [ids_of("base_regs")[i] for i in (0, 2, 3, 4, 5, 6)]


def test_reg_list_function_matches_the_vcpu():
    vcpu = new_vcpu("linux-6.18")
    assert reg_list(vcpu.kernel, vcpu.host, vcpu.config) == vcpu.get_reg_list()


def test_every_listed_register_can_be_read_and_written_back():
    for kernel in ("linux-6.13", "linux-6.18", "latest"):
        for host in (HostProfile.default(), rich_host()):
            vcpu = new_vcpu(kernel, host)
            for reg in vcpu.get_reg_list():
                data = vcpu.get_one_reg(reg)
                if reg != parse_name("timer state"):
                    vcpu.set_one_reg(reg, data)


def test_copy_reg_list_e2big():
    ids = new_vcpu().get_reg_list()
    assert copy_reg_list(len(ids), ids) == ids
    assert copy_reg_list(len(ids) + 5, ids) == ids
    with pytest.raises(KvmError) as info:
        copy_reg_list(len(ids) - 1, ids)
    assert info.value.errno == errno.E2BIG
    assert info.value.count == len(ids)
    with pytest.raises(KvmError) as info:
        copy_reg_list(0, ids)
    assert info.value.count == len(ids)
