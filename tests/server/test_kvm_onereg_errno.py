"""KVM_GET/SET_ONE_REG rules and errnos, class by class.

Facts: kvm-riscv-uapi.md sections 6-9, checked against arch/riscv/kvm/
vcpu_onereg.c, vcpu_fp.c, vcpu_timer.c, vcpu_sbi.c, vcpu_sbi_fwft.c.
"""

from __future__ import annotations

import errno

import pytest

from rvkvm.server.kvm import ENOTSUPP, HostProfile, KvmError, make_id, parse_name
from rvkvm.server.kvm.sbi_ext import ENVCFG_ADUE, ENVCFG_PMM, HEDELEG_MISALIGNED
from rvkvm.uapi.onereg import CsrSubtype, ExtSubtype, RegType, Size
from tests.server.kvm_helpers import new_vcpu, rich_host

U64 = (1 << 64) - 1


def errno_of(fn, *args):
    with pytest.raises(KvmError) as info:
        fn(*args)
    return info.value.errno


def get_errno(vcpu, reg):
    return errno_of(vcpu.get_value, parse_name(reg) if isinstance(reg, str) else reg)


def set_errno(vcpu, reg, value):
    return errno_of(vcpu.set_value, parse_name(reg) if isinstance(reg, str) else reg, value)


def get(vcpu, name):
    return vcpu.get_value(parse_name(name))


def put(vcpu, name, value):
    vcpu.set_value(parse_name(name), value)


def with_size(name, size_code):
    reg = parse_name(name)
    return (reg & ~(0xF << 52)) | (size_code << 52)


# -- dispatch --------------------------------------------------------------

@pytest.mark.parametrize("reg_type", [0, 11, 0x42, 0xFF])
def test_unknown_type_is_enoent(reg_type):
    vcpu = new_vcpu()
    assert get_errno(vcpu, make_id(reg_type, 0)) == errno.ENOENT
    assert set_errno(vcpu, make_id(reg_type, 0), 0) == errno.ENOENT


def test_arch_byte_is_ignored_like_linux():
    vcpu = new_vcpu()
    put(vcpu, "core a0", 0x1234)
    assert vcpu.get_value(make_id(RegType.CORE, 10, arch=0)) == 0x1234


def test_value_buffer_of_wrong_length_is_efault():
    vcpu = new_vcpu()
    assert errno_of(vcpu.set_one_reg, parse_name("core pc"), b"\0" * 4) == errno.EFAULT


@pytest.mark.parametrize("name", ["config isa", "core pc", "csr sstatus", "isa_ext A",
                                  "sbi_ext TIME", "sta shmem_lo"])
def test_unused_id_bits_make_the_register_unknown(name):
    vcpu = new_vcpu()
    reg = parse_name(name) | (1 << 32)
    assert get_errno(vcpu, reg) == errno.ENOENT


@pytest.mark.parametrize("name", ["config isa", "core pc", "timer time"])
def test_subtype_byte_of_unsubtyped_classes_is_enoent(name):
    vcpu = new_vcpu()
    assert get_errno(vcpu, parse_name(name) | (1 << 16)) == errno.ENOENT


# -- CONFIG ----------------------------------------------------------------

def test_config_sizes_and_indices():
    vcpu = new_vcpu()
    assert get_errno(vcpu, with_size("config isa", Size.U32)) == errno.EINVAL
    assert set_errno(vcpu, with_size("config isa", Size.U32), 0) == errno.EINVAL
    assert get_errno(vcpu, make_id(RegType.CONFIG, 8)) == errno.ENOENT
    assert get_errno(new_vcpu("linux-6.13"), "config zicbop_block_size") == errno.ENOENT


def test_config_isa_letters():
    vcpu = new_vcpu()
    letters = sum(1 << (ord(c) - ord("a")) for c in "acdfim")
    assert get(vcpu, "config isa") == letters
    assert set_errno(vcpu, "config isa", 1 << 25) == errno.EINVAL
    # A, C, I, M cannot be dropped, H and V cannot be added here: silently adjusted
    put(vcpu, "config isa", (1 << (ord("v") - ord("a"))) | (1 << (ord("h") - ord("a"))))
    assert get(vcpu, "config isa") == sum(1 << (ord(c) - ord("a")) for c in "acim")
    assert get(vcpu, "isa_ext D") == 0 and get(vcpu, "isa_ext F") == 0
    assert get(vcpu, "isa_ext ZBB") == 1  # multi-letter extensions untouched
    assert vcpu.backend.fp_on is False  # FP reset after the ISA change


def test_config_isa_after_first_run():
    vcpu = new_vcpu()
    vcpu.config.mark_ran()
    put(vcpu, "config isa", get(vcpu, "config isa"))  # unchanged: fine
    assert set_errno(vcpu, "config isa", 0) == errno.EBUSY


def test_config_block_sizes():
    vcpu = new_vcpu()
    for name in ("zicbom_block_size", "zicboz_block_size", "zicbop_block_size"):
        assert get(vcpu, "config " + name) == 64
        put(vcpu, "config " + name, 64)
        assert set_errno(vcpu, "config " + name, 32) == errno.EINVAL
    host = HostProfile.default().without("zicbom")
    assert get_errno(new_vcpu("latest", host), "config zicbom_block_size") == errno.ENOENT
    assert set_errno(new_vcpu("latest", host), "config zicbom_block_size", 64) == errno.ENOENT


def test_config_block_size_follows_vcpu_in_6_13_and_host_later():
    for kernel, expected in (("linux-6.13", errno.ENOENT), ("latest", None)):
        vcpu = new_vcpu(kernel)
        put(vcpu, "isa_ext ZICBOM", 0)
        if expected is None:
            assert get(vcpu, "config zicbom_block_size") == 64
        else:
            assert get_errno(vcpu, "config zicbom_block_size") == expected


def test_config_machine_ids():
    vcpu = new_vcpu()
    put(vcpu, "config mvendorid", 0x489)
    assert get(vcpu, "config mvendorid") == 0x489
    vcpu.config.mark_ran()
    put(vcpu, "config mvendorid", 0x489)  # same value after first run: fine
    assert set_errno(vcpu, "config marchid", 5) == errno.EBUSY


def test_config_satp_mode():
    vcpu = new_vcpu()
    assert get(vcpu, "config satp_mode") == 10
    put(vcpu, "config satp_mode", 10)
    assert set_errno(vcpu, "config satp_mode", 8) == errno.EINVAL


# -- CORE ------------------------------------------------------------------

def test_core_registers():
    vcpu = new_vcpu()
    assert get_errno(vcpu, with_size("core pc", Size.U32)) == errno.EINVAL
    assert get_errno(vcpu, make_id(RegType.CORE, 33)) == errno.ENOENT
    put(vcpu, "core pc", 0x80200000)
    put(vcpu, "core t6", U64)
    assert vcpu.backend.pc == 0x80200000 and vcpu.backend.gprs[31] == U64
    assert get(vcpu, "core mode") == 1
    put(vcpu, "core mode", 5)  # anything but 1 means U-mode, no error
    assert get(vcpu, "core mode") == 0
    put(vcpu, "core mode", 1)
    assert get(vcpu, "core mode") == 1


# -- CSR -------------------------------------------------------------------

def test_csr_general():
    vcpu = new_vcpu()
    put(vcpu, "csr stvec", 0xFFFFFFFF80001000)
    assert get(vcpu, "csr stvec") == 0xFFFFFFFF80001000
    assert get_errno(vcpu, make_id(RegType.CSR, 11)) == errno.ENOENT
    assert get_errno(vcpu, make_id(RegType.CSR, 0, 3)) == errno.ENOENT
    assert get_errno(vcpu, with_size("csr sstatus", Size.U32)) == errno.EINVAL


def test_csr_sip_only_exposes_valid_bits():
    vcpu = new_vcpu()
    put(vcpu, "csr sip", 0xFFFF)
    assert get(vcpu, "csr sip") == 0x2222


def test_csr_aia_and_smstateen_need_the_extension():
    vcpu = new_vcpu()
    assert get_errno(vcpu, "csr siselect") == errno.ENOENT
    assert get_errno(vcpu, "csr sstateen0") == errno.ENOENT
    # the CSR size check comes before the extension check
    assert get_errno(vcpu, with_size("csr siselect", Size.U32)) == errno.EINVAL
    rich = new_vcpu("latest", rich_host())
    put(rich, "csr iprio2h", 7)
    assert get(rich, "csr iprio2h") == 7
    put(rich, "csr sstateen0", 1 << 63)
    assert get_errno(rich, make_id(RegType.CSR, 7, CsrSubtype.AIA)) == errno.ENOENT
    assert get_errno(rich, make_id(RegType.CSR, 1, CsrSubtype.SMSTATEEN)) == errno.ENOENT


# -- TIMER -----------------------------------------------------------------

def test_timer():
    vcpu = new_vcpu()
    assert get_errno(vcpu, with_size("timer time", Size.U32)) == errno.EINVAL
    assert get_errno(vcpu, make_id(RegType.TIMER, 4)) == errno.ENOENT
    assert get(vcpu, "timer frequency") == 10_000_000
    put(vcpu, "timer frequency", 10_000_000)
    assert set_errno(vcpu, "timer frequency", 1) == errno.EINVAL
    put(vcpu, "timer time", 12345)
    assert get(vcpu, "timer time") == 12345
    assert get(vcpu, "timer compare") == U64
    assert get(vcpu, "timer state") == 0
    assert set_errno(vcpu, "timer state", 0) == errno.EINVAL  # cancel while unarmed
    put(vcpu, "timer state", 1)
    assert get(vcpu, "timer state") == 1 and get(vcpu, "timer compare") == 1
    put(vcpu, "timer state", 7)  # any value but ON cancels
    assert get(vcpu, "timer state") == 0


# -- FP --------------------------------------------------------------------

def test_fp_requires_extension_before_size():
    vcpu = new_vcpu()
    put(vcpu, "isa_ext D", 0)
    assert get_errno(vcpu, "fp_d f0") == errno.ENOENT
    assert get_errno(vcpu, with_size("fp_d f0", Size.U8)) == errno.ENOENT
    put(vcpu, "isa_ext F", 0)
    assert get_errno(vcpu, with_size("fp_f f0", Size.U64)) == errno.ENOENT


def test_fp_sizes_and_indices():
    vcpu = new_vcpu()
    assert get_errno(vcpu, with_size("fp_f f0", Size.U64)) == errno.EINVAL
    assert get_errno(vcpu, make_id(RegType.FP_F, 33, size_code=Size.U32)) == errno.ENOENT
    assert get_errno(vcpu, make_id(RegType.FP_F, 33, size_code=Size.U64)) == errno.EINVAL
    assert get_errno(vcpu, with_size("fp_d fcsr", Size.U64)) == errno.EINVAL
    assert get_errno(vcpu, with_size("fp_d f0", Size.U32)) == errno.EINVAL
    assert get_errno(vcpu, make_id(RegType.FP_D, 33, size_code=Size.U8)) == errno.ENOENT


def test_fp_f_aliases_the_d_layout_when_d_is_present():
    vcpu = new_vcpu()
    put(vcpu, "fp_d f0", 0x1122334455667788)
    put(vcpu, "fp_d f16", 0xAAAAAAAA00000013)
    put(vcpu, "fp_d fcsr", 0xE0)
    assert get(vcpu, "fp_f f0") == 0x55667788
    assert get(vcpu, "fp_f f1") == 0x11223344
    assert get(vcpu, "fp_f fcsr") == 0x13  # low half of d.f[16], not fcsr
    put(vcpu, "fp_f f1", 0xCAFEF00D)
    assert get(vcpu, "fp_d f0") == 0xCAFEF00D55667788


def test_fp_f_only_vcpu_uses_nan_boxed_singles():
    vcpu = new_vcpu()
    put(vcpu, "isa_ext D", 0)
    put(vcpu, "fp_f f3", 0x3F800000)
    assert vcpu.backend.fprs[3] == 0xFFFFFFFF3F800000
    assert get(vcpu, "fp_f f3") == 0x3F800000
    put(vcpu, "fp_f fcsr", 0x21)
    assert vcpu.backend.fcsr == 0x21


# -- VECTOR ----------------------------------------------------------------

def test_vector_requires_v():
    vcpu = new_vcpu()
    assert get_errno(vcpu, "vector vlenb") == errno.ENOENT
    assert get_errno(vcpu, "vector v0") == errno.ENOENT


def test_vector_registers():
    vcpu = new_vcpu("latest", rich_host())
    assert get(vcpu, "vector vlenb") == 16
    put(vcpu, "vector vlenb", 16)
    assert set_errno(vcpu, "vector vlenb", 32) == errno.EINVAL
    assert get_errno(vcpu, make_id(RegType.VECTOR, 5)) == errno.ENOENT  # datap
    assert get_errno(vcpu, make_id(RegType.VECTOR, 5, size_code=Size.U32)) == errno.EINVAL
    assert get_errno(vcpu, with_size("vector v0", Size.U64)) == errno.EINVAL
    assert get_errno(vcpu, make_id(RegType.VECTOR, 38, size_code=Size.U128)) == errno.ENOENT
    data = bytes(range(16))
    vcpu.set_one_reg(parse_name("vector v31"), data)
    assert vcpu.get_one_reg(parse_name("vector v31")) == data
    put(vcpu, "vector vtype", 1 << 63)
    assert get(vcpu, "vector vtype") == 1 << 63


# -- ISA_EXT ---------------------------------------------------------------

def test_isa_ext_existence():
    vcpu = new_vcpu()
    assert get_errno(vcpu, with_size("isa_ext A", Size.U32)) == errno.EINVAL
    assert get_errno(vcpu, make_id(RegType.ISA_EXT, 78)) == errno.ENOENT
    assert get_errno(vcpu, "isa_ext ZFH") == errno.ENOENT  # not on this host
    assert set_errno(vcpu, "isa_ext ZFH", 0) == errno.ENOENT
    assert get_errno(new_vcpu("linux-6.13"), "isa_ext ZICBOP") == errno.ENOENT
    assert get_errno(vcpu, make_id(RegType.ISA_EXT, 0, 3)) == errno.ENOENT
    assert get(vcpu, "isa_ext ZBB") == 1


def test_isa_ext_enable_disable_rules():
    vcpu = new_vcpu("latest", rich_host())
    assert set_errno(vcpu, "isa_ext A", 0) == errno.EINVAL
    assert set_errno(vcpu, "isa_ext SSNPM", 0) == errno.EINVAL
    assert set_errno(vcpu, "isa_ext H", 1) == errno.EINVAL
    assert set_errno(vcpu, "isa_ext D", 2) == errno.EINVAL
    put(vcpu, "isa_ext A", 1)  # unchanged: fine
    put(vcpu, "isa_ext SVPBMT", 0)
    assert get(vcpu, "isa_ext SVPBMT") == 0
    put(vcpu, "isa_ext SVPBMT", 1)
    # Sscofpmf needs host Ssaia, Svadu needs hardware A/D updating
    assert get(new_vcpu("latest", HostProfile.default().plus("sscofpmf")),
               "isa_ext SSCOFPMF") == 0
    host = HostProfile.default().plus("svade").without("svadu")
    assert set_errno(new_vcpu("latest", host), "isa_ext SVADE", 0) == errno.EINVAL


def test_isa_ext_after_first_run():
    vcpu = new_vcpu()
    vcpu.config.mark_ran()
    put(vcpu, "isa_ext D", 1)  # unchanged: fine even after the first run
    assert set_errno(vcpu, "isa_ext D", 0) == errno.EBUSY
    assert set_errno(vcpu, "isa_ext A", 2) == errno.EBUSY


def test_isa_ext_multi_registers():
    vcpu = new_vcpu()
    word0 = get(vcpu, "isa_ext multi_en 0")
    assert word0 == sum(1 << i for i in vcpu.config.isa if i < 64)
    assert get(vcpu, "isa_ext multi_dis 0") == ~word0 & U64
    assert get(vcpu, "isa_ext multi_en 1") == sum(1 << (i - 64) for i in vcpu.config.isa if i >= 64)
    assert get_errno(vcpu, "isa_ext multi_en 2") == errno.ENOENT
    put(vcpu, "isa_ext multi_dis 0", U64)  # per-extension errors are ignored
    assert get(vcpu, "isa_ext A") == 1 and get(vcpu, "isa_ext D") == 0
    put(vcpu, "isa_ext multi_en 0", 1 << 2)
    assert get(vcpu, "isa_ext D") == 1
    vcpu.config.mark_ran()
    put(vcpu, "isa_ext multi_dis 0", 1 << 2)  # EBUSY swallowed too
    assert get(vcpu, "isa_ext D") == 1
    assert set_errno(vcpu, "isa_ext multi_en 2", 0) == errno.ENOENT


# -- SBI_EXT ---------------------------------------------------------------

def test_sbi_ext_single():
    vcpu = new_vcpu()
    assert get(vcpu, "sbi_ext TIME") == 1 and get(vcpu, "sbi_ext DBCN") == 0
    assert get_errno(vcpu, "sbi_ext PMU") == errno.ENOENT  # unavailable on this host
    assert set_errno(vcpu, "sbi_ext PMU", 2) == errno.EINVAL  # value checked first
    assert set_errno(vcpu, "sbi_ext PMU", 0) == errno.ENOENT
    assert get_errno(vcpu, make_id(RegType.SBI_EXT, 14)) == errno.ENOENT
    assert get_errno(vcpu, with_size("sbi_ext TIME", Size.U32)) == errno.EINVAL
    put(vcpu, "sbi_ext DBCN", 1)
    put(vcpu, "sbi_ext TIME", 0)  # no allow-list for SBI extensions
    assert get(vcpu, "sbi_ext DBCN") == 1 and get(vcpu, "sbi_ext TIME") == 0
    assert get_errno(new_vcpu("linux-6.13"), "sbi_ext FWFT") == errno.ENOENT
    assert get_errno(new_vcpu("linux-6.18"), "sbi_ext MPXY") == errno.ENOENT


def test_sbi_ext_after_first_run_is_always_ebusy():
    vcpu = new_vcpu()
    vcpu.config.mark_ran()
    assert set_errno(vcpu, "sbi_ext TIME", 1) == errno.EBUSY  # even unchanged
    assert set_errno(vcpu, make_id(RegType.SBI_EXT, 99), 0) == errno.EBUSY
    assert set_errno(vcpu, make_id(RegType.SBI_EXT, 0, 7), 0) == errno.EBUSY
    assert set_errno(vcpu, with_size("sbi_ext TIME", Size.U32), 0) == errno.EINVAL


def test_sbi_ext_multi_registers():
    vcpu = new_vcpu()
    enabled = sum(1 << i for i, on in vcpu.config.sbi.items() if on)
    assert get(vcpu, "sbi_ext multi_en 0") == enabled
    assert get(vcpu, "sbi_ext multi_dis 0") == ~enabled & U64
    assert get_errno(vcpu, "sbi_ext multi_en 1") == errno.ENOENT
    put(vcpu, "sbi_ext multi_en 0", U64)  # PMU unavailable: ignored
    assert get(vcpu, "sbi_ext multi_en 0") == sum(1 << i for i in vcpu.config.sbi)
    assert get_errno(vcpu, make_id(RegType.SBI_EXT, 0, 3)) == errno.ENOENT
    assert set_errno(vcpu, make_id(RegType.SBI_EXT, 0, ExtSubtype.MULTI_DIS + 1), 0) == errno.ENOENT


# -- SBI_STATE: STA --------------------------------------------------------

def test_sta_registers():
    vcpu = new_vcpu()
    assert get(vcpu, "sta shmem_lo") == U64
    put(vcpu, "sta shmem_lo", 0x80001000)
    assert get(vcpu, "sta shmem_lo") == 0x80001000
    assert get(vcpu, "sta shmem_hi") == 0
    put(vcpu, "sta shmem_hi", 0)
    assert set_errno(vcpu, "sta shmem_hi", 1) == errno.EINVAL
    assert get_errno(vcpu, make_id(RegType.SBI_STATE, 2, 0)) == errno.ENOENT
    assert get_errno(vcpu, with_size("sta shmem_lo", Size.U32)) == errno.EINVAL
    assert get_errno(vcpu, with_size("sta shmem_lo", Size.U128)) == errno.EINVAL
    assert get_errno(vcpu, make_id(RegType.SBI_STATE, 0, 2)) == errno.EINVAL  # no owner
    put(vcpu, "sbi_ext STA", 0)
    assert get_errno(vcpu, "sta shmem_lo") == errno.EINVAL


def test_sta_registers_before_6_18():
    vcpu = new_vcpu("linux-6.13")
    assert get_errno(vcpu, make_id(RegType.SBI_STATE, 2, 0)) == errno.EINVAL
    assert get_errno(vcpu, "fwft misaligned_deleg.enable") == errno.EINVAL
    put(vcpu, "sbi_ext STA", 0)
    assert get(vcpu, "sta shmem_lo") == U64  # no "enabled" check yet


def test_sta_unavailable_without_sched_info():
    vcpu = new_vcpu("latest", HostProfile.default().without("sched_info"))
    assert get_errno(vcpu, "sbi_ext STA") == errno.ENOENT
    assert get_errno(vcpu, "sta shmem_lo") == errno.EINVAL


# -- SBI_STATE: FWFT -------------------------------------------------------

def test_fwft_misaligned_deleg():
    vcpu = new_vcpu()
    assert get(vcpu, "fwft misaligned_deleg.enable") == 1
    assert set_errno(vcpu, "fwft misaligned_deleg.enable", 2) == errno.EINVAL
    put(vcpu, "fwft misaligned_deleg.enable", 0)
    assert get(vcpu, "fwft misaligned_deleg.enable") == 0
    put(vcpu, "fwft misaligned_deleg.flags", 3)
    assert get(vcpu, "fwft misaligned_deleg.flags") == 1  # only LOCK kept
    put(vcpu, "fwft misaligned_deleg.value", 1)  # ONE_REG ignores the lock
    assert vcpu.backend.hyp["hedeleg"] & HEDELEG_MISALIGNED == HEDELEG_MISALIGNED
    assert get(vcpu, "fwft misaligned_deleg.value") == 1
    assert set_errno(vcpu, "fwft misaligned_deleg.value", 2) == errno.EINVAL
    vcpu.backend.hyp["hedeleg"] &= ~(1 << 6)  # only one of the two causes
    assert get(vcpu, "fwft misaligned_deleg.value") == 0


def test_fwft_pointer_masking_value():
    vcpu = new_vcpu()
    assert get(vcpu, "fwft pointer_masking.value") == 0
    put(vcpu, "fwft pointer_masking.value", 7)
    assert vcpu.backend.hyp["henvcfg"] & ENVCFG_PMM == 2 << 32
    put(vcpu, "fwft pointer_masking.value", 16)
    assert get(vcpu, "fwft pointer_masking.value") == 16
    assert set_errno(vcpu, "fwft pointer_masking.value", 8) == errno.EINVAL  # exact PMLEN only
    vcpu.backend.hyp["henvcfg"] = 1 << 32  # reserved PMM encoding
    assert get_errno(vcpu, "fwft pointer_masking.value") == ENOTSUPP
    only7 = new_vcpu("latest", HostProfile.default().without("pmlen16"))
    assert set_errno(only7, "fwft pointer_masking.value", 16) == errno.EINVAL
    put(only7, "fwft pointer_masking.value", 7)


def test_fwft_registers_work_after_first_run():
    vcpu = new_vcpu()
    vcpu.config.mark_ran()
    put(vcpu, "fwft pointer_masking.value", 7)
    put(vcpu, "fwft pointer_masking.flags", 1)
    put(vcpu, "fwft pointer_masking.value", 0)  # lock does not bind ONE_REG


def test_fwft_errors():
    vcpu = new_vcpu()
    assert get_errno(vcpu, make_id(RegType.SBI_STATE, 6, 1)) == errno.ENOENT  # pte_ad unsupported
    assert get_errno(vcpu, make_id(RegType.SBI_STATE, 9, 1)) == errno.ENOENT
    assert get_errno(vcpu, with_size("fwft pointer_masking.value", Size.U16)) == errno.EINVAL
    put(vcpu, "sbi_ext FWFT", 0)
    assert get_errno(vcpu, "fwft pointer_masking.value") == errno.EINVAL
    host = HostProfile.default().without("misaligned_deleg")
    vcpu = new_vcpu("latest", host)
    assert get_errno(vcpu, "fwft misaligned_deleg.enable") == errno.ENOENT
    assert parse_name("fwft misaligned_deleg.enable") not in vcpu.get_reg_list()


def test_fwft_pte_ad_hw_updating():
    vcpu = new_vcpu("latest", rich_host())
    put(vcpu, "fwft pte_ad_hw_updating.value", 1)
    assert vcpu.backend.hyp["henvcfg"] & ENVCFG_ADUE
    assert get(vcpu, "fwft pte_ad_hw_updating.value") == 1
    assert set_errno(vcpu, "fwft pte_ad_hw_updating.value", 2) == errno.EINVAL
    put(vcpu, "isa_ext SVADE", 0)  # both behaviours needed
    assert get_errno(vcpu, "fwft pte_ad_hw_updating.value") == errno.ENOENT
    assert get_errno(new_vcpu("linux-6.18", rich_host()),
                     "fwft pte_ad_hw_updating.enable") == errno.ENOENT
