"""KVM_GET_REG_LIST and KVM_GET/SET_ONE_REG for a RISC-V vCPU.

``reg_list`` walks the register blocks in Linux's order
(``kvm_riscv_vcpu_copy_reg_indices``): CONFIG, CORE, CSR (general, AIA,
Smstateen), TIMER, FP_F, FP_D, VECTOR, ISA_EXT singles, SBI_EXT singles,
SBI_STATE (per SBI extension, in KVM's internal table order). Each block
lists only what exists for the current vCPU configuration.

``OneRegMap`` implements the get/set rules of each class with Linux's errno
precedence (``arch/riscv/kvm/vcpu_onereg.c``, ``vcpu_fp.c``,
``vcpu_vector.c``, ``vcpu_timer.c``, ``vcpu_sbi.c``, ``vcpu_sbi_sta.c``,
``vcpu_sbi_fwft.c``). Like Linux it ignores the arch byte of an id.
Values travel as little-endian bytes of the id's size; a value buffer of
another length is a bad user buffer (EFAULT), checked first.
"""

from __future__ import annotations

import errno
from typing import Callable, Dict, Iterable, Iterator, List, Sequence, Tuple, Union

from rvkvm.uapi.onereg import (
    CONFIG_REGS,
    CORE_MODE,
    CORE_REGS,
    CSR_REGS,
    FP_FCSR,
    SIZE_ULONG,
    TIMER_REGS,
    VECTOR_CSR_REGS,
    VECTOR_DATAP,
    VECTOR_REG_BASE,
    CsrSubtype,
    ExtSubtype,
    RegId,
    RegType,
    SbiStateSubtype,
    Size,
    decode_id,
    make_id,
    reg_size,
)

from .backend import KVM_RISCV_MODE_S, KVM_RISCV_MODE_U, U64_MASK, VcpuRegisterBackend
from .errors import KvmError
from .profiles import (
    ISA_BY_NAME_ID,
    SBI_BY_NAME,
    HostProfile,
    KernelProfile,
    Platform,
    VcpuConfig,
)
from .sbi_ext import (
    FWFT_SET_FLAG_LOCK,
    KVM_TABLE_ORDER,
    SBI_ERR_FAILURE,
    SBI_ERR_INVALID_PARAM,
    STA_REGS,
    FwftFeature,
    sbi_error_to_errno,
)

ULONG_BYTES = 8
# sip bits userspace can see and set: SSIP, STIP, SEIP, LCOFIP.
VSIP_VALID_MASK = (1 << 1) | (1 << 5) | (1 << 9) | (1 << 13)
TIMER_STATE_OFF = 0
TIMER_STATE_ON = 1

_BLOCK_SIZE_EXT = {
    "zicbom_block_size": "ZICBOM",
    "zicboz_block_size": "ZICBOZ",
    "zicbop_block_size": "ZICBOP",
}
_CSR_NEEDS_EXT: Dict[int, str] = {CsrSubtype.AIA: "SSAIA", CsrSubtype.SMSTATEEN: "SMSTATEEN"}
_STATE_OWNER: Dict[int, str] = {SbiStateSubtype.STA: "STA", SbiStateSubtype.FWFT: "FWFT"}

Value = Union[int, bytes]


def _einval(message: str) -> KvmError:
    return KvmError(errno.EINVAL, message)


def _enoent(message: str) -> KvmError:
    return KvmError(errno.ENOENT, message)


def _has(config: VcpuConfig, ext_name: str) -> bool:
    return ISA_BY_NAME_ID[ext_name] in config.isa


# ---------------------------------------------------------------------------
# KVM_GET_REG_LIST


def _ids(reg_type: int, indices: Iterable[int], subtype: int = 0,
         size_code: int = SIZE_ULONG) -> List[int]:
    return [make_id(reg_type, i, subtype, size_code) for i in indices]


def _list_config(plat: Platform, config: VcpuConfig) -> List[int]:
    return _ids(RegType.CONFIG, (
        i for i, name in enumerate(CONFIG_REGS[: plat.kernel.config_regs])
        if name not in _BLOCK_SIZE_EXT or plat.block_size_present(config, _BLOCK_SIZE_EXT[name])
    ))


def _list_core(plat: Platform, config: VcpuConfig) -> List[int]:
    return _ids(RegType.CORE, range(len(CORE_REGS)))


def _list_csr(plat: Platform, config: VcpuConfig) -> List[int]:
    ids: List[int] = []
    for subtype, names in CSR_REGS.items():
        needs = _CSR_NEEDS_EXT.get(subtype)
        if needs is None or _has(config, needs):
            ids += _ids(RegType.CSR, range(len(names)), subtype)
    return ids


def _list_timer(plat: Platform, config: VcpuConfig) -> List[int]:
    return _ids(RegType.TIMER, range(len(TIMER_REGS)), size_code=Size.U64)


def _list_fp_f(plat: Platform, config: VcpuConfig) -> List[int]:
    return _ids(RegType.FP_F, range(FP_FCSR + 1), size_code=Size.U32) if _has(config, "F") else []


def _list_fp_d(plat: Platform, config: VcpuConfig) -> List[int]:
    if not _has(config, "D"):
        return []
    return _ids(RegType.FP_D, range(FP_FCSR), size_code=Size.U64) + _ids(
        RegType.FP_D, [FP_FCSR], size_code=Size.U32)


def _vreg_size_code(host: HostProfile) -> int:
    return host.vlenb.bit_length() - 1


def _list_vector(plat: Platform, config: VcpuConfig) -> List[int]:
    if not _has(config, "V"):
        return []
    return _ids(RegType.VECTOR, range(len(VECTOR_CSR_REGS))) + _ids(
        RegType.VECTOR, range(VECTOR_REG_BASE, VECTOR_REG_BASE + 32),
        size_code=_vreg_size_code(plat.host))


def _list_isa_ext(plat: Platform, config: VcpuConfig) -> List[int]:
    return _ids(RegType.ISA_EXT, (
        row.kvm_id for row in plat.kernel.isa_exts if plat.isa_ext_on_host(row.kvm_id)
    ), ExtSubtype.SINGLE)


def _list_sbi_ext(plat: Platform, config: VcpuConfig) -> List[int]:
    return _ids(RegType.SBI_EXT, sorted(config.sbi), ExtSubtype.SINGLE)


def _fwft_regs(plat: Platform, config: VcpuConfig) -> Iterator[Tuple[int, FwftFeature]]:
    """(ONE_REG index, feature) of every supported FWFT register, ascending."""
    for feature in sorted(plat.fwft_features(), key=FwftFeature.first_reg):
        if plat.fwft_supported(config, feature):
            for field in range(3):
                yield feature.first_reg() + field, feature


def _list_sbi_state(plat: Platform, config: VcpuConfig) -> List[int]:
    ids: List[int] = []
    for name in KVM_TABLE_ORDER:
        row = SBI_BY_NAME.get(name)
        if row is None or row.state_subtype is None or not config.sbi.get(row.kvm_id, False):
            continue
        if row.state_subtype == SbiStateSubtype.STA:
            ids += _ids(RegType.SBI_STATE, range(len(STA_REGS)), SbiStateSubtype.STA)
        else:
            ids += _ids(RegType.SBI_STATE, (i for i, _ in _fwft_regs(plat, config)),
                        SbiStateSubtype.FWFT)
    return ids


_LIST_BLOCKS: Tuple[Callable[[Platform, VcpuConfig], List[int]], ...] = (
    _list_config, _list_core, _list_csr, _list_timer, _list_fp_f, _list_fp_d,
    _list_vector, _list_isa_ext, _list_sbi_ext, _list_sbi_state,
)


def reg_list(kernel: KernelProfile, host: HostProfile, config: VcpuConfig) -> List[int]:
    """KVM_GET_REG_LIST for a vCPU configuration, in Linux's order."""
    plat = Platform(kernel, host)
    ids: List[int] = []
    for block in _LIST_BLOCKS:
        ids += block(plat, config)
    return ids


def copy_reg_list(n: int, ids: Sequence[int]) -> List[int]:
    """KVM_GET_REG_LIST's copy-out: the ids if ``n`` is large enough.

    Otherwise E2BIG with ``count`` = the number needed (KVM writes it back
    into ``kvm_reg_list.n``).
    """
    if n < len(ids):
        raise KvmError(errno.E2BIG, f"KVM_GET_REG_LIST needs n >= {len(ids)}", count=len(ids))
    return list(ids)


# ---------------------------------------------------------------------------
# KVM_GET_ONE_REG / KVM_SET_ONE_REG


def _to_int(data: bytes) -> int:
    return int.from_bytes(data, "little")


class OneRegMap:
    """ONE_REG access for one vCPU: KVM rules over a register backend."""

    def __init__(
        self, platform: Platform, config: VcpuConfig, backend: VcpuRegisterBackend
    ) -> None:
        self.platform = platform
        self.config = config
        self.backend = backend
        self._get: Dict[int, Callable[[RegId], Value]] = {
            RegType.CONFIG: self._get_config,
            RegType.CORE: self._get_core,
            RegType.CSR: self._get_csr,
            RegType.TIMER: self._get_timer,
            RegType.FP_F: self._get_fp,
            RegType.FP_D: self._get_fp,
            RegType.VECTOR: self._get_vector,
            RegType.ISA_EXT: self._get_isa_ext,
            RegType.SBI_EXT: self._get_sbi_ext,
            RegType.SBI_STATE: self._get_sbi_state,
        }
        self._set: Dict[int, Callable[[RegId, bytes], None]] = {
            RegType.CONFIG: self._set_config,
            RegType.CORE: self._set_core,
            RegType.CSR: self._set_csr,
            RegType.TIMER: self._set_timer,
            RegType.FP_F: self._set_fp,
            RegType.FP_D: self._set_fp,
            RegType.VECTOR: self._set_vector,
            RegType.ISA_EXT: self._set_isa_ext,
            RegType.SBI_EXT: self._set_sbi_ext,
            RegType.SBI_STATE: self._set_sbi_state,
        }

    @property
    def kernel(self) -> KernelProfile:
        return self.platform.kernel

    @property
    def host(self) -> HostProfile:
        return self.platform.host

    # -- public ioctl surface ---------------------------------------------

    def get_reg_list(self) -> List[int]:
        return reg_list(self.kernel, self.host, self.config)

    def get_one_reg(self, reg_id: int) -> bytes:
        rid = decode_id(reg_id)
        handler = self._get.get(rid.reg_type)
        if handler is None:
            raise _enoent(f"unknown ONE_REG type {rid.reg_type}")
        value = handler(rid)
        if isinstance(value, bytes):
            return value
        return (value & ((1 << (8 * rid.size)) - 1)).to_bytes(rid.size, "little")

    def set_one_reg(self, reg_id: int, data: bytes) -> None:
        rid = decode_id(reg_id)
        if len(data) != rid.size:
            raise KvmError(errno.EFAULT, f"value is {len(data)} bytes, id says {rid.size}")
        handler = self._set.get(rid.reg_type)
        if handler is None:
            raise _enoent(f"unknown ONE_REG type {rid.reg_type}")
        handler(rid, bytes(data))

    def get_value(self, reg_id: int) -> int:
        """``get_one_reg`` as an unsigned integer."""
        return _to_int(self.get_one_reg(reg_id))

    def set_value(self, reg_id: int, value: int) -> None:
        """``set_one_reg`` from an unsigned integer of the id's size."""
        self.set_one_reg(reg_id, value.to_bytes(reg_size(reg_id), "little"))

    # -- helpers ----------------------------------------------------------

    @staticmethod
    def _need_ulong(rid: RegId) -> None:
        if rid.size != ULONG_BYTES:
            raise _einval(f"register size must be {ULONG_BYTES} bytes")

    def _isa_changed(self) -> None:
        # every successful ISA change re-runs KVM's FP reset (sstatus.FS)
        self.backend.fp_reset(_has(self.config, "F") or _has(self.config, "D"))

    # -- CONFIG -----------------------------------------------------------

    def _config_name(self, rid: RegId) -> str:
        self._need_ulong(rid)
        if rid.number >= self.kernel.config_regs:
            raise _enoent(f"no CONFIG register {rid.number}")
        name = CONFIG_REGS[rid.number]
        ext = _BLOCK_SIZE_EXT.get(name)
        if ext is not None and not self.platform.block_size_present(self.config, ext):
            raise _enoent(f"{name}: no {ext}")
        return name

    def _config_fixed(self, name: str) -> int:
        """Host-defined CONFIG values userspace can only write back unchanged."""
        host = self.host
        return {
            "zicbom_block_size": host.cbom_block_size,
            "zicboz_block_size": host.cboz_block_size,
            "zicbop_block_size": host.cbop_block_size,
            "satp_mode": host.satp_mode,
        }[name]

    def _get_config(self, rid: RegId) -> Value:
        name = self._config_name(rid)
        if name == "isa":
            return self.platform.isa_letters(self.config)
        if name in ("mvendorid", "marchid", "mimpid"):
            return int(getattr(self.config, name))
        return self._config_fixed(name)

    def _set_config(self, rid: RegId, data: bytes) -> None:
        name = self._config_name(rid)
        value = _to_int(data)
        if name == "isa":
            if self.platform.set_isa_letters(self.config, value):
                self._isa_changed()
        elif name in ("mvendorid", "marchid", "mimpid"):
            if value == getattr(self.config, name):
                return
            if self.config.ran_once:
                raise KvmError(errno.EBUSY, f"vCPU already ran: {name} is fixed")
            setattr(self.config, name, value)
        elif value != self._config_fixed(name):
            raise _einval(f"{name} must stay {self._config_fixed(name)}")

    # -- CORE -------------------------------------------------------------

    def _core_index(self, rid: RegId) -> int:
        self._need_ulong(rid)
        if rid.number >= len(CORE_REGS):
            raise _enoent(f"no CORE register {rid.number}")
        return rid.number

    def _get_core(self, rid: RegId) -> Value:
        index = self._core_index(rid)
        if index == 0:
            return self.backend.get_pc()
        if index == CORE_MODE:
            return self.backend.get_privilege()
        return self.backend.get_gpr(index)

    def _set_core(self, rid: RegId, data: bytes) -> None:
        index = self._core_index(rid)
        value = _to_int(data)
        if index == 0:
            self.backend.set_pc(value)
        elif index == CORE_MODE:
            # only exactly KVM_RISCV_MODE_S selects S; anything else is U
            self.backend.set_privilege(KVM_RISCV_MODE_S if value == KVM_RISCV_MODE_S
                                       else KVM_RISCV_MODE_U)
        else:
            self.backend.set_gpr(index, value)

    # -- CSR --------------------------------------------------------------

    def _csr_name(self, rid: RegId) -> str:
        self._need_ulong(rid)
        names = CSR_REGS.get(rid.subtype)
        if names is None:
            raise _enoent(f"no CSR subtype {rid.subtype}")
        needs = _CSR_NEEDS_EXT.get(rid.subtype)
        if needs is not None and not _has(self.config, needs):
            raise _enoent(f"CSR subtype {CsrSubtype(rid.subtype).name} needs {needs}")
        if rid.number >= len(names):
            raise _enoent(f"no CSR {rid.number} in subtype {rid.subtype}")
        return names[rid.number]

    def _get_csr(self, rid: RegId) -> Value:
        name = self._csr_name(rid)
        value = self.backend.get_csr(name)
        # Linux also passes hvip bits >= 14 through unshifted; this vCPU has
        # no interrupts above LCOFI (13), so those bits are always 0.
        return value & VSIP_VALID_MASK if name == "sip" else value

    def _set_csr(self, rid: RegId, data: bytes) -> None:
        name = self._csr_name(rid)
        value = _to_int(data)
        self.backend.set_csr(name, value & VSIP_VALID_MASK if name == "sip" else value)

    # -- TIMER ------------------------------------------------------------

    def _timer_name(self, rid: RegId) -> str:
        if rid.size != 8:
            raise _einval("TIMER registers are always 64-bit")
        if rid.number >= len(TIMER_REGS):
            raise _enoent(f"no TIMER register {rid.number}")
        return TIMER_REGS[rid.number]

    def _get_timer(self, rid: RegId) -> Value:
        name = self._timer_name(rid)
        if name == "frequency":
            return self.host.timebase_frequency
        if name == "time":
            return self.backend.get_time()
        if name == "compare":
            return self.backend.get_timer_compare()
        return TIMER_STATE_ON if self.backend.timer_armed() else TIMER_STATE_OFF

    def _set_timer(self, rid: RegId, data: bytes) -> None:
        name = self._timer_name(rid)
        value = _to_int(data)
        if name == "frequency":
            if value != self.host.timebase_frequency:
                raise _einval(f"timer frequency is {self.host.timebase_frequency}")
        elif name == "time":
            self.backend.set_time(value)
        elif name == "compare":
            self.backend.set_timer_compare(value)
        elif value == TIMER_STATE_ON:
            # KVM passes the state value itself as the next event: compare = 1
            self.backend.timer_arm(TIMER_STATE_ON)
        elif not self.backend.timer_armed():
            raise _einval("timer is not armed")
        else:
            self.backend.timer_cancel()

    # -- FP_F / FP_D ------------------------------------------------------

    def _fp_index(self, rid: RegId) -> int:
        is_d = rid.reg_type == RegType.FP_D
        ext = "D" if is_d else "F"
        if not _has(self.config, ext):
            raise _enoent(f"vCPU has no {ext}")
        num = rid.number
        if is_d:
            if num > FP_FCSR:
                raise _enoent(f"no FP_D register {num}")
            if rid.size != (4 if num == FP_FCSR else 8):
                raise _einval("wrong FP_D register size")
        else:
            if rid.size != 4:
                raise _einval("FP_F registers are 32-bit")
            if num > FP_FCSR:
                raise _enoent(f"no FP_F register {num}")
        return num

    def _get_fp(self, rid: RegId) -> Value:
        num = self._fp_index(rid)
        if rid.reg_type == RegType.FP_F and _has(self.config, "D"):
            return self._f_word_of_d_layout(num)
        if num == FP_FCSR:
            return self.backend.get_fcsr()
        value = self.backend.get_fpr(num)
        return value if rid.reg_type == RegType.FP_D else value & 0xFFFF_FFFF

    def _set_fp(self, rid: RegId, data: bytes) -> None:
        num = self._fp_index(rid)
        value = _to_int(data)
        if rid.reg_type == RegType.FP_F and _has(self.config, "D"):
            self._set_f_word_of_d_layout(num, value)
        elif num == FP_FCSR:
            self.backend.set_fcsr(value)
        elif rid.reg_type == RegType.FP_D:
            self.backend.set_fpr(num, value)
        else:
            # an F-only vCPU's registers are restored with flw: NaN-boxed
            self.backend.set_fpr(num, 0xFFFF_FFFF_0000_0000 | value)

    # KVM keeps F and D state in one union; with D present, FP_F word w is
    # word w of the D layout (u64 f[32]; u32 fcsr).
    def _f_word_of_d_layout(self, word: int) -> int:
        return (self.backend.get_fpr(word // 2) >> (32 * (word % 2))) & 0xFFFF_FFFF

    def _set_f_word_of_d_layout(self, word: int, value: int) -> None:
        shift = 32 * (word % 2)
        old = self.backend.get_fpr(word // 2)
        self.backend.set_fpr(word // 2, (old & ~(0xFFFF_FFFF << shift)) | (value << shift))

    # -- VECTOR -----------------------------------------------------------

    def _vector_target(self, rid: RegId) -> Tuple[str, int]:
        if not _has(self.config, "V"):
            raise _enoent("vCPU has no V")
        num = rid.number
        if num < VECTOR_REG_BASE:
            self._need_ulong(rid)
            if num == VECTOR_DATAP:
                raise _enoent("vector datap is not a register")
            return "csr", num
        if num < VECTOR_REG_BASE + 32:
            if rid.size != self.host.vlenb:
                raise _einval(f"vector registers are {self.host.vlenb} bytes")
            return "vreg", num - VECTOR_REG_BASE
        raise _enoent(f"no VECTOR register {num}")

    def _get_vector(self, rid: RegId) -> Value:
        kind, index = self._vector_target(rid)
        if kind == "vreg":
            return self.backend.get_vreg(index)
        name = VECTOR_CSR_REGS[index]
        return self.host.vlenb if name == "vlenb" else self.backend.get_vector_csr(name)

    def _set_vector(self, rid: RegId, data: bytes) -> None:
        kind, index = self._vector_target(rid)
        if kind == "vreg":
            self.backend.set_vreg(index, data)
            return
        name = VECTOR_CSR_REGS[index]
        value = _to_int(data)
        if name != "vlenb":
            self.backend.set_vector_csr(name, value)
        elif value != self.host.vlenb:
            raise _einval(f"vlenb is {self.host.vlenb}")

    # -- ISA_EXT ----------------------------------------------------------

    def _isa_multi_word(self, rid: RegId) -> int:
        if rid.number > self.kernel.isa_multi_reg_last:
            raise _enoent(f"no ISA_EXT multi word {rid.number}")
        return rid.number

    def _get_isa_ext(self, rid: RegId) -> Value:
        self._need_ulong(rid)
        if rid.subtype == ExtSubtype.SINGLE:
            self.platform.host_isa_ext(rid.number)
            return 1 if rid.number in self.config.isa else 0
        if rid.subtype in (ExtSubtype.MULTI_EN, ExtSubtype.MULTI_DIS):
            word = self._isa_multi_word(rid)
            bits = 0
            for bit in range(64):
                kvm_id = 64 * word + bit
                if kvm_id >= self.kernel.isa_ext_max:
                    break
                if kvm_id in self.config.isa and self.platform.isa_ext_on_host(kvm_id):
                    bits |= 1 << bit
            return bits if rid.subtype == ExtSubtype.MULTI_EN else ~bits & U64_MASK
        raise _enoent(f"no ISA_EXT subtype {rid.subtype}")

    def _set_isa_ext(self, rid: RegId, data: bytes) -> None:
        self._need_ulong(rid)
        value = _to_int(data)
        if rid.subtype == ExtSubtype.SINGLE:
            if self.platform.set_isa_ext(self.config, rid.number, value):
                self._isa_changed()
            return
        if rid.subtype not in (ExtSubtype.MULTI_EN, ExtSubtype.MULTI_DIS):
            raise _enoent(f"no ISA_EXT subtype {rid.subtype}")
        word = self._isa_multi_word(rid)
        wanted = 1 if rid.subtype == ExtSubtype.MULTI_EN else 0
        changed = False
        for bit in range(64):
            kvm_id = 64 * word + bit
            if kvm_id >= self.kernel.isa_ext_max:
                break
            if value >> bit & 1:
                try:
                    changed |= self.platform.set_isa_ext(self.config, kvm_id, wanted)
                except KvmError:
                    pass  # KVM ignores every per-extension error of a multi write
        if changed:
            self._isa_changed()

    # -- SBI_EXT ----------------------------------------------------------

    def _sbi_multi_word(self, rid: RegId) -> int:
        if rid.number > self.kernel.sbi_multi_reg_last:
            raise _enoent(f"no SBI_EXT multi word {rid.number}")
        return rid.number

    def _get_sbi_ext(self, rid: RegId) -> Value:
        self._need_ulong(rid)
        if rid.subtype == ExtSubtype.SINGLE:
            if rid.number not in self.config.sbi:
                raise _enoent(f"SBI extension {rid.number} not available")
            return 1 if self.config.sbi[rid.number] else 0
        if rid.subtype in (ExtSubtype.MULTI_EN, ExtSubtype.MULTI_DIS):
            word = self._sbi_multi_word(rid)
            bits = 0
            for kvm_id, enabled in self.config.sbi.items():
                if enabled and kvm_id // 64 == word:
                    bits |= 1 << (kvm_id % 64)
            return bits if rid.subtype == ExtSubtype.MULTI_EN else ~bits & U64_MASK
        raise _enoent(f"no SBI_EXT subtype {rid.subtype}")

    def _set_sbi_ext(self, rid: RegId, data: bytes) -> None:
        self._need_ulong(rid)
        if self.config.ran_once:
            raise KvmError(errno.EBUSY, "vCPU already ran: SBI extensions are fixed")
        value = _to_int(data)
        if rid.subtype == ExtSubtype.SINGLE:
            self.platform.set_sbi_ext(self.config, rid.number, value)
            return
        if rid.subtype not in (ExtSubtype.MULTI_EN, ExtSubtype.MULTI_DIS):
            raise _enoent(f"no SBI_EXT subtype {rid.subtype}")
        word = self._sbi_multi_word(rid)
        wanted = 1 if rid.subtype == ExtSubtype.MULTI_EN else 0
        for bit in range(64):
            kvm_id = 64 * word + bit
            if kvm_id >= self.kernel.sbi_ext_max:
                break
            if value >> bit & 1:
                try:
                    self.platform.set_sbi_ext(self.config, kvm_id, wanted)
                except KvmError:
                    pass  # ignored, as for ISA multi writes

    # -- SBI_STATE --------------------------------------------------------

    def _sbi_state_target(self, rid: RegId) -> int:
        """Validate an SBI_STATE access up to the owning extension; return its subtype."""
        if not self.kernel.has("sbi_state_callbacks"):
            # before 6.18: STA only, no check that STA is enabled
            self._need_ulong(rid)
            if rid.subtype != SbiStateSubtype.STA:
                raise _einval(f"no SBI_STATE subtype {rid.subtype}")
            return rid.subtype
        if rid.size not in (1, 2, 4, 8):
            raise _einval("SBI_STATE registers are 1, 2, 4 or 8 bytes")
        owner = _STATE_OWNER.get(rid.subtype)
        if owner is None or not self.platform.sbi_enabled(self.config, owner):
            raise _einval(f"SBI_STATE subtype {rid.subtype} has no enabled owner extension")
        self._need_ulong(rid)
        return rid.subtype

    def _bad_state_index(self, what: str) -> KvmError:
        if self.kernel.has("sbi_state_callbacks"):
            return _enoent(f"no {what} register")
        return _einval(f"no {what} register")

    def _sta_index(self, rid: RegId) -> int:
        if rid.number >= len(STA_REGS):
            raise self._bad_state_index(f"STA {rid.number}")
        return rid.number

    def _fwft_target(self, rid: RegId) -> Tuple[FwftFeature, int]:
        for feature in self.platform.fwft_features():
            first = feature.first_reg()
            if first <= rid.number < first + 3:
                if not self.platform.fwft_supported(self.config, feature):
                    raise _enoent(f"FWFT {feature.name} not supported on this vCPU")
                return feature, rid.number - first
        raise _enoent(f"no FWFT register {rid.number}")

    def _get_sbi_state(self, rid: RegId) -> Value:
        if self._sbi_state_target(rid) == SbiStateSubtype.STA:
            index = self._sta_index(rid)
            return self.backend.get_sta_shmem() if index == 0 else 0
        feature, field = self._fwft_target(rid)
        state = self.config.fwft[feature.feature_id]
        if field == 0:
            return 1 if state.enabled else 0
        if field == 1:
            return state.flags
        value = feature.decode(self.backend.get_hyp(feature.word) & feature.mask)
        if value is None:
            raise KvmError(sbi_error_to_errno(SBI_ERR_FAILURE), f"{feature.name} field unreadable")
        return value

    def _set_sbi_state(self, rid: RegId, data: bytes) -> None:
        value = _to_int(data)
        if self._sbi_state_target(rid) == SbiStateSubtype.STA:
            if self._sta_index(rid) == 0:
                self.backend.set_sta_shmem(value)
            elif value != 0:
                raise _einval("shmem_hi must be 0 on rv64")
            return
        feature, field = self._fwft_target(rid)
        state = self.config.fwft[feature.feature_id]
        if field == 0:
            if value not in (0, 1):
                raise _einval("FWFT enable must be 0 or 1")
            state.enabled = bool(value)
        elif field == 1:
            # no check: userspace may set or clear the lock
            state.flags = value & FWFT_SET_FLAG_LOCK
        else:
            # ONE_REG writes ignore the lock (migration restores state)
            enc = self.platform.fwft_encoding(feature, value)
            if enc is None:
                raise KvmError(sbi_error_to_errno(SBI_ERR_INVALID_PARAM),
                               f"{feature.name} cannot be {value}")
            old = self.backend.get_hyp(feature.word)
            self.backend.set_hyp(feature.word, (old & ~feature.mask) | enc.bits)
