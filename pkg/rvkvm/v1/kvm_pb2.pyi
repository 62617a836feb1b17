import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MemoryFlag(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MEMORY_FLAG_NONE: _ClassVar[MemoryFlag]
    MEMORY_FLAG_LOG_DIRTY_PAGES: _ClassVar[MemoryFlag]
    MEMORY_FLAG_READONLY: _ClassVar[MemoryFlag]

class IntrReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INTR_REASON_UNSPECIFIED: _ClassVar[IntrReason]
    INTR_REASON_KICK: _ClassVar[IntrReason]
    INTR_REASON_BUDGET: _ClassVar[IntrReason]
    INTR_REASON_IDLE: _ClassVar[IntrReason]
    INTR_REASON_SHUTDOWN: _ClassVar[IntrReason]

class StatType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STAT_TYPE_CUMULATIVE: _ClassVar[StatType]
    STAT_TYPE_INSTANT: _ClassVar[StatType]
    STAT_TYPE_PEAK: _ClassVar[StatType]
    STAT_TYPE_LINEAR_HIST: _ClassVar[StatType]
    STAT_TYPE_LOG_HIST: _ClassVar[StatType]

class StatUnit(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STAT_UNIT_NONE: _ClassVar[StatUnit]
    STAT_UNIT_BYTES: _ClassVar[StatUnit]
    STAT_UNIT_SECONDS: _ClassVar[StatUnit]
    STAT_UNIT_CYCLES: _ClassVar[StatUnit]
    STAT_UNIT_BOOLEAN: _ClassVar[StatUnit]
MEMORY_FLAG_NONE: MemoryFlag
MEMORY_FLAG_LOG_DIRTY_PAGES: MemoryFlag
MEMORY_FLAG_READONLY: MemoryFlag
INTR_REASON_UNSPECIFIED: IntrReason
INTR_REASON_KICK: IntrReason
INTR_REASON_BUDGET: IntrReason
INTR_REASON_IDLE: IntrReason
INTR_REASON_SHUTDOWN: IntrReason
STAT_TYPE_CUMULATIVE: StatType
STAT_TYPE_INSTANT: StatType
STAT_TYPE_PEAK: StatType
STAT_TYPE_LINEAR_HIST: StatType
STAT_TYPE_LOG_HIST: StatType
STAT_UNIT_NONE: StatUnit
STAT_UNIT_BYTES: StatUnit
STAT_UNIT_SECONDS: StatUnit
STAT_UNIT_CYCLES: StatUnit
STAT_UNIT_BOOLEAN: StatUnit

class KvmErrno(_message.Message):
    __slots__ = ("errno", "name", "message", "count", "exit_seq")
    ERRNO_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    EXIT_SEQ_FIELD_NUMBER: _ClassVar[int]
    errno: int
    name: str
    message: str
    count: int
    exit_seq: int
    def __init__(self, errno: _Optional[int] = ..., name: _Optional[str] = ..., message: _Optional[str] = ..., count: _Optional[int] = ..., exit_seq: _Optional[int] = ...) -> None: ...

class VcpuRef(_message.Message):
    __slots__ = ("vm_id", "vcpu_id")
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    VCPU_ID_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    vcpu_id: int
    def __init__(self, vm_id: _Optional[str] = ..., vcpu_id: _Optional[int] = ...) -> None: ...

class GetApiVersionRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetApiVersionResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...

class CheckExtensionRequest(_message.Message):
    __slots__ = ("cap", "vm_id")
    CAP_FIELD_NUMBER: _ClassVar[int]
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    cap: int
    vm_id: str
    def __init__(self, cap: _Optional[int] = ..., vm_id: _Optional[str] = ...) -> None: ...

class CheckExtensionResponse(_message.Message):
    __slots__ = ("value",)
    VALUE_FIELD_NUMBER: _ClassVar[int]
    value: int
    def __init__(self, value: _Optional[int] = ...) -> None: ...

class GetHostInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class IsaExtInfo(_message.Message):
    __slots__ = ("name", "kvm_id", "host", "on_host")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KVM_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    ON_HOST_FIELD_NUMBER: _ClassVar[int]
    name: str
    kvm_id: int
    host: str
    on_host: bool
    def __init__(self, name: _Optional[str] = ..., kvm_id: _Optional[int] = ..., host: _Optional[str] = ..., on_host: _Optional[bool] = ...) -> None: ...

class SbiExtInfo(_message.Message):
    __slots__ = ("name", "kvm_id", "eid_ranges", "default_enabled", "handling")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KVM_ID_FIELD_NUMBER: _ClassVar[int]
    EID_RANGES_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_ENABLED_FIELD_NUMBER: _ClassVar[int]
    HANDLING_FIELD_NUMBER: _ClassVar[int]
    name: str
    kvm_id: int
    eid_ranges: _containers.RepeatedScalarFieldContainer[int]
    default_enabled: bool
    handling: str
    def __init__(self, name: _Optional[str] = ..., kvm_id: _Optional[int] = ..., eid_ranges: _Optional[_Iterable[int]] = ..., default_enabled: _Optional[bool] = ..., handling: _Optional[str] = ...) -> None: ...

class FwftFeatureInfo(_message.Message):
    __slots__ = ("feature_id", "name", "onereg", "first_reg")
    FEATURE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ONEREG_FIELD_NUMBER: _ClassVar[int]
    FIRST_REG_FIELD_NUMBER: _ClassVar[int]
    feature_id: int
    name: str
    onereg: str
    first_reg: int
    def __init__(self, feature_id: _Optional[int] = ..., name: _Optional[str] = ..., onereg: _Optional[str] = ..., first_reg: _Optional[int] = ...) -> None: ...

class AbiProfile(_message.Message):
    __slots__ = ("name", "linux_version", "isa_ext_max", "sbi_ext_max", "sbi_spec_version", "flags")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LINUX_VERSION_FIELD_NUMBER: _ClassVar[int]
    ISA_EXT_MAX_FIELD_NUMBER: _ClassVar[int]
    SBI_EXT_MAX_FIELD_NUMBER: _ClassVar[int]
    SBI_SPEC_VERSION_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    name: str
    linux_version: str
    isa_ext_max: int
    sbi_ext_max: int
    sbi_spec_version: str
    flags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., linux_version: _Optional[str] = ..., isa_ext_max: _Optional[int] = ..., sbi_ext_max: _Optional[int] = ..., sbi_spec_version: _Optional[str] = ..., flags: _Optional[_Iterable[str]] = ...) -> None: ...

class Limits(_message.Message):
    __slots__ = ("max_vcpus", "max_vcpu_id", "mem_slots", "gpa_bits", "max_transfer", "max_vms", "max_batch_ops", "max_message_bytes", "max_id_bytes", "run_slice_insns", "run_slice_ms", "max_memory", "lease")
    MAX_VCPUS_FIELD_NUMBER: _ClassVar[int]
    MAX_VCPU_ID_FIELD_NUMBER: _ClassVar[int]
    MEM_SLOTS_FIELD_NUMBER: _ClassVar[int]
    GPA_BITS_FIELD_NUMBER: _ClassVar[int]
    MAX_TRANSFER_FIELD_NUMBER: _ClassVar[int]
    MAX_VMS_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_OPS_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_ID_BYTES_FIELD_NUMBER: _ClassVar[int]
    RUN_SLICE_INSNS_FIELD_NUMBER: _ClassVar[int]
    RUN_SLICE_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_MEMORY_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    max_vcpus: int
    max_vcpu_id: int
    mem_slots: int
    gpa_bits: int
    max_transfer: int
    max_vms: int
    max_batch_ops: int
    max_message_bytes: int
    max_id_bytes: int
    run_slice_insns: int
    run_slice_ms: int
    max_memory: int
    lease: _duration_pb2.Duration
    def __init__(self, max_vcpus: _Optional[int] = ..., max_vcpu_id: _Optional[int] = ..., mem_slots: _Optional[int] = ..., gpa_bits: _Optional[int] = ..., max_transfer: _Optional[int] = ..., max_vms: _Optional[int] = ..., max_batch_ops: _Optional[int] = ..., max_message_bytes: _Optional[int] = ..., max_id_bytes: _Optional[int] = ..., run_slice_insns: _Optional[int] = ..., run_slice_ms: _Optional[int] = ..., max_memory: _Optional[int] = ..., lease: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class HostInfo(_message.Message):
    __slots__ = ("isa", "isa_extensions", "capabilities", "isa_exts", "sbi_exts", "fwft_features", "abi_profiles", "default_abi_profile", "limits", "timebase_frequency", "satp_mode", "api_version", "default_clock")
    ISA_FIELD_NUMBER: _ClassVar[int]
    ISA_EXTENSIONS_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    ISA_EXTS_FIELD_NUMBER: _ClassVar[int]
    SBI_EXTS_FIELD_NUMBER: _ClassVar[int]
    FWFT_FEATURES_FIELD_NUMBER: _ClassVar[int]
    ABI_PROFILES_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_ABI_PROFILE_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    TIMEBASE_FREQUENCY_FIELD_NUMBER: _ClassVar[int]
    SATP_MODE_FIELD_NUMBER: _ClassVar[int]
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_CLOCK_FIELD_NUMBER: _ClassVar[int]
    isa: str
    isa_extensions: _containers.RepeatedScalarFieldContainer[str]
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    isa_exts: _containers.RepeatedCompositeFieldContainer[IsaExtInfo]
    sbi_exts: _containers.RepeatedCompositeFieldContainer[SbiExtInfo]
    fwft_features: _containers.RepeatedCompositeFieldContainer[FwftFeatureInfo]
    abi_profiles: _containers.RepeatedCompositeFieldContainer[AbiProfile]
    default_abi_profile: str
    limits: Limits
    timebase_frequency: int
    satp_mode: int
    api_version: int
    default_clock: GuestClock
    def __init__(self, isa: _Optional[str] = ..., isa_extensions: _Optional[_Iterable[str]] = ..., capabilities: _Optional[_Iterable[str]] = ..., isa_exts: _Optional[_Iterable[_Union[IsaExtInfo, _Mapping]]] = ..., sbi_exts: _Optional[_Iterable[_Union[SbiExtInfo, _Mapping]]] = ..., fwft_features: _Optional[_Iterable[_Union[FwftFeatureInfo, _Mapping]]] = ..., abi_profiles: _Optional[_Iterable[_Union[AbiProfile, _Mapping]]] = ..., default_abi_profile: _Optional[str] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., timebase_frequency: _Optional[int] = ..., satp_mode: _Optional[int] = ..., api_version: _Optional[int] = ..., default_clock: _Optional[_Union[GuestClock, _Mapping]] = ...) -> None: ...

class GuestClock(_message.Message):
    __slots__ = ("mode", "ns_per_insn_num", "ns_per_insn_den")
    class Mode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        MODE_UNSPECIFIED: _ClassVar[GuestClock.Mode]
        MODE_DETERMINISTIC: _ClassVar[GuestClock.Mode]
        MODE_HOST: _ClassVar[GuestClock.Mode]
    MODE_UNSPECIFIED: GuestClock.Mode
    MODE_DETERMINISTIC: GuestClock.Mode
    MODE_HOST: GuestClock.Mode
    MODE_FIELD_NUMBER: _ClassVar[int]
    NS_PER_INSN_NUM_FIELD_NUMBER: _ClassVar[int]
    NS_PER_INSN_DEN_FIELD_NUMBER: _ClassVar[int]
    mode: GuestClock.Mode
    ns_per_insn_num: int
    ns_per_insn_den: int
    def __init__(self, mode: _Optional[_Union[GuestClock.Mode, str]] = ..., ns_per_insn_num: _Optional[int] = ..., ns_per_insn_den: _Optional[int] = ...) -> None: ...

class CreateVmRequest(_message.Message):
    __slots__ = ("machine_type", "abi_profile", "clock")
    MACHINE_TYPE_FIELD_NUMBER: _ClassVar[int]
    ABI_PROFILE_FIELD_NUMBER: _ClassVar[int]
    CLOCK_FIELD_NUMBER: _ClassVar[int]
    machine_type: int
    abi_profile: str
    clock: GuestClock
    def __init__(self, machine_type: _Optional[int] = ..., abi_profile: _Optional[str] = ..., clock: _Optional[_Union[GuestClock, _Mapping]] = ...) -> None: ...

class CreateVmResponse(_message.Message):
    __slots__ = ("vm_id",)
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    def __init__(self, vm_id: _Optional[str] = ...) -> None: ...

class DestroyVmRequest(_message.Message):
    __slots__ = ("vm_id",)
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    def __init__(self, vm_id: _Optional[str] = ...) -> None: ...

class DestroyVmResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListVmsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class QuotaAmounts(_message.Message):
    __slots__ = ("vms", "vcpus", "memory_bytes", "runs")
    VMS_FIELD_NUMBER: _ClassVar[int]
    VCPUS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    vms: int
    vcpus: int
    memory_bytes: int
    runs: int
    def __init__(self, vms: _Optional[int] = ..., vcpus: _Optional[int] = ..., memory_bytes: _Optional[int] = ..., runs: _Optional[int] = ...) -> None: ...

class VmInfo(_message.Message):
    __slots__ = ("vm_id", "vcpu_ids", "memory_bytes", "create_time", "last_use_time", "expire_time", "open_calls")
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    VCPU_IDS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_USE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    OPEN_CALLS_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    vcpu_ids: _containers.RepeatedScalarFieldContainer[int]
    memory_bytes: int
    create_time: _timestamp_pb2.Timestamp
    last_use_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    open_calls: int
    def __init__(self, vm_id: _Optional[str] = ..., vcpu_ids: _Optional[_Iterable[int]] = ..., memory_bytes: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_use_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., open_calls: _Optional[int] = ...) -> None: ...

class ListVmsResponse(_message.Message):
    __slots__ = ("tenant", "vms", "quota", "usage")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    VMS_FIELD_NUMBER: _ClassVar[int]
    QUOTA_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    vms: _containers.RepeatedCompositeFieldContainer[VmInfo]
    quota: QuotaAmounts
    usage: QuotaAmounts
    def __init__(self, tenant: _Optional[str] = ..., vms: _Optional[_Iterable[_Union[VmInfo, _Mapping]]] = ..., quota: _Optional[_Union[QuotaAmounts, _Mapping]] = ..., usage: _Optional[_Union[QuotaAmounts, _Mapping]] = ...) -> None: ...

class EnableCapRequest(_message.Message):
    __slots__ = ("vm_id", "cap", "flags", "args")
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    CAP_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    cap: int
    flags: int
    args: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, vm_id: _Optional[str] = ..., cap: _Optional[int] = ..., flags: _Optional[int] = ..., args: _Optional[_Iterable[int]] = ...) -> None: ...

class EnableCapResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SetUserMemoryRegionRequest(_message.Message):
    __slots__ = ("vm_id", "slot", "flags", "guest_phys_addr", "memory_size", "userspace_addr")
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    SLOT_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    GUEST_PHYS_ADDR_FIELD_NUMBER: _ClassVar[int]
    MEMORY_SIZE_FIELD_NUMBER: _ClassVar[int]
    USERSPACE_ADDR_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    slot: int
    flags: int
    guest_phys_addr: int
    memory_size: int
    userspace_addr: int
    def __init__(self, vm_id: _Optional[str] = ..., slot: _Optional[int] = ..., flags: _Optional[int] = ..., guest_phys_addr: _Optional[int] = ..., memory_size: _Optional[int] = ..., userspace_addr: _Optional[int] = ...) -> None: ...

class SetUserMemoryRegionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetDirtyLogRequest(_message.Message):
    __slots__ = ("vm_id", "slot")
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    SLOT_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    slot: int
    def __init__(self, vm_id: _Optional[str] = ..., slot: _Optional[int] = ...) -> None: ...

class GetDirtyLogResponse(_message.Message):
    __slots__ = ("bitmap",)
    BITMAP_FIELD_NUMBER: _ClassVar[int]
    bitmap: bytes
    def __init__(self, bitmap: _Optional[bytes] = ...) -> None: ...

class ReadMemoryRequest(_message.Message):
    __slots__ = ("vm_id", "gpa", "size")
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    GPA_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    gpa: int
    size: int
    def __init__(self, vm_id: _Optional[str] = ..., gpa: _Optional[int] = ..., size: _Optional[int] = ...) -> None: ...

class ReadMemoryResponse(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class MemoryChunk(_message.Message):
    __slots__ = ("gpa", "data")
    GPA_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    gpa: int
    data: bytes
    def __init__(self, gpa: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class WriteMemoryRequest(_message.Message):
    __slots__ = ("vm_id", "gpa", "data")
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    GPA_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    gpa: int
    data: bytes
    def __init__(self, vm_id: _Optional[str] = ..., gpa: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class WriteMemoryResponse(_message.Message):
    __slots__ = ("bytes_written",)
    BYTES_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    bytes_written: int
    def __init__(self, bytes_written: _Optional[int] = ...) -> None: ...

class CreateVcpuRequest(_message.Message):
    __slots__ = ("vm_id", "vcpu_id")
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    VCPU_ID_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    vcpu_id: int
    def __init__(self, vm_id: _Optional[str] = ..., vcpu_id: _Optional[int] = ...) -> None: ...

class CreateVcpuResponse(_message.Message):
    __slots__ = ("vcpu",)
    VCPU_FIELD_NUMBER: _ClassVar[int]
    vcpu: VcpuRef
    def __init__(self, vcpu: _Optional[_Union[VcpuRef, _Mapping]] = ...) -> None: ...

class GetOneRegRequest(_message.Message):
    __slots__ = ("vcpu", "id")
    VCPU_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    vcpu: VcpuRef
    id: int
    def __init__(self, vcpu: _Optional[_Union[VcpuRef, _Mapping]] = ..., id: _Optional[int] = ...) -> None: ...

class GetOneRegResponse(_message.Message):
    __slots__ = ("value",)
    VALUE_FIELD_NUMBER: _ClassVar[int]
    value: bytes
    def __init__(self, value: _Optional[bytes] = ...) -> None: ...

class SetOneRegRequest(_message.Message):
    __slots__ = ("vcpu", "id", "value")
    VCPU_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    vcpu: VcpuRef
    id: int
    value: bytes
    def __init__(self, vcpu: _Optional[_Union[VcpuRef, _Mapping]] = ..., id: _Optional[int] = ..., value: _Optional[bytes] = ...) -> None: ...

class SetOneRegResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetRegListRequest(_message.Message):
    __slots__ = ("vcpu", "n")
    VCPU_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    vcpu: VcpuRef
    n: int
    def __init__(self, vcpu: _Optional[_Union[VcpuRef, _Mapping]] = ..., n: _Optional[int] = ...) -> None: ...

class GetRegListResponse(_message.Message):
    __slots__ = ("ids", "names")
    IDS_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ids: _Optional[_Iterable[int]] = ..., names: _Optional[_Iterable[str]] = ...) -> None: ...

class Completion(_message.Message):
    __slots__ = ("exit_seq", "mmio", "riscv_sbi", "riscv_csr")
    EXIT_SEQ_FIELD_NUMBER: _ClassVar[int]
    MMIO_FIELD_NUMBER: _ClassVar[int]
    RISCV_SBI_FIELD_NUMBER: _ClassVar[int]
    RISCV_CSR_FIELD_NUMBER: _ClassVar[int]
    exit_seq: int
    mmio: MmioCompletion
    riscv_sbi: SbiCompletion
    riscv_csr: CsrCompletion
    def __init__(self, exit_seq: _Optional[int] = ..., mmio: _Optional[_Union[MmioCompletion, _Mapping]] = ..., riscv_sbi: _Optional[_Union[SbiCompletion, _Mapping]] = ..., riscv_csr: _Optional[_Union[CsrCompletion, _Mapping]] = ...) -> None: ...

class MmioCompletion(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class SbiCompletion(_message.Message):
    __slots__ = ("error", "value")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    error: int
    value: int
    def __init__(self, error: _Optional[int] = ..., value: _Optional[int] = ...) -> None: ...

class CsrCompletion(_message.Message):
    __slots__ = ("ret_value",)
    RET_VALUE_FIELD_NUMBER: _ClassVar[int]
    ret_value: int
    def __init__(self, ret_value: _Optional[int] = ...) -> None: ...

class RunRequest(_message.Message):
    __slots__ = ("vcpu", "completion", "budget", "idle_timeout_ms", "interrupt")
    VCPU_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    IDLE_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    INTERRUPT_FIELD_NUMBER: _ClassVar[int]
    vcpu: VcpuRef
    completion: Completion
    budget: int
    idle_timeout_ms: int
    interrupt: int
    def __init__(self, vcpu: _Optional[_Union[VcpuRef, _Mapping]] = ..., completion: _Optional[_Union[Completion, _Mapping]] = ..., budget: _Optional[int] = ..., idle_timeout_ms: _Optional[int] = ..., interrupt: _Optional[int] = ...) -> None: ...

class Exit(_message.Message):
    __slots__ = ("seq", "reason", "mmio", "riscv_sbi", "riscv_csr", "system_event", "debug", "intr", "fail_entry", "internal_error", "unknown", "coalesced_mmio")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MMIO_FIELD_NUMBER: _ClassVar[int]
    RISCV_SBI_FIELD_NUMBER: _ClassVar[int]
    RISCV_CSR_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_EVENT_FIELD_NUMBER: _ClassVar[int]
    DEBUG_FIELD_NUMBER: _ClassVar[int]
    INTR_FIELD_NUMBER: _ClassVar[int]
    FAIL_ENTRY_FIELD_NUMBER: _ClassVar[int]
    INTERNAL_ERROR_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    COALESCED_MMIO_FIELD_NUMBER: _ClassVar[int]
    seq: int
    reason: int
    mmio: MmioExit
    riscv_sbi: SbiExit
    riscv_csr: CsrExit
    system_event: SystemEventExit
    debug: DebugExit
    intr: IntrExit
    fail_entry: FailEntryExit
    internal_error: InternalErrorExit
    unknown: UnknownExit
    coalesced_mmio: _containers.RepeatedCompositeFieldContainer[CoalescedMmio]
    def __init__(self, seq: _Optional[int] = ..., reason: _Optional[int] = ..., mmio: _Optional[_Union[MmioExit, _Mapping]] = ..., riscv_sbi: _Optional[_Union[SbiExit, _Mapping]] = ..., riscv_csr: _Optional[_Union[CsrExit, _Mapping]] = ..., system_event: _Optional[_Union[SystemEventExit, _Mapping]] = ..., debug: _Optional[_Union[DebugExit, _Mapping]] = ..., intr: _Optional[_Union[IntrExit, _Mapping]] = ..., fail_entry: _Optional[_Union[FailEntryExit, _Mapping]] = ..., internal_error: _Optional[_Union[InternalErrorExit, _Mapping]] = ..., unknown: _Optional[_Union[UnknownExit, _Mapping]] = ..., coalesced_mmio: _Optional[_Iterable[_Union[CoalescedMmio, _Mapping]]] = ...) -> None: ...

class MmioExit(_message.Message):
    __slots__ = ("phys_addr", "data", "len", "is_write")
    PHYS_ADDR_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    LEN_FIELD_NUMBER: _ClassVar[int]
    IS_WRITE_FIELD_NUMBER: _ClassVar[int]
    phys_addr: int
    data: bytes
    len: int
    is_write: bool
    def __init__(self, phys_addr: _Optional[int] = ..., data: _Optional[bytes] = ..., len: _Optional[int] = ..., is_write: _Optional[bool] = ...) -> None: ...

class SbiExit(_message.Message):
    __slots__ = ("extension_id", "function_id", "args")
    EXTENSION_ID_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_ID_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    extension_id: int
    function_id: int
    args: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, extension_id: _Optional[int] = ..., function_id: _Optional[int] = ..., args: _Optional[_Iterable[int]] = ...) -> None: ...

class CsrExit(_message.Message):
    __slots__ = ("csr_num", "new_value", "write_mask")
    CSR_NUM_FIELD_NUMBER: _ClassVar[int]
    NEW_VALUE_FIELD_NUMBER: _ClassVar[int]
    WRITE_MASK_FIELD_NUMBER: _ClassVar[int]
    csr_num: int
    new_value: int
    write_mask: int
    def __init__(self, csr_num: _Optional[int] = ..., new_value: _Optional[int] = ..., write_mask: _Optional[int] = ...) -> None: ...

class SystemEventExit(_message.Message):
    __slots__ = ("type", "data")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    type: int
    data: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, type: _Optional[int] = ..., data: _Optional[_Iterable[int]] = ...) -> None: ...

class DebugExit(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class IntrExit(_message.Message):
    __slots__ = ("why",)
    WHY_FIELD_NUMBER: _ClassVar[int]
    why: IntrReason
    def __init__(self, why: _Optional[_Union[IntrReason, str]] = ...) -> None: ...

class FailEntryExit(_message.Message):
    __slots__ = ("hardware_entry_failure_reason", "cpu")
    HARDWARE_ENTRY_FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    CPU_FIELD_NUMBER: _ClassVar[int]
    hardware_entry_failure_reason: int
    cpu: int
    def __init__(self, hardware_entry_failure_reason: _Optional[int] = ..., cpu: _Optional[int] = ...) -> None: ...

class InternalErrorExit(_message.Message):
    __slots__ = ("suberror", "data", "message")
    SUBERROR_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    suberror: int
    data: _containers.RepeatedScalarFieldContainer[int]
    message: str
    def __init__(self, suberror: _Optional[int] = ..., data: _Optional[_Iterable[int]] = ..., message: _Optional[str] = ...) -> None: ...

class UnknownExit(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InterruptRequest(_message.Message):
    __slots__ = ("vcpu", "irq")
    VCPU_FIELD_NUMBER: _ClassVar[int]
    IRQ_FIELD_NUMBER: _ClassVar[int]
    vcpu: VcpuRef
    irq: int
    def __init__(self, vcpu: _Optional[_Union[VcpuRef, _Mapping]] = ..., irq: _Optional[int] = ...) -> None: ...

class InterruptResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetMpStateRequest(_message.Message):
    __slots__ = ("vcpu",)
    VCPU_FIELD_NUMBER: _ClassVar[int]
    vcpu: VcpuRef
    def __init__(self, vcpu: _Optional[_Union[VcpuRef, _Mapping]] = ...) -> None: ...

class MpState(_message.Message):
    __slots__ = ("mp_state",)
    MP_STATE_FIELD_NUMBER: _ClassVar[int]
    mp_state: int
    def __init__(self, mp_state: _Optional[int] = ...) -> None: ...

class SetMpStateRequest(_message.Message):
    __slots__ = ("vcpu", "mp_state")
    VCPU_FIELD_NUMBER: _ClassVar[int]
    MP_STATE_FIELD_NUMBER: _ClassVar[int]
    vcpu: VcpuRef
    mp_state: int
    def __init__(self, vcpu: _Optional[_Union[VcpuRef, _Mapping]] = ..., mp_state: _Optional[int] = ...) -> None: ...

class SetMpStateResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SetGuestDebugRequest(_message.Message):
    __slots__ = ("vcpu", "control")
    VCPU_FIELD_NUMBER: _ClassVar[int]
    CONTROL_FIELD_NUMBER: _ClassVar[int]
    vcpu: VcpuRef
    control: int
    def __init__(self, vcpu: _Optional[_Union[VcpuRef, _Mapping]] = ..., control: _Optional[int] = ...) -> None: ...

class SetGuestDebugResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class KickRequest(_message.Message):
    __slots__ = ("vcpu",)
    VCPU_FIELD_NUMBER: _ClassVar[int]
    vcpu: VcpuRef
    def __init__(self, vcpu: _Optional[_Union[VcpuRef, _Mapping]] = ...) -> None: ...

class KickResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetFwftRequest(_message.Message):
    __slots__ = ("vcpu", "feature_id")
    VCPU_FIELD_NUMBER: _ClassVar[int]
    FEATURE_ID_FIELD_NUMBER: _ClassVar[int]
    vcpu: VcpuRef
    feature_id: int
    def __init__(self, vcpu: _Optional[_Union[VcpuRef, _Mapping]] = ..., feature_id: _Optional[int] = ...) -> None: ...

class FwftState(_message.Message):
    __slots__ = ("feature_id", "name", "enable", "flags", "value")
    FEATURE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ENABLE_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    feature_id: int
    name: str
    enable: bool
    flags: int
    value: int
    def __init__(self, feature_id: _Optional[int] = ..., name: _Optional[str] = ..., enable: _Optional[bool] = ..., flags: _Optional[int] = ..., value: _Optional[int] = ...) -> None: ...

class SetFwftRequest(_message.Message):
    __slots__ = ("vcpu", "feature_id", "enable", "value", "flags")
    VCPU_FIELD_NUMBER: _ClassVar[int]
    FEATURE_ID_FIELD_NUMBER: _ClassVar[int]
    ENABLE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    vcpu: VcpuRef
    feature_id: int
    enable: bool
    value: int
    flags: int
    def __init__(self, vcpu: _Optional[_Union[VcpuRef, _Mapping]] = ..., feature_id: _Optional[int] = ..., enable: _Optional[bool] = ..., value: _Optional[int] = ..., flags: _Optional[int] = ...) -> None: ...

class RegOp(_message.Message):
    __slots__ = ("vcpu_id", "id", "set_value")
    VCPU_ID_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    SET_VALUE_FIELD_NUMBER: _ClassVar[int]
    vcpu_id: int
    id: int
    set_value: bytes
    def __init__(self, vcpu_id: _Optional[int] = ..., id: _Optional[int] = ..., set_value: _Optional[bytes] = ...) -> None: ...

class BatchOneRegRequest(_message.Message):
    __slots__ = ("vm_id", "ops", "stop_on_error")
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    OPS_FIELD_NUMBER: _ClassVar[int]
    STOP_ON_ERROR_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    ops: _containers.RepeatedCompositeFieldContainer[RegOp]
    stop_on_error: bool
    def __init__(self, vm_id: _Optional[str] = ..., ops: _Optional[_Iterable[_Union[RegOp, _Mapping]]] = ..., stop_on_error: _Optional[bool] = ...) -> None: ...

class RegResult(_message.Message):
    __slots__ = ("status", "value")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    status: KvmErrno
    value: bytes
    def __init__(self, status: _Optional[_Union[KvmErrno, _Mapping]] = ..., value: _Optional[bytes] = ...) -> None: ...

class BatchOneRegResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[RegResult]
    def __init__(self, results: _Optional[_Iterable[_Union[RegResult, _Mapping]]] = ...) -> None: ...

class RunManyRequest(_message.Message):
    __slots__ = ("vm_id", "runs")
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    runs: _containers.RepeatedCompositeFieldContainer[RunRequest]
    def __init__(self, vm_id: _Optional[str] = ..., runs: _Optional[_Iterable[_Union[RunRequest, _Mapping]]] = ...) -> None: ...

class RunResult(_message.Message):
    __slots__ = ("vcpu_id", "status", "exit")
    VCPU_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EXIT_FIELD_NUMBER: _ClassVar[int]
    vcpu_id: int
    status: KvmErrno
    exit: Exit
    def __init__(self, vcpu_id: _Optional[int] = ..., status: _Optional[_Union[KvmErrno, _Mapping]] = ..., exit: _Optional[_Union[Exit, _Mapping]] = ...) -> None: ...

class RunManyResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[RunResult]
    def __init__(self, results: _Optional[_Iterable[_Union[RunResult, _Mapping]]] = ...) -> None: ...

class CoalescedMmioZone(_message.Message):
    __slots__ = ("addr", "size", "pio")
    ADDR_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    PIO_FIELD_NUMBER: _ClassVar[int]
    addr: int
    size: int
    pio: int
    def __init__(self, addr: _Optional[int] = ..., size: _Optional[int] = ..., pio: _Optional[int] = ...) -> None: ...

class CoalescedMmio(_message.Message):
    __slots__ = ("phys_addr", "len", "pio", "data")
    PHYS_ADDR_FIELD_NUMBER: _ClassVar[int]
    LEN_FIELD_NUMBER: _ClassVar[int]
    PIO_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    phys_addr: int
    len: int
    pio: int
    data: bytes
    def __init__(self, phys_addr: _Optional[int] = ..., len: _Optional[int] = ..., pio: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class RegisterCoalescedMmioRequest(_message.Message):
    __slots__ = ("vm_id", "zone")
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    zone: CoalescedMmioZone
    def __init__(self, vm_id: _Optional[str] = ..., zone: _Optional[_Union[CoalescedMmioZone, _Mapping]] = ...) -> None: ...

class RegisterCoalescedMmioResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UnregisterCoalescedMmioRequest(_message.Message):
    __slots__ = ("vm_id", "zone")
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    zone: CoalescedMmioZone
    def __init__(self, vm_id: _Optional[str] = ..., zone: _Optional[_Union[CoalescedMmioZone, _Mapping]] = ...) -> None: ...

class UnregisterCoalescedMmioResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DrainCoalescedMmioRequest(_message.Message):
    __slots__ = ("vm_id",)
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    def __init__(self, vm_id: _Optional[str] = ...) -> None: ...

class DrainCoalescedMmioResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[CoalescedMmio]
    def __init__(self, entries: _Optional[_Iterable[_Union[CoalescedMmio, _Mapping]]] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ("vm_id", "vcpu")
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    VCPU_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    vcpu: VcpuRef
    def __init__(self, vm_id: _Optional[str] = ..., vcpu: _Optional[_Union[VcpuRef, _Mapping]] = ...) -> None: ...

class Stat(_message.Message):
    __slots__ = ("name", "value", "type", "unit", "exponent", "base_pow2", "flags", "help")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    EXPONENT_FIELD_NUMBER: _ClassVar[int]
    BASE_POW2_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    HELP_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: int
    type: StatType
    unit: StatUnit
    exponent: int
    base_pow2: bool
    flags: int
    help: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[int] = ..., type: _Optional[_Union[StatType, str]] = ..., unit: _Optional[_Union[StatUnit, str]] = ..., exponent: _Optional[int] = ..., base_pow2: _Optional[bool] = ..., flags: _Optional[int] = ..., help: _Optional[str] = ...) -> None: ...

class Stats(_message.Message):
    __slots__ = ("id", "stats")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    id: str
    stats: _containers.RepeatedCompositeFieldContainer[Stat]
    def __init__(self, id: _Optional[str] = ..., stats: _Optional[_Iterable[_Union[Stat, _Mapping]]] = ...) -> None: ...
